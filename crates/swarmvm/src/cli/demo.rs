//! `swarmvm demo`: the design note's whole scenario, for real, on loopback.
//!
//! An authority and N peer wallets; the operations token (the note's four operations) and a
//! wallets token; the note's four contracts (peer 1 registers S001, adds C001, mints NFT001;
//! every peer votes on P001); one bundle with its manifest and torrent, seeded by the
//! authority; N peer nodes, each with its own BitTorrent session, ledger and download
//! folder, fetching the bundle over BitTorrent and applying what it downloaded itself. Then
//! each peer's wallet, operations, state and state root, and whether the roots agree.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use swarmvm_bundle::{CreateOptions, create_bundle};
use swarmvm_node::{BundleState, Node, NodeOptions};
use swarmvm_swarm::{Source, SwarmOptions};
use swarmvm_token::{
    IssueTime, Network, Operation, Signer, WalletEntry, issue_operations, issue_wallets,
    sign_contract, unix_now,
};
use swarmvm_vm::HANDLER_NAMES;
use swarmvm_wallet::{Algorithm, Wallet};

use super::OutputArgs;
use super::duration::parse_duration;
use super::net::runtime;
use crate::exit::refused;
use crate::output;

/// The note's scenario on 127.0.0.1: wallets, tokens, contracts, a bundle over BitTorrent,
/// N peers that verify and apply it; exits 0 only if every state root agrees.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Number of peers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) peers: u16,
    /// Give up if the peers have not applied the bundle by then.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Work in this folder (new or empty) and keep it: wallets, tokens, the bundle and every
    /// peer's data, for inspection. By default a temporary folder is used and removed.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<std::path::PathBuf>,
    /// Register vote_proposal as the tally WebAssembly module (docs/wasm/tally.wat, built
    /// into this binary) instead of the built-in handler; the module travels in the bundle.
    #[arg(long)]
    pub(crate) wasm: bool,
    /// Run the scenario on a network that runs itself: a sequencer and N following peers;
    /// each peer submits its contracts through its own node, and the bundles reach the peers
    /// by signed heads. Prints each contract's submit-to-applied latency.
    #[arg(long)]
    pub(crate) live: bool,
    /// With --live: N authority replicas (3 to 7), one key each, a majority of them the
    /// threshold, each its own process; the leader is SIGKILLed halfway, and the demo prints
    /// how long failover took.
    #[arg(long, value_name = "N", requires = "live", value_parser = clap::value_parser!(u16).range(3..=7))]
    pub(crate) replicas: Option<u16>,
    /// Keep the peers running after the scenario, each with its explorer page on 127.0.0.1
    /// (printed), until Ctrl-C.
    #[arg(long)]
    pub(crate) explore: bool,
}

/// `docs/wasm/tally.wat`, compiled by `demo --wasm` (no toolchain needed).
const TALLY_WAT: &str = include_str!("../../../../docs/wasm/tally.wat");

const NOTE_OPERATIONS: [&str; 4] =
    ["register_student", "add_course", "vote_proposal", "generate_nft"];

pub(crate) fn contracts(peers: &[Wallet], network: &str, now: u64) -> Result<Vec<String>> {
    let student = json!({"action": "register_student", "student": {"id": "S001", "name": "John Doe", "department": "Computer Science"}});
    let course = json!({"action": "add_course", "course": {"id": "C001", "name": "Blockchain Technology", "department": "Computer Science"}});
    let vote = json!({"action": "vote_proposal", "proposal": {"id": "P001", "description": "Increase Research Funding"}});
    let nft = json!({"action": "generate_nft", "nft": {"id": "NFT001", "name": "RareArt", "metadata": {
        "artist": "Alice", "creation_date": "2024-11-23", "description": "A rare piece of digital art."}}});
    let mut out = Vec::new();
    let first = &peers[0];
    for (nonce, action) in [(1, &student), (2, &course), (3, &vote), (4, &nft)] {
        out.push(sign_contract(first, network, nonce, std::slice::from_ref(action), now)?);
    }
    for peer in &peers[1..] {
        out.push(sign_contract(peer, network, 1, std::slice::from_ref(&vote), now)?);
    }
    Ok(out)
}

