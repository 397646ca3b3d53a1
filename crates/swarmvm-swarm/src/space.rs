//! Disk space claimed by fetches in progress. The engine writes sparse files, so a full disk
//! would show up only halfway through a download; each fetch claims what it still needs
//! before it starts, and the check counts what other fetches on the same filesystem claimed.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Result, SwarmError};
use crate::torrent::TorrentFile;

/// What fetches of one session have claimed, per filesystem (device).
#[derive(Debug, Default, Clone)]
pub(crate) struct Claims {
    claimed: Arc<Mutex<BTreeMap<u64, u64>>>,
}

/// Space claimed by one fetch, given back when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    claims: Claims,
    device: u64,
    bytes: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut claimed = self.claims.claimed.lock();
        if let Some(total) = claimed.get_mut(&self.device) {
            *total = total.saturating_sub(self.bytes);
        }
    }
}

impl Claims {
    /// Claims the space `torrent` still needs in `out` (its size less what is already
    /// allocated there), or refuses when that and what other fetches claimed exceed the free
    /// space.
    pub(crate) fn claim(&self, torrent: &TorrentFile, out: &Path) -> Result<Claim> {
        let root = torrent.storage_root(out);
        let allocated: u64 = torrent
            .files()
            .iter()
            .filter_map(|f| std::fs::symlink_metadata(root.join(&f.path)).ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| (m.blocks() * 512).min(m.len()))
            .sum();
        let needed = torrent.total_length().saturating_sub(allocated);
        let device =
            std::fs::metadata(out).map_err(|e| SwarmError::io("cannot inspect", out, e))?.dev();
        let stat = rustix::fs::statvfs(out)
            .map_err(|e| SwarmError::io("cannot inspect", out, e.into()))?;
        let available = stat.f_bavail.saturating_mul(stat.f_frsize);
        let mut claimed = self.claimed.lock();
        let others = claimed.get(&device).copied().unwrap_or(0);
        if needed.saturating_add(others) > available {
            return Err(SwarmError::DiskFull {
                path: out.to_path_buf(),
                detail: format!(
                    "{needed} bytes needed, {available} available, {others} claimed by other fetches"
                ),
            });
        }
        *claimed.entry(device).or_default() += needed;
        Ok(Claim { claims: self.clone(), device, bytes: needed })
    }

    /// Bytes claimed on the filesystem holding `path` now.
    #[cfg(test)]
    pub(crate) fn claimed(&self, path: &Path) -> u64 {
        let device = std::fs::metadata(path).map(|m| m.dev()).unwrap_or_default();
        self.claimed.lock().get(&device).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_add_up_and_are_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("src/one");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("f"), vec![7u8; 100_000]).unwrap();
        let torrent = TorrentFile::create(&data, &[], None).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let claims = Claims::default();
        let a = claims.claim(&torrent, &out).unwrap();
        let b = claims.claim(&torrent, &out).unwrap();
        assert_eq!(claims.claimed(&out), 200_000);
        drop(a);
        assert_eq!(claims.claimed(&out), 100_000);
        drop(b);
        assert_eq!(claims.claimed(&out), 0);
    }
}
