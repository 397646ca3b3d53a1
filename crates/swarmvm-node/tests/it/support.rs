//! A network, a seeding authority and nodes, all on loopback.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use swarmvm_node::{BundleState, BundleStatus, Node, NodeOptions};
use swarmvm_swarm::{Source, Swarm, SwarmOptions, TorrentFile};
use swarmvm_test_support::net::TestNet;

/// Every wait is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(60);

/// An authority that seeds bundles.
pub struct Authority {
    pub dir: tempfile::TempDir,
    pub net: TestNet,
    pub seeder: Swarm,
}

impl Authority {
    pub async fn new(peers: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let net = TestNet::new(peers);
        let seeder =
            Swarm::start(SwarmOptions::loopback(), &dir.path().join("seeder")).await.unwrap();
        Self { dir, net, seeder }
    }

    /// Makes a bundle (see [`TestNet::bundle`]), seeds it, returns its folder and torrent.
    pub async fn publish(
        &self,
        name: &str,
        tokens: bool,
        contracts: &[String],
        after: Option<&Path>,
    ) -> (PathBuf, TorrentFile) {
        let dir = self.net.bundle(self.dir.path(), name, tokens, contracts, after);
        (dir.clone(), self.seed(&dir).await)
    }

    /// Seeds an existing folder as it is.
    pub async fn seed(&self, dir: &Path) -> TorrentFile {
        let torrent = TorrentFile::create(dir, &[], None).unwrap();
        let t = self.seeder.seed(&torrent, dir).await.unwrap();
        tokio::time::timeout(LIMIT, t.wait_complete()).await.unwrap().unwrap();
        torrent
    }

    /// A node trusting this authority, peering with its seeder, with an HTTP API.
    pub async fn node(&self, name: &str) -> Node {
        self.node_at(&self.dir.path().join(name)).await
    }

    pub async fn node_at(&self, data_dir: &Path) -> Node {
        Node::start(NodeOptions {
            data_dir: data_dir.to_path_buf(),
            network: Some(self.net.network.clone()),
            swarm: SwarmOptions {
                peers: vec![self.seeder.listen_addr().unwrap()],
                ..SwarmOptions::loopback()
            },
            wallet: None,
            http: Some("127.0.0.1:0".parse().unwrap()),
            watch: None,
            ..Default::default()
        })
        .await
        .unwrap()
    }
}

/// Waits (bounded) until the node's bundle `hash` satisfies `ok`; returns its status.
pub async fn wait_bundle(
    node: &Node,
    hash: &str,
    ok: impl Fn(&BundleStatus) -> bool,
) -> BundleStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(b) = node.bundles().into_iter().find(|b| b.info_hash == hash)
            && ok(&b)
        {
            return b;
        }
        assert!(Instant::now() < deadline, "bundle {hash} never got there: {:?}", node.bundles());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn add(node: &Node, torrent: &TorrentFile) -> String {
    node.add(Source::Torrent(torrent.clone())).unwrap().to_string()
}

pub fn is(state: BundleState) -> impl Fn(&BundleStatus) -> bool {
    move |b| b.state == state
}

/// An owned copy of a wallet (nodes take their keys by value).
pub fn copy(w: &swarmvm_wallet::Wallet) -> swarmvm_wallet::Wallet {
    swarmvm_wallet::Wallet::from_pkcs8_der(&w.to_pkcs8_der()).unwrap()
}

/// The node's HTTP address.
pub fn http(node: &Node) -> std::net::SocketAddr {
    node.http_addr().unwrap()
}

/// The node's HTTP base URL.
pub fn url(node: &Node) -> String {
    format!("http://{}", http(node))
}

/// Waits until `ok`, at most `limit`.
pub async fn within(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `ok`, at most [`LIMIT`].
pub async fn until(what: &str, ok: impl FnMut() -> bool) {
    within(LIMIT, what, ok).await;
}

/// A value from `node`'s `/metrics` (the line `NAME VALUE`).
pub fn metric(node: &Node, name: &str) -> f64 {
    let text = swarmvm_test_support::http::exchange(
        http(node),
        "GET",
        "/metrics",
        &[("Host", &http(node).to_string())],
        "",
    )
    .body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in the metrics:\n{text}"))
}
