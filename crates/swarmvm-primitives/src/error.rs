//! One error model for every crate: each error type says how it ends a command, as one of
//! the three classes of failure the README's "Exit status" names.
//!
//! A crate's errors implement [`Classify`]; an error that wraps another (a `#[from]` or
//! `#[source]` variant) takes the class of the error it wraps, so the class of the outermost
//! error of a chain is the class of the failure.
//!
//! ```
//! use swarmvm_primitives::{Classify, ErrorClass, Hash32};
//!
//! let err = "not a hash".parse::<Hash32>().unwrap_err();
//! assert_eq!(err.class(), ErrorClass::Failed);
//! assert_eq!(err.class().exit_code(), 2);
//! ```

use crate::hash::InvalidHash;
use crate::rules::UnknownRules;

/// How an error ends a command, the three classes the README's "Exit status" names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A rule or a verification refused the input (exit 1).
    Refused,
    /// Storage, I/O, usage or an internal error (exit 2).
    Failed,
    /// A wait ran out (exit 3).
    TimedOut,
}

impl ErrorClass {
    /// The process exit code of this class: 1, 2 or 3.
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::Refused => 1,
            Self::Failed => 2,
            Self::TimedOut => 3,
        }
    }
}

/// An error that knows its class.
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;
}

impl<E: Classify + ?Sized> Classify for &E {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
}

impl<E: Classify + ?Sized> Classify for Box<E> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
}

/// Text that is not a hash: text given on the command line or in a file, a usage error
/// (input from peers is refused by the error of the check that reads it).
impl Classify for InvalidHash {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failed
    }
}

/// A bundle naming a rules version this build does not know is refused by rule.
impl Classify for UnknownRules {
    fn class(&self) -> ErrorClass {
        ErrorClass::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_have_the_readme_exit_codes() {
        assert_eq!(ErrorClass::Refused.exit_code(), 1);
        assert_eq!(ErrorClass::Failed.exit_code(), 2);
        assert_eq!(ErrorClass::TimedOut.exit_code(), 3);
    }

    #[test]
    fn references_and_boxes_keep_the_class_of_what_they_hold() {
        fn class_of(e: impl Classify) -> ErrorClass {
            e.class()
        }
        let unknown = UnknownRules(9);
        assert_eq!(unknown.class(), ErrorClass::Refused);
        assert_eq!(class_of(&unknown), ErrorClass::Refused);
        let boxed: Box<dyn Classify> = Box::new(InvalidHash);
        assert_eq!(boxed.class(), ErrorClass::Failed);
    }
}
