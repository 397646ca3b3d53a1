//! The `swarmvm` command line. `main` only parses, runs and maps errors to exit codes; the
//! commands live in `cli/`, the work in the libraries.
//!
//! Exit status: 0 success; 1 refused (verification or a rule failed); 2 usage, I/O or
//! internal error; 3 timed out.

mod cli;
mod exit;
mod output;

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc: the VM's in-memory state is many small allocations; see BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => exit::report(&err),
    }
}
