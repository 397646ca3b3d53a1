//! External programs the interoperability tests run: opentracker, libtorrent (Python),
//! aria2. Each must be installed (`.ci/run` does); a missing one fails the test with a hint.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An opentracker on 127.0.0.1, in whitelist mode, tracking only the info-hashes given. A
/// fresh one per test: a reused tracker hands out dead peers from earlier runs.
#[derive(Debug)]
pub struct Tracker {
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
    /// Its port (TCP and UDP).
    pub port: u16,
}

impl Tracker {
    /// Starts opentracker tracking `info_hashes` (40 hex characters each).
    pub fn start(info_hashes: &[String]) -> Self {
        crate::require_program("opentracker", "opentracker");
        let dir = tempfile::tempdir().unwrap();
        // opentracker drops root for `nobody` and chroots into its folder.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("whitelist"), info_hashes.join("\n") + "\n").unwrap();
        for _ in 0..10 {
            let port = free_port();
            let child = Command::new("opentracker")
                .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-P", &port.to_string()])
                .arg("-d")
                .arg(dir.path())
                .args(["-u", "nobody", "-w", "whitelist"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run opentracker: {e}; install the Debian package opentracker")
                });
            let mut child = KillOnDrop(child);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { _child: child, _dir: dir, port };
                }
                if child.0.try_wait().unwrap().is_some() {
                    break; // port taken: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("opentracker did not start");
    }

    /// Its HTTP announce URL.
    pub fn announce_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }
}

/// The path of the libtorrent helper script.
pub fn lt_tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../swarmvm-swarm/tests/interop/lt_tool.py")
}

/// Checks that libtorrent's Python binding is installed.
pub fn require_libtorrent() {
    crate::require_python_modules(&["libtorrent"]);
}

/// Runs `lt_tool.py` with `args` to completion; returns its stdout's last line.
pub fn lt_run(args: &[&str]) -> String {
    require_libtorrent();
    let out = Command::new("python3").arg(lt_tool()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "lt_tool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().lines().last().unwrap_or_default().to_owned()
}

/// Starts `lt_tool.py seed` and waits for its port.
pub fn lt_seed(torrent: &Path, save_path: &Path) -> (KillOnDrop, u16) {
    lt_seed_with(torrent, save_path, "")
}

/// Starts libtorrent in seed mode over `save_path` as it is, without checking it: with a
/// corrupted copy, a peer that serves bad pieces.
pub fn lt_seed_unchecked(torrent: &Path, save_path: &Path) -> (KillOnDrop, u16) {
    lt_seed_with(torrent, save_path, "seed-mode")
}

fn lt_seed_with(torrent: &Path, save_path: &Path, mode: &str) -> (KillOnDrop, u16) {
    require_libtorrent();
    let mut child = KillOnDrop(
        Command::new("python3")
            .arg(lt_tool())
            .args(["seed"])
            .arg(torrent)
            .arg(save_path)
            .arg("120")
            .arg(mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|_| panic!("libtorrent seeder did not start: {line:?}"));
    let port = u16::try_from(v["port"].as_u64().unwrap()).unwrap();
    (child, port)
}

/// A process that prints JSON lines (`swarmvm ... --json`, the Python peers), its lines on a
/// channel as they come; killed when dropped. Configure stdin and stderr on the command.
#[derive(Debug)]
pub struct JsonProcess {
    child: KillOnDrop,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl JsonProcess {
    /// Spawns `cmd` with its stdout piped and read on a thread (lines that are not JSON are
    /// skipped).
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("cannot spawn");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Self { child: KillOnDrop(child), lines }
    }

    /// The next line whose `event` is `event`, skipping others; panics after `limit`.
    pub fn wait_event(&self, event: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == event => return v,
                Ok(_) => {}
                Err(_) => panic!("no {event} event within {limit:?}"),
            }
        }
    }

    /// The next line if one has come.
    pub fn try_next(&self) -> Option<serde_json::Value> {
        self.lines.try_recv().ok()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Sends SIGINT.
    pub fn interrupt(&self) {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-s", "INT", &pid]).status();
    }

    /// Closes its stdin (a process that stops at end of input).
    pub fn close_stdin(&mut self) {
        drop(self.child.0.stdin.take());
    }

    /// SIGKILL: it stops at once, with nothing saved or said.
    pub fn kill(&mut self) {
        self.child.0.kill().unwrap();
        self.child.0.wait().unwrap();
    }
}
