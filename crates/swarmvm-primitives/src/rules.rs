//! Rules versions: which rules of verification and execution a bundle is applied under.
//!
//! A manifest names its rules version in the `rules` claim (absent: version 1, the second
//! wave's rules). A bundle is verified and executed under the version its manifest names; a
//! manifest may keep or raise its parent's version, never lower it; and a node refuses a
//! bundle naming a version it does not know. So every rule change takes effect at a signed
//! point of the chain, and replaying an old chain gives its old roots. `docs/format.md`
//! lists what each version changed.

use std::fmt;

/// A rules version that this build knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rules(u8);

/// A `rules` claim naming a version this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rules version {0} is not known here (this node knows 1 to {max})", max = Rules::CURRENT.0)]
pub struct UnknownRules(pub u64);

impl Rules {
    /// The second wave's rules: what a manifest without `rules` is applied under.
    pub const V1: Self = Self(1);
    /// Version 1 and: a module's removals count in its write budget; writes are also bounded
    /// per contract and per bundle, in bytes and in entries; instantiating and resetting a
    /// module costs fuel in proportion to its memory and table; the modules of one contract
    /// hold a bounded memory together.
    pub const V2: Self = Self(2);
    /// Version 2 and: the state trie's nodes hash their children as a binary tree, so that
    /// an entry or its absence is proved by the hashes along one path (the state root
    /// differs from version 2's for the same entries).
    pub const V3: Self = Self(3);
    /// Version 3 and: contracts' Ed25519 signatures are verified under ZIP-215 (the
    /// cofactored equation, lenient encodings), in batches; tokens, manifests and heads stay
    /// strictly verified.
    pub const V4: Self = Self(4);
    /// The newest version, named by the bundles this build makes.
    pub const CURRENT: Self = Self::V4;

    /// The version numbered `n`, if this build knows it.
    pub fn new(n: u64) -> Result<Self, UnknownRules> {
        match n {
            1 => Ok(Self::V1),
            2 => Ok(Self::V2),
            3 => Ok(Self::V3),
            4 => Ok(Self::V4),
            n => Err(UnknownRules(n)),
        }
    }

    /// Its number.
    pub fn number(self) -> u64 {
        u64::from(self.0)
    }

    /// True when this version includes the changes of `version` (it is that one or later).
    pub fn has(self, version: Self) -> bool {
        self >= version
    }
}

impl Default for Rules {
    /// The newest version: what local runs (`exec`, tests) use.
    fn default() -> Self {
        Self::CURRENT
    }
}

impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_versions_only_and_in_order() {
        assert_eq!(Rules::new(1), Ok(Rules::V1));
        assert_eq!(Rules::new(2), Ok(Rules::V2));
        assert_eq!(Rules::new(0), Err(UnknownRules(0)));
        assert_eq!(Rules::new(3), Ok(Rules::V3));
        assert_eq!(Rules::new(4), Ok(Rules::V4));
        assert_eq!(Rules::new(5), Err(UnknownRules(5)));
        assert!(Rules::V2.has(Rules::V1) && Rules::V2.has(Rules::V2) && !Rules::V1.has(Rules::V2));
        assert!(Rules::V3.has(Rules::V2) && !Rules::V2.has(Rules::V3));
        assert_eq!(Rules::default(), Rules::CURRENT);
        assert!(UnknownRules(9).to_string().contains("rules version 9 is not known"));
    }
}
