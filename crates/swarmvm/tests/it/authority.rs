//! Authority sets through the command line: `network init`, threshold manifests, `bundle
//! sign`, rotation, revocation, withdrawal, and tokens applied once.

use serde_json::{Value, json};
use swarmvm_test_support::NOTE_OPS;

use crate::support::{Env, FAILURE, REFUSED, external};

/// Wallets `names` (Ed25519), each `NAME.pem`.
fn wallets(env: &Env, names: &[&str]) {
    for name in names {
        env.wallet(&format!("{name}.pem"), "ed25519");
    }
}

/// `network init` over `members` with threshold `k`, written to `out`; returns its id.
fn init(env: &Env, members: &[&str], k: u64, out: &str) -> String {
    let mut args = vec!["network".to_owned(), "init".to_owned()];
    for m in members {
        args.extend(["--authority".to_owned(), format!("{m}.pem")]);
    }
    args.extend(["--threshold".to_owned(), k.to_string(), "--out".to_owned(), out.to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.json(&args)["network"].as_str().unwrap().to_owned()
}

/// Registration tokens for the note's operations (signed by `ops_by`) and for wallets
/// peer1 and peer2 (signed by `wallets_by`), written to `tokens.txt`.
fn tokens(env: &Env, ops_by: &str, wallets_by: &str) {
    env.write("ops.json", NOTE_OPS);
    let ops = env.ok(&["token", "issue", "operations", "--key", ops_by, "--ops", "ops.json"]);
    let w = env.ok(&[
        "token",
        "issue",
        "wallets",
        "--key",
        wallets_by,
        "--wallet",
        "peer1.pem",
        "--wallet",
        "peer2.pem",
    ]);
    env.write("tokens.txt", format!("{ops}{w}"));
}

/// A contract by `wallet` for `network` (a file or an id) with `nonce`, appended to `file`.
fn contract(env: &Env, file: &str, wallet: &str, network: &str, nonce: u64, action: Value) {
    let name = format!("{file}.{nonce}.{wallet}.json");
    env.write(&name, json!({ "actions": [action] }).to_string());
    let signed = env.ok(&[
        "contract",
        "sign",
        &name,
        "--wallet",
        wallet,
        "--network",
        network,
        "--nonce",
        &nonce.to_string(),
    ]);
    let mut all = std::fs::read_to_string(env.path(file)).unwrap_or_default();
    all.push_str(&signed);
    env.write(file, all);
}

fn student(id: &str) -> Value {
    json!({"action": "register_student", "student": {"id": id, "name": "Ada", "department": "CS"}})
}

fn course(id: &str) -> Value {
    json!({"action": "add_course", "course": {"id": id, "name": "Crypto", "department": "CS"}})
}

/// `bundle create DIR --key K... --network NET [extra...]`.
fn create(env: &Env, dir: &str, keys: &[&str], net: &str, extra: &[&str]) -> Value {
    let mut args = vec!["bundle", "create", dir, "--network", net, "--force"];
    for k in keys {
        args.extend(["--key", k]);
    }
    args.extend(extra);
    env.json(&args)
}

/// `node apply DIR --data-dir D --network NET`.
fn apply(env: &Env, dir: &str, data: &str, net: &str) -> crate::support::Run {
    env.run(&["node", "apply", dir, "--data-dir", data, "--network", net, "--json"])
}

fn applied(env: &Env, dir: &str, data: &str, net: &str) -> Value {
    let run = apply(env, dir, data, net);
    assert_eq!(run.code, 0, "{dir}: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn refused(env: &Env, dir: &str, data: &str, net: &str) -> String {
    let run = apply(env, dir, data, net);
    assert_eq!(run.code, REFUSED, "{dir} applied: {}", run.stdout);
    run.one_line_error().to_owned()
}

fn root(env: &Env, data: &str) -> String {
    env.ok(&["state", "root", "--data-dir", data]).trim().to_owned()
}

#[test]
fn network_init_writes_the_set_and_its_id_and_refuses_bad_sets() {
    let env = Env::new();
    wallets(&env, &["a", "b", "c"]);
    let id = init(&env, &["a", "b", "c"], 2, "net.json");
    let file: Value = serde_json::from_str(&env.read("net.json")).unwrap();
    assert_eq!(file["network"], id);
    assert_eq!(file["threshold"], 2);
    assert_eq!(file["authorities"].as_array().unwrap().len(), 3);
    assert!(file["authorities"][0].get("d").is_none(), "public keys only");
    // The id as DESIGN defines it, recomputed by Python from the wallet ids alone.
    let mut ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|w| env.json(&["wallet", "show", &format!("{w}.pem")])["id"].as_str().unwrap().into())
        .collect();
    ids.sort();
    let script = format!(
        "import base64,hashlib,json;c=json.dumps({{'authorities':{ids:?},'threshold':2}},separators=(',',':'),sort_keys=True);print(base64.urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).decode().rstrip('='))"
    );
    assert_eq!(external("python3", &["-c", &script], env.dir.path()).trim(), id);
    // Key order does not change it; `network show` reads it back.
    assert_eq!(init(&env, &["c", "a", "b"], 2, "again.json"), id);
    assert_eq!(env.json(&["network", "show", "net.json"])["network"], id);

    let err = env.fails(
        &["network", "init", "--authority", "a.pem", "--threshold", "0", "--out", "x.json"],
        REFUSED,
    );
    assert!(err.contains("threshold 0 is not between 1 and the number of keys (1)"), "{err}");
    let err = env.fails(
        &["network", "init", "--authority", "a.pem,b.pem", "--threshold", "3", "--out", "x.json"],
        REFUSED,
    );
    assert!(err.contains("threshold 3"), "{err}");
    let err = env.fails(
        &["network", "init", "--authority", "a.pem,a.pem", "--threshold", "1", "--out", "x.json"],
        REFUSED,
    );
    assert!(err.contains("appears twice"), "{err}");
    let weak = swarmvm_test_support::ed25519_jwk(swarmvm_test_support::WEAK_ED25519[1]);
    env.write("weak.jwk", weak.to_string());
    let run = env.run(&[
        "network",
        "init",
        "--authority",
        "a.pem,weak.jwk",
        "--threshold",
        "1",
        "--out",
        "x.json",
    ]);
    assert_ne!(run.code, 0);
    assert!(run.one_line_error().contains("weak.jwk"), "{}", run.stderr);
    assert!(!env.path("x.json").exists(), "nothing written for a refused set");
    let err = env.fails(
        &["network", "init", "--authority", "b.pem", "--threshold", "1", "--out", "net.json"],
        FAILURE,
    );
    assert!(err.contains("cannot create"), "an existing file is not overwritten: {err}");
    // A network file whose id was edited is refused where it is read.
    let mut forged = file;
    forged["threshold"] = json!(1);
    env.write("forged.json", forged.to_string());
    let err = env.fails(&["network", "show", "forged.json"], REFUSED);
    assert!(err.contains("its authorities and threshold give"), "{err}");
}

#[test]
fn network_link_prints_each_ed25519_members_slot_and_refuses_a_network_without_one() {
    let env = Env::new();
    wallets(&env, &["a", "b"]);
    env.wallet("r.pem", "rsa-2048");
    let id = init(&env, &["a", "b", "r"], 2, "net.json");
    let links: Vec<String> =
        env.ok(&["network", "link", "net.json"]).lines().map(str::to_owned).collect();
    assert_eq!(links.len(), 2, "one link per Ed25519 member, none for the RSA one: {links:?}");
    // Each names a member's Ed25519 key (the JWK's x) and the network id as BEP 46 says,
    // read back by Python from the link alone.
    let mut keys: Vec<String> = ["a", "b"]
        .iter()
        .map(|w| {
            let jwk = env.json(&["wallet", "public", &format!("{w}.pem"), "--format", "jwk"]);
            jwk["x"].as_str().unwrap().to_owned()
        })
        .collect();
    keys.sort();
    let script = "import sys,base64,urllib.parse as u\nfor l in sys.argv[1:]:\n q=u.parse_qs(l.split('?',1)[1])\n print(base64.urlsafe_b64encode(bytes.fromhex(q['xs'][0].split(':')[2])).decode().rstrip('='), bytes.fromhex(q['s'][0]).decode())";
    let mut args = vec!["-c", script];
    args.extend(links.iter().map(String::as_str));
    let out = external("python3", &args, env.dir.path());
    let mut read: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (k, n) = l.split_once(' ').unwrap();
            (k.to_owned(), n.to_owned())
        })
        .collect();
    read.sort();
    assert_eq!(read, keys.iter().map(|k| (k.clone(), id.clone())).collect::<Vec<_>>());
    let json = env.json(&["network", "link", "net.json"]);
    assert_eq!(
        (json["network"].as_str(), json["links"].as_array().unwrap().len()),
        (Some(id.as_str()), 2)
    );

    init(&env, &["r"], 1, "rsa.json");
    let err = env.fails(&["network", "link", "rsa.json"], REFUSED);
    assert!(err.contains("no Ed25519 member"), "{err}");
}

