//! `swarmvm state show|root`.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};
use swarmvm_ledger::Ledger;

use super::OutputArgs;
use super::args::DataDirArgs;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StateCommand {
    /// Print the whole state: registrations, nonces, students, courses, proposals, NFTs.
    Show {
        #[command(flatten)]
        data_dir: DataDirArgs,
    },
    /// Print the state root (64 hex characters).
    Root {
        #[command(flatten)]
        data_dir: DataDirArgs,
    },
}

/// The state of a ledger as the JSON `state show --json` prints.
pub(crate) fn state_json(ledger: &Ledger) -> Value {
    let mut value = ledger.vm().state().to_json();
    value["network"] = json!(ledger.network());
    value["state_root"] = json!(ledger.state_root().to_hex());
    value["batches"] = json!(ledger.log_len());
    value["last_bundle"] = match ledger.last_bundle() {
        Some(b) => json!({"seq": b.seq, "id": b.id}),
        None => Value::Null,
    };
    value
}

fn show_text(v: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    output::line(format!("network     {}", s(&v["network"])));
    output::line(format!("state root  {}", s(&v["state_root"])));
    output::line(format!("batches     {}", v["batches"]));
    let entries = |key: &str| v[key].as_object().cloned().unwrap_or_default();
    for (action, handler) in entries("operations") {
        output::line(format!("operation   {action} -> {}", s(&handler)));
    }
    for (id, w) in entries("wallets") {
        let nonce = v["nonces"][&id].as_u64().unwrap_or(0);
        output::line(format!("wallet      {id} {} (nonce {nonce})", s(&w["label"])));
    }
    for (id, st) in entries("students") {
        output::line(format!(
            "student     {id} {} ({}) courses {}",
            s(&st["name"]),
            s(&st["department"]),
            st["courses"]
        ));
    }
    for (id, c) in entries("courses") {
        output::line(format!("course      {id} {} ({})", s(&c["name"]), s(&c["department"])));
    }
    for (id, p) in entries("proposals") {
        output::line(format!("proposal    {id} {}: {} votes", s(&p["description"]), p["votes"]));
    }
    for (id, n) in entries("nfts") {
        output::line(format!(
            "nft         {id} {} owned by {} {}",
            s(&n["name"]),
            s(&n["owner"]),
            n["metadata"]
        ));
    }
}

pub(crate) fn run(cmd: StateCommand, out: OutputArgs) -> Result<ExitCode> {
    match cmd {
        StateCommand::Show { data_dir } => {
            let ledger = data_dir.open_read_only()?;
            let value = state_json(&ledger);
            if out.json {
                output::json(&value);
            } else {
                show_text(&value);
            }
        }
        StateCommand::Root { data_dir } => {
            let ledger = data_dir.open_read_only()?;
            let root = ledger.state_root().to_hex();
            if out.json {
                output::json(&json!({"state_root": root}));
            } else {
                output::line(root);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
