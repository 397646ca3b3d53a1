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

/// `mi_option_arena_eager_commit` in mimalloc v3's `mi_option_e` (`include/mimalloc.h`).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Lazy commit for mimalloc's arenas. By default mimalloc v3 commits a whole arena up front on
/// Linux (which overcommits), and a process then keeps every page it has touched: in the
/// load benchmark a node peaked at 84 MiB with eager commit against 34 MiB with lazy commit,
/// which was also faster (BENCHMARKS.md). The option counts only before the first allocation
/// reserves the first arena, that is before Rust's runtime starts, hence an ELF constructor.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static MIMALLOC_LAZY_COMMIT: extern "C" fn() = {
    extern "C" fn lazy_commit() {
        // SAFETY: `mi_option_set` stores an integer in mimalloc's option table. It runs once,
        // on the only thread, before any Rust code or allocation.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
    lazy_commit
};

fn main() -> ExitCode {
    // A panic anywhere (the BitTorrent engine runs many tasks) prints one line, not a trace.
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map(|l| (l.file(), l.line()));
        eprintln!("{}", panic_line(info.payload(), place));
    }));
    // `node run --config FILE` and SWARMVM_* variables become flags first.
    let args = match cli::config::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(err) => return exit::report(&err),
    };
    let cli = cli::Cli::parse_from(args);
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => exit::report(&err),
    }
}

/// The one line a panic prints: `error: internal error at FILE:LINE: MESSAGE`, like every
/// other error (`exit::report`), with the message on one line.
fn panic_line(payload: &(dyn std::any::Any + Send), place: Option<(&str, u32)>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    let place = place.map(|(file, line)| format!(" at {file}:{line}")).unwrap_or_default();
    format!("error: internal error{place}: {}", message.replace(['\n', '\r'], " "))
}

#[cfg(test)]
mod tests {
    use super::panic_line;

    #[test]
    fn a_panic_prints_one_error_line() {
        let line = panic_line(&"index out of\nbounds", Some(("src/x.rs", 7)));
        assert_eq!(line, "error: internal error at src/x.rs:7: index out of bounds");
        let owned: String = "boom".into();
        assert_eq!(panic_line(&owned, None), "error: internal error: boom");
        assert_eq!(panic_line(&42u8, None), "error: internal error: unknown panic");
    }
}
