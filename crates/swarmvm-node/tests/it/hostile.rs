//! The forged input catalogue: hostile tokens, contracts, manifests and bundles, torrents and
//! magnet links, each pushed through the same entry point a peer uses (tokens and contracts
//! inside bundles, torrents through the checks `POST /v1/bundles` makes). Every one must be
//! refused by the rule [`RULES`] names for it, with a one-line reason, without a panic, and
//! with the state root exactly as before. The tally is printed (run with `--nocapture`) and
//! recorded in SECURITY.md.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use swarmvm_bundle::{check_torrent_shape, open_bundle};
use swarmvm_ledger::Ledger;
use swarmvm_node::apply_opened;
use swarmvm_swarm::{MagnetLink, TorrentFile};
use swarmvm_test_support::bencode::{B, encode, file, s, torrent};
use swarmvm_test_support::net::{TestNet, nft, student};
use swarmvm_test_support::{ForgeKey, WEAK_ED25519, b64, ed25519_jwk, forge, forge_raw, sign_raw};
use swarmvm_token::{FileDigest, Network, Operation};
use swarmvm_vm::Hash32;
use swarmvm_wallet::Wallet;

mod dht;
mod sets;

/// The world a case runs in: a ledger that applied a first bundle (registrations and one
/// contract by peer 0), the network, and a stranger's network. Tokens and contracts reach
/// the ledger in bundles, as they reach a node; a bundle whose contract is rejected still
/// applies (with the rejection in its receipt), so the chain grows as cases run.
struct World {
    dir: tempfile::TempDir,
    net: TestNet,
    stranger: TestNet,
    ledger: Ledger,
    /// The first bundle's folder (seq 1).
    first: PathBuf,
    /// The last applied bundle's folder.
    last: PathBuf,
    /// A valid contract already applied (peer 0, nonce 1).
    applied_contract: String,
    /// Bundles made so far, for unique folder names.
    made: usize,
    /// A network governed by an authority set, for the `authority` cases.
    sets: sets::SetWorld,
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
        // The first bundle also registers the hostile modules, so that running them later
        // is a rejected contract that changes nothing.
        let first = dir.path().join("first");
        std::fs::create_dir_all(&first).unwrap();
        let mut ops = BTreeMap::new();
        let mut module_files = Vec::new();
        for (action, fuel, text) in RUNAWAY_MODULES {
            let bytes = swarmvm_wasm::module_bytes(text.as_bytes()).unwrap();
            let hash = swarmvm_wasm::check_module(&bytes).unwrap().hash;
            ops.insert(action.to_owned(), Operation::Wasm { module: hash, fuel });
            let path = dir.path().join(format!("{action}.wasm"));
            std::fs::write(&path, bytes).unwrap();
            module_files.push(path);
        }
        let time = swarmvm_token::IssueTime { now: net.issued_at, ttl: 30 * 86_400 };
        let signer = swarmvm_token::Signer::Wallet(&net.authority);
        let extra = swarmvm_token::issue_operations(&signer, &ops, swarmvm_vm::HANDLER_NAMES, time)
            .unwrap();
        let tokens: String = net.tokens.iter().chain([&extra]).map(|t| format!("{t}\n")).collect();
        std::fs::write(first.join("registration_tokens.txt"), tokens).unwrap();
        std::fs::write(first.join("contracts.jsonl"), format!("{applied_contract}\n")).unwrap();
        let options = swarmvm_bundle::CreateOptions {
            now: net.issued_at,
            modules: &module_files,
            ..Default::default()
        };
        swarmvm_bundle::create_bundle(&first, &[&net.authority], &net.network, &options).unwrap();
        let mut ledger = Ledger::open(&dir.path().join("ledger.redb")).unwrap();
        let bundle = net.open(&first).unwrap();
        apply_opened(&mut ledger, bundle, &net.network).unwrap();
        let last = first.clone();
        let sets = sets::SetWorld::new(dir.path());
        Self { dir, net, stranger, ledger, first, last, applied_contract, made: 0, sets }
    }

    /// The next bundle in the chain holding `tokens`, `contracts` and module files `modules`
    /// (file name below `modules/`, bytes), with a manifest the authority signs over them as
    /// they are, whatever they are (a forged token or module is carried unchecked). It names
    /// the newest rules, as the chain's bundles do (a chain's rules never go back).
    fn carrying_modules(
        &mut self,
        tokens: &[String],
        contracts: &[String],
        modules: &[(String, Vec<u8>)],
    ) -> Result<(), String> {
        self.made += 1;
        let d = self.dir.path().join(format!("carrier-{}", self.made));
        std::fs::create_dir_all(d.join("modules")).unwrap();
        let lines = |l: &[String]| l.iter().map(|t| format!("{t}\n")).collect::<String>();
        std::fs::write(d.join("registration_tokens.txt"), lines(tokens)).unwrap();
        std::fs::write(d.join("contracts.jsonl"), lines(contracts)).unwrap();
        let mut files = digests(&d);
        for (name, bytes) in modules {
            std::fs::write(d.join("modules").join(name), bytes).unwrap();
            let digest = FileDigest { size: bytes.len() as u64, sha256: Hash32::digest(bytes) };
            files.insert(format!("modules/{name}"), digest);
        }
        let claims = json!({
            "iss": self.net.id(), "iat": self.net.issued_at, "seq": self.next_seq(),
            "rules": swarmvm_primitives::Rules::CURRENT.number(),
            "parent": self.last_id(), "files": files.iter().map(|(n, f)| (n.clone(), json!({"size": f.size, "sha256": f.sha256.to_hex()}))).collect::<serde_json::Map<_, _>>(),
        });
        let header = json!({"alg": "EdDSA", "typ": "swarmvm-manifest+jwt", "kid": self.net.id()});
        let manifest = forge(&header, &claims, ForgeKey::Wallet(&self.net.authority));
        std::fs::write(d.join("manifest.jwt"), manifest).unwrap();
        self.bundle_trusted(&d)
    }

    /// An operations token binding `action` to `module`, signed by the authority.
    fn binding(&self, action: &str, module: Hash32) -> String {
        let ops =
            BTreeMap::from([(action.to_owned(), Operation::Wasm { module, fuel: 1_000_000 })]);
        let time = swarmvm_token::IssueTime { now: self.net.issued_at, ttl: 3600 };
        let signer = swarmvm_token::Signer::Wallet(&self.net.authority);
        swarmvm_token::issue_operations(&signer, &ops, swarmvm_vm::HANDLER_NAMES, time).unwrap()
    }

    /// The next bundle in the chain holding `tokens` and `contracts` (one a line), signed by
    /// the authority as given (a forged token is carried as it is, unchecked).
    fn carrying(&mut self, tokens: &[String], contracts: &[String]) -> PathBuf {
        self.made += 1;
        let d = self.dir.path().join(format!("carrier-{}", self.made));
        std::fs::create_dir_all(&d).unwrap();
        let lines = |l: &[String]| l.iter().map(|t| format!("{t}\n")).collect::<String>();
        std::fs::write(d.join("registration_tokens.txt"), lines(tokens)).unwrap();
        std::fs::write(d.join("contracts.jsonl"), lines(contracts)).unwrap();
        let m = self.net.manifest(
            self.next_seq(),
            Some(self.last_id()),
            &digests(&d),
            self.net.issued_at,
        );
        std::fs::write(d.join("manifest.jwt"), m).unwrap();
        d
    }

    /// A registration token in a bundle, as a node gets it: refused, or the case fails.
    fn registration(&mut self, token: String) -> Result<(), String> {
        let d = self.carrying(&[token], &[]);
        self.bundle_trusted(&d)
    }

    /// A contract in a bundle, as a node gets it: a rejection receipt, or the case fails.
    fn contract(&mut self, token: String) -> Result<(), String> {
        let d = self.carrying(&[], &[token]);
        let bundle = self.open(&d).map_err(|e| one_line(&e))?;
        let report = apply_opened(&mut self.ledger, bundle, &self.net.network)
            .map_err(|e| one_line(&e))?
            .report;
        self.last = d;
        match &report.receipts[0] {
            r if r.is_applied() => Ok(()),
            r => Err(r.reason.clone().unwrap_or_default()),
        }
    }

    /// A bundle folder through open + apply, as a node does.
    fn bundle(&mut self, dir: &Path, network: &Network) -> Result<(), String> {
        let snapshot = self.ledger.snapshot().unwrap();
        let set = swarmvm_bundle::set_in_force(&snapshot, network).unwrap();
        drop(snapshot);
        let bundle = open_bundle(dir, network.id(), &set).map_err(|e| one_line(&e))?;
        apply_opened(&mut self.ledger, bundle, network).map_err(|e| one_line(&e))?;
        self.last = dir.to_path_buf();
        Ok(())
    }

    /// The seq the next bundle must have.
    fn next_seq(&self) -> u64 {
        self.ledger.snapshot().unwrap().last_bundle().map_or(1, |b| b.seq + 1)
    }

    /// A bundle folder through open + apply for the ledger's network.
    fn bundle_trusted(&mut self, dir: &Path) -> Result<(), String> {
        let network = self.net.network.clone();
        self.bundle(dir, &network)
    }

    /// Opens a bundle folder against the set in force.
    fn open(
        &self,
        dir: &Path,
    ) -> Result<swarmvm_bundle::OpenedBundle, swarmvm_bundle::BundleError> {
        let snapshot = self.ledger.snapshot().unwrap();
        let set = swarmvm_bundle::set_in_force(&snapshot, &self.net.network).unwrap();
        open_bundle(dir, self.net.network.id(), &set)
    }

    /// A bundle folder `name` with empty files and a manifest over `claims` as given, signed
    /// by the authority with the manifest header, through open + apply.
    fn forged_manifest_bundle(&mut self, name: &str, claims: &Value) -> Result<(), String> {
        let header = json!({"alg": "EdDSA", "typ": "swarmvm-manifest+jwt", "kid": self.net.id()});
        let d =
            self.raw_bundle(name, &forge(&header, claims, ForgeKey::Wallet(&self.net.authority)));
        self.bundle_trusted(&d)
    }

    /// A fresh bundle folder after the last applied one, with `contracts`, to tamper with.
    fn next_bundle(&self, name: &str, contracts: &[String]) -> PathBuf {
        self.net.bundle(self.dir.path(), name, false, contracts, Some(&self.last))
    }

    /// The identity of the last applied bundle.
    fn last_id(&self) -> swarmvm_primitives::BundleId {
        self.net.open(&self.last).unwrap().id()
    }

    /// Signs `dir`'s manifest again over its files as they are now, as a careless or
    /// compromised bundle maker could, then offers it.
    fn resign(
        &mut self,
        dir: &Path,
        seq: u64,
        parent: Option<swarmvm_primitives::BundleId>,
        iat: u64,
    ) -> Result<(), String> {
        let m = self.net.manifest(seq, parent, &digests(dir), iat);
        std::fs::write(dir.join("manifest.jwt"), m).unwrap();
        self.bundle_trusted(dir)
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

/// Fuel the first bundle registers most runaway modules with.
const RUNAWAY_FUEL: u64 = 1_000_000;

/// Modules registered by the first bundle (under the newest rules), with their fuel; running
/// one rejects only its contract.
const RUNAWAY_MODULES: [(&str, u64, &str); 9] = [
    (
        "loop",
        RUNAWAY_FUEL,
        r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (loop $l (br $l)) (i32.const 0)))"#,
    ),
    (
        "grow",
        RUNAWAY_FUEL,
        r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (drop (memory.grow (i32.const 300))) (i32.store (i32.const 0x1000000) (i32.const 1)) (i32.const 0)))"#,
    ),
    (
        "deep",
        RUNAWAY_FUEL,
        r#"(module (memory (export "memory") 1) (func $d (call $d)) (func (export "run") (result i32) (call $d) (i32.const 0)))"#,
    ),
    (
        "failbig",
        RUNAWAY_FUEL,
        r#"(module (import "swarmvm" "fail" (func $f (param i32 i32))) (memory (export "memory") 17) (func (export "run") (result i32) (call $f (i32.const 0) (i32.const 1048576)) (i32.const 0)))"#,
    ),
    (
        "failbin",
        RUNAWAY_FUEL,
        r#"(module (import "swarmvm" "fail" (func $f (param i32 i32))) (memory (export "memory") 1) (data (i32.const 0) "\ff\fe\fd") (func (export "run") (result i32) (call $f (i32.const 0) (i32.const 3)) (i32.const 0)))"#,
    ),
    (
        "bigkey",
        RUNAWAY_FUEL,
        r#"(module (import "swarmvm" "set" (func $s (param i32 i32 i32 i32))) (memory (export "memory") 1) (func (export "run") (result i32) (call $s (i32.const 0) (i32.const 257) (i32.const 0) (i32.const 1)) (i32.const 0)))"#,
    ),
    (
        "bigvalue",
        RUNAWAY_FUEL,
        r#"(module (import "swarmvm" "set" (func $s (param i32 i32 i32 i32))) (memory (export "memory") 2) (func (export "run") (result i32) (call $s (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 65537)) (i32.const 0)))"#,
    ),
    // Removes a new 4-byte key on every turn, for ever: version 1 did not count removals
    // (about 42 MB of pending removals per action in the review); version 2 counts each,
    // absent keys included, and stops it at the action's 4,096 entries, long before its fuel
    // (10 times what those removals cost) runs out.
    (
        "removes",
        10 * RUNAWAY_FUEL,
        r#"(module (import "swarmvm" "remove" (func $r (param i32 i32))) (memory (export "memory") 1) (func (export "run") (result i32) (local $i i32) (loop $l (i32.store (i32.const 0) (local.get $i)) (call $r (i32.const 0) (i32.const 4)) (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l)) (i32.const 0)))"#,
    ),
    // 256 pages that it never touches, with 100,000 fuel: two units an action under version
    // 1 (about 1.3 s of copies per contract of 1,024 actions in the review); under version 2
    // the instance alone costs 10,000 + 256 × 1,024 units.
    (
        "pages256",
        RUNAWAY_FUEL / 10,
        r#"(module (memory (export "memory") 256) (func (export "run") (result i32) (i32.const 0)))"#,
    ),
];

