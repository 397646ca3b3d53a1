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

#[test]
fn node_run_tells_systemd_it_is_ready_once_the_api_answers_and_that_it_is_stopping() {
    let env = Env::new();
    env.wallet("auth.pem", "ed25519");
    env.public("auth.pem", "auth.pub");
    let path = env.path("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmvm"));
    cmd.args(["node", "run", "--data-dir", "d", "--trust", "auth.pub", "--no-dht"])
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--json"])
        .env("NOTIFY_SOCKET", &path)
        .current_dir(env.dir.path());
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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmvm"));
    cmd.args(["node", "run", "--data-dir", "d", "--trust", "auth.pub", "--no-dht"])
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--json"])
        .env("NOTIFY_SOCKET", env.path("nobody-listens.sock"))
        .current_dir(env.dir.path());
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
