//! Replicas over real HTTP on 127.0.0.1: one order for every replica, a new leader after the
//! leader dies, a restarted replica catching up from its redb log, and signed messages that
//! are refused from outsiders, to another replica or into another term.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use swarmvm_raft::{Applied, Cluster, ClusterError, ClusterOptions, Command, Envelope};
use swarmvm_token::AuthoritySet;
use swarmvm_wallet::{Algorithm, Wallet};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

struct Running {
    cluster: Cluster,
    rx: UnboundedReceiver<Applied>,
    before: Vec<Applied>,
    server: JoinHandle<()>,
    addr: std::net::SocketAddr,
}

impl Running {
    /// Proposes `command` through this replica (it forwards to the leader); its log index.
    async fn propose(&self, command: &str) -> u64 {
        self.cluster
            .propose(Command(command.to_owned()), Duration::from_secs(5))
            .await
            .expect("proposed")
    }

    /// Stops the replica (its engine, then its port); returns the address it served on.
    async fn stop(self) -> std::net::SocketAddr {
        self.server.abort();
        self.cluster.shutdown().await;
        self.addr
    }
}

/// `addr` bound again once the stopped replica's port is free (5 s at most).
async fn rebind(addr: std::net::SocketAddr) -> std::net::TcpListener {
    for _ in 0..50 {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("port {addr} not free again within 5 s")
}

struct Testbed {
    dir: tempfile::TempDir,
    keys: Vec<Wallet>,
    set: AuthoritySet,
    urls: Vec<String>,
}

impl Testbed {
    fn new(n: usize) -> (Self, Vec<std::net::TcpListener>) {
        let keys: Vec<Wallet> =
            (0..n).map(|_| Wallet::generate(Algorithm::Ed25519).expect("key")).collect();
        let set = AuthoritySet::new(keys.iter().map(|k| k.public_key().clone()).collect(), 2)
            .expect("set");
        let listeners: Vec<std::net::TcpListener> =
            (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
        let urls =
            listeners.iter().map(|l| format!("http://{}", l.local_addr().expect("addr"))).collect();
        (Self { dir: tempfile::tempdir().expect("dir"), keys, set, urls }, listeners)
    }

    fn network(&self) -> String {
        self.set.network_id().to_string()
    }

    fn key(&self, i: usize) -> Wallet {
        Wallet::from_pkcs8_der(&self.keys[i].to_pkcs8_der()).expect("copy")
    }

    async fn start(&self, i: usize, listener: std::net::TcpListener) -> Running {
        self.start_with(i, listener, None).await
    }

    /// Replica `i`'s options; with `machine`, snapshots are its image every 20 entries, and
    /// the log behind one keeps 5.
    fn options(&self, i: usize, machine: Option<&Arc<Mutex<Machine>>>) -> ClusterOptions {
        let peers =
            self.urls.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, u)| u.clone()).collect();
        let mut options = ClusterOptions::new(
            self.dir.path().join(format!("replica-{i}.redb")),
            self.key(i),
            self.network(),
            self.set.clone(),
            self.urls[i].clone(),
            peers,
        );
        if let Some(machine) = machine {
            let machine = machine.clone();
            options.image = Some(Arc::new(move || machine.lock().image()));
            options.snapshot_every = 20;
            options.keep_after_snapshot = 5;
        }
        options
    }

    async fn start_with(
        &self,
        i: usize,
        listener: std::net::TcpListener,
        machine: Option<&Arc<Mutex<Machine>>>,
    ) -> Running {
        // A replica stopped in this process lets go of its store once its engine's last task
        // ends, a moment after it was shut down.
        let mut tries = 0;
        let (cluster, before, rx) = loop {
            match Cluster::start(self.options(i, machine)).await {
                Err(ClusterError::Store(e)) if e.contains("already open") && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                started => break started.expect("start"),
            }
        };
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let app = swarmvm_raft::router(cluster.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Running { cluster, rx, before, server, addr }
    }

    async fn start_all(&self, listeners: Vec<std::net::TcpListener>) -> Vec<Running> {
        let mut running = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            running.push(self.start(i, l).await);
        }
        let joins: Vec<_> = running
            .iter()
            .map(|r| {
                let c = r.cluster.clone();
                tokio::spawn(async move { c.join(Duration::from_secs(10)).await })
            })
            .collect();
        for j in joins {
            j.await.expect("join task").expect("joined");
        }
        running
    }
}

