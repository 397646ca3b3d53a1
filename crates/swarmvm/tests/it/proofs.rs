//! Verified reads: `GET /v1/proof/{table}/{id}` and `swarmvm state prove` answer an entry or
//! its absence with a proof against a signed head; `swarmvm proof verify` and the independent
//! `tests/vectors/verify_proof.py` check it, and every forgery exits 1 with a one-line reason.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use swarmvm_test_support::http::get;
use swarmvm_test_support::require_program;
use swarmvm_token::{HeadContent, sign_head};
use swarmvm_wallet::{Wallet, read_key_file};

use crate::live::live_sequencer;
use crate::support::{Daemon, Env, REFUSED};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// A head's claims, read without verifying them.
fn claims(head: &str) -> Value {
    serde_json::from_slice(&b64().decode(head.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// The private key in `path`.
pub(crate) fn wallet(env: &Env, path: &str) -> Wallet {
    read_key_file(&env.path(path), None).unwrap().0.into_wallet().unwrap()
}

/// A head over `like`'s claims, signed by `by` for `network`, issued at `iat`.
pub(crate) fn head_like(like: &Value, by: &[&Wallet], network: &str, iat: u64) -> String {
    let snapshot: Option<swarmvm_token::SnapshotClaim> =
        like.get("snapshot").map(|s| serde_json::from_value(s.clone()).unwrap());
    let content = HeadContent {
        network,
        seq: like["seq"].as_u64().unwrap(),
        bundle: like["bundle"].as_str().unwrap().parse().unwrap(),
        magnet: like["magnet"].as_str().unwrap(),
        state_root: like["state_root"].as_str().unwrap().parse().unwrap(),
        now: iat,
        max_age: 600,
        snapshot: snapshot.as_ref(),
    };
    sign_head(by, &content).unwrap()
}

/// `tests/vectors/verify_proof.py` on `doc`: its exit code and output.
fn python(env: &Env, doc: &str, extra: &[&str]) -> (i32, String) {
    let out = std::process::Command::new("python3")
        .arg(format!("{ROOT}/tests/vectors/verify_proof.py"))
        .arg(env.path(doc))
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// A live sequencer that applied a contract registering student S0000001 (Zoë, Physics), and
/// kept the head of that bundle's seq; its HTTP address.
pub(crate) fn sequencer_with_a_student(env: &Env) -> (Daemon, std::net::SocketAddr) {
    let (seq, http) = live_sequencer(env);
    env.write(
        "c.json",
        r#"{"actions": [{"action": "register_student", "student": {"id": "S0000001", "name": "Zoë", "department": "Physics"}}]}"#,
    );
    let url = format!("http://{http}");
    let submit = ["contract", "submit", "c.json", "--node", &url, "--wallet", "peer1.pem"];
    env.ok(&[&submit[..], &["--wait", "--timeout", "30s"]].concat());
    proof_with_head(http, "/v1/proof/students/S0000001");
    (seq, http)
}

/// The proof document for `path` once it names a head (the head of a seq is kept just after
/// its bundle applies).
fn proof_with_head(http: std::net::SocketAddr, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, doc) = get(http, path);
        assert_eq!(code, 200, "{doc}");
        if doc["head"].is_string() {
            return doc;
        }
        assert!(Instant::now() < deadline, "no head in {doc}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn entries_and_absences_are_proved_against_the_sequencers_head_and_every_forgery_exits_1() {
    require_program("python3", "python3");
    let env = Env::new();
    let (seq, http) = sequencer_with_a_student(&env);

    let present = proof_with_head(http, "/v1/proof/students/S0000001");
    let absent = proof_with_head(http, "/v1/proof/students/S0000002");
    assert_eq!(present["value"], serde_json::json!({"name": "Zoë", "department": "Physics"}));
    assert_eq!(absent["value"], Value::Null);
    assert!(present.get("root").is_none(), "a head covers the root: {present}");
    let proof_len = b64().decode(present["proof"].as_str().unwrap()).unwrap().len();
    assert!(proof_len < 1024, "{proof_len} bytes");
    env.write("present.json", present.to_string());
    env.write("absent.json", absent.to_string());

    let out = env.ok(&["proof", "verify", "present.json", "--trust", "auth.pub"]);
    assert!(out.contains("present: students S0000001 = {"), "{out}");
    assert!(out.contains("verified against head seq 2"), "{out}");
    let out = env.ok(&["proof", "verify", "absent.json", "--trust", "auth.pub"]);
    assert!(out.starts_with("absent: students S0000002"), "{out}");
    let checked = env.json(&["proof", "verify", "present.json", "--trust", "auth.pub"]);
    assert_eq!(
        (checked["present"].clone(), checked["head"]["seq"].clone()),
        (true.into(), 2.into())
    );
    let root = checked["state_root"].as_str().unwrap().to_owned();
    assert_eq!(root, claims(present["head"].as_str().unwrap())["state_root"]);
    env.ok(&["proof", "verify", "present.json", "--root", &root]);

    // An id is printed escaped: a proof of a made-up id cannot draw a line of its own.
    let odd = proof_with_head(http, "/v1/proof/students/X%0Apresent:%20students%20Y");
    env.write("odd.json", odd.to_string());
    let out = env.ok(&["proof", "verify", "odd.json", "--trust", "auth.pub"]);
    assert!(out.starts_with("absent: students X\\npresent: students Y\n"), "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");

    // The offline command reads the same document from the data folder of the running node.
    let offline = env.json(&[
        "state",
        "prove",
        "--data-dir",
        "seq",
        "--table",
        "students",
        "--id",
        "S0000001",
    ]);
    assert_eq!((&offline["value"], &offline["proof"]), (&present["value"], &present["proof"]));
    assert!(offline["head"].is_string(), "{offline}");

    // The independent verifier agrees.
    for doc in ["present.json", "absent.json"] {
        let (code, out) = python(&env, doc, &[]);
        assert_eq!(code, 0, "{out}");
    }
    let (code, out) = python(&env, "present.json", &["--root", &root]);
    assert!(code == 0 && out.starts_with("present students \"S0000001\""), "{out}");

    // Forgeries: each exits 1 with one line saying why, here and in Python.
    let refused = |doc: &Value, name: &str, args: &[&str], says: &str| {
        env.write(name, doc.to_string());
        let err = env.fails(&[&["proof", "verify", name][..], args].concat(), REFUSED);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{name}: {err}");
    };
    let trust = ["--trust", "auth.pub"];
    let mut value = present.clone();
    value["value"]["name"] = "Mallory".into();
    refused(&value, "value.json", &trust, "the proof leads to root");
    assert_eq!(python(&env, "value.json", &[]).0, 1);
    let mut bent = present.clone();
    let mut bytes = b64().decode(present["proof"].as_str().unwrap()).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    bent["proof"] = b64().encode(&bytes).into();
    refused(&bent, "proof.json", &trust, "proof");
    assert_eq!(python(&env, "proof.json", &[]).0, 1);
    let mut claimed = absent;
    claimed["value"] = serde_json::json!({"name": "Ghost", "department": "None"});
    refused(&claimed, "claimed.json", &trust, "shows the entry absent");
    assert_eq!(python(&env, "claimed.json", &[]).0, 1);

    let like = claims(present["head"].as_str().unwrap());
    let auth = wallet(&env, "auth.pem");
    let network = like["aud"].as_str().unwrap().to_owned();
    let now = swarmvm_token::unix_now();
    let mut other = present.clone();
    other["head"] = head_like(&like, &[&auth], "another-network", now).into();
    refused(&other, "other.json", &trust, "not this network");
    let mut expired = present.clone();
    expired["head"] = head_like(&like, &[&auth], &network, now - 7_200).into();
    refused(&expired, "expired.json", &trust, "expired");
    let outsider = wallet(&env, "peer2.pem");
    let mut outsiders = present.clone();
    outsiders["head"] = head_like(&like, &[&outsider], &network, now).into();
    refused(&outsiders, "outsiders.json", &trust, "not a member");
    let wrong = "00".repeat(32);
    refused(&present, "root.json", &["--root", &wrong], "the proof leads to root");
    let (code, out) = python(&env, "present.json", &["--root", &wrong]);
    assert!(code == 1 && out.contains("leads to root"), "{out}");
    // A head over the same root re-signed by the authority now verifies: only what the
    // signatures cover counts.
    let mut again = present;
    again["head"] = head_like(&like, &[&auth], &network, now).into();
    env.write("again.json", again.to_string());
    env.ok(&["proof", "verify", "again.json", "--trust", "auth.pub"]);
    drop(seq);
}

#[test]
fn proof_requests_for_unknown_tables_and_overlong_ids_are_refused() {
    let env = Env::new();
    let (seq, http) = live_sequencer(&env);
    let (code, body) = get(http, "/v1/proof/people/S1");
    assert!(code == 404 && body["error"].as_str().unwrap().contains("no state table"), "{body}");
    let long = "x".repeat(2000);
    let (code, _) = get(http, &format!("/v1/proof/students/{long}"));
    assert_eq!(code, 400);
    // An id with '/' is one id, as the state route takes it.
    let (code, doc) = get(http, "/v1/proof/enrollments/S1/C1");
    assert_eq!((code, doc["id"].as_str()), (200, Some("S1/C1")), "{doc}");
    drop(seq);
}
