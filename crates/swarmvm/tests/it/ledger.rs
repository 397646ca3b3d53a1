//! `swarmvm contract sign`, `swarmvm exec`, `swarmvm state show|root` and `swarmvm ledger
//! verify`.

use serde_json::{Value, json};

use crate::support::{Env, FAILURE, REFUSED};

/// An authority, two peers, and registration_tokens.txt registering the note's operations
/// and both peers.
/// `exec` of `contract` by peer1 into `data_dir`, registering from registration_tokens.txt
/// checked against auth.pub (the first contract on a fresh ledger).
fn exec_registering(env: &Env, contract: &str, data_dir: &str) {
    env.ok(&[
        "exec",
        contract,
        "--wallet",
        "peer1.pem",
        "--data-dir",
        data_dir,
        "--tokens",
        "registration_tokens.txt",
        "--trust",
        "auth.pub",
    ]);
}

fn network() -> Env {
    let env = Env::new();
    env.network("rsa-2048", "registration_tokens.txt");
    env
}

fn contract(env: &Env, name: &str, actions: Value) -> String {
    env.write(name, json!({ "actions": actions }).to_string())
}

fn note_contracts(env: &Env) -> Vec<String> {
    vec![
        contract(
            env,
            "c1.json",
            json!([{"action": "register_student", "student": {"id": "S001", "name": "John Doe", "department": "Computer Science"}}]),
        ),
        contract(
            env,
            "c2.json",
            json!([{"action": "add_course", "course": {"id": "C001", "name": "Blockchain Technology", "department": "Computer Science"}}]),
        ),
        contract(
            env,
            "c3.json",
            json!([{"action": "vote_proposal", "proposal": {"id": "P001", "description": "Increase Research Funding"}}]),
        ),
        contract(
            env,
            "c4.json",
            json!([{"action": "generate_nft", "nft": {"id": "NFT001", "name": "RareArt", "metadata": {"artist": "Alice", "creation_date": "2024-11-23", "description": "A rare piece of digital art."}}}]),
        ),
    ]
}

#[test]
fn exec_runs_the_notes_contracts_and_state_shows_them() {
    let env = network();
    let contracts = note_contracts(&env);
    let first = env.json(&[
        "exec",
        &contracts[0],
        "--wallet",
        "peer1.pem",
        "--data-dir",
        "peer1",
        "--tokens",
        "registration_tokens.txt",
        "--trust",
        "auth.pub",
    ]);
    assert_eq!(first["receipt"]["status"], "applied");
    assert_eq!(first["receipt"]["nonce"], 1);
    for c in &contracts[1..] {
        let out = env.json(&["exec", c, "--wallet", "peer1.pem", "--data-dir", "peer1"]);
        assert_eq!(out["receipt"]["status"], "applied", "{out}");
    }
    let state = env.json(&["state", "show", "--data-dir", "peer1"]);
    let peer1 = env.json(&["wallet", "show", "peer1.pem"])["id"].as_str().unwrap().to_owned();
    assert_eq!(state["students"]["S001"]["name"], "John Doe");
    assert_eq!(state["courses"]["C001"]["name"], "Blockchain Technology");
    assert_eq!(state["proposals"]["P001"]["votes"], 1);
    assert_eq!(state["proposals"]["P001"]["voters"], json!([peer1]));
    assert_eq!(state["nfts"]["NFT001"]["owner"], peer1.as_str());
    assert_eq!(state["nfts"]["NFT001"]["metadata"]["artist"], "Alice");
    assert_eq!(state["nonces"][&peer1], 4);
    assert_eq!(state["operations"].as_object().unwrap().len(), 4);
    let root = env.ok(&["state", "root", "--data-dir", "peer1"]);
    assert_eq!(root.trim(), state["state_root"].as_str().unwrap());
    assert_eq!(root.trim().len(), 64);
    let root_json = env.json(&["state", "root", "--data-dir", "peer1"]);
    assert_eq!(root_json["state_root"], state["state_root"]);
    let text = env.ok(&["state", "show", "--data-dir", "peer1"]);
    assert!(text.contains("student     S001 John Doe (Computer Science)"), "{text}");

    // The same inputs on another data dir give the same root.
    exec_registering(&env, &contracts[0], "copy");
    for c in &contracts[1..] {
        env.ok(&["exec", c, "--wallet", "peer1.pem", "--data-dir", "copy"]);
    }
    assert_eq!(env.ok(&["state", "root", "--data-dir", "copy"]), root);
}

