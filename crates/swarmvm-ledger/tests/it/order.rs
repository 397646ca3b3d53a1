//! Bundles apply in order: `seq` is the next one, `parent` is the last bundle's identity and
//! `iat` is not below its parent's. A second bundle for an applied seq is a fork, kept as
//! evidence; a ledger that follows bundles takes no local batches and the other way round.
//! Every bundle here is a real folder with a signed manifest, opened and verified against the
//! ledger's last commit as a node does.

use std::path::{Path, PathBuf};

use swarmvm_bundle::{BatchError, verify_bundle, verify_local};
use swarmvm_ledger::{Evidence, Ledger};
use swarmvm_primitives::{BundleId, Rules};
use swarmvm_test_support::net::{TestNet, sign_single_under, student};
use swarmvm_token::MANIFEST_FILE;

struct Chain<'n> {
    net: &'n TestNet,
    ledger: Ledger,
    dir: tempfile::TempDir,
}

impl Chain<'_> {
    /// Opens, verifies and commits the bundle in `dir`; a fork is recorded as evidence.
    fn apply(&mut self, dir: &Path) -> Result<(), BatchError> {
        let opened = self.net.open(dir).unwrap();
        let snapshot = self.ledger.snapshot().unwrap();
        match verify_bundle(opened, &snapshot, &self.net.network) {
            Ok(verified) => {
                drop(snapshot);
                self.ledger.commit(&verified).unwrap();
                Ok(())
            }
            Err(BatchError::Fork { seq, kept, other, kept_manifest, other_manifest }) => {
                drop(snapshot);
                let evidence = Evidence {
                    seq,
                    kept,
                    other,
                    kept_manifest: kept_manifest.clone(),
                    other_manifest: other_manifest.clone(),
                    seen_at: 1,
                };
                self.ledger.record_evidence(&evidence).unwrap();
                Err(BatchError::Fork { seq, kept, other, kept_manifest, other_manifest })
            }
            Err(e) => Err(e),
        }
    }

    fn exec(&mut self, contracts: &[String]) -> Result<(), BatchError> {
        let snapshot = self.ledger.snapshot().unwrap();
        let verified = verify_local(
            &self.net.tokens,
            contracts,
            &self.net.network,
            &snapshot,
            self.net.issued_at,
        )?;
        drop(snapshot);
        self.ledger.commit(&verified).unwrap();
        Ok(())
    }

    /// A bundle folder `name` holding `contracts` (and the tokens when `tokens`), next after
    /// the folder `after`.
    fn bundle(
        &self,
        name: &str,
        tokens: bool,
        contracts: &[String],
        after: Option<&Path>,
    ) -> PathBuf {
        self.net.bundle(self.dir.path(), name, tokens, contracts, after)
    }

    fn root(&self) -> swarmvm_primitives::Hash32 {
        self.ledger.snapshot().unwrap().state_root()
    }
}

fn chain(net: &TestNet) -> Chain<'_> {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    Chain { net, ledger, dir }
}

fn id_of(dir: &Path, net: &TestNet) -> BundleId {
    net.open(dir).unwrap().id()
}

/// Signs `dir`'s manifest again with another `iat`, keeping its files, seq and parent (what
/// `bundle create` refuses to make when the iat is below the parent's).
fn resign_at(dir: &Path, net: &TestNet, iat: u64) {
    let m = net.open(dir).unwrap().manifest;
    let jwt = net.manifest(m.seq, m.parent, &m.files, iat);
    std::fs::write(dir.join(MANIFEST_FILE), jwt).unwrap();
}

