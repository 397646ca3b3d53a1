//! A bundle from one seeder to N fetchers in the namespace testbed
//! (`swarmvm_test_support::netns`): every peer in its own network namespace behind an
//! 80 Mbit/s link (tbf on both ends of its veth pair), finding the others only through an
//! opentracker in a namespace of its own (`SWARMVM_TESTBED_TRACKER=seeder` puts it in the
//! seeder's namespace instead, behind the seeder's busy uplink). The same torrent, testbed and links for swarmvm
//! (`bundle seed` and `bundle fetch --seed`, the release binary) and for libtorrent
//! (`benches/lt_peer.py`, one Python process per peer), one after the other in one run.
//! Prints markdown for BENCHMARKS.md: when the last and the median fetcher had everything
//! (from the moment the fetchers are started, process start-up included), against the time
//! one copy takes at the link's rate; what the seeder uploaded; and the CPU time of all the
//! peers' processes (the machine has 2 cores: a run whose CPU time nears 2x its wall time is
//! CPU-bound).
//!
//! `cargo bench -p swarmvm --bench testbed` (root, iproute2, opentracker, python3 with
//! libtorrent). `SWARMVM_TESTBED=64m:32,4k:32` picks the cases (default
//! `64m:32,64m:64,4k:32`); `SWARMVM_TESTBED_ONLY=swarmvm` (or `libtorrent`) runs one side;
//! `SWARMVM_TESTBED_RUNS=5` runs each case that many times (default 3), alternating the
//! implementations, and adds a row of medians (runs on this machine vary a lot).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use swarmvm_test_support::live::cpu_seconds;
use swarmvm_test_support::netns::Testbed;
use swarmvm_test_support::tools::JsonProcess;

const SWARMVM: &str = env!("CARGO_BIN_EXE_swarmvm");
const LT_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/lt_peer.py");
const MBIT: u32 = 80;
/// A fetcher that has not finished by then fails the run.
const LIMIT: Duration = Duration::from_secs(600);

fn main() {
    let cases = std::env::var("SWARMVM_TESTBED").unwrap_or_else(|_| "64m:32,64m:64,4k:32".into());
    println!(
        "| bundle | fetchers | implementation | run | last fetcher done | median fetcher | seeder uploaded | fetchers received | CPU time (all peers) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for case in cases.split(',') {
        let (size, n) = case.split_once(':').expect("SIZE:FETCHERS");
        let n: usize = n.parse().unwrap();
        let bytes = match size.strip_suffix('m') {
            Some(m) => m.parse::<usize>().unwrap() * 1024 * 1024,
            None => {
                size.strip_suffix('k').expect("a size like 64m or 4k").parse::<usize>().unwrap()
                    * 1024
            }
        };
        run_case(size, bytes, n);
    }
}

fn run_case(label: &str, bytes: usize, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    // Three files as a bundle has; the contracts carry the bulk.
    let small = (bytes / 4).min(2_000);
    let name = format!("bundle-{label}");
    let data =
        swarmvm_test_support::bundle_dir(dir.path(), &name, [small, bytes - 2 * small, small]);
    let made =
        Command::new(SWARMVM).args(["bundle", "create"]).arg(&data).arg("--json").output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let made: Value = serde_json::from_slice(&made.stdout).unwrap();
    let info_hash = made["info_hash"].as_str().unwrap().to_owned();
    let size = made["bytes"].as_u64().unwrap();
    let torrent = PathBuf::from(made["torrent"].as_str().unwrap());
    let copy = size as f64 * 8.0 / (f64::from(MBIT) * 1e6);
    // Peer 0 seeds, 1 to n fetch; the tracker has a namespace and link of its own, last,
    // unless it shares the seeder's.
    let tracker_with_seeder = std::env::var("SWARMVM_TESTBED_TRACKER").is_ok_and(|t| t == "seeder");
    let links = if tracker_with_seeder { n + 1 } else { n + 2 };
    let bed = Testbed::new("bench", &vec![MBIT; links]);
    let tracker = if tracker_with_seeder { 0 } else { n + 1 };
    let only = std::env::var("SWARMVM_TESTBED_ONLY").ok();
    let implementations: Vec<Impl> = [Impl::Swarmvm, Impl::Libtorrent]
        .into_iter()
        .filter(|i| only.as_deref().is_none_or(|o| i.name().starts_with(o)))
        .collect();
    let runs: usize = std::env::var("SWARMVM_TESTBED_RUNS").map_or(3, |r| r.parse().unwrap());
    let mut outcomes: Vec<Vec<Outcome>> = implementations.iter().map(|_| Vec::new()).collect();
    // Rounds alternate the implementations, so that a slow spell of the machine falls on both.
    for round in 1..=runs {
        for (k, &implementation) in implementations.iter().enumerate() {
            let r = run(&bed, n, tracker, dir.path(), implementation, &torrent, &data, &info_hash);
            println!("{}", row(label, n, implementation, &round.to_string(), &r, size, copy));
            outcomes[k].push(r);
        }
    }
    if runs > 1 {
        for (implementation, outcomes) in implementations.iter().zip(&outcomes) {
            let median = Outcome::median(outcomes);
            let run = format!("median of {runs}");
            println!("{}", row(label, n, *implementation, &run, &median, size, copy));
        }
    }
    eprintln!("one copy of {size} bytes at {MBIT} Mbit/s takes {copy:.2} s");
}

