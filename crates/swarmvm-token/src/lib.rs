//! Signed objects for swarmvm as JWS compact tokens (RFC 7515/7519): registration tokens now,
//! signed contracts and bundle manifests through the same verification path.
//!
//! Verification follows RFC 8725: the algorithm comes from the trusted key, never from the
//! token; each kind has its own `typ` and one kind is never accepted for another; the signer
//! must be the one `iss` names; `alg: none`, unknown `kid`, missing or past `exp`, future
//! `nbf`, duplicated JSON members, embedded keys, private key material and tokens over
//! 64 KiB are refused, each with a one-line reason. Times are checked against a
//! [`TimeCheck`] the caller gives, so a bundle can be checked at its manifest's time.
//!
//! Signing and signature checks go through the `jsonwebtoken` crate on aws-lc-rs.
//!
//! ```
//! use std::collections::BTreeMap;
//! use swarmvm_token::{IssueTime, Operation, RegistrationBody, Signer, TimeCheck, TrustStore};
//! use swarmvm_wallet::{Algorithm, Wallet};
//!
//! let authority = Wallet::generate(Algorithm::Ed25519)?;
//! let ops = BTreeMap::from([("register_student".to_owned(), Operation::from("register_student"))]);
//! let handlers = ["register_student"];
//! let token = swarmvm_token::issue_operations(
//!     &Signer::Wallet(&authority), &ops, &handlers, IssueTime::system_now())?;
//!
//! let trust = TrustStore::with_keys([authority.public_key()]);
//! let reg = swarmvm_token::verify_registration(&token, &trust, TimeCheck::system_now(), &handlers)?;
//! assert_eq!(reg.issuer, authority.id().to_string());
//! assert!(matches!(reg.body, RegistrationBody::Operations(ref o) if o == &ops));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod authority;
mod contract;
mod cosign;
mod error;
mod head;
mod head_parts;
mod json;
mod jws;
mod kind;
mod manifest;
mod registration;
mod time;
mod trust;
pub mod zip215;

pub use authority::{AuthoritySet, MAX_AUTHORITIES, MAX_NETWORK_FILE, Network, SetError};
pub use contract::{
    ContractPeek, MAX_CONTRACT_NONCE, PendingContract, VerifiedContract, contract_signer,
    peek_contract, prepare_contract, sign_contract, verify_contract,
};
pub use cosign::{
    PayloadSignature, head_payload, join_head, join_manifest, join_signatures, manifest_payload,
    sign_message, sign_payload_part, verify_message, verify_payload_part,
};
pub use error::{IssueError, Result, VerifyError};
pub use head::{
    HeadContent, MAX_HEAD_LEN, MAX_HEAD_MAGNET, SnapshotClaim, VerifiedHead, sign_head, verify_head,
};
pub use head_parts::{HeadParts, MAX_PART_SIGNATURES, head_from_parts, head_parts};
pub use json::{find_private_key_material, parse_strict};
pub use jws::{MAX_SIGNATURES, MAX_TOKEN_LEN, Serialization, Signer};
pub use kind::Kind;
pub use manifest::{
    BUNDLE_FILES, CONTRACTS_FILE, FileDigest, MANIFEST_FILE, MAX_BUNDLE_FILE, MAX_MANIFEST_LEN,
    MAX_MODULE_FILE, MAX_MODULES, MAX_SEQ, ManifestContent, ManifestPeek, TOKENS_FILE,
    VerifiedManifest, add_manifest_signature, module_file, module_hash, peek_manifest,
    sign_manifest, verify_manifest,
};
pub use registration::{
    DEFAULT_TTL_SECS, IssueTime, MAX_JTI_LEN, MAX_LABEL_LEN, MAX_NAME_LEN, MAX_OPERATIONS,
    MAX_REVOCATIONS, MAX_TTL_SECS, Operation, Registration, RegistrationBody, WalletEntry,
    issue_operations, issue_operations_withdrawing, issue_wallets, issue_wallets_revoking,
    verify_registration,
};
pub use time::{DEFAULT_LEEWAY, TimeCheck, Validity, unix_now};
pub use trust::{DEFAULT_HS256_ISSUER, HS256_MIN_SECRET, Hs256Key, TrustStore};
