//! `swarmvm exec`: run a contract locally on a peer's ledger, as each peer in the note does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use swarmvm_bundle::{verify_local_contracts, verify_local_with_modules};
use swarmvm_ledger::Receipt;
use swarmvm_token::{sign_contract, unix_now};

use super::OutputArgs;
use super::args::{DataDirArgs, NetworkArgs, PassphraseArgs, load_wallet, read_token_lines};
use super::contract::read_contract;
use crate::exit::refused;
use crate::output;

/// Run an unsigned contract on this peer: sign it for the data dir's network with the
/// wallet's next nonce, apply it, commit. Exits 1 when the contract is rejected.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    /// The contract file (`{"actions": [...]}`).
    contract: PathBuf,
    /// The wallet that signs it.
    #[arg(long, value_name = "FILE")]
    wallet: PathBuf,
    #[command(flatten)]
    data_dir: DataDirArgs,
    /// Registration tokens (one a line) to apply first, checked against the network's
    /// authority set (--network FILE or --trust PUBFILE).
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// A folder of WebAssembly modules (.wasm, or .wat text) that the registrations of
    /// --tokens may bind actions to; stored in the ledger with them.
    #[arg(long, value_name = "DIR", requires = "tokens")]
    modules: Option<PathBuf>,
    #[command(flatten)]
    trust: NetworkArgs,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

fn print_receipt(receipt: &Receipt, root: &str, out: OutputArgs) {
    if out.json {
        output::json(&json!({"receipt": receipt, "state_root": root}));
    } else if receipt.is_applied() {
        output::line(format!(
            "applied contract {} (nonce {}); state root {root}",
            receipt.contract,
            receipt.nonce.unwrap_or_default()
        ));
    } else {
        output::line(format!(
            "rejected contract {}: {}",
            receipt.contract,
            receipt.reason.as_deref().unwrap_or("unknown")
        ));
    }
}

pub(crate) fn run(args: ExecArgs, out: OutputArgs) -> Result<ExitCode> {
    let actions = read_contract(&args.contract)?;
    let wallet = load_wallet(&args.wallet, &args.passphrase)?;
    let mut ledger = args.data_dir.open()?;
    let now = unix_now();
    if let Some(tokens) = &args.tokens {
        let registrations = read_token_lines(tokens)?;
        let network = args.trust.load()?;
        let modules = match &args.modules {
            Some(dir) => read_modules(dir)?,
            None => Vec::new(),
        };
        let snapshot = ledger.snapshot()?;
        let verified =
            verify_local_with_modules(&registrations, &[], modules, &network, &snapshot, now)
                .context("registrations refused")?;
        drop(snapshot);
        ledger.commit(&verified).context("registrations refused")?;
    }
    let snapshot = ledger.snapshot()?;
    let Some(network) = snapshot.network().map(str::to_owned) else {
        bail!(
            "{} has no registrations yet; give --tokens FILE with --trust AUTH or --network FILE",
            args.data_dir.data_dir.display()
        );
    };
    let nonce = swarmvm_vm::nonce_of(&snapshot, wallet.id().as_str())? + 1;
    let token =
        sign_contract(&wallet, &network, nonce, &actions, now).context("cannot sign contract")?;
    let verified = verify_local_contracts(std::slice::from_ref(&token), &snapshot, now)?;
    drop(snapshot);
    let report = ledger.commit(&verified)?;
    let receipt = &report.receipts[0];
    print_receipt(receipt, &report.state_root.to_hex(), out);
    if receipt.is_applied() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(refused(format!(
            "contract rejected: {}",
            receipt.reason.as_deref().unwrap_or("unknown reason")
        )))
    }
}

/// Every `.wasm` and `.wat` file in `dir`, as module bytes.
fn read_modules(dir: &std::path::Path) -> Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm" || e == "wat"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let raw = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            swarmvm_wasm::module_bytes(&raw)
                .with_context(|| format!("module {} refused", p.display()))
        })
        .collect()
}
