//! Authority sets: the public keys that govern a network and how many of them (the threshold)
//! must sign a bundle; the network file that hands the first set to nodes; network ids.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value, json};
use swarmvm_primitives::{Hash32, NetworkId};
use swarmvm_wallet::{PublicKey, WalletId};

use crate::json::{find_private_key_material, parse_strict};
use crate::kind::shorten;
use crate::trust::TrustStore;

/// Most keys one authority set may hold.
pub const MAX_AUTHORITIES: usize = 32;
/// The largest network file read, in bytes.
pub const MAX_NETWORK_FILE: usize = 64 * 1024;

/// Why a set of keys and a threshold is not a valid authority set, or a network file not
/// valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// No keys.
    #[error("an authority set needs at least one key")]
    Empty,
    /// More keys than allowed.
    #[error("an authority set holds at most {MAX_AUTHORITIES} keys, not {0}")]
    TooManyKeys(usize),
    /// A threshold outside 1 ..= the number of keys.
    #[error("threshold {threshold} is not between 1 and the number of keys ({keys})")]
    BadThreshold {
        /// The threshold given.
        threshold: u64,
        /// How many keys the set holds.
        keys: usize,
    },
    /// The same key twice.
    #[error("key {0} appears twice in the authority set")]
    DuplicateKey(String),
    /// A key that is not a usable public key (weak, private, malformed).
    #[error("authority key {index}: {reason}")]
    BadKey {
        /// Its position (0-based).
        index: usize,
        /// Why.
        reason: String,
    },
    /// JSON of the wrong shape.
    #[error("{0}")]
    Malformed(String),
    /// A network file whose `network` is not the id of its set.
    #[error("network file says network {stated} but its authorities and threshold give {computed}")]
    IdMismatch {
        /// The `network` member.
        stated: String,
        /// The id computed from the set.
        computed: String,
    },
}

/// An authority set or network file that breaks a rule is refused.
impl swarmvm_primitives::Classify for SetError {
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        swarmvm_primitives::ErrorClass::Refused
    }
}

/// Public keys with a threshold: K distinct members must sign. Keys are held by wallet id;
/// the trust store of the members and the canonical text are made once, when the set is.
#[derive(Clone)]
pub struct AuthoritySet {
    threshold: usize,
    keys: BTreeMap<WalletId, PublicKey>,
    trust: TrustStore,
    canonical: String,
}

impl PartialEq for AuthoritySet {
    fn eq(&self, other: &Self) -> bool {
        self.threshold == other.threshold && self.keys == other.keys
    }
}

impl Eq for AuthoritySet {}