#[test]
fn a_rejected_contract_exits_1_and_changes_nothing() {
    let env = network();
    let contracts = note_contracts(&env);
    exec_registering(&env, &contracts[0], "p");
    let root = env.ok(&["state", "root", "--data-dir", "p"]);
    let err =
        env.fails(&["exec", &contracts[0], "--wallet", "peer2.pem", "--data-dir", "p"], REFUSED);
    assert_eq!(err, "contract rejected: action 0 (register_student): student S001 already exists");
    let unknown = contract(
        &env,
        "x.json",
        json!([{"action": "enroll_student", "student_id": "S001", "course_id": "C1"}]),
    );
    let err = env.fails(&["exec", &unknown, "--wallet", "peer2.pem", "--data-dir", "p"], REFUSED);
    assert!(err.ends_with("action 0: 'enroll_student' is not a registered operation"), "{err}");
    let partial = contract(
        &env,
        "y.json",
        json!([
        {"action": "add_course", "course": {"id": "C9", "name": "n", "department": "d"}},
        {"action": "add_course", "course": {"id": "C9", "name": "n", "department": "d"}}]),
    );
    let run = env.run(&["exec", &partial, "--wallet", "peer2.pem", "--data-dir", "p", "--json"]);
    assert_eq!(run.code, REFUSED);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["receipt"]["status"], "rejected");
    assert!(out["receipt"]["reason"].as_str().unwrap().starts_with("action 1 (add_course)"));
    assert_eq!(
        env.ok(&["state", "root", "--data-dir", "p"]),
        root,
        "nothing of the rejected contracts stayed"
    );
    let state = env.json(&["state", "show", "--data-dir", "p"]);
    assert!(state["courses"].as_object().unwrap().is_empty());
    let peer2 = env.json(&["wallet", "show", "peer2.pem"])["id"].as_str().unwrap().to_owned();
    assert!(state["nonces"].get(&peer2).is_none(), "rejected contracts use no nonce");
}

#[test]
fn registrations_are_never_trusted_on_their_own() {
    let env = network();
    let contracts = note_contracts(&env);
    let err =
        env.fails(&["exec", &contracts[0], "--wallet", "peer1.pem", "--data-dir", "p"], FAILURE);
    assert!(
        err.contains(
            "has no registrations yet; give --tokens FILE with --trust AUTH or --network FILE"
        ),
        "{err}"
    );
    let run = env.run(&[
        "exec",
        &contracts[0],
        "--wallet",
        "peer1.pem",
        "--data-dir",
        "p",
        "--tokens",
        "registration_tokens.txt",
    ]);
    assert_eq!(run.code, FAILURE, "--tokens without --trust is a usage error");
    env.wallet("mallory.pem", "ed25519");
    env.public("mallory.pem", "mallory.pub");
    let err = env.fails(
        &[
            "exec",
            &contracts[0],
            "--wallet",
            "peer1.pem",
            "--data-dir",
            "p",
            "--tokens",
            "registration_tokens.txt",
            "--trust",
            "mallory.pub",
        ],
        REFUSED,
    );
    assert!(
        err.starts_with("registrations refused: registration token 1 is signed by")
            && err.contains("which is not a member of the authority set in force"),
        "{err}"
    );
    // An unregistered wallet cannot act even on a registered network.
    exec_registering(&env, &contracts[0], "p");
    let err =
        env.fails(&["exec", &contracts[1], "--wallet", "mallory.pem", "--data-dir", "p"], REFUSED);
    assert!(err.contains("unknown kid"), "{err}");
    let err = env.fails(&["state", "show", "--data-dir", "nowhere"], FAILURE);
    assert!(err.contains("no ledger in nowhere"), "{err}");
}

