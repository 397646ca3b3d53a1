//! `swarmvm contract sign` (and `submit`, in `submit.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use swarmvm_token::sign_contract;
use swarmvm_wallet::WalletId;

use super::OutputArgs;
use super::args::{PassphraseArgs, load_key, load_wallet};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ContractCommand {
    /// Sign a contract (`{"actions": [...]}`) for a network; prints the signed contract alone
    /// on one line (append it to contracts.jsonl).
    Sign {
        /// The contract file, as in the design note.
        contract: PathBuf,
        /// The signing wallet's key file.
        #[arg(long, value_name = "FILE")]
        wallet: PathBuf,
        /// The network: a network file (`network init`), its id, or (a network of one key)
        /// a file with the authority's key.
        #[arg(long, value_name = "AUTH_ID_OR_PUBFILE", allow_hyphen_values = true)]
        network: String,
        /// The nonce (default: the current time in milliseconds).
        #[arg(long)]
        nonce: Option<u64>,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Submit a contract to a running network through any node; prints its id (with --wait,
    /// its outcome: exit 0 applied, 1 rejected, 3 timed out).
    Submit(Box<super::submit::ContractSubmitArgs>),
}

/// Reads the note's contract shape: an object whose `actions` is a list.
pub(crate) fn read_contract(path: &Path) -> Result<Vec<Value>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value = swarmvm_token::parse_strict(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    match value {
        Value::Object(mut obj) => match obj.remove("actions") {
            Some(Value::Array(actions)) if obj.is_empty() => Ok(actions),
            Some(Value::Array(_)) => {
                bail!("{}: a contract has only the member 'actions'", path.display())
            }
            _ => bail!("{}: 'actions' must be a list of actions", path.display()),
        },
        _ => bail!("{} must be an object like {{\"actions\": [...]}}", path.display()),
    }
}

pub(crate) fn network_id(arg: &str) -> Result<String> {
    let path = Path::new(arg);
    if path.exists() {
        if let Ok(bytes) =
            super::args::read_bounded_file(path, swarmvm_token::MAX_NETWORK_FILE as u64)
            && let Ok(network) = swarmvm_token::Network::parse(&bytes)
        {
            return Ok(network.id().to_owned());
        }
        let key = load_key(path, &PassphraseArgs { passphrase_file: None })?;
        return Ok(key.public_key().id().to_string());
    }
    let id: WalletId = arg
        .parse()
        .with_context(|| format!("--network {arg}: neither a key file nor a wallet id"))?;
    Ok(id.to_string())
}

pub(crate) fn run(cmd: ContractCommand, out: OutputArgs) -> Result<ExitCode> {
    match cmd {
        ContractCommand::Submit(args) => super::submit::contract_submit(*args, out),
        ContractCommand::Sign { contract, wallet, network, nonce, passphrase } => {
            let actions = read_contract(&contract)?;
            let network = network_id(&network)?;
            let wallet = load_wallet(&wallet, &passphrase)?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            let nonce = match nonce {
                Some(n) => n,
                None => u64::try_from(now.as_millis()).context("clock out of range")?,
            };
            let token = sign_contract(&wallet, &network, nonce, &actions, now.as_secs())
                .context("cannot sign contract")?;
            if out.json {
                output::json(
                    &json!({"contract": token, "signer": wallet.id(), "network": network, "nonce": nonce}),
                );
            } else {
                output::line(token);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
