//! An authority replica (`node run --sequencer --key ONE.pem --cluster URL...`): one of the
//! members' replicas that together do the sequencer's work with no single server. Each holds
//! only its own key. They agree on one order of commands through [`swarmvm_raft`]:
//!
//! - `submit`: items accepted by any replica (202 once the command is in a majority's log);
//! - `cut`: the leader's next bundle, as the whole manifest payload (`iss` the leader, `iat`
//!   its clock) and the queued items it takes, in order;
//! - `manifest_sig`: one member's signature over a cut's payload, made after it wrote the
//!   same folder from the log and checked it against its own ledger;
//! - `head` and `head_sig`: a head payload for the bundle applied, and one member's signature
//!   over it, made only once its own ledger reached that bundle and root.
//!
//! The replicated state below is a function of the log alone, so every replica holds the same
//! queue, cuts and signatures. When a cut has K signatures committed, every replica joins the
//! first K (sorted by signer) into the same `manifest.jwt`, so every replica writes the same
//! folder and torrent, applies it and seeds it; when a head has K, every replica offers the
//! same K-signed head to its head store, where relays and followers read it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use swarmvm_primitives::{Hash32, Rules};
use swarmvm_raft::{
    Applied, Cluster, ClusterStatus, Command, Committed, Envelope, Expect, ImageSource,
};
use swarmvm_token::{
    HeadContent, Kind, ManifestContent, PayloadSignature, head_payload, join_head, join_manifest,
    manifest_payload, sign_payload_part, unix_now, verify_payload_part,
};
use swarmvm_wallet::Wallet;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{info, warn};

use crate::core::Core;
use crate::decisions::{Decision, Decisions};
use crate::error::one_line;
use crate::fetcher::CutError;
use crate::heads::Via;
use crate::protocol::Equivocation;
use crate::queue::{Item, Parts};
use crate::submit::SubmitError;

/// How far a leader's clock (a cut's or a head's `iat`) may be from a replica's.
const MAX_CLOCK_SKEW: u64 = 30;
/// Submissions proposed in one command at most.
const GROUP: usize = 256;
/// Contracts refused at a cut remembered for `GET /v1/contracts/{id}`, at most.
const MAX_DROPPED: usize = 65_536;
/// How long a replica waits before checking again a cut it would not sign.
const RECHECK_REFUSED: Duration = Duration::from_secs(5);
/// The kind of the signed message a replica refuses a cut with ([`Refusal`]).
const REFUSAL: &str = "refusal";
/// The recipient a refusal names: every replica (it travels in the log).
const EVERY_REPLICA: &str = "replicas";
/// Seqs whose abandoned manifests are remembered, at most (the newest).
const ABANDONED_KEPT: u64 = 64;
/// Manifests abandoned remembered for one seq, at most (with the pause between re-cuts, a
/// seq refused that often has been stuck for about a day).
const ABANDONED_PER_SEQ: usize = 1024;
/// The longest pause before a seq whose cuts were abandoned is cut again.
const MAX_RECUT_PAUSE: Duration = Duration::from_secs(60);
/// Groups of submissions proposed at once, at most.
const IN_FLIGHT: usize = 2;
/// Verified contracts remembered at most; beyond it the memory starts over.
const MAX_VERIFIED: usize = 200_000;
/// Signatures kept for one cut or head at most (the first of them that hold under the set
/// in force for its seq count, when it is joined).
const MAX_PARTS: usize = swarmvm_token::MAX_AUTHORITIES;
/// How long a proposal may wait for a leader.
const PROPOSE_LIMIT: Duration = Duration::from_secs(5);

/// A queue item on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
enum Wire {
    Contract(String),
    Registration(String),
    /// Base64 (standard).
    Module(String),
}

impl Wire {
    fn of(item: &Item) -> Self {
        match item {
            Item::Contract(t) => Self::Contract(t.clone()),
            Item::Registration(t) => Self::Registration(t.clone()),
            Item::Module(b) => Self::Module(base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }

    fn item(self) -> Option<Item> {
        Some(match self {
            Self::Contract(t) => Item::Contract(t),
            Self::Registration(t) => Item::Registration(t),
            Self::Module(b) => {
                Item::Module(base64::engine::general_purpose::STANDARD.decode(b).ok()?)
            }
        })
    }
}

/// A command of the replicas' log (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Cmd {
    Submit {
        items: Vec<Wire>,
    },
    Cut {
        seq: u64,
        payload: String,
        take: Vec<u64>,
        drop: Vec<(u64, String)>,
        /// The authority set in force for `seq` as the leader's ledger holds it (canonical
        /// JSON): a replica signs the cut only under that same set, and refusals of the cut
        /// are counted against it, so every replica decides an abandon alike whatever its own
        /// ledger holds. None in logs written before it.
        #[serde(default)]
        set: Option<String>,
    },
    /// A folder signed elsewhere with its K signatures (a rotation's, whose added keys sign
    /// it themselves) as the bundle for `seq`.
    Publish {
        seq: u64,
        manifest: String,
        tokens: Vec<String>,
        contracts: Vec<String>,
        /// Base64 (standard).
        modules: Vec<String>,
    },
    /// Queued items the leader found it cannot cut (a contract whose nonce another took, a
    /// registration the set no longer accepts), with why.
    Drop {
        drop: Vec<(u64, String)>,
    },
    /// A member's signature over a manifest payload for `seq`: the cut's, or (from a faulty
    /// member) another, which is evidence.
    ManifestSig {
        seq: u64,
        payload: String,
        part: PayloadSignature,
    },
    Head {
        seq: u64,
        payload: String,
    },
    /// A member's refusal of the cut for `seq`: an [`Envelope`] of kind `refusal` to every
    /// replica, its nonce the seq, signed by the member's key, whose body is a [`Refusal`].
    /// Refusals from K members that did not sign the cut abandon it.
    Refuse {
        seq: u64,
        refusal: Envelope,
    },
    /// A member's signature over a head payload for `seq`.
    HeadSig {
        seq: u64,
        payload: String,
        part: PayloadSignature,
    },
}

/// What a member's signed refusal of a cut says (the body of its `refusal` envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Refusal {
    /// The cut's seq.
    seq: u64,
    /// The SHA-256 of the cut's manifest payload: a refusal counts only against that cut.
    manifest: Hash32,
    /// Why the member will not sign it.
    why: String,
    /// The items it refuses, by arrival (none when it refuses the payload itself).
    items: Vec<u64>,
}

/// A cut committed to the log.
#[derive(Debug)]
struct OpenCut {
    payload: String,
    /// A folder signed elsewhere (a rotation): its whole manifest, K-signed already.
    manifest: Option<String>,
    items: Vec<(u64, Item)>,
    /// The first K valid signatures committed, in commit order.
    sigs: Vec<PayloadSignature>,
    /// The authority set in force for its seq, as the leader declared it.
    set: Option<swarmvm_token::AuthoritySet>,
    /// The members whose refusals are committed (none of them had signed it then): what
    /// each said, and its signed refusal.
    refusals: BTreeMap<String, (Refusal, Envelope)>,
    /// This replica signed it (or its signature is committed).
    signed: bool,
    /// This replica's own refusal of it is committed (counted or not): not sent again.
    my_refusal_committed: bool,
    /// When this replica last left it unsigned (for a cause that may pass, or with its
    /// refusal sent): checked again after [`RECHECK_REFUSED`].
    recheck_at: Option<tokio::time::Instant>,
    /// This replica applied it (or its ledger holds its seq).
    published: bool,
}

impl OpenCut {
    /// The set the cut was made under, or `fallback` for a cut that declares none.
    fn set_or<'a>(
        &'a self,
        fallback: &'a swarmvm_token::AuthoritySet,
    ) -> &'a swarmvm_token::AuthoritySet {
        self.set.as_ref().unwrap_or(fallback)
    }

    fn new(payload: String, manifest: Option<String>, items: Vec<(u64, Item)>) -> Self {
        Self {
            signed: manifest.is_some(),
            payload,
            manifest,
            items,
            sigs: Vec::new(),
            set: None,
            refusals: BTreeMap::new(),
            my_refusal_committed: false,
            recheck_at: None,
            published: false,
        }
    }
}

/// A head payload committed for a seq, and its signatures.
#[derive(Debug)]
struct HeadRound {
    payload: String,
    iat: u64,
    sigs: Vec<PayloadSignature>,
    signed: bool,
    offered: bool,
}

/// Whether a head (or a manifest), its seq, and the member who signed it.
type SeenKey = (bool, u64, String);
/// The first payload a member signed for a [`SeenKey`], and its signature.
type SeenFirst = (String, PayloadSignature);

/// An authority set from its canonical JSON (a cut's declared set).
fn parse_set(text: &str) -> Option<swarmvm_token::AuthoritySet> {
    let value = serde_json::from_str(text).ok()?;
    swarmvm_token::AuthoritySet::from_json(&value).ok()
}

/// What a replica brings to a command it takes besides the log: the authority set in force
/// and the network at its ledger, its own member id, and its ledger's last seq.
struct Taking<'a> {
    set: &'a swarmvm_token::AuthoritySet,
    network: &'a str,
    member: &'a str,
    applied: u64,
}

/// The state every replica derives from the log alone (and what it did about it).
#[derive(Debug, Default)]
pub(crate) struct Replicated {
    /// The log index of the last command taken.
    index: u64,
    queue: BTreeMap<u64, Item>,
    queued: HashMap<Hash32, u64>,
    dropped: HashMap<Hash32, String>,
    cuts: BTreeMap<u64, OpenCut>,
    /// The seq of the newest cut or folder taken (the next must be one more), none before the
    /// first.
    last_cut: Option<u64>,
    heads: BTreeMap<u64, HeadRound>,
    /// Each member's last seq whose manifest it signed (as committed).
    last_signed: BTreeMap<String, u64>,
    /// The first payload each member signed for a (head?, seq), with its signature.
    seen: HashMap<SeenKey, SeenFirst>,
    /// Members that signed two conflicting manifests or heads for one seq.
    equivocations: Vec<Equivocation>,
    /// The manifests (their payloads' SHA-256) of the cuts abandoned, by seq: signing one of
    /// them and then the seq's next cut is not evidence.
    abandoned: BTreeMap<u64, Vec<Hash32>>,
}

impl Replicated {
    fn contracts(&self) -> usize {
        self.queued.len()
    }