#[test]
fn a_two_of_three_network_applies_only_bundles_signed_by_two_members() {
    let env = Env::new();
    wallets(&env, &["a", "b", "c", "x", "peer1", "peer2"]);
    let id = init(&env, &["a", "b", "c"], 2, "net.json");
    // Registrations may be signed by any member; the manifest's threshold makes them count.
    tokens(&env, "a.pem", "b.pem");
    contract(&env, "c1.jsonl", "peer1.pem", "net.json", 1, student("S1"));
    let tokens_file = ["--tokens", "tokens.txt", "--contracts", "c1.jsonl"];
    let one = create(&env, "b1", &["a.pem"], "net.json", &tokens_file);
    let err = refused(&env, "b1", "p", "net.json");
    assert!(
        err.contains("signed by 1 member(s) of the authority set; 2 of 3 are required"),
        "{err}"
    );
    assert!(!env.path("p/ledger.redb").exists(), "a refused bundle creates nothing");
    let manifest = env.read("b1/manifest.jwt");
    assert!(manifest.starts_with("eyJ") && manifest.matches('\n').count() == 1, "compact");

    // `bundle sign` brings it to two signatures; the identity stays, the torrent changes.
    let before = std::fs::read(env.path("b1.torrent")).unwrap();
    let signed = env.json(&["bundle", "sign", "b1", "--key", "b.pem"]);
    assert_eq!(signed["bundle"], one["bundle"], "adding a signature keeps the identity");
    assert_eq!(signed["signers"].as_array().unwrap().len(), 2);
    assert_ne!(std::fs::read(env.path("b1.torrent")).unwrap(), before, "a new torrent");
    let manifest = env.read("b1/manifest.jwt");
    let general: Value = serde_json::from_str(manifest.trim_end()).unwrap();
    assert_eq!(general["signatures"].as_array().unwrap().len(), 2, "general JSON on one line");
    assert_eq!(manifest.matches('\n').count(), 1);
    let err = env.fails(&["bundle", "sign", "b1", "--key", "b.pem"], REFUSED);
    assert!(err.ends_with("has already signed it"), "{err}");
    let out = applied(&env, "b1", "p", "net.json");
    assert_eq!((out["seq"].as_u64(), out["applied"].as_u64()), (Some(1), Some(1)));

    // The state holds the set in force under the root, with the network's id.
    let state = env.json(&["state", "show", "--data-dir", "p"]);
    assert_eq!(state["network"], id);
    assert_eq!(state["authorities"]["set"]["threshold"], 2);
    assert_eq!(state["authorities"]["set"]["authorities"].as_array().unwrap().len(), 3);
    let text = env.ok(&["state", "show", "--data-dir", "p"]);
    assert!(text.contains("authorities 2 of 3: "), "{text}");

    // A member and an outsider: refused.
    contract(&env, "c2.jsonl", "peer1.pem", "net.json", 2, student("S2"));
    let next = ["--contracts", "c2.jsonl", "--after", "b1"];
    create(&env, "b2", &["a.pem", "x.pem"], "net.json", &next);
    let err = refused(&env, "b2", "p", "net.json");
    assert!(err.contains("is not a member of the authority set in force"), "{err}");
    // The same member twice (a second copy of one signature): refused.
    create(&env, "b2", &["a.pem", "c.pem"], "net.json", &next);
    let mut twice: Value = serde_json::from_str(env.read("b2/manifest.jwt").trim_end()).unwrap();
    twice["signatures"][1] = twice["signatures"][0].clone();
    env.write("b2/manifest.jwt", format!("{twice}\n"));
    let err = refused(&env, "b2", "p", "net.json");
    assert!(err.contains("signs more than once"), "{err}");
    // Signed by two distinct members: applies.
    create(&env, "b2", &["c.pem", "a.pem"], "net.json", &next);
    let root_before = root(&env, "p");
    applied(&env, "b2", "p", "net.json");
    assert_ne!(root(&env, "p"), root_before);
    // Signing with several keys needs the network they govern.
    let err = env.fails(&["bundle", "create", "b9", "--key", "a.pem", "--key", "b.pem"], FAILURE);
    assert!(err.contains("give --network FILE"), "{err}");
}

