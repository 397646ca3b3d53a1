//! `swarmvm node run|apply`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::json;
use swarmvm_node::{HttpLimits, Node, NodeLimits, NodeOptions};
use swarmvm_swarm::Source;

use super::OutputArgs;
use super::args::{DataDirArgs, NetworkArgs, PassphraseArgs, load_key};
use super::duration::{parse_duration, parse_interval};
use super::net::{NetArgs, runtime};
use crate::output;

/// `node run`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Read flags from this TOML file first: each flag's long name as a key (`data-dir =
    /// "..."`, `no-dht = true`, repeated flags as arrays). Then SWARMVM_<FLAG> variables
    /// (repeated flags comma-separated), then the command line, each over the one before.
    /// Annotated example: docs/node.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    data_dir: DataDirArgs,
    #[command(flatten)]
    trust: NetworkArgs,
    /// A bundle to fetch (.torrent file or magnet: link). Repeat for several.
    #[arg(long = "bundle", value_name = "TORRENT_OR_MAGNET")]
    bundles: Vec<String>,
    /// Serve the HTTP API on this address (like 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Add .torrent and .magnet files dropped in this folder.
    #[arg(long, value_name = "DIR")]
    watch: Option<PathBuf>,
    /// This peer's wallet (its id shows in the status).
    #[arg(long, value_name = "FILE")]
    wallet: Option<PathBuf>,
    /// A host name the HTTP API answers for besides IP addresses and localhost (`name`
    /// for any port, `name:port` for one). Repeat for several.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Bundles resolved, fetched or waiting at once, at most; more are refused (HTTP 429).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = at_least_one())]
    max_pending: usize,
    /// Refuse a magnet link whose metadata no peer sent within this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    resolve_timeout: Duration,
    /// Refuse a fetch that received no verified data for this long.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    stall_timeout: Duration,
    /// HTTP connections at once, at most (beyond it the longest-idle one is closed).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = at_least_one())]
    max_connections: usize,
    /// Run as the network's sequencer: take submitted contracts, cut them into bundles,
    /// sign, seed and apply them, and sign heads (needs --key).
    #[arg(long, requires = "keys")]
    sequencer: bool,
    /// An authority key the sequencer signs with; repeat until the threshold is met.
    #[arg(long = "key", value_name = "FILE", requires = "sequencer")]
    keys: Vec<PathBuf>,
    /// Cut a bundle this often when anything is queued.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval, requires = "sequencer")]
    cut_every: Duration,
    /// Cut as soon as this many contracts are queued (and put at most this many in a bundle).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = at_least_one(), requires = "sequencer")]
    cut_at: usize,
    /// Items queued at most; submissions beyond it get 429.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = at_least_one(), requires = "sequencer")]
    max_queue: usize,
    /// Heads expire this long after they are signed (the sequencer signs them again before).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "sequencer")]
    max_head_age: Duration,
    /// The rules version the sequencer's bundles name (default: the newest this build
    /// knows; never below the chain's). Keep a chain at its version until every node runs a
    /// build that knows the newer one.
    #[arg(long, value_name = "N", requires = "sequencer", value_parser = super::bundle::parse_rules)]
    rules: Option<swarmvm_primitives::Rules>,
    /// Run as one authority replica (with exactly one --key): the other replicas' HTTP base
    /// URLs (`http://host:port`). The replicas agree on one order through Raft (a majority
    /// must be up), co-sign every bundle and head (K signers must be up), and any of them
    /// takes submissions. Needs --http with a specific address: the others reach it there.
    #[arg(long = "cluster", value_name = "URL", num_args = 1.., requires = "sequencer")]
    cluster: Vec<String>,
    /// Follow the signed heads of the node at this URL (`http://host:port`): fetch the
    /// bundles it lacks and forward submitted contracts there. Or follow the network's link
    /// (`magnet:?xs=urn:btpk:...`, from `swarmvm network link`): the heads every Ed25519
    /// member puts in the BitTorrent DHT, and the bundles through the swarm, with no node to
    /// ask. Repeat for several; URLs and links combine (the newer valid head wins).
    #[arg(long = "follow", value_name = "URL|LINK", conflicts_with = "sequencer")]
    follow: Vec<String>,
    /// Take part in the BitTorrent DHT through these nodes (HOST:PORT; a private DHT, or
    /// the public one's routers): put and republish heads, announce and find the bundles'
    /// peers, follow links. With no value, start a DHT of its own that others join through
    /// this node. The BitTorrent session's own DHT is then off: a node runs one DHT.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT", num_args = 0..)]
    dht_bootstrap: Option<Vec<String>>,
    /// The DHT's UDP address (IP:PORT; port 0 for any free port).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    dht_bind: std::net::SocketAddrV4,
    /// How often the newest head's DHT items are put again and the newest bundle announced
    /// again (BEP 44 items live about two hours).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_interval)]
    dht_republish: Duration,
    /// How long a follower waits between polls when nothing changed, and after an error.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    poll: Duration,
    /// With --follow and an empty ledger: start from the state snapshot the newest head names
    /// (fetched over BitTorrent, every piece checked against the signed root), then follow.
    /// Without a snapshot anywhere, replay every bundle (and say so).
    #[arg(long, requires = "follow")]
    from_snapshot: bool,
    /// Publish the state every N bundles as a snapshot torrent, seed the newest two, and name
    /// the newest in the heads this node signs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: Option<u64>,
    /// Keep seeding only the newest N bundles: older ones below the newest snapshot this node
    /// seeds are removed (their records, receipts and log stay in the ledger; GET
    /// /v1/bundles/SEQ answers 410 for them). Default: keep all.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    keep_bundles: Option<u64>,
    #[command(flatten)]
    passphrase: PassphraseArgs,
    #[command(flatten)]
    net: NetArgs,
}

