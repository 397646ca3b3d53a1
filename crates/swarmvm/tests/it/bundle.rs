//! `swarmvm bundle create|seed|fetch` as processes on loopback.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use swarmvm_swarm::TorrentFile;

use crate::support::{Daemon, Env, FAILURE, REFUSED, TIMED_OUT, Tmpfs, run_on_terminal};

pub(crate) const LOOPBACK: [&str; 3] = ["--no-dht", "--listen", "127.0.0.1:0"];

/// A folder of three files with pseudo-random content.
pub(crate) fn bundle(env: &Env, name: &str, sizes: [usize; 3]) -> String {
    for (i, (file, size)) in
        ["registration_tokens.txt", "contracts.jsonl", "manifest.jwt"].iter().zip(sizes).enumerate()
    {
        let mut x = (i as u64 + 7).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x & 0xff) as u8
            })
            .collect();
        std::fs::create_dir_all(env.path(name)).unwrap();
        std::fs::write(env.path(name).join(file), data).unwrap();
    }
    env.p(name)
}

pub(crate) fn same_files(a: &std::path::Path, b: &std::path::Path) {
    for f in ["registration_tokens.txt", "contracts.jsonl", "manifest.jwt"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f}");
    }
}

pub(crate) fn seed(env: &Env, torrent: &str, dir: &str, extra: &[&str]) -> (Daemon, String) {
    let mut args = vec!["bundle", "seed", torrent, "--dir", dir];
    args.extend_from_slice(&LOOPBACK);
    args.extend_from_slice(extra);
    let d = Daemon::start(env, &args);
    assert_eq!(d.first_line["event"], "seeding");
    let listen = d.first_line["listen"].as_str().unwrap().to_owned();
    (d, listen)
}

/// `bundle fetch` logs (librqbit's and swarmvm's) only when `RUST_LOG` asks; otherwise its
/// stderr is a failure's one-line reason.
#[test]
fn fetch_logs_to_stderr_only_when_rust_log_asks() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-log", [100, 1_000, 100]);
    env.ok(&["bundle", "create", &dir]);
    let args = ["bundle", "fetch", "bundle-log.torrent", "--out", "o", "--timeout", "1s", "--json"];
    let args: Vec<&str> = args.into_iter().chain(LOOPBACK).collect();
    let quiet = env.run(&args);
    assert_eq!(quiet.code, TIMED_OUT, "{}", quiet.stderr);
    assert_eq!(quiet.stderr.lines().count(), 1, "{}", quiet.stderr);
    let logged = Command::new(env!("CARGO_BIN_EXE_swarmvm"))
        .args(&args)
        .current_dir(env.path(""))
        .env("RUST_LOG", "librqbit=info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&logged.stderr);
    assert_eq!(logged.status.code(), Some(TIMED_OUT), "{stderr}");
    assert!(stderr.contains("added torrent"), "{stderr}");
    assert!(stderr.lines().last().unwrap().starts_with("error: timed out after 1s"), "{stderr}");
}

#[test]
fn create_prints_info_hash_and_magnet_and_writes_a_v1_torrent() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-1", [100, 20_000, 30]);
    let out = env.ok(&[
        "bundle",
        "create",
        &dir,
        "--tracker",
        "http://127.0.0.1:1/announce",
        "--tracker",
        "udp://127.0.0.1:2",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("info_hash ") && lines[0].len() == 10 + 40, "{out}");
    assert!(lines[1].starts_with("magnet    magnet:?xt=urn:btih:"), "{out}");
    assert!(lines[2].ends_with("bundle-1.torrent"), "{out}");
    let t = TorrentFile::read(&env.path("bundle-1.torrent")).unwrap();
    assert_eq!(t.name(), "bundle-1");
    let files: Vec<String> = t.files().iter().map(|f| f.path.display().to_string()).collect();
    assert_eq!(files, ["contracts.jsonl", "manifest.jwt", "registration_tokens.txt"], "byte order");
    let trackers: Vec<&str> = t.trackers().iter().map(url::Url::as_str).collect();
    assert_eq!(trackers, ["http://127.0.0.1:1/announce", "udp://127.0.0.1:2"]);
    let json = env.json(&["bundle", "create", &dir, "-o", "again.torrent"]);
    assert_eq!(
        json["info_hash"].as_str().unwrap(),
        lines[0][10..].trim(),
        "trackers are not in the info-hash"
    );
    assert_eq!(json["bytes"], 20_130);
    assert_eq!(json["piece_length"], 16_384);
    let again = TorrentFile::read(&env.path("again.torrent")).unwrap();
    assert_eq!(again.info_hash().to_string(), json["info_hash"].as_str().unwrap());
    assert!(again.trackers().is_empty());

    std::fs::create_dir(env.path("empty")).unwrap();
    let err = env.fails(&["bundle", "create", "empty"], FAILURE);
    assert!(err.contains("holds no data to share"), "{err}");
    let err = env.fails(&["bundle", "create", "nowhere"], FAILURE);
    assert!(err.contains("is not a folder"), "{err}");
    let run = env.run(&["bundle", "create", &dir, "--tracker", "ftp://x"]);
    assert_eq!(run.code, FAILURE);
    assert!(run.stderr.contains("is not http, https or udp"), "{}", run.stderr);
}