#[test]
fn a_rotation_replaces_the_set_from_the_next_bundle_and_a_late_joiner_replays_it() {
    let env = Env::new();
    wallets(&env, &["a", "b", "c", "d", "peer1", "peer2"]);
    let id = init(&env, &["a", "b", "c"], 2, "net.json");
    let next_id = init(&env, &["b", "c", "d"], 2, "next.json");
    assert_ne!(id, next_id);
    tokens(&env, "a.pem", "a.pem");
    contract(&env, "c1.jsonl", "peer1.pem", "net.json", 1, student("S1"));
    create(
        &env,
        "b1",
        &["a.pem", "b.pem"],
        "net.json",
        &["--tokens", "tokens.txt", "--contracts", "c1.jsonl"],
    );
    applied(&env, "b1", "p", "net.json");

    // The rotation to B, C, D (K = 2) needs two old members and D.
    let rotate = ["--authority-set", "next.json", "--after", "b1"];
    create(&env, "b2", &["a.pem", "d.pem"], "net.json", &rotate);
    let err = refused(&env, "b2", "p", "net.json");
    assert!(err.contains("signed by 1 member(s)"), "one old key and the new one: {err}");
    create(&env, "b2", &["a.pem", "b.pem"], "net.json", &rotate);
    let err = refused(&env, "b2", "p", "net.json");
    assert!(err.contains("which has not signed the manifest"), "without D: {err}");
    create(&env, "b2", &["a.pem", "b.pem", "d.pem"], "net.json", &rotate);
    applied(&env, "b2", "p", "net.json");
    let state = env.json(&["state", "show", "--data-dir", "p"]);
    assert_eq!(state["network"], id, "the network id never changes");
    let members: Vec<&str> = state["authorities"]["set"]["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    let d = env.json(&["wallet", "show", "d.pem"])["id"].as_str().unwrap().to_owned();
    let a = env.json(&["wallet", "show", "a.pem"])["id"].as_str().unwrap().to_owned();
    assert!(members.contains(&d.as_str()) && !members.contains(&a.as_str()), "{members:?}");

    // A and B together are refused now (A was removed); C and D apply. A contract signed
    // before the rotation still means what it meant.
    contract(&env, "c3.jsonl", "peer1.pem", "net.json", 3, student("S3"));
    let after = ["--contracts", "c3.jsonl", "--after", "b2"];
    create(&env, "b3", &["a.pem", "b.pem"], "net.json", &after);
    let err = refused(&env, "b3", "p", "net.json");
    assert!(err.contains(&format!("signer '{a}' is not a member")), "{err}");
    create(&env, "b3", &["c.pem", "d.pem"], "net.json", &after);
    let out = applied(&env, "b3", "p", "net.json");
    assert_eq!(out["applied"], 1);
    let state = env.json(&["state", "show", "--data-dir", "p"]);
    assert!(state["students"]["S1"].is_object() && state["students"]["S3"].is_object());

    // A node that joins late replays the whole chain from the network file alone.
    for b in ["b1", "b2", "b3"] {
        applied(&env, b, "late", "net.json");
    }
    assert_eq!(root(&env, "late"), root(&env, "p"));
    let check = env.json(&["ledger", "verify", "--data-dir", "late"]);
    assert_eq!(check["report"]["state_root"], root(&env, "p"), "{check}");

    // A proof of S3 carries the rotation's manifest, so a head signed by the new set (C and
    // D) verifies from the first network file; without the manifest it does not.
    let mut doc =
        env.json(&["state", "prove", "--data-dir", "p", "--table", "students", "--id", "S3"]);
    assert_eq!(doc["manifests"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["root"], root(&env, "p"), "no head is kept offline: the root is named");
    env.write("doc.json", doc.to_string());
    env.ok(&["proof", "verify", "doc.json", "--root", &root(&env, "p")]);
    let err = env.fails(&["proof", "verify", "doc.json", "--network", "net.json"], REFUSED);
    assert!(err.contains("carries no head"), "{err}");
    let state = env.json(&["state", "show", "--data-dir", "p"]);
    let like = serde_json::json!({
        "seq": 3,
        "bundle": state["last_bundle"]["id"],
        "magnet": "magnet:?xt=urn:btih:0000000000000000000000000000000000000000",
        "state_root": root(&env, "p"),
    });
    let (c, d) = (crate::proofs::wallet(&env, "c.pem"), crate::proofs::wallet(&env, "d.pem"));
    let now = swarmvm_token::unix_now();
    doc["head"] = crate::proofs::head_like(&like, &[&c, &d], &id, now).into();
    env.write("doc.json", doc.to_string());
    let out = env.ok(&["proof", "verify", "doc.json", "--network", "net.json"]);
    assert!(out.contains("present: students S3") && out.contains("head seq 3"), "{out}");
    doc["manifests"] = serde_json::json!([]);
    env.write("doc.json", doc.to_string());
    let err = env.fails(&["proof", "verify", "doc.json", "--network", "net.json"], REFUSED);
    assert!(err.contains("the head does not verify"), "{err}");
}

#[test]
fn revoked_wallets_and_withdrawn_actions_are_rejected_from_their_bundle_on() {
    let env = Env::new();
    wallets(&env, &["auth", "peer1", "peer2"]);
    env.public("auth.pem", "auth.pub");
    tokens(&env, "auth.pem", "auth.pem");
    contract(&env, "c1.jsonl", "peer1.pem", "auth.pub", 1, student("S1"));
    contract(&env, "c1.jsonl", "peer2.pem", "auth.pub", 1, course("C1"));
    env.json(&[
        "bundle",
        "create",
        "b1",
        "--key",
        "auth.pem",
        "--tokens",
        "tokens.txt",
        "--contracts",
        "c1.jsonl",
    ]);
    let trust = ["--data-dir", "p", "--trust", "auth.pub"];
    let out = env.json(&[&["node", "apply", "b1"][..], &trust[..]].concat());
    assert_eq!(out["applied"], 2);

    let peer1 = env.json(&["wallet", "show", "peer1.pem"])["id"].as_str().unwrap().to_owned();
    let revoke = env.ok(&["token", "issue", "wallets", "--key", "auth.pem", "--revoke", &peer1]);
    let withdraw =
        env.ok(&["token", "issue", "operations", "--key", "auth.pem", "--withdraw", "add_course"]);
    let shown = env.json(&["token", "verify", revoke.trim(), "--trust", "auth.pub"]);
    assert_eq!(shown["revoke"], json!([peer1]));
    let shown = env.json(&["token", "verify", withdraw.trim(), "--trust", "auth.pub"]);
    assert_eq!(shown["withdraw"], json!(["add_course"]));
    env.write("revocations.txt", format!("{revoke}{withdraw}"));
    contract(&env, "c2.jsonl", "peer1.pem", "auth.pub", 2, student("S2"));
    contract(&env, "c2.jsonl", "peer2.pem", "auth.pub", 2, course("C2"));
    contract(&env, "c2.jsonl", "peer2.pem", "auth.pub", 3, student("S3"));
    env.json(&[
        "bundle",
        "create",
        "b2",
        "--key",
        "auth.pem",
        "--tokens",
        "revocations.txt",
        "--contracts",
        "c2.jsonl",
        "--after",
        "b1",
    ]);
    let out = env.json(&[&["node", "apply", "b2"][..], &trust[..]].concat());
    assert_eq!((out["applied"].as_u64(), out["rejected"].as_u64()), (Some(1), Some(2)));
    let text = out["receipts"].to_string();
    assert!(text.contains(&format!("signer {peer1} was revoked")), "{text}");
    assert!(text.contains("'add_course' was withdrawn"), "{text}");
    // Earlier results stay; the revocations are under the root.
    let state = env.json(&["state", "show", "--data-dir", "p"]);
    assert!(state["students"]["S1"].is_object() && state["courses"]["C1"].is_object());
    assert!(state["students"]["S3"].is_object() && state["students"].get("S2").is_none());
    assert_eq!(state["revocations"][format!("wallet/{peer1}")], true);
    assert_eq!(state["revocations"]["action/add_course"], true);
    assert_eq!(state["tokens"].as_object().unwrap().len(), 4, "every applied token's jti");
    let text = env.ok(&["state", "show", "--data-dir", "p"]);
    assert!(text.contains(&format!("revoked     wallet {peer1}")), "{text}");
    assert!(text.contains("withdrawn   action add_course"), "{text}");

    // A token is applied once: the first bundle's tokens again are refused whole.
    let root_before = root(&env, "p");
    let refused_with = |tokens: &str, says: &str| {
        env.json(&[
            "bundle", "create", "b3", "--key", "auth.pem", "--tokens", tokens, "--after", "b2",
            "--force",
        ]);
        let run = env.run(&[&["node", "apply", "b3"][..], &trust[..]].concat());
        assert_eq!(run.code, REFUSED);
        assert!(run.one_line_error().contains(says), "{}", run.stderr);
        assert_eq!(root(&env, "p"), root_before);
    };
    refused_with("tokens.txt", "was already applied; a token is applied once");
    // A revoked wallet is not registered again.
    let again =
        env.ok(&["token", "issue", "wallets", "--key", "auth.pem", "--wallet", "peer1.pem"]);
    env.write("again.txt", again);
    refused_with("again.txt", "was revoked and cannot be registered again");
}

#[test]
fn a_bundle_for_another_network_that_shares_a_key_is_refused() {
    let env = Env::new();
    wallets(&env, &["auth", "other", "peer1", "peer2"]);
    env.public("auth.pem", "auth.pub");
    // Another network governed by the same key (with another), threshold 1.
    let other = init(&env, &["auth", "other"], 1, "other.json");
    tokens(&env, "auth.pem", "auth.pem");
    create(&env, "b1", &["auth.pem"], "other.json", &["--tokens", "tokens.txt"]);
    let manifest = env.read("b1/manifest.jwt");
    let payload = manifest.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], other);
    let run = env.run(&["node", "apply", "b1", "--data-dir", "p", "--trust", "auth.pub"]);
    assert_eq!(run.code, REFUSED);
    assert!(
        run.one_line_error().contains(&format!("manifest is for network '{other}'")),
        "{}",
        run.stderr
    );
    // And the other way round: the one-key network's bundle is not the other network's.
    env.json(&["bundle", "create", "b2", "--key", "auth.pem", "--tokens", "tokens.txt"]);
    let err = refused(&env, "b2", "q", "other.json");
    assert!(err.contains("manifest is for network"), "{err}");
    // --trust names one key: several are refused with the way to a set.
    let err = env.fails(
        &["node", "apply", "b2", "--data-dir", "p", "--trust", "auth.pub", "--trust", "auth.pub"],
        FAILURE,
    );
    assert!(err.contains("swarmvm network init"), "{err}");
}

