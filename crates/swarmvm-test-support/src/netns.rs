//! A testbed of Linux network namespaces: one per peer, each joined by a veth pair to a
//! bridge in a hub namespace of its own, each link shaped with `tc ... tbf` on both ends of
//! its pair (tbf shapes only what leaves an interface, so the peer's end limits its upload
//! and the hub's end its download). Addresses are `10.232.K.(i+1)/24`, used only inside
//! these namespaces; no namespace has a route anywhere else, so no traffic leaves them.
//! Multicast (local service discovery, BEP 14) crosses the bridge as on a LAN's switch and
//! stays in the hub too.
//! Names are unique per process and testbed; everything is removed when the testbed is
//! dropped, also when a test fails. Needs root and iproute2; a testbed that cannot be made
//! panics with the reason (tests that need one fail, they are never skipped).
//!
//! Every namespace knows every peer's MAC address from the start (permanent neighbour
//! entries), so peers never ARP for each other. Linux keeps one ARP cache for all namespaces,
//! 1024 entries by default (`net.ipv4.neigh.default.gc_thresh3`), and N peers that all talk
//! to each other need about N² of them: from about 32 peers on, the table overflowed
//! ("neighbor table overflow!" in the kernel log), new connections were dropped before they
//! left the namespace, and with 64 fetchers half of them reached neither the tracker nor any
//! peer for 20 s and more. Separate hosts each have a cache of their own; permanent entries
//! do not count toward the limit.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::tools::KillOnDrop;

/// Testbeds made by this process so far (for unique names).
static MADE: AtomicU32 = AtomicU32::new(0);

/// One peer's namespace and link.
#[derive(Debug)]
pub struct NetPeer {
    /// The namespace's name.
    pub ns: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
    /// The hub's end of its veth pair (in the hub namespace).
    hub_end: String,
    /// Its end of the veth pair (in its namespace) and that end's MAC address.
    peer_end: String,
    mac: String,
}

