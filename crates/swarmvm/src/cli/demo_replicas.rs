//! `swarmvm demo --live --replicas N`: the note's scenario with no single server. N authority
//! members each run a replica holding only their own key, as its own `swarmvm node run`
//! process (a majority of them is the threshold); the peers follow every replica. Half the
//! contracts go in, the leader is SIGKILLed, the rest go in through the survivors, and the
//! demo prints how long it took until every peer held a K-signed head for a new bundle. The
//! killed replica is started again and catches up. Exits 0 only if every root agrees.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use swarmvm_node::client::Client;
use swarmvm_node::protocol::RegistrationsBody;
use swarmvm_node::{FollowOptions, Node, NodeOptions};
use swarmvm_swarm::SwarmOptions;
use swarmvm_token::{AuthoritySet, Network};
use swarmvm_vm::Hash32;
use swarmvm_wallet::{Algorithm, Wallet};

use super::OutputArgs;
use super::demo::{DemoArgs, Scenario, Workspace, contracts, scenario, summary};
use crate::exit::refused;
use crate::output;

/// One replica process; killed (SIGKILL) when dropped.
struct Replica {
    child: Child,
    http: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Starts replica `i` of `addrs` (this binary's `node run`), waiting for its first line.
fn start_replica(root: &std::path::Path, i: usize, addrs: &[SocketAddr]) -> Result<Replica> {
    let exe = std::env::current_exe().context("cannot find this program to start replicas")?;
    let mut args: Vec<String> = vec![
        "node".into(),
        "run".into(),
        "--data-dir".into(),
        format!("replica{i}"),
        "--network".into(),
        "network.json".into(),
        "--sequencer".into(),
        "--key".into(),
        format!("wallets/member{i}.pem"),
        "--cut-every".into(),
        "250ms".into(),
        "--no-dht".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--http".into(),
        addrs[i].to_string(),
        "--json".into(),
        "--cluster".into(),
    ];
    args.extend(
        addrs.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, a)| format!("http://{a}")),
    );
    let mut child = Command::new(exe)
        .args(&args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start a replica")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let first: Value = serde_json::from_str(line.trim())
        .with_context(|| format!("replica {i} did not start: {}", line.trim()))?;
    let http = first["http"].as_str().context("no http address")?.parse()?;
    Ok(Replica { child, http })
}

async fn status(client: &Client, addr: SocketAddr) -> Option<swarmvm_node::Status> {
    client.status(&format!("http://{addr}")).await.ok()
}

fn is_leader(s: &swarmvm_node::Status) -> bool {
    s.cluster.as_ref().is_some_and(|c| c.role == "leader")
}

pub(crate) async fn demo(
    n: usize,
    replicas: usize,
    args: &DemoArgs,
    out: OutputArgs,
) -> Result<ExitCode> {
    let limit = args.timeout;
    let started = Instant::now();
    let deadline = started + limit;
    let tmp = Workspace::new(args.dir.clone())?;
    let root = tmp.path();
    let Scenario { authority, peers, tokens, modules, now, .. } = scenario(root, n, args.wasm)?;
    // The scenario's authority is member 0; the others are new keys.
    let mut members = vec![Wallet::from_pkcs8_der(&authority.to_pkcs8_der())?];
    for _ in 1..replicas {
        members.push(Wallet::generate(Algorithm::Ed25519)?);
    }
    for (i, m) in members.iter().enumerate() {
        swarmvm_wallet::write_key_file(
            &root.join(format!("wallets/member{i}.pem")),
            m,
            None,
            false,
        )?;
    }
    let threshold = (replicas / 2 + 1) as u64;
    let set =
        AuthoritySet::new(members.iter().map(|m| m.public_key().clone()).collect(), threshold)?;
    let network = Network::from_set(set);
    std::fs::write(root.join("network.json"), network.to_file())?;
    let addrs: Vec<SocketAddr> = (0..replicas).map(|_| free_addr()).collect::<Result<_>>()?;
    let mut running: Vec<Option<Replica>> = Vec::with_capacity(replicas);
    for i in 0..replicas {
        running.push(Some(start_replica(root, i, &addrs)?));
    }
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    let client = Client::new(Duration::from_secs(30));
    let http = Client::new(Duration::from_secs(5));
    let modules: Vec<String> = modules
        .iter()
        .map(|m| {
            std::fs::read(m)
                .map(|b| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b))
        })
        .collect::<Result<_, _>>()?;
    let body =
        RegistrationsBody { tokens: tokens.to_vec(), modules, ..RegistrationsBody::default() };
    // Taken once the replicas found each other and elected a leader.
    loop {
        match client.submit_registrations(&urls[0], &body).await {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => {
                bail!("the replicas refused the registrations: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }

    // The peers follow every replica.
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    for (i, wallet) in peers.iter().enumerate() {
        nodes.push(
            Node::start(NodeOptions {
                data_dir: root.join(format!("peer{}", i + 1)),
                network: Some(network.clone()),
                swarm: SwarmOptions::loopback(),
                wallet: Some(wallet.id()),
                http: "127.0.0.1:0".parse().ok(),
                follow: Some(FollowOptions {
                    urls: urls.clone(),
                    poll: Duration::from_millis(100),
                    from_snapshot: false,
                    links: Vec::new(),
                }),
                ..NodeOptions::default()
            })
            .await?,
        );
    }
    let wait_all = |seq: u64| {
        let nodes = &nodes;
        async move {
            for node in nodes {
                if !node.wait_applied(seq, deadline.saturating_duration_since(Instant::now())).await
                {
                    return false;
                }
            }
            true
        }
    };
    if !wait_all(1).await {
        bail!("the peers did not apply the registrations in time");
    }

    // Half the contracts, through the peers' own nodes.
    let signed = contracts(&peers, network.id(), now)?;
    let half = signed.len() / 2;
    let submit = |from: usize, to: usize| {
        let (client, nodes, signed) = (&client, &nodes, &signed);
        async move {
            for (i, token) in signed.iter().enumerate().take(to).skip(from) {
                let peer = i.saturating_sub(3).min(nodes.len() - 1);
                let via = format!("http://{}", nodes[peer].http_addr().context("no http")?);
                let deadline = Instant::now() + Duration::from_secs(30);
                // During the election a submission may find no leader: sent again.
                loop {
                    match client.submit_contract(&via, token).await {
                        Ok(_) => break,
                        Err(e) if Instant::now() >= deadline => {
                            bail!("peer{} could not submit a contract: {e}", peer + 1)
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
            Ok::<(), anyhow::Error>(())
        }
    };
    submit(0, half).await?;
    let applied_half = wait_for_contracts(&nodes, &signed[..half], deadline).await;
    if !applied_half {
        bail!("the first half of the contracts was not applied in time");
    }

    // The leader is SIGKILLed; the rest go in through the survivors.
    let mut leader = None;
    while leader.is_none() && Instant::now() < deadline {
        for (i, r) in running.iter().enumerate() {
            let Some(r) = r else { continue };
            if status(&http, r.http).await.is_some_and(|s| is_leader(&s)) {
                leader = Some(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = leader.context("no leader was elected")?;
    let before = nodes.iter().map(|n| n.status().last_seq).max().unwrap_or(0);
    running[leader] = None;
    let killed = Instant::now();
    submit(half, signed.len()).await?;
    // Failover: until every peer holds a K-signed head for a bundle cut after the kill.
    let failover = loop {
        let all = nodes.iter().all(|node| {
            node.status()
                .head
                .is_some_and(|h| h.seq > before && h.signers.len() as u64 >= threshold)
        });
        if all {
            break Some(killed.elapsed());
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let done = wait_for_contracts(&nodes, &signed, deadline).await;
    let new_leader = {
        let mut found = None;
        for r in running.iter().flatten() {
            if let Some(s) = status(&http, r.http).await
                && is_leader(&s)
            {
                found = s.cluster.and_then(|c| c.leader);
            }
        }
        found
    };
    // The killed replica comes back and catches up.
    running[leader] = Some(start_replica(root, leader, &addrs)?);
    let last = nodes.iter().map(|n| n.status().last_seq).max().unwrap_or(0);
    let mut replica_roots = Vec::new();
    for r in running.iter().flatten() {
        loop {
            match status(&http, r.http).await {
                Some(s) if s.last_seq >= last => {
                    replica_roots.push(s.state_root.to_hex());
                    break;
                }
                _ if Instant::now() >= deadline => {
                    replica_roots.push(String::new());
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    let mut roots: Vec<String> = nodes.iter().map(|n| n.status().state_root.to_hex()).collect();
    roots.extend(replica_roots);
    let state = nodes[0].state();
    let seconds = started.elapsed().as_secs_f64();
    for node in &nodes {
        node.shutdown().await;
    }
    drop(running);
    let agree = done && failover.is_some() && roots.iter().all(|r| *r == roots[0]);
    let failover_ms = failover.map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0);
    let killed_member = members[leader].id().to_string();
    if out.json {
        output::json(&json!({
            "network": network.id(),
            "replicas": urls,
            "threshold": threshold,
            "killed": killed_member,
            "leader_after": new_leader,
            "failover_ms": failover_ms,
            "contracts": signed.len(),
            "last_seq": last,
            "state": state,
            "agree": agree,
            "state_root": roots[0],
            "seconds": seconds,
        }));
    } else {
        output::line(format!(
            "swarmvm demo --live --replicas {replicas}: {replicas} authority replicas ({threshold} of {replicas}, one key each) and {n} following peers on 127.0.0.1"
        ));
        output::line(format!("network {}", network.id()));
        output::line(format!(
            "{} contracts through the peers; after {half}, the leader (member{leader}, {killed_member}) was SIGKILLed",
            signed.len()
        ));
        match failover_ms {
            Some(ms) => output::line(format!(
                "failover: every peer held a K-signed head for a new bundle {ms} ms after the kill (new leader {})",
                new_leader.as_deref().unwrap_or("unknown")
            )),
            None => output::line("failover: no new K-signed head reached every peer in time"),
        }
        output::line(String::new());
        for line in summary(&state) {
            output::line(format!("  {line}"));
        }
        output::line(String::new());
        if agree {
            output::line(format!(
                "all {} state roots agree after bundle seq {last} (the killed replica caught up): {} ({seconds:.2} s)",
                roots.len(),
                roots[0]
            ));
        } else {
            output::line(format!("state roots DISAGREE or contracts missing ({seconds:.2} s)"));
        }
    }
    drop(tmp);
    if agree {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(refused("the replicas and peers did not all apply every contract with one state root"))
    }
}

/// Waits until every node holds every one of `contracts` (applied or rejected); false at the
/// deadline.
async fn wait_for_contracts(nodes: &[Node], contracts: &[String], deadline: Instant) -> bool {
    let ids: Vec<Hash32> = contracts.iter().map(|t| Hash32::digest(t.as_bytes())).collect();
    loop {
        let all = nodes.iter().all(|node| {
            ids.iter().all(|id| {
                node.contract(id).ok().flatten().is_some_and(|v| {
                    !matches!(v.state, swarmvm_node::protocol::ContractState::Pending)
                })
            })
        });
        if all {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
