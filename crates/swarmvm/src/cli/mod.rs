//! Command-line definition and dispatch.

mod args;
mod bundle;
pub(crate) mod config;
mod contract;
mod demo;
mod demo_live;
mod demo_replicas;
mod duration;
mod exec;
mod module;
mod net;
mod network;
mod node;
mod notify;
mod state;
mod submit;
mod token;
mod wallet;

use std::process::ExitCode;

use anyhow::Result;

pub(crate) use args::OutputArgs;

/// swarmvm: peers share one smart-contract machine over BitTorrent; an authority's JWT
/// registration tokens say which operations it offers and which wallets may use it.
///
/// Exit status: 0 success, 1 refused (a rule or verification failed), 2 usage, I/O or
/// internal error, 3 timed out.
#[derive(Debug, clap::Parser)]
#[command(name = "swarmvm", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the design note's whole scenario on loopback: wallets, tokens, contracts, a bundle
    /// over BitTorrent, N peers that verify and apply it, and whether their roots agree.
    Demo(demo::DemoArgs),
    /// Create and inspect wallets (key pairs).
    #[command(subcommand)]
    Wallet(wallet::WalletCommand),
    /// Issue and verify registration tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Make, seed and fetch bundles as torrents.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Sign contracts.
    #[command(subcommand)]
    Contract(contract::ContractCommand),
    /// Check WebAssembly modules against the ABI.
    #[command(subcommand)]
    Module(module::ModuleCommand),
    /// Make and show network files: a network's authority set and threshold.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Run a peer node, or apply a bundle offline.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Run a contract on this peer's ledger, as each peer in the design note does.
    Exec(exec::ExecArgs),
    /// Show a peer's state and state root.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Check a peer's ledger file.
    #[command(subcommand)]
    Ledger(state::LedgerCommand),
    /// Check proofs of entries against signed heads.
    #[command(subcommand)]
    Proof(state::ProofCommand),
}

/// Runs the parsed command.
pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Wallet(cmd) => wallet::run(cmd, cli.output),
        Command::Token(cmd) => token::run(cmd, cli.output),
        Command::Demo(args) => demo::run(args, cli.output),
        Command::Node(cmd) => node::run(cmd, cli.output),
        Command::Bundle(cmd) => bundle::run(cmd, cli.output),
        Command::Contract(cmd) => contract::run(cmd, cli.output),
        Command::Module(cmd) => module::run(cmd, cli.output),
        Command::Network(cmd) => network::run(cmd, cli.output),
        Command::Exec(args) => exec::run(args, cli.output),
        Command::State(cmd) => state::run(cmd, cli.output),
        Command::Ledger(cmd) => state::run_ledger(cmd, cli.output),
        Command::Proof(cmd) => state::run_proof(cmd, cli.output),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
