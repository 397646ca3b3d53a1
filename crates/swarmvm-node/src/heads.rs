//! Heads: the newest signed head a node knows (signed by its own sequencer, or polled from the
//! nodes it follows), checked against its ledger; whether it is stale; and whether this node
//! diverged from it (then it stops applying). A sequencer signs its heads here
//! ([`HeadStore::sign`]).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use swarmvm_primitives::BundleId;
use swarmvm_token::{
    HeadContent, SnapshotClaim, VerifiedHead, VerifyError, sign_head, unix_now, verify_head,
};
use swarmvm_vm::Hash32;
use swarmvm_wallet::Wallet;
use tokio::sync::watch;
use tracing::warn;

use crate::applier::Applier;
use crate::error::one_line;

/// The longest a head may live (`exp - iat`): a follower refuses a head that claims to live
/// longer, and a sequencer refuses to start with a longer `--max-head-age`. Without a cap, one
/// head signed to live for years would hide for as long that its network stopped.
pub(crate) const MAX_HEAD_LIFETIME: Duration = Duration::from_secs(3600);

/// How long `head` claims to live (`exp - iat`, seconds) when that is longer than
/// [`MAX_HEAD_LIFETIME`]: what a follower and a proof's verifier refuse.
pub(crate) fn too_long_lived(head: &VerifiedHead) -> Option<u64> {
    let lifetime = head.expires_at.saturating_sub(head.issued_at);
    (lifetime > MAX_HEAD_LIFETIME.as_secs()).then_some(lifetime)
}

/// Refuses a `--max-head-age` longer than [`MAX_HEAD_LIFETIME`].
pub(crate) fn check_head_age(age: Duration) -> Result<(), String> {
    if age > MAX_HEAD_LIFETIME {
        return Err(format!(
            "--max-head-age {} is longer than a head may live ({}): followers would refuse every head",
            humantime::format_duration(age),
            humantime::format_duration(MAX_HEAD_LIFETIME)
        ));
    }
    Ok(())
}

/// The authority keys a sequencer signs bundles and heads with, and how long its heads live.
#[derive(Debug)]
pub(crate) struct Signer {
    keys: Vec<Wallet>,
    max_head_age: Duration,
}

impl Signer {
    pub(crate) fn new(keys: Vec<Wallet>, max_head_age: Duration) -> Self {
        Self { keys, max_head_age }
    }

    /// The keys.
    pub(crate) fn keys(&self) -> Vec<&Wallet> {
        self.keys.iter().collect()
    }

    /// How long its heads live.
    pub(crate) fn max_head_age(&self) -> Duration {
        self.max_head_age
    }
}

/// A head this node verified.
#[derive(Debug, Clone)]
pub(crate) struct KnownHead {
    pub(crate) text: String,
    pub(crate) head: VerifiedHead,
    /// Where it came from, and when (Unix seconds).
    pub(crate) via: Via,
    pub(crate) at: u64,
}

/// Where a node's newest head came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// This node signed it (a sequencer).
    Own,
    /// A followed node's `GET /v1/head` (an HTTP relay).
    Relay,
    /// A member's item in the BitTorrent DHT.
    Dht,
}

impl Via {
    /// Its name in the status (`head.via`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Own => "self",
            Self::Relay => "relay",
            Self::Dht => "dht",
        }
    }
}

/// The newest head known, and the last refusal.
#[derive(Debug, Default)]
struct State {
    newest: Option<KnownHead>,
    refused: Option<String>,
    stale_warned: bool,
    /// A head signed by keys this node does not know yet (a rotation it has not applied
    /// adds them), and the seq it claims: the bundles up to it are fetched by seq, and it is
    /// verified again after each apply.
    waiting: Option<(String, u64, Via)>,
    /// Why this node stopped applying: its root after a bundle differs from the head's.
    diverged: Option<String>,
}

/// True when `head` is newer than `known`: heads are ordered by when they were signed, then
/// by seq. A head is its authority's statement of the newest bundle at `iat`, so a later
/// statement supersedes an earlier one even when it names a lower seq: one head for a seq far
/// ahead (whose bundles no node has) is replaced by the next head signed, instead of hiding
/// every later head. A head signed ahead of the clock holds its place for at most the clock
/// leeway heads are verified with.
pub(crate) fn newer(head: &VerifiedHead, known: &VerifiedHead) -> bool {
    (head.issued_at, head.seq) > (known.issued_at, known.seq)
}

