//! Heads as BitTorrent DHT items (BEP 44 mutable items pointing at a torrent, BEP 46).
//!
//! Each Ed25519 member of a network's authority set has one item slot: the target is the
//! SHA-1 of its public key and the salt, and the salt is the network id's text. The item's
//! value is a bencoded dictionary that holds BEP 46's `ih` (the info-hash of the newest
//! bundle's torrent) and the newest head taken apart ([`swarmvm_token::HeadParts`]): what it
//! says and its Ed25519 signatures, each named by the first 8 bytes of its signer's key. A
//! reader who knows the set rebuilds the head byte for byte and verifies it as any head;
//! a stock BEP 44 client (libtorrent's `dht_get_item`) reads `ih`. BEP 44's `seq` is the
//! head's seq × 2^32 plus a number that grows each time the head is signed again (nodes write
//! the low 32 bits of its `iat`, which survives a restart as a count would not), so a re-signed head replaces
//! the one before it. `docs/format.md` ("Heads in the DHT") gives the value byte by byte.
//!
//! The network's link names one slot: `magnet:?xs=urn:btpk:<hex key>&s=<hex salt>` (BEP 46).
//!
//! One departure from BEP 46: its `v` is a dictionary, but the `mainline` DHT this node runs
//! stores only byte-string values, so an item's `v` is a byte string that holds the bencoded
//! dictionary; a reader decodes it once more.
#![forbid(unsafe_code)]

mod bencode;
mod node;

pub use node::{DhtNode, DhtNodeError, public_bootstrap};

use std::collections::BTreeMap;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use data_encoding::HEXLOWER;
use swarmvm_primitives::Hash32;
use swarmvm_token::{AuthoritySet, HeadParts, SnapshotClaim, head_from_parts, head_parts};
use swarmvm_wallet::Wallet;

use crate::bencode::Value;

/// The largest `v` BEP 44 stores, in bytes of its bencoding (the byte string's length prefix
/// and the dictionary it holds).
pub const MAX_VALUE: usize = 1000;

/// The bytes `v` takes on the wire: the dictionary `value` as a bencoded byte string.
pub fn encoded_len(value: &[u8]) -> usize {
    value.len() + value.len().to_string().len() + 1
}
/// The bytes of a key that name a signer inside an item.
pub const KEY_PREFIX: usize = 8;
/// The highest head seq an item can carry: BEP 44's `seq` is a signed 64-bit integer, and an
/// item's is the head's seq × 2^32.
pub const MAX_HEAD_SEQ: u64 = (1 << 31) - 1;

/// Why an item could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// The head cannot travel in an item (not taken apart, too many signatures, a signer
    /// that is not an Ed25519 member, trackers in its magnet, a seq too high).
    #[error("this head cannot be put in the DHT: {0}")]
    Head(String),
    /// The value would exceed BEP 44's 1000 bytes.
    #[error("the item's value is {size} bytes; BEP 44 stores at most {MAX_VALUE}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// The key that signs is not an Ed25519 key of a member.
    #[error("{0}")]
    Key(String),
    /// The item's signature does not verify under its key.
    #[error("the item's signature does not verify under its key")]
    BadSignature,
    /// The item's value is not a head item.
    #[error("the item's value is not a swarmvm head: {0}")]
    Malformed(String),
    /// The link is not a network's link.
    #[error("not a network link (magnet:?xs=urn:btpk:<64 hex>&s=<hex>): {0}")]
    Link(String),
}

/// One BEP 44 mutable item: what a `put` sends and a `get` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadItem {
    /// The signer's Ed25519 public key (`k`).
    pub key: [u8; 32],
    /// The salt: the network id's text.
    pub salt: Vec<u8>,
    /// BEP 44's `seq`.
    pub seq: i64,
    /// The value: a bencoded dictionary, sent as the byte string `v`.
    pub value: Vec<u8>,
    /// The Ed25519 signature (`sig`) over [`signable`].
    pub signature: [u8; 64],
}

