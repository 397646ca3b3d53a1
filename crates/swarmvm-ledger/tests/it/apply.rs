//! Batches: registrations, contracts, receipts, persistence, formats, and the check that
//! recomputes everything.

use redb::{Database, ReadableTable as _, TableDefinition};
use swarmvm_bundle::{BatchError, verify_local};
use swarmvm_ledger::{ApplyError, BatchReport, CheckError, Ledger, OpenError, Outcome, check};
use swarmvm_test_support::net::{TestNet, course, nft, student, vote};
use swarmvm_token::Network;
use swarmvm_vm::{Record, Table, nonce_of};

/// Verifies a local batch at the network's time against the ledger and commits it.
fn local(
    ledger: &mut Ledger,
    trust: &Network,
    regs: &[String],
    contracts: &[String],
    time: u64,
) -> Result<BatchReport, String> {
    let snapshot = ledger.snapshot().unwrap();
    let verified =
        verify_local(regs, contracts, trust, &snapshot, time).map_err(|e| format!("{e:?}"))?;
    drop(snapshot);
    ledger.commit(&verified).map_err(|e| format!("{e:?}"))
}

fn at(net: &TestNet) -> u64 {
    net.issued_at
}

#[test]
fn registrations_and_contracts_apply_and_survive_reopening() {
    let net = TestNet::new(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let contracts = vec![
        net.contract(0, 1, &[student("S001")]),
        net.contract(1, 1, &[course("C001")]),
        net.contract(0, 2, &[vote("P001")]),
        net.contract(1, 2, &[vote("P001")]),
        net.contract(2, 1, &[nft("NFT001")]),
    ];
    let root = {
        let mut ledger = Ledger::open(&path).unwrap();
        let report = local(&mut ledger, &net.network, &net.tokens, &contracts, at(&net)).unwrap();
        assert_eq!(report.entry.registrations, 2);
        assert_eq!((report.entry.applied, report.entry.rejected), (5, 0));
        assert!(report.receipts.iter().all(|r| r.is_applied()));
        let snapshot = ledger.snapshot().unwrap();
        assert_eq!(snapshot.network(), Some(net.id().as_str()));
        assert_eq!(report.state_root, snapshot.state_root());
        report.state_root
    };
    let ledger = Ledger::open(&path).unwrap();
    let snapshot = ledger.snapshot().unwrap();
    assert_eq!(snapshot.state_root(), root);
    assert_eq!(snapshot.network(), Some(net.id().as_str()));
    assert_eq!(snapshot.log_len(), 1);
    assert_eq!(
        snapshot.record(Table::Proposal, "P001").unwrap(),
        Some(Record::Proposal { description: "Increase Research Funding".into(), votes: 2 })
    );
    let Some(Record::Nft { owner, .. }) = snapshot.record(Table::Nft, "NFT001").unwrap() else {
        panic!("nft")
    };
    assert_eq!(owner.as_str(), net.peers[2].id().as_str());
    assert_eq!(snapshot.receipts(1, 100).unwrap().len(), 5);
    assert_eq!(snapshot.log(1, 10).unwrap()[0].state_root, root);
    let report = check(&ledger.reader()).unwrap();
    assert_eq!((report.state_root, report.batches, report.receipts), (root, 1, 5));
    assert!(report.entries > 10 && report.trie_nodes > report.entries);
}

#[test]
fn rejected_contracts_leave_receipts_and_change_nothing() {
    let net = TestNet::new(2);
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    let first = [net.contract(0, 1, &[student("S001")])];
    local(&mut ledger, &net.network, &net.tokens, &first, at(&net)).unwrap();
    let root = ledger.snapshot().unwrap().state_root();
    let stranger = TestNet::new(1);
    let other_network =
        swarmvm_token::sign_contract(&net.peers[0], "another-network", 9, &[student("S9")], 0)
            .unwrap();
    let contracts = vec![
        net.contract(0, 1, &[student("S002")]), // replayed nonce
        net.contract(1, 1, &[student("S001")]), // student exists
        net.contract(1, 1, &[student("S003"), course("C1"), student("S003")]), // not atomic-safe
        stranger.contract(0, 1, &[student("S004")]), // unregistered wallet
        other_network,                          // wrong network
        "not a token".to_owned(),
    ];
    let report = local(&mut ledger, &net.network, &[], &contracts, at(&net)).unwrap();
    assert_eq!(report.entry.applied, 0);
    assert_eq!(report.state_root, root, "rejected contracts change nothing");
    let reasons: Vec<&str> = report.receipts.iter().map(|r| r.reason.as_deref().unwrap()).collect();
    assert!(
        reasons[0].contains("nonce 1 is not above the signer's last nonce 1"),
        "{}",
        reasons[0]
    );
    assert!(reasons[1].contains("student S001 already exists"), "{}", reasons[1]);
    assert!(
        reasons[2].starts_with("action 2 (register_student): student S003 already exists"),
        "{}",
        reasons[2]
    );
    assert!(reasons[3].contains("unknown kid"), "{}", reasons[3]);
    assert!(reasons[4].contains("contract is for network 'another-network'"), "{}", reasons[4]);
    assert!(reasons[5].contains("malformed token"), "{}", reasons[5]);
    let snapshot = ledger.snapshot().unwrap();
    assert_eq!(nonce_of(&snapshot, net.peers[1].id().as_str()).unwrap(), 0, "not used up");
    drop(snapshot);
    // Nonce 1 of peer 2 is still free, and works.
    let report =
        local(&mut ledger, &net.network, &[], &[net.contract(1, 1, &[course("C1")])], 0).unwrap();
    assert_eq!(report.entry.applied, 1);
}

#[test]
fn a_bad_registration_token_refuses_the_whole_batch() {
    let net = TestNet::new(1);
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    let mut tokens = net.tokens.clone();
    tokens[1].push('x');
    let snapshot = ledger.snapshot().unwrap();
    let err = verify_local(&tokens, &[], &net.network, &snapshot, at(&net)).unwrap_err();
    assert!(matches!(err, BatchError::Registration { line: 2, .. }), "{err}");
    // Tokens checked at a time after they expired are refused too.
    let late = net.issued_at + 31 * 86_400;
    let err = verify_local(&net.tokens, &[], &net.network, &snapshot, late).unwrap_err();
    assert!(
        matches!(
            err,
            BatchError::Registration {
                line: 1,
                source: swarmvm_token::VerifyError::Expired { .. }
            }
        ),
        "{err}"
    );
    let other = TestNet::new(1);
    let err = verify_local(&net.tokens, &[], &other.network, &snapshot, at(&net)).unwrap_err();
    assert!(matches!(err, BatchError::NotAMember { line: 1, .. }), "{err}");
    let contract = [net.contract(0, 1, &[student("S1")])];
    let err = swarmvm_bundle::verify_local_contracts(&contract, &snapshot, at(&net)).unwrap_err();
    assert!(matches!(err, BatchError::NoRegistrations), "{err}");
    assert_eq!((snapshot.log_len(), snapshot.network()), (0, None), "nothing applied");
}

#[test]
fn a_ledger_belongs_to_one_network() {
    let (a, b) = (TestNet::new(1), TestNet::new(1));
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    local(&mut ledger, &a.network, &a.tokens, &[], at(&a)).unwrap();
    let snapshot = ledger.snapshot().unwrap();
    let err = verify_local(&b.tokens, &[], &b.network, &snapshot, at(&b)).unwrap_err();
    assert!(matches!(err, BatchError::OtherNetwork { .. }), "{err}");
}

#[test]
fn a_batch_verified_against_an_older_commit_is_refused() {
    let net = TestNet::new(2);
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    let old = ledger.snapshot().unwrap();
    let stale = verify_local(&net.tokens, &[], &net.network, &old, at(&net)).unwrap();
    drop(old);
    local(&mut ledger, &net.network, &net.tokens, &[], at(&net)).unwrap();
    let root = ledger.snapshot().unwrap().state_root();
    // Verified when the ledger was empty; it has a local batch now.
    let err = ledger.commit(&stale).unwrap_err();
    assert!(matches!(err, ApplyError::Stale { .. }), "{err}");
    assert!(!err.is_fatal());
    assert_eq!(ledger.snapshot().unwrap().state_root(), root);
}

const STATE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("state");
const TRIE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("trie");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

fn filled(net: &TestNet, path: &std::path::Path) -> swarmvm_vm::Hash32 {
    filled_under(net, path, swarmvm_primitives::Rules::CURRENT)
}

/// A ledger of 20 students registered in one local batch under `rules`; its root.
fn filled_under(
    net: &TestNet,
    path: &std::path::Path,
    rules: swarmvm_primitives::Rules,
) -> swarmvm_vm::Hash32 {
    let mut ledger = Ledger::open(path).unwrap();
    let contracts: Vec<String> =
        (0..20).map(|i| net.contract(0, i + 1, &[student(&format!("S{i:03}"))])).collect();
    let snapshot = ledger.snapshot().unwrap();
    let verified = verify_local(&net.tokens, &contracts, &net.network, &snapshot, at(net)).unwrap();
    drop(snapshot);
    ledger.commit(&verified.with_local_rules(rules)).unwrap().state_root
}

/// Turns the ledger at `path` into what a format 3 (or older) swarmvm wrote: its log,
/// receipts, bundles and evidence as JSON rows, no heads or rotations tables, no
/// `node_hashing` (it must have been filled under rules 2); then labels it `format`.
fn as_older_format(path: &std::path::Path, format: &str) {
    let ledger = Ledger::open(path).unwrap();
    let snapshot = ledger.snapshot().unwrap();
    let log = snapshot.log(1, usize::MAX).unwrap();
    let receipts = snapshot.receipts(1, usize::MAX).unwrap();
    drop((snapshot, ledger));
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(TableDefinition::<u64, &[u8]>::new("log")).unwrap();
        for e in &log {
            t.insert(e.position, serde_json::to_vec(e).unwrap().as_slice()).unwrap();
        }
        let mut t = txn.open_table(TableDefinition::<(u64, u32), &[u8]>::new("receipts")).unwrap();
        for r in &receipts {
            t.insert((r.position, r.index), serde_json::to_vec(r).unwrap().as_slice()).unwrap();
        }
        let mut meta = txn.open_table(META).unwrap();
        assert_eq!(meta.remove("node_hashing").unwrap().unwrap().value(), 1u64.to_le_bytes());
        meta.insert("format", format.as_bytes()).unwrap();
    }
    txn.delete_table(TableDefinition::<u64, &str>::new("heads")).unwrap();
    txn.delete_table(TableDefinition::<u64, ()>::new("rotations")).unwrap();
    txn.commit().unwrap();
}

