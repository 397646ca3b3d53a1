//! Magnet links stay within the size we accept, before and after percent-encoding: what we
//! print, we parse (the `magnet_parse` fuzz target found a link that grew past the limit
//! once normalized).

use swarmvm_swarm::{MAX_MAGNET_LEN, MagnetLink, TorrentFile};
use url::Url;

use crate::support::bundle_dir;

const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

/// A magnet link with `n` trackers whose slashes triple in size when percent-encoded.
fn slashy(n: usize) -> String {
    let mut link = format!("magnet:?xt=urn:btih:{HASH}");
    for i in 0..n {
        link.push_str(&format!("&tr=http://t{i}/{}", "/".repeat(40)));
    }
    link
}

#[test]
fn a_link_that_would_print_longer_than_the_limit_is_refused() {
    let raw = slashy(60);
    assert!(raw.len() < MAX_MAGNET_LEN, "the raw link is within the limit: {}", raw.len());
    let err = MagnetLink::parse(&raw).unwrap_err().to_string();
    assert_eq!(err, "bad magnet link: magnet link longer than 8 KiB once normalized");

    let fits = MagnetLink::parse(&slashy(20)).unwrap();
    let printed = fits.to_string();
    assert!(printed.len() <= MAX_MAGNET_LEN);
    assert_eq!(MagnetLink::parse(&printed).unwrap(), fits);
}

#[test]
fn a_torrent_with_many_trackers_gives_a_magnet_link_that_parses() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-t", [10, 10, 10]);
    let trackers: Vec<Url> = (0..200)
        .map(|i| {
            Url::parse(&format!("http://tracker{i}.example/{}/announce", "a".repeat(60))).unwrap()
        })
        .collect();
    let torrent = TorrentFile::create(&bundle, &trackers, None).unwrap();
    let magnet = torrent.magnet();
    let printed = magnet.to_string();
    assert!(printed.len() <= MAX_MAGNET_LEN, "{} bytes", printed.len());
    let kept = magnet.trackers.len();
    assert!(kept > 10 && kept < 200, "kept {kept} trackers");
    assert_eq!(magnet.trackers[..], trackers[..kept], "the first trackers, in order");
    assert_eq!(MagnetLink::parse(&printed).unwrap(), magnet);
}