#[test]
fn bundles_apply_only_in_order() {
    let net = TestNet::new(1);
    let mut c = chain(&net);
    let c1 = vec![net.contract(0, 1, &[student("S1")])];
    let c2 = vec![net.contract(0, 2, &[student("S2")])];
    let b1 = c.bundle("b1", true, &c1, None);
    let b1_other = c.bundle("b1-other", true, &[], None);
    let b2 = c.bundle("b2", false, &c2, Some(&b1));
    let b2_wrong = c.bundle("b2-wrong", false, &c2, Some(&b1_other));
    let (m1, m2) = (id_of(&b1, &net), id_of(&b2, &net));

    let err = c.apply(&b2).unwrap_err();
    assert!(matches!(err, BatchError::OutOfOrder { seq: 2, expected: 1 }), "{err}");
    assert_eq!(c.ledger.snapshot().unwrap().log_len(), 0);
    c.apply(&b1).unwrap();
    let err = c.apply(&b1).unwrap_err();
    assert!(matches!(err, BatchError::AlreadyApplied { seq: 1, id } if id == m1), "{err}");
    let err = c.apply(&b2_wrong).unwrap_err();
    assert!(matches!(err, BatchError::WrongParent { seq: 2, .. }), "{err}");
    assert!(err.to_string().contains(&m1.to_string()), "names the last bundle: {err}");

    let b2_early = c.bundle("b2-early", false, &c2, Some(&b1));
    resign_at(&b2_early, &net, net.issued_at - 1);
    let err = c.apply(&b2_early).unwrap_err();
    assert!(
        matches!(err, BatchError::BeforeParent { seq: 2, iat, parent_iat }
            if iat == net.issued_at - 1 && parent_iat == net.issued_at),
        "an iat below the parent's: {err}"
    );
    assert_eq!(c.ledger.snapshot().unwrap().log_len(), 1, "refusals changed nothing");

    c.apply(&b2).unwrap();
    let snapshot = c.ledger.snapshot().unwrap();
    let last = snapshot.last_bundle().unwrap();
    assert_eq!((last.seq, last.id, last.issued_at), (2, m2, net.issued_at));
    let record = snapshot.bundle(1).unwrap().unwrap();
    let manifest = std::fs::read_to_string(b1.join(MANIFEST_FILE)).unwrap();
    assert_eq!((record.id, record.parent, record.manifest.as_str()), (m1, None, manifest.trim()));
    drop(snapshot);
    let path = c.ledger.path().to_path_buf();
    drop(c.ledger);
    let reopened = Ledger::open(&path).unwrap();
    assert_eq!(
        reopened.snapshot().unwrap().last_bundle(),
        Some(last),
        "order position survives reopening"
    );
}

#[test]
fn a_second_bundle_for_an_applied_seq_is_a_fork_kept_as_evidence() {
    let net = TestNet::new(1);
    let mut c = chain(&net);
    let b1 = c.bundle("b1", true, &[], None);
    let evil = c.bundle("evil", true, &[net.contract(0, 1, &[student("S1")])], None);
    let b2 = c.bundle("b2", false, &[], Some(&b1));
    let (m1, evil_id) = (id_of(&b1, &net), id_of(&evil, &net));
    c.apply(&b1).unwrap();
    let root = c.root();
    for _ in 0..2 {
        let err = c.apply(&evil).unwrap_err();
        assert!(
            matches!(err, BatchError::Fork { seq: 1, kept, other, .. } if kept == m1 && other == evil_id),
            "{err}"
        );
        assert!(!err.is_fatal());
    }
    assert_eq!(c.root(), root, "the fork changed nothing");
    let evidence = c.ledger.snapshot().unwrap().evidence().unwrap();
    assert_eq!(evidence.len(), 1, "kept once: {evidence:?}");
    let e = &evidence[0];
    assert_eq!((e.seq, e.kept, e.other), (1, m1, evil_id));
    let read = |dir: &Path| std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
    assert_eq!(e.kept_manifest, read(&b1).trim());
    assert_eq!(e.other_manifest, read(&evil).trim());
    // The chain goes on from the bundle kept.
    c.apply(&b2).unwrap();
    assert_eq!(c.ledger.snapshot().unwrap().evidence().unwrap().len(), 1);
}

