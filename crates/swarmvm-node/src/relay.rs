//! Submissions relayed in batches: a node that is not the sequencer sends the contracts its
//! clients submit at the same time to the nodes it follows as one `POST /v1/contracts/batch`,
//! where each would have cost a request of its own at every hop. Nothing waits for a batch to
//! fill: a few batches are in flight at once, and whatever arrives meanwhile goes in the next,
//! so under light load a batch is one contract (sent as `POST /v1/contracts`, as before).
//!
//! Every contract still gets exactly the answer the sequencer gives it alone. A followed node
//! that does not know the batch route (an older version: 404 or 405) gets the contracts one
//! by one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::client::Reply;
use crate::follow::Follower;
use crate::protocol::BatchAnswer;

/// The most contracts in one batch (also the most lines `POST /v1/contracts/batch` takes).
pub(crate) const MAX_BATCH_LINES: usize = 1000;
/// The largest body of one batch (also the most `POST /v1/contracts/batch` takes).
pub(crate) const MAX_BATCH_BODY: usize = 4 * 1024 * 1024;
/// Batches in flight at once from one node.
const IN_FLIGHT: usize = 4;

/// What became of one relayed contract: the reply the followed nodes gave for it, or why none
/// of them could be asked.
pub(crate) type Relayed = Result<Reply, String>;

type Waiting = (String, oneshot::Sender<Relayed>);

/// What this node forwarded (this run): requests, and the contracts they carried.
#[derive(Debug, Default)]
pub(crate) struct RelayCounts {
    requests: AtomicU64,
    contracts: AtomicU64,
}

impl RelayCounts {
    fn record(&self, contracts: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.contracts.fetch_add(contracts as u64, Ordering::Relaxed);
    }

    /// Forwarding requests sent, and the contracts they carried.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.requests.load(Ordering::Relaxed), self.contracts.load(Ordering::Relaxed))
    }
}

/// Forwarding from this node to the nodes it follows: clients' own contracts in batches, and
/// the counts of what it forwarded. Cloning gives another handle to the same relay.
#[derive(Clone)]
pub(crate) struct Relay {
    follower: Follower,
    tx: mpsc::Sender<Waiting>,
    rx: Arc<Mutex<Option<mpsc::Receiver<Waiting>>>>,
    counts: Arc<RelayCounts>,
}

impl Relay {
    pub(crate) fn new(follower: Follower) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH_LINES * IN_FLIGHT);
        Self { follower, tx, rx: Arc::new(Mutex::new(Some(rx))), counts: Arc::default() }
    }

    /// What it forwarded.
    pub(crate) fn counts(&self) -> &RelayCounts {
        &self.counts
    }

    /// Starts the loop that sends the batches, when the node follows any node (once; later
    /// calls do nothing).
    pub(crate) fn start(&self, tasks: &crate::tasks::Tasks) {
        if self.follower.urls().is_empty() {
            return;
        }
        if let Some(rx) = self.rx.lock().take() {
            tasks.spawn(run(rx, self.clone(), tasks.stopping()));
        }
    }

    /// Relays a client's own contract `token` (checked for form and network) with the
    /// others waiting at the same time; answers with its own reply.
    pub(crate) async fn submit(&self, token: String) -> Relayed {
        if self.follower.urls().is_empty() {
            // Answered at once with why it cannot be forwarded.
            return self.forward_one(&token, 0, "").await;
        }
        let (reply, answer) = oneshot::channel();
        self.tx.send((token, reply)).await.map_err(|_| "the node is stopping".to_owned())?;
        answer.await.map_err(|_| "the node is stopping".to_owned())?
    }

    /// Forwards `tokens` to the nodes this node follows: one alone as `POST /v1/contracts`,
    /// more as one `POST /v1/contracts/batch` (one by one to a node that does not know that
    /// route). Returns one outcome for each token, in order.
    pub(crate) async fn forward(&self, tokens: &[String], hops: u32, via: &str) -> Vec<Relayed> {
        if let [token] = tokens {
            return vec![self.forward_one(token, hops, via).await];
        }
        self.counts.record(tokens.len());
        let mut body = String::with_capacity(tokens.iter().map(|t| t.len() + 1).sum());
        for token in tokens {
            body.push_str(token);
            body.push('\n');
        }
        let reply = self
            .follower
            .forward("/v1/contracts/batch", "application/jsonl", body.into_bytes(), hops, via)
            .await;
        match reply {
            Ok(reply) if reply.status == 200 => match results_of(reply.body, tokens.len()) {
                Ok(results) => results.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e); tokens.len()],
            },
            Ok(reply) if reply.status == 404 || reply.status == 405 => {
                futures_util::future::join_all(
                    tokens.iter().map(|t| self.forward_one(t, hops, via)),
                )
                .await
            }
            // A refusal of the whole batch (busy, unavailable, a loop) is each contract's.
            Ok(reply) => vec![Ok(reply); tokens.len()],
            Err(e) => vec![Err(e); tokens.len()],
        }
    }

    async fn forward_one(&self, token: &str, hops: u32, via: &str) -> Relayed {
        self.counts.record(1);
        self.follower
            .forward("/v1/contracts", "application/jose", token.as_bytes().to_vec(), hops, via)
            .await
    }
}

