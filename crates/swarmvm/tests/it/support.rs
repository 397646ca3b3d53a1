//! Running the binary in a temporary folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The exit status of refusals.
pub const REFUSED: i32 = 1;
/// The exit status of usage, I/O and internal errors.
pub const FAILURE: i32 = 2;
/// The exit status of a command that gave up at its `--timeout`.
pub const TIMED_OUT: i32 = 3;

/// One command's result.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one-line error, after checking that stderr is exactly `error: ...\n`.
    pub fn one_line_error(&self) -> &str {
        let line = self.stderr.strip_suffix('\n').unwrap_or(&self.stderr);
        assert!(!line.contains('\n'), "stderr is not one line: {:?}", self.stderr);
        line.strip_prefix("error: ").unwrap_or_else(|| panic!("stderr: {:?}", self.stderr))
    }
}

/// A temporary folder to run commands in.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn p(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        std::fs::write(self.path(name), contents).unwrap();
        self.p(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmvm"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("SWARMVM_TRUST")
            .env_remove("SWARMVM_NETWORK")
            .env_remove("SWARMVM_PASSPHRASE_FILE")
            .env_remove("RUST_LOG")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{args:?} failed: {}", run.stderr);
        run.stdout
    }

    /// Runs with `--json` and asserts success; returns the parsed output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Runs and asserts the exit code; returns the one-line error.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let run = self.run(args);
        assert_eq!(run.code, code, "{args:?}: stdout {:?} stderr {:?}", run.stdout, run.stderr);
        run.one_line_error().to_owned()
    }

    /// A new Ed25519 wallet (or another algorithm) at `name`; returns its id.
    pub fn wallet(&self, name: &str, algorithm: &str) -> String {
        self.ok(&["wallet", "new", "--out", &self.p(name), "--algorithm", algorithm])
            .trim()
            .to_owned()
    }

    /// Writes the public key of `private` to `public` (SPKI PEM).
    pub fn public(&self, private: &str, public: &str) -> String {
        let pem = self.ok(&["wallet", "public", &self.p(private)]);
        self.write(public, pem)
    }

    /// A network: an Ed25519 authority (`auth.pem`, `auth.pub`), peers `peer1.pem` (Ed25519)
    /// and `peer2.pem` (`peer2_algorithm`), and `tokens` holding the operations token for the
    /// note's four operations and a wallets token for both peers.
    pub fn network(&self, peer2_algorithm: &str, tokens: &str) {
        self.wallet("auth.pem", "ed25519");
        self.public("auth.pem", "auth.pub");
        self.wallet("peer1.pem", "ed25519");
        self.wallet("peer2.pem", peer2_algorithm);
        self.write("ops.json", NOTE_OPS);
        let ops =
            self.ok(&["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"]);
        let wallets = self.ok(&[
            "token",
            "issue",
            "wallets",
            "--key",
            "auth.pem",
            "--wallet",
            "peer1.pem",
            "--wallet",
            "peer2.pem",
        ]);
        self.write(tokens, format!("{ops}{wallets}"));
    }
}

/// Runs an external program and returns its stdout, failing the test on error.
pub fn external(program: &str, args: &[&str], cwd: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}; .ci/run installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub use swarmvm_test_support::NOTE_OPS;

/// A long-running `swarmvm` process (a seeder, a node), killed when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub first_line: serde_json::Value,
    pub stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Daemon {
    /// Starts `swarmvm ARGS --json` and waits (bounded) for its first JSON line.
    pub fn start(env: &Env, args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmvm"));
        cmd.args(args).arg("--json").current_dir(env.dir.path());
        Self::spawn(cmd, args)
    }

    /// Starts `cmd` (a `swarmvm ... --json` command) and waits (bounded) for its first JSON
    /// line; `args` name it in failures.
    pub fn spawn(mut cmd: Command, args: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send((line, reader));
        });
        let (line, stdout) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{args:?} printed nothing within 30s"));
        let first_line = serde_json::from_str(line.trim())
            .unwrap_or_else(|_| panic!("{args:?} did not start: {line:?}"));
        Self { child, first_line, stdout }
    }

    /// Sends a signal and waits (bounded) for the exit code.
    pub fn signal(&mut self, signal: &str) -> i32 {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-s", signal, &pid]).status().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(std::time::Instant::now() < deadline, "no exit after {signal}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small tmpfs mounted on a new folder, unmounted when dropped (even when the test fails).
/// Needs root (CI runs as root).
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(env: &Env, name: &str, bytes: u64) -> Self {
        let path = env.path(name);
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .status();
        assert!(
            mounted.is_ok_and(|s| s.success()),
            "this test mounts a small tmpfs and needs root (CI runs as root)"
        );
        Self { path }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Two network namespaces joined by a veth pair, `10.231.N.1/24` in the first and
/// `10.231.N.2/24` in the second, with unique names; both removed when dropped (even when
/// the test fails). Nothing in them can reach any other network. Needs root and iproute2.
pub struct NetnsPair {
    pub names: [String; 2],
    pub addrs: [String; 2],
}

impl NetnsPair {
    pub fn new(tag: &str) -> Self {
        let id = std::process::id() % 100_000;
        let names = [format!("svm-{tag}-{id}-a"), format!("svm-{tag}-{id}-b")];
        let subnet = 1 + id % 250;
        let addrs = [format!("10.231.{subnet}.1"), format!("10.231.{subnet}.2")];
        let pair = Self { names, addrs };
        let veth = [format!("svm{id}a"), format!("svm{id}b")];
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
                panic!("cannot run ip: {e}; install the Debian package iproute2")
            });
            assert!(
                out.status.success(),
                "ip {args:?}: {} (this test needs root)",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for n in &pair.names {
            ip(&["netns", "add", n]);
        }
        ip(&["link", "add", &veth[0], "type", "veth", "peer", "name", &veth[1]]);
        for ((veth, name), addr) in veth.iter().zip(&pair.names).zip(&pair.addrs) {
            ip(&["link", "set", veth, "netns", name]);
            ip(&["-n", name, "addr", "add", &format!("{addr}/24"), "dev", veth]);
            ip(&["-n", name, "link", "set", veth, "up"]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// `swarmvm ARGS` inside namespace `i`, in `env`'s folder.
    pub fn command(&self, i: usize, env: &Env, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.names[i], env!("CARGO_BIN_EXE_swarmvm")])
            .args(args)
            .current_dir(env.dir.path());
        cmd
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Runs `swarmvm ARGS` in `env` with a pseudo-terminal as its standard input, output and
/// error (through Python's `pty`, as a terminal user would see it); returns what the terminal
/// received and the exit code.
pub fn run_on_terminal(env: &Env, args: &[&str]) -> (String, i32) {
    const PTY: &str = r#"
import os, pty, subprocess, sys
master, slave = pty.openpty()
p = subprocess.Popen(sys.argv[1:], stdin=slave, stdout=slave, stderr=slave, close_fds=True)
os.close(slave)
out = b""
while True:
    try:
        data = os.read(master, 65536)
    except OSError:
        break
    if not data:
        break
    out += data
sys.stdout.buffer.write(out)
sys.exit(p.wait())
"#;
    let out = Command::new("python3")
        .args(["-c", PTY, env!("CARGO_BIN_EXE_swarmvm")])
        .args(args)
        .current_dir(env.dir.path())
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code().unwrap_or(-1))
}
