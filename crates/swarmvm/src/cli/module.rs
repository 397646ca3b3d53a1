//! `swarmvm module check`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::OutputArgs;
use crate::exit::refused;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ModuleCommand {
    /// Check a WebAssembly module (.wasm, or .wat text) against the swarmvm ABI and print
    /// its hash (what an operations token names), size, imports and exports. Exits 1 when
    /// the module is refused.
    Check {
        /// The module file.
        file: PathBuf,
    },
}

pub(crate) fn run(cmd: ModuleCommand, out: OutputArgs) -> Result<ExitCode> {
    match cmd {
        ModuleCommand::Check { file } => {
            let raw =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let info = swarmvm_wasm::module_bytes(&raw)
                .and_then(|bytes| swarmvm_wasm::check_module(&bytes))
                .map_err(|e| refused(format!("module {} refused: {e}", file.display())))?;
            if out.json {
                output::json(&json!({
                    "hash": info.hash.to_hex(),
                    "size": info.size,
                    "imports": info.imports,
                    "exports": info.exports,
                    "initial_pages": info.initial_pages,
                    "table_elements": info.table_elements,
                }));
            } else {
                output::line(format!("module   {}", info.hash));
                output::line(format!("size     {} bytes", info.size));
                output::line(format!("imports  {}", info.imports.join(", ")));
                output::line(format!("exports  {}", info.exports.join(", ")));
                output::line(format!("memory   {} pages initially", info.initial_pages));
                output::line(format!("table    {} elements", info.table_elements));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