/// The DHT target of the slot of `key` and `salt`: SHA-1 of the key followed by the salt.
pub fn target(key: &[u8; 32], salt: &[u8]) -> [u8; 20] {
    let mut input = key.to_vec();
    input.extend_from_slice(salt);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    let mut out = [0; 20];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The bytes BEP 44 signs: `4:salt<len>:<salt>3:seqi<seq>e1:v<len>:<value>` (the salt part
/// only when there is a salt). The item's `v` is a byte string that holds the bencoded
/// dictionary: the `mainline` DHT stores only byte-string values.
pub fn signable(salt: &[u8], seq: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(salt.len() + value.len() + 32);
    if !salt.is_empty() {
        out.extend_from_slice(b"4:salt");
        Value::Bytes(salt.to_vec()).encode(&mut out);
    }
    out.extend_from_slice(format!("3:seqi{seq}e1:v").as_bytes());
    Value::Bytes(value.to_vec()).encode(&mut out);
    out
}

/// BEP 44's `seq` for a head of `seq`, `resigned` its re-sign number (nodes use the low 32 bits
/// of the head's `iat`).
pub fn item_seq(seq: u64, resigned: u32) -> Result<i64, DhtError> {
    if !(1..=MAX_HEAD_SEQ).contains(&seq) {
        return Err(DhtError::Head(format!("its seq {seq} is not from 1 to {MAX_HEAD_SEQ}")));
    }
    Ok(((seq as i64) << 32) | i64::from(resigned))
}

/// The link of the slot of `key` in network `network`: `magnet:?xs=urn:btpk:<hex key>&s=<hex
/// network id>`.
pub fn link(key: &[u8; 32], network: &str) -> String {
    format!(
        "magnet:?xs=urn:btpk:{}&s={}",
        HEXLOWER.encode(key),
        HEXLOWER.encode(network.as_bytes())
    )
}

/// The key and the network id a link names.
pub fn parse_link(text: &str) -> Result<([u8; 32], String), DhtError> {
    let bad = |why: &str| DhtError::Link(why.to_owned());
    let query = text.strip_prefix("magnet:?").ok_or_else(|| bad("it does not begin magnet:?"))?;
    let (mut key, mut salt) = (None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("xs", v)) => {
                let hex = v.strip_prefix("urn:btpk:").ok_or_else(|| bad("xs is not urn:btpk:"))?;
                let bytes = HEXLOWER
                    .decode(hex.to_ascii_lowercase().as_bytes())
                    .map_err(|_| bad("the key is not hex"))?;
                key =
                    Some(<[u8; 32]>::try_from(bytes).map_err(|_| bad("the key is not 32 bytes"))?);
            }
            Some(("s", v)) => {
                let bytes = HEXLOWER
                    .decode(v.to_ascii_lowercase().as_bytes())
                    .map_err(|_| bad("the salt is not hex"))?;
                salt = Some(String::from_utf8(bytes).map_err(|_| bad("the salt is not text"))?);
            }
            _ => {}
        }
    }
    match (key, salt) {
        (Some(k), Some(s)) if !s.is_empty() => Ok((k, s)),
        (None, _) => Err(bad("it names no key (xs)")),
        _ => Err(bad("it names no network (s)")),
    }
}

/// The links of every Ed25519 member of `set` in network `network`, in the set's order; an
/// error when it has none.
pub fn links(set: &AuthoritySet, network: &str) -> Result<Vec<String>, DhtError> {
    let found: Vec<String> =
        set.members().filter_map(|(_, k)| k.ed25519_bytes()).map(|k| link(k, network)).collect();
    if found.is_empty() {
        return Err(DhtError::Key(
            "the network has no Ed25519 member: DHT items are signed with Ed25519 keys only".into(),
        ));
    }
    Ok(found)
}

/// The Ed25519 member of `set` whose key begins with `prefix`.
fn member_by_prefix<'s>(
    set: &'s AuthoritySet,
    prefix: &[u8],
) -> Result<(&'s str, &'s [u8; 32]), DhtError> {
    let mut found = set
        .members()
        .filter_map(|(id, k)| k.ed25519_bytes().map(|b| (id.as_str(), b)))
        .filter(|(_, k)| k.starts_with(prefix));
    match (found.next(), found.next()) {
        (Some(m), None) => Ok(m),
        (None, _) => {
            Err(DhtError::Malformed(format!("no member's key begins {}", HEXLOWER.encode(prefix))))
        }
        (Some(_), Some(_)) => Err(DhtError::Malformed("two members' keys share a prefix".into())),
    }
}

fn prefix_of(set: &AuthoritySet, id: &str) -> Result<Vec<u8>, DhtError> {
    let key = set
        .get(id)
        .and_then(|k| k.ed25519_bytes())
        .ok_or_else(|| DhtError::Head(format!("its signer {id} is not an Ed25519 member")))?;
    Ok(key[..KEY_PREFIX].to_vec())
}