    /// Takes committed command `cmd` (log index `index`): a function of the log alone, but
    /// for the set in force and the ledger's last seq `at` gives.
    fn take(&mut self, index: u64, cmd: Cmd, at: &Taking<'_>) {
        let set = at.set;
        self.index = index;
        match cmd {
            Cmd::Submit { items } => {
                for (pos, wire) in items.into_iter().enumerate() {
                    let Some(item) = wire.item() else { continue };
                    self.enqueue((index << 16) | (pos as u64 & 0xffff), item);
                }
            }
            Cmd::Cut { seq, payload, take, drop, set: declared } => {
                if self.last_cut.is_some_and(|l| seq != l + 1) {
                    info!(seq, "a second cut for seq {seq} (or one out of order) is ignored");
                    return;
                }
                if take.iter().any(|a| !self.queue.contains_key(a)) {
                    warn!(seq, "a cut names items not queued; ignored");
                    return;
                }
                // A set declared must be one (none only in logs written before sets were).
                let declared = match declared.map(|s| parse_set(&s)) {
                    None => None,
                    Some(Some(set)) => Some(set),
                    Some(None) => {
                        warn!(seq, "a cut whose declared authority set cannot be read; ignored");
                        return;
                    }
                };
                let mut items = Vec::with_capacity(take.len());
                for a in take {
                    if let Some(item) = self.queue.remove(&a) {
                        if let Item::Contract(t) = &item {
                            self.queued.remove(&Hash32::digest(t.as_bytes()));
                        }
                        items.push((a, item));
                    }
                }
                drop_items(self, drop);
                let mut cut = OpenCut::new(payload, None, items);
                cut.set = declared;
                self.cuts.insert(seq, cut);
                self.last_cut = Some(seq);
                // Cuts the ledger holds are forgotten (the newest is kept by `last_cut`).
                let applied = at.applied;
                self.cuts.retain(|s, _| *s + 16 > applied);
            }
            Cmd::Publish { seq, manifest, tokens, contracts, modules } => {
                if self.last_cut.is_some_and(|l| seq != l + 1) {
                    info!(seq, "a folder for seq {seq} that another bundle took is ignored");
                    return;
                }
                let Some(payload) = manifest_payload_of(&manifest) else {
                    warn!(seq, "a published folder whose manifest cannot be read; ignored");
                    return;
                };
                let b64 = base64::engine::general_purpose::STANDARD;
                let mut items: Vec<(u64, Item)> =
                    tokens.into_iter().map(|t| (0, Item::Registration(t))).collect();
                for t in contracts {
                    // Taken by this bundle: no longer waiting for a cut.
                    if let Some(arrival) = self.queued.remove(&Hash32::digest(t.as_bytes())) {
                        self.queue.remove(&arrival);
                    }
                    items.push((0, Item::Contract(t)));
                }
                for m in modules {
                    let Ok(bytes) = b64.decode(m) else { return };
                    items.push((0, Item::Module(bytes)));
                }
                self.cuts.insert(seq, OpenCut::new(payload, Some(manifest), items));
                self.last_cut = Some(seq);
            }
            Cmd::Drop { drop } => drop_items(self, drop),
            Cmd::ManifestSig { seq, payload, part } => {
                if claim_u64(&payload, "seq") != Some(seq) {
                    return;
                }
                self.witness(Kind::Manifest, seq, &payload, &part, set);
                let Some(cut) = self.cuts.get_mut(&seq) else { return };
                if cut.payload != payload {
                    return;
                }
                // A member that refused the cut is not counted signing it: its signature is
                // evidence.
                // Under the set the cut was made under, so that every replica keeps alike.
                let cut_set = cut.set_or(set);
                if let Some((_, refusal)) = cut.refusals.get(&part.signer) {
                    if verify_payload_part(&part, Kind::Manifest, &payload, cut_set).is_ok() {
                        let refusal = refusal.clone();
                        self.refused_and_signed(seq, &refusal, &payload, &part);
                    }
                    return;
                }
                if !keep_part(&cut.sigs, &part, Kind::Manifest, &payload, cut_set) {
                    return;
                }
                if part.signer == at.member {
                    cut.signed = true;
                }
                let signer = part.signer.clone();
                cut.sigs.push(part);
                let newest = self.last_signed.entry(signer).or_insert(0);
                *newest = (*newest).max(seq);
            }
            Cmd::Refuse { seq, refusal } => self.refuse(seq, &refusal, at),
            Cmd::Head { seq, payload } => {
                let Some(iat) = claim_u64(&payload, "iat") else { return };
                if self.heads.get(&seq).is_some_and(|h| h.iat >= iat) {
                    return;
                }
                self.heads.insert(
                    seq,
                    HeadRound { payload, iat, sigs: Vec::new(), signed: false, offered: false },
                );
                while self.heads.len() > 4 {
                    self.heads.pop_first();
                }
            }
            Cmd::HeadSig { seq, payload, part } => {
                if claim_u64(&payload, "seq") != Some(seq) {
                    return;
                }
                self.witness(Kind::Head, seq, &payload, &part, set);
                let Some(round) = self.heads.get_mut(&seq) else { return };
                if round.payload != payload
                    || !keep_part(&round.sigs, &part, Kind::Head, &payload, set)
                {
                    return;
                }
                if part.signer == at.member {
                    round.signed = true;
                }
                round.sigs.push(part);
            }
        }
    }

    /// Queues `item` at `arrival`, unless it is a contract queued already.
    fn enqueue(&mut self, arrival: u64, item: Item) {
        if let Item::Contract(t) = &item {
            let id = Hash32::digest(t.as_bytes());
            if self.queued.contains_key(&id) {
                return;
            }
            self.queued.insert(id, arrival);
        }
        self.queue.insert(arrival, item);
    }

    /// Remembers why contract `id` was dropped (the newest [`MAX_DROPPED`]).
    fn note_dropped(&mut self, id: Hash32, why: String) {
        if self.dropped.len() >= MAX_DROPPED {
            self.dropped.clear();
        }
        self.dropped.insert(id, why);
    }

    /// Whether the cut whose manifest payload is `payload` was abandoned at `seq`.
    fn is_abandoned(&self, seq: u64, payload: &str) -> bool {
        self.abandoned
            .get(&seq)
            .is_some_and(|hashes| hashes.contains(&Hash32::digest(payload.as_bytes())))
    }

    /// Takes a member's committed refusal of the cut for `seq` (its envelope checked against
    /// `set`); abandons the cut once K members that had not signed it refused it.
    fn refuse(&mut self, seq: u64, refusal: &Envelope, at: &Taking<'_>) {
        let Taking { set, network, member, .. } = *at;
        let Some(cut) = self.cuts.get_mut(&seq) else { return };
        if cut.manifest.is_some() {
            return;
        }
        let hash = Hash32::digest(cut.payload.as_bytes());
        let expect =
            Expect { kind: REFUSAL, network, me: EVERY_REPLICA, nonce: Some(seq), from: None };
        // This replica's own refusal (its signature checked under its own set, which holds its
        // key) is in the log, counted or not: not sent again.
        if refusal.from == member
            && refusal
                .open::<Refusal>(expect, set)
                .is_ok_and(|b| b.seq == seq && b.manifest == hash)
        {
            cut.my_refusal_committed = true;
        }
        // Counted against the set the cut was made under, so that every replica counts alike.
        let cut_set = cut.set_or(set).clone();
        let set = &cut_set;
        let body: Refusal = match refusal.open(expect, set) {
            Ok(body) => body,
            Err(e) => {
                warn!(seq, "a refusal that does not open: {e}");
                return;
            }
        };
        if body.seq != seq || hash != body.manifest {
            return;
        }
        let signed = cut.sigs.iter().find(|p| {
            p.signer == refusal.from
                && verify_payload_part(p, Kind::Manifest, &cut.payload, set).is_ok()
        });
        if let Some(part) = signed.cloned() {
            // It signed the cut before: its refusal is not counted, and is evidence.
            let payload = cut.payload.clone();
            self.refused_and_signed(seq, refusal, &payload, &part);
            return;
        }
        cut.refusals.entry(refusal.from.clone()).or_insert((body, refusal.clone()));
        let k = set.threshold();
        if cut.refusals.len() >= k
            && first_k(&cut.sigs, Kind::Manifest, &cut.payload, set).len() < k
            && self.last_cut == Some(seq)
        {
            self.abandon(seq);
        }
    }

    /// Keeps the evidence of a member that both refused and signed the cut for `seq`: no
    /// honest replica does (it keeps its decision on disk before sending either).
    fn refused_and_signed(
        &mut self,
        seq: u64,
        refusal: &Envelope,
        payload: &str,
        part: &PayloadSignature,
    ) {
        let first = serde_json::to_string(refusal).unwrap_or_default();
        self.keep_evidence(seq, &part.signer, "refusal", first, compact(payload, part));
    }

    /// Keeps evidence of `kind` against `member` for `seq` (once a seq, member and kind):
    /// the two things it signed that no honest member signs both of.
    fn keep_evidence(&mut self, seq: u64, member: &str, kind: &str, first: String, second: String) {
        if self.equivocations.iter().any(|e| e.seq == seq && e.member == member && e.kind == kind) {
            return;
        }
        warn!(seq, member, kind, "evidence: a member signed two conflicting things for seq {seq}");
        self.equivocations.push(Equivocation {
            seq,
            member: member.to_owned(),
            kind: kind.to_owned(),
            first,
            second,
            seen_at: unix_now(),
        });
    }

    /// Gives up the cut for `seq`: at most K - 1 members that refused it can still sign it,
    /// and honest ones never do, so it never gathers K signatures unless 2K - n members are
    /// faulty. The items a refusal named are dropped with its reason; the others go back to
    /// the queue where they were, and the seq is cut again.
    fn abandon(&mut self, seq: u64) {
        let Some(cut) = self.cuts.remove(&seq) else { return };
        let mut refused: HashMap<u64, String> = HashMap::new();
        for (member, (body, _)) in &cut.refusals {
            for a in &body.items {
                refused.entry(*a).or_insert_with(|| {
                    format!("refused at the cut for seq {seq} by member {member}: {}", body.why)
                });
            }
        }
        let mut dropped = Vec::new();
        for (arrival, item) in cut.items {
            match refused.remove(&arrival) {
                Some(why) => {
                    if let Item::Contract(t) = &item {
                        self.note_dropped(Hash32::digest(t.as_bytes()), why);
                    }
                    dropped.push(arrival);
                }
                // Unless sent again while its cut was open: queued already.
                None => self.enqueue(arrival, item),
            }
        }
        self.last_cut = seq.checked_sub(1).filter(|s| *s > 0);
        let given_up = self.abandoned.entry(seq).or_default();
        let hash = Hash32::digest(cut.payload.as_bytes());
        if !given_up.contains(&hash) {
            given_up.push(hash);
            if given_up.len() > ABANDONED_PER_SEQ {
                given_up.remove(0);
            }
        }
        while self.abandoned.first_key_value().is_some_and(|(s, _)| *s + ABANDONED_KEPT <= seq) {
            self.abandoned.pop_first();
        }
        let why: Vec<&str> = cut.refusals.values().map(|(body, _)| body.why.as_str()).collect();
        warn!(
            seq,
            refused_by = cut.refusals.len(),
            dropped = dropped.len(),
            "the cut for seq {seq} is abandoned and cut again: {}",
            why.join("; ")
        );
    }

    /// Remembers a member's valid signature over a payload for `seq`; a second one over a
    /// conflicting payload (another manifest; a head naming another bundle or root) is
    /// evidence, kept with both signatures.
    fn witness(
        &mut self,
        kind: Kind,
        seq: u64,
        payload: &str,
        part: &PayloadSignature,
        set: &swarmvm_token::AuthoritySet,
    ) {
        if verify_payload_part(part, kind, payload, set).is_err()
            || (kind == Kind::Manifest && self.is_abandoned(seq, payload))
        {
            return;
        }
        let key = (kind == Kind::Head, seq, part.signer.clone());
        if kind == Kind::Manifest
            && self.seen.get(&key).is_some_and(|(first, _)| self.is_abandoned(seq, first))
        {
            self.seen.remove(&key);
        }
        let Some((first, first_part)) = self.seen.get(&key) else {
            self.seen.insert(key, (payload.to_owned(), part.clone()));
            // Forgotten once far behind.
            if self.seen.len() > 4096 {
                let newest = self.seen.keys().map(|k| k.1).max().unwrap_or(0);
                self.seen.retain(|k, _| k.1 + 64 > newest);
            }
            return;
        };
        if first == payload || !conflicting(kind, first, payload) {
            return;
        }
        let name = if kind == Kind::Head { "head" } else { "manifest" };
        let first = compact(first, first_part);
        self.keep_evidence(seq, &part.signer, name, first, compact(payload, part));
    }
}

