//! Checking a proof document ([`ProofAnswer`], from `GET /v1/proof/{table}/{id}` or `swarmvm
//! state prove`) on the asker's side: the value against the proof, the proof against the root
//! of a head, and the head against the network's authorities, followed from its first set
//! through the rotations the document carries. Nothing the answering node says is trusted.

use base64::Engine as _;
use serde_json::Value;
use swarmvm_primitives::{ErrorClass, Hash32};
use swarmvm_token::{Network, VerifiedHead, VerifyError, verify_head, verify_manifest};
use swarmvm_vm::{ProofError, Table, encode_key, entry_leaf, verify_proof};

use crate::heads::MAX_HEAD_LIFETIME;
use crate::protocol::ProofAnswer;

/// The most rotation manifests a document may carry.
pub const MAX_ROTATIONS: usize = 4096;

/// What a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub enum Anchor<'a> {
    /// A network: the document's head must verify against its authority set at the head's
    /// seq (the first set, then each rotation in the document), and must not have expired.
    Network(&'a Network),
    /// A state root the asker trusts already; the head, if any, is not looked at.
    Root(Hash32),
}

/// A document whose proof held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAnswer {
    /// The table.
    pub table: Table,
    /// The id.
    pub id: String,
    /// The entry's value (`None`: proved absent).
    pub value: Option<Value>,
    /// The root it was proved against.
    pub root: Hash32,
    /// The head that named that root, when checked against a network.
    pub head: Option<VerifiedHead>,
}

/// Why a proof document does not hold.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The document is not a proof document.
    #[error("not a proof document: {0}")]
    Malformed(String),
    /// It carries no head, and a network was to be checked.
    #[error(
        "the document carries no head (the node keeps none for its state); check it with --root"
    )]
    NoHead,
    /// A rotation manifest it carries does not verify, or rotates nothing.
    #[error("rotation manifest {index}: {reason}")]
    Rotation {
        /// Its place in the document, from 1.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The head does not verify against the set in force.
    #[error("the head does not verify")]
    Head(#[from] VerifyError),
    /// The head claims to live longer than a head may.
    #[error("the head would live {0} s, longer than a head may ({max} s)", max = MAX_HEAD_LIFETIME.as_secs())]
    HeadLifetime(u64),
    /// The proof does not prove the value against the root.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// Every way a document fails is a refusal (exit 1).
impl swarmvm_primitives::Classify for AnswerError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Refused
    }
}

/// Checks `answer` against `anchor` at `now` (Unix seconds).
pub fn verify_answer(
    answer: &ProofAnswer,
    anchor: Anchor<'_>,
    now: u64,
) -> Result<VerifiedAnswer, AnswerError> {
    let malformed = |what: String| AnswerError::Malformed(what);
    let table = Table::from_name(&answer.table).ok_or_else(|| {
        malformed(format!("no state table '{}'", swarmvm_primitives::text::shown(&answer.table)))
    })?;
    if answer.proof.len() > swarmvm_vm::MAX_PROOF_LEN * 4 / 3 + 4 {
        return Err(malformed(format!("the proof is over {} bytes", swarmvm_vm::MAX_PROOF_LEN)));
    }
    let proof = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&answer.proof)
        .map_err(|_| malformed("'proof' is not base64url without padding".into()))?;
    let value = match &answer.value {
        Value::Null => None,
        v => Some(v.clone()),
    };
    let leaf = value
        .as_ref()
        .map(|v| {
            swarmvm_vm::view::record_from_value(table, v)
                .map(|record| entry_leaf(table, &answer.id, &record))
                .map_err(|e| malformed(format!("'value': {e}")))
        })
        .transpose()?;
    let (root, head) = match anchor {
        Anchor::Root(root) => (root, None),
        Anchor::Network(network) => {
            let head = verify_chain(answer, network, now)?;
            (head.state_root, Some(head))
        }
    };
    verify_proof(&proof, &encode_key(table, &answer.id), leaf.as_ref(), &root)?;
    Ok(VerifiedAnswer { table, id: answer.id.clone(), value, root, head })
}

/// The document's head, verified against the set in force at its seq: the network's first
/// set, changed by each rotation manifest the document carries (each verified against the set
/// before it), none after the head's seq.
fn verify_chain(
    answer: &ProofAnswer,
    network: &Network,
    now: u64,
) -> Result<VerifiedHead, AnswerError> {
    let text = answer.head.as_deref().ok_or(AnswerError::NoHead)?;
    if answer.manifests.len() > MAX_ROTATIONS {
        return Err(AnswerError::Malformed(format!(
            "more than {MAX_ROTATIONS} rotation manifests"
        )));
    }
    let mut set = network.genesis().clone();
    let mut last_seq = 0;
    for (i, manifest) in answer.manifests.iter().enumerate() {
        let rotation = |reason: String| AnswerError::Rotation { index: i + 1, reason };
        let verified =
            verify_manifest(manifest, network.id(), &set).map_err(|e| rotation(e.to_string()))?;
        if verified.seq <= last_seq {
            return Err(rotation(format!("seq {} is not after {last_seq}", verified.seq)));
        }
        last_seq = verified.seq;
        set = verified
            .authority_set
            .ok_or_else(|| rotation(format!("bundle {} rotates nothing", verified.seq)))?;
    }
    let head = verify_head(text, network.id(), &set, now)?;
    if let Some(lifetime) = crate::heads::too_long_lived(&head) {
        return Err(AnswerError::HeadLifetime(lifetime));
    }
    if last_seq > head.seq {
        return Err(AnswerError::Rotation {
            index: answer.manifests.len(),
            reason: format!("seq {last_seq} is after the head's, {}", head.seq),
        });
    }
    Ok(head)
}