#[test]
fn tampered_storage_is_found_by_the_check() {
    let net = TestNet::new(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.redb");
    let root = filled(&net, &path);
    {
        // Rewrite a student's name behind the ledger's back.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(STATE).unwrap();
            let key = swarmvm_vm::encode_key(Table::Student, "S001");
            let old = t.get(key.as_slice()).unwrap().unwrap().value().to_vec();
            let forged =
                Record::Student { name: "Mallory".into(), department: "Computer Science".into() };
            let mut bytes = Vec::new();
            forged.encode(&mut bytes);
            assert_ne!(old, bytes);
            t.insert(key.as_slice(), bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.snapshot().unwrap().state_root(), root, "opening reads the recorded root");
    let err = check(&ledger.reader()).unwrap_err();
    assert!(matches!(err, CheckError::Trie(_) | CheckError::RootMismatch { .. }), "{err}");
    drop(ledger);
    {
        // Drop a trie node instead, the entries left alone.
        let fresh = dir.path().join("l2.redb");
        filled(&net, &fresh);
        let db = Database::create(&fresh).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(TRIE).unwrap();
            let some: Vec<u8> = t.iter().unwrap().nth(3).unwrap().unwrap().0.value().to_vec();
            t.remove(some.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        let err = check(&Ledger::open(&fresh).unwrap().reader()).unwrap_err();
        assert!(matches!(err, CheckError::Trie(_)), "{err}");
    }
}

#[test]
fn an_older_format_is_carried_over_or_refused_with_a_reason() {
    use swarmvm_primitives::Rules;
    let net = TestNet::new(1);
    let dir = tempfile::tempdir().unwrap();
    let forge = |path: &std::path::Path, format: &str, trie: bool, bundle_seq: bool| {
        as_older_format(path, format);
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            if !trie {
                txn.delete_table(TRIE).unwrap();
            }
            let mut meta = txn.open_table(META).unwrap();
            if bundle_seq {
                meta.insert("bundle_seq", 1u64.to_le_bytes().as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    };
    // Versions 3 (JSON records) and 2 (JSON records and no trie), written under rules 2:
    // carried over to the same root, with the same log and receipts, and checked.
    for (name, format, trie) in
        [("v3.redb", "swarmvm-ledger/3", true), ("v2.redb", "swarmvm-ledger/2", false)]
    {
        let path = dir.path().join(name);
        let root = filled_under(&net, &path, Rules::V2);
        let before = {
            let l = Ledger::open(&path).unwrap();
            let s = l.snapshot().unwrap();
            (s.log(1, 100).unwrap(), s.receipts(1, 100).unwrap())
        };
        forge(&path, format, trie, false);
        let ledger = Ledger::open(&path).unwrap();
        let snapshot = ledger.snapshot().unwrap();
        assert_eq!(snapshot.state_root(), root, "{format}");
        assert_eq!((snapshot.log(1, 100).unwrap(), snapshot.receipts(1, 100).unwrap()), before);
        assert_eq!(snapshot.node_hashing(), swarmvm_vm::NodeHashing::Flat);
        check(&ledger.reader()).unwrap();
    }
    let root = filled_under(&net, &dir.path().join("v2-root.redb"), Rules::V2);
    // A version 1 ledger that applied bundles cannot know their identities.
    let v1 = dir.path().join("v1.redb");
    filled_under(&net, &v1, Rules::V2);
    forge(&v1, "swarmvm-ledger/1", false, true);
    let err = Ledger::open(&v1).unwrap_err();
    assert!(matches!(err, OpenError::OldFormat { .. }), "{err}");
    assert!(err.to_string().contains("identified bundles by a hash of the manifest file"));
    // Unknown formats are refused too.
    let odd = dir.path().join("odd.redb");
    filled_under(&net, &odd, Rules::V2);
    forge(&odd, "swarmvm-ledger/99", false, false);
    let err = Ledger::open(&odd).unwrap_err();
    assert!(matches!(err, OpenError::UnknownFormat { .. }), "{err}");
    assert!(err.to_string().contains("swarmvm-ledger/99"), "{err}");
    let err = swarmvm_ledger::LedgerReader::open_read_only(&odd).unwrap_err();
    assert!(matches!(err, OpenError::UnknownFormat { .. }), "{err}");
    // A reader does not migrate: it says how.
    let v2_again = dir.path().join("v2-again.redb");
    filled_under(&net, &v2_again, Rules::V2);
    forge(&v2_again, "swarmvm-ledger/2", false, false);
    let err = swarmvm_ledger::LedgerReader::open_read_only(&v2_again).unwrap_err();
    assert!(err.to_string().contains("open it for writing once"), "{err}");
    assert_eq!(Ledger::open(&v2_again).unwrap().snapshot().unwrap().state_root(), root);
}

#[test]
fn receipts_are_found_by_contract_id_also_in_a_ledger_written_before_the_index() {
    let net = TestNet::new(2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.redb");
    let mut ledger = Ledger::open(&path).unwrap();
    let ok = net.contract(0, 1, &[student("S1")]);
    let twice = net.contract(1, 1, &[student("S1")]);
    local(&mut ledger, &net.network, &net.tokens, &[ok.clone(), twice.clone()], at(&net)).unwrap();
    let id = |t: &str| swarmvm_vm::Hash32::digest(t.as_bytes());
    let found = |ledger: &Ledger, t: &str| {
        ledger.snapshot().unwrap().contract(&id(t)).unwrap().map(|(r, e)| (r.status, e.position))
    };
    assert_eq!(found(&ledger, &ok), Some((Outcome::Applied, 1)));
    assert_eq!(found(&ledger, &twice), Some((Outcome::Rejected, 1)));
    assert_eq!(ledger.snapshot().unwrap().contract(&id("unknown")).unwrap(), None);
    // The rejected one again in a later batch: its latest rejection; the applied one stays.
    local(&mut ledger, &net.network, &[], &[ok.clone(), twice.clone()], at(&net)).unwrap();
    assert_eq!(found(&ledger, &ok), Some((Outcome::Applied, 1)), "an applied receipt stays");
    assert_eq!(found(&ledger, &twice), Some((Outcome::Rejected, 2)));
    drop(ledger);
    {
        // As a ledger written before the index: no table, no marker.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(TableDefinition::<&[u8; 32], (u64, u32)>::new("contracts")).unwrap();
        txn.open_table(META).unwrap().remove("contract_index").unwrap();
        txn.commit().unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(found(&ledger, &ok), Some((Outcome::Applied, 1)), "indexed when opened");
    assert_eq!(found(&ledger, &twice), Some((Outcome::Rejected, 2)));
}
