//! Bundles apply in order: `seq` is the next one, `parent` is the last bundle's identity and
//! `iat` is not below its parent's. A second bundle for an applied seq is a fork, kept as
//! evidence; a ledger that follows bundles takes no local batches and the other way round.

use swarmvm_ledger::{ApplyError, Batch, BundleRef, Ledger, Source};
use swarmvm_primitives::BundleId;
use swarmvm_test_support::net::{TestNet, student};
use swarmvm_token::TimeCheck;

struct Chain<'n> {
    net: &'n TestNet,
    ledger: Ledger,
    _dir: tempfile::TempDir,
}

impl Chain<'_> {
    fn apply(
        &mut self,
        (seq, id, parent, iat): (u64, BundleId, Option<BundleId>, u64),
        regs: &[String],
        contracts: &[String],
    ) -> Result<(), ApplyError> {
        let manifest = format!("manifest-of-{id}");
        self.ledger
            .apply(&Batch {
                registrations: regs,
                contracts,
                trust: &self.net.trust,
                time: TimeCheck::at(self.net.issued_at),
                source: Source::Bundle(BundleRef {
                    seq,
                    id,
                    parent,
                    issued_at: iat,
                    manifest: &manifest,
                }),
                authority: None,
            })
            .map(|_| ())
    }

    fn exec(&mut self, contracts: &[String]) -> Result<(), ApplyError> {
        self.ledger
            .apply(&Batch {
                registrations: &self.net.tokens,
                contracts,
                trust: &self.net.trust,
                time: TimeCheck::at(self.net.issued_at),
                source: Source::Exec,
                authority: None,
            })
            .map(|_| ())
    }
}

fn chain(net: &TestNet) -> Chain<'_> {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    Chain { net, ledger, _dir: dir }
}

fn id(name: &str) -> BundleId {
    BundleId::of_payload(name.as_bytes())
}

#[test]
fn bundles_apply_only_in_order() {
    let net = TestNet::new(1);
    let mut c = chain(&net);
    let (m1, m2) = (id("manifest 1"), id("manifest 2"));
    let c1 = vec![net.contract(0, 1, &[student("S1")])];
    let err = c.apply((2, m2, Some(m1), 10), &net.tokens, &c1).unwrap_err();
    assert!(matches!(err, ApplyError::OutOfOrder { seq: 2, expected: 1 }), "{err}");
    let err = c.apply((1, m1, Some(m2), 10), &net.tokens, &c1).unwrap_err();
    assert!(matches!(err, ApplyError::WrongParent { seq: 1, .. }), "{err}");
    assert_eq!(c.ledger.log_len(), 0);
    c.apply((1, m1, None, 10), &net.tokens, &c1).unwrap();
    let err = c.apply((1, m1, None, 10), &net.tokens, &c1).unwrap_err();
    assert!(matches!(err, ApplyError::AlreadyApplied { seq: 1, .. }), "{err}");
    let c2 = vec![net.contract(0, 2, &[student("S2")])];
    let err = c.apply((2, m2, Some(id("forged")), 10), &[], &c2).unwrap_err();
    assert!(err.to_string().contains(&m1.to_string()), "names the last bundle: {err}");
    let err = c.apply((2, m2, Some(m1), 9), &[], &c2).unwrap_err();
    assert!(
        matches!(err, ApplyError::BeforeParent { seq: 2, iat: 9, parent_iat: 10 }),
        "an iat below the parent's: {err}"
    );
    c.apply((2, m2, Some(m1), 10), &[], &c2).unwrap();
    let last = c.ledger.last_bundle().unwrap();
    assert_eq!((last.seq, last.id, last.issued_at), (2, m2, 10));
    let record = c.ledger.bundle(1).unwrap().unwrap();
    assert_eq!(
        (record.id, record.parent, record.manifest.as_str()),
        (m1, None, &*format!("manifest-of-{m1}"))
    );
    let path = c.ledger.path().to_path_buf();
    drop(c.ledger);
    let reopened = Ledger::open(&path).unwrap();
    assert_eq!(reopened.last_bundle(), Some(last), "order position survives reopening");
}

#[test]
fn a_second_bundle_for_an_applied_seq_is_a_fork_kept_as_evidence() {
    let net = TestNet::new(1);
    let mut c = chain(&net);
    let (m1, m2, evil) = (id("manifest 1"), id("manifest 2"), id("another seq 1"));
    c.apply((1, m1, None, 10), &net.tokens, &[]).unwrap();
    let root = c.ledger.state_root();
    for _ in 0..2 {
        let err = c.apply((1, evil, None, 11), &net.tokens, &[]).unwrap_err();
        assert!(
            matches!(err, ApplyError::Fork { seq: 1, kept, other } if kept == m1 && other == evil),
            "{err}"
        );
        assert!(!err.is_fatal());
    }
    assert_eq!(c.ledger.state_root(), root, "the fork changed nothing");
    let evidence = c.ledger.evidence().unwrap();
    assert_eq!(evidence.len(), 1, "kept once: {evidence:?}");
    let e = &evidence[0];
    assert_eq!((e.seq, e.kept, e.other), (1, m1, evil));
    assert_eq!(e.kept_manifest, format!("manifest-of-{m1}"));
    assert_eq!(e.other_manifest, format!("manifest-of-{evil}"));
    // The chain goes on from the bundle kept.
    c.apply((2, m2, Some(m1), 12), &[], &[]).unwrap();
    assert_eq!(c.ledger.evidence().unwrap().len(), 1);
}

#[test]
fn a_ledger_either_follows_bundles_or_runs_local_batches() {
    let net = TestNet::new(1);
    let mut following = chain(&net);
    following.apply((1, id("m1"), None, 10), &net.tokens, &[]).unwrap();
    let root = following.ledger.state_root();
    let err = following.exec(&[net.contract(0, 1, &[student("S1")])]).unwrap_err();
    assert!(matches!(err, ApplyError::FollowsNetwork { seq: 1, .. }), "{err}");
    assert!(err.to_string().contains("nonces that later bundles need"), "{err}");
    assert_eq!(following.ledger.state_root(), root);

    let mut local = chain(&net);
    local.exec(&[net.contract(0, 1, &[student("S1")])]).unwrap();
    assert!(local.ledger.is_local());
    let root = local.ledger.state_root();
    let err = local.apply((1, id("m1"), None, 10), &net.tokens, &[]).unwrap_err();
    assert!(matches!(err, ApplyError::HasLocalBatches), "{err}");
    assert_eq!(local.ledger.state_root(), root);
    let path = local.ledger.path().to_path_buf();
    drop(local.ledger);
    assert!(Ledger::open(&path).unwrap().is_local(), "the mode survives reopening");
}
