//! Wallets for swarmvm: key pairs that sign registration tokens, contracts and manifests.
//!
//! A wallet is an Ed25519 key (the default) or an RSA key of 2048 bits or more. Its id is the
//! RFC 7638 JWK thumbprint of its public key. Keys are read from PKCS#8 (plain or encrypted
//! with PBES2), PKCS#1, SPKI, DER and JWK, and written as PKCS#8 PEM with mode 0600. RSA keys
//! under 2048 bits are refused everywhere. Nothing in this crate prints a private key: `Debug`
//! shows ids, and secrets are zeroed on drop.
//!
//! Cryptography is aws-lc-rs (constant-time RSA); the ASN.1 structures are RustCrypto's.
//!
//! ```
//! use swarmvm_wallet::{Algorithm, KeyMaterial, Wallet};
//!
//! let wallet = Wallet::generate(Algorithm::Ed25519)?;
//! let pem = wallet.to_pkcs8_pem(None)?;
//! let (read, _format) = KeyMaterial::parse(pem.as_bytes(), None)?;
//! assert_eq!(read.public_key().id(), wallet.id());
//! assert_eq!(wallet.public_key().to_jwk()["kty"], "OKP");
//! # Ok::<(), swarmvm_wallet::KeyError>(())
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod error;
mod file;
mod jwk;
mod parse;
mod public;
mod wallet;

pub use error::{KeyError, Result};
pub use file::{
    PRIVATE_KEY_MODE, read_key_file, read_passphrase_file, write_key_file, write_private_file,
};
pub use jwk::PRIVATE_JWK_MEMBERS;
pub use parse::{KeyFormat, KeyMaterial, MAX_KEY_INPUT};
pub use public::{KeyKind, PublicKey, RSA_MAX_BITS, RSA_MIN_BITS};
pub use swarmvm_primitives::{InvalidWalletId, WALLET_ID_LEN, WalletId};
pub use wallet::{Algorithm, SigningKey, UnknownAlgorithm, Wallet};
