//! The outside review's findings, tried again through the command line as an attacker (or a
//! careless operator) would: padded manifests, weak keys, fetches through symlinks and
//! planted markers, re-signed bundles and forks, local runs on a following ledger, many
//! files, hosts and labels.

use std::os::unix::fs::symlink;
use std::process::Command;

use crate::bundle::{LOOPBACK, bundle, seed};
use crate::node::{create_b1, create_b2, http_of, network};
use crate::support::{Daemon, Env, REFUSED};

fn apply(env: &Env, bundle: &str, data_dir: &str) -> crate::support::Run {
    env.run(&["node", "apply", bundle, "--data-dir", data_dir, "--trust", "auth.pub"])
}

fn copy_bundle(env: &Env, from: &str, to: &str) {
    std::fs::create_dir_all(env.path(to)).unwrap();
    for f in ["registration_tokens.txt", "contracts.jsonl", "manifest.jwt"] {
        std::fs::copy(env.path(from).join(f), env.path(to).join(f)).unwrap();
    }
}

#[test]
fn a_padded_copy_of_a_manifest_cannot_wedge_the_chain() {
    let env = Env::new();
    network(&env);
    let b1 = create_b1(&env);
    let b2 = create_b2(&env);
    let manifest = env.read("b1/manifest.jwt");
    let token = manifest.trim_end();
    let pads = [
        format!(" {token}"),
        format!("{token} "),
        format!("{token}\r\n"),
        format!("{token}\n\n"),
        format!("{token}\t\n"),
        format!("{token}\u{a0}"),
        format!("\u{2003}{token}"),
        format!("\u{feff}{token}\n"),
        format!("{token}\n{token}\n"),
    ];
    for (i, padded) in pads.iter().enumerate() {
        let name = format!("padded-{i}");
        copy_bundle(&env, "b1", &name);
        std::fs::write(env.path(&name).join("manifest.jwt"), padded).unwrap();
        let run = apply(&env, &name, "peer");
        assert_eq!(run.code, REFUSED, "{padded:?}: {}", run.stderr);
        assert!(
            run.one_line_error().contains("manifest.jwt must hold exactly one JWS serialization"),
            "{}",
            run.stderr
        );
    }
    assert!(!env.path("peer/ledger.redb").exists(), "a refused bundle never opens the ledger");
    // The real chain applies; a copy without the newline is the same bundle.
    assert_eq!(apply(&env, "b1", "peer").code, 0);
    copy_bundle(&env, "b1", "b1-again");
    std::fs::write(env.path("b1-again/manifest.jwt"), token).unwrap();
    let again = apply(&env, "b1-again", "peer");
    assert_eq!(again.code, REFUSED);
    assert!(
        again
            .one_line_error()
            .contains(&format!("({}) is already applied", b1["bundle"].as_str().unwrap())),
        "{}",
        again.stderr
    );
    let applied = env.json(&["node", "apply", "b2", "--data-dir", "peer", "--trust", "auth.pub"]);
    assert_eq!(applied["seq"], 2);
    assert_eq!(applied["bundle"], b2["bundle"]);
    assert_eq!(
        env.json(&["state", "show", "--data-dir", "peer"])["last_bundle"]["id"],
        b2["bundle"]
    );
}

/// An SPKI PEM of the raw Ed25519 public key `hex`.
fn ed25519_pem(hex: &str) -> String {
    use base64::Engine as _;
    let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    der.extend((0..32).map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap()));
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
}

#[test]
fn weak_ed25519_keys_are_refused_wherever_a_key_is_read() {
    let env = Env::new();
    network(&env);
    for (i, hex) in swarmvm_test_support::WEAK_ED25519.iter().enumerate() {
        let jwk =
            env.write(&format!("weak{i}.jwk"), swarmvm_test_support::ed25519_jwk(hex).to_string());
        let pem = env.write(&format!("weak{i}.pem"), ed25519_pem(hex));
        for file in [&jwk, &pem] {
            let err = env.fails(&["wallet", "show", file], REFUSED);
            assert!(err.contains("weak key refused"), "{hex}: {err}");
            let err = env.fails(&["token", "verify", "tokens.txt", "--trust", file], REFUSED);
            assert!(err.contains("weak key refused"), "{hex}: {err}");
            let err = env.fails(
                &["token", "issue", "wallets", "--key", "auth.pem", "--wallet", file],
                REFUSED,
            );
            assert!(err.contains("weak key refused"), "{hex}: {err}");
        }
    }
    // An ordinary key in the same two forms is fine.
    let good = env.json(&["wallet", "show", "peer1.pem"]);
    let jwk = env.write("good.jwk", good["jwk"].to_string());
    env.ok(&["wallet", "show", &jwk]);
}