#[test]
fn contract_sign_prints_a_contract_bound_to_the_network() {
    let env = network();
    let contracts = note_contracts(&env);
    let auth = env.json(&["wallet", "show", "auth.pub"])["id"].as_str().unwrap().to_owned();
    let token = env.ok(&[
        "contract",
        "sign",
        &contracts[0],
        "--wallet",
        "peer1.pem",
        "--network",
        "auth.pub",
        "--nonce",
        "42",
    ]);
    assert_eq!(token.lines().count(), 1);
    let by_id =
        env.json(&["contract", "sign", &contracts[0], "--wallet", "peer1.pem", "--network", &auth]);
    assert_eq!(by_id["network"], auth.as_str());
    // Wallet ids are base64url: one may begin with '-' and is still a value, not a flag.
    let dashed = format!("-{}", &auth[1..]);
    let signed = env.json(&[
        "contract",
        "sign",
        &contracts[0],
        "--wallet",
        "peer1.pem",
        "--network",
        &dashed,
    ]);
    assert_eq!(signed["network"], dashed.as_str());
    assert!(
        by_id["nonce"].as_u64().unwrap() > 1_700_000_000_000,
        "default nonce is the time in ms"
    );
    let (peer, _) = swarmvm_wallet::read_key_file(&env.path("peer1.pem"), None).unwrap();
    let signers = swarmvm_token::TrustStore::with_keys([peer.public_key()]);
    let c = swarmvm_token::verify_contract(token.trim(), &signers, &auth).unwrap();
    assert_eq!(c.nonce, 42);
    assert_eq!(c.actions[0]["student"]["id"], "S001");
    assert!(swarmvm_token::verify_contract(token.trim(), &signers, "other").is_err());
    let err = env.fails(
        &["contract", "sign", &contracts[0], "--wallet", "peer1.pem", "--network", "nope"],
        FAILURE,
    );
    assert!(err.contains("neither a key file nor a wallet id"), "{err}");
    env.write("bad.json", r#"{"actions": {}}"#);
    let err = env.fails(
        &["contract", "sign", "bad.json", "--wallet", "peer1.pem", "--network", &auth],
        FAILURE,
    );
    assert!(err.contains("'actions' must be a list"), "{err}");
}

#[test]
fn state_reads_while_a_writer_holds_the_ledger() {
    let env = network();
    let contracts = note_contracts(&env);
    exec_registering(&env, &contracts[0], "p");
    let writer = swarmvm_ledger::Ledger::open(&env.path("p/ledger.redb")).unwrap();
    let root = env.ok(&["state", "root", "--data-dir", "p"]);
    assert_eq!(root.trim(), writer.snapshot().unwrap().state_root().to_hex());
    let err =
        env.fails(&["exec", &contracts[1], "--wallet", "peer1.pem", "--data-dir", "p"], FAILURE);
    assert!(err.contains("cannot open ledger"), "a second writer is refused: {err}");
}

#[test]
fn state_show_pages_a_table_and_ledger_verify_finds_tampering() {
    let env = network();
    let students: Vec<Value> = (0..25)
        .map(|i| json!({"action": "register_student", "student": {"id": format!("S{i:03}"), "name": "Page Test", "department": "Paging"}}))
        .collect();
    let c = contract(&env, "many.json", Value::Array(students));
    exec_registering(&env, &c, "p");

    // Three pages of ten, in id order, each naming where the next starts.
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    for page in 0..3 {
        let mut args = vec!["state", "show", "--data-dir", "p", "--table", "students"];
        args.extend(["--limit", "10"]);
        if let Some(a) = &after {
            args.extend(["--after", a]);
        }
        let out = env.json(&args);
        assert_eq!(out["table"], "students");
        let entries = out["entries"].as_array().unwrap();
        assert_eq!(entries.len(), if page < 2 { 10 } else { 5 }, "{out}");
        assert!(entries.iter().all(|e| e["name"] == "Page Test"));
        ids.extend(entries.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        after = out["next"].as_str().map(str::to_owned);
        assert_eq!(after.is_none(), page == 2, "{out}");
    }
    let expected: Vec<String> = (0..25).map(|i| format!("S{i:03}")).collect();
    assert_eq!(ids, expected);
    let text = env.ok(&["state", "show", "--data-dir", "p", "--table", "nonces", "--limit", "1"]);
    assert!(text.contains("\"value\":1"), "{text}");
    let err = env.fails(&["state", "show", "--data-dir", "p", "--table", "people"], FAILURE);
    assert!(err.contains("no state table 'people'; the tables are operations"), "{err}");
    let err = env.fails(
        &["state", "show", "--data-dir", "p", "--table", "students", "--limit", "0"],
        FAILURE,
    );
    assert!(err.contains("--limit must be from 1 to 10000"), "{err}");

    let ok = env.json(&["ledger", "verify", "--data-dir", "p"]);
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["report"]["state_root"], env.ok(&["state", "root", "--data-dir", "p"]).trim());
    assert!(ok["report"]["entries"].as_u64().unwrap() > 25, "{ok}");

    // A student's name rewritten behind the ledger's back: opening still reads the recorded
    // root (it does not recompute), and ledger verify finds the difference.
    let root = env.ok(&["state", "root", "--data-dir", "p"]);
    {
        const STATE: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("state");
        let db = redb::Database::create(env.path("p/ledger.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(STATE).unwrap();
            let key = swarmvm_vm::encode_key(swarmvm_vm::Table::Student, "S007");
            let forged =
                swarmvm_vm::Record::Student { name: "Mallory".into(), department: "Paging".into() };
            let mut bytes = Vec::new();
            forged.encode(&mut bytes);
            assert!(t.insert(key.as_slice(), bytes.as_slice()).unwrap().is_some());
        }
        txn.commit().unwrap();
    }
    assert_eq!(env.ok(&["state", "root", "--data-dir", "p"]), root);
    let err = env.fails(&["ledger", "verify", "--data-dir", "p"], REFUSED);
    assert!(err.starts_with("ledger verify failed: "), "{err}");
}