/// N peers on one bridge, each behind a rate-limited link.
#[derive(Debug)]
pub struct Testbed {
    hub: String,
    /// The peers, in the order of the rates given.
    pub peers: Vec<NetPeer>,
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// Runs `commands` (one `ip` command per line, without the `ip`) in namespace `ns`.
fn ip_batch(ns: &str, commands: &str) {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}; install the Debian package iproute2"));
    child.stdin.take().unwrap().write_all(commands.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ip -n {ns} -batch: {} (the namespace testbed needs root)",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {program}: {e}; install the Debian package iproute2 (as .ci/run does)")
    });
    assert!(
        out.status.success(),
        "{program} {}: {} (the namespace testbed needs root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Shapes what leaves `dev` (in namespace `ns`) to `mbit` megabits per second, with a burst
/// of 64 KiB.
fn shape(ns: &str, dev: &str, mbit: u32) {
    let rate = format!("{mbit}mbit");
    run(
        "ip",
        &[
            "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate,
            "burst", "64kb", "latency", "200ms",
        ],
    );
}

impl Testbed {
    /// A testbed with one peer per entry of `mbit`, its link's rate in both directions.
    pub fn new(tag: &str, mbit: &[u32]) -> Self {
        assert!(mbit.len() < 250, "at most 249 peers");
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id() % 10_000 * 10 + n % 10;
        let subnet = 1 + (std::process::id() + n) % 250;
        let hub = format!("svm-{tag}-{id}-hub");
        let mut bed = Self { hub: hub.clone(), peers: Vec::new() };
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for (i, rate) in mbit.iter().enumerate() {
            let ns = format!("svm-{tag}-{id}-{i}");
            // Interface names are at most 15 bytes.
            let (peer_end, hub_end) = (format!("s{id}p{i}"), format!("s{id}h{i}"));
            let addr = Ipv4Addr::new(10, 232, subnet as u8, i as u8 + 1);
            // Locally administered, unique within the testbed.
            let [c, b, a, _] = id.to_le_bytes();
            let mac = format!("02:5e:{a:02x}:{b:02x}:{c:02x}:{i:02x}");
            ip(&["netns", "add", &ns]);
            bed.peers.push(NetPeer {
                ns: ns.clone(),
                addr,
                hub_end: hub_end.clone(),
                peer_end: peer_end.clone(),
                mac: mac.clone(),
            });
            ip(&[
                "link", "add", &peer_end, "address", &mac, "type", "veth", "peer", "name", &hub_end,
            ]);
            ip(&["link", "set", &peer_end, "netns", &ns]);
            ip(&["link", "set", &hub_end, "netns", &hub]);
            ip(&["-n", &hub, "link", "set", &hub_end, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &hub_end, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &peer_end]);
            ip(&["-n", &ns, "link", "set", &peer_end, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            shape(&ns, &peer_end, *rate);
            shape(&hub, &hub_end, *rate);
        }
        for p in &bed.peers {
            let neighbours: String = bed
                .peers
                .iter()
                .filter(|q| q.addr != p.addr)
                .map(|q| {
                    format!(
                        "neigh replace {} lladdr {} dev {} nud permanent\n",
                        q.addr, q.mac, p.peer_end
                    )
                })
                .collect();
            ip_batch(&p.ns, &neighbours);
        }
        bed
    }

    /// `program ARGS` inside peer `i`'s namespace.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.peers[i].ns]).arg(program);
        cmd
    }

    /// `program ARGS --json` (a swarmvm binary) inside peer `i`'s namespace, in `dir`, logging
    /// warnings only: its JSON lines read as they come.
    pub fn spawn_json(
        &self,
        i: usize,
        program: &Path,
        dir: &Path,
        args: &[&str],
    ) -> crate::tools::JsonProcess {
        let mut cmd = self.command(i, program);
        cmd.args(args).arg("--json").current_dir(dir).env("RUST_LOG", "warn");
        cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
        crate::tools::JsonProcess::spawn(cmd)
    }

    /// The JSON document at `url` (`http://...`, an address inside the testbed), read from
    /// inside peer `i`'s namespace; `None` when it cannot be read within 2 s.
    pub fn get_json(&self, i: usize, url: &str) -> Option<serde_json::Value> {
        let script = "import sys, urllib.request\nprint(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())";
        let out = self
            .command(i, Path::new("python3"))
            .args(["-c", script, url])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// An opentracker in peer `i`'s namespace on port 6969, tracking only `info_hashes` (40
    /// hex characters each; Debian's opentracker is built in whitelist mode), its files in
    /// `dir` (made here); the process (killed on drop) and its announce URL.
    pub fn opentracker(&self, i: usize, dir: &Path, info_hashes: &[&str]) -> (KillOnDrop, String) {
        crate::require_program("opentracker", "opentracker");
        std::fs::create_dir_all(dir).unwrap();
        // opentracker drops root for `nobody` and chroots into its folder.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let list: String = info_hashes.iter().map(|h| format!("{h}\n")).collect();
        std::fs::write(dir.join("whitelist"), list).unwrap();
        let addr = self.peers[i].addr.to_string();
        let port = "6969";
        let child = self
            .command(i, Path::new("opentracker"))
            .args(["-i", &addr, "-p", port, "-P", port, "-d"])
            .arg(dir)
            .args(["-u", "nobody", "-w", "whitelist"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run opentracker");
        let child = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ss = Command::new("ip")
                .args(["netns", "exec", &self.peers[i].ns, "ss", "-ltn"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&ss.stdout).contains(&format!("{addr}:{port}")) {
                break;
            }
            assert!(Instant::now() < deadline, "opentracker did not start in the namespace");
            std::thread::sleep(Duration::from_millis(50));
        }
        (child, format!("http://{addr}:{port}/announce"))
    }

    /// Cuts peer `i`'s link (a partition): its packets go nowhere until [`Self::restore`].
    pub fn cut(&self, i: usize) {
        ip(&["-n", &self.hub, "link", "set", &self.peers[i].hub_end, "down"]);
    }

    /// Restores peer `i`'s link.
    pub fn restore(&self, i: usize) {
        ip(&["-n", &self.hub, "link", "set", &self.peers[i].hub_end, "up"]);
    }

    /// Cuts peers `a` and `b` off from each other only (a partition between two peers that
    /// both still reach everyone else): each drops what it would send the other.
    pub fn separate(&self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            let dest = format!("{}/32", self.peers[to].addr);
            ip(&["-n", &self.peers[from].ns, "route", "add", "blackhole", &dest]);
        }
    }

    /// Undoes [`Self::separate`].
    pub fn join(&self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            let dest = format!("{}/32", self.peers[to].addr);
            ip(&["-n", &self.peers[from].ns, "route", "del", "blackhole", &dest]);
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for p in &self.peers {
            let _ = Command::new("ip").args(["netns", "del", &p.ns]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.hub]).status();
    }
}