#[test]
fn a_ledger_either_follows_bundles_or_runs_local_batches() {
    let net = TestNet::new(1);
    let mut following = chain(&net);
    let b1 = following.bundle("b1", true, &[], None);
    following.apply(&b1).unwrap();
    let root = following.root();
    let err = following.exec(&[net.contract(0, 1, &[student("S1")])]).unwrap_err();
    assert!(matches!(err, BatchError::FollowsNetwork { seq: 1, .. }), "{err}");
    assert!(err.to_string().contains("nonces that later bundles need"), "{err}");
    assert_eq!(following.root(), root);

    let mut local = chain(&net);
    local.exec(&[net.contract(0, 1, &[student("S1")])]).unwrap();
    assert!(local.ledger.snapshot().unwrap().is_local());
    let root = local.root();
    let err = local.apply(&b1).unwrap_err();
    assert!(matches!(err, BatchError::HasLocalBatches), "{err}");
    assert_eq!(local.root(), root);
    let path = local.ledger.path().to_path_buf();
    drop(local.ledger);
    let reopened = Ledger::open(&path).unwrap();
    assert!(reopened.snapshot().unwrap().is_local(), "the mode survives reopening");
}

#[test]
fn a_bundle_may_not_name_older_rules_than_its_parent() {
    let net = TestNet::new(1);
    let mut c = chain(&net);
    // A chain under rules 1 may move up to 2, and the ledger remembers where it is.
    let b1 = net.bundle_under(c.dir.path(), "b1", true, &[], None, Rules::V1);
    c.apply(&b1).unwrap();
    assert_eq!(c.ledger.snapshot().unwrap().last_bundle().unwrap().rules, Rules::V1);
    let b2 = net.bundle_under(c.dir.path(), "b2", false, &[], Some(&b1), Rules::V2);
    c.apply(&b2).unwrap();
    let path = c.ledger.path().to_path_buf();
    drop(std::mem::replace(&mut c.ledger, Ledger::open(&c.dir.path().join("other.redb")).unwrap()));
    c.ledger = Ledger::open(&path).unwrap();
    assert_eq!(c.ledger.snapshot().unwrap().last_bundle().unwrap().rules, Rules::V2);
    // A bundle after it signed under rules 1 (elsewhere: `bundle create` refuses) is refused,
    // and changes nothing.
    let b3 = net.bundle_under(c.dir.path(), "b3", false, &[], Some(&b2), Rules::V2);
    let m = net.open(&b3).unwrap().manifest;
    let v1 = sign_single_under(&net.authority, m.seq, m.parent, &m.files, net.issued_at, Rules::V1);
    std::fs::write(b3.join(MANIFEST_FILE), v1).unwrap();
    let root = c.root();
    let err = c.apply(&b3).unwrap_err();
    assert!(
        matches!(
            err,
            BatchError::RulesLowered { seq: 3, rules: Rules::V1, parent_rules: Rules::V2 }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("names rules version 1, below its parent's (2)"), "{err}");
    assert_eq!((c.ledger.snapshot().unwrap().log_len(), c.root()), (2, root));
}

#[test]
fn the_first_bundle_under_rules_3_hashes_the_trie_again_and_older_roots_stay_as_they_were() {
    use swarmvm_vm::{NodeHashing, Table, encode_key, entry_leaf, root_of_sorted, verify_proof};
    let net = TestNet::new(1);
    let mut c = chain(&net);
    let contracts = [net.contract(0, 1, &[student("S1")]), net.contract(0, 2, &[student("S2")])];
    let b1 = net.bundle_under(c.dir.path(), "b1", true, &contracts, None, Rules::V2);
    c.apply(&b1).unwrap();
    let snapshot = c.ledger.snapshot().unwrap();
    assert_eq!(snapshot.node_hashing(), NodeHashing::Flat);
    let leaves = |ledger: &Ledger| {
        let mut out = Vec::new();
        let s = ledger.snapshot().unwrap();
        s.for_each_entry(&mut |table, id, record| {
            out.push((encode_key(table, id), entry_leaf(table, id, &record)));
            true
        })
        .unwrap();
        out
    };
    let flat = c.root();
    assert_eq!(root_of_sorted(leaves(&c.ledger), NodeHashing::Flat), Some(flat), "rules 2: flat");
    drop(snapshot);
    // An empty bundle under rules 3: the same entries, hashed the new way.
    let b2 = net.bundle_under(c.dir.path(), "b2", false, &[], Some(&b1), Rules::V3);
    c.apply(&b2).unwrap();
    let binary = c.root();
    assert_ne!(binary, flat);
    assert_eq!(
        root_of_sorted(leaves(&c.ledger), NodeHashing::Binary),
        Some(binary),
        "rules 3: binary"
    );
    let snapshot = c.ledger.snapshot().unwrap();
    assert_eq!(snapshot.node_hashing(), NodeHashing::Binary);
    let log = snapshot.log(1, 10).unwrap();
    assert_eq!((log[0].state_root, log[1].state_root), (flat, binary), "the log keeps both");
    swarmvm_ledger::check(&c.ledger.reader()).unwrap();
    // Entries are proved against the new root, present and absent.
    let s1 = snapshot.record(Table::Student, "S1").unwrap().unwrap();
    let key = encode_key(Table::Student, "S1");
    let leaf = entry_leaf(Table::Student, "S1", &s1);
    verify_proof(&snapshot.prove(&key).unwrap(), &key, Some(&leaf), &binary).unwrap();
    let absent = encode_key(Table::Student, "S3");
    verify_proof(&snapshot.prove(&absent).unwrap(), &absent, None, &binary).unwrap();
    // Reopened, the ledger still knows its hashing, and a later bundle builds on it.
    let path = c.ledger.path().to_path_buf();
    drop(snapshot);
    drop(std::mem::replace(&mut c.ledger, Ledger::open(&c.dir.path().join("other.redb")).unwrap()));
    c.ledger = Ledger::open(&path).unwrap();
    let b3 = net.bundle_under(
        c.dir.path(),
        "b3",
        false,
        &[net.contract(0, 3, &[student("S3")])],
        Some(&b2),
        Rules::V3,
    );
    c.apply(&b3).unwrap();
    assert_eq!(root_of_sorted(leaves(&c.ledger), NodeHashing::Binary), Some(c.root()));
    swarmvm_ledger::check(&c.ledger.reader()).unwrap();
}

/// `token` signed again by `wallet` (an Ed25519 key) with a nonce `R` that has a component
/// of order 2: the cofactored equation of ZIP-215 holds, the cofactorless one of the strict
/// check does not. Only the key's holder can make such a signature.
fn with_mixed_order_signature(token: &str, wallet: &swarmvm_wallet::Wallet) -> String {
    use base64::Engine as _;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest as _, Sha512};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let der = wallet.to_pkcs8_der();
    let seed = &der[der.len() - 32..];
    let mut expanded: [u8; 64] = Sha512::digest(seed).into();
    expanded[0] &= 248;
    expanded[31] &= 127;
    expanded[31] |= 64;
    let a = Scalar::from_bytes_mod_order(expanded[..32].try_into().unwrap());
    let public = wallet.public_key().ed25519_bytes().unwrap();
    let input = &token[..token.rfind('.').unwrap()];
    // The point of order 2, (0, -1).
    let mut minus_one = [0xff; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    let torsion = CompressedEdwardsY(minus_one).decompress().unwrap();
    let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(input.as_bytes()).into());
    let big_r = (B * r + torsion).compress();
    let mut h = Sha512::new();
    h.update(big_r.as_bytes());
    h.update(public);
    h.update(input.as_bytes());
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = r + k * a;
    let mut signature = big_r.to_bytes().to_vec();
    signature.extend_from_slice(s.as_bytes());
    format!("{input}.{}", b64.encode(signature))
}