fn bytes(v: &[u8]) -> Value {
    Value::Bytes(v.to_vec())
}

fn int(n: u64) -> Result<Value, DhtError> {
    i64::try_from(n).map(Value::Int).map_err(|_| DhtError::Head(format!("{n} is too large")))
}

/// The hex info-hash a magnet names first (`xt=urn:btih:`), lowercase.
fn magnet_ih(magnet: &str) -> Option<String> {
    let query = magnet.strip_prefix("magnet:?")?;
    query.split('&').find_map(|p| p.strip_prefix("xt=urn:btih:")).map(str::to_ascii_lowercase)
}

/// The value of the item that carries `parts` and `ih`.
fn encode_value(parts: &HeadParts, ih: &[u8; 20], set: &AuthoritySet) -> Result<Vec<u8>, DhtError> {
    let mut d: BTreeMap<Vec<u8>, Value> = BTreeMap::new();
    d.insert(b"b".to_vec(), bytes(parts.bundle.hash().as_bytes()));
    d.insert(b"e".to_vec(), int(parts.expires_at)?);
    d.insert(b"i".to_vec(), Value::Bytes(prefix_of(set, &parts.issuer)?));
    d.insert(b"ih".to_vec(), bytes(ih));
    d.insert(b"m".to_vec(), bytes(parts.magnet.as_bytes()));
    if let Some(s) = &parts.snapshot {
        let mut n = BTreeMap::new();
        n.insert(b"m".to_vec(), bytes(s.magnet.as_bytes()));
        n.insert(b"r".to_vec(), bytes(s.state_root.as_bytes()));
        n.insert(b"s".to_vec(), int(s.seq)?);
        d.insert(b"n".to_vec(), Value::Dict(n));
    }
    d.insert(b"r".to_vec(), bytes(parts.state_root.as_bytes()));
    let mut signatures = Vec::with_capacity(parts.signatures.len());
    for (kid, sig) in &parts.signatures {
        let mut entry = prefix_of(set, kid)?;
        entry.extend_from_slice(sig);
        signatures.push(Value::Bytes(entry));
    }
    d.insert(b"s".to_vec(), Value::List(signatures));
    d.insert(b"sq".to_vec(), int(parts.seq)?);
    d.insert(b"t".to_vec(), int(parts.issued_at)?);
    Ok(Value::Dict(d).to_bytes())
}