#[test]
fn exec_and_token_verify_take_a_network_file() {
    let env = Env::new();
    wallets(&env, &["a", "b", "c", "x", "peer1", "peer2"]);
    let id = init(&env, &["a", "b", "c"], 2, "net.json");
    // Tokens signed by two different members verify against the network's set.
    tokens(&env, "b.pem", "c.pem");
    let run = env.run(&["token", "verify", "tokens.txt", "--network", "net.json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let outsider =
        env.ok(&["token", "issue", "wallets", "--key", "x.pem", "--wallet", "peer1.pem"]);
    let err = env.fails(&["token", "verify", outsider.trim(), "--network", "net.json"], REFUSED);
    assert!(err.contains("unknown kid"), "{err}");
    // A local ledger of the network: registrations by members, a contract bound to its id.
    env.write("c.json", json!({"actions": [student("S1")]}).to_string());
    let out = env.json(&[
        "exec",
        "c.json",
        "--wallet",
        "peer1.pem",
        "--data-dir",
        "local",
        "--tokens",
        "tokens.txt",
        "--network",
        "net.json",
    ]);
    assert_eq!(out["receipt"]["status"], "applied", "{out}");
    let state = env.json(&["state", "show", "--data-dir", "local"]);
    assert_eq!(state["network"], id);
    assert_eq!(state["authorities"]["set"]["threshold"], 2, "the set is under the root");
    // The same tokens again are refused: a token applies once.
    let err = env.fails(
        &[
            "exec",
            "c.json",
            "--wallet",
            "peer1.pem",
            "--data-dir",
            "local",
            "--tokens",
            "tokens.txt",
            "--network",
            "net.json",
        ],
        REFUSED,
    );
    assert!(err.contains("was already applied"), "{err}");
    // --network and --trust are not given together.
    env.public("a.pem", "a.pub");
    let run = env.run(&[
        "exec",
        "c.json",
        "--wallet",
        "peer1.pem",
        "--data-dir",
        "l2",
        "--tokens",
        "tokens.txt",
        "--network",
        "net.json",
        "--trust",
        "a.pub",
    ]);
    assert_eq!(run.code, FAILURE, "{}", run.stderr);
}

#[test]
fn node_run_with_a_network_file_fetches_a_threshold_bundle_and_shows_the_set() {
    let env = Env::new();
    wallets(&env, &["a", "b", "c", "peer1", "peer2"]);
    let id = init(&env, &["a", "b", "c"], 2, "net.json");
    tokens(&env, "a.pem", "c.pem");
    contract(&env, "c1.jsonl", "peer1.pem", "net.json", 1, student("S1"));
    create(
        &env,
        "b1",
        &["b.pem", "c.pem"],
        "net.json",
        &["--tokens", "tokens.txt", "--contracts", "c1.jsonl"],
    );
    let mut seeder = crate::support::Daemon::start(
        &env,
        &["bundle", "seed", "b1.torrent", "--dir", "b1", "--no-dht", "--listen", "127.0.0.1:0"],
    );
    let seeder_addr = seeder.first_line["listen"].as_str().unwrap().to_owned();
    let mut node = crate::support::Daemon::start(
        &env,
        &[
            "node",
            "run",
            "--data-dir",
            "peer",
            "--network",
            "net.json",
            "--bundle",
            "b1.torrent",
            "--peer",
            &seeder_addr,
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let http = crate::node::http_of(&node);
    let status = crate::node::wait_status(http, |s| s["last_seq"] == 1);
    assert_eq!(status["network"], id);
    assert_eq!(status["authorities"]["threshold"], 2, "{status}");
    assert_eq!(status["authorities"]["members"].as_array().unwrap().len(), 3);
    let (code, set) = swarmvm_test_support::http::get(http, "/v1/authorities");
    assert_eq!((code, &set["network"]), (200, &json!(id)));
    assert_eq!(node.signal("TERM"), 0);
    assert_eq!(seeder.signal("TERM"), 0);
    // The same data dir with another network is refused at start.
    env.wallet("z.pem", "ed25519");
    env.public("z.pem", "z.pub");
    let run = env.run(&["node", "run", "--data-dir", "peer", "--trust", "z.pub", "--no-dht"]);
    assert_eq!(run.code, REFUSED, "{}", run.stderr);
    assert!(run.one_line_error().contains(&format!("belongs to network {id}")), "{}", run.stderr);
}