/// Reads `n` commands from `rx`, within 10 s.
async fn take(rx: &mut UnboundedReceiver<Applied>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Applied::Command(c))) => out.push(c.command.0),
            Ok(Some(Applied::Restore { index, .. })) => {
                panic!("a snapshot as of {index} where commands were expected")
            }
            _ => panic!("only {} of {n} commands arrived: {out:?}", out.len()),
        }
    }
    out
}

fn commands(applied: &[Applied]) -> Vec<String> {
    applied
        .iter()
        .map(|a| match a {
            Applied::Command(c) => c.command.0.clone(),
            Applied::Restore { index, .. } => format!("restore@{index}"),
        })
        .collect()
}

/// A state machine for the snapshot test: the commands taken, in order, up to log index
/// `index`; its image is that as JSON.
#[derive(Debug, Default)]
struct Machine {
    index: u64,
    commands: Vec<String>,
    /// Images restored.
    restores: usize,
}

impl Machine {
    fn image(&self) -> (u64, Vec<u8>) {
        let json = serde_json::json!({"index": self.index, "commands": self.commands});
        (self.index, json.to_string().into_bytes())
    }

    fn take(&mut self, applied: Applied) {
        match applied {
            Applied::Command(c) => {
                assert!(c.index > self.index, "command {} after {}", c.index, self.index);
                self.index = c.index;
                self.commands.push(c.command.0);
            }
            Applied::Restore { index, image } => {
                let v: serde_json::Value = serde_json::from_slice(&image).expect("an image");
                assert_eq!(v["index"].as_u64(), Some(index));
                self.index = index;
                self.commands = serde_json::from_value(v["commands"].clone()).expect("commands");
                self.restores += 1;
            }
        }
    }
}

/// Feeds what `running` applies (first what it applied before it started) to a new machine.
fn feed(running: &mut Running) -> Arc<Mutex<Machine>> {
    let machine = Arc::new(Mutex::new(Machine::default()));
    feed_into(running, &machine);
    machine
}

fn feed_into(running: &mut Running, machine: &Arc<Mutex<Machine>>) {
    for a in std::mem::take(&mut running.before) {
        machine.lock().take(a);
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut from = std::mem::replace(&mut running.rx, rx);
    drop(tx);
    let machine = machine.clone();
    tokio::spawn(async move {
        while let Some(a) = from.recv().await {
            machine.lock().take(a);
        }
    });
}

/// Waits (10 s at most) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leader_of(running: &[Running]) -> Option<usize> {
    running.iter().position(|r| r.cluster.is_leader())
}