/// What a head says against this node's ledger.
enum Against {
    /// It names a bundle this node has not applied yet.
    Ahead,
    /// It agrees with the ledger.
    Agrees,
    /// It names another bundle for a seq this node applied.
    OtherBundle(String),
    /// Same bundle, another root after it.
    OtherRoot(String),
}

/// The node's heads. Cloning gives another handle to the same store.
#[derive(Clone)]
pub(crate) struct HeadStore {
    applier: Applier,
    state: Arc<Mutex<State>>,
    /// Changes with every newer head: (seq, iat).
    changed: Arc<watch::Sender<(u64, u64)>>,
    /// On a sequencer: the keys it signs heads with.
    signer: Option<Arc<Signer>>,
    /// The newest snapshot this node publishes: every head it signs names it.
    snapshot: Arc<Mutex<Option<SnapshotClaim>>>,
}

impl HeadStore {
    pub(crate) fn new(applier: Applier, signer: Option<Arc<Signer>>) -> Self {
        Self {
            applier,
            state: Arc::default(),
            changed: Arc::new(watch::channel((0, 0)).0),
            signer,
            snapshot: Arc::default(),
        }
    }

    /// Names `claim` in every head this node signs from now on (a newer claim only).
    pub(crate) fn publish_snapshot(&self, claim: SnapshotClaim) {
        let mut current = self.snapshot.lock();
        if current.as_ref().is_none_or(|c| c.seq < claim.seq) {
            *current = Some(claim);
        }
    }

    /// The newest snapshot this node publishes.
    pub(crate) fn published_snapshot(&self) -> Option<SnapshotClaim> {
        self.snapshot.lock().clone()
    }

    /// Where the newest head came from and when this node took it (Unix seconds).
    pub(crate) fn head_origin(&self) -> Option<(Via, u64)> {
        self.state.lock().newest.as_ref().map(|k| (k.via, k.at))
    }

    /// The newest head this node verified (expired or not), as its token and its claims.
    pub(crate) fn head(&self) -> Option<(String, VerifiedHead)> {
        self.state.lock().newest.as_ref().map(|k| (k.text.clone(), k.head.clone()))
    }

    /// True when the newest head known has expired.
    pub(crate) fn is_stale(&self) -> bool {
        self.state.lock().newest.as_ref().is_some_and(|k| k.head.expires_at <= unix_now())
    }

    /// Why this node stopped applying, if it diverged from the heads.
    pub(crate) fn diverged(&self) -> Option<String> {
        self.state.lock().diverged.clone()
    }

    /// Why the last head offered was refused.
    pub(crate) fn refused(&self) -> Option<String> {
        self.state.lock().refused.clone()
    }

    /// The seq a head waiting for keys claims ([`State::waiting`]).
    pub(crate) fn waiting_seq(&self) -> Option<u64> {
        self.state.lock().waiting.as_ref().map(|(_, s, _)| *s)
    }

    /// A receiver that changes with every newer head: (seq, iat).
    pub(crate) fn subscribe(&self) -> watch::Receiver<(u64, u64)> {
        self.changed.subscribe()
    }

