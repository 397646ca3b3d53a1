//! Crash test: a child process applying batches to a ledger is killed with SIGKILL at random
//! moments. After every kill the ledger reopens and holds exactly a whole prefix of the
//! batches: its root is the root of its last logged batch, never of a partial one. Then a
//! child runs to the end and reaches the root of the whole sequence.
//!
//! One binary plays both parts: with `SWARMVM_CRASH_CHILD=DIR` set it is the child (apply
//! the batches in `DIR`, resuming where the ledger stopped); otherwise it is a test harness.
//! `SWARMVM_CRASH_KILLS` sets the number of kills (default 24).

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use swarmvm_bundle::verify_local;
use swarmvm_ledger::Ledger;
use swarmvm_test_support::net::{TestNet, course, student, vote};
use swarmvm_token::Network;
use swarmvm_wallet::KeyMaterial;

const BATCHES: usize = 40;
const CONTRACTS_PER_BATCH: usize = 150;

fn main() {
    if let Ok(dir) = std::env::var("SWARMVM_CRASH_CHILD") {
        child(Path::new(&dir));
        return;
    }
    let args = Arguments::from_args();
    let trial = Trial::test("sigkill_while_applying_leaves_a_whole_prefix", parent);
    libtest_mimic::run(&args, vec![trial]).exit();
}

/// The batches, as files the child reads: `authority.pub`, `registrations`, `batch-N`.
fn write_inputs(dir: &Path, net: &TestNet) {
    std::fs::write(dir.join("authority.pub"), net.authority.public_key().to_spki_pem()).unwrap();
    std::fs::write(dir.join("registrations"), net.tokens.join("\n")).unwrap();
    std::fs::write(dir.join("time"), net.issued_at.to_string()).unwrap();
    let mut nonces = vec![0u64; net.peers.len()];
    for b in 0..BATCHES {
        let contracts: Vec<String> = (0..CONTRACTS_PER_BATCH)
            .map(|i| {
                let peer = i % net.peers.len();
                nonces[peer] += 1;
                let n = b * CONTRACTS_PER_BATCH + i;
                let actions = match i % 3 {
                    0 => vec![student(&format!("S{n}"))],
                    1 => vec![course(&format!("C{n}")), student(&format!("S{n}"))],
                    // Every tenth proposal is voted on twice by a peer: some rejections too.
                    _ => vec![vote(&format!("P{}", n / 10))],
                };
                net.contract(peer, nonces[peer], &actions)
            })
            .collect();
        std::fs::write(dir.join(format!("batch-{b}")), contracts.join("\n")).unwrap();
    }
}

struct Inputs {
    trust: Network,
    registrations: Vec<String>,
    time: u64,
    batches: Vec<Vec<String>>,
}

fn read_inputs(dir: &Path) -> Inputs {
    let lines = |name: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(name)).unwrap().lines().map(str::to_owned).collect()
    };
    let (auth, _) = swarmvm_wallet::read_key_file(&dir.join("authority.pub"), None).unwrap();
    let KeyMaterial::Public(key) = auth else { panic!("public key") };
    let time: u64 = std::fs::read_to_string(dir.join("time")).unwrap().parse().unwrap();
    Inputs {
        trust: Network::single(key),
        registrations: lines("registrations"),
        time,
        batches: (0..BATCHES).map(|b| lines(&format!("batch-{b}"))).collect(),
    }
}

/// Applies batch `k` (with the registrations in the first one).
fn apply_next(ledger: &mut Ledger, inputs: &Inputs) -> bool {
    let snapshot = ledger.snapshot().unwrap();
    let k = usize::try_from(snapshot.log_len()).unwrap();
    if k >= BATCHES {
        return false;
    }
    let regs: &[String] = if k == 0 { &inputs.registrations } else { &[] };
    let batch =
        verify_local(regs, &inputs.batches[k], &inputs.trust, &snapshot, inputs.time).unwrap();
    drop(snapshot);
    ledger.commit(&batch).unwrap();
    true
}

fn child(dir: &Path) {
    let inputs = read_inputs(dir);
    let mut ledger = Ledger::open(&dir.join("ledger.redb")).unwrap();
    while apply_next(&mut ledger, &inputs) {}
}

fn spawn_child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .env("SWARMVM_CRASH_CHILD", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn parent() -> Result<(), Failed> {
    let kills: usize =
        std::env::var("SWARMVM_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(4);
    write_inputs(dir.path(), &net);
    let inputs = read_inputs(dir.path());

    // The root after each whole prefix, from an uninterrupted run in this process.
    let reference: PathBuf = dir.path().join("reference.redb");
    let mut roots = Vec::with_capacity(BATCHES + 1);
    let started = Instant::now();
    {
        let mut ledger = Ledger::open(&reference).unwrap();
        roots.push(ledger.snapshot().unwrap().state_root());
        while apply_next(&mut ledger, &inputs) {
            roots.push(ledger.snapshot().unwrap().state_root());
        }
    }
    let whole_run = started.elapsed();
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
            | 1;
    eprintln!("crash test: {kills} kills, seed {seed}, an uninterrupted run takes {whole_run:?}");
    let mut random = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound.max(1)
    };

    let path = dir.path().join("ledger.redb");
    let mut mid_run_kills = 0;
    let mut last_position = 0;
    let mut attempts = 0;
    // Kill within the time the remaining batches take (plus start-up), so kills land while
    // the child works; a finished sequence starts over from an empty ledger.
    while mid_run_kills < kills {
        attempts += 1;
        if attempts > kills * 4 {
            return Err(
                format!("only {mid_run_kills} of {attempts} kills hit a running child").into()
            );
        }
        let remaining = (BATCHES - last_position) as u64;
        let window = (whole_run.as_millis() as u64 * remaining / BATCHES as u64).max(10) + 30;
        let mut child = spawn_child(dir.path());
        std::thread::sleep(Duration::from_millis(random(window)));
        if child.try_wait().unwrap().is_none() {
            mid_run_kills += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let ledger = Ledger::open(&path).map_err(|e| format!("reopen after kill: {e}"))?;
        let snapshot = ledger.snapshot().unwrap();
        let position = usize::try_from(snapshot.log_len()).unwrap();
        if snapshot.state_root() != roots[position] {
            return Err(format!(
                "after a kill at log position {position} the root is not that prefix's root"
            )
            .into());
        }
        if position < last_position {
            return Err(format!("log went back from {last_position} to {position}").into());
        }
        drop(snapshot);
        drop(ledger);
        last_position = position;
        if position == BATCHES {
            std::fs::remove_file(&path).unwrap();
            last_position = 0;
        }
    }
    eprintln!(
        "crash test: {mid_run_kills} of {attempts} kills landed while the child was applying"
    );
    let mut child = spawn_child(dir.path());
    if !child.wait().unwrap().success() {
        return Err("the final child failed".into());
    }
    let ledger = Ledger::open(&path).unwrap();
    let snapshot = ledger.snapshot().unwrap();
    if snapshot.state_root() != roots[BATCHES] || snapshot.log_len() != BATCHES as u64 {
        return Err("the resumed run did not reach the uninterrupted root".into());
    }
    Ok(())
}