/// A module whose `run` declares `locals` i32 locals and uses the last one: beyond about
/// 30,000 the validator accepts it (up to 50,000) but wasmi cannot compile it.
fn many_locals(locals: usize) -> String {
    let last = locals - 1;
    format!(
        r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (local {}) (local.set {last} (i32.const 1)) (i32.sub (i32.add (local.get 0) (local.get {last})) (i32.const 1))))"#,
        "i32 ".repeat(locals)
    )
}

fn modules() -> Vec<Case> {
    // A bundle registering action `evil` to the module of `text`, and carrying it.
    let register = |w: &mut World, text: &str| {
        let bytes = swarmvm_wasm::module_bytes(text.as_bytes()).unwrap();
        let hash = Hash32::digest(&bytes);
        let token = w.binding("evil", hash);
        w.carrying_modules(&[token], &[], &[(format!("{}.wasm", hash.to_hex()), bytes)])
    };
    let refused_module =
        |name: &'static str, text: &'static str| case("module", name, move |w| register(w, text));
    let mut cases = vec![
        refused_module(
            "a float instruction",
            r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (drop (f32.const 1)) (i32.const 0)))"#,
        ),
        refused_module(
            "an unknown import",
            r#"(module (import "env" "now" (func (result i64))) (memory (export "memory") 1) (func (export "run") (result i32) (i32.const 0)))"#,
        ),
        refused_module(
            "a start function",
            r#"(module (memory (export "memory") 1) (func $s) (start $s) (func (export "run") (result i32) (i32.const 0)))"#,
        ),
        refused_module(
            "bulk memory",
            r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (memory.fill (i32.const 0) (i32.const 0) (i32.const 1)) (i32.const 0)))"#,
        ),
        case("module", "a 2 MiB module", |w| {
            let mut bytes = swarmvm_wasm::module_bytes(RUNAWAY_MODULES[0].2.as_bytes()).unwrap();
            bytes.extend(std::iter::repeat_n(0u8, 2 << 20));
            let hash = Hash32::digest(&bytes);
            let token = w.binding("evil", hash);
            w.carrying_modules(&[token], &[], &[(format!("{}.wasm", hash.to_hex()), bytes)])
        }),
        case("module", "bytes that do not match the hash in the token", |w| {
            let bytes = swarmvm_wasm::module_bytes(RUNAWAY_MODULES[0].2.as_bytes()).unwrap();
            let token = w.binding("evil", Hash32::digest(b"another module"));
            let name = format!("{}.wasm", Hash32::digest(&bytes).to_hex());
            w.carrying_modules(&[token], &[], &[(name, bytes)])
        }),
        case("module", "a module file named by another hash", |w| {
            let bytes = swarmvm_wasm::module_bytes(RUNAWAY_MODULES[0].2.as_bytes()).unwrap();
            let other = Hash32::digest(b"another module");
            let token = w.binding("evil", other);
            w.carrying_modules(&[token], &[], &[(format!("{}.wasm", other.to_hex()), bytes)])
        }),
        case("module", "a registered module missing from the bundle", |w| {
            let token = w.binding("evil", Hash32::digest(b"nowhere"));
            w.carrying_modules(&[token], &[], &[])
        }),
        // The validator allows 50,000 locals a function; wasmi refuses this one, so the check
        // (which compiles as execution will) refuses it at registration.
        case("module", "a function of 40,000 locals", move |w| register(w, &many_locals(40_000))),
        // A million table elements (12.6 ms an action in the review): refused under rules 2.
        refused_module(
            "a table of 1,000,000 elements",
            r#"(module (memory (export "memory") 1) (table 1000000 funcref) (func (export "run") (result i32) (i32.const 0)))"#,
        ),
    ];
    for (action, _, _) in RUNAWAY_MODULES {
        cases.push(case("module", action, move |w| {
            // Rejected contracts use no nonce: each case can sign with nonce 1.
            let c = w.net.contract(1, 1, &[json!({"action": action})]);
            w.contract(c)
        }));
    }
    cases
}