struct PeerReport {
    name: String,
    wallet: String,
    operations: swarmvm_node::protocol::Table,
    state: Value,
    state_root: String,
    fetched: u64,
    applied: bool,
}

pub(crate) fn summary(state: &Value) -> Vec<String> {
    let entries = |k: &str| state[k].as_object().cloned().unwrap_or_default();
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut lines = Vec::new();
    for (id, v) in entries("students") {
        lines.push(format!("student  {id} {} ({})", s(&v["name"]), s(&v["department"])));
    }
    for (id, v) in entries("courses") {
        lines.push(format!("course   {id} {} ({})", s(&v["name"]), s(&v["department"])));
    }
    for (id, v) in entries("proposals") {
        lines.push(format!("proposal {id} \"{}\": {} votes", s(&v["description"]), v["votes"]));
    }
    // Votes the tally module counted (demo --wasm): proposal id → count.
    let tally = state["wasm"]["vote_proposal"].as_object().cloned().unwrap_or_default();
    for (id, count) in tally.iter().filter(|(k, _)| !k.contains('/')) {
        lines.push(format!("proposal {id} (tally module): {} votes", s(count)));
    }
    for (id, v) in entries("nfts") {
        lines.push(format!(
            "nft      {id} {} owned by {} {}",
            s(&v["name"]),
            s(&v["owner"]),
            v["metadata"]
        ));
    }
    lines
}

pub(crate) fn run(args: DemoArgs, out: OutputArgs) -> Result<ExitCode> {
    let n = usize::from(args.peers);
    if let (true, Some(replicas)) = (args.live, args.replicas) {
        let replicas = usize::from(replicas);
        return runtime()?.block_on(super::demo_replicas::demo(n, replicas, &args, out));
    }
    if args.live {
        return runtime()?.block_on(super::demo_live::demo(n, &args, out));
    }
    runtime()?.block_on(demo(n, &args, out))
}

/// The demo's folder: a kept one the user named, or a temporary one removed at the end.
pub(crate) enum Workspace {
    Kept(std::path::PathBuf),
    Temporary(tempfile::TempDir),
}

impl Workspace {
    pub(crate) fn new(dir: Option<std::path::PathBuf>) -> Result<Self> {
        let Some(d) = dir else {
            let tmp = tempfile::Builder::new().prefix("swarmvm-demo-").tempdir();
            return Ok(Self::Temporary(tmp.context("cannot make a temporary folder")?));
        };
        let used = d.exists()
            && std::fs::read_dir(&d)
                .with_context(|| format!("cannot read {}", d.display()))?
                .next()
                .is_some();
        if used {
            bail!("{} is not empty; give a new or empty folder", d.display());
        }
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        Ok(Self::Kept(d))
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        match self {
            Self::Kept(p) => p,
            Self::Temporary(t) => t.path(),
        }
    }
}

/// The scenario's parts: the authority and peer wallets (written to `root/wallets` with mode
/// 0600, as `wallet new` writes them), the operations and wallets tokens, and the tally
/// module for `--wasm`.
pub(crate) struct Scenario {
    pub(crate) authority: Wallet,
    pub(crate) network: String,
    pub(crate) peers: Vec<Wallet>,
    pub(crate) tokens: [String; 2],
    pub(crate) modules: Vec<std::path::PathBuf>,
    pub(crate) now: u64,
}

