//! Local service discovery (BEP 14) on a LAN of two network namespaces joined by a veth
//! pair: the multicast announce has no other way out of them, so nothing leaves the machine.

use std::process::Command;

use crate::bundle::{bundle, same_files};
use crate::support::{Daemon, Env, NetnsPair, TIMED_OUT};

#[test]
fn peers_on_a_lan_find_each_other_by_local_service_discovery() {
    let env = Env::new();
    let dir = bundle(&env, "bundle-l", [1_000, 400_000, 1_000]);
    env.ok(&["bundle", "create", &dir]);
    let lan = NetnsPair::new("lsd");
    // Each namespace holds its loopback and its end of the pair, nothing else.
    for name in &lan.names {
        let links = Command::new("ip").args(["-n", name, "-o", "link"]).output().unwrap();
        let links = String::from_utf8_lossy(&links.stdout);
        assert_eq!(links.lines().count(), 2, "{links}");
    }
    let seed_listen = format!("{}:0", lan.addrs[0]);
    let seed_args =
        ["bundle", "seed", "bundle-l.torrent", "--dir", &dir, "--lsd", "--no-dht", "--listen"];
    let mut cmd = lan.command(0, &env, &seed_args);
    cmd.args([seed_listen.as_str(), "--json"]);
    let seeder = Daemon::spawn(cmd, &seed_args);
    assert_eq!(seeder.first_line["event"], "seeding");

    let listen = format!("{}:0", lan.addrs[1]);
    let fetch = |out: &str, lsd: bool, timeout: &str| {
        let mut args = vec!["bundle", "fetch", "bundle-l.torrent", "--out", out, "--no-dht"];
        args.extend(["--listen", &listen, "--timeout", timeout]);
        if lsd {
            args.push("--lsd");
        }
        let out = lan.command(1, &env, &args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Without discovery, no peer is known.
    let (code, stderr) = fetch("alone", false, "3s");
    assert_eq!(code, Some(TIMED_OUT), "{stderr}");
    // With it, the seeder's announce on the LAN is enough.
    let (code, stderr) = fetch("found", true, "60s");
    assert_eq!(code, Some(0), "{stderr}");
    same_files(&env.path("found/bundle-l"), &env.path("bundle-l"));
    drop(seeder);
}
