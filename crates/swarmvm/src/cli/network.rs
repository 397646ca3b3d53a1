//! `swarmvm network init|show|link`: a network's root of trust, and its links in the DHT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde_json::json;
use swarmvm_token::{AuthoritySet, Network};

use super::OutputArgs;
use super::args::read_network;
use crate::exit::refused;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum NetworkCommand {
    /// Write a network file: the authority set (public keys and a threshold) a network starts
    /// with, and its id. Hand it to every node (`--network FILE`) out of band.
    Init {
        /// An authority's key file (public or private; only the public key is written).
        /// Repeat for each member.
        #[arg(long = "authority", value_name = "PUBFILE", required = true, value_delimiter = ',')]
        authorities: Vec<PathBuf>,
        /// How many distinct members must sign each bundle (1 to the number of keys).
        #[arg(long, value_name = "K")]
        threshold: u64,
        /// Where to write the network file (not overwritten if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Show a network file: its id, threshold and members.
    Show {
        /// The network file.
        file: PathBuf,
    },
    /// Print the network's links, one for each Ed25519 member:
    /// `magnet:?xs=urn:btpk:<hex key>&s=<hex network id>` (BEP 46), the DHT slot where that
    /// member puts the newest head (docs/format.md, "Heads in the DHT").
    Link {
        /// The network file.
        file: PathBuf,
    },
}

pub(crate) fn run(cmd: NetworkCommand, out: OutputArgs) -> Result<ExitCode> {
    match cmd {
        NetworkCommand::Init { authorities, threshold, out: path } => {
            let mut keys = Vec::with_capacity(authorities.len());
            for file in &authorities {
                let (material, _) = swarmvm_wallet::read_key_file(file, None)
                    .with_context(|| format!("cannot use authority key {}", file.display()))?;
                keys.push(material.public_key().clone());
            }
            let set = AuthoritySet::new(keys, threshold)
                .map_err(|e| refused(format!("no network made: {e}")))?;
            let network = Network::from_set(set);
            write_new(&path, &format!("{}\n", network.to_file()))?;
            show(&network, Some(&path), out);
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Show { file } => {
            let network = read_network(&file).map_err(|e| refused(format!("{e:#}")))?;
            show(&network, None, out);
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Link { file } => {
            let network = read_network(&file).map_err(|e| refused(format!("{e:#}")))?;
            let links = swarmvm_dht::links(network.genesis(), network.id())
                .map_err(|e| refused(format!("no link: {e}")))?;
            if out.json {
                output::json(&json!({ "network": network.id(), "links": links }));
            } else {
                for link in &links {
                    output::line(link);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes `text` to a file that must not exist yet.
fn write_new(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

fn show(network: &Network, path: Option<&std::path::Path>, out: OutputArgs) {
    let set = network.genesis();
    let members: Vec<String> = set.members().map(|(id, _)| id.to_string()).collect();
    if out.json {
        let mut v = json!({
            "network": network.id(),
            "threshold": set.threshold(),
            "authorities": members,
        });
        if let Some(path) = path {
            v["file"] = json!(path);
        }
        output::json(&v);
    } else {
        output::line(format!("network   {}", network.id()));
        output::line(format!("threshold {} of {}", set.threshold(), set.len()));
        for id in &members {
            output::line(format!("authority {id}"));
        }
        if let Some(path) = path {
            output::line(format!("file      {}", path.display()));
        }
    }
}
