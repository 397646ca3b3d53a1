//! libtorrent (the Python binding, through `lt_tool.py fetch`) downloads signed bundles of
//! one, two and three 16 KiB pieces from `swarmvm bundle seed`, and the bundles a sequencer
//! cut from `node run` itself by their magnet links (issue 25, finding 9).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmvm_swarm::{MIN_PIECE_LENGTH, MagnetLink, TorrentFile};
use swarmvm_test_support::http::get;
use swarmvm_test_support::tools::lt_run;

use crate::bundle::{same_files, seed};
use crate::live::{genesis, sequencer};
use crate::node::{http_of, wait_status};
use crate::support::Env;

/// Students registered by the contract in the bundle of one, two and three pieces: about
/// 117 bytes of contract each, so that with the tokens and the manifest (about 2.5 KB) each
/// bundle ends well inside its last piece (about 7, 24 and 40 KB).
const STUDENTS: [usize; 3] = [40, 190, 330];

/// The torrent's piece count, after checking its pieces are 16 KiB.
fn pieces(torrent: &TorrentFile) -> u64 {
    assert_eq!(torrent.piece_length(), MIN_PIECE_LENGTH);
    torrent.total_length().div_ceil(u64::from(MIN_PIECE_LENGTH))
}

/// Writes c.json, a contract registering `n` students whose ids start with `prefix`.
fn students(env: &Env, prefix: &str, n: usize) {
    let actions: Vec<Value> = (0..n)
        .map(|i| {
            json!({"action": "register_student",
                "student": {"id": format!("{prefix}{i:04}"), "name": "n", "department": "d"}})
        })
        .collect();
    env.write("c.json", json!({ "actions": actions }).to_string());
}

/// libtorrent downloads `source` (a `.torrent` path or a magnet link) into `out` from `peer`
/// alone, within 30 s; panics if it fails.
fn lt_fetch(source: &str, out: &Path, peer: &str) {
    lt_run(&["fetch", source, &out.display().to_string(), peer, "30"]);
}

#[test]
fn libtorrent_fetches_one_two_and_three_piece_bundles_from_bundle_seed() {
    let env = Env::new();
    env.network("ed25519", "tokens.txt");
    for (count, n) in (1..=3u64).zip(STUDENTS) {
        let name = format!("bundle-{count}p");
        students(&env, &format!("S{count}-"), n);
        let signed = env.ok(&[
            "contract",
            "sign",
            "c.json",
            "--wallet",
            "peer1.pem",
            "--network",
            "auth.pub",
            "--nonce",
            "1",
        ]);
        env.write("contracts.jsonl", signed);
        let created = env.json(&[
            "bundle",
            "create",
            &name,
            "--key",
            "auth.pem",
            "--tokens",
            "tokens.txt",
            "--contracts",
            "contracts.jsonl",
            "--piece-length",
            "16384",
        ]);
        assert_eq!(created["seq"], 1, "{created}");
        let torrent_file = format!("{name}.torrent");
        let torrent = TorrentFile::read(&env.path(&torrent_file)).unwrap();
        assert_eq!(pieces(&torrent), count, "{created}");
        let (_seeder, listen) = seed(&env, &torrent_file, &name, &[]);
        let out = env.path(&format!("lt-{count}"));
        lt_fetch(&env.p(&torrent_file), &out, &listen);
        same_files(&out.join(&name), &env.path(&name));
    }
}

/// `GET /v1/bundles/SEQ` once the node seeds that bundle (its magnet is set), bounded.
fn published(http: SocketAddr, seq: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, bundle) = get(http, &format!("/v1/bundles/{seq}"));
        if code == 200 && bundle["magnet"].is_string() {
            return bundle;
        }
        assert!(Instant::now() < deadline, "bundle {seq} never seeded: {bundle}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn libtorrent_fetches_one_two_and_three_piece_cuts_from_a_publishing_node() {
    let env = Env::new();
    env.network("ed25519", "tokens.txt");
    let node = sequencer(&env, "200ms");
    let http = http_of(&node);
    // Seq 1, the registrations alone: one piece, as most cuts are.
    genesis(&env, http);
    let (code, status) = get(http, "/v1/status");
    assert_eq!(code, 200, "{status}");
    let listen = status["listen"].as_str().unwrap().to_owned();
    let node_url = format!("http://{http}");
    for (seq, n) in (1..=3u64).zip(STUDENTS) {
        if seq > 1 {
            // One contract large enough for a cut of `seq` pieces.
            students(&env, &format!("S{seq}-"), n);
            env.ok(&["contract", "submit", "c.json", "--node", &node_url, "--wallet", "peer1.pem"]);
            wait_status(http, |s| s["last_seq"] == seq);
        }
        let bundle = published(http, seq);
        let magnet = bundle["magnet"].as_str().unwrap();
        let hash = MagnetLink::parse(magnet).unwrap().info_hash.to_string();
        // The node keeps each bundle's torrent and files in its data folder.
        let torrent =
            TorrentFile::read(&env.path(&format!("seq/torrents/{hash}.torrent"))).unwrap();
        assert_eq!(torrent.info_hash().to_string(), hash);
        assert_eq!(pieces(&torrent), seq, "{bundle}");
        let out = env.path(&format!("lt-{seq}"));
        lt_fetch(magnet, &out, &listen);
        let name = torrent.name();
        same_files(&out.join(name), &env.path(&format!("seq/bundles/{hash}/{name}")));
        let manifest = std::fs::read_to_string(out.join(name).join("manifest.jwt")).unwrap();
        assert_eq!(manifest.trim_end(), bundle["manifest"], "seq {seq}");
    }
}
