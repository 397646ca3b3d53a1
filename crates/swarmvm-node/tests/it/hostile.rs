//! The forged input catalogue: hostile tokens, contracts, manifests and bundles, torrents and
//! magnet links, each pushed through the same entry point a peer uses. Every one must be
//! refused with a one-line reason, without a panic, and with the state root exactly as
//! before. The tally is printed (run with `--nocapture`) and recorded in SECURITY.md.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use swarmvm_ledger::{Batch, Ledger, Source, open_bundle};
use swarmvm_swarm::{MagnetLink, TorrentFile};
use swarmvm_test_support::net::{TestNet, nft, student};
use swarmvm_test_support::{ForgeKey, b64, forge, forge_raw, sign_raw};
use swarmvm_token::{FileDigest, TimeCheck, TrustStore, sign_manifest};
use swarmvm_vm::Hash32;
use swarmvm_wallet::Wallet;

/// The world a case runs in: a ledger that applied one bundle (registrations and one
/// contract by peer 0), the network, and a stranger's network.
struct World {
    dir: tempfile::TempDir,
    net: TestNet,
    stranger: TestNet,
    ledger: Ledger,
    /// The applied bundle's folder (seq 1).
    first: PathBuf,
    /// A valid contract already applied (peer 0, nonce 1).
    applied_contract: String,
}

fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut c = e.source();
    while let Some(x) = c {
        s.push_str(": ");
        s.push_str(&x.to_string());
        c = x.source();
    }
    s
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let net = TestNet::new(2);
        let stranger = TestNet::new(1);
        let applied_contract = net.contract(0, 1, &[student("S001")]);
        let first =
            net.bundle(dir.path(), "first", true, std::slice::from_ref(&applied_contract), None);
        let mut ledger = Ledger::open(&dir.path().join("ledger.redb")).unwrap();
        let bundle = open_bundle(&first, &net.trust).unwrap();
        ledger.apply_bundle(&bundle, &net.trust).unwrap();
        Self { dir, net, stranger, ledger, first, applied_contract }
    }

    fn time(&self) -> TimeCheck {
        TimeCheck::at(self.net.issued_at)
    }

    /// A registration token through the ledger: refused, or the case fails.
    fn registration(&mut self, token: String) -> Result<(), String> {
        let trust = self.net.trust.clone();
        let batch = Batch {
            registrations: &[token],
            contracts: &[],
            trust: &trust,
            time: self.time(),
            source: Source::Exec,
            authority: None,
        };
        match self.ledger.apply(&batch) {
            Err(e) => Err(one_line(&e)),
            Ok(_) => Ok(()),
        }
    }

    /// A contract through the ledger: a rejection receipt, or the case fails.
    fn contract(&mut self, token: String) -> Result<(), String> {
        let trust = self.net.trust.clone();
        let batch = Batch {
            registrations: &[],
            contracts: &[token],
            trust: &trust,
            time: self.time(),
            source: Source::Exec,
            authority: None,
        };
        match self.ledger.apply(&batch) {
            Err(e) => Err(one_line(&e)),
            Ok(report) => match &report.receipts[0] {
                r if r.is_applied() => Ok(()),
                r => Err(r.reason.clone().unwrap_or_default()),
            },
        }
    }

    /// A bundle folder through open + apply, as a node does.
    fn bundle(&mut self, dir: &Path, trust: &TrustStore) -> Result<(), String> {
        let bundle = open_bundle(dir, trust).map_err(|e| one_line(&e))?;
        self.ledger.apply_bundle(&bundle, trust).map(|_| ()).map_err(|e| one_line(&e))
    }

    /// A bundle folder through open + apply with the network's own trust store.
    fn bundle_trusted(&mut self, dir: &Path) -> Result<(), String> {
        let trust = self.net.trust.clone();
        self.bundle(dir, &trust)
    }

    /// A bundle folder `name` with empty files and a manifest over `claims` as given, signed
    /// by the authority with the manifest header, through open + apply.
    fn forged_manifest_bundle(&mut self, name: &str, claims: &Value) -> Result<(), String> {
        let header = json!({"alg": "EdDSA", "typ": "swarmvm-manifest+jwt", "kid": self.net.id()});
        let d =
            self.raw_bundle(name, &forge(&header, claims, ForgeKey::Wallet(&self.net.authority)));
        self.bundle_trusted(&d)
    }

    /// A fresh bundle folder after `first`, with `contracts`, to tamper with.
    fn next_bundle(&self, name: &str, contracts: &[String]) -> PathBuf {
        self.net.bundle(self.dir.path(), name, false, contracts, Some(&self.first))
    }

    /// A folder with the given files and a manifest signed by `signer` over `claims` as given.
    fn raw_bundle(&self, name: &str, manifest: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("registration_tokens.txt"), b"").unwrap();
        std::fs::write(d.join("contracts.jsonl"), b"").unwrap();
        std::fs::write(d.join("manifest.jwt"), manifest).unwrap();
        d
    }
}

