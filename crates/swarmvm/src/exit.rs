//! Exit codes and the one-line error report.

use std::process::ExitCode;

use swarmvm_token::{IssueError, VerifyError};
use swarmvm_wallet::KeyError;

/// Refused: verification or a rule failed.
pub(crate) const REFUSED: u8 = 1;
/// Usage, I/O or internal error.
pub(crate) const FAILURE: u8 = 2;
/// Timed out.
pub(crate) const TIMED_OUT: u8 = 3;

/// An error that carries its exit code explicitly.
#[derive(Debug)]
pub(crate) struct Coded {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// A refusal with the given message (exit 1).
pub(crate) fn refused(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded { code: REFUSED, message: message.into() })
}

/// The exit code an error deserves: 1 for refusals by a rule, 2 for everything else.
pub(crate) fn code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(coded) = cause.downcast_ref::<Coded>() {
            return coded.code;
        }
        if cause.downcast_ref::<VerifyError>().is_some() {
            return REFUSED;
        }
        if cause.downcast_ref::<KeyError>().is_some_and(KeyError::is_refusal) {
            return REFUSED;
        }
        if let Some(e) = cause.downcast_ref::<swarmvm_swarm::SwarmError>() {
            if e.is_timeout() {
                return TIMED_OUT;
            }
            if e.is_refusal() {
                return REFUSED;
            }
        }
        if let Some(e) = cause.downcast_ref::<swarmvm_bundle::BundleError>() {
            return if matches!(e, swarmvm_bundle::BundleError::Io { .. }) {
                FAILURE
            } else {
                REFUSED
            };
        }
        if let Some(e) = cause.downcast_ref::<swarmvm_bundle::BatchError>() {
            return if e.is_fatal() { FAILURE } else { REFUSED };
        }
        if let Some(e) = cause.downcast_ref::<swarmvm_node::PipelineError>() {
            return if e.is_fatal() { FAILURE } else { REFUSED };
        }
        if let Some(swarmvm_node::NodeError::BadRequest(_)) =
            cause.downcast_ref::<swarmvm_node::NodeError>()
        {
            return REFUSED;
        }
        if let Some(e) = cause.downcast_ref::<swarmvm_ledger::ApplyError>() {
            return if e.is_fatal() { FAILURE } else { REFUSED };
        }
        if let Some(IssueError::Invalid(_) | IssueError::WeakSecret(_)) =
            cause.downcast_ref::<IssueError>()
        {
            return REFUSED;
        }
    }
    FAILURE
}

/// Prints `error: <chain joined by ': '>` on one line of stderr and returns the exit code.
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    let line = format!("{err:#}").replace(['\n', '\r'], " ");
    eprintln!("error: {line}");
    ExitCode::from(code_of(err))
}