pub(crate) fn scenario(root: &std::path::Path, n: usize, wasm: bool) -> Result<Scenario> {
    let authority = Wallet::generate(Algorithm::Ed25519)?;
    let network = authority.id().to_string();
    let peers: Vec<Wallet> =
        (0..n).map(|_| Wallet::generate(Algorithm::Ed25519)).collect::<Result<_, _>>()?;
    let wallets_dir = root.join("wallets");
    std::fs::create_dir_all(&wallets_dir)?;
    swarmvm_wallet::write_key_file(&wallets_dir.join("authority.pem"), &authority, None, false)?;
    std::fs::write(wallets_dir.join("authority.pub"), authority.public_key().to_spki_pem())?;
    for (i, w) in peers.iter().enumerate() {
        let path = wallets_dir.join(format!("peer{}.pem", i + 1));
        swarmvm_wallet::write_key_file(&path, w, None, false)?;
    }
    let now = unix_now();
    let time = IssueTime { now, ttl: swarmvm_token::DEFAULT_TTL_SECS };
    let mut ops: BTreeMap<String, Operation> =
        NOTE_OPERATIONS.iter().map(|o| ((*o).to_owned(), (*o).into())).collect();
    let mut modules = Vec::new();
    if wasm {
        let bytes = swarmvm_wasm::module_bytes(TALLY_WAT.as_bytes())?;
        let hash = swarmvm_wasm::check_module(&bytes)?.hash;
        let file = root.join("tally.wasm");
        std::fs::write(&file, bytes)?;
        modules.push(file);
        ops.insert("vote_proposal".into(), Operation::wasm(hash));
    }
    let signer = Signer::Wallet(&authority);
    let entries: Vec<WalletEntry> = peers
        .iter()
        .enumerate()
        .map(|(i, w)| WalletEntry { label: format!("peer{}", i + 1), key: w.public_key().clone() })
        .collect();
    let tokens = [
        issue_operations(&signer, &ops, HANDLER_NAMES, time)?,
        issue_wallets(&signer, &entries, time)?,
    ];

    Ok(Scenario { authority, network, peers, tokens, modules, now })
}

/// With `--explore`: prints each node's explorer address, then waits for Ctrl-C (or SIGTERM)
/// while the nodes keep running.
pub(crate) async fn explore(nodes: &[(String, &Node)], json: bool) -> Result<()> {
    // Listen for the signals before printing the addresses: a script that stops the demo as
    // soon as it reads them must still get a clean shutdown.
    let stop = super::net::stop_signals()?;
    for (name, node) in nodes {
        let addr = node.http_addr().context("a node has no http address")?;
        if json {
            output::json(
                &json!({"event": "explorer", "peer": name, "url": format!("http://{addr}/")}),
            );
        } else {
            output::line(format!("explorer  {name:<10} http://{addr}/"));
        }
    }
    if !json {
        output::line("the peers keep running; press Ctrl-C to stop");
    }
    stop.await;
    Ok(())
}

