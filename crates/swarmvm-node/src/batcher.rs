//! Contract signatures checked in batches as they arrive (a sequencer under rules 4): every
//! submission waiting at once is checked in one ZIP-215 batch, on a blocking thread, and a
//! failed batch is checked one by one, so each submission gets exactly the answer checking it
//! alone would give. Nothing waits for a batch to fill: under light load a batch is one
//! signature.

use swarmvm_token::zip215::{Ed25519Check, verify_batch};
use tokio::sync::{mpsc, oneshot};

/// The most signatures checked in one batch.
const MAX_BATCH: usize = 64;

type Request = (Ed25519Check, oneshot::Sender<bool>);

/// The handle submissions send their signatures to.
pub(crate) struct Batcher {
    tx: mpsc::Sender<Request>,
}

/// The loop that checks them, to run as a task ([`BatchLoop::run`]).
pub(crate) struct BatchLoop {
    rx: mpsc::Receiver<Request>,
}

impl Batcher {
    pub(crate) fn new() -> (Self, BatchLoop) {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 64);
        (Self { tx }, BatchLoop { rx })
    }

    /// Whether `check` holds under ZIP-215 (checked alone when the loop is gone).
    pub(crate) async fn holds(&self, check: Ed25519Check) -> bool {
        let (reply, answer) = oneshot::channel();
        match self.tx.send((check, reply)).await {
            Ok(()) => answer.await.unwrap_or(false),
            Err(mpsc::error::SendError((check, _))) => {
                tokio::task::spawn_blocking(move || check.verify_one()).await.unwrap_or(false)
            }
        }
    }
}

impl BatchLoop {
    /// [`BatchLoop::run`] until `stop` turns true: the node's own handles live as long as the
    /// node, so the loop would not end by itself when the node stops.
    pub(crate) async fn run_until(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        tokio::select! {
            () = self.run() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    /// Takes what is waiting, up to [`MAX_BATCH`], checks it as one batch, answers each; until
    /// every [`Batcher`] is gone.
    pub(crate) async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let (checks, replies): (Vec<Ed25519Check>, Vec<oneshot::Sender<bool>>) =
                batch.into_iter().unzip();
            let outcome = tokio::task::spawn_blocking(move || {
                let refs: Vec<&Ed25519Check> = checks.iter().collect();
                verify_batch(&refs)
            })
            .await
            .unwrap_or_default();
            for (i, reply) in replies.into_iter().enumerate() {
                let _ = reply.send(outcome.get(i).copied().unwrap_or(false));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmvm_wallet::{Algorithm, Wallet};

    /// The signature of a contract `wallet` signed; with `bad`, one character of it changed.
    fn check(wallet: &Wallet, nonce: u64, bad: bool) -> Ed25519Check {
        let mut token = swarmvm_token::sign_contract(wallet, "net", nonce, &[], 1_000).unwrap();
        if bad {
            let at = token.rfind('.').unwrap() + 1;
            let c = if token.as_bytes()[at] == b'A' { "B" } else { "A" };
            token.replace_range(at..=at, c);
        }
        let signers = swarmvm_token::TrustStore::with_keys([wallet.public_key()]);
        let pending = swarmvm_token::prepare_contract(&token, &signers, "net").unwrap();
        pending.signature().unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_signatures_are_checked_together_and_each_gets_its_own_answer() {
        let (batcher, run) = Batcher::new();
        let task = tokio::spawn(run.run());
        let batcher = std::sync::Arc::new(batcher);
        let wallets: Vec<Wallet> =
            (0..8).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
        let mut waits = Vec::new();
        for (i, w) in wallets.iter().cycle().take(200).enumerate() {
            // Every seventh is a signature over other bytes.
            let bad = i % 7 == 3;
            let c = check(w, i as u64 + 1, bad);
            let b = batcher.clone();
            waits.push((bad, tokio::spawn(async move { b.holds(c).await })));
        }
        for (bad, wait) in waits {
            assert_eq!(wait.await.unwrap(), !bad);
        }
        drop(batcher);
        task.await.unwrap();
    }
}