#[test]
fn labels_with_invisible_characters_are_refused() {
    let env = Env::new();
    network(&env);
    for label in ["peer\u{202e}1", "peer\u{200b}1", "\u{feff}peer", "peer\u{2066}x\u{2069}"] {
        let wallet = format!("{label}=peer1.pem");
        let err = env.fails(
            &["token", "issue", "wallets", "--key", "auth.pem", "--wallet", &wallet],
            REFUSED,
        );
        assert!(err.contains("invisible format characters"), "{err}");
        assert!(!err.chars().any(swarmvm_primitives::text::is_hidden), "escaped: {err:?}");
    }
}

#[test]
fn fetches_never_write_through_a_symlink_nor_into_other_data() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-9", [1_000, 60_000, 500]);
    let created = env.json(&["bundle", "create", &dir]);
    let info_hash = created["info_hash"].as_str().unwrap().to_owned();
    let (_seeder, listen) = seed(&env, "bundle-9.torrent", &dir, &[]);
    let fetch = |out: &str| {
        let mut args = vec![
            "bundle",
            "fetch",
            "bundle-9.torrent",
            "--out",
            out,
            "--peer",
            &listen,
            "--timeout",
            "30s",
        ];
        args.extend_from_slice(&LOOPBACK);
        env.run(&args)
    };
    let outside = env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"precious").unwrap();

    // A dangling link at OUT/NAME, and a link to a folder.
    for (out, target) in [("dl-a", outside.join("made-by-fetch")), ("dl-b", outside.clone())] {
        std::fs::create_dir(env.path(out)).unwrap();
        symlink(&target, env.path(out).join("bundle-9")).unwrap();
        let run = fetch(out);
        assert_eq!(run.code, REFUSED, "{}", run.stderr);
        assert!(run.one_line_error().contains("symbolic link"), "{}", run.stderr);
    }
    // A link planted inside a folder an earlier fetch left unfinished (its marker is ours).
    std::fs::create_dir_all(env.path("dl-c/bundle-9")).unwrap();
    std::fs::create_dir_all(env.path("dl-c/.swarmvm-partial")).unwrap();
    std::fs::write(env.path(&format!("dl-c/.swarmvm-partial/{info_hash}")), "bundle-9").unwrap();
    symlink(outside.join("victim"), env.path("dl-c/bundle-9/contracts.jsonl")).unwrap();
    let run = fetch("dl-c");
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    // A folder holding other data, with the first version's marker planted beside it.
    std::fs::create_dir_all(env.path("dl-d/bundle-9")).unwrap();
    std::fs::write(env.path("dl-d/bundle-9/contracts.jsonl"), b"someone's data").unwrap();
    std::fs::write(env.path("dl-d/.bundle-9.swarmvm-partial"), &info_hash).unwrap();
    let run = fetch("dl-d");
    assert_eq!(run.code, REFUSED, "{}", run.stderr);
    assert!(run.one_line_error().contains("already holds different data"), "{}", run.stderr);
    assert_eq!(
        std::fs::read(env.path("dl-d/bundle-9/contracts.jsonl")).unwrap(),
        b"someone's data"
    );

    let outside_now: Vec<_> =
        std::fs::read_dir(&outside).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(outside_now, ["victim"], "nothing was written outside --out");
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"precious");
    // And an honest fetch still works.
    assert_eq!(fetch("dl-ok").code, 0);
}

