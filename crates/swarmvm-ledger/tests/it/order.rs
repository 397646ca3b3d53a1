//! Bundles apply in order: `seq` is the next one and `parent` is the last manifest.

use swarmvm_ledger::{ApplyError, Batch, Ledger, Source};
use swarmvm_test_support::net::{TestNet, student};
use swarmvm_token::TimeCheck;
use swarmvm_vm::Hash32;

#[test]
fn bundles_apply_only_in_order() {
    let net = TestNet::new(1);
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    let m1 = Hash32::digest(b"manifest 1");
    let m2 = Hash32::digest(b"manifest 2");
    let apply = |ledger: &mut Ledger,
                 seq: u64,
                 manifest: Hash32,
                 parent: Option<Hash32>,
                 regs: &[String],
                 contracts: &[String]| {
        ledger.apply(&Batch {
            registrations: regs,
            contracts,
            trust: &net.trust,
            time: TimeCheck::at(net.issued_at),
            source: Source::Bundle { seq, manifest, parent },
            authority: None,
        })
    };
    let c1 = vec![net.contract(0, 1, &[student("S1")])];
    let err = apply(&mut ledger, 2, m2, Some(m1), &net.tokens, &c1).unwrap_err();
    assert!(matches!(err, ApplyError::OutOfOrder { seq: 2, expected: 1 }), "{err}");
    let err = apply(&mut ledger, 1, m1, Some(m2), &net.tokens, &c1).unwrap_err();
    assert!(matches!(err, ApplyError::WrongParent { seq: 1, .. }), "{err}");
    assert_eq!(ledger.log_len(), 0);
    apply(&mut ledger, 1, m1, None, &net.tokens, &c1).unwrap();
    let err = apply(&mut ledger, 1, m1, None, &net.tokens, &c1).unwrap_err();
    assert!(
        matches!(err, ApplyError::OutOfOrder { seq: 1, expected: 2 }),
        "already applied: {err}"
    );
    let c2 = vec![net.contract(0, 2, &[student("S2")])];
    let err = apply(&mut ledger, 2, m2, Some(Hash32::digest(b"forged")), &[], &c2).unwrap_err();
    assert!(err.to_string().contains(&m1.to_hex()), "{err}");
    apply(&mut ledger, 2, m2, Some(m1), &[], &c2).unwrap();
    assert_eq!(ledger.last_bundle().unwrap().seq, 2);
    assert_eq!(ledger.last_bundle().unwrap().manifest, m2);
    let path = ledger.path().to_path_buf();
    drop(ledger);
    let reopened = Ledger::open(&path).unwrap();
    assert_eq!(reopened.last_bundle().unwrap().seq, 2, "order position survives reopening");
}