#[test]
fn one_seeder_to_three_fetchers_over_loopback() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-2", [3_000, 400_000, 500]);
    env.ok(&["bundle", "create", &dir]);
    let (mut seeder, listen) = seed(&env, "bundle-2.torrent", &dir, &[]);
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");
    let fetchers: Vec<std::process::Child> = (0..3)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_swarmvm"))
                .args([
                    "bundle",
                    "fetch",
                    "bundle-2.torrent",
                    "--out",
                    &format!("peer{i}"),
                    "--peer",
                    &listen,
                    "--json",
                    "--timeout",
                    "60s",
                ])
                .args(LOOPBACK)
                .current_dir(env.dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in fetchers.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let events: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let last = events.last().unwrap();
        assert_eq!(last["event"], "complete");
        assert_eq!(last["percent"], 100.0);
        assert_eq!(last["path"], format!("peer{i}/bundle-2"));
        assert!(events.iter().all(|e| e["total"] == 403_500));
        same_files(&env.path(&format!("peer{i}/bundle-2")), &env.path("bundle-2"));
    }
    assert_eq!(seeder.signal("TERM"), 0, "SIGTERM stops the seeder cleanly");
    let mut line = String::new();
    seeder.stdout.read_line(&mut line).unwrap();
    let stopped: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (stopped["event"].as_str(), stopped["signal"].as_str()),
        (Some("stopped"), Some("SIGTERM"))
    );
    assert!(stopped["uploaded"].as_u64().unwrap() >= 403_500);
}

#[test]
fn fetch_prints_the_path_and_accepts_a_magnet_link() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-3", [10, 50_000, 10]);
    let created = env.json(&["bundle", "create", &dir]);
    let (_seeder, listen) = seed(&env, "bundle-3.torrent", &dir, &[]);
    let mut args = vec![
        "bundle",
        "fetch",
        created["magnet"].as_str().unwrap(),
        "--out",
        "dl",
        "--peer",
        &listen,
    ];
    args.extend_from_slice(&LOOPBACK);
    let out = env.ok(&args);
    assert_eq!(out, "dl/bundle-3\n");
    same_files(&env.path("dl/bundle-3"), &env.path("bundle-3"));
    // Fetching again into the same place: the data is there and complete.
    assert_eq!(env.ok(&args), "dl/bundle-3\n");
}

