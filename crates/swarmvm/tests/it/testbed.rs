//! Whole `swarmvm` processes in the namespace testbed (`swarmvm_test_support::netns`): each
//! peer in its own network namespace behind a tbf-shaped link, finding the others through an
//! opentracker, not through a list of addresses.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use swarmvm_test_support::netns::Testbed;
use swarmvm_test_support::require_program;
use swarmvm_test_support::tools::KillOnDrop;

use crate::bundle::{bundle, same_files};
use crate::support::Env;

const SWARMVM: &str = env!("CARGO_BIN_EXE_swarmvm");

/// opentracker inside peer `i`'s namespace, tracking `info_hash`; its announce URL.
fn tracker_in(bed: &Testbed, i: usize, env: &Env, info_hash: &str) -> (KillOnDrop, String) {
    require_program("opentracker", "opentracker");
    let dir = env.path("tracker");
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("whitelist"), format!("{info_hash}\n")).unwrap();
    let addr = bed.peers[i].addr.to_string();
    let port = "6969";
    let child = bed
        .command(i, std::path::Path::new("opentracker"))
        .args(["-i", &addr, "-p", port, "-P", port, "-d"])
        .arg(&dir)
        .args(["-u", "nobody", "-w", "whitelist"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run opentracker");
    let child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ss = Command::new("ip")
            .args(["netns", "exec", &bed.peers[i].ns, "ss", "-ltn"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&ss.stdout).contains(&format!("{addr}:{port}")) {
            break;
        }
        assert!(Instant::now() < deadline, "opentracker did not start in the namespace");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("http://{addr}:{port}/announce"))
}

/// A `swarmvm ... --json` process in peer `i`'s namespace, with its JSON lines on a channel.
struct Proc {
    child: KillOnDrop,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl Proc {
    fn start(bed: &Testbed, i: usize, env: &Env, args: &[&str]) -> Self {
        let mut child = bed
            .command(i, std::path::Path::new(SWARMVM))
            .args(args)
            .arg("--json")
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Self { child: KillOnDrop(child), lines }
    }

    /// The next line whose `event` is `event` (bounded).
    fn wait_event(&self, event: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == event => return v,
                Ok(_) => {}
                Err(_) => panic!("no {event} event within {limit:?}"),
            }
        }
    }

    fn interrupt(&self) {
        let pid = self.child.0.id().to_string();
        Command::new("kill").args(["-s", "INT", &pid]).status().unwrap();
    }
}

/// A swarm in `bed`: peer 0 seeds `name` (made from `env`'s folder `name`, 64 KiB pieces,
/// announced to an opentracker in peer 0's namespace), every other peer runs
/// `bundle fetch --seed` into `f{i}`, finding the others through the tracker only. Returns the
/// bundle's size, the tracker, the seeder and the fetchers, the fetchers started last.
fn swarm(bed: &Testbed, env: &Env, name: &str) -> (u64, KillOnDrop, Proc, Vec<Proc>) {
    let dir = bundle(env, name, [2_000, 4 * 1024 * 1024, 1_000]);
    let made = env.json(&["bundle", "create", &dir, "--piece-length", "65536"]);
    let info_hash = made["info_hash"].as_str().unwrap().to_owned();
    let size = made["bytes"].as_u64().unwrap();
    let (tracker, announce) = tracker_in(bed, 0, env, &info_hash);
    let torrent = format!("{name}.torrent");
    let listen = |i: usize| format!("{}:6881", bed.peers[i].addr);
    let net =
        |i: usize| ["--no-dht", "--tracker", &announce, "--listen", &listen(i)].map(String::from);
    let start = |i: usize, args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(net(i));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Proc::start(bed, i, env, &all)
    };
    let seeder = start(0, &["bundle", "seed", &torrent, "--dir", &dir]);
    seeder.wait_event("seeding", Duration::from_secs(30));
    let fetchers = (1..bed.peers.len())
        .map(|i| {
            let out = format!("f{i}");
            start(i, &["bundle", "fetch", &torrent, "--out", &out, "--timeout", "120s", "--seed"])
        })
        .collect();
    (size, tracker, seeder, fetchers)
}

#[test]
fn fetchers_behind_shaped_links_find_each_other_by_tracker_and_spare_a_slow_seeder() {
    require_program("tc", "iproute2");
    let env = Env::new();
    // The seeder's link is 16 Mbit/s, every fetcher's 80: one copy from the seeder takes
    // about 2.1 s, seven would take 15 s.
    let mut rates = vec![16];
    rates.extend([80; 7]);
    let bed = Testbed::new("swarm", &rates);
    let started = Instant::now();
    let (size, _tracker, seeder, fetchers) = swarm(&bed, &env, "bundle-n");
    let mut fetched = 0u64;
    for f in &fetchers {
        let done = f.wait_event("complete", Duration::from_secs(120));
        fetched += done["fetched"].as_u64().unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    for i in 1..bed.peers.len() {
        same_files(&env.path(&format!("f{i}/bundle-n")), &env.path("bundle-n"));
    }
    seeder.interrupt();
    let stopped = seeder.wait_event("stopped", Duration::from_secs(20));
    let uploaded = stopped["uploaded"].as_u64().unwrap();
    eprintln!(
        "7 fetchers in {seconds:.1} s; the seeder uploaded {:.2}x, the fetchers received {:.2}x",
        uploaded as f64 / size as f64,
        fetched as f64 / size as f64
    );
    assert!(uploaded < 2 * size, "the seeder uploaded {uploaded} bytes of a {size}-byte bundle");
    for f in &fetchers {
        f.interrupt();
    }
}

#[test]
fn fetchers_cut_off_from_the_seeder_mid_transfer_finish_from_the_others() {
    require_program("tc", "iproute2");
    let env = Env::new();
    // A 16 Mbit/s seeder and six fetchers at 80: one copy from the seeder takes 2.1 s.
    let mut rates = vec![16];
    rates.extend([80; 6]);
    let bed = Testbed::new("part", &rates);
    let (size, _tracker, seeder, fetchers) = swarm(&bed, &env, "bundle-p");
    // Once fetcher 1 has a tenth of the bundle, fetchers 1 to 3 lose the seeder (the tracker,
    // in its namespace too) but keep each other and fetchers 4 to 6.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let p = fetchers[0].wait_event("progress", Duration::from_secs(60));
        if p["percent"].as_f64().unwrap_or(0.0) >= 10.0 {
            break p;
        }
        assert!(Instant::now() < deadline, "fetcher 1 never reached 10%");
    };
    assert!(first["percent"].as_f64().unwrap() < 100.0, "the partition came too late: {first}");
    for i in 1..=3 {
        bed.separate(0, i);
    }
    eprintln!("partitioned at {}% of fetcher 1", first["percent"]);
    for (k, f) in fetchers.iter().enumerate() {
        let done = f.wait_event("complete", Duration::from_secs(120));
        assert_eq!(done["done"].as_u64(), Some(size), "fetcher {}", k + 1);
    }
    for i in 1..bed.peers.len() {
        same_files(&env.path(&format!("f{i}/bundle-p")), &env.path("bundle-p"));
    }
    for i in 1..=3 {
        bed.join(0, i);
    }
    seeder.interrupt();
    let stopped = seeder.wait_event("stopped", Duration::from_secs(20));
    let uploaded = stopped["uploaded"].as_u64().unwrap();
    eprintln!("the seeder uploaded {:.2}x", uploaded as f64 / size as f64);
    assert!(uploaded < 2 * size, "the seeder uploaded {uploaded} bytes of a {size}-byte bundle");
    for f in &fetchers {
        f.interrupt();
    }
}
