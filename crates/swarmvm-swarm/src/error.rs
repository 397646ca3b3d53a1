//! The crate's error type.

use std::path::{Path, PathBuf};

use swarmvm_primitives::{Classify, ErrorClass};

/// Why a torrent could not be made, read, seeded or fetched. One line each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwarmError {
    /// A file or folder could not be read or written.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `.torrent` that is malformed or breaks a limit.
    #[error("bad torrent: {0}")]
    BadTorrent(String),
    /// A magnet link we cannot use.
    #[error("bad magnet link: {0}")]
    BadMagnet(String),
    /// Input that cannot become a torrent (an empty folder, a bad name, ...).
    #[error("{0}")]
    BadInput(String),
    /// The BitTorrent session could not start (no free port, ...).
    #[error("cannot start the bittorrent session: {0}")]
    Session(String),
    /// A folder to seed that does not hold the torrent's data.
    #[error("{} does not hold this torrent's data: {detail}", dir.display())]
    DataMismatch {
        /// The folder.
        dir: PathBuf,
        /// What differs.
        detail: String,
    },
    /// An output folder that already holds other data than the torrent's.
    #[error("{} already holds different data ({detail}); remove it or choose another --out", path.display())]
    DifferentData {
        /// The folder.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// The disk is full, or too full for the download.
    #[error("disk full: {} ({detail})", path.display())]
    DiskFull {
        /// Where.
        path: PathBuf,
        /// Sizes, or the system's message.
        detail: String,
    },
    /// Nothing completed in time.
    #[error("timed out after {seconds}s: {peers} peers seen, {percent:.1}% done")]
    TimedOut {
        /// Seconds waited.
        seconds: u64,
        /// Peers found.
        peers: u32,
        /// Progress.
        percent: f64,
    },
    /// The engine reported an error for the torrent.
    #[error("transfer failed: {0}")]
    Engine(String),
}

impl SwarmError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io { action, path: path.to_path_buf(), source }
    }

    /// Names the file a torrent came from in its error.
    pub(crate) fn in_file(self, path: &Path) -> Self {
        match self {
            Self::BadTorrent(m) => Self::BadTorrent(format!("{}: {m}", path.display())),
            other => other,
        }
    }

    /// True for a timeout (exit status 3 at the command line).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::TimedOut { .. })
    }

    /// True when the input was refused (bad torrent or magnet, mismatching data), rather
    /// than the machine or network failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::BadTorrent(_)
                | Self::BadMagnet(_)
                | Self::DataMismatch { .. }
                | Self::DifferentData { .. }
        )
    }
}

/// A timeout timed out, a refused input ([`SwarmError::is_refusal`]) is refused, and the
/// machine or the network failing is a failure.
impl Classify for SwarmError {
    fn class(&self) -> ErrorClass {
        if self.is_timeout() {
            ErrorClass::TimedOut
        } else if self.is_refusal() {
            ErrorClass::Refused
        } else {
            ErrorClass::Failed
        }
    }
}

/// `Result` with [`SwarmError`].
pub type Result<T, E = SwarmError> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_agrees_with_is_timeout_and_is_refusal() {
        let cases = [
            SwarmError::TimedOut { seconds: 1, peers: 0, percent: 0.0 },
            SwarmError::BadTorrent("x".into()),
            SwarmError::BadMagnet("x".into()),
            SwarmError::Session("x".into()),
            SwarmError::Engine("x".into()),
            SwarmError::io("cannot read", Path::new("f"), std::io::Error::other("x")),
        ];
        for e in &cases {
            let expected = match (e.is_timeout(), e.is_refusal()) {
                (true, _) => ErrorClass::TimedOut,
                (false, true) => ErrorClass::Refused,
                (false, false) => ErrorClass::Failed,
            };
            assert_eq!(e.class(), expected, "{e}");
        }
        assert_eq!(cases[0].class().exit_code(), 3);
    }
}
