//! Hostile inputs against a network governed by an authority set (2 of A, B, C): threshold
//! arithmetic, signers twice or from outside, mixed and malformed serializations, rotations
//! to impossible sets, registrations by outsiders and tokens applied twice. Each case offers
//! one bundle to a ledger of that network; it must be refused by its rule and leave the
//! ledger's root as it was.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use swarmvm_bundle::{CreateOptions, create_bundle, open_bundle, set_in_force};
use swarmvm_ledger::Ledger;
use swarmvm_node::apply_opened;
use swarmvm_test_support::{ForgeKey, WEAK_ED25519, b64, ed25519_jwk, forge};
use swarmvm_token::{
    AuthoritySet, IssueTime, Network, Signer, WalletEntry, issue_operations, issue_wallets,
};
use swarmvm_wallet::{Algorithm, Wallet};

use super::{Case, World, case, empty_digests, one_line};

const TYP: &str = "swarmvm-manifest+jwt";

/// A ledger of a 2-of-3 network that applied a first bundle signed by A and B.
pub(super) struct SetWorld {
    /// A, B, C.
    keys: Vec<Wallet>,
    /// Not a member.
    outsider: Wallet,
    network: Network,
    ledger: Ledger,
    /// The first bundle's registration tokens (signed by A).
    tokens: Vec<String>,
    time: u64,
    made: usize,
    dir: PathBuf,
}

impl SetWorld {
    pub(super) fn new(dir: &Path) -> Self {
        let dir = dir.join("sets");
        std::fs::create_dir_all(&dir).unwrap();
        let keys: Vec<Wallet> =
            (0..3).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
        let outsider = Wallet::generate(Algorithm::Ed25519).unwrap();
        let set =
            AuthoritySet::new(keys.iter().map(|k| k.public_key().clone()).collect(), 2).unwrap();
        let network = Network::from_set(set);
        let time = swarmvm_test_support::now();
        let t = IssueTime { now: time, ttl: 30 * 86_400 };
        let ops = std::collections::BTreeMap::from([(
            "register_student".to_owned(),
            "register_student".into(),
        )]);
        let peer = WalletEntry { label: "peer".into(), key: outsider.public_key().clone() };
        let tokens = vec![
            issue_operations(&Signer::Wallet(&keys[0]), &ops, swarmvm_vm::HANDLER_NAMES, t)
                .unwrap(),
            issue_wallets(&Signer::Wallet(&keys[0]), &[peer], t).unwrap(),
        ];
        let first = dir.join("first");
        std::fs::create_dir_all(&first).unwrap();
        std::fs::write(first.join("registration_tokens.txt"), tokens.join("\n") + "\n").unwrap();
        std::fs::write(first.join("contracts.jsonl"), "").unwrap();
        let options = CreateOptions { now: time, ..CreateOptions::default() };
        create_bundle(&first, &[&keys[0], &keys[1]], &network, &options).unwrap();
        let mut ledger = Ledger::open(&dir.join("ledger.redb")).unwrap();
        let opened = open_bundle(&first, network.id(), network.genesis()).unwrap();
        apply_opened(&mut ledger, opened, &network).unwrap();
        Self { keys, outsider, network, ledger, tokens, time, made: 0, dir }
    }

    fn id(&self, key: &Wallet) -> String {
        key.id().to_string()
    }

    /// The claims of the next bundle over empty files, signed at the chain's time.
    fn claims(&self) -> Value {
        let last = self.ledger.snapshot().unwrap().last_bundle().unwrap();
        json!({
            "iss": self.id(&self.keys[0]), "aud": self.network.id(), "iat": self.time,
            "seq": last.seq + 1, "parent": last.id.to_string(),
            "files": empty_digests(), "rules": swarmvm_primitives::Rules::CURRENT.number(),
        })
    }

    /// A protected header for `key` (kid = its id).
    fn header(&self, key: &Wallet) -> Value {
        json!({"alg": "EdDSA", "typ": TYP, "kid": self.id(key)})
    }