/// The replicated state as a snapshot holds it (JSON): what a replica derives from the log,
/// without what it did about it (whether it signed, offered or published), which it finds
/// again from the signatures committed and its own ledger.
#[derive(Debug, Serialize, Deserialize)]
struct Image {
    index: u64,
    queue: Vec<(u64, Wire)>,
    dropped: Vec<(Hash32, String)>,
    cuts: Vec<(u64, CutImage)>,
    last_cut: Option<u64>,
    heads: Vec<(u64, HeadImage)>,
    last_signed: BTreeMap<String, u64>,
    seen: Vec<(SeenKey, SeenFirst)>,
    equivocations: Vec<Equivocation>,
    #[serde(default)]
    abandoned: Vec<(u64, Vec<Hash32>)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CutImage {
    payload: String,
    manifest: Option<String>,
    items: Vec<(u64, Wire)>,
    sigs: Vec<PayloadSignature>,
    /// The set in force for its seq, as the leader declared it (canonical JSON).
    #[serde(default)]
    set: Option<String>,
    /// The committed refusals, each a member's signed `refusal` message.
    #[serde(default)]
    refusals: Vec<Envelope>,
}

#[derive(Debug, Serialize, Deserialize)]
struct HeadImage {
    payload: String,
    iat: u64,
    sigs: Vec<PayloadSignature>,
}

impl Replicated {
    fn image(&self) -> Image {
        Image {
            index: self.index,
            queue: self.queue.iter().map(|(a, i)| (*a, Wire::of(i))).collect(),
            dropped: self.dropped.iter().map(|(id, why)| (*id, why.clone())).collect(),
            cuts: self
                .cuts
                .iter()
                .map(|(seq, c)| {
                    let items = c.items.iter().map(|(a, i)| (*a, Wire::of(i))).collect();
                    let refusals = c.refusals.values().map(|(_, e)| e.clone()).collect();
                    let cut = CutImage {
                        payload: c.payload.clone(),
                        manifest: c.manifest.clone(),
                        items,
                        sigs: c.sigs.clone(),
                        set: c.set.as_ref().map(|s| s.canonical().to_owned()),
                        refusals,
                    };
                    (*seq, cut)
                })
                .collect(),
            last_cut: self.last_cut,
            heads: self
                .heads
                .iter()
                .map(|(seq, h)| {
                    let head =
                        HeadImage { payload: h.payload.clone(), iat: h.iat, sigs: h.sigs.clone() };
                    (*seq, head)
                })
                .collect(),
            last_signed: self.last_signed.clone(),
            seen: self.seen.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            equivocations: self.equivocations.clone(),
            abandoned: self.abandoned.iter().map(|(s, h)| (*s, h.clone())).collect(),
        }
    }

    /// The state an image holds, as replica `member` finds it: its own signatures committed
    /// count as signed; nothing counts as offered or published yet.
    fn restored(image: Image, member: &str) -> Option<Self> {
        let items = |wires: Vec<(u64, Wire)>| -> Option<Vec<(u64, Item)>> {
            wires.into_iter().map(|(a, w)| w.item().map(|i| (a, i))).collect()
        };
        let queue: BTreeMap<u64, Item> = items(image.queue)?.into_iter().collect();
        let queued = queue
            .iter()
            .filter_map(|(a, i)| match i {
                Item::Contract(t) => Some((Hash32::digest(t.as_bytes()), *a)),
                _ => None,
            })
            .collect();
        let mut cuts = BTreeMap::new();
        for (seq, c) in image.cuts {
            let mut cut = OpenCut::new(c.payload, c.manifest, items(c.items)?);
            cut.signed |= c.sigs.iter().any(|p| p.signer == member);
            cut.sigs = c.sigs;
            cut.set = c.set.and_then(|s| parse_set(&s));
            // Opened when they were taken; read again here.
            for e in c.refusals {
                match serde_json::from_str(&e.body) {
                    Ok(body) => {
                        cut.my_refusal_committed |= e.from == member;
                        cut.refusals.insert(e.from.clone(), (body, e));
                    }
                    Err(err) => warn!(seq, "a refusal in the snapshot cannot be read: {err}"),
                }
            }
            cuts.insert(seq, cut);
        }
        let heads = image
            .heads
            .into_iter()
            .map(|(seq, h)| {
                let signed = h.sigs.iter().any(|p| p.signer == member);
                let round = HeadRound {
                    payload: h.payload,
                    iat: h.iat,
                    sigs: h.sigs,
                    signed,
                    offered: false,
                };
                (seq, round)
            })
            .collect();
        Some(Self {
            index: image.index,
            queue,
            queued,
            dropped: image.dropped.into_iter().collect(),
            cuts,
            last_cut: image.last_cut,
            heads,
            last_signed: image.last_signed,
            seen: image.seen.into_iter().collect(),
            equivocations: image.equivocations,
            abandoned: image.abandoned.into_iter().collect(),
        })
    }
}

/// The replicated state a replica's cluster snapshots, shared before the replica exists (the
/// cluster starts first).
pub(crate) type SharedState = Arc<Mutex<Replicated>>;

/// A new, empty replicated state.
pub(crate) fn shared_state() -> SharedState {
    Arc::new(Mutex::new(Replicated::default()))
}

/// The cluster's image source over `state`: its index and its image, as JSON (copied under
/// the lock, written out of it).
pub(crate) fn image_source(state: &SharedState) -> ImageSource {
    let state = state.clone();
    Arc::new(move || {
        let image = state.lock().image();
        let bytes = serde_json::to_vec(&image).unwrap_or_default();
        (image.index, bytes)
    })
}

/// Whether a committed signature part is kept beside `parts`: not the same signature again,
/// room left, and not one that fails under a signer this replica knows. (One by a signer it
/// does not know yet is kept: a rotation it has not applied may add it; whatever is kept,
/// [`first_k`] counts only what holds under the set for the seq, so every replica joins the
/// same signatures.)
fn keep_part(
    parts: &[PayloadSignature],
    part: &PayloadSignature,
    kind: Kind,
    payload: &str,
    set: &swarmvm_token::AuthoritySet,
) -> bool {
    if parts.len() >= 2 * MAX_PARTS || parts.iter().any(|p| p == part) {
        return false;
    }
    !set.contains(&part.signer) || verify_payload_part(part, kind, payload, set).is_ok()
}

/// The first `set.threshold()` of `parts` (in commit order) that hold over `payload` under
/// `set`: the set in force for the seq they are for, so every replica, its ledger at that
/// point, picks the same ones.
fn first_k(
    parts: &[PayloadSignature],
    kind: Kind,
    payload: &str,
    set: &swarmvm_token::AuthoritySet,
) -> Vec<PayloadSignature> {
    let mut signers = HashSet::new();
    parts
        .iter()
        .filter(|p| verify_payload_part(p, kind, payload, set).is_ok())
        .filter(|p| signers.insert(p.signer.clone()))
        .take(set.threshold())
        .cloned()
        .collect()
}

/// Whether two payloads of `kind` for one seq conflict: two manifests always; two heads when
/// they name another bundle or root (a head signed again later only moves its time).
fn conflicting(kind: Kind, a: &str, b: &str) -> bool {
    if kind != Kind::Head {
        return true;
    }
    let (Some(a), Some(b)) = (payload_claims(a), payload_claims(b)) else { return true };
    a.get("bundle") != b.get("bundle") || a.get("state_root") != b.get("state_root")
}

/// One signature over a payload as the compact JWS it stands for.
fn compact(payload: &str, part: &PayloadSignature) -> String {
    format!("{}.{payload}.{}", part.protected, part.signature)
}

/// The test hook's second signature: over the payload with its `iat` moved (a manifest) or
/// its root changed (a head), as a faulty member would sign.
fn forged_part(key: &Wallet, kind: Kind, payload: &str) -> Option<(String, PayloadSignature)> {
    let mut claims = payload_claims(payload)?;
    if kind == Kind::Head {
        claims.insert("state_root".into(), Hash32::digest(b"forged").to_hex().into());
    } else {
        let iat = claims.get("iat")?.as_u64()?;
        claims.insert("iat".into(), (iat + 1).into());
    }
    let bytes = serde_json::to_vec(&claims).ok()?;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let part = sign_payload_part(key, kind, &forged).ok()?;
    Some((forged, part))
}

struct Submission {
    items: Vec<Item>,
    reply: oneshot::Sender<Result<(), SubmitError>>,
}

/// How a replica runs besides its cluster.
#[derive(Debug)]
pub(crate) struct ReplicaOptions {
    pub(crate) key: Wallet,
    pub(crate) cut_every: Duration,
    pub(crate) cut_at: usize,
    pub(crate) max_queue: usize,
    pub(crate) max_head_age: Duration,
    pub(crate) rules: Rules,
    /// Test hook: sign a second, conflicting manifest and head for every seq, as a faulty
    /// member would.
    pub(crate) fault: bool,
    /// Test hook: as leader, cut what is queued without checking it, and sign its own cuts
    /// unchecked.
    pub(crate) fault_unchecked_cuts: bool,
    /// What it decided about cuts before (read from the data folder).
    pub(crate) decisions: Decisions,
}

/// One authority replica.
pub(crate) struct Replica {
    cluster: Cluster,
    key: Wallet,
    member: String,
    cut_every: Duration,
    cut_at: usize,
    max_queue: usize,
    max_head_age: Duration,
    rules: Rules,
    fault: bool,
    fault_unchecked_cuts: bool,
    /// What it decided about each cut (signed or refused), kept on disk.
    decisions: Decisions,
    pub(crate) wallet_keys: crate::submit::KeyCache,
    state: SharedState,
    wake: Notify,
    intake: mpsc::Sender<Submission>,
    intake_rx: Mutex<Option<mpsc::Receiver<Submission>>>,
    /// When this replica (as leader) last proposed a cut, and a head (with its seq).
    last_cut: Mutex<Option<tokio::time::Instant>>,
    last_head: Mutex<Option<(u64, tokio::time::Instant)>>,
    /// The authority set in force last seen (its canonical JSON).
    set_seen: Mutex<Option<String>>,
    /// The last cut this replica could not apply, and why (said once).
    publish_failed: Mutex<Option<(u64, String)>>,
    /// Contracts whose signatures this replica checked, until the bundle holding them is
    /// applied (taken out for the apply).
    verified: Mutex<HashMap<Hash32, Arc<swarmvm_token::VerifiedContract>>>,
    /// Under rules 4: contract signatures at submission, checked in batches.
    pub(crate) batcher: Option<crate::batcher::Batcher>,
    batch_loop: Mutex<Option<crate::batcher::BatchLoop>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("member", &self.member).finish_non_exhaustive()
    }
}