    /// Waits until a head newer than (`seq`, `iat`) is known, at most `limit`.
    /// (Newer as [`newer`] orders heads: by `iat`, then seq.)
    pub(crate) async fn wait_head(&self, seq: u64, iat: u64, limit: Duration) {
        let mut rx = self.changed.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|&(s, i)| (i, s) > (iat, seq))).await;
    }

    /// Keeps `head` as the newest known if it is newer ([`newer`]); a sequencer's own heads
    /// replace the one before when they name a later seq or, for the same seq, are signed
    /// later (its clock may have stepped back).
    fn store(&self, text: String, head: VerifiedHead, via: Via) {
        let own = via == Via::Own;
        let position = (head.seq, head.issued_at);
        if own {
            // Signed just after its bundle applied: it agrees with the ledger.
            self.applier.keep_head(head.seq, text.clone());
        }
        {
            let mut state = self.state.lock();
            if let Some(k) = &state.newest {
                let replaces = if own {
                    position > (k.head.seq, k.head.issued_at)
                } else {
                    newer(&head, &k.head)
                };
                if !replaces {
                    return;
                }
            }
            state.newest = Some(KnownHead { text, head, via, at: unix_now() });
            state.stale_warned = false;
        }
        self.changed.send_if_modified(|h| {
            let changed = *h != position;
            if changed {
                *h = position;
            }
            changed
        });
    }

    fn refuse(&self, reason: String) {
        warn!("head refused: {reason}");
        self.state.lock().refused = Some(reason);
    }

    /// What `head` says against the ledger.
    fn against(&self, head: &VerifiedHead) -> Against {
        let Some(snapshot) = self.applier.snapshot() else { return Against::Ahead };
        let Ok(Some(record)) = snapshot.bundle(head.seq) else { return Against::Ahead };
        if record.id != head.bundle {
            return Against::OtherBundle(format!(
                "the head names bundle {} for seq {}, and this node applied bundle {}",
                head.bundle, head.seq, record.id
            ));
        }
        let root = snapshot.root_after(head.seq).ok().flatten().unwrap_or_default();
        if root != head.state_root {
            return Against::OtherRoot(format!(
                "after bundle seq {} this node's state root is {root}, the head's is {}",
                head.seq, head.state_root
            ));
        }
        Against::Agrees
    }

    /// Takes a head polled from another node (`via` a relay or the DHT): verified against
    /// the set in force and the ledger. Returns true when it is newer than the newest known.
    /// From the DHT an expired head is taken too (verified as of just before it expired):
    /// an idle network's heads expire, and a joiner still catches up to the state they name,
    /// then reports `stale`.
    pub(crate) fn offer(&self, text: &str, via: Via) -> bool {
        let (network, set) = self.applier.in_force();
        let verified = match verify_head(text, network.id(), &set, unix_now()) {
            Err(VerifyError::Expired { exp, .. }) if via == Via::Dht && exp > 0 => {
                verify_head(text, network.id(), &set, exp - 1)
            }
            other => other,
        };
        let head = match verified {
            Ok(h) => h,
            Err(
                e @ (VerifyError::NotAMember(_)
                | VerifyError::UnknownKid(_)
                | VerifyError::ThresholdNotMet { .. }),
            ) => {
                // Perhaps signed by keys a rotation this node has not applied yet adds.
                let last = self.applier.last_seq();
                if let Some(seq) = claimed_seq(text).filter(|s| *s > last) {
                    self.state.lock().waiting = Some((text.to_owned(), seq, via));
                    self.refuse(format!(
                        "{e}; waiting: the bundles up to seq {seq} may rotate the keys in"
                    ));
                } else {
                    self.refuse(e.to_string());
                }
                return false;
            }
            Err(e) => {
                self.refuse(e.to_string());
                return false;
            }
        };
        if let Some(lifetime) = too_long_lived(&head) {
            self.refuse(format!(
                "the head for seq {} would live {lifetime} s (iat {} to exp {}), longer than the {} s a head may live",
                head.seq,
                head.issued_at,
                head.expires_at,
                MAX_HEAD_LIFETIME.as_secs()
            ));
            return false;
        }
        if let Some((_, known)) = self.head()
            && !newer(&head, &known)
        {
            return false;
        }
        match self.against(&head) {
            Against::OtherBundle(why) => {
                self.refuse(why);
                return false;
            }
            Against::OtherRoot(why) => self.diverge(why),
            Against::Agrees => self.applier.keep_head(head.seq, text.to_owned()),
            Against::Ahead => {}
        }
        self.store(text.to_owned(), head, via);
        true
    }

    fn diverge(&self, why: String) {
        let mut state = self.state.lock();
        if state.diverged.is_none() {
            warn!("diverged, not applying any more bundles: {why}");
            state.diverged = Some(why);
        }
    }

    /// After a bundle applied: a sequencer signs a head for it (when it seeds it, under
    /// `magnet`); any other node checks it against the newest head.
    pub(crate) fn after_applied(
        &self,
        seq: u64,
        id: BundleId,
        root: Hash32,
        magnet: Option<String>,
    ) {
        if self.signer.is_some() {
            if let Some(magnet) = magnet {
                self.sign(seq, id, root, &magnet);
            }
            return;
        }
        // A head waiting for keys a rotation adds: verified again (and kept waiting while
        // its signers are still unknown).
        let waiting = self.state.lock().waiting.take();
        if let Some((text, _, via)) = waiting {
            self.offer(&text, via);
        }
        let Some((text, head)) = self.head() else { return };
        if head.seq != seq {
            return;
        }
        if head.bundle == id && head.state_root == root {
            self.applier.keep_head(seq, text);
        } else if head.bundle != id {
            self.refuse(format!(
                "the head names bundle {} for seq {seq}, and the bundle applied there is {id}",
                head.bundle
            ));
            self.state.lock().newest = None;
        } else if head.state_root != root {
            self.diverge(format!(
                "after bundle seq {seq} this node's state root is {root}, the head's is {}",
                head.state_root
            ));
        }
    }

    /// Signs a head for bundle `seq` (on a sequencer; elsewhere it does nothing): the one
    /// place a node signs a head.
    pub(crate) fn sign(&self, seq: u64, bundle: BundleId, state_root: Hash32, magnet: &str) {
        let Some(signer) = &self.signer else { return };
        let (network, set) = self.applier.in_force();
        // Followers order heads by `iat`: a clock stepped back must not make the new head
        // older than the one it replaces (or than its bundle).
        let known = self.head().map_or(0, |(_, h)| h.issued_at);
        let bundled =
            self.applier.snapshot().and_then(|s| s.last_bundle()).map_or(0, |b| b.issued_at);
        let now = unix_now().max(known).max(bundled);
        let snapshot = self.published_snapshot().filter(|c| c.seq <= seq);
        let content = HeadContent {
            network: network.id(),
            seq,
            bundle,
            magnet,
            state_root,
            now,
            max_age: signer.max_head_age.as_secs().clamp(1, MAX_HEAD_LIFETIME.as_secs()),
            snapshot: snapshot.as_ref(),
        };
        let signed =
            sign_head(&signer.keys(), &content).map_err(|e| one_line(&e)).and_then(|text| {
                verify_head(&text, network.id(), &set, now).map(|h| (text, h)).map_err(|e| {
                    format!("the sequencer's keys cannot sign for the set in force: {e}")
                })
            });
        match signed {
            Ok((text, head)) => self.store(text, head, Via::Own),
            Err(e) => warn!("cannot sign a head for seq {seq}: {e}"),
        }
    }

    /// Warns once when the newest head expired.
    pub(crate) fn check_stale(&self) {
        let mut state = self.state.lock();
        let Some(k) = &state.newest else { return };
        if k.head.expires_at <= unix_now() && !state.stale_warned {
            warn!(
                seq = k.head.seq,
                expired_at = k.head.expires_at,
                "stale: the newest head expired; the sequencer stopped publishing or cannot be reached"
            );
            state.stale_warned = true;
        }
    }
}

/// The `seq` a head claims, read without verifying anything (compact or JSON serialization).
fn claimed_seq(text: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = if text.starts_with('{') {
        let v: Value = serde_json::from_str(text).ok()?;
        v.get("payload")?.as_str()?.to_owned()
    } else {
        text.split('.').nth(1)?.to_owned()
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("seq")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_ordered_by_when_they_were_signed_then_by_seq_and_live_an_hour_at_most() {
        let head = |seq, iat| VerifiedHead {
            signers: Vec::new(),
            seq,
            bundle: BundleId::of_payload(b"b"),
            magnet: String::new(),
            state_root: Hash32::digest(b"r"),
            issued_at: iat,
            expires_at: iat + 60,
            snapshot: None,
        };
        // A head for a seq far ahead gives way to the next one signed.
        let far = head(1_000_000_000, 100);
        assert!(newer(&head(2, 101), &far));
        assert!(!newer(&head(2, 100), &far));
        assert!(!newer(&far, &far));
        assert!(newer(&head(3, 100), &head(2, 100)));
        assert!(check_head_age(MAX_HEAD_LIFETIME).is_ok());
        assert!(check_head_age(MAX_HEAD_LIFETIME + Duration::from_secs(1)).is_err());
    }
}
