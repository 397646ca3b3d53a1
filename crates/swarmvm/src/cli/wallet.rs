//! `swarmvm wallet new|show|public`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde_json::json;
use swarmvm_wallet::{Algorithm, KeyMaterial, PublicKey, Wallet, read_key_file, write_key_file};

use super::OutputArgs;
use super::args::PassphraseArgs;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum WalletCommand {
    /// Generate a wallet and write its private key (PKCS#8 PEM, mode 0600). Prints its id.
    New {
        /// Where to write the private key.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
        /// Key algorithm: ed25519, rsa-2048, rsa-3072 or rsa-4096.
        #[arg(long, default_value = "ed25519")]
        algorithm: Algorithm,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Show a key's id, algorithm and public JWK. Reads private and public keys in PEM
    /// (PKCS#8, encrypted PKCS#8, PKCS#1, SPKI), DER or JWK.
    Show {
        /// The key file.
        file: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Print a key's public key, as SPKI PEM or as a JWK.
    Public {
        /// The key file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "pem")]
        format: PublicFormat,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum PublicFormat {
    /// `PUBLIC KEY` PEM (SPKI).
    Pem,
    /// JSON Web Key.
    Jwk,
}

fn describe(key: &PublicKey) -> serde_json::Value {
    json!({
        "id": key.id(),
        "algorithm": key.kind().to_string(),
        "jws_alg": key.kind().jws_algorithm(),
        "jwk": key.to_jwk(),
    })
}

pub(crate) fn run(cmd: WalletCommand, out: OutputArgs) -> Result<ExitCode> {
    match cmd {
        WalletCommand::New { out: path, algorithm, force, passphrase } => {
            let pass = passphrase.read()?;
            let wallet = Wallet::generate(algorithm)?;
            write_key_file(&path, &wallet, pass.as_deref().map(|p| p.as_slice()), force)
                .with_context(|| format!("cannot write wallet {}", path.display()))?;
            if out.json {
                let mut value = describe(wallet.public_key());
                value["path"] = json!(path);
                value["encrypted"] = json!(pass.is_some());
                output::json(&value);
            } else {
                output::line(wallet.id().as_str());
            }
        }
        WalletCommand::Show { file, passphrase } => {
            let pass = passphrase.read()?;
            let (material, format) = read_key_file(&file, pass.as_deref().map(|p| p.as_slice()))
                .with_context(|| format!("cannot use key {}", file.display()))?;
            let key = material.public_key();
            if out.json {
                let mut value = describe(key);
                value["private"] = json!(material.is_private());
                value["format"] = json!(format.name());
                output::json(&value);
            } else {
                let holds = match material {
                    KeyMaterial::Private(_) => "private key",
                    KeyMaterial::Public(_) => "public key only",
                };
                output::line(format!("id:        {}", key.id()));
                output::line(format!("algorithm: {} ({})", key.kind(), key.kind().jws_algorithm()));
                output::line(format!("holds:     {holds} ({})", format.name()));
                output::line(format!("jwk:       {}", key.to_jwk()));
            }
        }
        WalletCommand::Public { file, format, passphrase } => {
            let material = super::args::load_key(&file, &passphrase)?;
            let key = material.public_key();
            match (format, out.json) {
                (PublicFormat::Jwk, _) | (_, true) => output::json(&key.to_jwk()),
                (PublicFormat::Pem, false) => output::line(key.to_spki_pem().trim_end()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