/// One line of the table.
fn row(
    label: &str,
    n: usize,
    implementation: Impl,
    run: &str,
    r: &Outcome,
    size: u64,
    copy: f64,
) -> String {
    let startup = r.startup.map(|s| format!(" (start-up {s:.2} s)")).unwrap_or_default();
    // Against a bundle that takes no time to send, the ratio says nothing.
    let ratio =
        if copy >= 0.1 { format!(" ({:.2}x one copy)", r.last / copy) } else { String::new() };
    format!(
        "| {label} | {n} | {}{startup} | {run} | {:.1} s{ratio} | {:.1} s | {:.2}x | {:.2}x | {:.1} s ({:.2} cores) |",
        implementation.name(),
        r.last,
        r.median,
        r.seeder_uploaded as f64 / size as f64,
        r.received as f64 / (size as f64 * n as f64),
        r.cpu,
        r.cpu / r.last,
    )
}

#[derive(Clone, Copy)]
enum Impl {
    Swarmvm,
    Libtorrent,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Swarmvm => "swarmvm",
            Impl::Libtorrent => "libtorrent 2 (Python)",
        }
    }
}

struct Outcome {
    /// When the median fetcher process had started and added the torrent (lt_peer.py says
    /// so; swarmvm's processes do not), from the start of the fetchers.
    startup: Option<f64>,
    last: f64,
    median: f64,
    seeder_uploaded: u64,
    /// Bytes all fetchers received (a chunk received twice counts twice).
    received: u64,
    cpu: f64,
}

impl Outcome {
    /// Each figure's median over several runs (the figures of one row may come from
    /// different runs).
    fn median(runs: &[Outcome]) -> Outcome {
        fn mid<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        }
        Outcome {
            startup: runs.iter().map(|r| r.startup).collect::<Option<Vec<_>>>().map(mid),
            last: mid(runs.iter().map(|r| r.last).collect()),
            median: mid(runs.iter().map(|r| r.median).collect()),
            seeder_uploaded: mid(runs.iter().map(|r| r.seeder_uploaded).collect()),
            received: mid(runs.iter().map(|r| r.received).collect()),
            cpu: mid(runs.iter().map(|r| r.cpu).collect()),
        }
    }
}

/// A peer's process in its namespace.
struct Peer {
    process: JsonProcess,
    /// Stopped by SIGINT (swarmvm) rather than by closing its stdin (lt_peer.py).
    interrupt: bool,
}

impl Peer {
    fn start(bed: &Testbed, i: usize, program: &str, args: &[String], cwd: &Path) -> Self {
        let mut cmd = bed.command(i, Path::new(program));
        cmd.args(args).current_dir(cwd).stdin(Stdio::piped());
        match std::env::var_os("SWARMVM_TESTBED_LOGS") {
            Some(logs) => {
                let log = Path::new(&logs).join(format!("peer-{i}.log"));
                cmd.stderr(std::fs::File::create(log).unwrap())
            }
            None => cmd.stderr(Stdio::null()),
        };
        Self { process: JsonProcess::spawn(cmd), interrupt: program == SWARMVM }
    }

    /// Waits for the line whose `event` is `event`.
    fn wait(&self, event: &str, until: Instant) -> Value {
        self.process.wait_event(event, until.saturating_duration_since(Instant::now()))
    }

    /// Asks it to stop: SIGINT for swarmvm, stdin closed for lt_peer.py.
    fn stop(&mut self) {
        self.process.close_stdin();
        if self.interrupt {
            self.process.interrupt();
        }
    }
}