/// The rule that must refuse each case, by category and name (a generated name by its
/// beginning): a part of its one-line reason.
const RULES: &[(&str, &str, &str)] = &[
    ("proof", "a cyclic path", "an empty segment below the root"),
    ("proof", "a path deeper than its key", "more nodes than the key has bytes"),
    ("proof", "an oversized proof", "the proof is over 262144 bytes"),
    ("proof", "split bits out of order", "split depths are not increasing"),
    ("proof", "a split bit past 7", "split depths are not increasing"),
    ("proof", "bytes after the last node", "bytes after the last node"),
    ("proof", "a truncated proof", "truncated"),
    ("proof", "an unknown proof version", "unknown version 2"),
    ("proof", "a proof of another key", "malformed proof"),
    ("proof", "a tampered value", "the proof leads to root"),
    ("proof", "absence claimed for a present entry", "shows the entry present"),
    ("proof", "a value with a field its table lacks", "is not a field of students"),
    ("proof", "a value missing a field", "'department' is missing"),
    ("proof", "an unknown table", "no state table"),
    ("proof", "a proof that is not base64url", "not base64url"),
    ("token", "alg none", "unsigned token (alg 'none')"),
    ("token", "alg None (case variant)", "unsigned token (alg 'none')"),
    ("token", "hs256 keyed with the authority's public pem (key confusion)", "algorithm mismatch"),
    ("token", "hs256 keyed with the raw public key", "algorithm mismatch"),
    ("token", "es256 with r = s = 0 (psychic signature)", "algorithm mismatch"),
    ("token", "signed by a stranger under the authority's kid", "bad signature"),
    ("token", "unknown kid", "is not a member of the authority set"),
    ("token", "kid path traversal", "is not a member of the authority set"),
    ("token", "kid sql injection", "is not a member of the authority set"),
    ("token", "kid with a nul byte", "is not a member of the authority set"),
    ("token", "embedded jwk of the attacker (CVE-2018-0114)", "header member 'jwk' refused"),
    ("token", "jku to an attacker's key set", "header member 'jku' refused"),
    ("token", "x5u to an attacker's certificate", "header member 'x5u'"),
    ("token", "x5c certificate chain", "header member 'x5c'"),
    ("token", "crit extension not understood", "header member 'crit'"),
    ("token", "unencoded payload (b64 false)", "header member 'b64'"),
    ("token", "expired", "token expired at"),
    ("token", "not valid yet", "token not valid before"),
    ("token", "missing exp", "missing claim 'exp'"),
    ("token", "exp as a string", "invalid claim 'exp'"),
    ("token", "duplicate alg in the header", "duplicate member"),
    ("token", "duplicate operations claim (parser differential)", "duplicate member"),
    ("token", "JWE compact (5 parts)", "expected 3 dot-separated parts"),
    (
        "token",
        "JWS JSON serialization (polyglot, CVE-2022-39227)",
        "expected 3 dot-separated parts",
    ),
    ("token", "oversized", "at most 65536 are accepted"),
    ("token", "signature stripped", "empty signature"),
    ("token", "signature with altered trailing bits", "not unpadded base64url"),
    ("token", "nested token (cty JWT)", "header member 'cty'"),
    ("token", "manifest typ on operations claims", "does not match the claims"),
    ("token", "a contract offered as a registration", "is not accepted here"),
    ("token", "private jwk in a wallets token", "private key material"),
    ("token", "a wallet jwk whose alg names another curve (Ed448)", "signs with EdDSA"),
    ("token", "a wallet jwk whose alg is Ed25519 in lower case", "signs with EdDSA"),
    ("token", "a wallet jwk whose alg is Ed25519 with a trailing space", "signs with EdDSA"),
    ("token", "a wallet jwk naming Ed25519 on an rsa key", "signs with RS256"),
    ("token", "the note's private_key member", "private key material"),
    ("token", "a 1024-bit rsa wallet", "at least 2048 are required"),
    ("token", "a handler the catalogue lacks", "unknown handler"),
    ("token", "iss names another key than kid", "issuer mismatch"),
    ("token", "payload not utf-8", "invalid unicode code point"),
    ("token", "exp near 2^63 (lives longer than any token we issue)", "later than 10 years"),
    ("token", "exp 11 years after iat", "later than 10 years"),
    ("token", "a label with a right-to-left override", "no control or invisible format characters"),
    ("token", "a label with a zero-width space", "no control or invisible format characters"),
    ("token", "a label with a byte order mark", "no control or invisible format characters"),
    ("token", "a label with a line separator", "no control or invisible format characters"),
    ("contract", "a signature whose S is not reduced (S + L, malleability)", "bad signature"),
    ("contract", "a replayed contract", "not above the signer's last nonce"),
    ("contract", "signed by another registered wallet under this one's kid", "bad signature"),
    ("contract", "an unregistered wallet", "unknown kid"),
    ("contract", "signed for another network", "contract is for network"),
    ("contract", "hs256 contract", "algorithm mismatch"),
    ("contract", "alg none contract", "unsigned token (alg 'none')"),
    ("contract", "oversized (> 64 KiB)", "at most 65536 are accepted"),
    ("contract", "deeply nested json (10,000 levels)", "recursion limit exceeded"),
    ("contract", "nft metadata nested 20 levels", "nested more than 8 levels"),
    ("contract", "payload not utf-8", "invalid unicode code point"),
    ("contract", "duplicate nonce claim", "duplicate member"),
    ("contract", "duplicate key inside an action", "duplicate member"),
    ("contract", "an unregistered action", "is not a registered operation"),
    ("contract", "an action with an unknown field", "unknown field"),
    ("contract", "nonce 0", "invalid claim 'nonce'"),
    ("contract", "nonce 2^53", "invalid claim 'nonce'"),
    ("contract", "nonce as a float", "invalid claim 'nonce'"),
    ("contract", "actions not a list", "invalid claim 'actions'"),
    ("contract", "1,025 actions", "at most 1024 are allowed"),
    ("contract", "no actions", "contract has no actions"),
    ("contract", "a private key pem in nft metadata", "private key material"),
    ("contract", "registration claims under a contract typ", "does not match the claims"),
    ("contract", "an existing student again (atomic rollback)", "already exists"),
    ("bundle", "a file changed after signing (same size)", "does not match the manifest's sha-256"),
    ("bundle", "a file grown after signing", "but the manifest says"),
    ("bundle", "an extra file", "unexpected entry"),
    ("bundle", "a subfolder", "unexpected entry"),
    ("bundle", "a symlink in place of a file", "unexpected entry"),
    ("bundle", "no manifest", "bundle has no manifest.jwt"),
    ("bundle", "a manifest signed by an untrusted key", "is not a member of the authority set"),
    ("bundle", "a manifest signed with hs256", "hs256 is refused"),
    ("bundle", "a manifest declaring a 1 TiB file", "is more than the 268435456 allowed"),
    ("bundle", "a manifest listing ../x", "must list exactly"),
    ("bundle", "a manifest with seq 0", "invalid claim 'seq'"),
    ("bundle", "seq 2 without a parent", "needs a parent"),
    ("bundle", "a manifest that is not a token", "must hold exactly one JWS serialization"),
    ("bundle", "a skipped seq", "is out of order"),
    ("bundle", "a wrong parent", "has parent"),
    ("bundle", "the applied bundle again (replay)", "is already applied"),
    ("bundle", "another network's authority", "is not a member of the authority set"),
    (
        "bundle",
        "registrations signed by another network's authority",
        "is not a member of the authority set in force",
    ),
    ("bundle", "tokens expired at the manifest's time", "token expired at"),
    (
        "bundle",
        "manifest.jwt with a leading space (re-published copy)",
        "must hold exactly one JWS serialization",
    ),
    (
        "bundle",
        "manifest.jwt with a trailing space (re-published copy)",
        "must hold exactly one JWS serialization",
    ),
    (
        "bundle",
        "manifest.jwt with a CRLF line end (re-published copy)",
        "must hold exactly one JWS serialization",
    ),
    (
        "bundle",
        "manifest.jwt with two newlines (re-published copy)",
        "must hold exactly one JWS serialization",
    ),
    (
        "bundle",
        "manifest.jwt with a no-break space (U+00A0) (re-published copy)",
        "must hold exactly one JWS serialization",
    ),
    (
        "bundle",
        "manifest.jwt with an em space (U+2003) (re-published copy)",
        "must hold exactly one JWS serialization",
    ),
    (
        "bundle",
        "manifest.jwt with a tab (re-published copy)",
        "must hold exactly one JWS serialization",
    ),
    (
        "bundle",
        "manifest.jwt with the token twice (re-published copy)",
        "must hold exactly one JWS serialization",
    ),
    (
        "bundle",
        "manifest.jwt with a BOM (re-published copy)",
        "must hold exactly one JWS serialization",
    ),
    ("bundle", "a manifest signed before its parent", "before its parent"),
    (
        "bundle",
        "contracts.jsonl with a blank line (re-signed)",
        "each line holds exactly one token",
    ),
    (
        "bundle",
        "contracts.jsonl with CRLF line ends (re-signed)",
        "each line holds exactly one token",
    ),
    (
        "bundle",
        "a token line with a leading space (re-signed)",
        "each line holds exactly one token",
    ),
    ("bundle", "a second validly signed bundle for seq 1 (fork)", "fork:"),
    ("torrent", "truncated bencode", "it ends in the middle of a value"),
    ("torrent", "not bencode", "it is not bencode"),
    ("torrent", "a negative length", "invalid value"),
    ("torrent", "piece length zero", "is outside 16384..=67108864"),
    ("torrent", "piece length 1", "is outside 16384..=67108864"),
    ("torrent", "piece length 2 GiB", "is outside 16384..=67108864"),
    ("torrent", "billions of pieces", "pieces; at most"),
    ("torrent", "too few piece hashes", "bytes of hashes"),
    ("torrent", "a ../ path", "unsafe part"),
    ("torrent", "a path with a slash inside a part", "unsafe part"),
    ("torrent", "an empty path part (absolute path)", "unsafe part"),
    ("torrent", "a name of ..", "not a safe folder name"),
    ("torrent", "a name with a nul byte", "not a safe folder name"),
    ("torrent", "the same file twice", "duplicate filenames"),
    ("torrent", "no data at all", "it holds no data"),
    ("torrent", "no files", "it lists"),
    ("torrent", "larger than 16 MiB", "larger than 16777216 bytes"),
    ("torrent", "a bundle torrent declaring a 1 TiB file", "not a bundle torrent"),
    ("torrent", "a bundle torrent declaring 600 MiB in all", "not a bundle torrent"),
    ("torrent", "a single-file torrent", "not a bundle torrent"),
    ("torrent", "a bundle torrent with an extra file", "not a bundle torrent"),
    ("torrent", "a bundle torrent without a manifest", "not a bundle torrent"),
    ("torrent", "a bundle torrent of 5,000 files", "not a bundle torrent"),
    ("torrent", "a torrent of 100,001 files", "it lists"),
    ("torrent", "a bundle torrent with 65 modules", "not a bundle torrent"),
    ("torrent", "a gopher tracker (ssrf)", "tracker scheme"),
    ("torrent", "a file:// tracker", "tracker scheme"),
    ("torrent", "a tracker with credentials", "user name or password"),
    ("torrent", "bytes after the torrent", "bytes follow the value"),
    ("torrent", "keys out of order", "strictly ascending order"),
    ("torrent", "a file's length given twice (parser differential)", "strictly ascending order"),
    ("torrent", "an integer with a leading zero", "not in canonical form"),
    ("torrent", "a torrent named .swarmvm-partial (marker folder)", "not a safe folder name"),
    ("torrent", "a name with a right-to-left override", "not a safe folder name"),
    ("magnet", "no xt", "no xt=urn:btih:"),
    ("magnet", "a v2-only hash", "no xt=urn:btih:"),
    ("magnet", "an info-hash that is not hex", "is not an info-hash"),
    ("magnet", "a short info-hash", "is not an info-hash"),
    ("magnet", "not a url", "not a url"),
    ("magnet", "another scheme", "not a magnet: link"),
    ("magnet", "a tracker that is not a url", "a tracker is not a url"),
    ("magnet", "a gopher tracker (ssrf)", "tracker scheme"),
    ("magnet", "a file:// tracker", "tracker scheme"),
    ("magnet", "an ftp tracker", "tracker scheme"),
    ("magnet", "a javascript: tracker", "tracker scheme"),
    ("magnet", "a tracker with credentials", "user name or password"),
    ("magnet", "longer than 8 KiB", "longer than 8 KiB"),
    ("token", "a wallet whose key is weak ed25519 point", "weak key refused"),
    ("module", "a float instruction", "no floats"),
    ("module", "an unknown import", "env.now is not part of the swarmvm ABI"),
    ("module", "a start function", "has a start function"),
    ("module", "bulk memory", "not valid WebAssembly 1.0"),
    ("module", "a 2 MiB module", "more than the 1048576 allowed"),
    (
        "module",
        "bytes that do not match the hash in the token",
        "neither this bundle nor an earlier one",
    ),
    ("module", "a module file named by another hash", "is not the hash in the module's name"),
    (
        "module",
        "a registered module missing from the bundle",
        "neither this bundle nor an earlier one",
    ),
    ("module", "loop", "module ran out of fuel (1000000 units)"),
    ("module", "grow", "out of bounds"),
    ("module", "deep", "call stack exhausted"),
    ("module", "failbig", "module failed: \\u{0}\\u{0}"),
    ("module", "failbin", "module failed: \u{fffd}\u{fffd}\u{fffd}"),
    ("module", "bigkey", "a key of 257 bytes"),
    ("module", "bigvalue", "a value of 65537 bytes"),
    ("module", "a function of 40,000 locals", "the engine cannot compile the module"),
    ("module", "a table of 1,000,000 elements", "tables have 1000000 elements initially"),
    ("module", "removes", "remove: the action write budget is spent"),
    ("module", "pages256", "module ran out of fuel (100000 units)"),
];