fn authority(w: &World) -> &Wallet {
    &w.net.authority
}

fn id(wallet: &Wallet) -> String {
    wallet.id().to_string()
}

fn reg_header(w: &World) -> Value {
    json!({"alg": "EdDSA", "typ": "swarmvm-operations+jwt", "kid": id(authority(w))})
}

fn reg_claims(w: &World) -> Value {
    let t = w.net.issued_at;
    json!({"iss": id(authority(w)), "iat": t, "nbf": t, "exp": t + 3600, "operations": {"add_course": "add_course"}})
}

fn with(mut v: Value, k: &str, x: Value) -> Value {
    v[k] = x;
    v
}

fn without(mut v: Value, k: &str) -> Value {
    v.as_object_mut().unwrap().remove(k);
    v
}

fn contract_header(wallet: &Wallet) -> Value {
    json!({"alg": "EdDSA", "typ": "swarmvm-contract+jwt", "kid": id(wallet)})
}

fn contract_claims(w: &World, wallet: &Wallet, nonce: Value, actions: Value) -> Value {
    json!({"iss": id(wallet), "aud": w.net.id(), "iat": w.net.issued_at, "nonce": nonce, "actions": actions})
}

/// The manifest digests of a bundle folder's two files as they are now.
fn digests(dir: &Path) -> BTreeMap<String, FileDigest> {
    ["contracts.jsonl", "registration_tokens.txt"]
        .iter()
        .map(|n| {
            let b = std::fs::read(dir.join(n)).unwrap();
            ((*n).to_owned(), FileDigest { size: b.len() as u64, sha256: Hash32::digest(&b) })
        })
        .collect()
}

fn empty_digests() -> BTreeMap<String, FileDigest> {
    ["contracts.jsonl", "registration_tokens.txt"]
        .iter()
        .map(|n| ((*n).to_owned(), FileDigest { size: 0, sha256: Hash32::digest(b"") }))
        .collect()
}