#[test]
fn failures_are_one_line_with_their_exit_code() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-4", [100, 100_000, 100]);
    env.ok(&["bundle", "create", &dir]);
    let fetch = |torrent: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["bundle", "fetch", torrent, "--out", out];
        args.extend_from_slice(&LOOPBACK);
        args.extend_from_slice(extra);
        env.run(&args)
    };
    // An unreadable torrent file.
    let run = fetch("missing.torrent", "o", &[]);
    assert_eq!(run.code, FAILURE);
    assert_eq!(
        run.one_line_error(),
        "cannot read missing.torrent: No such file or directory (os error 2)"
    );
    // A file that is not a torrent.
    env.write("junk.torrent", "d4:spam");
    let run = fetch("junk.torrent", "o", &[]);
    assert_eq!(run.code, REFUSED);
    assert!(
        run.one_line_error().starts_with("bad torrent: junk.torrent: not a torrent file"),
        "{}",
        run.stderr
    );
    // A bad magnet link.
    let run = fetch("magnet:?xt=urn:btih:nothex", "o", &[]);
    assert_eq!(run.code, REFUSED);
    assert!(
        run.one_line_error().starts_with("bad magnet link: 'nothex' is not an info-hash"),
        "{}",
        run.stderr
    );
    // No peers within the timeout.
    let started = Instant::now();
    // (With --json the progress goes to stdout, so stderr is the error alone.)
    let run = fetch("bundle-4.torrent", "o", &["--timeout", "2s", "--json"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stdout.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));
    assert_eq!(run.one_line_error(), "timed out after 2s: 0 peers seen, 0.0% done");
    assert!(started.elapsed() < Duration::from_secs(15));
    // An output folder holding other data is refused and left as it was.
    std::fs::create_dir_all(env.path("taken/bundle-4")).unwrap();
    env.write("taken/bundle-4/contracts.jsonl", "mine");
    let run = fetch("bundle-4.torrent", "taken", &["--timeout", "5s"]);
    assert_eq!(run.code, REFUSED, "{}", run.stderr);
    assert!(
        run.one_line_error().starts_with("taken/bundle-4 already holds different data"),
        "{}",
        run.stderr
    );
    assert_eq!(env.read("taken/bundle-4/contracts.jsonl"), "mine");
    // A seeder whose folder does not hold the data refuses to start, and changes nothing.
    let wrong = bundle(&env, "bundle-5", [100, 100_000, 100]);
    std::fs::write(env.path("bundle-5/manifest.jwt"), b"tampered").unwrap();
    let run = env.run(&[
        "bundle",
        "seed",
        "bundle-4.torrent",
        "--dir",
        &wrong,
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(run.code, REFUSED);
    assert!(
        run.one_line_error()
            .contains("does not hold this torrent's data: manifest.jwt has 8 bytes"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(env.path("bundle-5/manifest.jwt")).unwrap(), b"tampered");
}

#[test]
fn a_full_disk_is_reported_before_downloading() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-6", [100, 600_000, 100]);
    env.ok(&["bundle", "create", &dir]);
    let small = env.path("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&small)
        .status();
    assert!(
        mounted.is_ok_and(|s| s.success()),
        "this test mounts a small tmpfs and needs root (CI runs as root)"
    );
    let run = env.run(&[
        "bundle",
        "fetch",
        "bundle-6.torrent",
        "--out",
        "small",
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "5s",
    ]);
    let _ = Command::new("umount").arg(&small).status();
    assert_eq!(run.code, FAILURE);
    assert!(
        run.one_line_error().starts_with("disk full: small (600200 bytes needed,"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_interrupted_fetch_resumes_without_fetching_verified_pieces_again() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-7", [1_000, 1_500_000, 1_000]);
    env.ok(&["bundle", "create", &dir, "--piece-length", "16384"]);
    // A slow seeder, so the fetch can be killed halfway: about 10 s for the whole bundle, so
    // that even a fetcher starved of CPU for seconds on a busy machine reports progress
    // between 30% and 100%.
    let (_seeder, listen) = seed(&env, "bundle-7.torrent", &dir, &["--upload-limit", "150000"]);
    let mut args =
        vec!["bundle", "fetch", "bundle-7.torrent", "--out", "dl", "--peer", &listen, "--json"];
    args.extend_from_slice(&LOOPBACK);
    let mut first = Command::new(env!("CARGO_BIN_EXE_swarmvm"))
        .args(&args)
        .current_dir(env.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reader = std::io::BufReader::new(first.stdout.take().unwrap());
    let mut killed_at = 0.0;
    for line in reader.lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let pct = v["percent"].as_f64().unwrap();
        if pct >= 30.0 {
            killed_at = pct;
            first.kill().unwrap();
            break;
        }
    }
    first.wait().unwrap();
    assert!((30.0..100.0).contains(&killed_at), "killed at {killed_at}%");
    let info_hash = env.json(&["bundle", "create", &dir, "--piece-length", "16384"])["info_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let marker = format!("dl/.swarmvm-partial/{info_hash}");
    assert!(env.path(&marker).exists(), "the partial download is marked as ours");
    let run = env.run(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let last: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "complete");
    let total = last["total"].as_u64().unwrap();
    let fetched = last["fetched"].as_u64().unwrap();
    assert!(fetched < total * 8 / 10, "resumed: fetched {fetched} of {total} bytes again");
    same_files(&env.path("dl/bundle-7"), &env.path("bundle-7"));
    assert!(!env.path(&marker).exists());
    assert!(!env.path("dl/.swarmvm-partial").exists(), "the marker folder goes when empty");
}

/// `bundle fetch TORRENT --out OUT --peer PEER` on loopback, with `extra` arguments.
fn fetch_args<'a>(
    torrent: &'a str,
    out: &'a str,
    peer: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["bundle", "fetch", torrent, "--out", out, "--peer", peer];
    args.extend_from_slice(&LOOPBACK);
    args.extend_from_slice(extra);
    args
}

#[test]
fn progress_is_a_bar_on_a_terminal_and_a_plain_line_when_piped() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-p", [1_000, 1_200_000, 1_000]);
    env.ok(&["bundle", "create", &dir, "--piece-length", "16384"]);
    // A slow seeder: each fetch takes about four seconds.
    let (_seeder, listen) = seed(&env, "bundle-p.torrent", &dir, &["--upload-limit", "300000"]);

    let (screen, code) =
        run_on_terminal(&env, &fetch_args("bundle-p.torrent", "tty", &listen, &[]));
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("bundle-p ["), "the bar, named: {screen:?}");
    assert!(screen.contains("=>"), "a bar partly drawn: {screen:?}");
    assert!(screen.contains('\r') || screen.contains("\x1b["), "redrawn in place: {screen:?}");
    assert!(!screen.contains("downloading..."), "no plain lines on a terminal: {screen:?}");
    same_files(&env.path("tty/bundle-p"), &env.path("bundle-p"));

    let run = env.run(&fetch_args("bundle-p.torrent", "piped", &listen, &[]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("downloading...")).collect();
    assert!(!lines.is_empty(), "a plain progress line every two seconds: {:?}", run.stderr);
    for line in &lines {
        assert!(line.starts_with("bundle-p: downloading... "), "{line}");
        assert!(line.contains("% complete (down: ") && line.ends_with("peers: 1)"), "{line}");
    }
    assert!(!run.stderr.contains('\x1b') && !run.stderr.contains('\r'), "{:?}", run.stderr);
    same_files(&env.path("piped/bundle-p"), &env.path("bundle-p"));
}

#[test]
fn fetch_finds_the_seeder_through_a_tracker_given_on_the_command_line() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-t", [1_000, 300_000, 1_000]);
    let created = env.json(&["bundle", "create", &dir]);
    let info_hash = created["info_hash"].as_str().unwrap().to_owned();
    let tracker = swarmvm_test_support::tools::Tracker::start(&[info_hash]);
    let url = tracker.announce_url();
    let (_seeder, _) = seed(&env, "bundle-t.torrent", &dir, &["--tracker", &url]);
    // The torrent names no tracker: without --tracker the fetcher finds nobody.
    let mut args = vec!["bundle", "fetch", "bundle-t.torrent", "--out", "alone", "--timeout", "3s"];
    args.extend_from_slice(&LOOPBACK);
    let alone = env.run(&args);
    assert_eq!(alone.code, TIMED_OUT, "{}", alone.stderr);
    let mut args = vec!["bundle", "fetch", "bundle-t.torrent", "--out", "dl", "--tracker", &url];
    args.extend_from_slice(&LOOPBACK);
    args.extend(["--timeout", "60s"]);
    let run = env.run(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    same_files(&env.path("dl/bundle-t"), &env.path("bundle-t"));
}

#[test]
fn a_disk_that_fills_mid_download_fails_in_one_line_and_the_fetch_resumes_later() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-f", [1_000, 2_000_000, 1_000]);
    let info_hash = env.json(&["bundle", "create", &dir, "--piece-length", "16384"])["info_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_seeder, listen) = seed(&env, "bundle-f.torrent", &dir, &["--upload-limit", "400000"]);
    let disk = Tmpfs::mount(&env, "disk", 4 << 20);
    let out = disk.path.join("dl");
    let out = out.to_str().unwrap();
    let args = fetch_args("bundle-f.torrent", out, &listen, &["--json"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarmvm"))
        .args(&args)
        .current_dir(env.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once a fifth has arrived, something else fills the disk. (Its output is read to the
    // end: a closed pipe would end it early.)
    let reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut filled_at = None;
    for line in reader.lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if filled_at.is_none() && v["event"] == "progress" && v["percent"].as_f64().unwrap() >= 20.0
        {
            filled_at = v["percent"].as_f64();
            fill(&disk.path.join("filler"));
        }
    }
    let filled_at = filled_at.expect("the fetch reported progress");
    assert!(filled_at < 100.0);
    let out_status = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out_status.stderr);
    assert_eq!(out_status.status.code(), Some(FAILURE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: disk full: "), "{stderr}");
    assert!(stderr.contains("no space left"), "{stderr}");
    // The folder is still marked as an unfinished fetch of ours.
    let marker = disk.path.join(format!("dl/.swarmvm-partial/{info_hash}"));
    assert!(marker.exists(), "the partial fetch stays marked");

    // Space freed, the same command resumes and completes.
    std::fs::remove_file(disk.path.join("filler")).unwrap();
    let run = env.run(&fetch_args("bundle-f.torrent", out, &listen, &["--json"]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let last: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "complete");
    assert!(
        last["fetched"].as_u64().unwrap() < last["total"].as_u64().unwrap(),
        "verified pieces were kept: {last}"
    );
    same_files(&disk.path.join("dl/bundle-f"), &env.path("bundle-f"));
    assert!(!marker.exists());
}

/// Writes zeros to `path` until the file system is full.
pub(crate) fn fill(path: &std::path::Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..100_000 {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_data()) {
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
            return;
        }
    }
    panic!("the disk never filled");
}
