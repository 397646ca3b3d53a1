//! `swarmvm state show|root` and `swarmvm ledger verify`.

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
    }
}
