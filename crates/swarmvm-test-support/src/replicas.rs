//! A live network of authority replicas, shared by the CLI tests and the benchmark: `n`
//! members with threshold `k`, each running `swarmvm node run --sequencer --key member<i>.pem
//! --network network.json --cluster ...` as its own process on 127.0.0.1, and followers of all
//! of them. Replicas can be SIGKILLed and restarted on their address. [`check_history`] checks
//! what every node applied against what the clients were told.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmvm_token::{
    AuthoritySet, IssueTime, Network, Signer, WalletEntry, issue_operations, issue_wallets,
};
use swarmvm_wallet::{Algorithm, Wallet};

use crate::http::get;
pub use crate::live::spawn_node;
use crate::live::{Proc, wait_status};

/// How the replicas run.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// The `swarmvm` binary.
    pub bin: PathBuf,
    /// Members (one replica each).
    pub members: usize,
    /// The threshold.
    pub threshold: u64,
    /// Followers (each follows every replica).
    pub followers: usize,
    /// Registered client wallets.
    pub wallets: usize,
    /// `--cut-every`.
    pub cut_every: String,
    /// `--cut-at`.
    pub cut_at: usize,
}

/// Replicas and their followers.
#[derive(Debug)]
pub struct ReplicaNet {
    dir: tempfile::TempDir,
    options: ReplicaOptions,
    /// The network's id.
    pub network: String,
    /// The wallets clients sign with.
    pub wallets: Vec<Wallet>,
    /// The members' ids, by replica.
    pub members: Vec<String>,
    /// Each replica's HTTP address (kept across restarts).
    pub addrs: Vec<SocketAddr>,
    /// The replicas running (`None` while killed).
    pub replicas: Vec<Option<Proc>>,
    /// The followers.
    pub followers: Vec<Proc>,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Writes a network of `members` keys (`member<i>.pem`) with threshold `threshold`
/// (`network.json`) in `dir`, and `wallets` client wallets; returns the network id, the
/// wallets, and the registration tokens (the note's operations and the wallets, signed by
/// member 0).
pub fn write_network(
    dir: &Path,
    members: usize,
    threshold: u64,
    wallets: usize,
) -> (String, Vec<Wallet>, Vec<String>) {
    let keys: Vec<Wallet> =
        (0..members).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
    for (i, key) in keys.iter().enumerate() {
        swarmvm_wallet::write_key_file(&dir.join(format!("member{i}.pem")), key, None, false)
            .unwrap();
    }
    let set = AuthoritySet::new(keys.iter().map(|k| k.public_key().clone()).collect(), threshold)
        .unwrap();
    let network = Network::from_set(set);
    std::fs::write(dir.join("network.json"), network.to_file()).unwrap();
    let wallets: Vec<Wallet> =
        (0..wallets).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
    let time = IssueTime { now: crate::now(), ttl: 86_400 };
    let signer = Signer::Wallet(&keys[0]);
    let ops: BTreeMap<String, swarmvm_token::Operation> =
        swarmvm_vm::HANDLER_NAMES.iter().map(|h| ((*h).to_owned(), (*h).into())).collect();
    let entries: Vec<WalletEntry> = wallets
        .iter()
        .enumerate()
        .map(|(i, w)| WalletEntry { label: format!("client{i}"), key: w.public_key().clone() })
        .collect();
    let tokens = vec![
        issue_operations(&signer, &ops, swarmvm_vm::HANDLER_NAMES, time).unwrap(),
        issue_wallets(&signer, &entries, time).unwrap(),
    ];
    (network.id().to_owned(), wallets, tokens)
}

/// The member ids of the keys [`write_network`] wrote in `dir`.
fn member_ids(dir: &Path, members: usize) -> Vec<String> {
    (0..members)
        .map(|i| {
            let (key, _) =
                swarmvm_wallet::read_key_file(&dir.join(format!("member{i}.pem")), None).unwrap();
            key.public_key().id().to_string()
        })
        .collect()
}

impl ReplicaNet {
    /// Writes the network (members' keys, `network.json`, client wallets), starts every
    /// replica, submits the registrations and waits for their bundle, then starts the
    /// followers.
    pub fn start(options: &ReplicaOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (network, wallets, tokens) =
            write_network(dir.path(), options.members, options.threshold, options.wallets);
        let keys = member_ids(dir.path(), options.members);
        let addrs: Vec<SocketAddr> = (0..options.members).map(|_| free_addr()).collect();
        let mut net = Self {
            dir,
            options: options.clone(),
            network,
            wallets,
            members: keys,
            addrs,
            replicas: Vec::new(),
            followers: Vec::new(),
        };
        net.replicas = (0..options.members).map(|i| Some(net.spawn_replica(i))).collect();
        let first = net.addrs[0];
        let body = json!({ "tokens": tokens }).to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, answer) =
                crate::http::request(first, "POST", "/v1/registrations", Some(&body));
            if code == 202 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the replicas never took the registrations: {answer}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for addr in &net.addrs {
            wait_status(*addr, Duration::from_secs(60), |s| s["last_seq"] == 1);
        }
        let urls = net.urls();
        net.followers = (0..options.followers)
            .map(|i| {
                let mut args: Vec<String> = vec![
                    "--data-dir".into(),
                    format!("follower{i}"),
                    "--network".into(),
                    "network.json".into(),
                    "--poll".into(),
                    "100ms".into(),
                    "--max-connections".into(),
                    "1024".into(),
                ];
                for u in &urls {
                    args.extend(["--follow".into(), u.clone()]);
                }
                spawn_node(&options.bin, net.dir.path(), "127.0.0.1:0", &args)
            })
            .collect();
        for f in &net.followers {
            wait_status(f.http, Duration::from_secs(60), |s| s["last_seq"] == 1);
        }
        net
    }