impl Replica {
    pub(crate) fn new(cluster: Cluster, options: ReplicaOptions, state: SharedState) -> Arc<Self> {
        let (intake, rx) = mpsc::channel(GROUP * 4);
        let (batcher, batch_loop) = if options.rules.has(Rules::V4) {
            let (b, l) = crate::batcher::Batcher::new();
            (Some(b), Some(l))
        } else {
            (None, None)
        };
        Arc::new(Self {
            member: options.key.id().to_string(),
            cluster,
            key: options.key,
            cut_every: options.cut_every.max(Duration::from_millis(10)),
            cut_at: options.cut_at.max(1),
            max_queue: options.max_queue.max(1),
            max_head_age: options.max_head_age,
            rules: options.rules,
            fault: options.fault,
            fault_unchecked_cuts: options.fault_unchecked_cuts,
            decisions: options.decisions,
            wallet_keys: crate::submit::KeyCache::default(),
            state,
            wake: Notify::new(),
            intake,
            intake_rx: Mutex::new(Some(rx)),
            last_cut: Mutex::new(None),
            last_head: Mutex::new(None),
            set_seen: Mutex::new(None),
            publish_failed: Mutex::new(None),
            verified: Mutex::new(HashMap::new()),
            batcher,
            batch_loop: Mutex::new(batch_loop),
        })
    }

    /// The cluster this replica is part of.
    pub(crate) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Items waiting for a cut.
    pub(crate) fn queued(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Whether contract `id` waits for a cut.
    pub(crate) fn is_queued(&self, id: &Hash32) -> bool {
        self.state.lock().queued.contains_key(id)
    }

    /// Why contract `id` was dropped at a cut, if it was.
    pub(crate) fn dropped(&self, id: &Hash32) -> Option<String> {
        self.state.lock().dropped.get(id).cloned()
    }

    /// Publishes a folder signed elsewhere (its manifest verified by the caller) as bundle
    /// `seq` through the log; returns once it is committed.
    pub(crate) async fn publish(
        &self,
        seq: u64,
        manifest: String,
        tokens: Vec<String>,
        contracts: Vec<String>,
        modules: &[Vec<u8>],
    ) -> Result<(), SubmitError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let modules = modules.iter().map(|m| b64.encode(m)).collect();
        self.propose(&Cmd::Publish { seq, manifest, tokens, contracts, modules })
            .await
            .map_err(SubmitError::Unavailable)
    }

    /// Members seen signing two conflicting manifests or heads for one seq.
    pub(crate) fn equivocations(&self) -> Vec<Equivocation> {
        self.state.lock().equivocations.clone()
    }

    /// The cluster's status, with each member's last signed seq.
    pub(crate) fn status(&self) -> (ClusterStatus, BTreeMap<String, u64>) {
        (self.cluster.status(), self.state.lock().last_signed.clone())
    }