/// One implementation's run: peer 0 seeds to peers 1 to `n`, which find each other through
/// an opentracker in peer `tracker`'s namespace.
#[allow(clippy::too_many_arguments)]
fn run(
    bed: &Testbed,
    n: usize,
    tracker: usize,
    work: &Path,
    implementation: Impl,
    torrent: &Path,
    data: &Path,
    info_hash: &str,
) -> Outcome {
    let tag = implementation.name().split(' ').next().unwrap();
    let (_tracker, announce) =
        bed.opentracker(tracker, &work.join(format!("tracker-{tag}")), &[info_hash]);
    let args = |i: usize, seed: bool| -> (&str, Vec<String>) {
        let ip = bed.peers[i].addr.to_string();
        let out = work.join(format!("{tag}-{i}"));
        let t = torrent.to_string_lossy().into_owned();
        match implementation {
            Impl::Swarmvm => {
                let mut a: Vec<String> = if seed {
                    vec![
                        "bundle".into(),
                        "seed".into(),
                        t,
                        "--dir".into(),
                        data.to_string_lossy().into(),
                    ]
                } else {
                    let out = out.to_string_lossy().into_owned();
                    ["bundle", "fetch", &t, "--out", &out, "--timeout", "600s", "--seed"]
                        .map(String::from)
                        .to_vec()
                };
                a.extend(
                    [
                        "--no-dht",
                        "--tracker",
                        &announce,
                        "--listen",
                        &format!("{ip}:6881"),
                        "--json",
                    ]
                    .map(String::from),
                );
                (SWARMVM, a)
            }
            Impl::Libtorrent => {
                let save = if seed { data.parent().unwrap().to_path_buf() } else { out };
                std::fs::create_dir_all(&save).unwrap();
                let a = [LT_PEER.into(), t, save.to_string_lossy().into(), ip, announce.clone()];
                ("python3", a.to_vec())
            }
        }
    };
    let until = Instant::now() + LIMIT;
    let (program, a) = args(0, true);
    let mut seeder = Peer::start(bed, 0, program, &a, work);
    seeder
        .wait(if matches!(implementation, Impl::Swarmvm) { "seeding" } else { "complete" }, until);
    let started = Instant::now();
    let mut fetchers: Vec<Peer> = (1..=n)
        .map(|i| {
            let (program, a) = args(i, false);
            Peer::start(bed, i, program, &a, work)
        })
        .collect();
    let mut done: Vec<f64> = Vec::new();
    let mut ready: Vec<f64> = Vec::new();
    // For swarmvm, per fetcher: its first progress line (process up, torrent added) and the
    // first progress line with a verified byte (it found a peer and got a piece).
    let mut up: Vec<Option<f64>> = vec![None; n];
    let mut first_piece: Vec<Option<f64>> = vec![None; n];
    // What the fetchers received (swarmvm says so when complete, lt_peer.py when stopped).
    let mut received = 0u64;
    // Events arrive on separate channels: take each fetcher's in turn; the times are when
    // each event was read, so read them all promptly by polling.
    let mut pending: Vec<usize> = (0..fetchers.len()).collect();
    while !pending.is_empty() {
        assert!(Instant::now() < until, "{} fetchers did not finish", pending.len());
        pending.retain(|&k| {
            while let Some(v) = fetchers[k].process.try_next() {
                let now = started.elapsed().as_secs_f64();
                if v["event"] == "started" {
                    ready.push(now);
                }
                if v["event"] == "progress" {
                    up[k].get_or_insert(now);
                    if v["verified"].as_u64().is_some_and(|b| b > 0) {
                        first_piece[k].get_or_insert(now);
                    }
                }
                if v["event"] == "complete" {
                    done.push(now);
                    received += v["fetched"].as_u64().unwrap_or(0);
                    return false;
                }
            }
            true
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu: f64 =
        std::iter::once(&seeder).chain(&fetchers).map(|p| cpu_seconds(p.process.pid())).sum();
    seeder.stop();
    let stopped = seeder.wait("stopped", Instant::now() + Duration::from_secs(30));
    for f in &mut fetchers {
        f.stop();
    }
    if !fetchers[0].interrupt {
        for f in &fetchers {
            received += f.wait("stopped", Instant::now() + Duration::from_secs(30))["downloaded"]
                .as_u64()
                .unwrap();
        }
    }
    drop(fetchers);
    for i in 1..=n {
        let _ = std::fs::remove_dir_all(work.join(format!("{tag}-{i}")));
    }
    done.sort_by(f64::total_cmp);
    ready.sort_by(f64::total_cmp);
    if up.iter().any(Option::is_some) {
        let spread = |v: &[Option<f64>]| {
            let mut v: Vec<f64> = v.iter().flatten().copied().collect();
            v.sort_by(f64::total_cmp);
            let q = |f: f64| v.get(((v.len() as f64 - 1.0) * f) as usize).copied().unwrap_or(0.0);
            format!(
                "{} of {n}: median {:.1} s, 90% {:.1} s, last {:.1} s",
                v.len(),
                q(0.5),
                q(0.9),
                q(1.0)
            )
        };
        eprintln!("{tag}: up {}; first piece {}", spread(&up), spread(&first_piece));
    }
    Outcome {
        startup: ready.get(ready.len() / 2).copied(),
        last: *done.last().unwrap(),
        median: done[done.len() / 2],
        seeder_uploaded: stopped["uploaded"].as_u64().unwrap(),
        received,
        cpu,
    }
}