    fn spawn_replica(&self, i: usize) -> Proc {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            format!("replica{i}"),
            "--network".into(),
            "network.json".into(),
            "--sequencer".into(),
            "--key".into(),
            format!("member{i}.pem"),
            "--cut-every".into(),
            self.options.cut_every.clone(),
            "--cut-at".into(),
            self.options.cut_at.to_string(),
            "--max-queue".into(),
            "1000000".into(),
            "--max-connections".into(),
            "1024".into(),
            "--cluster".into(),
        ];
        args.extend(
            self.addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| format!("http://{a}")),
        );
        spawn_node(&self.options.bin, self.dir.path(), &self.addrs[i].to_string(), &args)
    }

    /// Every replica's URL.
    pub fn urls(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("http://{a}")).collect()
    }

    /// The folder the nodes run in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The running replicas and the followers.
    pub fn running(&self) -> Vec<SocketAddr> {
        self.replicas
            .iter()
            .flatten()
            .map(|p| p.http)
            .chain(self.followers.iter().map(|f| f.http))
            .collect()
    }

    /// The replica that leads now, waiting (at most `limit`) for one that all running
    /// replicas agree on.
    pub fn leader(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let roles: Vec<Option<String>> = self
                .replicas
                .iter()
                .map(|r| {
                    let p = r.as_ref()?;
                    let (code, s) = get(p.http, "/v1/status");
                    (code == 200)
                        .then(|| s["cluster"]["role"].as_str().map(str::to_owned))
                        .flatten()
                })
                .collect();
            if let Some(i) = roles.iter().position(|r| r.as_deref() == Some("leader")) {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader: {roles:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs replica `i`.
    pub fn kill(&mut self, i: usize) {
        self.replicas[i] = None;
    }

    /// Starts replica `i` again, on its address.
    pub fn restart(&mut self, i: usize) {
        self.replicas[i] = Some(self.spawn_replica(i));
    }

    /// `per_wallet` contracts for each wallet (nonces 1 up): `[wallet][nonce - 1]`.
    pub fn sign(&self, per_wallet: usize) -> Vec<Vec<String>> {
        crate::live::sign_for(&self.network, &self.wallets, per_wallet)
    }

    /// Waits (bounded) until every running node applied the same last seq with no item
    /// queued on any replica; returns that seq.
    pub fn settle(&self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let statuses: Vec<Value> =
                self.running().iter().map(|a| get(*a, "/v1/status").1).collect();
            let seqs: HashSet<u64> =
                statuses.iter().filter_map(|s| s["last_seq"].as_u64()).collect();
            let roots: HashSet<String> = statuses
                .iter()
                .filter_map(|s| s["state_root"].as_str().map(str::to_owned))
                .collect();
            let queued: u64 =
                statuses.iter().filter_map(|s| s["sequencer"]["queued"].as_u64()).sum();
            if seqs.len() == 1
                && roots.len() == 1
                && queued == 0
                && statuses.len() == self.running().len()
            {
                let seq = *seqs.iter().next().unwrap();
                // Quiet for a moment: nothing in flight either.
                std::thread::sleep(Duration::from_millis(600));
                let again = get(self.running()[0], "/v1/status").1["last_seq"].as_u64();
                if again == Some(seq) {
                    return seq;
                }
            }
            assert!(Instant::now() < deadline, "the nodes never settled: {statuses:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One applied contract, as a node's receipts give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedContract {
    /// Its id.
    pub id: String,
    /// Its signer.
    pub signer: String,
    /// Its nonce.
    pub nonce: u64,
}

/// Every contract the node at `http` applied, in its log's order.
pub fn applied_order(http: SocketAddr) -> Vec<AppliedContract> {
    applied_order_with(|path| {
        let (code, page) = get(http, path);
        assert_eq!(code, 200, "{page}");
        page
    })
}

/// [`applied_order`] of a node read through `get` (a path in, the page answered out): a node
/// in another network namespace, read from inside it.
pub fn applied_order_with(get: impl Fn(&str) -> serde_json::Value) -> Vec<AppliedContract> {
    let mut out = Vec::new();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut from = 1;
    loop {
        let page = get(&format!("/v1/receipts?from={from}&limit=10000"));
        let list = page["receipts"].as_array().cloned().unwrap_or_default();
        let mut next = from;
        let mut fresh = 0;
        for r in &list {
            let pos = r["position"].as_u64().unwrap();
            let index = r["index"].as_u64().unwrap();
            next = next.max(pos);
            if !seen.insert((pos, index)) {
                continue;
            }
            fresh += 1;
            if r["status"] == "applied" {
                out.push(AppliedContract {
                    id: r["contract"].as_str().unwrap().to_owned(),
                    signer: r["signer"].as_str().unwrap_or_default().to_owned(),
                    nonce: r["nonce"].as_u64().unwrap_or(0),
                });
            }
        }
        if fresh == 0 {
            break;
        }
        // A full page may end inside a batch: that batch is read again, the rest skipped.
        from = if list.len() < 10_000 { next + 1 } else { next };
    }
    out
}

/// The checker over a run's history: every node applied the same contracts in the same
/// order (one total order), every contract a client was answered 202 for (`acknowledged`)
/// was applied exactly once, no contract twice, and each wallet's nonces rise along the
/// order. Returns how many contracts were applied, or what broke.
pub fn check_history(nodes: &[SocketAddr], acknowledged: &[String]) -> Result<usize, String> {
    let orders: Vec<Vec<AppliedContract>> = nodes.iter().map(|n| applied_order(*n)).collect();
    check_orders(&orders, acknowledged)
}

/// [`check_history`] over the orders the nodes applied (`orders[node]`).
pub fn check_orders(
    orders: &[Vec<AppliedContract>],
    acknowledged: &[String],
) -> Result<usize, String> {
    let Some(first) = orders.first() else { return Err("no node".into()) };
    for (i, o) in orders.iter().enumerate().skip(1) {
        if o != first {
            let at =
                o.iter().zip(first).position(|(a, b)| a != b).unwrap_or(o.len().min(first.len()));
            return Err(format!(
                "node {i} applied another order than node 0 from contract {at} ({} and {} contracts)",
                o.len(),
                first.len()
            ));
        }
    }
    let mut count: HashMap<&str, usize> = HashMap::new();
    for c in first {
        *count.entry(c.id.as_str()).or_default() += 1;
    }
    if let Some((id, n)) = count.iter().find(|(_, n)| **n > 1) {
        return Err(format!("contract {id} was applied {n} times"));
    }
    for id in acknowledged {
        if !count.contains_key(id.as_str()) {
            return Err(format!("contract {id} was answered 202 and never applied"));
        }
    }
    let mut last: HashMap<&str, u64> = HashMap::new();
    for c in first {
        let prev = last.entry(c.signer.as_str()).or_insert(0);
        if c.nonce <= *prev {
            return Err(format!("wallet {}: nonce {} after {}", c.signer, c.nonce, *prev));
        }
        *prev = c.nonce;
    }
    Ok(first.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, signer: &str, nonce: u64) -> AppliedContract {
        AppliedContract { id: id.into(), signer: signer.into(), nonce }
    }

    /// The checker's rules, on histories made by hand (the checker runs over real nodes in
    /// the CLI tests): each breaks one rule.
    #[test]
    fn the_history_checker_finds_lost_doubled_reordered_and_out_of_order_contracts() {
        let good = vec![c("a", "w", 1), c("b", "v", 1), c("c", "w", 2)];
        let check = |orders: Vec<Vec<AppliedContract>>, acked: &[&str]| {
            check_orders(&orders, &acked.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(check(vec![good.clone(), good.clone()], &["a", "c"]), Ok(3));
        let lost = check(vec![good.clone()], &["a", "z"]).unwrap_err();
        assert!(lost.contains("never applied"), "{lost}");
        let mut twice = good.clone();
        twice.push(c("a", "w", 3));
        assert!(check(vec![twice], &[]).unwrap_err().contains("2 times"));
        let mut swapped = good.clone();
        swapped.swap(0, 1);
        assert!(check(vec![good, swapped], &[]).unwrap_err().contains("another order"));
        let backwards = vec![c("c", "w", 2), c("a", "w", 1)];
        assert!(check(vec![backwards], &[]).unwrap_err().contains("nonce 1 after 2"));
    }
}
