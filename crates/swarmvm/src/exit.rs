//! Exit codes and the one-line error report.

use std::process::ExitCode;

use swarmvm_bundle::{BatchError, BundleError};
use swarmvm_ledger::ApplyError;
use swarmvm_node::client::ClientError;
use swarmvm_node::{NodeError, PipelineError};
use swarmvm_primitives::{Classify, ErrorClass};
use swarmvm_swarm::SwarmError;
use swarmvm_token::{IssueError, VerifyError};
use swarmvm_wallet::KeyError;

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
    anyhow::Error::new(Coded { code: ErrorClass::Refused.exit_code(), message: message.into() })
}

/// The class of one error of the chain, if it is of a type that knows its class.
fn class_of(cause: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    fn as_<E: Classify + std::error::Error + 'static>(
        c: &(dyn std::error::Error + 'static),
    ) -> Option<ErrorClass> {
        c.downcast_ref::<E>().map(Classify::class)
    }
    as_::<NodeError>(cause)
        .or_else(|| as_::<PipelineError>(cause))
        .or_else(|| as_::<ClientError>(cause))
        .or_else(|| as_::<VerifyError>(cause))
        .or_else(|| as_::<KeyError>(cause))
        .or_else(|| as_::<IssueError>(cause))
        .or_else(|| as_::<SwarmError>(cause))
        .or_else(|| as_::<BundleError>(cause))
        .or_else(|| as_::<BatchError>(cause))
        .or_else(|| as_::<ApplyError>(cause))
        .or_else(|| as_::<swarmvm_node::proofs::AnswerError>(cause))
        .or_else(|| as_::<swarmvm_node::reads::ProveError>(cause))
}

/// The exit code an error deserves: the class of the first error in its chain that knows
/// its class (1 refused, 2 failed, 3 timed out), else 2.
pub(crate) fn code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(coded) = cause.downcast_ref::<Coded>() {
            return coded.code;
        }
        if let Some(class) = class_of(cause) {
            return class.exit_code();
        }
    }
    ErrorClass::Failed.exit_code()
}

/// Prints `error: <chain joined by ': '>` on one line of stderr and returns the exit code.
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    let line = format!("{err:#}").replace(['\n', '\r'], " ");
    eprintln!("error: {line}");
    ExitCode::from(code_of(err))
}
