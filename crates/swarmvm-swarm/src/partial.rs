//! Which unfinished folders a fetch may resume: a marker per info-hash in
//! `OUT/.swarmvm-partial/`, a folder no torrent can write into, because no torrent may be
//! named `.swarmvm-partial` (a torrent named N only writes below `OUT/N`). A marker planted by
//! an earlier fetch could otherwise let a later one overwrite a folder holding other data.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::error::{Result, SwarmError};
use crate::torrent::TorrentFile;

/// The folder below a fetch's output folder that holds the markers.
pub const PARTIAL_DIR: &str = ".swarmvm-partial";

fn marker(out: &Path, torrent: &TorrentFile) -> PathBuf {
    out.join(PARTIAL_DIR).join(torrent.info_hash().to_string())
}

/// True when an earlier fetch of this very torrent into `out` left `out/NAME` unfinished:
/// its marker is a regular file (not a link) in a real folder and names the torrent.
pub(crate) fn is_ours(out: &Path, torrent: &TorrentFile) -> bool {
    let dir_ok = std::fs::symlink_metadata(out.join(PARTIAL_DIR)).is_ok_and(|m| m.is_dir());
    let path = marker(out, torrent);
    dir_ok
        && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
        && std::fs::read_to_string(&path).is_ok_and(|name| name == torrent.name())
}

/// Notes that `out/NAME` is being fetched for this torrent.
pub(crate) fn mark(out: &Path, torrent: &TorrentFile) -> Result<()> {
    let dir = out.join(PARTIAL_DIR);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(SwarmError::DifferentData {
                path: dir,
                detail: "it is not a folder (a link?)".into(),
            });
        }
        Err(_) => {
            std::fs::create_dir(&dir).map_err(|e| SwarmError::io("cannot create", &dir, e))?
        }
    }
    let path = marker(out, torrent);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(|e| crate::swarm::write_error(e, &path))?;
    file.write_all(torrent.name().as_bytes()).map_err(|e| crate::swarm::write_error(e, &path))
}

/// Forgets the marker once the fetch is complete.
pub(crate) fn unmark(out: &Path, torrent: &TorrentFile) {
    let _ = std::fs::remove_file(marker(out, torrent));
    let _ = std::fs::remove_dir(out.join(PARTIAL_DIR));
}
