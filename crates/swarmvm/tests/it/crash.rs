//! Nodes killed with SIGKILL at random moments while fetching and while applying three
//! bundles (a third of the kills at any moment, a third timed from a fetch's start, a third
//! from a bundle's verification, so both phases are hit in every run). After every kill the ledger holds whole bundles only (its root is the root of
//! its last applied bundle in an uninterrupted run); after the last, a restart reaches the
//! same final root. `SWARMVM_CRASH_KILLS` sets the number of kills (6 by default; the long
//! mode recorded in SECURITY.md uses 60).

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Daemon, Env};

const BUNDLES: u64 = 3;
const CONTRACTS: u64 = 1_200;

fn setup(env: &Env) -> Vec<String> {
    env.network("ed25519", "tokens.txt");
    let wallet = |name: &str| {
        swarmvm_wallet::read_key_file(&env.path(name), None).unwrap().0.into_wallet().unwrap()
    };
    let (p1, p2) = (wallet("peer1.pem"), wallet("peer2.pem"));
    let network = env.json(&["wallet", "show", "auth.pub"])["id"].as_str().unwrap().to_owned();
    let mut torrents = Vec::new();
    for b in 0..BUNDLES {
        let mut lines = String::new();
        for i in 0..CONTRACTS {
            let n = b * CONTRACTS + i;
            let signer = if n.is_multiple_of(2) { &p1 } else { &p2 };
            let nonce = n / 2 + 1;
            let action = json!({"action": "register_student", "student": {"id": format!("S{n}"), "name": "Crash Test", "department": "Reliability"}});
            lines.push_str(
                &swarmvm_token::sign_contract(signer, &network, nonce, &[action], 1).unwrap(),
            );
            lines.push('\n');
        }
        env.write(&format!("c{b}.jsonl"), lines);
        let name = format!("b{}", b + 1);
        let mut args = vec!["bundle", "create", &name, "--key", "auth.pem"];
        let contracts = format!("c{b}.jsonl");
        let after = format!("b{b}");
        args.extend(["--contracts", &contracts]);
        if b == 0 {
            args.extend(["--tokens", "tokens.txt"]);
        } else {
            args.extend(["--after", &after]);
        }
        env.ok(&args);
        torrents.push(format!("{name}.torrent"));
    }
    torrents
}

fn state(env: &Env, dir: &str) -> Value {
    let run = env.run(&["state", "show", "--data-dir", dir, "--json"]);
    if run.code != 0 {
        return json!({"students": {}, "last_bundle": null, "state_root": null});
    }
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn nodes_killed_while_fetching_or_applying_hold_whole_bundles_and_catch_up() {
    let kills: usize =
        std::env::var("SWARMVM_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let env = Env::new();
    let torrents = setup(&env);
    // The roots of the uninterrupted history, bundle by bundle.
    let mut roots = vec![String::new()];
    for b in 1..=BUNDLES {
        env.ok(&[
            "node",
            "apply",
            &format!("b{b}"),
            "--data-dir",
            "reference",
            "--trust",
            "auth.pub",
        ]);
        roots.push(env.ok(&["state", "root", "--data-dir", "reference"]).trim().to_owned());
    }
    // One seeder per bundle. The node's download limit (a fresh one each run) makes fetching
    // take long enough to be interrupted; a limit on the long-lived seeders would carry
    // state from one killed connection to the next.
    let mut seeders = Vec::new();
    let mut seeder_addrs = Vec::new();
    for (i, t) in torrents.iter().enumerate() {
        let dir = format!("b{}", i + 1);
        let d = Daemon::start(
            &env,
            &["bundle", "seed", t, "--dir", &dir, "--no-dht", "--listen", "127.0.0.1:0"],
        );
        seeder_addrs.push(d.first_line["listen"].as_str().unwrap().to_owned());
        seeders.push(d);
    }
    let mut node_args: Vec<String> = [
        "node",
        "run",
        "--data-dir",
        "peer",
        "--trust",
        "auth.pub",
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
        "--download-limit",
        "400000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for t in &torrents {
        node_args.extend(["--bundle".to_owned(), t.clone()]);
    }
    for a in &seeder_addrs {
        node_args.extend(["--peer".to_owned(), a.clone()]);
    }

    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
            | 1;
    eprintln!("crash suite: {kills} kills, seed {seed}");
    let (mut while_fetching, mut while_applying) = (0, 0);
    for k in 0..kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = Command::new(env!("CARGO_BIN_EXE_swarmvm"))
            .args(&node_args)
            .current_dir(env.dir.path())
            .env("RUST_LOG", "swarmvm_node=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        // One kill in three at a random moment of the first second and a half (start-up, a
        // fetch or an apply); one a random moment after a fetch starts; one as soon as a
        // bundle starts to apply. The log decides where each one landed.
        let trigger = match k % 3 {
            0 => None,
            1 => Some(("fetching bundle", Duration::from_millis(seed % 300))),
            _ => Some(("applying bundle", Duration::ZERO)),
        };
        let delay = match trigger {
            None => Duration::from_millis(seed % 1500),
            Some((line, after)) => {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !log.lock().unwrap().iter().any(|l| l.contains(line))
                    && Instant::now() < deadline
                    && child.try_wait().unwrap().is_none()
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                after
            }
        };
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let lines = log.lock().unwrap().clone();
        let fetching = lines.iter().filter(|l| l.contains("fetching bundle")).count();
        let applying = lines.iter().filter(|l| l.contains("applying bundle")).count();
        let applied = lines.iter().filter(|l| l.contains("bundle applied")).count();
        if applying > applied {
            while_applying += 1;
        } else if fetching > applying {
            while_fetching += 1;
        }
        let s = state(&env, "peer");
        let seq = s["last_bundle"]["seq"].as_u64().unwrap_or(0);
        let students = s["students"].as_object().map_or(0, |o| o.len()) as u64;
        assert_eq!(students, seq * CONTRACTS, "kill {k} after {delay:?}: a bundle is half-applied");
        if seq > 0 {
            assert_eq!(
                s["state_root"].as_str().unwrap(),
                roots[seq as usize],
                "kill {k}: root of seq {seq}"
            );
        }
        // A node that got everything starts over as a new one, so kills keep landing in
        // every phase, fetching included.
        if seq == BUNDLES || k % 4 == 3 {
            std::fs::remove_dir_all(env.path("peer")).unwrap();
        }
    }
    eprintln!(
        "crash suite: {while_fetching} kills while fetching, {while_applying} while applying"
    );
    assert!(while_fetching > 0 || kills < 4, "no kill landed while fetching");
    assert!(while_applying > 0 || kills < 4, "no kill landed while applying");

    // Restarted and left alone, the node catches up with the uninterrupted history.
    let _node = Daemon::start(&env, &node_args.iter().map(String::as_str).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = state(&env, "peer");
        if s["last_bundle"]["seq"] == BUNDLES {
            assert_eq!(s["state_root"].as_str().unwrap(), roots[BUNDLES as usize]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node never caught up: {}",
            s["last_bundle"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
