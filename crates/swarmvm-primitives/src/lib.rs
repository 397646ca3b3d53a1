//! What every swarmvm crate shares: SHA-256 hashes and bundle identities as typed values
//! (so a contract's hash is never taken for a bundle's), and the one way untrusted text is
//! shown in a message, a log line or a terminal.
//!
//! ```
//! use swarmvm_primitives::{BundleId, Hash32, text};
//!
//! let id = BundleId::of_payload(br#"{"seq":1}"#);
//! let parsed: BundleId = id.to_string().parse()?;
//! assert_eq!(parsed, id);
//! assert_eq!(Hash32::digest(b"").to_string(),
//!     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
//! // A name that would reverse the rest of a log line is shown escaped.
//! assert_eq!(text::shown("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
//! # Ok::<(), swarmvm_primitives::InvalidHash>(())
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod error;
pub mod fuel;
mod hash;
mod id;
mod rules;
pub mod text;

pub use error::{Classify, ErrorClass};
pub use hash::{BundleId, Hash32, InvalidHash};
pub use id::{InvalidNetworkId, InvalidWalletId, NetworkId, WALLET_ID_LEN, WalletId};
pub use rules::{Rules, UnknownRules};
