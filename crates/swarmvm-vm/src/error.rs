//! Why a contract or an action is rejected.

/// Longest id (students, courses, proposals, NFTs).
pub const MAX_ID_LEN: usize = 64;
/// Longest name, department or label.
pub const MAX_TEXT_LEN: usize = 256;
/// Longest proposal description.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Largest NFT metadata, as canonical JSON bytes.
pub const MAX_METADATA_LEN: usize = 4096;
/// Deepest NFT metadata nesting.
pub const MAX_METADATA_DEPTH: usize = 8;
/// Most actions in one contract.
pub const MAX_ACTIONS: usize = 1024;
/// Largest nonce (2^53 − 1, exact in every JSON implementation).
pub const MAX_NONCE: u64 = (1 << 53) - 1;

pub(crate) use swarmvm_primitives::text::shown;
use swarmvm_primitives::{Classify, ErrorClass};

/// Why one action failed. Messages name the field or the entity concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// A required field is absent.
    #[error("missing field '{0}'")]
    Missing(&'static str),
    /// A field of the wrong JSON type.
    #[error("field '{path}' must be {expected}")]
    WrongType {
        /// The field's path (`student.name`).
        path: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A field over its length limit.
    #[error("field '{path}' is longer than {max} characters")]
    TooLong {
        /// The field's path.
        path: &'static str,
        /// The limit.
        max: usize,
    },
    /// A field whose value breaks a rule.
    #[error("field '{path}' {reason}")]
    Invalid {
        /// The field's path.
        path: &'static str,
        /// What is wrong (`is empty`, ...).
        reason: &'static str,
    },
    /// A field the action does not have.
    #[error("unknown field '{0}'")]
    UnknownField(String),
    /// The entity exists already.
    #[error("{what} {id} already exists")]
    Exists {
        /// `student`, `course`, ...
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The entity does not exist.
    #[error("{what} {id} does not exist")]
    NotFound {
        /// `student`, `course`, ...
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The signer voted on this proposal before.
    #[error("wallet {wallet} already voted on proposal {proposal}")]
    AlreadyVoted {
        /// The proposal.
        proposal: String,
        /// The signer.
        wallet: String,
    },
    /// A vote whose description differs from the proposal's.
    #[error("proposal {0} exists with a different description")]
    DescriptionMismatch(String),
    /// The student is already in the course.
    #[error("student {student} is already enrolled in course {course}")]
    AlreadyEnrolled {
        /// The student.
        student: String,
        /// The course.
        course: String,
    },
    /// The signer does not own the NFT.
    #[error("nft {nft} is owned by {owner}, not by the signer")]
    NotOwner {
        /// The NFT.
        nft: String,
        /// Its owner.
        owner: String,
    },
    /// A transfer to the wallet that owns the NFT already.
    #[error("nft {0} already belongs to that wallet")]
    SelfTransfer(String),
    /// A wallet named in an action is not registered.
    #[error("wallet {0} is not registered")]
    UnregisteredWallet(String),
    /// A WebAssembly operation's module ran out of the fuel its registration gives it.
    #[error("module ran out of fuel ({0} units)")]
    OutOfFuel(u64),
    /// A WebAssembly operation's module trapped (or broke the ABI's rules at run time).
    #[error("module trapped: {0}")]
    Trap(String),
    /// A WebAssembly operation's module called `fail` (the message, escaped and cut short).
    #[error("module failed: {0}")]
    ModuleFailed(String),
    /// A WebAssembly operation's `run` returned something other than 0.
    #[error("module returned {0}")]
    ModuleReturned(i32),
    /// The module sessions of one contract hold more memory together than the rules allow
    /// (rules version 2).
    #[error("the modules of this contract hold {pages} pages of memory together (at most {max})")]
    ModuleMemory {
        /// Pages held.
        pages: u64,
        /// The limit.
        max: u64,
    },
    /// A WebAssembly operation whose module this peer does not hold: never after a verified
    /// registration; a peer fault rather than the contract's.
    #[error("module {0} is not loaded")]
    ModuleMissing(String),
    /// The state could not be read: not a rejection, the batch stops.
    #[error(transparent)]
    Storage(#[from] crate::access::StateError),
}

/// Why a whole contract was rejected. A rejected contract changes nothing: not the state, not
/// the signer's nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The signer is not a registered wallet.
    #[error("signer {0} is not a registered wallet")]
    UnregisteredSigner(String),
    /// The signer's wallet was revoked by a wallets token.
    #[error("signer {0} was revoked")]
    RevokedSigner(String),
    /// The nonce does not increase (a replay, or out of order).
    #[error("nonce {got} is not above the signer's last nonce {last}")]
    StaleNonce {
        /// The signer's last used nonce.
        last: u64,
        /// The contract's nonce.
        got: u64,
    },
    /// The nonce is 0 or above 2^53 − 1.
    #[error("nonce {0} is out of range (1 to 2^53-1)")]
    NonceOutOfRange(u64),
    /// No actions.
    #[error("contract has no actions")]
    NoActions,
    /// Too many actions.
    #[error("contract has {0} actions; at most {MAX_ACTIONS} are allowed")]
    TooManyActions(usize),
    /// An action that is not an object with a string `action`.
    #[error("action {index} is not an object with a string 'action' member")]
    MalformedAction {
        /// Its position (0-based).
        index: usize,
    },
    /// An action name that no operations token registered.
    #[error("action {index}: '{name}' is not a registered operation")]
    UnknownAction {
        /// Its position.
        index: usize,
        /// The name.
        name: String,
    },
    /// An action that an operations token withdrew.
    #[error("action {index}: '{name}' was withdrawn")]
    WithdrawnAction {
        /// Its position.
        index: usize,
        /// The name.
        name: String,
    },
    /// A registered action whose handler is missing from this VM's catalogue.
    #[error("action {index} ({action}): handler '{handler}' is not in this vm's catalogue")]
    MissingHandler {
        /// Its position.
        index: usize,
        /// The action name.
        action: String,
        /// The handler it is bound to.
        handler: String,
    },
    /// The handler refused the action.
    #[error("action {index} ({action}): {error}")]
    Action {
        /// Its position.
        index: usize,
        /// The action name.
        action: String,
        /// Why.
        error: ActionError,
    },
}

/// Why a registration could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The handler is not in the catalogue.
    #[error("unknown handler '{handler}' for action '{action}'")]
    UnknownHandler {
        /// The action.
        action: String,
        /// The handler.
        handler: String,
    },
    /// A module registration for a module this VM cannot run (not loaded, or no runtime).
    #[error("module {module} for action '{action}' is not loaded")]
    UnknownModule {
        /// The action.
        action: String,
        /// The module's hash.
        module: String,
    },
    /// A wallet registration for a revoked wallet: revocation is permanent.
    #[error("wallet {0} was revoked and cannot be registered again")]
    Revoked(String),
    /// The state could not be read.
    #[error(transparent)]
    Storage(#[from] crate::access::StateError),
    /// A registration token applied before (its `jti`).
    #[error("registration token {0} was already applied; a token is applied once")]
    Replayed(String),
    /// A name or label outside the allowed form.
    #[error("invalid {what} '{value}'")]
    Invalid {
        /// What kind of value.
        what: &'static str,
        /// The value (shortened).
        value: String,
    },
}

/// The state not read, or a module this peer should hold and does not, is the peer's
/// failure; everything else rejects the action.
impl Classify for ActionError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Storage(e) => e.class(),
            Self::ModuleMissing(_) => ErrorClass::Failed,
            _ => ErrorClass::Refused,
        }
    }
}