/// Takes what waits (up to a batch's bounds) whenever fewer than [`IN_FLIGHT`] batches are on
/// their way, and sends it.
async fn run(
    mut rx: mpsc::Receiver<Waiting>,
    relay: Relay,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    // A contract that did not fit in the batch before starts the next.
    let mut carried: Option<Waiting> = None;
    loop {
        let next = async {
            let permit = permits.clone().acquire_owned().await.ok()?;
            let first = match carried.take() {
                Some(w) => w,
                None => rx.recv().await?,
            };
            Some((permit, first))
        };
        let next = tokio::select! {
            next = next => next,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some((permit, first)) = next else { break };
        let mut bytes = first.0.len() + 1;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_LINES {
            match rx.try_recv() {
                Ok(w) if bytes + w.0.len() < MAX_BATCH_BODY => {
                    bytes += w.0.len() + 1;
                    batch.push(w);
                }
                Ok(w) => {
                    carried = Some(w);
                    break;
                }
                Err(_) => break,
            }
        }
        let relay = relay.clone();
        tokio::spawn(async move {
            answer(batch, &relay).await;
            drop(permit);
        });
    }
}

/// Sends a batch of clients' own contracts and answers each waiting submission.
async fn answer(batch: Vec<Waiting>, relay: &Relay) {
    let (tokens, replies): (Vec<String>, Vec<oneshot::Sender<Relayed>>) = batch.into_iter().unzip();
    let outcomes = relay.forward(&tokens, 0, "").await;
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(outcome);
    }
}

/// A batch's answer as one reply for each of its `count` contracts.
fn results_of(body: Value, count: usize) -> Result<Vec<Reply>, String> {
    let answer: BatchAnswer = serde_json::from_value(body)
        .map_err(|e| format!("the batch's answer cannot be read: {e}"))?;
    if answer.results.len() != count {
        return Err(format!(
            "the batch's answer has {} results for {count} contracts",
            answer.results.len()
        ));
    }
    Ok(answer
        .results
        .into_iter()
        .map(|r| Reply {
            status: r.status,
            retry_after: r.retry_after,
            body: serde_json::to_value(&r).unwrap_or(Value::Null),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{BatchResult, ContractState};

    #[test]
    fn a_batch_answer_gives_each_contract_its_reply_and_a_short_one_is_refused() {
        let id = swarmvm_vm::Hash32::digest(b"a.b.c");
        let accepted = BatchResult::accepted(id);
        let refused = BatchResult {
            status: 409,
            error: Some("nonce 3 is not above the last, 5".into()),
            next_nonce: Some(6),
            ..BatchResult::default()
        };
        let body = serde_json::to_value(BatchAnswer { results: vec![accepted, refused] }).unwrap();
        let replies = results_of(body.clone(), 2).unwrap();
        assert_eq!(replies[0].status, 202);
        assert_eq!(replies[0].body["id"], id.to_hex());
        assert_eq!(replies[0].body["state"], serde_json::to_value(ContractState::Pending).unwrap());
        assert_eq!(replies[1].status, 409);
        assert_eq!(replies[1].error_line(), "nonce 3 is not above the last, 5");
        assert_eq!(replies[1].body["next_nonce"], 6);
        let e = results_of(body, 3).unwrap_err();
        assert!(e.contains("2 results for 3 contracts"), "{e}");
        assert!(results_of(serde_json::json!({"results": "no"}), 1).is_err());
    }
}