/// The part of its reason that names the rule refusing `case`.
fn rule_of(case: &Case) -> Option<&'static str> {
    let rules = || RULES.iter().chain(sets::RULES).chain(dht::RULES);
    rules()
        .find(|(c, n, _)| *c == case.category && *n == case.name)
        .or_else(|| rules().find(|(c, n, _)| *c == case.category && case.name.starts_with(n)))
        .map(|(_, _, rule)| *rule)
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
    let c = |name: &'static str, f: fn(&World) -> String| {
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
            // 64 bytes are 86 base64url characters; the last one carries 4 unused bits. Set
            // one: the same signature bytes under a second, non-canonical text.
            let mut t = forge(&reg_header(w), &reg_claims(w), ForgeKey::Wallet(authority(w)));
            let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let last = t.pop().unwrap();
            let value = alphabet.find(last).unwrap();
            t.push(alphabet.as_bytes()[value ^ 1] as char);
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
        c("exp near 2^63 (lives longer than any token we issue)", |w| {
            forge(
                &reg_header(w),
                &with(reg_claims(w), "exp", json!(1u64 << 63)),
                ForgeKey::Wallet(authority(w)),
            )
        }),
        c("exp 11 years after iat", |w| {
            let iat = w.net.issued_at - 10;
            let claims =
                with(with(reg_claims(w), "iat", json!(iat)), "exp", json!(iat + 11 * 365 * 86_400));
            forge(&reg_header(w), &claims, ForgeKey::Wallet(authority(w)))
        }),
        c("a label with a right-to-left override", |w| wallets_token(w, "peer\u{202e}1gnp", None)),
        c("a label with a zero-width space", |w| wallets_token(w, "peer\u{200b}1", None)),
        c("a label with a byte order mark", |w| wallets_token(w, "\u{feff}peer1", None)),
        c("a label with a line separator", |w| wallets_token(w, "peer1\u{2028}admin", None)),
        // WebCrypto's `"alg": "Ed25519"` (RFC 9864) is EdDSA on Ed25519 and is taken; other
        // names, near misses and the name on another key type are not.
        c("a wallet jwk whose alg names another curve (Ed448)", |w| {
            wallets_token(
                w,
                "evil",
                Some(jwk_with_alg(w.net.peers[1].public_key().to_jwk(), "Ed448")),
            )
        }),
        c("a wallet jwk whose alg is Ed25519 in lower case", |w| {
            wallets_token(
                w,
                "evil",
                Some(jwk_with_alg(w.net.peers[1].public_key().to_jwk(), "ed25519")),
            )
        }),
        c("a wallet jwk whose alg is Ed25519 with a trailing space", |w| {
            wallets_token(
                w,
                "evil",
                Some(jwk_with_alg(w.net.peers[1].public_key().to_jwk(), "Ed25519 ")),
            )
        }),
        c("a wallet jwk naming Ed25519 on an rsa key", |w| {
            let rsa = swarmvm_test_support::wallet(swarmvm_wallet::Algorithm::Rsa2048, 0);
            wallets_token(w, "evil", Some(jwk_with_alg(rsa.public_key().to_jwk(), "Ed25519")))
        }),
    ]
    .into_iter()
    .chain(WEAK_ED25519.iter().enumerate().map(|(i, hex)| {
        let name: &'static str = Box::leak(
            format!("a wallet whose key is weak ed25519 point #{i} ({}…)", &hex[..8])
                .into_boxed_str(),
        );
        case("token", name, move |w| {
            let t = wallets_token(w, "evil", Some(ed25519_jwk(hex)));
            w.registration(t)
        })
    }))
    .collect()
}