#[test]
fn a_contract_signed_with_a_mixed_order_nonce_is_rejected_under_rules_3_and_applies_under_rules_4()
{
    let net = TestNet::new(1);
    let mut c = chain(&net);
    let b1 = net.bundle_under(c.dir.path(), "b1", true, &[], None, Rules::V3);
    c.apply(&b1).unwrap();
    let signed = net.contract(0, 1, &[student("S1")]);
    let odd = with_mixed_order_signature(&signed, &net.peers[0]);
    assert_ne!(odd, signed);
    // Rules 3: the strict check refuses it, and the contract is rejected with that reason.
    let b2 = net.bundle_under(
        c.dir.path(),
        "b2",
        false,
        std::slice::from_ref(&odd),
        Some(&b1),
        Rules::V3,
    );
    c.apply(&b2).unwrap();
    let snapshot = c.ledger.snapshot().unwrap();
    let receipt = &snapshot.receipts(2, 10).unwrap()[0];
    assert!(!receipt.is_applied());
    assert!(receipt.reason.as_deref().unwrap().contains("signature"), "{receipt:?}");
    assert!(snapshot.record(swarmvm_vm::Table::Student, "S1").unwrap().is_none());
    drop(snapshot);
    // Rules 4 (ZIP-215, in a batch with good signatures): the same token applies.
    let others: Vec<String> =
        (2..40).map(|n| net.contract(0, n, &[student(&format!("T{n}"))])).collect();
    let mut contracts = vec![odd];
    contracts.extend(others);
    let b3 = net.bundle_under(c.dir.path(), "b3", false, &contracts, Some(&b2), Rules::V4);
    c.apply(&b3).unwrap();
    let snapshot = c.ledger.snapshot().unwrap();
    let receipts = snapshot.receipts(3, 100).unwrap();
    assert_eq!(receipts.len(), 39);
    assert!(
        receipts.iter().all(|r| r.is_applied()),
        "{:?}",
        receipts.iter().find(|r| !r.is_applied())
    );
    assert!(snapshot.record(swarmvm_vm::Table::Student, "S1").unwrap().is_some());
}

