//! Operators: systemd readiness (`sd_notify`), and the service unit in `docs/`.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use swarmvm_test_support::http::get;

use crate::support::{Daemon, Env};

/// The next datagram on `socket`, as text (bounded by the socket's read timeout).
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("no notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// `swarmvm node run` on loopback with no DHT for the network of auth.pub, in `env`'s folder,
/// printing JSON.
fn node_run(env: &Env) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmvm"));
    cmd.args(["node", "run", "--data-dir", "d", "--trust", "auth.pub", "--no-dht"])
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--json"])
        .current_dir(env.dir.path());
    cmd
}

#[test]
fn node_run_tells_systemd_it_is_ready_once_the_api_answers_and_that_it_is_stopping() {
    let env = Env::new();
    env.wallet("auth.pem", "ed25519");
    env.public("auth.pem", "auth.pub");
    let path = env.path("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut cmd = node_run(&env);
    cmd.env("NOTIFY_SOCKET", &path);
    let mut node = Daemon::spawn(cmd, &["node", "run"]);
    let ready = next(&socket);
    assert!(ready.starts_with("READY=1\nSTATUS=last seq 0"), "{ready:?}");
    // Ready means the API answers.
    let http = crate::node::http_of(&node);
    let (code, _) = get(http, "/v1/status");
    assert_eq!(code, 200);
    assert_eq!(node.signal("TERM"), 0);
    assert_eq!(next(&socket), "STOPPING=1");
}

#[test]
fn node_run_runs_the_same_when_notify_socket_leads_nowhere() {
    let env = Env::new();
    env.wallet("auth.pem", "ed25519");
    env.public("auth.pem", "auth.pub");
    let mut cmd = node_run(&env);
    cmd.env("NOTIFY_SOCKET", env.path("nobody-listens.sock"));
    let mut node = Daemon::spawn(cmd, &["node", "run"]);
    let (code, _) = get(crate::node::http_of(&node), "/v1/status");
    assert_eq!(code, 200);
    assert_eq!(node.signal("TERM"), 0);
}

#[test]
fn the_service_unit_in_docs_passes_systemd_analyze_verify() {
    swarmvm_test_support::require_program("systemd-analyze", "systemd");
    let env = Env::new();
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/swarmvm.service"))
            .unwrap();
    assert!(unit.contains("Type=notify"), "the node notifies systemd");
    // The check wants the ExecStart binary to exist: this build's, in place of the installed.
    let here = unit.replace("/usr/local/bin/swarmvm", env!("CARGO_BIN_EXE_swarmvm"));
    assert_ne!(here, unit);
    env.write("swarmvm.service", &here);
    let out = Command::new("systemd-analyze")
        .args(["verify", &env.p("swarmvm.service")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    // And a unit it cannot run is refused: the check is not a formality.
    env.write("broken.service", unit.replace("/usr/local/bin/swarmvm", "/nonexistent/swarmvm"));
    let out = Command::new("systemd-analyze")
        .args(["verify", &env.p("broken.service")])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `node run --config node.toml` with `vars` in its environment and `flags` after it; the id
/// of the wallet the started node names.
fn started_wallet(env: &Env, vars: &[(&str, &str)], flags: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmvm"));
    cmd.args(["node", "run", "--config", "node.toml", "--json"])
        .args(flags)
        .envs(vars.iter().copied())
        .current_dir(env.dir.path());
    let mut node = Daemon::spawn(cmd, &["node", "run", "--config"]);
    let wallet = node.first_line["wallet"].as_str().unwrap_or_default().to_owned();
    assert_eq!(node.signal("TERM"), 0);
    wallet
}

#[test]
fn node_run_reads_a_config_file_then_the_environment_then_flags() {
    let env = Env::new();
    env.wallet("auth.pem", "ed25519");
    env.public("auth.pem", "auth.pub");
    let mut ids = Vec::new();
    for name in ["file.pem", "env.pem", "flag.pem"] {
        env.wallet(name, "ed25519");
        ids.push(env.json(&["wallet", "show", name])["id"].as_str().unwrap().to_owned());
    }
    // Repeated flags are arrays; switches are booleans.
    env.write(
        "node.toml",
        r#"# a node
data-dir = "d"
trust = ["auth.pub"]
no-dht = true
listen = "127.0.0.1:0"
http = "127.0.0.1:0"
max-pending = 8
wallet = "file.pem"
"#,
    );
    assert_eq!(started_wallet(&env, &[], &[]), ids[0], "the file alone");
    let from_env = [("SWARMVM_WALLET", "env.pem")];
    assert_eq!(started_wallet(&env, &from_env, &[]), ids[1], "the environment over the file");
    assert_eq!(
        started_wallet(&env, &from_env, &["--wallet", "flag.pem"]),
        ids[2],
        "a flag over both"
    );
    // A switch off in the environment, and a repeated flag comma-separated there.
    let vars = [("SWARMVM_NO_DHT", "true"), ("SWARMVM_ALLOW_HOST", "a.example, b.example")];
    assert_eq!(started_wallet(&env, &vars, &[]), ids[0]);
}

#[test]
fn a_config_file_with_an_unknown_key_or_a_wrong_type_is_refused_in_one_line() {
    let env = Env::new();
    env.wallet("auth.pem", "ed25519");
    env.public("auth.pem", "auth.pub");
    let run = ["node", "run", "--config", "node.toml"];
    env.write("node.toml", "data-dir = \"d\"\ntrust = [\"auth.pub\"]\nhttp-port = 8080\n");
    let line = env.fails(&run, 2);
    assert!(line.contains("unknown key 'http-port'"), "{line}");
    env.write("node.toml", "data-dir = \"d\"\ntrust = [\"auth.pub\"]\nno-dht = \"yes\"\n");
    let line = env.fails(&run, 2);
    assert!(line.contains("'no-dht' is a string; it is true or false"), "{line}");
    env.write("node.toml", "data-dir = \"d\"\nhttp = [\"127.0.0.1:0\"]\n");
    let line = env.fails(&run, 2);
    assert!(line.contains("'http' is given once, not as an array"), "{line}");
    env.write("node.toml", "data-dir = \"d\"\nhttp = \n");
    let line = env.fails(&run, 2);
    assert!(line.contains("node.toml is not TOML"), "{line}");
    // A value of the right type goes through the flag's own check (clap's usage error).
    env.write("node.toml", "data-dir = \"d\"\ntrust = [\"auth.pub\"]\nmax-pending = 0\n");
    let out = env.run(&run);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--max-pending"), "{out:?}");
    assert!(!env.path("d").exists(), "nothing was created");
}

/// The live sequencer's log entry for `seq`.
fn log_entry(http: std::net::SocketAddr, seq: u64) -> serde_json::Value {
    let (code, log) = get(http, "/v1/log?from=1&limit=1000");
    assert_eq!(code, 200, "{log}");
    let entries = log["log"].as_array().unwrap();
    entries.iter().find(|e| e["seq"] == seq).cloned().unwrap_or_else(|| panic!("no seq {seq}"))
}

#[test]
fn a_backup_taken_while_the_node_commits_is_one_commit_and_a_node_restored_from_it_catches_up() {
    let env = Env::new();
    let (seq, http) = crate::live::live_sequencer(&env);
    let url = format!("http://{http}");
    // Contracts applied one after another while backups are taken.
    let backups = std::thread::scope(|s| {
        let load = s.spawn(|| {
            for i in 0..8 {
                env.write(
                    &format!("c{i}.json"),
                    format!(r#"{{"actions": [{{"action": "register_student", "student": {{"id": "S{i}", "name": "n", "department": "d"}}}}]}}"#),
                );
                let file = format!("c{i}.json");
                let args = ["contract", "submit", &file, "--node", &url, "--wallet", "peer1.pem"];
                env.ok(&[&args[..], &["--wait", "--timeout", "30s"]].concat());
            }
        });
        let mut backups = Vec::new();
        for i in 0..3 {
            std::thread::sleep(Duration::from_millis(400));
            let out = format!("b{i}.redb");
            let report = env.json(&["ledger", "backup", "--data-dir", "seq", "--out", &out]);
            assert_eq!(report["ok"], true, "{report}");
            backups.push((out, report["backup"].clone()));
        }
        load.join().unwrap();
        backups
    });
    let last = crate::node::wait_status(http, |s| s["last_seq"].as_u64() >= Some(9))["last_seq"]
        .as_u64()
        .unwrap();
    let mut seqs = Vec::new();
    for (file, report) in &backups {
        // Each copy is the commit of one bundle: its root is the one the node logged then.
        let at = report["seq"].as_u64().unwrap();
        assert_eq!(log_entry(http, at)["state_root"], report["state_root"], "{report}");
        let dir = format!("r-{file}");
        std::fs::create_dir(env.path(&dir)).unwrap();
        std::fs::copy(env.path(file), env.path(&format!("{dir}/ledger.redb"))).unwrap();
        let verify = env.json(&["ledger", "verify", "--data-dir", &dir]);
        assert_eq!(verify["report"]["state_root"], report["state_root"], "{verify}");
        assert_eq!(env.ok(&["state", "root", "--data-dir", &dir]).trim(), report["state_root"]);
        seqs.push(at);
    }
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]) && seqs[0] < last, "{seqs:?} of {last}");
    // A backup never replaces a file.
    let again = env.run(&["ledger", "backup", "--data-dir", "seq", "--out", &backups[0].0]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.one_line_error().contains("exists"), "{again:?}");

    // Restored: a node started on the oldest copy follows the sequencer to its root.
    let dir = format!("r-{}", backups[0].0);
    let follower = Daemon::start(
        &env,
        &[
            "node",
            "run",
            "--data-dir",
            &dir,
            "--trust",
            "auth.pub",
            "--follow",
            &url,
            "--poll",
            "100ms",
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let root = get(http, "/v1/state/root").1["state_root"].clone();
    crate::node::wait_status(crate::node::http_of(&follower), |s| {
        s["last_seq"] == last && s["state_root"] == root
    });
    drop(seq);
}