/// A rejected contract is refused, with its action's class when an action failed.
impl Classify for Rejection {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Action { error, .. } => error.class(),
            _ => ErrorClass::Refused,
        }
    }
}

/// A registration that cannot be applied is refused; the state not read is a failure.
impl Classify for RegistrationError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Storage(e) => e.class(),
            _ => ErrorClass::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::StateError;

    #[test]
    fn storage_errors_are_failures_wherever_they_are_wrapped() {
        let storage = || StateError::storage(std::io::Error::other("disk"));
        assert_eq!(ActionError::Storage(storage()).class(), ErrorClass::Failed);
        assert_eq!(ActionError::ModuleMissing("m".into()).class(), ErrorClass::Failed);
        assert_eq!(ActionError::Missing("id").class(), ErrorClass::Refused);
        assert_eq!(RegistrationError::Storage(storage()).class(), ErrorClass::Failed);
        assert_eq!(RegistrationError::Revoked("w".into()).class(), ErrorClass::Refused);
        assert_eq!(Rejection::NoActions.class(), ErrorClass::Refused);
        let action = |error| Rejection::Action { index: 0, action: "a".into(), error };
        assert_eq!(action(ActionError::Missing("id")).class(), ErrorClass::Refused);
        assert_eq!(action(ActionError::Storage(storage())).class(), ErrorClass::Failed);
    }
}