/// What a value holds: BEP 46's `ih`, and the head's parts (the network given).
fn decode_value(
    value: &[u8],
    network: &str,
    set: &AuthoritySet,
) -> Result<([u8; 20], HeadParts), DhtError> {
    let bad = |why: &str| DhtError::Malformed(why.to_owned());
    let Value::Dict(mut d) = Value::decode(value).map_err(|e| bad(&e))? else {
        return Err(bad("not a dictionary"));
    };
    let mut take = |k: &str| d.remove(k.as_bytes()).ok_or_else(|| bad(&format!("no '{k}'")));
    let fixed = |v: Value, k: &str| -> Result<Vec<u8>, DhtError> {
        match v {
            Value::Bytes(b) => Ok(b),
            _ => Err(bad(&format!("'{k}' is not a string"))),
        }
    };
    let number = |v: Value, k: &str| -> Result<u64, DhtError> {
        match v {
            Value::Int(n) => u64::try_from(n).map_err(|_| bad(&format!("'{k}' is negative"))),
            _ => Err(bad(&format!("'{k}' is not an integer"))),
        }
    };
    let hash = |b: Vec<u8>, k: &str| -> Result<[u8; 32], DhtError> {
        b.try_into().map_err(|_| bad(&format!("'{k}' is not 32 bytes")))
    };
    let text = |b: Vec<u8>, k: &str| -> Result<String, DhtError> {
        String::from_utf8(b).map_err(|_| bad(&format!("'{k}' is not text")))
    };
    let ih: [u8; 20] =
        fixed(take("ih")?, "ih")?.try_into().map_err(|_| bad("'ih' is not 20 bytes"))?;
    let bundle = hash(fixed(take("b")?, "b")?, "b")?;
    let expires_at = number(take("e")?, "e")?;
    let issuer = member_by_prefix(set, &fixed(take("i")?, "i")?)?.0.to_owned();
    let magnet = text(fixed(take("m")?, "m")?, "m")?;
    let state_root = hash(fixed(take("r")?, "r")?, "r")?;
    let seq = number(take("sq")?, "sq")?;
    let issued_at = number(take("t")?, "t")?;
    let Value::List(list) = take("s")? else { return Err(bad("'s' is not a list")) };
    let snapshot = match d.remove(b"n".as_slice()) {
        None => None,
        Some(Value::Dict(mut n)) => {
            let mut get =
                |k: &str| n.remove(k.as_bytes()).ok_or_else(|| bad(&format!("no 'n.{k}'")));
            let (m, r, s) = (get("m")?, get("r")?, get("s")?);
            if !n.is_empty() {
                return Err(bad("'n' holds more than m, r and s"));
            }
            Some(SnapshotClaim {
                seq: number(s, "n.s")?,
                state_root: Hash32(hash(fixed(r, "n.r")?, "n.r")?),
                magnet: text(fixed(m, "n.m")?, "n.m")?,
            })
        }
        Some(_) => return Err(bad("'n' is not a dictionary")),
    };
    if let Some(k) = d.keys().next() {
        return Err(bad(&format!("an unknown key '{}'", String::from_utf8_lossy(k))));
    }
    if list.is_empty() || list.len() > swarmvm_token::MAX_PART_SIGNATURES {
        return Err(bad("'s' does not hold 1 to 7 signatures"));
    }
    let mut signatures = Vec::with_capacity(list.len());
    for entry in list {
        let entry = fixed(entry, "s")?;
        if entry.len() != KEY_PREFIX + 64 {
            return Err(bad("a signature entry is not 72 bytes"));
        }
        let (prefix, sig) = entry.split_at(KEY_PREFIX);
        let id = member_by_prefix(set, prefix)?.0.to_owned();
        let sig: [u8; 64] = sig.try_into().map_err(|_| bad("a signature is not 64 bytes"))?;
        signatures.push((id, sig));
    }
    let parts = HeadParts {
        issuer,
        network: network.to_owned(),
        seq,
        bundle: swarmvm_primitives::BundleId(Hash32(bundle)),
        magnet,
        state_root: Hash32(state_root),
        issued_at,
        expires_at,
        snapshot,
        signatures,
    };
    Ok((ih, parts))
}

impl HeadItem {
    /// What the item says of its head before the head can be rebuilt: the head's seq and
    /// magnet, for an item whose head names a signer the reader does not know yet (a rotation
    /// it has not applied adds it). The item's signature and salt are checked, and the magnet
    /// must name `ih`; nothing else is: the bundles it leads to are verified as any bundle, and
    /// the head itself is read once the reader knows its signers.
    pub fn hint(&self, network: &str) -> Result<(u64, String), DhtError> {
        self.check()?;
        if self.salt != network.as_bytes() {
            return Err(DhtError::Malformed("its salt is not this network's id".into()));
        }
        let bad = |why: &str| DhtError::Malformed(why.to_owned());
        let Value::Dict(d) = Value::decode(&self.value).map_err(|e| bad(&e))? else {
            return Err(bad("not a dictionary"));
        };
        let (Some(Value::Int(seq)), Some(Value::Bytes(magnet)), Some(Value::Bytes(ih))) =
            (d.get(b"sq".as_slice()), d.get(b"m".as_slice()), d.get(b"ih".as_slice()))
        else {
            return Err(bad("no 'sq', 'm' or 'ih'"));
        };
        let seq = u64::try_from(*seq).map_err(|_| bad("'sq' is negative"))?;
        if item_seq(seq, 0).ok().map(|s| s >> 32) != Some(self.seq >> 32) {
            return Err(bad("its seq is not its head's × 2^32 plus a re-sign number"));
        }
        let magnet = String::from_utf8(magnet.clone()).map_err(|_| bad("'m' is not text"))?;
        if ih.len() != 20 || magnet_ih(&magnet).as_deref() != Some(HEXLOWER.encode(ih).as_str()) {
            return Err(bad("its head's magnet does not name its ih"));
        }
        Ok((seq, magnet))
    }

