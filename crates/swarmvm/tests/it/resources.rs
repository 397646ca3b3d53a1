//! A node under attack from 127.0.0.1: a thousand hostile `POST /v1/bundles` (torrents that
//! declare a terabyte, magnets nobody can resolve, junk, single files, trackers on other
//! schemes) while a thousand slow clients trickle request headers and reconnect whenever they
//! are shed. The node must keep answering `/v1/status` within 100 ms, stay under 200 MiB of
//! resident memory, and still fetch and apply a real bundle posted in the middle of it.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use swarmvm_test_support::bencode::{B, encode, file, s};
use swarmvm_test_support::http::{get, post};

use crate::bundle::seed;
use crate::node::{create_b1, http_of, network, wait_status};
use crate::support::{Daemon, Env};

const SLOW_CLIENTS: usize = 1_000;
const HOSTILE_POSTS: usize = 1_000;
const POSTERS: usize = 4;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `i`th hostile request body.
fn hostile(i: usize) -> String {
    let magnet = |tail: &str| json!({"magnet": format!("magnet:?xt=urn:btih:{:040x}{tail}", 0xdead_0000_u64 + i as u64)});
    let terabyte = || {
        let info = B::D(vec![
            (
                "files",
                B::L(vec![
                    file(&["contracts.jsonl"], 1 << 40),
                    file(&["manifest.jwt"], 900),
                    file(&["registration_tokens.txt"], 10),
                ]),
            ),
            ("name", s(format!("huge-{i}"))),
            ("piece length", B::I(1 << 26)),
            ("pieces", B::S(vec![9; 16_385 * 20])),
        ]);
        encode(&B::D(vec![("info", info)]))
    };
    let single = || {
        let info = B::D(vec![
            ("length", B::I(1 << 30)),
            ("name", s(format!("one-{i}"))),
            ("piece length", B::I(1 << 24)),
            ("pieces", B::S(vec![3; 64 * 20])),
        ]);
        encode(&B::D(vec![("info", info)]))
    };
    match i % 6 {
        0 => json!({"torrent_base64": b64(&terabyte())}),
        1 | 2 => magnet("&tr=http%3A%2F%2F127.0.0.1%3A9%2Fannounce"),
        3 => json!({"torrent_base64": b64(&single())}),
        4 => magnet("&tr=gopher%3A%2F%2F127.0.0.1%3A6379%2F_x"),
        _ => json!({"torrent_base64": "bm90IGEgdG9ycmVudA==", "junk": [1, 2, 3]}),
    }
    .to_string()
}

/// Peak resident memory of process `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Keeps `SLOW_CLIENTS` connections open that send part of a request's headers a byte at a
/// time, reopening each one the node closes, until `stop`; says on `ready` once every one
/// has sent its first byte.
fn slow_clients(
    http: SocketAddr,
    stop: Arc<AtomicBool>,
    reopened: Arc<AtomicUsize>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let open = || {
        let s = TcpStream::connect(http).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut clients: Vec<Option<TcpStream>> = (0..SLOW_CLIENTS).map(|_| open()).collect();
    let head = b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        for c in &mut clients {
            let alive = c.as_mut().is_some_and(|s| {
                let byte = if round < head.len() { head[round] } else { b'a' };
                match s.write(&[byte]) {
                    Ok(n) => n == 1,
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                }
            });
            if !alive {
                *c = open();
                reopened.fetch_add(1, Ordering::Relaxed);
            }
        }
        round += 1;
        if round == 1 {
            let _ = ready.send(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_node_under_hostile_posts_and_slow_clients_keeps_answering_and_applies_a_real_bundle() {
    let env = Env::new();
    network(&env);
    create_b1(&env);
    let (_seeder, listen) = seed(&env, "b1.torrent", &env.p("b1"), &[]);
    let node = Daemon::start(
        &env,
        &[
            "node",
            "run",
            "--data-dir",
            "peer",
            "--trust",
            "auth.pub",
            "--http",
            "127.0.0.1:0",
            "--peer",
            &listen,
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
            "--resolve-timeout",
            "3s",
        ],
    );
    let http = http_of(&node);
    let stop = Arc::new(AtomicBool::new(false));
    let reopened = Arc::new(AtomicUsize::new(0));

    // Status, polled throughout.
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let poller = {
        let (stop, latencies) = (stop.clone(), latencies.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (code, _) = get(http, "/v1/status");
                let took = started.elapsed();
                assert_eq!(code, 200);
                latencies.lock().unwrap().push(took);
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    let (ready, slow_ready) = std::sync::mpsc::channel();
    let slow = {
        let (stop, reopened) = (stop.clone(), reopened.clone());
        std::thread::spawn(move || slow_clients(http, stop, reopened, ready))
    };
    slow_ready.recv_timeout(Duration::from_secs(60)).expect("the slow clients connected");
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the status poller never got an answer");
        std::thread::sleep(Duration::from_millis(5));
    }

    // The hostile posts, and the real bundle in the middle of them.
    let answers = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let posters: Vec<_> = (0..POSTERS)
        .map(|p| {
            let answers = answers.clone();
            std::thread::spawn(move || {
                for i in (p..HOSTILE_POSTS).step_by(POSTERS) {
                    let (code, body) = post(http, "/v1/bundles", &hostile(i));
                    assert!(matches!(code, 202 | 400 | 413 | 429), "{i}: {code} {body}");
                    *answers.lock().unwrap().entry(code).or_default() += 1;
                }
            })
        })
        .collect();
    // A quarter of the hostile posts answered: the real one goes in among the rest.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answers.lock().unwrap().values().sum::<usize>() < HOSTILE_POSTS / 4 {
        assert!(Instant::now() < deadline, "the hostile posts never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    let real =
        json!({"torrent_base64": b64(&std::fs::read(env.path("b1.torrent")).unwrap())}).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = post(http, "/v1/bundles", &real);
        if code == 202 {
            break;
        }
        assert_eq!(code, 429, "{body}");
        assert!(Instant::now() < deadline, "the real bundle was never taken");
        std::thread::sleep(Duration::from_millis(200));
    }
    for p in posters {
        p.join().unwrap();
    }
    let status = wait_status(http, |s| s["last_seq"] == 1);
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    slow.join().unwrap();

    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    let rss = peak_rss(node.child.id());
    println!(
        "status answered {} times: p50 {:?}, p99 {:?}, max {:?}; posts answered {:?}; slow clients reopened {} times; peak rss {:.1} MiB; torrents listed {}",
        lat.len(),
        pct(50),
        pct(99),
        lat[lat.len() - 1],
        answers.lock().unwrap(),
        reopened.load(Ordering::Relaxed),
        rss as f64 / 1_048_576.0,
        status["torrents"].as_array().map_or(0, Vec::len),
    );
    assert!(lat.len() >= 20, "status was asked {} times", lat.len());
    assert!(
        lat[lat.len() - 1] < Duration::from_millis(100),
        "slowest status {:?}",
        lat[lat.len() - 1]
    );
    assert!(rss < 200 * 1_048_576, "peak rss {rss} bytes");
    assert!(reopened.load(Ordering::Relaxed) > 0, "the node shed slow clients");
    let listed = status["torrents"].as_array().unwrap().len();
    assert!(listed <= 64 + 128 + 1, "the status stays bounded: {listed} torrents");
}
