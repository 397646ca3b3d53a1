//! Batches: registrations, contracts, receipts, persistence, corruption.

use redb::{Database, ReadableTable as _, TableDefinition};
use swarmvm_ledger::{ApplyError, Batch, Ledger, Source};
use swarmvm_test_support::net::{TestNet, course, nft, student, vote};
use swarmvm_token::{TimeCheck, TrustStore};
use swarmvm_vm::{Record, Table};

fn batch<'a>(net: &'a TestNet, regs: &'a [String], contracts: &'a [String]) -> Batch<'a> {
    Batch {
        registrations: regs,
        contracts,
        trust: &net.trust,
        time: TimeCheck::at(net.issued_at),
        source: Source::Exec,
        authority: None,
    }
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
        let report = ledger.apply(&batch(&net, &net.tokens, &contracts)).unwrap();
        assert_eq!(report.entry.registrations, 2);
        assert_eq!((report.entry.applied, report.entry.rejected), (5, 0));
        assert!(report.receipts.iter().all(|r| r.is_applied()));
        assert_eq!(ledger.network(), Some(net.id().as_str()));
        assert_eq!(report.state_root, ledger.state_root());
        report.state_root
    };
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.state_root(), root);
    assert_eq!(ledger.network(), Some(net.id().as_str()));
    assert_eq!(ledger.log_len(), 1);
    let state = ledger.vm().state();
    assert_eq!(
        state.get(Table::Proposal, "P001"),
        Some(&Record::Proposal { description: "Increase Research Funding".into(), votes: 2 })
    );
    let Some(Record::Nft { owner, .. }) = state.get(Table::Nft, "NFT001") else { panic!("nft") };
    assert_eq!(owner.as_str(), net.peers[2].id().as_str());
    assert_eq!(ledger.receipts(1, 100).unwrap().len(), 5);
    assert_eq!(ledger.log(1, 10).unwrap()[0].state_root, root.to_hex());
    assert_eq!(
        ledger.signers().ids().count(),
        3,
        "registered wallets verify contracts after reopening"
    );
}

#[test]
fn rejected_contracts_leave_receipts_and_change_nothing() {
    let net = TestNet::new(2);
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    ledger.apply(&batch(&net, &net.tokens, &[net.contract(0, 1, &[student("S001")])])).unwrap();
    let root = ledger.state_root();
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
    let report = ledger.apply(&batch(&net, &[], &contracts)).unwrap();
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
    assert_eq!(ledger.vm().nonce(net.peers[1].id().as_str()), 0, "rejected nonces are not used up");
    // Nonce 1 of peer 2 is still free, and works.
    let report = ledger.apply(&batch(&net, &[], &[net.contract(1, 1, &[course("C1")])])).unwrap();
    assert_eq!(report.entry.applied, 1);
}

#[test]
fn a_bad_registration_token_refuses_the_whole_batch() {
    let net = TestNet::new(1);
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    let mut tokens = net.tokens.clone();
    tokens[1].push('x');
    let err = ledger.apply(&batch(&net, &tokens, &[])).unwrap_err();
    assert!(matches!(err, ApplyError::Registration { line: 2, .. }), "{err}");
    assert_eq!((ledger.log_len(), ledger.network()), (0, None));
    assert!(ledger.vm().state().is_empty(), "the valid first token was not applied either");

    // Tokens checked at a time after they expired are refused too.
    let late =
        Batch { time: TimeCheck::at(net.issued_at + 31 * 86_400), ..batch(&net, &net.tokens, &[]) };
    let err = ledger.apply(&late).unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::Registration {
                line: 1,
                source: swarmvm_token::VerifyError::Expired { .. }
            }
        ),
        "{err}"
    );

    let untrusted = Batch { trust: &TrustStore::new(), ..batch(&net, &net.tokens, &[]) };
    assert!(matches!(ledger.apply(&untrusted), Err(ApplyError::Registration { .. })));
    assert!(matches!(
        ledger.apply(&batch(&net, &[], &[net.contract(0, 1, &[student("S1")])])),
        Err(ApplyError::NoNetwork)
    ));
}

#[test]
fn a_ledger_belongs_to_one_network() {
    let (a, b) = (TestNet::new(1), TestNet::new(1));
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    ledger.apply(&batch(&a, &a.tokens, &[])).unwrap();
    let mut both = TrustStore::new();
    both.add(a.authority.public_key().clone());
    both.add(b.authority.public_key().clone());
    let other = Batch { trust: &both, ..batch(&b, &b.tokens, &[]) };
    let err = ledger.apply(&other).unwrap_err();
    assert!(matches!(err, ApplyError::WrongNetwork { line: 1, .. }), "{err}");
}

#[test]
fn tampered_storage_is_detected_on_open() {
    let net = TestNet::new(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.redb");
    {
        let mut ledger = Ledger::open(&path).unwrap();
        ledger.apply(&batch(&net, &net.tokens, &[net.contract(0, 1, &[student("S001")])])).unwrap();
    }
    {
        // Rewrite the student's name behind the ledger's back.
        const STATE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("state");
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
    let err = Ledger::open(&path).unwrap_err();
    assert!(matches!(err, ApplyError::RootMismatch { .. }), "{err}");
    assert!(err.is_fatal());
}