    /// (protected, signature) of `claims` under `header`, signed by `key`.
    fn part(header: &Value, claims: &Value, key: &Wallet) -> (String, String, String) {
        let token = forge(header, claims, ForgeKey::Wallet(key));
        let mut p = token.split('.').map(str::to_owned);
        (p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
    }

    /// The general JSON serialization of `claims` signed by each of `signers` (a header and
    /// a key each).
    fn general(claims: &Value, signers: &[(Value, &Wallet)]) -> Value {
        let mut payload = String::new();
        let signatures: Vec<Value> = signers
            .iter()
            .map(|(h, k)| {
                let (protected, p, signature) = Self::part(h, claims, k);
                payload = p;
                json!({"protected": protected, "signature": signature})
            })
            .collect();
        json!({"payload": payload, "signatures": signatures})
    }

    /// The general JSON of `claims` signed with each key's own header.
    fn signed(&self, claims: &Value, keys: &[&Wallet]) -> Value {
        let signers: Vec<(Value, &Wallet)> = keys.iter().map(|k| (self.header(k), *k)).collect();
        Self::general(claims, &signers)
    }

    /// Offers `manifest` (its text) with `tokens` and no contracts, as the next bundle.
    fn offer(&mut self, manifest: &str, tokens: &[String]) -> Result<(), String> {
        self.made += 1;
        let d = self.dir.join(format!("case-{}", self.made));
        std::fs::create_dir_all(&d).unwrap();
        let body: String = tokens.iter().map(|t| format!("{t}\n")).collect();
        std::fs::write(d.join("registration_tokens.txt"), body).unwrap();
        std::fs::write(d.join("contracts.jsonl"), "").unwrap();
        std::fs::write(d.join("manifest.jwt"), format!("{manifest}\n")).unwrap();
        let root = self.ledger.snapshot().unwrap().state_root();
        let snapshot = self.ledger.snapshot().unwrap();
        let set = set_in_force(&snapshot, &self.network).unwrap();
        drop(snapshot);
        let result = open_bundle(&d, self.network.id(), &set)
            .map_err(|e| one_line(&e))
            .and_then(|b| {
                apply_opened(&mut self.ledger, b, &self.network).map_err(|e| one_line(&e))
            })
            .map(|_| ());
        if self.ledger.snapshot().unwrap().state_root() != root {
            return Err("the authority-set ledger's root changed".into());
        }
        result
    }

    /// Offers the general JSON `manifest` over empty files.
    fn offer_json(&mut self, manifest: &Value) -> Result<(), String> {
        self.offer(&manifest.to_string(), &[])
    }

    /// Offers a rotation to `set` (JSON as given), signed by the keys at `who` (0 to 2: A,
    /// B, C; 3: the outsider).
    fn rotation(&mut self, set: Value, who: &[usize]) -> Result<(), String> {
        let mut claims = self.claims();
        claims["authority_set"] = set;
        let keys: Vec<&Wallet> =
            who.iter().map(|i| self.keys.get(*i).unwrap_or(&self.outsider)).collect();
        let manifest = self.signed(&claims, &keys);
        self.offer_json(&manifest)
    }

    fn jwk(key: &Wallet) -> Value {
        key.public_key().to_jwk()
    }
}

/// The rule each case must be refused by.
pub(super) const RULES: &[(&str, &str, &str)] = &[
    (
        "authority",
        "one member of two (compact)",
        "signed by 1 member(s) of the authority set; 2 of 3 are required",
    ),
    ("authority", "one member of two (flattened JSON)", "signed by 1 member(s)"),
    ("authority", "one member of two (general JSON)", "signed by 1 member(s)"),
    ("authority", "a member's signature twice", "signs more than once"),
    ("authority", "a member and an outsider", "is not a member of the authority set in force"),
    ("authority", "an outsider alone", "is not a member of the authority set in force"),
    ("authority", "an outsider under a member's kid", "bad signature"),
    ("authority", "a signature over another payload", "bad signature"),
    ("authority", "an unprotected header", "unprotected header members are not accepted"),
    ("authority", "an unknown top-level member", "has an unknown member 'x5c'"),
    ("authority", "no signatures", "carries 0 signatures"),
    ("authority", "65 signatures", "carries 65 signatures"),
    ("authority", "a contract typ on a signature", "does not match the claims"),
    ("authority", "a signature without typ", "has typ 'swarmvm-manifest+jwt'"),
    ("authority", "a signature without kid", "names its signer with 'kid'"),
    ("authority", "hs256 among the signatures", "hs256 is refused"),
    ("authority", "another network's aud", "manifest is for network"),
    ("authority", "no aud", "missing claim 'aud'"),
    ("authority", "iss outside the set", "is not a member of the authority set"),
    ("authority", "a JSON manifest with a leading space", "it holds whitespace"),
    (
        "authority",
        "a rotation to threshold 0",
        "threshold 0 is not between 1 and the number of keys",
    ),
    ("authority", "a rotation to an empty set", "needs at least one key"),
    ("authority", "a rotation with a key twice", "appears twice in the authority set"),
    ("authority", "a rotation to 33 keys", "holds at most 32 keys"),
    ("authority", "a rotation to threshold above its keys", "threshold 3 is not between"),
    ("authority", "a rotation with a private key", "private key material"),
    ("authority", "a rotation to a small-order key", "authority key 1"),
    (
        "authority",
        "a rotation without the added key's signature",
        "which has not signed the manifest",
    ),
    ("authority", "a rotation by one old key and the new one", "signed by 1 member(s)"),
    ("authority", "a rotation with an unknown member", "has an unknown member"),
    (
        "authority",
        "a registration by an outsider",
        "which is not a member of the authority set in force",
    ),
    (
        "authority",
        "the first bundle's tokens again",
        "was already applied; a token is applied once",
    ),
    ("authority", "seq 1 again signed by another subset", "fork: bundle seq 1 is already applied"),
];

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("authority", "one member of two (compact)", |w| {
            let s = &w.sets;
            let claims = s.claims();
            let m = forge(&s.header(&s.keys[0]), &claims, ForgeKey::Wallet(&s.keys[0]));
            w.sets.offer(&m, &[])
        }),
        case("authority", "one member of two (flattened JSON)", |w| {
            let s = &w.sets;
            let (protected, payload, signature) =
                SetWorld::part(&s.header(&s.keys[1]), &s.claims(), &s.keys[1]);
            let m = json!({"payload": payload, "protected": protected, "signature": signature});
            w.sets.offer_json(&m)
        }),
        case("authority", "one member of two (general JSON)", |w| {
            let m = w.sets.signed(&w.sets.claims(), &[&w.sets.keys[2]]);
            w.sets.offer_json(&m)
        }),
        case("authority", "a member's signature twice", |w| {
            let s = &w.sets;
            let m = s.signed(&s.claims(), &[&s.keys[0], &s.keys[0]]);
            w.sets.offer_json(&m)
        }),
        case("authority", "a member and an outsider", |w| {
            let s = &w.sets;
            let m = s.signed(&s.claims(), &[&s.keys[0], &s.outsider]);
            w.sets.offer_json(&m)
        }),
        case("authority", "an outsider alone", |w| {
            let s = &w.sets;
            let mut claims = s.claims();
            claims["iss"] = json!(s.id(&s.outsider));
            let m = forge(&s.header(&s.outsider), &claims, ForgeKey::Wallet(&s.outsider));
            w.sets.offer(&m, &[])
        }),
        case("authority", "an outsider under a member's kid", |w| {
            let s = &w.sets;
            let claims = s.claims();
            let m = SetWorld::general(
                &claims,
                &[(s.header(&s.keys[0]), &s.keys[0]), (s.header(&s.keys[1]), &s.outsider)],
            );
            w.sets.offer_json(&m)
        }),
        case("authority", "a signature over another payload", |w| {
            let s = &w.sets;
            let claims = s.claims();
            let mut m = s.signed(&claims, &[&s.keys[0], &s.keys[1]]);
            let mut other = claims;
            other["iat"] = json!(s.time + 1);
            let theirs = s.signed(&other, &[&s.keys[1]]);
            m["signatures"][1] = theirs["signatures"][0].clone();
            w.sets.offer_json(&m)
        }),
        case("authority", "an unprotected header", |w| {
            let s = &w.sets;
            let mut m = s.signed(&s.claims(), &[&s.keys[0], &s.keys[1]]);
            m["signatures"][0]["header"] = json!({"kid": s.id(&s.keys[2])});
            w.sets.offer_json(&m)
        }),
        case("authority", "an unknown top-level member", |w| {
            let s = &w.sets;
            let mut m = s.signed(&s.claims(), &[&s.keys[0], &s.keys[1]]);
            m["x5c"] = json!(["MIIB"]);
            w.sets.offer_json(&m)
        }),
        case("authority", "no signatures", |w| {
            let s = &w.sets;
            let mut m = s.signed(&s.claims(), &[&s.keys[0]]);
            m["signatures"] = json!([]);
            w.sets.offer_json(&m)
        }),
        case("authority", "65 signatures", |w| {
            let s = &w.sets;
            let mut m = s.signed(&s.claims(), &[&s.keys[0]]);
            let one = m["signatures"][0].clone();
            m["signatures"] = Value::Array(vec![one; 65]);
            w.sets.offer_json(&m)
        }),
        case("authority", "a contract typ on a signature", |w| {
            let s = &w.sets;
            let mut h = s.header(&s.keys[1]);
            h["typ"] = json!("swarmvm-contract+jwt");
            let m = SetWorld::general(
                &s.claims(),
                &[(s.header(&s.keys[0]), &s.keys[0]), (h, &s.keys[1])],
            );
            w.sets.offer_json(&m)
        }),
        case("authority", "a signature without typ", |w| {
            let s = &w.sets;
            let h = json!({"alg": "EdDSA", "kid": s.id(&s.keys[1])});
            let m = SetWorld::general(
                &s.claims(),
                &[(s.header(&s.keys[0]), &s.keys[0]), (h, &s.keys[1])],
            );
            w.sets.offer_json(&m)
        }),
        case("authority", "a signature without kid", |w| {
            let s = &w.sets;
            let h = json!({"alg": "EdDSA", "typ": TYP});
            let m = SetWorld::general(
                &s.claims(),
                &[(s.header(&s.keys[0]), &s.keys[0]), (h, &s.keys[1])],
            );
            w.sets.offer_json(&m)
        }),
        case("authority", "hs256 among the signatures", |w| {
            let s = &w.sets;
            let claims = s.claims();
            let mut m = s.signed(&claims, &[&s.keys[0]]);
            let hs = forge(
                &json!({"alg": "HS256", "typ": TYP, "kid": s.id(&s.keys[1])}),
                &claims,
                ForgeKey::Hmac(&[7u8; 32]),
            );
            let parts: Vec<&str> = hs.split('.').collect();
            m["signatures"]
                .as_array_mut()
                .unwrap()
                .push(json!({"protected": parts[0], "signature": parts[2]}));
            w.sets.offer_json(&m)
        }),
        case("authority", "another network's aud", |w| {
            let s = &w.sets;
            let mut claims = s.claims();
            claims["aud"] = json!(s.id(&s.keys[0]));
            let m = s.signed(&claims, &[&s.keys[0], &s.keys[1]]);
            w.sets.offer_json(&m)
        }),
        case("authority", "no aud", |w| {
            let s = &w.sets;
            let mut claims = s.claims();
            claims.as_object_mut().unwrap().remove("aud");
            let m = s.signed(&claims, &[&s.keys[0], &s.keys[1]]);
            w.sets.offer_json(&m)
        }),
        case("authority", "iss outside the set", |w| {
            let s = &w.sets;
            let mut claims = s.claims();
            claims["iss"] = json!(s.id(&s.outsider));
            let m = s.signed(&claims, &[&s.keys[0], &s.keys[1]]);
            w.sets.offer_json(&m)
        }),
        case("authority", "a JSON manifest with a leading space", |w| {
            let s = &w.sets;
            let m = s.signed(&s.claims(), &[&s.keys[0], &s.keys[1]]);
            w.sets.offer(&format!(" {m}"), &[])
        }),
        case("authority", "a rotation to threshold 0", |w| {
            let set = json!({"threshold": 0, "authorities": [SetWorld::jwk(first(w))]});
            w.sets.rotation(set, &[0, 1])
        }),
        case("authority", "a rotation to an empty set", |w| {
            w.sets.rotation(json!({"threshold": 1, "authorities": []}), &[0, 1])
        }),
        case("authority", "a rotation with a key twice", |w| {
            let j = SetWorld::jwk(first(w));
            w.sets.rotation(json!({"threshold": 1, "authorities": [j, j]}), &[0, 1])
        }),
        case("authority", "a rotation to 33 keys", |w| {
            let keys: Vec<Value> = (0..33)
                .map(|_| Wallet::generate(Algorithm::Ed25519).unwrap().public_key().to_jwk())
                .collect();
            w.sets.rotation(json!({"threshold": 1, "authorities": keys}), &[0, 1])
        }),
        case("authority", "a rotation to threshold above its keys", |w| {
            let s = &w.sets;
            let set = json!({"threshold": 3, "authorities": [SetWorld::jwk(&s.keys[0]), SetWorld::jwk(&s.keys[1])]});
            w.sets.rotation(set, &[0, 1])
        }),
        case("authority", "a rotation with a private key", |w| {
            let mut jwk = SetWorld::jwk(first(w));
            jwk["d"] = json!(b64([1u8; 32]));
            w.sets.rotation(json!({"threshold": 1, "authorities": [jwk]}), &[0, 1])
        }),
        case("authority", "a rotation to a small-order key", |w| {
            let weak = ed25519_jwk(WEAK_ED25519[1]);
            let set = json!({"threshold": 1, "authorities": [SetWorld::jwk(first(w)), weak]});
            w.sets.rotation(set, &[0, 1])
        }),
        case("authority", "a rotation without the added key's signature", |w| {
            let s = &w.sets;
            let set = json!({"threshold": 1, "authorities": [SetWorld::jwk(&s.keys[0]), SetWorld::jwk(&s.outsider)]});
            w.sets.rotation(set, &[0, 1])
        }),
        case("authority", "a rotation by one old key and the new one", |w| {
            let s = &w.sets;
            let set = json!({"threshold": 1, "authorities": [SetWorld::jwk(&s.outsider)]});
            w.sets.rotation(set, &[0, 3])
        }),
        case("authority", "a rotation with an unknown member", |w| {
            let set =
                json!({"threshold": 1, "authorities": [SetWorld::jwk(first(w))], "network": "x"});
            w.sets.rotation(set, &[0, 1])
        }),
        case("authority", "a registration by an outsider", |w| {
            let s = &w.sets;
            let t = IssueTime { now: s.time, ttl: 3600 };
            let entry = WalletEntry { label: "x".into(), key: s.keys[2].public_key().clone() };
            let token = issue_wallets(&Signer::Wallet(&s.outsider), &[entry], t).unwrap();
            let manifest = manifest_over(s, std::slice::from_ref(&token));
            w.sets.offer(&manifest, &[token])
        }),
        case("authority", "the first bundle's tokens again", |w| {
            let tokens = w.sets.tokens.clone();
            let manifest = manifest_over(&w.sets, &tokens);
            w.sets.offer(&manifest, &tokens)
        }),
        case("authority", "seq 1 again signed by another subset", |w| {
            let s = &w.sets;
            let claims = json!({
                "iss": s.id(&s.keys[2]), "aud": s.network.id(), "iat": s.time + 1, "seq": 1,
                "files": empty_digests(),
            });
            let m = s.signed(&claims, &[&s.keys[1], &s.keys[2]]);
            w.sets.offer_json(&m)
        }),
    ]
}

/// Member A.
fn first(w: &World) -> &Wallet {
    &w.sets.keys[0]
}

/// A 2-signature manifest over a bundle holding `tokens` and no contracts.
fn manifest_over(s: &SetWorld, tokens: &[String]) -> String {
    let body: String = tokens.iter().map(|t| format!("{t}\n")).collect();
    let mut claims = s.claims();
    claims["files"]["registration_tokens.txt"] = json!({
        "size": body.len(),
        "sha256": swarmvm_vm::Hash32::digest(body.as_bytes()).to_hex(),
    });
    s.signed(&claims, &[&s.keys[0], &s.keys[1]]).to_string()
}