#[test]
fn a_fetch_of_thousands_of_files_needs_few_descriptors() {
    let env = Env::new();
    let many = env.path("many");
    for i in 0..2_000 {
        let sub = many.join(format!("d{}", i % 20));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    env.ok(&["bundle", "create", &env.p("many")]);
    let (_seeder, listen) = seed(&env, "many.torrent", &env.p("many"), &[]);
    // At most 128 descriptors for the whole fetching process.
    let out = Command::new("sh")
        .args(["-c", "ulimit -n 128 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_swarmvm"))
        .args([
            "bundle",
            "fetch",
            "many.torrent",
            "--out",
            "dl",
            "--peer",
            &listen,
            "--timeout",
            "60s",
        ])
        .args(LOOPBACK)
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for i in [0, 999, 1_999] {
        let rel = format!("dl/many/d{}/f{i}", i % 20);
        assert_eq!(env.read(&rel), format!("file {i}\n"));
    }
}

#[test]
fn re_signing_a_bundle_needs_force() {
    let env = Env::new();
    network(&env);
    let b1 = create_b1(&env);
    let manifest = env.read("b1/manifest.jwt");
    let err = env.fails(&["bundle", "create", "b1", "--key", "auth.pem"], REFUSED);
    assert!(err.contains("already holds a signed bundle") && err.contains("a fork"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(env.read("b1/manifest.jwt"), manifest, "nothing was signed");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = env.json(&["bundle", "create", "b1", "--key", "auth.pem", "--force"]);
    assert_eq!(again["seq"], 1);
    assert_ne!(again["bundle"], b1["bundle"], "--force makes another bundle for seq 1");
}

#[test]
fn a_following_ledger_runs_no_local_contracts_and_a_local_one_takes_no_bundles() {
    let env = Env::new();
    network(&env);
    create_b1(&env);
    assert_eq!(apply(&env, "b1", "peer").code, 0);
    let root = env.ok(&["state", "root", "--data-dir", "peer"]);
    let err =
        env.fails(&["exec", "c2.json", "--wallet", "peer2.pem", "--data-dir", "peer"], REFUSED);
    assert!(err.contains("follows network") && err.contains("another --data-dir"), "{err}");
    assert_eq!(env.ok(&["state", "root", "--data-dir", "peer"]), root);

    env.ok(&[
        "exec",
        "c2.json",
        "--wallet",
        "peer2.pem",
        "--data-dir",
        "local",
        "--tokens",
        "tokens.txt",
        "--trust",
        "auth.pub",
    ]);
    let root = env.ok(&["state", "root", "--data-dir", "local"]);
    let run = apply(&env, "b1", "local");
    assert_eq!(run.code, REFUSED);
    assert!(run.one_line_error().contains("local exec batches"), "{}", run.stderr);
    assert_eq!(env.ok(&["state", "root", "--data-dir", "local"]), root);
}

#[test]
fn a_fork_is_refused_and_node_evidence_shows_both_manifests() {
    let env = Env::new();
    network(&env);
    let b1 = create_b1(&env);
    assert_eq!(apply(&env, "b1", "peer").code, 0);
    assert_eq!(env.ok(&["node", "evidence", "--data-dir", "peer"]).trim(), "no fork evidence");
    // The same authority signs another bundle for seq 1 (a stolen key, or a careless --force).
    let fork = env.json(&[
        "bundle",
        "create",
        "fork",
        "--key",
        "auth.pem",
        "--tokens",
        "tokens.txt",
        "--contracts",
        "contracts2.jsonl",
    ]);
    let root = env.ok(&["state", "root", "--data-dir", "peer"]);
    let run = apply(&env, "fork", "peer");
    assert_eq!(run.code, REFUSED);
    assert!(
        run.one_line_error()
            .starts_with("bundle not applied: fork: bundle seq 1 is already applied"),
        "{}",
        run.stderr
    );
    assert_eq!(env.ok(&["state", "root", "--data-dir", "peer"]), root);
    let evidence = env.json(&["node", "evidence", "--data-dir", "peer"])["evidence"].clone();
    assert_eq!(evidence.as_array().unwrap().len(), 1, "{evidence}");
    assert_eq!(evidence[0]["seq"], 1);
    assert_eq!(evidence[0]["kept"], b1["bundle"]);
    assert_eq!(evidence[0]["other"], fork["bundle"]);
    assert_eq!(evidence[0]["kept_manifest"], env.read("b1/manifest.jwt").trim_end());
    assert_eq!(evidence[0]["other_manifest"], env.read("fork/manifest.jwt").trim_end());
    let text = env.ok(&["node", "evidence", "--data-dir", "peer"]);
    assert!(
        text.starts_with(&format!(
            "fork at seq 1: kept {}, refused {}",
            b1["bundle"].as_str().unwrap(),
            fork["bundle"].as_str().unwrap()
        )),
        "{text}"
    );
    // Offered again, it is not recorded twice.
    assert_eq!(apply(&env, "fork", "peer").code, REFUSED);
    assert_eq!(
        env.json(&["node", "evidence", "--data-dir", "peer"])["evidence"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn node_run_answers_only_the_hosts_it_serves() {
    let env = Env::new();
    network(&env);
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
            "--allow-host",
            "node.example.org",
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let http = http_of(&node);
    let port = http.port();
    let status = |host: &str| {
        swarmvm_test_support::http::exchange(http, "GET", "/v1/status", &[("Host", host)], "")
            .status
    };
    assert_eq!(status(&format!("node.example.org:{port}")), 200);
    assert_eq!(status(&format!("localhost:{port}")), 200);
    assert_eq!(status(&format!("attacker.example:{port}")), 421);
    assert_eq!(status(&format!("node.example.org.attacker.example:{port}")), 421);
}