impl fmt::Debug for AuthoritySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthoritySet")
            .field("threshold", &self.threshold)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AuthoritySet {
    /// A set of `keys` (distinct, at most [`MAX_AUTHORITIES`]) needing `threshold` of them.
    pub fn new(keys: Vec<PublicKey>, threshold: u64) -> Result<Self, SetError> {
        if keys.is_empty() {
            return Err(SetError::Empty);
        }
        if keys.len() > MAX_AUTHORITIES {
            return Err(SetError::TooManyKeys(keys.len()));
        }
        let n = keys.len();
        let mut map = BTreeMap::new();
        for key in keys {
            let id = key.id();
            if map.insert(id.clone(), key).is_some() {
                return Err(SetError::DuplicateKey(id.to_string()));
            }
        }
        let threshold = usize::try_from(threshold)
            .ok()
            .filter(|k| (1..=n).contains(k))
            .ok_or(SetError::BadThreshold { threshold, keys: n })?;
        Ok(Self::of(threshold, map))
    }

    fn of(threshold: usize, keys: BTreeMap<WalletId, PublicKey>) -> Self {
        let trust = TrustStore::with_keys(keys.values());
        let list: Vec<Value> = keys.values().map(PublicKey::to_jwk).collect();
        let canonical = json!({"threshold": threshold, "authorities": list}).to_string();
        Self { threshold, keys, trust, canonical }
    }

    /// The set of one key with threshold 1 (a network started with `--trust`).
    pub fn single(key: PublicKey) -> Self {
        Self::of(1, BTreeMap::from([(key.id(), key)]))
    }

    /// How many distinct members must sign.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The members, by id.
    pub fn members(&self) -> impl Iterator<Item = (&WalletId, &PublicKey)> {
        self.keys.iter()
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: a set has at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The member with this id.
    pub fn get(&self, id: &str) -> Option<&PublicKey> {
        id.parse::<WalletId>().ok().and_then(|id| self.keys.get(&id))
    }

    /// True when `id` is a member.
    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// The members as a trust store (each key pinned to its algorithm).
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// The network id a network started with this set has: the unpadded base64url SHA-256 of
    /// the canonical JSON `{"authorities":[sorted wallet ids],"threshold":K}`.
    pub fn network_id(&self) -> NetworkId {
        let ids: Vec<&str> = self.keys.keys().map(WalletId::as_str).collect();
        let canonical = json!({"authorities": ids, "threshold": self.threshold}).to_string();
        NetworkId::from_digest(Hash32::digest(canonical.as_bytes()).as_bytes())
    }

    /// The id of the single member of a set of one with threshold 1: such a set names the
    /// network of a first-version (`--trust`) key.
    pub fn sole_member(&self) -> Option<&WalletId> {
        match (self.threshold, self.keys.len()) {
            (1, 1) => self.keys.keys().next(),
            _ => None,
        }
    }

    /// `{"threshold": K, "authorities": [public JWKs, by id]}`, the form of a manifest's
    /// `authority_set` and of the state's entry.
    pub fn to_json(&self) -> Value {
        let keys: Vec<Value> = self.keys.values().map(PublicKey::to_jwk).collect();
        json!({"threshold": self.threshold, "authorities": keys})
    }

    /// The canonical text of [`AuthoritySet::to_json`] (members sorted, no spaces).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// Reads `{"threshold": K, "authorities": [JWKs]}` (no other members).
    pub fn from_json(value: &Value) -> Result<Self, SetError> {
        let Value::Object(map) = value else {
            return Err(SetError::Malformed("an authority set is not a json object".into()));
        };
        only_members(map, &["threshold", "authorities"], "an authority set")?;
        Self::from_members(map)
    }

    fn from_members(map: &Map<String, Value>) -> Result<Self, SetError> {
        let threshold = map.get("threshold").and_then(Value::as_u64).ok_or_else(|| {
            SetError::Malformed("'threshold' is missing or not a non-negative integer".into())
        })?;
        let Some(Value::Array(list)) = map.get("authorities") else {
            return Err(SetError::Malformed("'authorities' is missing or not a list".into()));
        };
        if list.len() > MAX_AUTHORITIES {
            return Err(SetError::TooManyKeys(list.len()));
        }
        let mut keys = Vec::with_capacity(list.len());
        for (index, jwk) in list.iter().enumerate() {
            if let Some(place) = find_private_key_material(jwk) {
                return Err(SetError::BadKey {
                    index,
                    reason: format!("private key material ({place}); only public keys belong here"),
                });
            }
            let key = PublicKey::from_jwk(jwk)
                .map_err(|e| SetError::BadKey { index, reason: e.to_string() })?;
            keys.push(key);
        }
        Self::new(keys, threshold)
    }
}

fn only_members(map: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), SetError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(SetError::Malformed(format!(
            "{what} has an unknown member '{}'; allowed: {}",
            shorten(k),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A network's root of trust: its id and its first authority set (the `network.json` that
/// `swarmvm network init` writes and nodes are given out of band), or a single trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    id: NetworkId,
    genesis: AuthoritySet,
}

impl Network {
    /// The network started with `set` (`network init`): its id is the set's
    /// [`AuthoritySet::network_id`].
    pub fn from_set(set: AuthoritySet) -> Self {
        Self { id: set.network_id(), genesis: set }
    }

    /// The first-version network of one key (`--trust`): its id is the key's wallet id.
    pub fn single(key: PublicKey) -> Self {
        Self { id: key.id().into(), genesis: AuthoritySet::single(key) }
    }

    /// Reads a network file, `{"network": ID, "threshold": K, "authorities": [JWKs]}`, and
    /// checks that ID is the set's id.
    pub fn parse(bytes: &[u8]) -> Result<Self, SetError> {
        if bytes.len() > MAX_NETWORK_FILE {
            return Err(SetError::Malformed(format!(
                "a network file is at most {MAX_NETWORK_FILE} bytes, this one {}",
                bytes.len()
            )));
        }
        let value = parse_strict(bytes)
            .map_err(|e| SetError::Malformed(format!("not a network file: {e}")))?;
        let Value::Object(map) = value else {
            return Err(SetError::Malformed("a network file is a json object".into()));
        };
        only_members(&map, &["network", "threshold", "authorities"], "a network file")?;
        let Some(Value::String(stated)) = map.get("network") else {
            return Err(SetError::Malformed("'network' is missing or not a string".into()));
        };
        let set = AuthoritySet::from_members(&map)?;
        let network = Self::from_set(set);
        if network.id != stated.as_str() {
            return Err(SetError::IdMismatch {
                stated: shorten(stated),
                computed: network.id.to_string(),
            });
        }
        Ok(network)
    }

    /// The network file's JSON text (one line).
    pub fn to_file(&self) -> String {
        let mut value = self.genesis.to_json();
        value["network"] = Value::String(self.id.to_string());
        value.to_string()
    }

    /// The network id as text: contracts' and manifests' `aud`.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// The network id.
    pub fn network_id(&self) -> &NetworkId {
        &self.id
    }

    /// The authority set the network started with, in force until a bundle rotates it.
    pub fn genesis(&self) -> &AuthoritySet {
        &self.genesis
    }

    /// True for a first-version network of one key, whose id is that key's wallet id: its
    /// set is implied by its id and is never written into the state until it rotates.
    pub fn is_single_key(&self) -> bool {
        self.genesis.sole_member().is_some_and(|m| m.as_str() == self.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use swarmvm_wallet::{Algorithm, Wallet};

    fn keys(n: usize) -> Vec<PublicKey> {
        (0..n).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap().public_key().clone()).collect()
    }

    #[test]
    fn threshold_and_membership_rules() {
        let k = keys(3);
        assert!(AuthoritySet::new(k.clone(), 2).is_ok());
        assert_eq!(
            AuthoritySet::new(k.clone(), 0),
            Err(SetError::BadThreshold { threshold: 0, keys: 3 })
        );
        assert!(matches!(AuthoritySet::new(k.clone(), 4), Err(SetError::BadThreshold { .. })));
        assert!(matches!(
            AuthoritySet::new(k.clone(), u64::MAX),
            Err(SetError::BadThreshold { .. })
        ));
        assert_eq!(AuthoritySet::new(vec![], 1), Err(SetError::Empty));
        let twice = vec![k[0].clone(), k[1].clone(), k[0].clone()];
        assert!(matches!(AuthoritySet::new(twice, 2), Err(SetError::DuplicateKey(_))));
        assert!(matches!(
            AuthoritySet::new(keys(MAX_AUTHORITIES + 1), 1),
            Err(SetError::TooManyKeys(_))
        ));
    }

    #[test]
    fn network_id_is_the_hash_of_sorted_ids_and_ignores_key_order() {
        let k = keys(3);
        let a = AuthoritySet::new(k.clone(), 2).unwrap();
        let b = AuthoritySet::new(vec![k[2].clone(), k[0].clone(), k[1].clone()], 2).unwrap();
        assert_eq!(a.network_id(), b.network_id());
        let mut ids: Vec<String> = k.iter().map(|k| k.id().to_string()).collect();
        ids.sort();
        let canonical = format!(
            "{{\"authorities\":[\"{}\",\"{}\",\"{}\"],\"threshold\":2}}",
            ids[0], ids[1], ids[2]
        );
        let expected = URL_SAFE_NO_PAD.encode(Hash32::digest(canonical.as_bytes()).as_bytes());
        assert_eq!(a.network_id().as_str(), expected);
        let c = AuthoritySet::new(k, 3).unwrap();
        assert_ne!(a.network_id(), c.network_id(), "the threshold is part of the id");
    }

    #[test]
    fn network_file_round_trip_and_refusals() {
        let net = Network::from_set(AuthoritySet::new(keys(3), 2).unwrap());
        let text = net.to_file();
        assert_eq!(Network::parse(text.as_bytes()).unwrap(), net);
        assert!(!net.is_single_key());
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v["threshold"] = json!(3);
        assert!(matches!(
            Network::parse(v.to_string().as_bytes()),
            Err(SetError::IdMismatch { .. })
        ));
        v["threshold"] = json!(2);
        v["extra"] = json!(1);
        assert!(matches!(Network::parse(v.to_string().as_bytes()), Err(SetError::Malformed(_))));
        let dup = text.replacen("{", "{\"threshold\":2,", 1);
        assert!(Network::parse(dup.as_bytes()).is_err(), "duplicated member");
        let single = Network::single(keys(1).remove(0));
        assert!(single.is_single_key());
    }
}