/// A count of at least 1.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum NodeCommand {
    /// Run a peer: fetch bundles, apply them in order, keep seeding them, serve the HTTP API.
    /// Stops cleanly on SIGINT or SIGTERM and resumes where it stopped.
    Run(Box<RunArgs>),
    /// Show fork evidence: validly signed bundles that claimed a seq already applied (each
    /// with both manifests). Exits 0 whether or not there is any.
    Evidence {
        #[command(flatten)]
        data_dir: DataDirArgs,
    },
    /// Apply a bundle folder to the ledger, offline (it must be next in order).
    Apply {
        /// The bundle folder.
        bundle_dir: PathBuf,
        #[command(flatten)]
        data_dir: DataDirArgs,
        #[command(flatten)]
        trust: NetworkArgs,
    },
}

pub(crate) fn run(cmd: NodeCommand, out: OutputArgs) -> Result<ExitCode> {
    match cmd {
        NodeCommand::Run(args) => {
            let RunArgs {
                config: _,
                data_dir,
                trust,
                bundles,
                http,
                watch,
                wallet,
                allow_hosts,
                max_pending,
                resolve_timeout,
                stall_timeout,
                max_connections,
                sequencer,
                keys,
                cut_every,
                cut_at,
                max_queue,
                max_head_age,
                rules,
                cluster,
                follow,
                dht_bootstrap,
                dht_bind,
                dht_republish,
                poll,
                from_snapshot,
                snapshot_every,
                keep_bundles,
                passphrase,
                net,
            } = *args;
            let sequencer = if sequencer {
                let keys = keys
                    .iter()
                    .map(|k| super::args::load_wallet(k, &passphrase))
                    .collect::<Result<Vec<_>>>()?;
                Some(swarmvm_node::SequencerOptions {
                    keys,
                    cut_every,
                    cut_at,
                    max_queue,
                    max_head_age,
                    rules: rules.unwrap_or_default(),
                    cluster,
                    ..swarmvm_node::SequencerOptions::default()
                })
            } else {
                None
            };
            let (links, urls): (Vec<String>, Vec<String>) =
                follow.into_iter().partition(|f| f.starts_with("magnet:"));
            // A link with no DHT given: the public DHT, unless --no-dht.
            let dht_bootstrap = match dht_bootstrap {
                None if !links.is_empty() && !net.no_dht => Some(swarmvm_dht::public_bootstrap()),
                other => other,
            };
            let dht = dht_bootstrap.map(|bootstrap| swarmvm_node::DhtOptions {
                bind: dht_bind,
                bootstrap,
                republish: dht_republish,
            });
            let follow = (!urls.is_empty() || !links.is_empty())
                .then_some(swarmvm_node::FollowOptions { urls, poll, from_snapshot, links });
            let limits = NodeLimits {
                max_pending,
                resolve_timeout,
                stall_timeout,
                http: HttpLimits { max_connections, ..HttpLimits::default() },
                ..NodeLimits::default()
            };
            let network = trust.load()?;
            let wallet = match wallet {
                Some(path) => Some(load_key(&path, &passphrase)?.public_key().id()),
                None => None,
            };
            let sources =
                bundles.iter().map(|b| Source::parse(b)).collect::<Result<Vec<_>, _>>()?;
            crate::logging::init();
            runtime()?.block_on(async move {
                let node = Node::start(NodeOptions {
                    data_dir: data_dir.data_dir.clone(),
                    network: Some(network),
                    swarm: net.options(),
                    wallet,
                    http,
                    watch,
                    allow_hosts,
                    limits,
                    sequencer,
                    follow,
                    snapshot_every,
                    keep_bundles,
                    dht,
                })
                .await?;
                for s in sources {
                    node.add_own(s, Vec::new())?;
                }
                // Signals are watched before anyone is told the node started: a SIGTERM sent
                // on that news stops it cleanly.
                let stop = super::net::stop_signals()?;
                let status = node.status();
                let started = json!({
                    "event": "started",
                    "peer_id": status.peer_id,
                    "wallet": status.wallet,
                    "listen": status.listen,
                    "http": node.http_addr().map(|a| a.to_string()),
                    "data_dir": data_dir.data_dir,
                    "last_seq": status.last_seq,
                    "state_root": status.state_root,
                    "dht": status.dht,
                });
                if out.json {
                    output::json(&started);
                } else {
                    output::line(format!(
                        "node {} listening on {} (http {}), last seq {}, state root {}",
                        status.peer_id,
                        status.listen.unwrap_or_default(),
                        node.http_addr().map_or_else(|| "off".to_owned(), |a| a.to_string()),
                        status.last_seq,
                        status.state_root
                    ));
                }
                // The ledger is open and the API bound: ready, for a service manager.
                super::notify::notify(&format!("READY=1\nSTATUS=last seq {}", status.last_seq));
                let signal = stop.await;
                super::notify::notify("STOPPING=1");
                node.shutdown().await;
                let status = node.status();
                if out.json {
                    output::json(&json!({"event": "stopped", "signal": signal, "last_seq": status.last_seq, "state_root": status.state_root}));
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        NodeCommand::Evidence { data_dir } => {
            let list = swarmvm_node::reads::evidence(&data_dir.snapshot()?)
                .context("cannot read the evidence")?;
            let evidence = &list.evidence;
            if out.json {
                output::json(&list);
            } else if evidence.is_empty() {
                output::line("no fork evidence");
            } else {
                for e in evidence {
                    output::line(format!(
                        "fork at seq {}: kept {}, refused {} (seen at {})",
                        e.seq, e.kept, e.other, e.seen_at
                    ));
                    output::line(format!("  kept manifest    {}", e.kept_manifest));
                    output::line(format!("  refused manifest {}", e.other_manifest));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Apply { bundle_dir, data_dir, trust } => {
            let network = trust.load()?;
            // The folder is checked before the ledger opens for writing: a refused folder
            // creates nothing.
            let set = if data_dir.ledger_path().exists() {
                swarmvm_bundle::set_in_force(&data_dir.snapshot()?, &network)?
            } else {
                network.genesis().clone()
            };
            let opened = swarmvm_bundle::open_bundle(&bundle_dir, network.id(), &set)
                .with_context(|| format!("bundle {} refused", bundle_dir.display()))?;
            let mut ledger = data_dir.open()?;
            let applied = swarmvm_node::apply_opened(&mut ledger, opened, &network)
                .context("bundle not applied")?;
            let report = &applied.report;
            if out.json {
                output::json(&json!({
                    "seq": applied.seq,
                    "bundle": applied.id,
                    "applied": report.entry.applied,
                    "rejected": report.entry.rejected,
                    "state_root": report.state_root.to_hex(),
                    "receipts": report.receipts,
                }));
            } else {
                output::line(format!(
                    "applied bundle seq {}: {} contracts applied, {} rejected; state root {}",
                    applied.seq, report.entry.applied, report.entry.rejected, report.state_root
                ));
                for r in report.receipts.iter().filter(|r| !r.is_applied()) {
                    output::line(format!(
                        "  rejected {}: {}",
                        r.contract,
                        r.reason.as_deref().unwrap_or("-")
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