#[test]
fn under_rules_4_a_bad_signature_among_good_ones_rejects_that_contract_only() {
    let net = TestNet::new(2);
    let mut c = chain(&net);
    let b1 = net.bundle_under(c.dir.path(), "b1", true, &[], None, Rules::V4);
    c.apply(&b1).unwrap();
    // The two wallets' contracts alternate, so that the batches, which group a wallet's
    // signatures, hold them in another order than the bundle's.
    let mut contracts: Vec<String> = (1..=100u64)
        .map(|n| net.contract((n % 2) as usize, n.div_ceil(2), &[student(&format!("S{n}"))]))
        .collect();
    // Contracts 31 (wallet 0) and 50 (wallet 1) with another contract's signature.
    let stolen = contracts[10].rsplit('.').next().unwrap().to_owned();
    for i in [31, 50] {
        let at = contracts[i].rfind('.').unwrap();
        contracts[i] = format!("{}.{stolen}", &contracts[i][..at]);
    }
    // Contract 70 for another network, with a stolen signature too: refused for its
    // signature first, as the strict check of rules 3 refuses it.
    let other = swarmvm_token::sign_contract(
        &net.peers[0],
        "another-network",
        71,
        &[student("S71")],
        net.issued_at,
    )
    .unwrap();
    let at = other.rfind('.').unwrap();
    contracts[70] = format!("{}.{stolen}", &other[..at]);
    let b2 = net.bundle_under(c.dir.path(), "b2", false, &contracts, Some(&b1), Rules::V4);
    c.apply(&b2).unwrap();
    let receipts = c.ledger.snapshot().unwrap().receipts(2, 200).unwrap();
    let rejected: Vec<(u32, String)> = receipts
        .iter()
        .filter(|r| !r.is_applied())
        .map(|r| (r.index, r.reason.clone().unwrap_or_default()))
        .collect();
    let at: Vec<u32> = rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(at, [31, 50, 70], "{rejected:?}");
    assert!(rejected.iter().all(|(_, why)| why.contains("signature")), "{rejected:?}");
}
