//! `swarmvm demo --live`: the note's scenario on a network that runs itself. A sequencer
//! holds the authority's key; N peer nodes follow it (each also follows the peer before it);
//! the registrations go in through the sequencer, and each peer submits its own contracts
//! through its own node over HTTP, which forwards them. Nobody hands a bundle to anyone:
//! the sequencer cuts bundles, the peers find them through signed heads and fetch them over
//! BitTorrent. Prints each contract's submit-to-applied-everywhere latency and whether every
//! root agrees.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use swarmvm_node::client::Client;
use swarmvm_node::protocol::{ContractState, RegistrationsBody};
use swarmvm_node::{FollowOptions, Node, NodeOptions, SequencerOptions};
use swarmvm_swarm::SwarmOptions;
use swarmvm_token::Network;
use swarmvm_vm::Hash32;

use super::OutputArgs;
use super::demo::{DemoArgs, Scenario, Workspace, contracts, explore, scenario, summary};
use crate::exit::refused;
use crate::output;

/// How often the demo's sequencer cuts.
const CUT_EVERY: Duration = Duration::from_millis(250);

fn url(node: &Node) -> Result<String> {
    Ok(format!("http://{}", node.http_addr().context("a node has no http address")?))
}

pub(crate) async fn demo(n: usize, args: &DemoArgs, out: OutputArgs) -> Result<ExitCode> {
    let (limit, wasm) = (args.timeout, args.wasm);
    let started = Instant::now();
    let deadline = started + limit;
    let tmp = Workspace::new(args.dir.clone())?;
    let root = tmp.path();
    let Scenario { authority, network, peers, tokens, modules, now } = scenario(root, n, wasm)?;
    let trust = Network::single(authority.public_key().clone());
    let loopback = || "127.0.0.1:0".parse().ok();

    let keys = vec![swarmvm_wallet::Wallet::from_pkcs8_der(&authority.to_pkcs8_der())?];
    let sequencer = Node::start(NodeOptions {
        data_dir: root.join("sequencer"),
        network: Some(trust.clone()),
        swarm: SwarmOptions::loopback(),
        wallet: Some(authority.id()),
        http: loopback(),
        sequencer: Some(SequencerOptions {
            keys,
            cut_every: CUT_EVERY,
            ..SequencerOptions::default()
        }),
        ..NodeOptions::default()
    })
    .await?;
    let client = Client::new(Duration::from_secs(30));
    let seq_url = url(&sequencer)?;
    let modules: Vec<String> = modules
        .iter()
        .map(|m| std::fs::read(m).map(|b| base64::engine::general_purpose::STANDARD.encode(b)))
        .collect::<Result<_, _>>()?;
    let body =
        RegistrationsBody { tokens: tokens.to_vec(), modules, ..RegistrationsBody::default() };
    client
        .submit_registrations(&seq_url, &body)
        .await
        .context("the sequencer refused the registrations")?;
    if !sequencer.wait_applied(1, deadline.saturating_duration_since(Instant::now())).await {
        bail!("the sequencer did not cut the registrations in time");
    }

    // Peer i follows the sequencer and the peer before it.
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    for (i, wallet) in peers.iter().enumerate() {
        let mut urls = vec![seq_url.clone()];
        if let Some(prev) = nodes.last() {
            urls.push(url(prev)?);
        }
        let node = Node::start(NodeOptions {
            data_dir: root.join(format!("peer{}", i + 1)),
            network: Some(trust.clone()),
            swarm: SwarmOptions::loopback(),
            wallet: Some(wallet.id()),
            http: loopback(),
            follow: Some(FollowOptions {
                urls,
                poll: Duration::from_millis(200),
                from_snapshot: false,
                links: Vec::new(),
            }),
            ..NodeOptions::default()
        })
        .await?;
        nodes.push(node);
    }

    // Each peer submits its own contracts through its own node.
    let signed = contracts(&peers, &network, now)?;
    let mut submitted: Vec<(usize, String, Instant)> = Vec::with_capacity(signed.len());
    for (i, token) in signed.iter().enumerate() {
        let peer = i.saturating_sub(3); // peer 1 signs the first four
        let via = url(&nodes[peer])?;
        let at = Instant::now();
        client
            .submit_contract(&via, token)
            .await
            .with_context(|| format!("peer{} could not submit a contract", peer + 1))?;
        submitted.push((peer, Hash32::digest(token.as_bytes()).to_hex(), at));
    }

    // Latency: from the submission until every node (sequencer and peers) applied it.
    let mut everywhere: Vec<Option<Duration>> = vec![None; submitted.len()];
    let mut outcome: Vec<String> = vec![String::new(); submitted.len()];
    let all: Vec<&Node> = std::iter::once(&sequencer).chain(nodes.iter()).collect();
    while everywhere.iter().any(Option::is_none) && Instant::now() < deadline {
        for (k, (_, id, at)) in submitted.iter().enumerate() {
            if everywhere[k].is_some() {
                continue;
            }
            let id_hash: Hash32 = id.parse()?;
            let states: Vec<String> = all
                .iter()
                .map(|node| {
                    let state = node.contract(&id_hash).ok().flatten().map(|v| v.state);
                    match state {
                        Some(ContractState::Applied) => "applied".to_owned(),
                        Some(ContractState::Rejected) => "rejected".to_owned(),
                        Some(ContractState::Pending) | None => String::new(),
                    }
                })
                .collect();
            if states.iter().all(|s| s == "applied" || s == "rejected") {
                everywhere[k] = Some(at.elapsed());
                outcome[k] = states[0].clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let roots: Vec<String> = all.iter().map(|n| n.status().state_root.to_hex()).collect();
    let states: Vec<Value> = all.iter().map(|n| n.state()).collect();
    let last_seqs: Vec<u64> = all.iter().map(|n| n.status().last_seq).collect();
    let seconds = started.elapsed().as_secs_f64();
    if !args.explore {
        for node in &nodes {
            node.shutdown().await;
        }
        sequencer.shutdown().await;
    }
    let done = everywhere.iter().all(Option::is_some);
    let agree = done && roots.iter().all(|r| *r == roots[0]);
    let ms = |d: &Option<Duration>| d.map(|d| (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0);

    if out.json {
        output::json(&json!({
            "network": network,
            "sequencer": seq_url,
            "contracts": submitted.iter().zip(&everywhere).zip(&outcome).map(|(((peer, id, _), d), o)| json!({
                "id": id, "via": format!("peer{}", peer + 1), "outcome": o, "latency_ms": ms(d),
            })).collect::<Vec<_>>(),
            "last_seq": last_seqs[0],
            "state": states[0],
            "agree": agree,
            "state_root": roots[0],
            "seconds": seconds,
        }));
    } else {
        output::line(format!(
            "swarmvm demo --live: a sequencer and {n} following peers on 127.0.0.1, network {network}"
        ));
        output::line(format!(
            "registrations through the sequencer ({seq_url}); bundles cut every {} ms",
            CUT_EVERY.as_millis()
        ));
        output::line(String::new());
        output::line(
            "contract                                                          via     outcome   submit → applied on every node",
        );
        for (((peer, id, _), d), o) in submitted.iter().zip(&everywhere).zip(&outcome) {
            let latency =
                ms(d).map_or_else(|| "not applied everywhere".to_owned(), |m| format!("{m} ms"));
            output::line(format!("{id}  peer{:<3} {o:<9} {latency}", peer + 1));
        }
        output::line(String::new());
        for line in summary(&states[0]) {
            output::line(format!("  {line}"));
        }
        output::line(String::new());
        if agree {
            output::line(format!(
                "all {} state roots agree after bundle seq {}: {} ({seconds:.2} s)",
                n + 1,
                last_seqs[0],
                roots[0]
            ));
        } else {
            output::line(format!("state roots DISAGREE or contracts missing ({seconds:.2} s)"));
        }
    }
    if args.explore {
        let mut named = vec![("sequencer".to_owned(), &sequencer)];
        named.extend(nodes.iter().enumerate().map(|(i, node)| (format!("peer{}", i + 1), node)));
        explore(&named, out.json).await?;
        for node in &nodes {
            node.shutdown().await;
        }
        sequencer.shutdown().await;
    }
    drop(tmp);
    if agree {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(refused("the peers did not all apply every contract with one state root"))
    }
}
