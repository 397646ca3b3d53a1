//! `swarmvm state show|root|prove`, `swarmvm proof verify` and `swarmvm ledger verify|backup`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use swarmvm_ledger::Snapshot;
use swarmvm_vm::{StateScan as _, Table};

use super::OutputArgs;
use super::args::DataDirArgs;
use crate::exit::refused;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StateCommand {
    /// Print the state: registrations, nonces, students, courses, proposals, NFTs. Large
    /// states are written as they are read; `--table` prints one table a page at a time.
    Show {
        #[command(flatten)]
        data_dir: DataDirArgs,
        /// Print one table only (operations, wallets, nonces, students, courses,
        /// enrollments, proposals, votes, nfts), a page at a time.
        #[arg(long, value_name = "TABLE")]
        table: Option<String>,
        /// With --table: start after this id.
        #[arg(long, value_name = "ID", requires = "table", allow_hyphen_values = true)]
        after: Option<String>,
        /// With --table: at most this many entries.
        #[arg(long, value_name = "N", default_value_t = 100, requires = "table")]
        limit: usize,
    },
    /// Print the state root (64 hex characters).
    Root {
        #[command(flatten)]
        data_dir: DataDirArgs,
    },
    /// Print one entry, or its absence, with a proof against the head of the ledger's state
    /// (the document `GET /v1/proof/{table}/{id}` answers; `swarmvm proof verify` checks it).
    Prove {
        #[command(flatten)]
        data_dir: DataDirArgs,
        /// The table (students, wallets, nonces, ...).
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// The entry's id.
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ProofCommand {
    /// Check a proof document (from `state prove` or `GET /v1/proof/...`): the value against
    /// the proof, the proof against the head's state root, and the head against the
    /// network's authorities (through the rotations the document carries) and its expiry.
    /// Prints the value or its absence; exits 1 when anything does not hold.
    Verify {
        /// The proof document (JSON), or - for standard input.
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
        #[command(flatten)]
        network: super::args::NetworkArgs,
        /// Check against this state root (64 hex characters) instead of a head.
        #[arg(long, value_name = "HEX", conflicts_with_all = ["network", "trust"])]
        root: Option<swarmvm_primitives::Hash32>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum LedgerCommand {
    /// Recompute everything the ledger claims from what it stores: every entry hashed into
    /// the state root, every trie node compared, the log, receipts and applied bundles
    /// checked against each other. Exits 1 when anything disagrees.
    Verify {
        #[command(flatten)]
        data_dir: DataDirArgs,
    },
    /// Copy the ledger's last commit into a new file, consistently, also while a node runs
    /// on it (one read transaction; the node keeps committing). The copy is read back and
    /// checked; restore it by putting it at DIR/ledger.redb while no node runs there.
    Backup {
        #[command(flatten)]
        data_dir: DataDirArgs,
        /// The file to write; it must not exist.
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
}

/// The table named `name`.
fn table_named(name: &str) -> Result<Table> {
    Table::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        anyhow::anyhow!(
            "no state table '{}'; the tables are {}",
            swarmvm_primitives::text::shown(name),
            names.join(", ")
        )
    })
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| "-".to_owned(), str::to_owned)
}

/// The state as text, table by table, read as it goes.
fn show_text(snapshot: &Snapshot) -> Result<()> {
    let summary = snapshot.summary();
    output::line(format!("network     {}", text(&summary["network"])));
    output::line(format!("state root  {}", text(&summary["state_root"])));
    output::line(format!("batches     {}", summary["batches"]));
    match swarmvm_bundle::ChainView::authorities(snapshot)? {
        Some(set) => {
            let ids: Vec<String> = set.members().map(|(id, _)| id.to_string()).collect();
            output::line(format!(
                "authorities {} of {}: {}",
                set.threshold(),
                set.len(),
                ids.join(", ")
            ));
        }
        None if summary["network"].is_string() => output::line(format!(
            "authorities 1 of 1: {} (the network's key)",
            text(&summary["network"])
        )),
        None => {}
    }
    let mut failed = None;
    for table in [
        Table::Operation,
        Table::Wallet,
        Table::Student,
        Table::Course,
        Table::Proposal,
        Table::Nft,
        Table::Wasm,
        Table::Revocation,
    ] {
        snapshot.scan(table, None, &mut |id, record| {
            let v = match swarmvm_vm::view::value_json(snapshot, id, &record) {
                Ok(v) => v,
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            };
            let line = match table {
                Table::Operation if v.is_object() => {
                    format!("operation   {id} -> wasm {} (fuel {})", text(&v["wasm"]), v["fuel"])
                }
                Table::Operation => format!("operation   {id} -> {}", text(&v)),
                Table::Wasm => match swarmvm_vm::wasm::split_wasm_id(id) {
                    Some((action, key)) => format!(
                        "wasm        {action} {} = {}",
                        serde_json::json!(swarmvm_vm::view::shown_bytes(&key)),
                        v
                    ),
                    None => format!("wasm        {id} = {v}"),
                },
                Table::Wallet => {
                    let nonce = swarmvm_vm::nonce_of(snapshot, id).unwrap_or(0);
                    format!("wallet      {id} {} (nonce {nonce})", text(&v["label"]))
                }
                Table::Student => format!(
                    "student     {id} {} ({}) courses {}",
                    text(&v["name"]),
                    text(&v["department"]),
                    v["courses"]
                ),
                Table::Course => {
                    format!("course      {id} {} ({})", text(&v["name"]), text(&v["department"]))
                }
                Table::Proposal => {
                    format!("proposal    {id} {}: {} votes", text(&v["description"]), v["votes"])
                }
                Table::Revocation => match id.split_once('/') {
                    Some(("wallet", wallet)) => format!("revoked     wallet {wallet}"),
                    Some((_, action)) => format!("withdrawn   action {action}"),
                    None => format!("revoked     {id}"),
                },
                _ => format!(
                    "nft         {id} {} owned by {} {}",
                    text(&v["name"]),
                    text(&v["owner"]),
                    v["metadata"]
                ),
            };
            output::line(line);
            true
        })?;
        if let Some(e) = failed.take() {
            return Err(e.into());
        }
    }
    Ok(())
}

pub(crate) fn run(cmd: StateCommand, out: OutputArgs) -> Result<ExitCode> {
    match cmd {
        StateCommand::Show { data_dir, table: None, .. } => {
            let snapshot = data_dir.snapshot()?;
            if out.json {
                let stdout = std::io::stdout();
                let mut lock = std::io::BufWriter::new(stdout.lock());
                snapshot.write_json(&mut lock).context("cannot print the state")?;
                writeln!(lock).context("cannot print the state")?;
                lock.flush().context("cannot print the state")?;
            } else {
                show_text(&snapshot)?;
            }
        }
        StateCommand::Show { data_dir, table: Some(name), after, limit } => {
            let table = table_named(&name)?;
            if limit == 0 || limit > 10_000 {
                bail!("--limit must be from 1 to 10000");
            }
            let snapshot = data_dir.snapshot()?;
            let page = swarmvm_node::reads::state_page(&snapshot, table, after.as_deref(), limit)?;
            if out.json {
                output::json(&page);
            } else {
                for e in &page.entries {
                    output::line(e.to_string());
                }
                if let Some(next) = page.next {
                    output::line(format!("next: --after {next}"));
                }
            }
        }
        StateCommand::Prove { data_dir, table, id } => {
            let table = table_named(&table)?;
            let answer = swarmvm_node::reads::proof(&data_dir.snapshot()?, table, &id)?;
            if out.json {
                output::json(&answer);
            } else {
                output::line(
                    serde_json::to_string_pretty(&answer).context("cannot print the proof")?,
                );
            }
        }
        StateCommand::Root { data_dir } => {
            let root = swarmvm_node::reads::state_root(&data_dir.snapshot()?);
            if out.json {
                output::json(&root);
            } else {
                output::line(root.state_root.to_hex());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `swarmvm proof ...`.
pub(crate) fn run_proof(cmd: ProofCommand, out: OutputArgs) -> Result<ExitCode> {
    use swarmvm_node::proofs::{Anchor, verify_answer};
    let ProofCommand::Verify { file, network, root } = cmd;
    let bytes = if file.as_os_str() == "-" {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_PROOF_DOCUMENT + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the proof document")?;
        bytes
    } else {
        super::args::read_bounded_file(&file, MAX_PROOF_DOCUMENT)?
    };
    if bytes.len() as u64 > MAX_PROOF_DOCUMENT {
        return Err(refused(format!("a proof document is at most {MAX_PROOF_DOCUMENT} bytes")));
    }
    let answer: swarmvm_node::protocol::ProofAnswer = serde_json::from_slice(&bytes)
        .map_err(|e| refused(format!("not a proof document: {e}")))?;
    if root.is_none() && network.network.is_none() && network.trust.is_empty() {
        bail!("nothing to check against: give --network FILE, --trust PUBFILE or --root HEX");
    }
    let loaded;
    let anchor = match root {
        Some(root) => Anchor::Root(root),
        None => {
            loaded = network.load()?;
            Anchor::Network(&loaded)
        }
    };
    let verified = verify_answer(&answer, anchor, swarmvm_token::unix_now())?;
    if out.json {
        output::json(&json!({
            "ok": true,
            "table": verified.table.name(),
            "id": verified.id,
            "present": verified.value.is_some(),
            "value": verified.value,
            "state_root": verified.root,
            "head": verified.head.as_ref().map(|h| json!({
                "seq": h.seq, "signers": h.signers, "expires_at": h.expires_at,
            })),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    // The id comes from the document: shown escaped, so it cannot draw lines of its own.
    let what =
        format!("{} {}", verified.table.name(), swarmvm_primitives::text::shown(&verified.id));
    match &verified.value {
        Some(v) => output::line(format!("present: {what} = {v}")),
        None => output::line(format!("absent: {what}")),
    }
    match &verified.head {
        Some(h) => output::line(format!(
            "verified against head seq {} (state root {}), signed by {}; it expires at {}",
            h.seq,
            verified.root,
            h.signers.join(", "),
            h.expires_at
        )),
        None => output::line(format!("verified against state root {}", verified.root)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The largest proof document read: the head, the proof and the rotations with room.
const MAX_PROOF_DOCUMENT: u64 = 16 * 1024 * 1024;

pub(crate) fn run_ledger(cmd: LedgerCommand, out: OutputArgs) -> Result<ExitCode> {
    match cmd {
        LedgerCommand::Verify { data_dir } => {
            let reader = data_dir.reader()?;
            match swarmvm_ledger::check(&reader) {
                Ok(report) => {
                    if out.json {
                        output::json(&json!({"ok": true, "report": report}));
                    } else {
                        output::line(format!(
                            "ok: {} entries hash to state root {}; {} trie nodes, {} batches, {} receipts and {} bundles agree",
                            report.entries,
                            report.state_root,
                            report.trie_nodes,
                            report.batches,
                            report.receipts,
                            report.bundles
                        ));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(swarmvm_ledger::CheckError::Read(e)) => {
                    Err(anyhow::Error::new(e).context("cannot read the ledger"))
                }
                Err(e) => Err(refused(format!("ledger verify failed: {e}"))),
            }
        }
        LedgerCommand::Backup { data_dir, out: file } => {
            let snapshot = data_dir.snapshot()?;
            let report = snapshot
                .backup(&file)
                .with_context(|| format!("cannot back up {}", data_dir.ledger_path().display()))?;
            if out.json {
                output::json(&json!({"ok": true, "backup": report}));
            } else {
                let at = report.seq.map_or_else(|| "no bundle".to_owned(), |s| format!("seq {s}"));
                output::line(format!(
                    "backed up {} at {at} (state root {}): {} rows, {} bytes",
                    file.display(),
                    report.state_root,
                    report.rows,
                    report.bytes
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
