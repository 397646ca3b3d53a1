//! Errors of starting and driving a node, each classed as the command line exits on it
//! ([`Classify`]).

use swarmvm_primitives::{Classify, ErrorClass};

/// Why a node could not start or take a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The data folder cannot be used.
    #[error("cannot use data dir {}", path.display())]
    DataDir {
        /// The folder.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The ledger failed to open.
    #[error("cannot open the ledger")]
    Open(#[from] swarmvm_ledger::OpenError),
    /// The ledger could not be read.
    #[error("cannot read the ledger")]
    Read(#[from] swarmvm_ledger::ReadError),
    /// The BitTorrent session failed.
    #[error(transparent)]
    Swarm(#[from] swarmvm_swarm::SwarmError),
    /// The HTTP API could not listen.
    #[error("cannot serve the http api on {addr}")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A request that cannot be taken (a bad torrent or magnet).
    #[error("{0}")]
    BadRequest(String),
    /// A bundle folder was refused (its manifest or files), or could not be read.
    #[error(transparent)]
    Bundle(#[from] swarmvm_bundle::BundleError),
    /// A bundle was not applied: refused by a rule, or the ledger failed to store it.
    #[error(transparent)]
    Apply(#[from] crate::pipeline::PipelineError),
    /// A task of the node failed (a panic, or the runtime stopping).
    #[error("a node task failed: {0}")]
    Task(String),
    /// Too many bundles in progress; try again later.
    #[error(
        "{pending} bundles are in progress, the most this node takes at once is {max}; try again later"
    )]
    Busy {
        /// Bundles in progress.
        pending: usize,
        /// The bound.
        max: usize,
    },
}

impl Classify for NodeError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::BadRequest(_) => ErrorClass::Refused,
            Self::Swarm(e) => e.class(),
            Self::Bundle(e) => e.class(),
            Self::Apply(e) => e.class(),
            Self::Open(e) => e.class(),
            Self::Read(e) => e.class(),
            Self::DataDir { .. } | Self::Http { .. } | Self::Busy { .. } | Self::Task(_) => {
                ErrorClass::Failed
            }
        }
    }
}

impl NodeError {
    /// A task that did not finish.
    pub(crate) fn task(e: tokio::task::JoinError) -> Self {
        Self::Task(e.to_string())
    }
}

/// One line for an error and its causes, as the command line prints them.
pub(crate) fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out.replace('\n', " ")
}
