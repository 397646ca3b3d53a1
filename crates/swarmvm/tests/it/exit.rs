//! One error of each class through the HTTP client and the node, with the exit code the
//! README's "Exit status" gives it: a node's refusal exits 1, a storage failure while the
//! node publishes exits 2 (and leaves its state as it was), and a node that does not answer
//! in time exits 3. Each is one line on stderr.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;
use swarmvm_test_support::http::get;
use swarmvm_wallet::KeyMaterial;

use crate::live::sequencer;
use crate::node::{http_of, wait_status};
use crate::support::{Env, FAILURE, REFUSED, TIMED_OUT, Tmpfs};

/// `contract sign` of one `register_student` by `wallet` with `nonce`, into `out`.
fn signed(env: &Env, wallet: &str, nonce: &str, out: &str) -> String {
    env.write(
        "student.json",
        r#"{"actions":[{"action":"register_student","student":{"id":"S1","name":"Ada","department":"CS"}}]}"#,
    );
    let token = env.ok(&[
        "contract",
        "sign",
        "student.json",
        "--wallet",
        wallet,
        "--network",
        "auth.pub",
        "--nonce",
        nonce,
    ]);
    env.write(out, token)
}

#[test]
fn a_contract_the_node_refuses_exits_1_with_its_line() {
    let env = Env::new();
    env.network("ed25519", "tokens.txt");
    env.ok(&["wallet", "new", "--out", &env.p("stranger.pem")]);
    let seq = sequencer(&env, "200ms");
    crate::live::genesis(&env, http_of(&seq));
    let token = signed(&env, "stranger.pem", "1", "stranger.jwt");
    let node = format!("http://{}", http_of(&seq));
    let run = env.run(&["contract", "submit", &token, "--node", &node]);
    assert_eq!(run.code, REFUSED, "{run:?}");
    let line = run.one_line_error();
    assert!(line.contains("refused it") && line.contains("is not registered"), "{line}");
}

#[test]
fn a_node_that_does_not_answer_in_time_exits_3() {
    let env = Env::new();
    env.network("ed25519", "tokens.txt");
    let token = signed(&env, "peer1.pem", "1", "c.jwt");
    // Takes the connection and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let node = format!("http://{}", silent.local_addr().unwrap());
    let run = env.run(&["contract", "submit", &token, "--node", &node, "--timeout", "1s"]);
    assert_eq!(run.code, TIMED_OUT, "{run:?}");
    assert!(run.one_line_error().contains("did not answer in time"), "{run:?}");
    drop(silent);
}

#[test]
fn a_storage_failure_while_publishing_exits_2_and_changes_nothing() {
    let env = Env::new();
    env.network("ed25519", "tokens.txt");
    // A signed folder large enough that applying it needs room in the ledger file.
    let KeyMaterial::Private(peer1) =
        swarmvm_wallet::read_key_file(&env.path("peer1.pem"), None).unwrap().0
    else {
        panic!("peer1.pem holds a private key");
    };
    let network = env.json(&["wallet", "show", "auth.pub"])["id"].as_str().unwrap().to_owned();
    let name = "N".repeat(200);
    let lines: String = (1..=1500u64)
        .map(|n| {
            let student = json!({"id": format!("S{n:05}"), "name": name, "department": "Disk"});
            let actions = [json!({"action": "register_student", "student": student})];
            let token = swarmvm_token::sign_contract(
                &peer1,
                &network,
                n,
                &actions,
                swarmvm_token::unix_now(),
            )
            .unwrap();
            token + "\n"
        })
        .collect();
    env.write("contracts1.jsonl", lines);
    crate::node::create_b1(&env);

    // The sequencer's ledger lives on a small disk, full by the time the folder comes.
    let disk = Tmpfs::mount(&env, "disk", 8 << 20);
    std::fs::create_dir(env.path("seq")).unwrap();
    std::os::unix::fs::symlink(disk.path.join("ledger.redb"), env.path("seq/ledger.redb")).unwrap();
    let seq = sequencer(&env, "1h");
    let http = http_of(&seq);
    let before = wait_status(http, |s| s["batches"] == 0)["state_root"].clone();
    crate::bundle::fill(&disk.path.join("filler"));

    let node = format!("http://{http}");
    let run = env.run(&["bundle", "submit", "b1", "--node", &node, "--timeout", "60s"]);
    assert_eq!(run.code, FAILURE, "{run:?}");
    let line = run.one_line_error();
    assert!(line.contains("could not take it: storage failure"), "{line}");
    let (code, status) = get(http, "/v1/status");
    assert_eq!(code, 200, "the node goes on serving");
    assert_eq!((status["last_seq"].as_u64(), &status["state_root"]), (Some(0), &before));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(http, "/v1/state/root").1["state_root"], before, "nothing half-applied");
}