/// Minimal bencode for hand-made torrents. Dict keys are written in the order given.
enum B {
    I(i128),
    S(Vec<u8>),
    L(Vec<B>),
    D(Vec<(&'static str, B)>),
}

fn s(x: impl AsRef<[u8]>) -> B {
    B::S(x.as_ref().to_vec())
}

fn enc(b: &B, out: &mut Vec<u8>) {
    match b {
        B::I(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
        B::S(x) => {
            out.extend_from_slice(format!("{}:", x.len()).as_bytes());
            out.extend_from_slice(x);
        }
        B::L(items) => {
            out.push(b'l');
            items.iter().for_each(|i| enc(i, out));
            out.push(b'e');
        }
        B::D(items) => {
            out.push(b'd');
            for (k, v) in items {
                enc(&s(k), out);
                enc(v, out);
            }
            out.push(b'e');
        }
    }
}

/// A torrent with one file of `length` bytes, given piece length and hash bytes.
fn torrent(name: &str, files: B, piece_length: i128, pieces: Vec<u8>) -> Vec<u8> {
    let info = B::D(vec![
        ("files", files),
        ("name", s(name)),
        ("piece length", B::I(piece_length)),
        ("pieces", B::S(pieces)),
    ]);
    let mut out = Vec::new();
    enc(&B::D(vec![("info", info)]), &mut out);
    out
}

fn file(path: &[&str], length: i128) -> B {
    B::D(vec![("length", B::I(length)), ("path", B::L(path.iter().map(s).collect()))])
}

type Run = Box<dyn Fn(&mut World) -> Result<(), String>>;

struct Case {
    category: &'static str,
    name: &'static str,
    run: Run,
}

fn case(
    category: &'static str,
    name: &'static str,
    run: impl Fn(&mut World) -> Result<(), String> + 'static,
) -> Case {
    Case { category, name, run: Box::new(run) }
}

fn tokens() -> Vec<Case> {
    let c = |name, f: fn(&World) -> String| {
        case("token", name, move |w| {
            let t = f(w);
            w.registration(t)
        })
    };
    vec![
        c("alg none", |w| {
            forge(&with(reg_header(w), "alg", json!("none")), &reg_claims(w), ForgeKey::Unsigned)
        }),
        c("alg None (case variant)", |w| {
            forge(&with(reg_header(w), "alg", json!("None")), &reg_claims(w), ForgeKey::Unsigned)
        }),
        c("hs256 keyed with the authority's public pem (key confusion)", |w| {
            let pem = authority(w).public_key().to_spki_pem();
            forge(
                &with(reg_header(w), "alg", json!("HS256")),
                &reg_claims(w),
                ForgeKey::Hmac(pem.as_bytes()),
            )
        }),
        c("hs256 keyed with the raw public key", |w| {
            let raw = *authority(w).public_key().ed25519_bytes().unwrap();
            forge(&with(reg_header(w), "alg", json!("HS256")), &reg_claims(w), ForgeKey::Hmac(&raw))
        }),
        c("es256 with r = s = 0 (psychic signature)", |w| {
            let input = format!(
                "{}.{}",
                b64(with(reg_header(w), "alg", json!("ES256")).to_string()),
                b64(reg_claims(w).to_string())
            );
            format!("{input}.{}", b64([0u8; 64]))
        }),
        c("signed by a stranger under the authority's kid", |w| {
            forge(&reg_header(w), &reg_claims(w), ForgeKey::Wallet(&w.stranger.authority))
        }),
        c("unknown kid", |w| {
            forge(
                &with(reg_header(w), "kid", json!("no-such-key")),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("kid path traversal", |w| {
            forge(
                &with(reg_header(w), "kid", json!("../../../../dev/null")),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("kid sql injection", |w| {
            forge(
                &with(reg_header(w), "kid", json!("' OR '1'='1")),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("kid with a nul byte", |w| {
            forge(
                &with(reg_header(w), "kid", json!(format!("{}\u{0}", id(authority(w))))),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("embedded jwk of the attacker (CVE-2018-0114)", |w| {
            let h = with(
                with(reg_header(w), "kid", json!(id(&w.stranger.authority))),
                "jwk",
                w.stranger.authority.public_key().to_jwk(),
            );
            forge(
                &h,
                &with(reg_claims(w), "iss", json!(id(&w.stranger.authority))),
                ForgeKey::Wallet(&w.stranger.authority),
            )
        }),
        c("jku to an attacker's key set", |w| {
            forge(
                &with(reg_header(w), "jku", json!("http://127.0.0.1:9/jwks")),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("x5u to an attacker's certificate", |w| {
            forge(
                &with(reg_header(w), "x5u", json!("http://127.0.0.1:9/cert")),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("x5c certificate chain", |w| {
            forge(
                &with(reg_header(w), "x5c", json!(["MIIBkTCB+wIJ"])),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("crit extension not understood", |w| {
            forge(
                &with(with(reg_header(w), "crit", json!(["exp"])), "exp", json!(1)),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("unencoded payload (b64 false)", |w| {
            forge(
                &with(reg_header(w), "b64", json!(false)),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("expired", |w| {
            forge(
                &reg_header(w),
                &with(reg_claims(w), "exp", json!(w.net.issued_at - 7200)),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("not valid yet", |w| {
            forge(
                &reg_header(w),
                &with(reg_claims(w), "nbf", json!(w.net.issued_at + 7200)),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("missing exp", |w| {
            forge(&reg_header(w), &without(reg_claims(w), "exp"), ForgeKey::Wallet(authority(w)))
        }),
        c("exp as a string", |w| {
            forge(
                &reg_header(w),
                &with(reg_claims(w), "exp", json!("9999999999")),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("duplicate alg in the header", |w| {
            let h = format!(r#"{{"alg":"EdDSA","kid":"{}","alg":"none"}}"#, id(authority(w)));
            forge_raw(&h, &reg_claims(w).to_string(), ForgeKey::Wallet(authority(w)))
        }),
        c("duplicate operations claim (parser differential)", |w| {
            let body = reg_claims(w).to_string();
            let body = body.replacen('{', r#"{"operations":{"add_course":"add_course"},"#, 1);
            forge_raw(
                &reg_header(w).to_string(),
                &body.replace(r#""add_course":"add_course"}}"#, r#""x":"print_money"}}"#),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("JWE compact (5 parts)", |w| {
            format!(
                "{}.AAAA.BBBB",
                forge(&reg_header(w), &reg_claims(w), ForgeKey::Wallet(authority(w)))
            )
        }),
        c("JWS JSON serialization (polyglot, CVE-2022-39227)", |w| {
            let t = forge(&reg_header(w), &reg_claims(w), ForgeKey::Wallet(authority(w)));
            let p: Vec<&str> = t.split('.').collect();
            json!({"protected": p[0], "payload": p[1], "signature": p[2]}).to_string()
        }),
        c("oversized", |w| {
            forge(
                &reg_header(w),
                &with(reg_claims(w), "pad", json!("A".repeat(70_000))),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("signature stripped", |w| {
            let t = forge(&reg_header(w), &reg_claims(w), ForgeKey::Wallet(authority(w)));
            format!("{}.", &t[..t.rfind('.').unwrap()])
        }),
        c("signature with altered trailing bits", |w| {
            let mut t = forge(&reg_header(w), &reg_claims(w), ForgeKey::Wallet(authority(w)));
            let last = t.pop().unwrap();
            t.push(if last == 'A' { 'B' } else { 'A' });
            t
        }),
        c("nested token (cty JWT)", |w| {
            forge(
                &with(reg_header(w), "cty", json!("JWT")),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("manifest typ on operations claims", |w| {
            forge(
                &with(reg_header(w), "typ", json!("swarmvm-manifest+jwt")),
                &reg_claims(w),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("a contract offered as a registration", |w| w.applied_contract.clone()),
        c("private jwk in a wallets token", |w| {
            let mut jwk = w.stranger.peers[0].public_key().to_jwk();
            jwk["d"] = json!(b64([1u8; 32]));
            let claims = with(
                without(reg_claims(w), "operations"),
                "wallets",
                json!([{"label": "x", "jwk": jwk}]),
            );
            forge(
                &with(reg_header(w), "typ", json!("swarmvm-wallets+jwt")),
                &claims,
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("the note's private_key member", |w| {
            let claims = with(
                without(reg_claims(w), "operations"),
                "wallets",
                json!([{"public_key": "x", "private_key": "-----BEGIN RSA PRIVATE KEY-----"}]),
            );
            forge(
                &with(reg_header(w), "typ", json!("swarmvm-wallets+jwt")),
                &claims,
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("a 1024-bit rsa wallet", |w| {
            let mut n = vec![0xb5u8; 128];
            n[127] |= 1;
            let claims = with(
                without(reg_claims(w), "operations"),
                "wallets",
                json!([{"jwk": {"kty": "RSA", "n": b64(n), "e": "AQAB"}}]),
            );
            forge(
                &with(reg_header(w), "typ", json!("swarmvm-wallets+jwt")),
                &claims,
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("a handler the catalogue lacks", |w| {
            forge(
                &reg_header(w),
                &with(reg_claims(w), "operations", json!({"mint": "print_money"})),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("iss names another key than kid", |w| {
            forge(
                &reg_header(w),
                &with(reg_claims(w), "iss", json!(id(&w.stranger.authority))),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("payload not utf-8", |w| {
            let input =
                format!("{}.{}", b64(reg_header(w).to_string()), b64(b"{\"iss\":\"\xc3\x28\"}"));
            let sig = sign_raw(input.as_bytes(), ForgeKey::Wallet(authority(w)));
            format!("{input}.{}", b64(sig))
        }),
    ]
}

fn contracts() -> Vec<Case> {
    let c = |name, f: fn(&World) -> String| {
        case("contract", name, move |w| {
            let t = f(w);
            w.contract(t)
        })
    };
    vec![
        c("a replayed contract", |w| w.applied_contract.clone()),
        c("signed by another registered wallet under this one's kid", |w| {
            let p0 = &w.net.peers[0];
            forge(
                &contract_header(p0),
                &contract_claims(w, p0, json!(5), json!([student("S9")])),
                ForgeKey::Wallet(&w.net.peers[1]),
            )
        }),
        c("an unregistered wallet", |w| w.stranger.contract(0, 1, &[student("S9")])),
        c("signed for another network", |w| {
            swarmvm_token::sign_contract(&w.net.peers[1], "another-network", 1, &[student("S9")], 0)
                .unwrap()
        }),
        c("hs256 contract", |w| {
            let p = &w.net.peers[1];
            forge(
                &with(contract_header(p), "alg", json!("HS256")),
                &contract_claims(w, p, json!(1), json!([student("S9")])),
                ForgeKey::Hmac(&[7u8; 32]),
            )
        }),
        c("alg none contract", |w| {
            let p = &w.net.peers[1];
            forge(
                &with(contract_header(p), "alg", json!("none")),
                &contract_claims(w, p, json!(1), json!([student("S9")])),
                ForgeKey::Unsigned,
            )
        }),
        c("oversized (> 64 KiB)", |w| {
            let p = &w.net.peers[1];
            let big = json!([{"action": "register_student", "student": {"id": "S9", "name": "x".repeat(70_000), "department": "D"}}]);
            forge(&contract_header(p), &contract_claims(w, p, json!(1), big), ForgeKey::Wallet(p))
        }),
        c("deeply nested json (10,000 levels)", |w| {
            let p = &w.net.peers[1];
            let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
            let body = contract_claims(w, p, json!(1), json!([]))
                .to_string()
                .replace(r#""actions":[]"#, &format!(r#""actions":{deep}"#));
            forge_raw(&contract_header(p).to_string(), &body, ForgeKey::Wallet(p))
        }),
        c("nft metadata nested 20 levels", |w| {
            let p = &w.net.peers[1];
            let meta = (0..20).fold(json!(1), |v, _| json!({"k": v}));
            let action = json!([{"action": "generate_nft", "nft": {"id": "N9", "name": "x", "metadata": meta}}]);
            swarmvm_token::sign_contract(p, &w.net.id(), 1, action.as_array().unwrap(), 0).unwrap()
        }),
        c("payload not utf-8", |w| {
            let p = &w.net.peers[1];
            let input = format!(
                "{}.{}",
                b64(contract_header(p).to_string()),
                b64(b"{\"actions\":[\"\xff\"]}")
            );
            format!("{input}.{}", b64(sign_raw(input.as_bytes(), ForgeKey::Wallet(p))))
        }),
        c("duplicate nonce claim", |w| {
            let p = &w.net.peers[1];
            let body = contract_claims(w, p, json!(1), json!([student("S9")]))
                .to_string()
                .replacen('{', r#"{"nonce":999,"#, 1);
            forge_raw(&contract_header(p).to_string(), &body, ForgeKey::Wallet(p))
        }),
        c("duplicate key inside an action", |w| {
            let p = &w.net.peers[1];
            let body =
                contract_claims(w, p, json!(1), json!([student("S9")])).to_string().replacen(
                    r#""student":"#,
                    r#""student":{"id":"S8","name":"a","department":"b"},"student":"#,
                    1,
                );
            forge_raw(&contract_header(p).to_string(), &body, ForgeKey::Wallet(p))
        }),
        c("an unregistered action", |w| {
            swarmvm_token::sign_contract(
                &w.net.peers[1],
                &w.net.id(),
                1,
                &[json!({"action": "drop_all"})],
                0,
            )
            .unwrap()
        }),
        c("an action with an unknown field", |w| {
            let mut a = student("S9");
            a["student"]["admin"] = json!(true);
            swarmvm_token::sign_contract(&w.net.peers[1], &w.net.id(), 1, &[a], 0).unwrap()
        }),
        c("nonce 0", |w| {
            let p = &w.net.peers[1];
            forge(
                &contract_header(p),
                &contract_claims(w, p, json!(0), json!([student("S9")])),
                ForgeKey::Wallet(p),
            )
        }),
        c("nonce 2^53", |w| {
            let p = &w.net.peers[1];
            forge(
                &contract_header(p),
                &contract_claims(w, p, json!(1u64 << 53), json!([student("S9")])),
                ForgeKey::Wallet(p),
            )
        }),
        c("nonce as a float", |w| {
            let p = &w.net.peers[1];
            forge(
                &contract_header(p),
                &contract_claims(w, p, json!(1.5), json!([student("S9")])),
                ForgeKey::Wallet(p),
            )
        }),
        c("actions not a list", |w| {
            let p = &w.net.peers[1];
            forge(
                &contract_header(p),
                &contract_claims(w, p, json!(1), json!({"action": "register_student"})),
                ForgeKey::Wallet(p),
            )
        }),
        c("1,025 actions", |w| {
            let actions: Vec<Value> = (0..1025).map(|_| json!({"action": "x"})).collect();
            swarmvm_token::sign_contract(&w.net.peers[1], &w.net.id(), 1, &actions, 0).unwrap()
        }),
        c("no actions", |w| {
            swarmvm_token::sign_contract(&w.net.peers[1], &w.net.id(), 1, &[], 0).unwrap()
        }),
        c("a private key pem in nft metadata", |w| {
            let mut a = nft("N9");
            a["nft"]["metadata"]["note"] =
                json!("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI...");
            swarmvm_token::sign_contract(&w.net.peers[1], &w.net.id(), 1, &[a], 0).unwrap()
        }),
        c("registration claims under a contract typ", |w| {
            let p = &w.net.peers[1];
            forge(
                &contract_header(p),
                &json!({"iss": id(p), "operations": {"add_course": "add_course"}, "exp": 9_999_999_999u64}),
                ForgeKey::Wallet(p),
            )
        }),
        c("an existing student again (atomic rollback)", |w| {
            swarmvm_token::sign_contract(
                &w.net.peers[1],
                &w.net.id(),
                1,
                &[student("S100"), student("S001")],
                0,
            )
            .unwrap()
        }),
    ]
}

fn bundles() -> Vec<Case> {
    vec![
        case("bundle", "a file changed after signing (same size)", |w| {
            let d = w.next_bundle("changed", &[w.net.contract(1, 1, &[student("S9")])]);
            let t =
                std::fs::read_to_string(d.join("contracts.jsonl")).unwrap().replacen('e', "f", 1);
            std::fs::write(d.join("contracts.jsonl"), t).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "a file grown after signing", |w| {
            let d = w.next_bundle("grown", &[]);
            std::fs::write(d.join("registration_tokens.txt"), b"extra\n").unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "an extra file", |w| {
            let d = w.next_bundle("extra", &[]);
            std::fs::write(d.join("run-me.sh"), b"#!/bin/sh").unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "a subfolder", |w| {
            let d = w.next_bundle("subdir", &[]);
            std::fs::create_dir(d.join("nested")).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "a symlink in place of a file", |w| {
            let d = w.next_bundle("symlink", &[]);
            std::fs::remove_file(d.join("contracts.jsonl")).unwrap();
            symlink("/etc/passwd", d.join("contracts.jsonl")).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "no manifest", |w| {
            let d = w.next_bundle("no-manifest", &[]);
            std::fs::remove_file(d.join("manifest.jwt")).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "a manifest signed by an untrusted key", |w| {
            let d = w.stranger.bundle(w.dir.path(), "untrusted", true, &[], None);
            w.bundle_trusted(&d)
        }),
        case("bundle", "a manifest signed with hs256", |w| {
            let claims = json!({"iss": "hs256", "iat": 1, "seq": 2, "parent": Hash32::digest(b"x").to_hex(), "files": empty_digests()});
            let d = w.raw_bundle(
                "hs",
                &forge(
                    &json!({"alg": "HS256", "typ": "swarmvm-manifest+jwt", "kid": "hs256"}),
                    &claims,
                    ForgeKey::Hmac(&[5u8; 32]),
                ),
            );
            let mut trust = w.net.trust.clone();
            trust.set_hs256(swarmvm_token::Hs256Key::new(&[5u8; 32], "hs256").unwrap());
            w.bundle(&d, &trust)
        }),
        case("bundle", "a manifest declaring a 1 TiB file", |w| {
            let mut files = empty_digests();
            files.get_mut("contracts.jsonl").unwrap().size = 1 << 40;
            let claims = json!({"iss": w.net.id(), "iat": w.net.issued_at, "seq": 2, "parent": Hash32::digest(b"x").to_hex(), "files": files});
            w.forged_manifest_bundle("huge", &claims)
        }),
        case("bundle", "a manifest listing ../x", |w| {
            let mut files = empty_digests();
            files.insert("../x".into(), FileDigest { size: 0, sha256: Hash32::digest(b"") });
            let claims = json!({"iss": w.net.id(), "iat": w.net.issued_at, "seq": 2, "parent": Hash32::digest(b"x").to_hex(), "files": files});
            w.forged_manifest_bundle("traversal", &claims)
        }),
        case("bundle", "a manifest with seq 0", |w| {
            let claims = json!({"iss": w.net.id(), "iat": w.net.issued_at, "seq": 0, "files": empty_digests()});
            w.forged_manifest_bundle("seq0", &claims)
        }),
        case("bundle", "seq 2 without a parent", |w| {
            let claims = json!({"iss": w.net.id(), "iat": w.net.issued_at, "seq": 2, "files": empty_digests()});
            w.forged_manifest_bundle("orphan", &claims)
        }),
        case("bundle", "a manifest that is not a token", |w| {
            let d = w.raw_bundle("garbage", "\u{fffd}\u{0}garbage");
            w.bundle_trusted(&d)
        }),
        case("bundle", "a skipped seq (3 after 1)", |w| {
            let ghost = w.next_bundle("ghost", &[]);
            let d = w.net.bundle(w.dir.path(), "third", false, &[], Some(&ghost));
            w.bundle_trusted(&d)
        }),
        case("bundle", "a wrong parent", |w| {
            let other = w.net.bundle(w.dir.path(), "other-first", false, &[], None);
            let d = w.net.bundle(w.dir.path(), "wrong-parent", false, &[], Some(&other));
            w.bundle_trusted(&d)
        }),
        case("bundle", "the applied bundle again (replay)", |w| {
            let first = w.first.clone();
            w.bundle_trusted(&first)
        }),
        case("bundle", "a trusted authority of another network", |w| {
            let d = w.stranger.bundle(w.dir.path(), "foreign", true, &[], None);
            let mut trust = w.net.trust.clone();
            trust.add(w.stranger.authority.public_key().clone());
            w.bundle(&d, &trust)
        }),
        case("bundle", "registrations signed by another trusted authority", |w| {
            let d = w.next_bundle("mixed", &[]);
            std::fs::write(d.join("registration_tokens.txt"), w.stranger.tokens.join("\n"))
                .unwrap();
            // Re-sign the manifest over the new file, as a careless or compromised bundle
            // maker could (`bundle create` itself would refuse these tokens).
            let parent = open_bundle(&w.first, &w.net.trust).unwrap().id();
            std::fs::write(
                d.join("manifest.jwt"),
                sign_manifest(&w.net.authority, 2, Some(parent), &digests(&d), w.net.issued_at)
                    .unwrap(),
            )
            .unwrap();
            let mut trust = w.net.trust.clone();
            trust.add(w.stranger.authority.public_key().clone());
            w.bundle(&d, &trust)
        }),
        case("bundle", "tokens expired at the manifest's time", |w| {
            let late = TestNet::at(1, w.net.issued_at - 40 * 86_400);
            let d = late.bundle(w.dir.path(), "late", true, &[], None);
            // Re-sign at a time the tokens are long expired.
            std::fs::write(
                d.join("manifest.jwt"),
                sign_manifest(&late.authority, 1, None, &digests(&d), w.net.issued_at).unwrap(),
            )
            .unwrap();
            let mut ledger = Ledger::open(&w.dir.path().join("late.redb")).unwrap();
            let b = open_bundle(&d, &late.trust).map_err(|e| one_line(&e))?;
            ledger.apply_bundle(&b, &late.trust).map(|_| ()).map_err(|e| one_line(&e))
        }),
    ]
}

fn torrents() -> Vec<Case> {
    let t = |name, f: fn() -> Vec<u8>| {
        case("torrent", name, move |_| {
            TorrentFile::from_bytes(&f()).map(|_| ()).map_err(|e| e.to_string())
        })
    };
    vec![
        t("truncated bencode", || b"d4:infod5:files".to_vec()),
        t("not bencode", || b"this is a torrent, trust me".to_vec()),
        t("a negative length", || torrent("b", B::L(vec![file(&["a"], -5)]), 16384, vec![0; 20])),
        t("piece length zero", || torrent("b", B::L(vec![file(&["a"], 100)]), 0, vec![0; 20])),
        t("piece length 1", || torrent("b", B::L(vec![file(&["a"], 100)]), 1, vec![0; 2000])),
        t("piece length 2 GiB", || {
            torrent("b", B::L(vec![file(&["a"], 100)]), 1 << 31, vec![0; 20])
        }),
        t("billions of pieces", || {
            torrent("b", B::L(vec![file(&["a"], 1 << 50)]), 16384, vec![0; 20])
        }),
        t("too few piece hashes", || {
            torrent("b", B::L(vec![file(&["a"], 40_000)]), 16384, vec![0; 20])
        }),
        t("a ../ path", || torrent("b", B::L(vec![file(&["..", "x"], 100)]), 16384, vec![0; 20])),
        t("a path with a slash inside a part", || {
            torrent("b", B::L(vec![file(&["a/../../x"], 100)]), 16384, vec![0; 20])
        }),
        t("an empty path part (absolute path)", || {
            torrent("b", B::L(vec![file(&["", "etc", "passwd"], 100)]), 16384, vec![0; 20])
        }),
        t("a name of ..", || torrent("..", B::L(vec![file(&["a"], 100)]), 16384, vec![0; 20])),
        t("a name with a nul byte", || {
            torrent("b\0c", B::L(vec![file(&["a"], 100)]), 16384, vec![0; 20])
        }),
        t("the same file twice", || {
            torrent("b", B::L(vec![file(&["a"], 100), file(&["a"], 100)]), 16384, vec![0; 20])
        }),
        t("no data at all", || torrent("b", B::L(vec![file(&["a"], 0)]), 16384, vec![])),
        t("no files", || torrent("b", B::L(vec![]), 16384, vec![])),
        t("larger than 16 MiB", || vec![b'd'; 17 * 1024 * 1024]),
    ]
}

fn magnets() -> Vec<Case> {
    let m = |name, link: &'static str| {
        case("magnet", name, move |_| {
            MagnetLink::parse(link).map(|_| ()).map_err(|e| e.to_string())
        })
    };
    vec![
        m("no xt", "magnet:?dn=bundle"),
        m(
            "a v2-only hash",
            "magnet:?xt=urn:btmh:1220aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
        m(
            "an info-hash that is not hex",
            "magnet:?xt=urn:btih:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ),
        m("a short info-hash", "magnet:?xt=urn:btih:abcd"),
        m("not a url", "magnet stuff"),
        m(
            "another scheme",
            "http://127.0.0.1/torrent?xt=urn:btih:0000000000000000000000000000000000000000",
        ),
        m(
            "a tracker that is not a url",
            "magnet:?xt=urn:btih:0000000000000000000000000000000000000000&tr=%00%01",
        ),
        case("magnet", "longer than 8 KiB", |_| {
            let link = format!("magnet:?xt=urn:btih:{}&dn={}", "0".repeat(40), "a".repeat(9000));
            MagnetLink::parse(&link).map(|_| ()).map_err(|e| e.to_string())
        }),
    ]
}

#[test]
fn every_hostile_input_is_refused_and_changes_nothing() {
    let mut world = World::new();
    let root = world.ledger.state_root();
    let all: Vec<Case> =
        [tokens(), contracts(), bundles(), torrents(), magnets()].into_iter().flatten().collect();
    let mut tally: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &all {
        let entry = tally.entry(case.category).or_default();
        entry.1 += 1;
        let result = catch_unwind(AssertUnwindSafe(|| (case.run)(&mut world)));
        let verdict = match result {
            Err(_) => Err("PANICKED".to_owned()),
            Ok(Ok(())) => Err("ACCEPTED".to_owned()),
            Ok(Err(reason)) if reason.is_empty() || reason.contains('\n') => {
                Err(format!("unclear reason {reason:?}"))
            }
            Ok(Err(reason)) => Ok(reason),
        };
        let root_now = world.ledger.state_root();
        match verdict {
            Ok(reason) if root_now == root => {
                entry.0 += 1;
                println!("refused  {:<8} {:<55} {reason}", case.category, case.name);
            }
            Ok(_) => {
                failures.push(format!("{} / {}: the state root changed", case.category, case.name))
            }
            Err(why) => failures.push(format!("{} / {}: {why}", case.category, case.name)),
        }
    }
    let (refused, tried) = tally.values().fold((0, 0), |(r, t), (a, b)| (r + a, t + b));
    println!("\nrefused {refused} of {tried} hostile inputs:");
    for (category, (r, t)) in &tally {
        println!("  {category:<8} {r}/{t}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(tried >= 60, "only {tried} cases");
    assert_eq!(world.ledger.state_root(), root);
}