    /// The item `wallet` (an Ed25519 member of `set`) puts for `head`, whose bundle's torrent
    /// has info-hash `ih`, with re-sign number `resigned` (see [`item_seq`]). Refused: a head that cannot be taken
    /// apart, whose magnet names trackers or another info-hash, one signed by anyone but
    /// Ed25519 members, and a value over [`MAX_VALUE`].
    pub fn put(
        wallet: &Wallet,
        head: &str,
        ih: &[u8; 20],
        set: &AuthoritySet,
        resigned: u32,
    ) -> Result<Self, DhtError> {
        let parts = head_parts(head).map_err(|e| DhtError::Head(e.to_string()))?;
        if parts.magnet.contains("&tr=") {
            return Err(DhtError::Head(
                "its magnet names trackers; a head in the DHT carries none".into(),
            ));
        }
        if magnet_ih(&parts.magnet).as_deref() != Some(HEXLOWER.encode(ih).as_str()) {
            return Err(DhtError::Head(format!(
                "its magnet does not name the info-hash {}",
                HEXLOWER.encode(ih)
            )));
        }
        let key = *wallet
            .public_key()
            .ed25519_bytes()
            .filter(|_| set.contains(wallet.id().as_str()))
            .ok_or_else(|| {
                DhtError::Key(format!("{} is not an Ed25519 member of the set", wallet.id()))
            })?;
        let seq = item_seq(parts.seq, resigned)?;
        let value = encode_value(&parts, ih, set)?;
        if encoded_len(&value) > MAX_VALUE {
            return Err(DhtError::TooLarge { size: encoded_len(&value) });
        }
        let salt = parts.network.as_bytes().to_vec();
        let signed = Self::signed(wallet, salt, seq, value)?;
        debug_assert_eq!(signed.key, key);
        Ok(signed)
    }

    /// An item of any `value`, `salt` and `seq` signed by `wallet` (an Ed25519 key), with no
    /// other check: what [`put`](Self::put) signs, and what tests use to make hostile items.
    pub fn signed(
        wallet: &Wallet,
        salt: Vec<u8>,
        seq: i64,
        value: Vec<u8>,
    ) -> Result<Self, DhtError> {
        let key = *wallet
            .public_key()
            .ed25519_bytes()
            .ok_or_else(|| DhtError::Key(format!("{} is not an Ed25519 key", wallet.id())))?;
        let pkcs8 = wallet.to_pkcs8_der();
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|_| DhtError::Key("the wallet's key cannot sign".into()))?;
        let sig = pair.sign(&signable(&salt, seq, &value));
        let signature: [u8; 64] =
            sig.as_ref().try_into().map_err(|_| DhtError::Key("a bad signature length".into()))?;
        Ok(Self { key, salt, seq, value, signature })
    }

    /// The DHT target of its slot.
    pub fn target(&self) -> [u8; 20] {
        target(&self.key, &self.salt)
    }

    /// Checks the item as a DHT node does: the value's size and the signature under its key.
    pub fn check(&self) -> Result<(), DhtError> {
        if encoded_len(&self.value) > MAX_VALUE {
            return Err(DhtError::TooLarge { size: encoded_len(&self.value) });
        }
        UnparsedPublicKey::new(&ED25519, self.key)
            .verify(&signable(&self.salt, self.seq, &self.value), &self.signature)
            .map_err(|_| DhtError::BadSignature)
    }

    /// The head it carries, rebuilt, and BEP 46's `ih`, read against `set` (the set in force
    /// in network `network`, whose id must be the salt): the item is [checked](Self::check),
    /// its key must be an Ed25519 member's, its seq the head's, and the magnet must name `ih`.
    /// The head is not verified here: the caller verifies it with
    /// [`swarmvm_token::verify_head`] (and may accept an expired one to catch up).
    pub fn head(&self, network: &str, set: &AuthoritySet) -> Result<([u8; 20], String), DhtError> {
        self.check()?;
        if self.salt != network.as_bytes() {
            return Err(DhtError::Malformed("its salt is not this network's id".into()));
        }
        if !set.members().any(|(_, k)| k.ed25519_bytes() == Some(&self.key)) {
            return Err(DhtError::Key("its key is not a member's".into()));
        }
        let (ih, parts) = decode_value(&self.value, network, set)?;
        if item_seq(parts.seq, 0).ok().map(|s| s >> 32) != Some(self.seq >> 32) {
            return Err(DhtError::Malformed(format!(
                "its seq {} is not its head's ({}) × 2^32 plus a re-sign number",
                self.seq, parts.seq
            )));
        }
        if magnet_ih(&parts.magnet).as_deref() != Some(HEXLOWER.encode(&ih).as_str()) {
            return Err(DhtError::Malformed("its head's magnet does not name its ih".into()));
        }
        let head = head_from_parts(&parts).map_err(|e| DhtError::Malformed(e.to_string()))?;
        Ok((ih, head))
    }
}