/// `jwk` with its `alg` member replaced.
fn jwk_with_alg(jwk: Value, alg: &str) -> Value {
    with(jwk, "alg", json!(alg))
}

/// A wallets token registering one key (peer 1's, or `jwk`) under `label`, signed by the
/// authority; forged, so that it can carry what `issue_wallets` refuses.
fn wallets_token(w: &World, label: &str, jwk: Option<Value>) -> String {
    let t = w.net.issued_at;
    let jwk = jwk.unwrap_or_else(|| w.net.peers[1].public_key().to_jwk());
    let claims = json!({"iss": id(authority(w)), "iat": t, "nbf": t, "exp": t + 3600,
        "jti": "x", "wallets": [{"label": label, "jwk": jwk}]});
    forge(
        &with(reg_header(w), "typ", json!("swarmvm-wallets+jwt")),
        &claims,
        ForgeKey::Wallet(authority(w)),
    )
}

fn contracts() -> Vec<Case> {
    let c = |name, f: fn(&World) -> String| {
        case("contract", name, move |w| {
            let t = f(w);
            w.contract(t)
        })
    };
    vec![
        c("a signature whose S is not reduced (S + L, malleability)", |w| {
            let token = w.net.contract(1, 1, &[student("S77")]);
            let (input, sig) = token.rsplit_once('.').unwrap();
            let mut sig =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig)
                    .unwrap();
            // The group order L, little-endian (RFC 8032 §5.1).
            const L: [u8; 32] = [
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
                0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ];
            let mut carry = 0u16;
            for (b, l) in sig[32..].iter_mut().zip(L) {
                let sum = u16::from(*b) + u16::from(l) + carry;
                *b = (sum & 0xff) as u8;
                carry = sum >> 8;
            }
            format!("{input}.{}", b64(sig))
        }),
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
            w.bundle_trusted(&d)
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
        case("bundle", "a skipped seq", |w| {
            let ghost = w.next_bundle("ghost", &[]);
            let d = w.net.bundle(w.dir.path(), "third", false, &[], Some(&ghost));
            w.bundle_trusted(&d)
        }),
        case("bundle", "a wrong parent", |w| {
            let d = w.next_bundle("wrong-parent", &[]);
            let other = swarmvm_primitives::BundleId::of_payload(b"another chain");
            w.resign(&d, w.next_seq(), Some(other), w.net.issued_at)
        }),
        case("bundle", "the applied bundle again (replay)", |w| {
            let first = w.first.clone();
            w.bundle_trusted(&first)
        }),
        case("bundle", "another network's authority", |w| {
            let d = w.stranger.bundle(w.dir.path(), "foreign", true, &[], None);
            w.bundle_trusted(&d)
        }),
        case("bundle", "registrations signed by another network's authority", |w| {
            let d = w.next_bundle("mixed", &[]);
            std::fs::write(d.join("registration_tokens.txt"), w.stranger.tokens.join("\n"))
                .unwrap();
            // Re-sign the manifest over the new file, as a careless or compromised bundle
            // maker could (`bundle create` itself would refuse these tokens).
            let m = w.net.manifest(w.next_seq(), Some(w.last_id()), &digests(&d), w.net.issued_at);
            std::fs::write(d.join("manifest.jwt"), m).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "tokens expired at the manifest's time", |w| {
            let late = TestNet::at(1, w.net.issued_at - 40 * 86_400);
            let d = late.bundle(w.dir.path(), "late", true, &[], None);
            // Re-sign at a time the tokens are long expired.
            std::fs::write(
                d.join("manifest.jwt"),
                late.manifest(1, None, &digests(&d), w.net.issued_at),
            )
            .unwrap();
            let mut ledger = Ledger::open(&w.dir.path().join("late.redb")).unwrap();
            let b = late.open(&d).map_err(|e| one_line(&e))?;
            apply_opened(&mut ledger, b, &late.network).map(|_| ()).map_err(|e| one_line(&e))
        }),
        case("bundle", "manifest.jwt with a leading space (re-published copy)", |w| {
            let d = w.next_bundle("pad-56313", &[]);
            let m = std::fs::read_to_string(d.join("manifest.jwt")).unwrap();
            let m = m.trim_end();
            std::fs::write(d.join("manifest.jwt"), format!(" {m}", m = m)).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "manifest.jwt with a trailing space (re-published copy)", |w| {
            let d = w.next_bundle("pad-92954", &[]);
            let m = std::fs::read_to_string(d.join("manifest.jwt")).unwrap();
            let m = m.trim_end();
            std::fs::write(d.join("manifest.jwt"), format!("{m} \n", m = m)).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "manifest.jwt with a CRLF line end (re-published copy)", |w| {
            let d = w.next_bundle("pad-53304", &[]);
            let m = std::fs::read_to_string(d.join("manifest.jwt")).unwrap();
            let m = m.trim_end();
            std::fs::write(d.join("manifest.jwt"), format!("{m}\r\n", m = m)).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "manifest.jwt with two newlines (re-published copy)", |w| {
            let d = w.next_bundle("pad-27827", &[]);
            let m = std::fs::read_to_string(d.join("manifest.jwt")).unwrap();
            let m = m.trim_end();
            std::fs::write(d.join("manifest.jwt"), format!("{m}\n\n", m = m)).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "manifest.jwt with a no-break space (U+00A0) (re-published copy)", |w| {
            let d = w.next_bundle("pad-84703", &[]);
            let m = std::fs::read_to_string(d.join("manifest.jwt")).unwrap();
            let m = m.trim_end();
            std::fs::write(d.join("manifest.jwt"), format!("{m}\u{a0}", m = m)).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "manifest.jwt with an em space (U+2003) (re-published copy)", |w| {
            let d = w.next_bundle("pad-84332", &[]);
            let m = std::fs::read_to_string(d.join("manifest.jwt")).unwrap();
            let m = m.trim_end();
            std::fs::write(d.join("manifest.jwt"), format!("\u{2003}{m}", m = m)).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "manifest.jwt with a tab (re-published copy)", |w| {
            let d = w.next_bundle("pad-62091", &[]);
            let m = std::fs::read_to_string(d.join("manifest.jwt")).unwrap();
            let m = m.trim_end();
            std::fs::write(d.join("manifest.jwt"), format!("{m}\t", m = m)).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "manifest.jwt with the token twice (re-published copy)", |w| {
            let d = w.next_bundle("pad-10025", &[]);
            let m = std::fs::read_to_string(d.join("manifest.jwt")).unwrap();
            let m = m.trim_end();
            std::fs::write(d.join("manifest.jwt"), format!("{m}\n{m}\n", m = m)).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "manifest.jwt with a BOM (re-published copy)", |w| {
            let d = w.next_bundle("pad-50647", &[]);
            let m = std::fs::read_to_string(d.join("manifest.jwt")).unwrap();
            let m = m.trim_end();
            std::fs::write(d.join("manifest.jwt"), format!("\u{feff}{m}", m = m)).unwrap();
            w.bundle_trusted(&d)
        }),
        case("bundle", "a manifest signed before its parent", |w| {
            let d = w.next_bundle("early", &[]);
            w.resign(&d, w.next_seq(), Some(w.last_id()), w.net.issued_at - 10)
        }),
        case("bundle", "contracts.jsonl with a blank line (re-signed)", |w| {
            let c = w.net.contract(1, 1, &[student("S9")]);
            let d = w.next_bundle("blank", &[]);
            std::fs::write(d.join("contracts.jsonl"), format!("{c}\n\n")).unwrap();
            w.resign(&d, w.next_seq(), Some(w.last_id()), w.net.issued_at)
        }),
        case("bundle", "contracts.jsonl with CRLF line ends (re-signed)", |w| {
            let c = w.net.contract(1, 1, &[student("S9")]);
            let d = w.next_bundle("crlf", &[]);
            std::fs::write(d.join("contracts.jsonl"), format!("{c}\r\n")).unwrap();
            w.resign(&d, w.next_seq(), Some(w.last_id()), w.net.issued_at)
        }),
        case("bundle", "a token line with a leading space (re-signed)", |w| {
            let d = w.next_bundle("spaced", &[]);
            std::fs::write(d.join("registration_tokens.txt"), format!(" {}\n", w.net.tokens[0]))
                .unwrap();
            w.resign(&d, w.next_seq(), Some(w.last_id()), w.net.issued_at)
        }),
        case("bundle", "a second validly signed bundle for seq 1 (fork)", |w| {
            let d = w.net.bundle(w.dir.path(), "fork-1", true, &[], None);
            w.bundle_trusted(&d)
        }),
    ]
}

fn torrents() -> Vec<Case> {
    // As `POST /v1/bundles` and the drop folder take a torrent: parsed, then its shape
    // checked against the bundle layout before anything is fetched.
    let t = |name, f: fn() -> Vec<u8>| {
        case("torrent", name, move |_| {
            let t = TorrentFile::from_bytes(&f()).map_err(|e| e.to_string())?;
            let files = t.files().iter().map(|f| (f.path.as_path(), f.length));
            check_torrent_shape(t.is_multi_file(), files).map_err(|e| e.to_string())
        })
    };
    // A well-formed bundle torrent but for what `edit` changes.
    fn bundle_torrent(edit: impl FnOnce(&mut Vec<(&'static str, B)>, &mut Vec<B>)) -> Vec<u8> {
        let mut files = vec![
            file(&["contracts.jsonl"], 10),
            file(&["manifest.jwt"], 900),
            file(&["registration_tokens.txt"], 10),
        ];
        let mut top = vec![];
        edit(&mut top, &mut files);
        let total: i128 = files
            .iter()
            .map(|f| match f {
                B::D(items) => match items[0].1 {
                    B::I(n) => n,
                    _ => 0,
                },
                _ => 0,
            })
            .sum();
        // Few pieces however much is declared, as an attacker would choose.
        let piece_length: i128 = if total > 1 << 30 { 1 << 26 } else { 16384 };
        let pieces = vec![0u8; ((total + piece_length - 1) / piece_length).max(1) as usize * 20];
        let info = B::D(vec![
            ("files", B::L(files)),
            ("name", s("bundle-9")),
            ("piece length", B::I(piece_length)),
            ("pieces", B::S(pieces)),
        ]);
        top.push(("info", info));
        encode(&B::D(top))
    }
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
        t("a bundle torrent declaring a 1 TiB file", || {
            bundle_torrent(|_, f| f[0] = file(&["contracts.jsonl"], 1 << 40))
        }),
        t("a bundle torrent declaring 600 MiB in all", || {
            bundle_torrent(|_, f| {
                f[0] = file(&["contracts.jsonl"], 250 << 20);
                f[2] = file(&["registration_tokens.txt"], 250 << 20);
                f.extend((0..64).map(|i| {
                    B::D(vec![
                        ("length", B::I(1 << 20)),
                        ("path", B::L(vec![s("modules"), s(format!("{i:064x}.wasm"))])),
                    ])
                }));
            })
        }),
        t("a single-file torrent", || {
            let info = B::D(vec![
                ("length", B::I(100)),
                ("name", s("bundle-9")),
                ("piece length", B::I(16384)),
                ("pieces", B::S(vec![0; 20])),
            ]);
            encode(&B::D(vec![("info", info)]))
        }),
        t("a bundle torrent with an extra file", || {
            bundle_torrent(|_, f| f.push(file(&["run-me.sh"], 10)))
        }),
        t("a bundle torrent without a manifest", || {
            bundle_torrent(|_, f| {
                f.remove(1);
            })
        }),
        t("a bundle torrent of 5,000 files", || {
            bundle_torrent(|_, f| {
                f.extend((0..5_000).map(|i| {
                    B::D(vec![("length", B::I(1)), ("path", B::L(vec![s("x"), s(format!("{i}"))]))])
                }));
            })
        }),
        t("a torrent of 100,001 files", || {
            bundle_torrent(|_, f| {
                f.extend((0..100_001).map(|i| {
                    B::D(vec![("length", B::I(1)), ("path", B::L(vec![s("x"), s(format!("{i}"))]))])
                }));
            })
        }),
        t("a bundle torrent with 65 modules", || {
            bundle_torrent(|_, f| {
                f.extend((0..65).map(|i| {
                    B::D(vec![
                        ("length", B::I(10)),
                        ("path", B::L(vec![s("modules"), s(format!("{i:064x}.wasm"))])),
                    ])
                }));
            })
        }),
        t("a gopher tracker (ssrf)", || {
            bundle_torrent(|top, _| top.push(("announce", s("gopher://127.0.0.1:6379/_FLUSHALL"))))
        }),
        t("a file:// tracker", || {
            bundle_torrent(|top, _| top.push(("announce", s("file:///etc/passwd"))))
        }),
        t("a tracker with credentials", || {
            bundle_torrent(|top, _| top.push(("announce", s("http://user:pw@127.0.0.1/announce"))))
        }),
        t("bytes after the torrent", || {
            let mut t = bundle_torrent(|_, _| {});
            t.extend_from_slice(b"garbage");
            t
        }),
        t("keys out of order", || bundle_torrent(|top, _| top.push(("zzz-comment", s("x"))))),
        t("a file's length given twice (parser differential)", || {
            bundle_torrent(|_, f| {
                f[1] = B::D(vec![
                    ("length", B::I(900)),
                    ("length", B::I(1 << 40)),
                    ("path", B::L(vec![s("manifest.jwt")])),
                ])
            })
        }),
        t("an integer with a leading zero", || {
            let mut t = bundle_torrent(|_, _| {});
            let at = t.windows(6).position(|w| w == b"i900e").unwrap_or(0);
            t.splice(at..at + 5, b"i0900e".iter().copied());
            t
        }),
        t("a torrent named .swarmvm-partial (marker folder)", || {
            torrent(".swarmvm-partial", B::L(vec![file(&["a"], 100)]), 16384, vec![0; 20])
        }),
        t("a name with a right-to-left override", || {
            torrent("bundle\u{202e}txt", B::L(vec![file(&["a"], 100)]), 16384, vec![0; 20])
        }),
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
        m(
            "a gopher tracker (ssrf)",
            "magnet:?xt=urn:btih:0000000000000000000000000000000000000000&tr=gopher%3A%2F%2F127.0.0.1%3A6379%2F_x",
        ),
        m(
            "a file:// tracker",
            "magnet:?xt=urn:btih:0000000000000000000000000000000000000000&tr=file%3A%2F%2F%2Fetc%2Fpasswd",
        ),
        m(
            "an ftp tracker",
            "magnet:?xt=urn:btih:0000000000000000000000000000000000000000&tr=ftp%3A%2F%2F127.0.0.1%2Fx",
        ),
        m(
            "a javascript: tracker",
            "magnet:?xt=urn:btih:0000000000000000000000000000000000000000&tr=javascript%3Aalert(1)",
        ),
        m(
            "a tracker with credentials",
            "magnet:?xt=urn:btih:0000000000000000000000000000000000000000&tr=http%3A%2F%2Fu%3Ap%40127.0.0.1%2Fannounce",
        ),
        case("magnet", "longer than 8 KiB", |_| {
            let link = format!("magnet:?xt=urn:btih:{}&dn={}", "0".repeat(40), "a".repeat(9000));
            MagnetLink::parse(&link).map(|_| ()).map_err(|e| e.to_string())
        }),
    ]
}

/// The proof document of student S001 (present, applied by the first bundle) from the world's
/// ledger, and the root it holds against.
fn proof_of_s001(w: &World) -> (swarmvm_node::protocol::ProofAnswer, swarmvm_vm::Hash32) {
    let snapshot = w.ledger.snapshot().unwrap();
    let doc = swarmvm_node::reads::proof(&snapshot, swarmvm_vm::Table::Student, "S001").unwrap();
    (doc, snapshot.state_root())
}

/// Checks S001's proof document, changed by `change` (the document, and the proof's bytes),
/// against the world's root.
fn check_proof(
    w: &World,
    change: impl Fn(&mut swarmvm_node::protocol::ProofAnswer, &mut Vec<u8>),
) -> Result<(), String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (mut doc, root) = proof_of_s001(w);
    let original = doc.proof.clone();
    let mut bytes = b64.decode(&doc.proof).unwrap();
    change(&mut doc, &mut bytes);
    if doc.proof == original {
        doc.proof = b64.encode(&bytes);
    }
    let anchor = swarmvm_node::proofs::Anchor::Root(root);
    swarmvm_node::proofs::verify_answer(&doc, anchor, swarmvm_token::unix_now())
        .map(|_| ())
        .map_err(|e| one_line(&e))
}

/// A node of a proof: a segment, no entry, and the way down with no split.
fn down(segment: &[u8]) -> Vec<u8> {
    let mut node = (segment.len() as u16).to_le_bytes().to_vec();
    node.extend_from_slice(segment);
    node.extend_from_slice(&[0, 1, 0]);
    node
}

fn proofs() -> Vec<Case> {
    let c = |name, f: fn(&mut swarmvm_node::protocol::ProofAnswer, &mut Vec<u8>)| {
        case("proof", name, move |w| check_proof(w, f))
    };
    vec![
        c("a cyclic path (children with empty segments)", |_, p| {
            *p = vec![1];
            p.extend(down(b""));
            for _ in 0..4 {
                p.extend(down(b""));
            }
            p.extend_from_slice(&[0, 0, 0, 0, 0]);
        }),
        c("a path deeper than its key", |_, p| {
            *p = vec![1];
            p.extend(down(b""));
            for _ in 0..40 {
                p.extend(down(b"S"));
            }
            p.extend_from_slice(&[1, 0, b'S', 0, 0, 0]);
        }),
        c("an oversized proof (1 MiB)", |_, p| p.resize(1 << 20, 0)),
        c("split bits out of order", |_, p| {
            *p = vec![1];
            p.extend_from_slice(&[0, 0, 0, 1, 2, 5]);
            p.extend_from_slice(&[0; 32]);
            p.push(3);
            p.extend_from_slice(&[0; 32]);
        }),
        c("a split bit past 7", |_, p| {
            *p = vec![1];
            p.extend_from_slice(&[0, 0, 0, 1, 1, 8]);
            p.extend_from_slice(&[0; 32]);
        }),
        c("bytes after the last node", |_, p| p.push(0)),
        c("a truncated proof", |_, p| {
            p.pop();
        }),
        c("an unknown proof version", |_, p| p[0] = 2),
        c("a proof of another key", |d, _| d.id = "S002".into()),
        c("a tampered value", |d, _| d.value["name"] = "Mallory".into()),
        c("absence claimed for a present entry", |d, _| d.value = Value::Null),
        c("a value with a field its table lacks", |d, _| d.value["admin"] = true.into()),
        c("a value missing a field", |d, _| {
            d.value.as_object_mut().unwrap().remove("department");
        }),
        c("an unknown table", |d, _| d.table = "people".into()),
        c("a proof that is not base64url", |d, p| {
            p.clear();
            d.proof = "not base64!".into();
        }),
    ]
}

#[test]
fn every_hostile_input_is_refused_and_changes_nothing() {
    let mut world = World::new();
    let root = world.ledger.snapshot().unwrap().state_root();
    let all: Vec<Case> = [
        tokens(),
        contracts(),
        bundles(),
        torrents(),
        magnets(),
        modules(),
        proofs(),
        sets::cases(),
        dht::cases(),
    ]
    .into_iter()
    .flatten()
    .collect();
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
            Ok(Err(reason)) => match rule_of(case) {
                None => Err(format!("no rule is expected for it; refused with: {reason}")),
                Some(rule) if !reason.contains(rule) => {
                    Err(format!("refused by another rule than '{rule}': {reason}"))
                }
                Some(_) => Ok(reason),
            },
        };
        let root_now = world.ledger.snapshot().unwrap().state_root();
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
    assert_eq!(world.ledger.snapshot().unwrap().state_root(), root);
}
