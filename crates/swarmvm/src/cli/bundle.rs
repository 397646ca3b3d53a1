//! `swarmvm bundle create|seed|fetch`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use swarmvm_swarm::{Source, Swarm, TorrentFile};
use url::Url;

use swarmvm_bundle::{CreateOptions, CreatedBundle, create_bundle, sign_bundle};
use swarmvm_primitives::Rules;
use swarmvm_token::{AuthoritySet, Network, unix_now};
use swarmvm_wallet::Wallet;

use super::OutputArgs;
use super::args::{PassphraseArgs, load_wallet, read_bounded_file, read_network};
use super::duration::parse_duration;
use super::net::{
    NetArgs, ProgressView, parse_tracker, progress_json, runtime, stop_signal, wait_with_progress,
};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BundleCommand {
    /// Hand a folder to the network's sequencer through any node: its registration tokens
    /// and modules go into the next cut; a folder with a signed manifest is published whole
    /// as the next bundle.
    Submit(super::submit::BundleSubmitArgs),
    /// Make a bundle (with --key: copy in the tokens and contracts, sign the manifest) and its
    /// v1 torrent; prints the info-hash and magnet link. Without --key, a plain torrent of
    /// any folder.
    Create {
        /// The bundle folder (created if missing).
        dir: PathBuf,
        /// An authority's key: sign a manifest for the bundle. Repeat to sign with several
        /// members of the authority set (the first is the manifest's `iss`).
        #[arg(long = "key", value_name = "AUTH")]
        keys: Vec<PathBuf>,
        /// The network file (`network init`); needed to sign with several keys. Without
        /// it the network is the one of --key's key alone.
        #[arg(long, value_name = "FILE", env = "SWARMVM_NETWORK", requires = "keys")]
        network: Option<PathBuf>,
        /// Rotate the authority set: the set in this file (`{"threshold", "authorities"}`,
        /// or a network file) is in force from the next bundle. Every key it adds must sign.
        #[arg(long, value_name = "FILE", requires = "keys")]
        authority_set: Option<PathBuf>,
        /// Registration tokens (one a line) to copy in as registration_tokens.txt.
        #[arg(long, value_name = "FILE", requires = "keys")]
        tokens: Option<PathBuf>,
        /// Signed contracts (one a line) to copy in as contracts.jsonl.
        #[arg(long, value_name = "FILE", requires = "keys")]
        contracts: Option<PathBuf>,
        /// A WebAssembly module (.wasm, or .wat text compiled here) to copy in as
        /// modules/<sha256>.wasm. Repeat for several.
        #[arg(long = "module", value_name = "FILE", requires = "keys")]
        modules: Vec<PathBuf>,
        /// The previous bundle's folder: this one is next (seq + 1, parent = its identity).
        #[arg(long, value_name = "PREV_DIR", requires = "keys")]
        after: Option<PathBuf>,
        /// Sign again a folder that already holds a manifest. If that bundle was published,
        /// this makes a second bundle for its seq: a fork, which every node keeps as evidence.
        #[arg(long, requires = "keys")]
        force: bool,
        /// The rules version the manifest names (default: the newest this build knows). An
        /// older one only extends or reproduces a chain that runs under it; a chain's rules
        /// never go back.
        #[arg(long, value_name = "N", requires = "keys", value_parser = parse_rules)]
        rules: Option<Rules>,
        #[command(flatten)]
        passphrase: PassphraseArgs,
        #[command(flatten)]
        torrent: TorrentArgs,
    },
    /// Add a signature to a bundle's manifest (`--key` of another member), and write its
    /// torrent again. The bundle's identity does not change; either torrent is the same bundle.
    Sign {
        /// The bundle folder.
        dir: PathBuf,
        /// The key that signs.
        #[arg(long, value_name = "AUTH")]
        key: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
        #[command(flatten)]
        torrent: TorrentArgs,
    },
    /// Check a folder against a torrent, then seed it until SIGINT or SIGTERM.
    Seed {
        /// The torrent file.
        torrent: PathBuf,
        /// The folder holding the torrent's data (a bundle folder).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Download a torrent or magnet link into OUT/NAME, check it, print where it is.
    Fetch {
        /// A .torrent file or a magnet: link.
        torrent_or_magnet: String,
        /// The folder to put the bundle in.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Give up after this long (like 90s, 15m).
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
        timeout: Duration,
        /// Keep seeding after the download until SIGINT or SIGTERM.
        #[arg(long)]
        seed: bool,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// How `bundle create` and `bundle sign` write a bundle's torrent.
#[derive(Debug, clap::Args)]
pub(crate) struct TorrentArgs {
    /// A tracker for the torrent's announce-list. Repeat for several (none by default).
    #[arg(long = "tracker", value_name = "URL", value_parser = parse_tracker)]
    trackers: Vec<Url>,
    /// Where to write the torrent (default DIR.torrent).
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
    /// Piece length in bytes, a power of two (default: chosen from the size).
    #[arg(long, value_name = "BYTES")]
    piece_length: Option<u32>,
}

pub(crate) fn run(cmd: BundleCommand, out: OutputArgs) -> Result<ExitCode> {
    match cmd {
        BundleCommand::Submit(args) => super::submit::bundle_submit(args, out),
        BundleCommand::Create {
            dir,
            keys,
            network,
            authority_set,
            tokens,
            contracts,
            modules,
            after,
            force,
            rules,
            passphrase,
            torrent,
        } => {
            let signed = if keys.is_empty() {
                None
            } else {
                let signers =
                    keys.iter().map(|k| load_wallet(k, &passphrase)).collect::<Result<Vec<_>>>()?;
                let network = match &network {
                    Some(path) => read_network(path)?,
                    None if signers.len() == 1 => Network::single(signers[0].public_key().clone()),
                    None => bail!(
                        "signing with several keys needs the network they govern: give --network FILE"
                    ),
                };
                let rotation = authority_set.as_deref().map(read_authority_set).transpose()?;
                let options = CreateOptions {
                    tokens: tokens.as_deref(),
                    contracts: contracts.as_deref(),
                    modules: &modules,
                    after: after.as_deref(),
                    now: unix_now(),
                    force,
                    authority_set: rotation.as_ref(),
                    follows: None,
                    parent_info_hash: None,
                    members: None,
                    rules: rules.unwrap_or_default(),
                };
                let refs: Vec<&Wallet> = signers.iter().collect();
                let created = create_bundle(&dir, &refs, &network, &options)
                    .with_context(|| format!("cannot make bundle {}", dir.display()))?;
                Some(created)
            };
            create(&dir, torrent, signed, out)
        }
        BundleCommand::Sign { dir, key, passphrase, torrent } => {
            let wallet = load_wallet(&key, &passphrase)?;
            let (id, signers) = sign_bundle(&dir, &wallet)
                .with_context(|| format!("cannot sign bundle {}", dir.display()))?;
            let (torrent, path) = write_torrent(&dir, torrent)?;
            if out.json {
                let mut v = describe(&torrent, &path);
                v["bundle"] = json!(id);
                v["signers"] = json!(signers);
                output::json(&v);
            } else {
                output::line(format!("bundle    {id}"));
                output::line(format!("signers   {}", signers.join(", ")));
                output::line(format!("info_hash {}", torrent.info_hash()));
                output::line(format!("magnet    {}", torrent.magnet()));
                output::line(format!("torrent   {}", path.display()));
            }
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Seed { torrent, dir, net } => {
            crate::logging::init_if_asked();
            runtime()?.block_on(seed(&torrent, &dir, &net, out))
        }
        BundleCommand::Fetch { torrent_or_magnet, out: dest, timeout, seed, net } => {
            crate::logging::init_if_asked();
            runtime()?.block_on(fetch(&torrent_or_magnet, &dest, timeout, seed, &net, out))
        }
    }
}

/// Reads a rotation's set: `{"threshold", "authorities"}`, or a network file (its set).
fn read_authority_set(path: &Path) -> Result<AuthoritySet> {
    let bytes = read_bounded_file(path, swarmvm_token::MAX_NETWORK_FILE as u64)?;
    let value = swarmvm_token::parse_strict(&bytes)
        .with_context(|| format!("{} is not json", path.display()))?;
    let set = if value.get("network").is_some() {
        Network::parse(&bytes).map(|n| n.genesis().clone())
    } else {
        AuthoritySet::from_json(&value)
    };
    set.with_context(|| format!("cannot use authority set {}", path.display()))
}

/// `DIR.torrent` beside DIR.
pub(crate) fn default_torrent_path(dir: &Path) -> Result<PathBuf> {
    let name = dir.file_name().context("the bundle folder has no name")?;
    let mut file = name.to_os_string();
    file.push(".torrent");
    Ok(dir.with_file_name(file))
}

pub(crate) fn describe(torrent: &TorrentFile, path: &Path) -> serde_json::Value {
    json!({
        "torrent": path,
        "name": torrent.name(),
        "info_hash": torrent.info_hash().to_string(),
        "magnet": torrent.magnet().to_string(),
        "files": torrent.files().len(),
        "bytes": torrent.total_length(),
        "piece_length": torrent.piece_length(),
        "trackers": torrent.trackers().iter().map(Url::as_str).collect::<Vec<_>>(),
    })
}

/// Writes the torrent of the folder `dir` (default `DIR.torrent`).
fn write_torrent(dir: &Path, args: TorrentArgs) -> Result<(TorrentFile, PathBuf)> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let torrent = TorrentFile::create(dir, &args.trackers, args.piece_length)?;
    let path = match args.out {
        Some(p) => p,
        None => default_torrent_path(dir)?,
    };
    std::fs::write(&path, torrent.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((torrent, path))
}

fn create(
    dir: &Path,
    args: TorrentArgs,
    signed: Option<CreatedBundle>,
    json: OutputArgs,
) -> Result<ExitCode> {
    let (torrent, path) = write_torrent(dir, args)?;
    if json.json {
        let mut v = describe(&torrent, &path);
        if let Some(b) = &signed {
            v["seq"] = json!(b.seq);
            v["bundle"] = json!(b.id);
            v["parent"] = json!(b.parent);
        }
        output::json(&v);
    } else {
        if let Some(b) = &signed {
            output::line(format!("seq       {}", b.seq));
            output::line(format!("bundle    {}", b.id));
        }
        output::line(format!("info_hash {}", torrent.info_hash()));
        output::line(format!("magnet    {}", torrent.magnet()));
        output::line(format!("torrent   {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

async fn seed(torrent_path: &Path, dir: &Path, net: &NetArgs, out: OutputArgs) -> Result<ExitCode> {
    let torrent = TorrentFile::read(torrent_path)?;
    let swarm = Swarm::start(net.options(), dir).await?;
    let transfer = swarm.seed(&torrent, dir).await?;
    transfer.wait_complete().await?;
    let listen = swarm.listen_addr().map(|a| a.to_string()).unwrap_or_default();
    if out.json {
        let mut v = describe(&torrent, torrent_path);
        v["event"] = json!("seeding");
        v["listen"] = json!(listen);
        v["dir"] = json!(dir);
        output::json(&v);
    } else {
        output::line(format!(
            "seeding {} ({}) from {} on {listen}",
            torrent.name(),
            torrent.info_hash(),
            dir.display()
        ));
    }
    let signal = stop_signal().await?;
    let p = transfer.progress();
    swarm.stop().await;
    if out.json {
        let mut v = progress_json("stopped", &p);
        v["signal"] = json!(signal);
        output::json(&v);
    } else {
        eprintln!("stopped on {signal}; uploaded {} bytes", p.uploaded);
    }
    Ok(ExitCode::SUCCESS)
}

async fn fetch(
    arg: &str,
    dest: &Path,
    limit: Duration,
    keep_seeding: bool,
    net: &NetArgs,
    out: OutputArgs,
) -> Result<ExitCode> {
    let started = Instant::now();
    let source = Source::parse(arg)?;
    let swarm = Swarm::start(net.options(), dest).await?;
    let (torrent, peers) = match source {
        Source::Torrent(t) => (t, Vec::new()),
        Source::Magnet(m) => {
            let remaining = limit.saturating_sub(started.elapsed());
            match tokio::time::timeout(remaining, swarm.resolve(&m, &[])).await {
                Ok(resolved) => resolved?,
                Err(_) => {
                    return Err(swarmvm_swarm::SwarmError::TimedOut {
                        seconds: limit.as_secs(),
                        peers: 0,
                        percent: 0.0,
                    }
                    .into());
                }
            }
        }
    };
    let transfer = swarm.fetch(&torrent, dest, &peers).await?;
    let mut view = ProgressView::new(torrent.name(), torrent.total_length(), out.json);
    wait_with_progress(&transfer, &mut view, started, limit).await?;
    let p = transfer.progress();
    if out.json {
        let mut v = progress_json("complete", &p);
        v["path"] = json!(transfer.path());
        v["info_hash"] = json!(torrent.info_hash().to_string());
        v["seconds"] = json!(started.elapsed().as_secs_f64());
        output::json(&v);
    } else {
        output::line(transfer.path().display().to_string());
    }
    if keep_seeding {
        let listen = swarm.listen_addr().map(|a| a.to_string()).unwrap_or_default();
        eprintln!("seeding {} on {listen} until SIGINT or SIGTERM", torrent.name());
        stop_signal().await?;
    }
    swarm.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// A `--rules` version this build knows.
pub(super) fn parse_rules(text: &str) -> Result<Rules, String> {
    let n: u64 = text.parse().map_err(|_| format!("'{text}' is not a rules version number"))?;
    Rules::new(n).map_err(|e| e.to_string())
}