    /// Queues `items` (checked already): 202 once they are in a majority's log.
    pub(crate) async fn submit(&self, items: Vec<Item>) -> Result<(), SubmitError> {
        {
            let st = self.state.lock();
            if st.queue.len() + items.len() > self.max_queue {
                return Err(SubmitError::Full { max: self.max_queue, retry_after: 1 });
            }
            for item in &items {
                if let Item::Contract(t) = item {
                    let id = Hash32::digest(t.as_bytes());
                    if st.queued.contains_key(&id) {
                        return Err(SubmitError::Duplicate {
                            id: id.to_hex(),
                            state: "queued".into(),
                        });
                    }
                }
            }
        }
        let (reply, answer) = oneshot::channel();
        self.intake.try_send(Submission { items, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                SubmitError::Full { max: self.max_queue, retry_after: 1 }
            }
            mpsc::error::TrySendError::Closed(_) => {
                SubmitError::Unavailable("the replica is stopping".into())
            }
        })?;
        answer
            .await
            .unwrap_or_else(|_| Err(SubmitError::Unavailable("the replica is stopping".into())))
    }

    /// Starts the replica's tasks: the submission writer, the log reader (first the commands
    /// applied before a restart), and the worker that signs, publishes and (as leader) cuts.
    pub(crate) fn run(
        self: &Arc<Self>,
        node: &Core,
        before: Vec<Applied>,
        committed: mpsc::UnboundedReceiver<Applied>,
    ) {
        if let Some(batches) = self.batch_loop.lock().take() {
            node.tasks.spawn(batches.run_until(node.tasks.stopping()));
        }
        if let Some(rx) = self.intake_rx.lock().take() {
            let me = self.clone();
            let stop = node.tasks.stopping();
            node.tasks.spawn(async move { me.write_loop(rx, stop).await });
        }
        let (me, n) = (self.clone(), node.clone());
        node.tasks.spawn(async move { me.read_loop(n, before, committed).await });
        let (me, n) = (self.clone(), node.clone());
        node.tasks.spawn(async move { me.work_loop(n).await });
    }

    /// The bundles this replica must fetch before it can apply the next cut: `(first, end)`
    /// when its ledger is at `last` and the replicated state holds no cut for `last + 1`
    /// though the replicas cut past it. That happens only after a snapshot restored: the
    /// log that held those cuts is compacted, and an image holds only the cuts less than 16
    /// bundles behind the ledger of the replica that made it.
    pub(crate) fn gap(&self, last: u64) -> Option<(u64, u64)> {
        let st = self.state.lock();
        let newest = st.last_cut?;
        if newest <= last || st.cuts.contains_key(&(last + 1)) {
            return None;
        }
        let end = st.cuts.range(last + 1..).next().map_or(newest, |(s, _)| s - 1);
        Some((last + 1, end))
    }

    /// The HTTP API URLs of the other members' replicas.
    pub(crate) fn others(&self) -> Vec<String> {
        self.cluster
            .status()
            .members
            .into_iter()
            .filter(|m| m.member != self.member)
            .map(|m| m.url)
            .collect()
    }

    async fn write_loop(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Submission>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        while let Some(batch) = crate::tasks::next_group(&mut rx, &mut stop, GROUP).await {
            let items: Vec<Wire> =
                batch.iter().flat_map(|s| s.items.iter().map(Wire::of)).collect();
            // A few groups in flight at once: each waits a round trip to a majority.
            let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
            let me = self.clone();
            tokio::spawn(async move {
                let outcome = me.propose(&Cmd::Submit { items }).await;
                for s in batch {
                    let _ = s.reply.send(outcome.clone().map_err(SubmitError::Unavailable));
                }
                drop(permit);
            });
        }
    }

    async fn propose(&self, cmd: &Cmd) -> Result<(), String> {
        let text = serde_json::to_string(cmd).map_err(|e| e.to_string())?;
        self.cluster
            .propose(Command(text), PROPOSE_LIMIT)
            .await
            .map(|_| ())
            .map_err(|e| format!("the replicas did not take it: {e}"))
    }

    async fn read_loop(
        self: Arc<Self>,
        node: Core,
        before: Vec<Applied>,
        mut committed: mpsc::UnboundedReceiver<Applied>,
    ) {
        for c in before {
            self.apply(&node, c);
        }
        self.wake.notify_one();
        let cut_at = self.cut_at;
        let mut stop = node.tasks.stopping();
        loop {
            let next = tokio::select! {
                c = committed.recv() => c,
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(c) = next else { break };
            // Submissions wake the worker only once a cut is due by count: it looks at the
            // queue every turn anyway, and a wake per submission would keep it spinning.
            if self.apply(&node, c) || self.state.lock().contracts() >= cut_at {
                self.wake.notify_one();
            }
        }
    }

    /// Applies what the log gives to the replicated state: a committed command (a function of
    /// the log alone), or a snapshot's image that replaces the state. True when the worker has
    /// something new to do (anything but a submission).
    fn apply(&self, node: &Core, applied: Applied) -> bool {
        let c = match applied {
            Applied::Command(c) => c,
            Applied::Restore { index, image } => {
                self.restore(index, &image);
                return true;
            }
        };
        if c.index <= self.state.lock().index {
            // Held by the image restored already.
            return false;
        }
        let cmd: Cmd = match serde_json::from_str(&c.command.0) {
            Ok(cmd) => cmd,
            Err(e) => {
                warn!(index = c.index, "a log entry that is not a replica command: {e}");
                self.state.lock().index = c.index;
                return false;
            }
        };
        let wakes = !matches!(cmd, Cmd::Submit { .. });
        self.apply_command(node, &c, cmd);
        wakes
    }

    /// Replaces the replicated state with a snapshot's image (as of log index `index`).
    fn restore(&self, index: u64, image: &[u8]) {
        let restored = serde_json::from_slice::<Image>(image)
            .ok()
            .and_then(|i| Replicated::restored(i, &self.member));
        match restored {
            Some(state) if state.index == index => {
                info!(
                    index,
                    queued = state.queue.len(),
                    "replicated state restored from a snapshot"
                );
                *self.state.lock() = state;
            }
            // Only images this replica's kind made are kept by the cluster: one that cannot be
            // read is a bug, said loudly; the state stays as it was.
            _ => tracing::error!(index, "a snapshot's image cannot be read; the state is kept"),
        }
    }

    fn apply_command(&self, node: &Core, c: &Committed, cmd: Cmd) {
        // The set in force and the last seq from one read of the ledger (the network's first
        // set and none when it cannot be read, as `Applier::in_force` and `last_seq` give).
        let network = node.applier.network();
        // A submission is only queued: it needs neither, and it is most of the log.
        let read = if matches!(cmd, Cmd::Submit { .. }) { None } else { node.applier.snapshot() };
        let (applied, set) = match read {
            Some(s) => (
                s.last_bundle().map_or(0, |b| b.seq),
                swarmvm_bundle::set_in_force(&s, network).ok(),
            ),
            None => (0, None),
        };
        let set = set.unwrap_or_else(|| network.genesis().clone());
        let at = Taking { set: &set, network: network.id(), member: &self.member, applied };
        // Under the same lock as the change: an image holds a command exactly when its index
        // says so.
        self.state.lock().take(c.index, cmd, &at);
    }

    async fn work_loop(self: Arc<Self>, node: Core) {
        let mut stop = node.tasks.stopping();
        let mut applied = node.applier.subscribe();
        let mut leader = self.cluster.leader_watch();
        let tick = self.cut_every.min(Duration::from_millis(200));
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                _ = applied.changed() => {}
                _ = leader.changed() => {}
                () = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            self.follow_set(&node).await;
            self.sign_cut(&node).await;
            self.publish_cut(&node).await;
            self.sign_head(&node).await;
            self.offer_heads(&node);
            if self.cluster.is_leader() {
                self.lead(&node).await;
            }
        }
    }

    /// After a rotation applied: messages are taken from the members of the new set only,
    /// the leader removes the replicas of members it dropped (members it adds join by
    /// asking), and a replica whose own key was rotated out stops ordering.
    async fn follow_set(&self, node: &Core) {
        let set = node.applier.authorities();
        let changed = {
            let mut known = self.set_seen.lock();
            let canonical = set.canonical().to_owned();
            let changed = known.as_deref() != Some(canonical.as_str());
            *known = Some(canonical);
            changed
        };
        if changed {
            self.cluster.set_authorities(set.clone());
            if !set.contains(&self.member) {
                warn!("this replica's key left the authority set in force: it stops ordering");
                self.cluster.shutdown().await;
                return;
            }
        }
        if self.cluster.is_leader()
            && let Err(e) = self.cluster.retain_members(&set).await
        {
            warn!("cannot remove the replicas of members the rotation dropped: {e}");
        }
    }

    /// Signs the next cut once this replica's ledger is at its parent: the payload rebuilt
    /// from the log's items and its own ledger and compared byte for byte, the
    /// items checked as the leader checked them (at the cut's `iat`, so the answer does not
    /// change with time). A cut found wrong is refused for good. Either decision is kept on
    /// disk ([`Decisions`]) before it is sent, and sent again until it is committed: this
    /// replica never both signs and refuses a cut, nor signs two manifests for a seq unless
    /// the log abandoned the first.
    async fn sign_cut(&self, node: &Core) {
        // The ledger's point and the set in force there, read together; a ledger that cannot
        // be read is asked again at the next turn (never taken for the network's first set).
        let Some((parent, set)) = Self::ledger_point(node) else { return };
        let seq = parent.map_or(0, |p| p.seq) + 1;
        let (payload, items, other_set, committed_before, abandoned) = {
            let st = self.state.lock();
            let Some(cut) = st.cuts.get(&seq) else { return };
            if cut.signed
                || cut.recheck_at.is_some_and(|at| at.elapsed() < RECHECK_REFUSED)
                || cut.manifest.is_some()
                || cut.refusals.contains_key(&self.member)
                || cut.my_refusal_committed
                || first_k(&cut.sigs, Kind::Manifest, &cut.payload, &set).len() >= set.threshold()
            {
                return;
            }
            // What this replica's committed signature for this seq was over, if any.
            let before = st.seen.get(&(false, seq, self.member.clone())).map(|(p, _)| p.clone());
            let abandoned = st.abandoned.get(&seq).cloned().unwrap_or_default();
            // Declared under another set than the one in force here.
            let other_set = cut.set.as_ref().is_some_and(|d| d.canonical() != set.canonical());
            (cut.payload.clone(), cut.items.clone(), other_set, before, abandoned)
        };
        let hash = Hash32::digest(payload.as_bytes());
        match self.decisions.get(seq, hash) {
            Some(Decision::Signed) => return self.send_signature(seq, payload).await,
            Some(Decision::Refused { why, items }) => {
                return self.send_refusal(node, seq, hash, why, items).await;
            }
            None => {}
        }
        // An honest member signs one manifest a seq: two cuts it signed could both reach K,
        // and followers would see two bundles for the seq. One the log abandoned does not
        // count.
        let signed_other = committed_before
            .map(|p| Hash32::digest(p.as_bytes()))
            .into_iter()
            .chain(self.decisions.signed_for(seq))
            .any(|h| h != hash && !abandoned.contains(&h));
        let own_unchecked = self.fault_unchecked_cuts
            && payload_claims(&payload)
                .is_some_and(|c| c.get("iss").and_then(|v| v.as_str()) == Some(&self.member));
        let checked = if signed_other {
            Err(NotSigned::Refused {
                why: "this replica signed another manifest for this seq".into(),
                items: Vec::new(),
            })
        } else if other_set {
            Err(NotSigned::Refused {
                why: "it is made under another authority set than the one in force here".into(),
                items: Vec::new(),
            })
        } else if own_unchecked {
            // The test hook: a leader whose check is wrong signs its own cut unchecked.
            Ok(())
        } else {
            self.check_cut(node, seq, &set, &payload, &items)
        };
        // Abandoned while it was checked: nothing to decide.
        if self.state.lock().cuts.get(&seq).is_none_or(|c| c.payload != payload) {
            return;
        }
        let decision = match checked {
            Err(NotSigned::Later) => return,
            Err(NotSigned::Retry(why)) => {
                warn!(seq, "this replica does not sign the cut for seq {seq} yet: {why}");
                self.recheck_later(seq);
                return;
            }
            Err(NotSigned::Refused { why, items }) => Decision::Refused { why, items },
            Ok(()) => Decision::Signed,
        };
        if let Err(e) = self.decisions.decide(seq, hash, decision.clone()) {
            // Sent only once kept: a restart could otherwise take the other decision.
            warn!(seq, "cannot keep this replica's decision about the cut for seq {seq}: {e}");
            self.recheck_later(seq);
            return;
        }
        match decision {
            Decision::Signed => self.send_signature(seq, payload).await,
            Decision::Refused { why, items } => {
                warn!(seq, "this replica refuses the cut for seq {seq}: {why}");
                self.send_refusal(node, seq, hash, why, items).await;
            }
        }
    }

    /// The last bundle of this replica's ledger (the next cut's parent) and the authority
    /// set in force for the next seq, read from one snapshot; none while the ledger cannot
    /// be read (never the network's first set by default).
    fn ledger_point(
        node: &Core,
    ) -> Option<(Option<swarmvm_ledger::BundlePosition>, swarmvm_token::AuthoritySet)> {
        let snapshot = node.applier.snapshot()?;
        let set = swarmvm_bundle::set_in_force(&snapshot, node.applier.network()).ok()?;
        Some((snapshot.last_bundle(), set))
    }

    /// Checks the cut for `seq` again only after [`RECHECK_REFUSED`].
    fn recheck_later(&self, seq: u64) {
        if let Some(cut) = self.state.lock().cuts.get_mut(&seq) {
            cut.recheck_at = Some(tokio::time::Instant::now());
        }
    }

    /// Signs the cut for `seq` (decided) and sends the signature through the log; sent again
    /// at the next turn when it could not be.
    async fn send_signature(&self, seq: u64, payload: String) {
        let part = match sign_payload_part(&self.key, Kind::Manifest, &payload) {
            Ok(part) => part,
            Err(e) => {
                warn!(seq, "cannot sign the cut for seq {seq}: {}", one_line(&e));
                return;
            }
        };
        if let Some(cut) = self.state.lock().cuts.get_mut(&seq) {
            cut.signed = true;
        }
        let forged = self.fault.then(|| forged_part(&self.key, Kind::Manifest, &payload));
        if let Err(e) = self.propose(&Cmd::ManifestSig { seq, payload, part }).await {
            warn!(seq, "cannot send this replica's manifest signature: {e}");
            if let Some(cut) = self.state.lock().cuts.get_mut(&seq) {
                cut.signed = false;
            }
        }
        if let Some(Some((payload, part))) = forged {
            let _ = self.propose(&Cmd::ManifestSig { seq, payload, part }).await;
        }
    }

    /// Sends this replica's refusal (decided) of the cut for `seq`, whose manifest payload
    /// hashes to `manifest`, signed, through the log; sent again after [`RECHECK_REFUSED`]
    /// until it is committed.
    async fn send_refusal(
        &self,
        node: &Core,
        seq: u64,
        manifest: Hash32,
        why: String,
        items: Vec<u64>,
    ) {
        self.recheck_later(seq);
        let body = Refusal { seq, manifest, why, items };
        let sealed = serde_json::to_string(&body).map_err(|e| e.to_string()).and_then(|body| {
            let network = node.applier.network().id().to_owned();
            let term = self.cluster.status().term;
            Envelope::seal(&self.key, REFUSAL, &network, EVERY_REPLICA, term, seq, body)
                .map_err(|e| e.to_string())
        });
        let result = match sealed {
            Ok(refusal) => self.propose(&Cmd::Refuse { seq, refusal }).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!(seq, "cannot send this replica's refusal: {e}");
        }
    }

    /// What a cut's payload must be on this replica: the payload rebuilt from its items with
    /// the leader's `iss`, `iat` and `rules` (each checked).
    fn check_cut(
        &self,
        node: &Core,
        seq: u64,
        set: &swarmvm_token::AuthoritySet,
        payload: &str,
        items: &[(u64, Item)],
    ) -> Result<(), NotSigned> {
        let claims = payload_claims(payload).ok_or("the payload is not a manifest's")?;
        let issuer = claims.get("iss").and_then(|v| v.as_str()).ok_or("no iss")?.to_owned();
        let iat = claims.get("iat").and_then(serde_json::Value::as_u64).ok_or("no iat")?;
        let rules = match claims.get("rules").and_then(serde_json::Value::as_u64) {
            None => Rules::V1,
            Some(n) => Rules::new(n).map_err(|e| NotSigned::from(e.to_string()))?,
        };
        if !set.contains(&issuer) {
            return Err(format!("its iss {issuer} is not a member").into());
        }
        let now = unix_now();
        // A leader's clock ahead of this one's by more than the skew is refused; a cut from
        // the past is not (a replica catching up signs cuts made long ago).
        if iat > now + MAX_CLOCK_SKEW {
            return Err(NotSigned::Retry(format!(
                "its iat {iat} is more than {MAX_CLOCK_SKEW} s ahead of this clock ({now})"
            )));
        }
        let refused = self.refusals(node, seq, set, items, iat).map_err(NotSigned::Retry)?;
        if let Some((first, why)) = refused.first() {
            let why = match refused.len() {
                1 => format!("item {first}: {why}"),
                n => format!("item {first}: {why} (and {} more)", n - 1),
            };
            return Err(NotSigned::Refused {
                why,
                items: refused.iter().map(|(a, _)| *a).collect(),
            });
        }
        let mine = self.payload_over(node, seq, items, &issuer, iat, rules)?;
        if mine != payload {
            return Err(
                "the payload is not the one this replica builds from its own ledger and the log"
                    .into(),
            );
        }
        Ok(())
    }

    /// A contract checked against `snapshot`: its signature only the first time this replica
    /// sees it (remembered for the cut and the apply), the rest every time.
    fn check_contract(
        &self,
        snapshot: &swarmvm_ledger::Snapshot,
        token: &str,
        network: &str,
    ) -> Result<crate::submit::Checked, SubmitError> {
        let id = Hash32::digest(token.as_bytes());
        let known = self.verified.lock().get(&id).cloned();
        let checked = match known {
            Some(v) => crate::submit::checked_against(snapshot, id, v)?,
            None => crate::submit::check(snapshot, token, network, &self.wallet_keys)?,
        };
        self.remember(&checked);
        Ok(checked)
    }

    /// Under rules 4, checks the contracts among `items` this replica has not checked yet
    /// together, as a bundle's are (signatures in ZIP-215 batches), and remembers those whose
    /// checks all pass; one that fails is left to [`Replica::check_contract`], which says why. A cut's
    /// contracts mostly came in through other replicas: checked one by one, their signatures
    /// were most of a replica's work.
    fn check_signatures_together(
        &self,
        snapshot: &swarmvm_ledger::Snapshot,
        items: &[(u64, Item)],
        network: &str,
    ) {
        if self.batcher.is_none() {
            return;
        }
        let unknown: Vec<String> = {
            let verified = self.verified.lock();
            items
                .iter()
                .filter_map(|(_, item)| match item {
                    Item::Contract(t) if !verified.contains_key(&Hash32::digest(t.as_bytes())) => {
                        Some(t.clone())
                    }
                    _ => None,
                })
                .collect()
        };
        for c in &crate::submit::check_together(snapshot, &unknown, network, self.rules) {
            self.remember(c);
        }
    }

    /// Remembers a contract whose signature this replica checked (at submission or at a cut),
    /// so that the cut's check and the apply take it as verified.
    pub(crate) fn remember(&self, checked: &crate::submit::Checked) {
        let mut verified = self.verified.lock();
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(checked.id, checked.verified.clone());
    }

    /// Puts each wallet's contracts among `chosen` in nonce order, in the places its
    /// contracts hold: two sent through different replicas at once may commit in either
    /// order, and the later nonce first would make the earlier one refused.
    fn order_by_nonce(&self, node: &Core, chosen: &mut [(u64, Item)]) {
        let Some(snapshot) = node.applier.snapshot() else { return };
        let network = node.applier.network().id().to_owned();
        self.check_signatures_together(&snapshot, chosen, &network);
        let mut by_wallet: HashMap<String, Vec<(usize, u64)>> = HashMap::new();
        for (i, (_, item)) in chosen.iter().enumerate() {
            let Item::Contract(token) = item else { continue };
            let id = Hash32::digest(token.as_bytes());
            let known = self.verified.lock().get(&id).cloned();
            let verified = known.or_else(|| {
                self.check_contract(&snapshot, token, &network).ok().map(|c| c.verified)
            });
            if let Some(v) = verified {
                by_wallet.entry(v.signer.clone()).or_default().push((i, v.nonce));
            }
        }
        for places in by_wallet.values() {
            let mut sorted = places.clone();
            sorted.sort_by_key(|(_, nonce)| *nonce);
            let moved: Vec<(u64, Item)> = sorted.iter().map(|(i, _)| chosen[*i].clone()).collect();
            for ((place, _), item) in places.iter().zip(moved) {
                chosen[*place] = item;
            }
        }
    }

    /// Why items of a cut made at `iat` cannot go in it, checked against this replica's
    /// ledger (registrations at `iat`, as the bundle's apply checks them). An error for a
    /// cause that may pass: the ledger could not be read.
    fn refusals(
        &self,
        node: &Core,
        seq: u64,
        set: &swarmvm_token::AuthoritySet,
        items: &[(u64, Item)],
        iat: u64,
    ) -> Result<Vec<(u64, String)>, String> {
        let snapshot = node.applier.snapshot().ok_or("the ledger cannot be read")?;
        // Checked against the cut's parent only: a ledger that moved on meanwhile (a bundle
        // fetched) would find the cut's nonces taken.
        if snapshot.last_bundle().map_or(0, |b| b.seq) + 1 != seq {
            return Err(format!("the ledger is no longer at the parent of seq {seq}"));
        }
        let network = node.applier.network().id().to_owned();
        self.check_signatures_together(&snapshot, items, &network);
        let now = iat;
        let mut named = HashSet::new();
        let mut out = Vec::new();
        let mut nonces: HashMap<String, u64> = HashMap::new();
        for (arrival, item) in items {
            match item {
                Item::Contract(token) => {
                    match self.check_contract(&snapshot, token, &network) {
                        Ok(c) => {
                            // One wallet's nonces rise within a bundle.
                            let last = nonces.entry(c.signer.clone()).or_insert(0);
                            if c.nonce <= *last {
                                out.push((
                                    *arrival,
                                    format!(
                                        "nonce {} is not above {} taken before it",
                                        c.nonce, *last
                                    ),
                                ));
                            } else {
                                *last = c.nonce;
                            }
                        }
                        Err(SubmitError::Unavailable(why)) => return Err(why),
                        Err(e) => out.push((*arrival, e.to_string())),
                    }
                }
                Item::Registration(token) => {
                    match crate::sequencer::check_registration(&snapshot, set, token, now) {
                        Ok((_, modules)) => named.extend(modules),
                        Err(SubmitError::Unavailable(why)) => return Err(why),
                        Err(e) => out.push((*arrival, e.to_string())),
                    }
                }
                Item::Module(_) => {}
            }
        }
        for (arrival, item) in items {
            if let Item::Module(bytes) = item
                && !named.contains(&Hash32::digest(bytes))
            {
                out.push((*arrival, "a module no registration of its cut names".into()));
            }
        }
        Ok(out)
    }

    fn cut_dir(node: &Core, seq: u64) -> (PathBuf, PathBuf) {
        let staging = node.fetcher.data_dir().join("cuts").join(format!("replica-{seq}"));
        let dir = staging.join(format!("bundle-{seq}"));
        (staging, dir)
    }

    /// Writes a cut's folder (its token files and modules, no manifest yet).
    async fn write_cut(
        &self,
        node: &Core,
        seq: u64,
        items: &[(u64, Item)],
    ) -> Result<PathBuf, String> {
        let (staging, dir) = Self::cut_dir(node, seq);
        let (tokens, contracts, modules) = Parts::of(items.iter().map(|(_, i)| i)).owned();
        let folder = dir.clone();
        tokio::task::spawn_blocking(move || {
            crate::fetcher::remove_tree(&staging)?;
            swarmvm_bundle::write_folder(&folder, &tokens, &contracts, &modules)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// The manifest payload for the cut of `items` as bundle `seq` after this replica's
    /// ledger's last, made by `issuer` at `iat` under `rules`. Its files are reckoned in
    /// memory ([`swarmvm_bundle::files_of`]): the folder is written once, for the cut that
    /// applies.
    fn payload_over(
        &self,
        node: &Core,
        seq: u64,
        items: &[(u64, Item)],
        issuer: &str,
        iat: u64,
        rules: Rules,
    ) -> Result<String, NotSigned> {
        let snapshot = node.applier.snapshot().ok_or(NotSigned::Later)?;
        let last = snapshot.last_bundle();
        drop(snapshot);
        if last.map_or(0, |l| l.seq) + 1 != seq {
            return Err(NotSigned::Later);
        }
        if let Some(l) = last {
            if l.issued_at > iat {
                return Err(
                    format!("its iat {iat} is before its parent's ({})", l.issued_at).into()
                );
            }
            if l.rules > rules {
                return Err("it lowers the rules of its parent".into());
            }
        }
        // The parent's torrent, named in the manifest. Just after the parent applied, this
        // node may not seed it yet: asked again a moment later.
        let parent_info_hash = match last {
            None => None,
            Some(l) => match node.fetcher.magnet_of(l.seq) {
                Some(m) => swarmvm_swarm::MagnetLink::parse(&m).ok().map(|m| m.info_hash.0),
                None => return Err(NotSigned::Later),
            },
        };
        let parts = Parts::of(items.iter().map(|(_, i)| i));
        let files = swarmvm_bundle::files_of(&parts.tokens, &parts.contracts, &parts.modules)
            .map_err(|e| NotSigned::Retry(one_line(&e)))?;
        let network = node.applier.network().id().to_owned();
        let content = ManifestContent {
            seq,
            parent: last.map(|l| l.id),
            parent_info_hash: last.and(parent_info_hash),
            files: &files,
            network: &network,
            authority_set: None,
            now: iat,
            rules,
        };
        manifest_payload(issuer, &content).map_err(|e| NotSigned::Retry(one_line(&e)))
    }

    /// Applies the next cut once K signatures for it are committed: the same `manifest.jwt`
    /// on every replica (the first K, sorted by signer), so the same torrent.
    async fn publish_cut(&self, node: &Core) {
        let _one = node.applier.turn().lock().await;
        // Read under the apply turn: the set in force for the next seq, and that seq.
        let last = node.applier.last_seq();
        let set = node.applier.authorities();
        let k = set.threshold();
        let (manifest, items) = {
            let mut st = self.state.lock();
            for (seq, cut) in st.cuts.iter_mut() {
                if *seq <= last {
                    cut.published = true;
                }
            }
            let Some(cut) = st.cuts.get(&(last + 1)) else {
                // Bundles between this ledger and the first cut held were cut while this
                // replica was away, and the log that held them is compacted: said once.
                if let Some(first) = st.cuts.keys().next().copied().filter(|f| *f > last + 1) {
                    let why = format!(
                        "this replica's ledger is at seq {last}, but the replicas' log now starts at the cut for seq {first}: fetching bundles {} to {} from the other replicas first",
                        last + 1,
                        first - 1,
                    );
                    if self.first_time_unpublished(last + 1, &why) {
                        info!("{why}");
                    }
                }
                return;
            };
            let manifest = match &cut.manifest {
                Some(signed) => signed.clone(),
                None => {
                    let sigs = first_k(&cut.sigs, Kind::Manifest, &cut.payload, &set);
                    if sigs.len() < k {
                        return;
                    }
                    match join_manifest(&cut.payload, &sigs) {
                        Ok(m) => m,
                        Err(e) => {
                            warn!(seq = last + 1, "cannot join the cut's signatures: {e}");
                            return;
                        }
                    }
                }
            };
            (manifest, cut.items.clone())
        };
        let seq = last + 1;
        let outcome = async {
            let dir = self.write_cut(node, seq, &items).await.map_err(CutError::Failed)?;
            std::fs::write(dir.join(swarmvm_token::MANIFEST_FILE), format!("{manifest}\n"))
                .map_err(|e| CutError::Failed(e.to_string()))?;
            // Taken out of the memory (a cut that fails to apply has its signatures checked
            // again by the apply): unwrapped, not copied, when nothing else holds them.
            let known: swarmvm_bundle::KnownContracts = {
                let mut verified = self.verified.lock();
                items
                    .iter()
                    .filter_map(|(_, item)| match item {
                        Item::Contract(t) => {
                            let id = Hash32::digest(t.as_bytes());
                            verified
                                .remove(&id)
                                .map(|v| (id, Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone())))
                        }
                        _ => None,
                    })
                    .collect()
            };
            let (staging, _) = Self::cut_dir(node, seq);
            node.fetcher.publish_stored(&staging, &dir, known).await
        }
        .await;
        match outcome {
            Ok(seq) => {
                info!(seq, contracts = items.len(), "applied the cut the replicas signed");
                if let Some(cut) = self.state.lock().cuts.get_mut(&seq) {
                    cut.published = true;
                }
            }
            Err(e) => {
                // Tried again at every turn of the worker; said once per seq and reason.
                let why = e.to_string();
                if self.first_time_unpublished(seq, &why) {
                    warn!(seq, "cannot apply the cut the replicas signed: {why}");
                }
            }
        }
    }

    /// Whether `seq` cannot be applied for a reason not said yet (remembered: the worker
    /// tries again at every turn, and says each seq and reason once).
    fn first_time_unpublished(&self, seq: u64, why: &str) -> bool {
        let mut last = self.publish_failed.lock();
        if last.as_ref().is_some_and(|(s, w)| *s == seq && w == why) {
            return false;
        }
        *last = Some((seq, why.to_owned()));
        true
    }

    /// Signs the newest head payload for the bundle this replica applied last, once its own
    /// bundle, root and magnet are the payload's.
    async fn sign_head(&self, node: &Core) {
        let Some(snapshot) = node.applier.snapshot() else { return };
        let Some(last) = snapshot.last_bundle() else { return };
        let root = snapshot.state_root();
        drop(snapshot);
        let payload = {
            let st = self.state.lock();
            let Some(round) = st.heads.get(&last.seq) else { return };
            let set = node.applier.authorities();
            if round.signed
                || first_k(&round.sigs, Kind::Head, &round.payload, &set).len() >= set.threshold()
            {
                return;
            }
            round.payload.clone()
        };
        // The same torrent: the magnet's info-hash (its trackers are each node's own).
        let info_hash = |m: &str| swarmvm_swarm::MagnetLink::parse(m).ok().map(|m| m.info_hash.0);
        // Just after the bundle applied, this node may not seed it yet: signed at a later turn.
        let Some(mine) = node.fetcher.magnet_of(last.seq).and_then(|m| info_hash(&m)) else {
            return;
        };
        let mine = Some(mine);
        let checked = payload_claims(&payload).ok_or("not a head's payload").and_then(|c| {
            let same = c.get("bundle").and_then(|v| v.as_str()) == Some(&last.id.to_string())
                && c.get("state_root").and_then(|v| v.as_str()) == Some(&root.to_hex())
                && c.get("magnet").and_then(|v| v.as_str()).and_then(info_hash) == mine
                && c.get("iat")
                    .and_then(serde_json::Value::as_u64)
                    .is_some_and(|i| i <= unix_now() + MAX_CLOCK_SKEW);
            if same {
                Ok(())
            } else {
                Err("it is not this replica's bundle, root or torrent, or its iat is off this clock")
            }
        });
        if let Err(why) = checked {
            warn!(seq = last.seq, "this replica does not sign the head: {why}");
            if let Some(round) = self.state.lock().heads.get_mut(&last.seq) {
                round.signed = true;
            }
            return;
        }
        let Ok(part) = sign_payload_part(&self.key, Kind::Head, &payload) else { return };
        if let Some(round) = self.state.lock().heads.get_mut(&last.seq) {
            round.signed = true;
        }
        let forged = self.fault.then(|| forged_part(&self.key, Kind::Head, &payload));
        if let Err(e) = self.propose(&Cmd::HeadSig { seq: last.seq, payload, part }).await {
            warn!(seq = last.seq, "cannot send this replica's head signature: {e}");
            if let Some(round) = self.state.lock().heads.get_mut(&last.seq) {
                round.signed = false;
            }
        }
        if let Some(Some((payload, part))) = forged {
            let _ = self.propose(&Cmd::HeadSig { seq: last.seq, payload, part }).await;
        }
    }

    /// Offers every head whose K signatures are committed to the head store.
    fn offer_heads(&self, node: &Core) {
        let set = node.applier.authorities();
        let ready: Vec<String> = {
            let mut st = self.state.lock();
            st.heads
                .values_mut()
                .filter(|r| !r.offered)
                .filter_map(|r| {
                    let sigs = first_k(&r.sigs, Kind::Head, &r.payload, &set);
                    if sigs.len() < set.threshold() {
                        return None;
                    }
                    r.offered = true;
                    join_head(&r.payload, &sigs).ok()
                })
                .collect()
        };
        for text in ready {
            node.heads.offer(&text, Via::Own);
        }
    }

    /// The leader's work: a head payload for the bundle applied last (again before it
    /// expires), and the next cut.
    async fn lead(&self, node: &Core) {
        self.propose_head(node).await;
        self.propose_cut(node).await;
    }

    async fn propose_head(&self, node: &Core) {
        let Some(snapshot) = node.applier.snapshot() else { return };
        let Some(last) = snapshot.last_bundle() else { return };
        let root = snapshot.state_root();
        drop(snapshot);
        let refresh = (self.max_head_age / 3).max(Duration::from_secs(1));
        let now = unix_now();
        {
            let st = self.state.lock();
            if let Some(round) = st.heads.get(&last.seq)
                && now.saturating_sub(round.iat) < refresh.as_secs()
            {
                return;
            }
        }
        // A head for a new bundle is proposed at once (followers learn of bundles from
        // heads); one for the same seq again (in flight, or refreshed) at most once a second.
        if self
            .last_head
            .lock()
            .is_some_and(|(seq, t)| seq == last.seq && t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let Some(magnet) = node.fetcher.magnet_of(last.seq) else { return };
        let (network, _) = node.applier.in_force();
        let content = HeadContent {
            network: network.id(),
            seq: last.seq,
            bundle: last.id,
            magnet: &magnet,
            state_root: root,
            now: now.max(last.issued_at),
            max_age: self.max_head_age.as_secs().max(1),
            snapshot: None,
        };
        let Ok(payload) = head_payload(&self.member, &content) else { return };
        *self.last_head.lock() = Some((last.seq, tokio::time::Instant::now()));
        if let Err(e) = self.propose(&Cmd::Head { seq: last.seq, payload }).await {
            warn!(seq = last.seq, "cannot propose a head: {e}");
        }
    }

    async fn propose_cut(&self, node: &Core) {
        let last = node.applier.last_seq();
        let seq = last + 1;
        let chosen: Vec<(u64, Item)> = {
            let st = self.state.lock();
            if st.cuts.contains_key(&seq) || st.cuts.keys().next_back().is_some_and(|l| *l > seq) {
                return;
            }
            // A seq whose cuts were abandoned is cut again after a pause that doubles with
            // each (up to a minute): a leader whose cuts are refused for the payload itself
            // does not churn the log.
            let abandons = st.abandoned.get(&seq).map_or(0, Vec::len);
            let since_last = self.last_cut.lock().map(|t| t.elapsed());
            let due = if abandons > 0 {
                let pause =
                    self.cut_every.saturating_mul(1 << abandons.min(10)).min(MAX_RECUT_PAUSE);
                since_last.is_none_or(|e| e >= pause)
            } else {
                st.contracts() >= self.cut_at || since_last.is_none_or(|e| e >= self.cut_every)
            };
            if st.queue.is_empty() || !due {
                return;
            }
            let mut contracts = 0;
            st.queue
                .iter()
                .filter(|(_, item)| match item {
                    Item::Contract(_) => {
                        contracts += 1;
                        contracts <= self.cut_at
                    }
                    _ => true,
                })
                .map(|(a, i)| (*a, i.clone()))
                .collect()
        };
        *self.last_cut.lock() = Some(tokio::time::Instant::now());
        let mut chosen = chosen;
        self.order_by_nonce(node, &mut chosen);
        // The set declared in the cut: the one in force on this ledger, never a guess.
        let Some((parent, set)) = Self::ledger_point(node) else { return };
        if parent.map_or(0, |p| p.seq) + 1 != seq {
            return;
        }
        let rules = self.rules.max(parent.map_or(Rules::V1, |p| p.rules));
        let iat = unix_now().max(parent.map_or(0, |p| p.issued_at));
        // The test hook cuts what is queued unchecked, as a leader whose check is wrong.
        let drop = if self.fault_unchecked_cuts {
            Vec::new()
        } else {
            match self.refusals(node, seq, &set, &chosen, iat) {
                Ok(drop) => drop,
                Err(e) => {
                    warn!(seq, "cannot cut: {e}");
                    return;
                }
            }
        };
        let dropped: HashSet<u64> = drop.iter().map(|(a, _)| *a).collect();
        let take: Vec<(u64, Item)> =
            chosen.into_iter().filter(|(a, _)| !dropped.contains(a)).collect();
        if take.is_empty() {
            if let Err(e) = self.propose(&Cmd::Drop { drop }).await {
                warn!("cannot drop refused items: {e}");
            }
            return;
        }
        let payload = match self.payload_over(node, seq, &take, &self.member, iat, rules) {
            Ok(p) => p,
            // The parent just applied and not seeded yet: cut at the next turn.
            Err(NotSigned::Later) => return,
            Err(NotSigned::Refused { why: e, .. } | NotSigned::Retry(e)) => {
                warn!(seq, "cannot cut: {e}");
                return;
            }
        };
        let take: Vec<u64> = take.iter().map(|(a, _)| *a).collect();
        let count = take.len();
        let set = Some(set.canonical().to_owned());
        match self.propose(&Cmd::Cut { seq, payload, take, drop, set }).await {
            Ok(()) => info!(seq, items = count, "proposed a cut"),
            Err(e) => warn!(seq, "cannot propose a cut: {e}"),
        }
    }
}

fn drop_items(st: &mut Replicated, drop: Vec<(u64, String)>) {
    for (arrival, why) in drop {
        if let Some(Item::Contract(t)) = st.queue.remove(&arrival) {
            let id = Hash32::digest(t.as_bytes());
            st.queued.remove(&id);
            st.note_dropped(id, why);
        }
    }
}

/// The payload (base64url) of a manifest in either serialization.
fn manifest_payload_of(manifest: &str) -> Option<String> {
    let text = manifest.trim();
    if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        return v.get("payload")?.as_str().map(str::to_owned);
    }
    text.split('.').nth(1).map(str::to_owned)
}

/// Why a replica does not sign a cut now.
#[derive(Debug)]
enum NotSigned {
    /// Not yet: its ledger is not at the parent, or does not seed the parent yet.
    Later,
    /// Not now, for a cause that may pass (a leader's clock ahead of this one, a ledger that
    /// cannot be read or moved on): checked again after [`RECHECK_REFUSED`].
    Retry(String),
    /// Never: the cut is wrong against this replica's ledger; why, and the items it refuses
    /// (by arrival; none when the payload itself is wrong).
    Refused { why: String, items: Vec<u64> },
}

impl From<String> for NotSigned {
    fn from(why: String) -> Self {
        Self::Refused { why, items: Vec::new() }
    }
}

impl From<&str> for NotSigned {
    fn from(why: &str) -> Self {
        why.to_owned().into()
    }
}

/// A payload's claims (base64url JSON).
fn payload_claims(payload: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

fn claim_u64(payload: &str, name: &str) -> Option<u64> {
    payload_claims(payload)?.get(name)?.as_u64()
}

#[cfg(test)]
mod tests {
    use swarmvm_token::AuthoritySet;
    use swarmvm_wallet::Algorithm;

    use super::*;

    const NETWORK: &str = "test-network";

    /// `n` members, two of `n`, and a replicated state that took (through the log's
    /// commands) two contracts (arrivals 1 << 16 and 1 << 16 | 1) and the cut for seq 2 made
    /// of them by member 0 under that set; its payload.
    struct Log {
        keys: Vec<Wallet>,
        set: AuthoritySet,
        st: Replicated,
        payload: String,
        index: u64,
        /// The member this replica is.
        member: String,
    }

    impl Log {
        fn new(n: usize) -> Self {
            let keys: Vec<Wallet> =
                (0..n).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
            let set = AuthoritySet::new(keys.iter().map(|k| k.public_key().clone()).collect(), 2)
                .unwrap();
            let payload = manifest(&keys[0], 2, 100);
            let mut log = Self {
                keys,
                set,
                st: Replicated::default(),
                payload,
                index: 0,
                member: "me".into(),
            };
            let items = vec![Wire::Contract("a".into()), Wire::Contract("b".into())];
            log.take(Cmd::Submit { items });
            let set_json = Some(log.set.canonical().to_owned());
            let payload = log.payload.clone();
            let take = vec![ARRIVAL_A, ARRIVAL_B];
            log.take(Cmd::Cut { seq: 2, payload, take, drop: Vec::new(), set: set_json });
            log
        }

        /// Takes `cmd` as the next committed command, with `set` in force on this replica's
        /// ledger (at seq 1).
        fn take_with(&mut self, cmd: Cmd, set: &AuthoritySet) {
            self.index += 1;
            let at = Taking { set, network: NETWORK, member: &self.member, applied: 1 };
            self.st.take(self.index, cmd, &at);
        }

        fn take(&mut self, cmd: Cmd) {
            let set = self.set.clone();
            self.take_with(cmd, &set);
        }

        /// Member `i`'s signature over `payload` for seq 2, committed.
        fn sign(&mut self, i: usize, payload: &str) {
            let part = sign_payload_part(&self.keys[i], Kind::Manifest, payload).unwrap();
            verify_payload_part(&part, Kind::Manifest, payload, &self.set).unwrap();
            self.take(Cmd::ManifestSig { seq: 2, payload: payload.to_owned(), part });
        }

        /// Member `i`'s refusal of the cut whose payload is `payload` for `seq`, committed.
        fn refuse(&mut self, i: usize, seq: u64, payload: &str, network: &str) {
            let refusal = refusal(&self.keys[i], seq, payload, network);
            self.take(Cmd::Refuse { seq: 2, refusal });
        }

        fn sigs(&self) -> usize {
            self.st.cuts[&2].sigs.len()
        }
    }

    const ARRIVAL_A: u64 = 1 << 16;
    const ARRIVAL_B: u64 = (1 << 16) | 1;

    /// A manifest payload for `seq` made by `leader` at `iat`.
    fn manifest(leader: &Wallet, seq: u64, iat: u64) -> String {
        let claims = serde_json::json!({ "iss": leader.id().to_string(), "seq": seq, "iat": iat });
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    }

    fn refusal(key: &Wallet, seq: u64, payload: &str, network: &str) -> Envelope {
        let body = Refusal {
            seq,
            manifest: Hash32::digest(payload.as_bytes()),
            why: "item 65537: nonce 1 is not above 1 taken before it".into(),
            items: vec![ARRIVAL_B],
        };
        let body = serde_json::to_string(&body).unwrap();
        Envelope::seal(key, REFUSAL, network, EVERY_REPLICA, 1, seq, body).unwrap()
    }

    #[test]
    fn a_cut_is_abandoned_only_by_k_refusals_of_members_that_did_not_sign_it() {
        let mut log = Log::new(3);
        let payload = log.payload.clone();
        log.sign(0, &payload);
        // The signer's own refusal does not count (it is evidence); nor do refusals of
        // another cut, seq or network, one whose body was changed after it was signed, or
        // one from a key that is not a member.
        log.refuse(0, 2, &payload, NETWORK);
        assert_eq!(log.st.equivocations.len(), 1);
        assert_eq!(log.st.equivocations[0].kind, "refusal");
        log.refuse(1, 2, &manifest(&log.keys[0], 2, 101), NETWORK);
        log.refuse(1, 3, &payload, NETWORK);
        log.refuse(1, 2, &payload, "another");
        let mut forged = refusal(&log.keys[1], 2, &payload, NETWORK);
        forged.body = forged.body.replace("[65537]", "[65536,65537]");
        log.take(Cmd::Refuse { seq: 2, refusal: forged });
        let outsider = Wallet::generate(Algorithm::Ed25519).unwrap();
        let stranger = refusal(&outsider, 2, &payload, NETWORK);
        log.take(Cmd::Refuse { seq: 2, refusal: stranger });
        assert!(log.st.cuts[&2].refusals.is_empty());
        // One member's refusal: K - 1 others could still sign.
        log.refuse(1, 2, &payload, NETWORK);
        assert_eq!(log.st.cuts[&2].refusals.len(), 1);
        assert!(log.st.queue.is_empty());
        // Its signature after its refusal is not counted, and is evidence.
        log.sign(1, &payload);
        assert_eq!(log.sigs(), 1);
        assert_eq!(log.st.equivocations.len(), 2);
        // The second member's refusal: abandoned. The item named is dropped with why, the
        // other back in the queue where it was, and the seq open to be cut again.
        log.refuse(2, 2, &payload, NETWORK);
        assert!(!log.st.cuts.contains_key(&2));
        assert_eq!(log.st.last_cut, Some(1));
        assert_eq!(log.st.queue.keys().copied().collect::<Vec<_>>(), vec![ARRIVAL_A]);
        assert_eq!(log.st.queued.get(&Hash32::digest(b"a")), Some(&ARRIVAL_A));
        let why = log.st.dropped.get(&Hash32::digest(b"b")).expect("dropped");
        assert!(why.starts_with("refused at the cut for seq 2 by member"), "{why}");
        assert!(log.st.is_abandoned(2, &payload));
        // The next cut for the seq: the member that signed the abandoned one signs it too,
        // which is not evidence, nor is a late signature over the abandoned one.
        let next = manifest(&log.keys[0], 2, 102);
        let set = Some(log.set.canonical().to_owned());
        let cut =
            Cmd::Cut { seq: 2, payload: next.clone(), take: vec![ARRIVAL_A], drop: vec![], set };
        log.take(cut);
        assert!(log.st.cuts.contains_key(&2), "the seq is cut again");
        log.sign(0, &next);
        log.sign(1, &payload);
        log.sign(1, &next);
        assert_eq!(log.st.equivocations.len(), 2, "{:?}", log.st.equivocations);
        assert_eq!(log.sigs(), 2);
        // Two manifests of a seq none abandoned still are.
        log.sign(0, &manifest(&log.keys[0], 2, 103));
        assert_eq!(log.st.equivocations.len(), 3);
    }

    #[test]
    fn a_cut_k_members_signed_is_not_abandoned() {
        // Two of four signed it; the other two refusing it (K refusals) changes nothing.
        let mut log = Log::new(4);
        let payload = log.payload.clone();
        log.sign(0, &payload);
        log.sign(1, &payload);
        log.refuse(2, 2, &payload, NETWORK);
        log.refuse(3, 2, &payload, NETWORK);
        assert_eq!(log.st.cuts[&2].refusals.len(), 2);
        assert!(log.st.queue.is_empty());
        assert!(!log.st.is_abandoned(2, &payload));
    }

    #[test]
    fn refusals_are_counted_against_the_set_the_cut_was_made_under() {
        // A replica whose ledger is behind a rotation holds another set (here: member 2
        // alone, one of one): it counts the refusals against the cut's set all the same.
        let mut log = Log::new(3);
        let payload = log.payload.clone();
        let behind = AuthoritySet::new(vec![log.keys[2].public_key().clone()], 1).unwrap();
        let one = refusal(&log.keys[1], 2, &payload, NETWORK);
        log.take_with(Cmd::Refuse { seq: 2, refusal: one }, &behind);
        assert_eq!(log.st.cuts[&2].refusals.len(), 1, "member 1 counted, under the cut's set");
        assert!(log.st.cuts.contains_key(&2), "one refusal of two needed");
        let two = refusal(&log.keys[2], 2, &payload, NETWORK);
        log.take_with(Cmd::Refuse { seq: 2, refusal: two }, &behind);
        assert!(log.st.is_abandoned(2, &payload));
    }

    #[test]
    fn a_forged_signature_kept_by_a_replica_behind_a_rotation_does_not_void_a_refusal() {
        // Behind a rotation, this replica does not know member 1: a signature in member 1's
        // name (made with another key) is not kept for that (it is checked under the cut's
        // set), so member 1's refusal counts here as everywhere, and is no evidence.
        let mut log = Log::new(3);
        let payload = log.payload.clone();
        let behind = AuthoritySet::new(vec![log.keys[2].public_key().clone()], 1).unwrap();
        let outsider = Wallet::generate(Algorithm::Ed25519).unwrap();
        let mut part = sign_payload_part(&outsider, Kind::Manifest, &payload).unwrap();
        part.signer = log.keys[1].id().to_string();
        log.take_with(Cmd::ManifestSig { seq: 2, payload: payload.clone(), part }, &behind);
        assert_eq!(log.sigs(), 0);
        for i in [1, 2] {
            let r = refusal(&log.keys[i], 2, &payload, NETWORK);
            log.take_with(Cmd::Refuse { seq: 2, refusal: r }, &behind);
        }
        assert!(log.st.is_abandoned(2, &payload));
        assert!(log.st.equivocations.is_empty(), "{:?}", log.st.equivocations);
    }

    #[test]
    fn a_replica_stops_sending_its_refusal_once_it_is_in_the_log_counted_or_not() {
        let mut log = Log::new(3);
        let payload = log.payload.clone();
        log.member = log.keys[1].id().to_string();
        // A refusal in its name it did not sign (its body changed) does not stop it.
        let mut forged = refusal(&log.keys[1], 2, &payload, NETWORK);
        forged.body = forged.body.replace("[65537]", "[65536,65537]");
        log.take(Cmd::Refuse { seq: 2, refusal: forged });
        assert!(!log.st.cuts[&2].my_refusal_committed);
        // Its own, committed after its signature: not counted (evidence), but in the log.
        log.sign(1, &payload);
        log.refuse(1, 2, &payload, NETWORK);
        assert!(log.st.cuts[&2].refusals.is_empty());
        assert!(log.st.cuts[&2].my_refusal_committed);
    }

    #[test]
    fn a_cut_whose_declared_set_cannot_be_read_is_ignored() {
        let mut log = Log::new(3);
        let payload = manifest(&log.keys[0], 3, 100);
        let set = Some("{\"threshold\": 9}".to_owned());
        log.take(Cmd::Cut { seq: 3, payload, take: Vec::new(), drop: Vec::new(), set });
        assert!(!log.st.cuts.contains_key(&3));
        assert_eq!(log.st.last_cut, Some(2));
    }

    #[test]
    fn a_contract_sent_again_while_its_cut_was_open_is_queued_once_after_an_abandon() {
        let mut log = Log::new(3);
        let payload = log.payload.clone();
        log.take(Cmd::Submit { items: vec![Wire::Contract("a".into())] });
        log.refuse(1, 2, &payload, NETWORK);
        log.refuse(2, 2, &payload, NETWORK);
        assert!(log.st.is_abandoned(2, &payload));
        let queued_a: Vec<_> =
            log.st.queue.values().filter(|i| matches!(i, Item::Contract(t) if t == "a")).collect();
        assert_eq!(queued_a.len(), 1);
        assert_eq!(log.st.queued.len(), 1);
    }

    #[test]
    fn an_abandon_and_its_refusals_survive_a_snapshot() {
        let mut log = Log::new(3);
        let payload = log.payload.clone();
        log.refuse(1, 2, &payload, NETWORK);
        let image = serde_json::to_vec(&log.st.image()).unwrap();
        // Restored by member 1: its own refusal is in, not to be sent again.
        let member1 = log.keys[1].id().to_string();
        let as_member1 =
            Replicated::restored(serde_json::from_slice(&image).unwrap(), &member1).unwrap();
        assert!(as_member1.cuts[&2].my_refusal_committed);
        // A refusal whose body cannot be read is skipped, not the whole image.
        let mut broken: serde_json::Value = serde_json::from_slice(&image).unwrap();
        broken["cuts"][0][1]["refusals"][0]["body"] = "{not json".into();
        let skipped = Replicated::restored(serde_json::from_value(broken).unwrap(), "me").unwrap();
        assert!(skipped.cuts[&2].refusals.is_empty());
        assert_eq!(skipped.cuts[&2].items.len(), 2);
        log.st = Replicated::restored(serde_json::from_slice(&image).unwrap(), "me").unwrap();
        assert!(!log.st.cuts[&2].my_refusal_committed);
        assert_eq!(log.st.cuts[&2].refusals.len(), 1);
        assert!(log.st.cuts[&2].set.is_some());
        log.refuse(2, 2, &payload, NETWORK);
        assert!(log.st.is_abandoned(2, &payload));
        let image = serde_json::to_vec(&log.st.image()).unwrap();
        let again = Replicated::restored(serde_json::from_slice(&image).unwrap(), "me").unwrap();
        assert!(again.is_abandoned(2, &payload));
        assert_eq!(again.queue.len(), 1);
    }
}