async fn demo(n: usize, args: &DemoArgs, out: OutputArgs) -> Result<ExitCode> {
    let (limit, wasm) = (args.timeout, args.wasm);
    let http = args.explore.then(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let started = Instant::now();
    let tmp = Workspace::new(args.dir.clone())?;
    let root = tmp.path();

    let Scenario { authority, network, peers, tokens, modules, now } = scenario(root, n, wasm)?;

    // The bundle: tokens, the note's contracts, the authority's manifest; then its torrent.
    let bundle = root.join("bundle-1");
    std::fs::create_dir_all(&bundle)?;
    std::fs::write(bundle.join("registration_tokens.txt"), tokens.join("\n") + "\n")?;
    std::fs::write(
        bundle.join("contracts.jsonl"),
        contracts(&peers, &network, now)?.join("\n") + "\n",
    )?;
    let options = CreateOptions { now, modules: &modules, ..CreateOptions::default() };
    let trust = Network::single(authority.public_key().clone());
    create_bundle(&bundle, &[&authority], &trust, &options)?;

    // The authority runs a node too: it applies the bundle and seeds it. N peer nodes, each
    // with its own session, ledger and folder, fetch it from the authority and each other.
    let authority_node = Node::start(NodeOptions {
        data_dir: root.join("authority"),
        network: Some(trust.clone()),
        swarm: SwarmOptions::loopback(),
        wallet: Some(authority.id()),
        http,
        ..NodeOptions::default()
    })
    .await?;
    let torrent = authority_node.publish(&bundle).await?;
    let seeder_addr = authority_node.listen_addr().context("the authority is not listening")?;
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    let mut known: Vec<SocketAddr> = vec![seeder_addr];
    for (i, wallet) in peers.iter().enumerate() {
        let node = Node::start(NodeOptions {
            data_dir: root.join(format!("peer{}", i + 1)),
            network: Some(trust.clone()),
            swarm: SwarmOptions { peers: known.clone(), ..SwarmOptions::loopback() },
            wallet: Some(wallet.id()),
            http,
            ..NodeOptions::default()
        })
        .await?;
        if let Some(addr) = node.listen_addr() {
            known.push(addr);
        }
        node.add(Source::Torrent(torrent.clone()))?;
        nodes.push(node);
    }
    let deadline = started + limit;
    for node in &nodes {
        let left = deadline.saturating_duration_since(Instant::now());
        node.wait_applied(1, left).await;
    }

    let mut reports = Vec::with_capacity(n);
    for (i, node) in nodes.iter().enumerate() {
        let status = node.status();
        let bundle_status = status.torrents.first();
        reports.push(PeerReport {
            name: format!("peer{}", i + 1),
            wallet: status.wallet.as_ref().map(ToString::to_string).unwrap_or_default(),
            operations: node.operations(),
            state: node.state(),
            state_root: status.state_root.to_hex(),
            fetched: bundle_status.map_or(0, |b| b.fetched),
            applied: bundle_status.is_some_and(|b| b.state == BundleState::Applied),
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    if !args.explore {
        for node in &nodes {
            node.shutdown().await;
        }
        authority_node.shutdown().await;
    }

    let first_root = reports[0].state_root.clone();
    let agree = reports.iter().all(|r| r.state_root == first_root && r.applied);
    let all_fetched = reports.iter().all(|r| r.fetched > 0);
    if out.json {
        output::json(&json!({
            "authority": network,
            "info_hash": torrent.info_hash().to_string(),
            "bundle_bytes": torrent.total_length(),
            "peers": reports.iter().map(|r| json!({
                "name": r.name, "wallet": r.wallet, "operations": r.operations, "state": r.state,
                "state_root": r.state_root, "fetched": r.fetched, "applied": r.applied,
            })).collect::<Vec<_>>(),
            "agree": agree,
            "state_root": first_root,
            "seconds": seconds,
        }));
    } else {
        output::line(format!(
            "swarmvm demo: {n} peers on 127.0.0.1, network (authority) {network}"
        ));
        output::line(format!(
            "bundle-1: {} bytes in 3 files, info-hash {}, seeded by the authority on {seeder_addr}",
            torrent.total_length(),
            torrent.info_hash()
        ));
        for r in &reports {
            output::line(String::new());
            output::line(format!("{}  wallet {}", r.name, r.wallet));
            output::line(format!(
                "  fetched {} bytes over BitTorrent; bundle {}",
                r.fetched,
                if r.applied { "applied" } else { "NOT applied" }
            ));
            let ops: Vec<&String> = r.operations.keys().collect();
            output::line(format!(
                "  operations  {}",
                ops.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
            for line in summary(&r.state) {
                output::line(format!("  {line}"));
            }
            output::line(format!("  state root  {}", r.state_root));
        }
        output::line(String::new());
        if agree {
            output::line(format!("all {n} state roots agree: {first_root} ({seconds:.2} s)"));
        } else {
            output::line(format!("state roots DISAGREE ({seconds:.2} s)"));
        }
    }
    if args.explore {
        let mut named = vec![("authority".to_owned(), &authority_node)];
        named.extend(nodes.iter().enumerate().map(|(i, node)| (format!("peer{}", i + 1), node)));
        explore(&named, out.json).await?;
        for node in &nodes {
            node.shutdown().await;
        }
        authority_node.shutdown().await;
    }
    drop(tmp);
    if !all_fetched {
        bail!("a peer did not fetch the bundle over BitTorrent");
    }
    if agree { Ok(ExitCode::SUCCESS) } else { Err(refused("the peers' state roots do not agree")) }
}
