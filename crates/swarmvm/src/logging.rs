//! Logs for the long-running commands: `tracing` to stderr, `RUST_LOG` to change the level.

/// Starts logging at `info` for swarmvm and `warn` for everything else, unless `RUST_LOG`
/// says otherwise. The consensus engine's own lines are off by default (it logs every retry
/// to an unreachable replica; the status and `/metrics` show the cluster): `RUST_LOG=
/// openraft=warn` brings them back.
pub(crate) fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,swarmvm_node=info,swarmvm_raft=info,openraft=off")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Starts logging only if `RUST_LOG` is set: for `bundle seed` and `bundle fetch`, whose
/// stderr otherwise carries nothing but a failure's one-line reason.
pub(crate) fn init_if_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        init();
    }
}