async fn wait_leader(running: &[Running], skip: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) =
            running.iter().enumerate().position(|(i, r)| Some(i) != skip && r.cluster.is_leader())
        {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_to_any_replica_commit_in_one_order_everywhere() {
    let (bed, listeners) = Testbed::new(3);
    let mut running = bed.start_all(listeners).await;
    wait_leader(&running, None).await;
    // Through each replica, followers included: they forward to the leader.
    for round in 0..4 {
        for (i, r) in running.iter().enumerate() {
            let index = r.propose(&format!("c{round}-{i}")).await;
            assert!(index > 0);
        }
    }
    let mut orders = Vec::new();
    for r in &mut running {
        orders.push(take(&mut r.rx, 12).await);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    let mut sorted = orders[0].clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 12, "each command once: {:?}", orders[0]);
    let status = running[0].cluster.status();
    assert_eq!(status.members.len(), 3);
    assert!(status.leader.is_some());
    assert!(status.commit_index >= 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leader_is_replaced_and_restarted_it_catches_up_from_its_log() {
    let (bed, listeners) = Testbed::new(3);
    let mut running = bed.start_all(listeners).await;
    let leader = wait_leader(&running, None).await;
    for i in 0..3 {
        running[0].propose(&format!("before-{i}")).await;
    }
    for r in &mut running {
        take(&mut r.rx, 3).await;
    }
    // The leader dies: its engine stops and its port closes.
    let dead = running.remove(leader);
    let addr = dead.stop().await;
    let killed = Instant::now();
    let new = wait_leader(&running, None).await;
    let failover = killed.elapsed();
    println!("failover took {failover:?}");
    assert!(failover < Duration::from_secs(5), "failover took {failover:?}");
    for i in 0..3 {
        running[new].propose(&format!("after-{i}")).await;
    }
    for r in &mut running {
        assert_eq!(take(&mut r.rx, 3).await, ["after-0", "after-1", "after-2"]);
    }
    // Back on its port, from its log: what it applied before comes back in order, the rest
    // arrives from the new leader.
    let mut restarted = bed.start(leader, rebind(addr).await).await;
    restarted.cluster.join(Duration::from_secs(5)).await.expect("rejoined");
    assert_eq!(commands(&restarted.before), ["before-0", "before-1", "before-2"]);
    assert_eq!(take(&mut restarted.rx, 3).await, ["after-0", "after-1", "after-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_replays_and_other_terms_are_refused() {
    let (bed, listeners) = Testbed::new(3);
    let running = bed.start_all(listeners).await;
    wait_leader(&running, None).await;
    let network = bed.network();
    // A replica whose key is not a member does not start.
    let outsider = Wallet::generate(Algorithm::Ed25519).expect("key");
    let refused = Cluster::start(ClusterOptions::new(
        bed.dir.path().join("outsider.redb"),
        Wallet::from_pkcs8_der(&outsider.to_pkcs8_der()).expect("copy"),
        network.clone(),
        bed.set.clone(),
        "http://127.0.0.1:9".into(),
        bed.urls.clone(),
    ))
    .await;
    assert!(matches!(refused, Err(ClusterError::Message(_))), "{refused:?}");

    let http = reqwest::Client::new();
    let post = |url: &str, env: &Envelope| {
        http.post(format!("{url}/v1/cluster/raft/vote")).json(env).send()
    };
    let member = |i: usize| bed.keys[i].id().to_string();
    let vote = |term: u64| {
        serde_json::json!({
            "vote": {"leader_id": {"term": term, "node_id": swarmvm_raft::node_id(&member(0))}, "committed": false},
            "last_log_id": null
        })
        .to_string()
    };
    let term = running[1].cluster.status().term;
    // An outsider's vote request, signed by its own key.
    let theirs =
        Envelope::seal(&outsider, "vote", &network, &member(1), term, 1, vote(term)).expect("seal");
    let answer = post(&bed.urls[1], &theirs).await.expect("sent");
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.expect("text").contains("not a member"));
    // A member's request sent to replica 1, replayed to replica 2.
    let to_one = Envelope::seal(&bed.keys[0], "vote", &network, &member(1), term, 2, vote(term))
        .expect("seal");
    let answer = post(&bed.urls[2], &to_one).await.expect("sent");
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.expect("text").contains("another replica"));
    // Replayed into another term: the signed term no longer holds once changed, and a body of
    // another term than the one signed is refused.
    let mut bumped = to_one.clone();
    bumped.term += 1;
    let answer = post(&bed.urls[1], &bumped).await.expect("sent");
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.expect("text").contains("signature"));
    let mismatched =
        Envelope::seal(&bed.keys[0], "vote", &network, &member(1), term + 5, 3, vote(term))
            .expect("seal");
    let answer = post(&bed.urls[1], &mismatched).await.expect("sent");
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.expect("text").contains("term"));
    // Another network.
    let other =
        Envelope::seal(&bed.keys[0], "vote", "another-network", &member(1), term, 4, vote(term))
            .expect("seal");
    let answer = post(&bed.urls[1], &other).await.expect("sent");
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.expect("text").contains("another network"));
    // A proposal taken once is refused when replayed, even within its term.
    let term = running[1].cluster.status().term;
    let propose =
        Envelope::seal(&bed.keys[0], "propose", &network, &member(1), term, 99, "\"once\"".into())
            .expect("seal");
    let url = format!("{}/v1/cluster/raft/propose", bed.urls[1]);
    let first = http.post(&url).json(&propose).send().await.expect("sent");
    assert_eq!(first.status(), 200, "{:?}", first.text().await);
    let again = http.post(&url).json(&propose).send().await.expect("sent");
    assert_eq!(again.status(), 403);
    assert!(again.text().await.expect("text").contains("replay"));
    // None of that moved the cluster: one leader, still answering.
    assert!(leader_of(&running).is_some());
    running[2].propose("still").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_compacted_into_snapshots_and_a_replica_far_behind_is_sent_one() {
    let (bed, listeners) = Testbed::new(3);
    let machines: Vec<Arc<Mutex<Machine>>> =
        (0..3).map(|_| Arc::new(Mutex::new(Machine::default()))).collect();
    let mut running = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        running.push(bed.start_with(i, l, Some(&machines[i])).await);
    }
    for r in &running {
        let c = r.cluster.clone();
        tokio::spawn(async move { c.join(Duration::from_secs(10)).await });
    }
    for (r, m) in running.iter_mut().zip(&machines) {
        feed_into(r, m);
    }
    let leader = wait_leader(&running, None).await;
    // A replica other than the leader stops.
    let behind = (leader + 1) % 3;
    let stopped = running.remove(behind);
    let addr = stopped.stop().await;
    let leader = running.iter().position(|r| r.cluster.is_leader()).expect("still leader");
    for i in 0..100 {
        running[leader].propose(&format!("c-{i}")).await;
    }
    let others: Vec<usize> = (0..3).filter(|i| *i != behind).collect();
    until("both running replicas took 100 commands", || {
        others.iter().all(|i| machines[*i].lock().commands.len() == 100)
    })
    .await;
    // Snapshots of the machine were taken, and the log before them purged.
    until("a snapshot past entry 80 on the leader", || {
        running[leader].cluster.status().snapshot_index >= 80
    })
    .await;

    // Back, with the leader's log purged past where it stopped: it is sent the snapshot.
    let fresh = Arc::new(Mutex::new(Machine::default()));
    let mut restarted = bed.start_with(behind, rebind(addr).await, Some(&fresh)).await;
    restarted.cluster.join(Duration::from_secs(5)).await.expect("rejoined");
    feed_into(&mut restarted, &fresh);
    running[leader].propose("last").await;
    let expected: Vec<String> =
        (0..100).map(|i| format!("c-{i}")).chain(["last".to_owned()]).collect();
    until("the restarted replica holds every command", || fresh.lock().commands == expected).await;
    assert!(fresh.lock().restores >= 1, "it caught up without a snapshot: the log was not purged");
    assert_eq!(machines[others[0]].lock().commands, expected);

    // A replica restarted from its own store starts from its newest snapshot and the entries
    // after it, and ends where it was.
    // `running` holds the replicas of `others`, in order.
    let j = 1 - leader;
    let again = others[j];
    let was = machines[again].lock().commands.clone();
    let r = running.remove(j);
    let addr = r.stop().await;
    let mut reopened = bed.start_with(again, rebind(addr).await, None).await;
    assert!(
        matches!(reopened.before.first(), Some(Applied::Restore { index, .. }) if *index >= 80),
        "not from its snapshot: {:?}",
        commands(&reopened.before).first()
    );
    let machine = feed(&mut reopened);
    assert_eq!(machine.lock().commands, was);
}
