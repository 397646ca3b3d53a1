//! The `swarmvm` command line. `main` only parses, runs and maps errors to exit codes; the
//! commands live in `cli/`, the work in the libraries.
//!
//! Exit status: 0 success; 1 refused (verification or a rule failed); 2 usage, I/O or
//! internal error; 3 timed out.

mod cli;
mod exit;
mod logging;
mod output;

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc: the VM's in-memory state is many small allocations; see BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A panic anywhere (the BitTorrent engine runs many tasks) prints one line, not a trace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let place =
            info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("internal error{place}: {}", message.replace('\n', " "));
    }));
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => exit::report(&err),
    }
}
