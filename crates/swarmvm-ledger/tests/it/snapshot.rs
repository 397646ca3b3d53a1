//! Snapshots: written from a ledger, installed into an empty one with the same root, the same
//! bytes from every ledger of the same state, and every corrupt or foreign snapshot refused
//! at the section that gives it away with nothing written.

use swarmvm_bundle::{BundlePosition, verify_local};
use swarmvm_ledger::{Ledger, SnapshotError, SnapshotTarget, check};
use swarmvm_primitives::{BundleId, Hash32, Rules};
use swarmvm_test_support::net::{TestNet, student};
use swarmvm_vm::{Record, Table};

/// A ledger of `students` students (50 to a contract) in `dir`, with the network's
/// registrations.
fn ledger_with(net: &TestNet, dir: &std::path::Path, students: usize) -> Ledger {
    std::fs::create_dir_all(dir).unwrap();
    let mut ledger = Ledger::open(&dir.join("ledger.redb")).unwrap();
    let ids: Vec<String> = (0..students).map(|i| format!("S{i:07}")).collect();
    let mut contracts = Vec::new();
    for (n, group) in ids.chunks(50).enumerate() {
        let actions: Vec<_> = group.iter().map(|id| student(id)).collect();
        contracts.push(net.contract(n % 2, n as u64 / 2 + 1, &actions));
    }
    let snapshot = ledger.snapshot().unwrap();
    let verified =
        verify_local(&net.tokens, &contracts, &net.network, &snapshot, net.issued_at).unwrap();
    drop(snapshot);
    let report = ledger.commit(&verified).unwrap();
    assert_eq!(report.entry.applied, contracts.len(), "{:?}", report.receipts.first());
    ledger
}

fn snapshot_of(ledger: &Ledger) -> Vec<u8> {
    let mut bytes = Vec::new();
    ledger.snapshot().unwrap().write_snapshot(&mut bytes).unwrap();
    bytes
}

fn target(net: &TestNet, root: Hash32) -> SnapshotTarget {
    SnapshotTarget {
        network: net.id(),
        state_root: root,
        position: BundlePosition {
            seq: 7,
            id: BundleId(Hash32::digest(b"bundle 7")),
            issued_at: net.issued_at,
            rules: Rules::V3,
        },
        parent: Some(BundleId(Hash32::digest(b"bundle 6"))),
        manifest: "a.b.c".into(),
        head: None,
    }
}

/// Installs `bytes` into a new ledger in `dir`.
fn install(dir: &std::path::Path, bytes: &[u8], target: &SnapshotTarget) -> Result<Ledger, String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut ledger = Ledger::open(&dir.join("ledger.redb")).unwrap();
    match ledger.install_snapshot(&mut &bytes[..], target) {
        Ok(report) => {
            assert_eq!(report.state_root, target.state_root);
            Ok(ledger)
        }
        Err(e) => {
            // Nothing of a refused snapshot is written.
            let after = ledger.snapshot().unwrap();
            assert_eq!(after.state_root(), Hash32::digest(&[]), "{e}");
            assert!(after.last_bundle().is_none() && after.network().is_none(), "{e}");
            Err(e.to_string())
        }
    }
}

/// The byte offset of section `n` (0 the header) of a snapshot.
fn section(bytes: &[u8], n: usize) -> usize {
    let mut at = 0;
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes[at + 5..at + 9].try_into().unwrap()) as usize;
        at += (9 + len).div_ceil(swarmvm_ledger::SNAPSHOT_PIECE) * swarmvm_ledger::SNAPSHOT_PIECE;
    }
    at
}

#[test]
fn a_snapshot_installs_as_the_same_state_and_every_ledger_of_that_state_writes_the_same_bytes() {
    let net = TestNet::new(2);
    let dir = tempfile::tempdir().unwrap();
    let source = ledger_with(&net, &dir.path().join("a"), 12_000);
    let root = source.snapshot().unwrap().state_root();
    let bytes = snapshot_of(&source);
    let mut info = Vec::new();
    let written = source.snapshot().unwrap().write_snapshot(&mut info).unwrap();
    assert_eq!(info, bytes, "the same commit gives the same bytes");
    assert!(written.chunks >= 3, "{written:?}");
    assert_eq!(written.bytes as usize, bytes.len());
    assert_eq!(bytes.len() % swarmvm_ledger::SNAPSHOT_PIECE, 0);

    let joined = install(&dir.path().join("b"), &bytes, &target(&net, root)).unwrap();
    let snap = joined.snapshot().unwrap();
    assert_eq!(snap.state_root(), root);
    assert_eq!(snap.last_bundle().unwrap().seq, 7);
    assert_eq!(snap.snapshot_seq(), Some(7));
    assert_eq!(snap.network(), Some(net.id().as_str()));
    assert!(matches!(
        snap.record(Table::Student, "S0011999").unwrap(),
        Some(Record::Student { .. })
    ));
    assert_eq!(snap.bundle(7).unwrap().unwrap().manifest, "a.b.c");
    drop(snap);
    let report = check(&joined.reader()).unwrap();
    assert_eq!((report.state_root, report.bundles, report.batches), (root, 1, 0));
    assert!(report.entries > 12_000, "{report:?}");
    // A function of the state alone: the joined ledger, with another history, writes the
    // same bytes.
    assert_eq!(snapshot_of(&joined), bytes);
}

#[test]
fn a_small_state_is_one_chunk_and_an_empty_ledger_refuses_nothing_it_should_not() {
    let net = TestNet::new(2);
    let dir = tempfile::tempdir().unwrap();
    let source = ledger_with(&net, &dir.path().join("a"), 10);
    let root = source.snapshot().unwrap().state_root();
    let bytes = snapshot_of(&source);
    assert_eq!(bytes.len(), 2 * swarmvm_ledger::SNAPSHOT_PIECE, "a header and one chunk");
    let joined = install(&dir.path().join("b"), &bytes, &target(&net, root)).unwrap();
    assert_eq!(joined.snapshot().unwrap().state_root(), root);
    // A ledger that holds anything takes no snapshot.
    let mut source = source;
    let err = source.install_snapshot(&mut &bytes[..], &target(&net, root)).unwrap_err();
    assert!(matches!(err, SnapshotError::NotEmpty(_)), "{err}");
}

#[test]
fn corrupt_truncated_and_foreign_snapshots_are_refused_where_they_go_wrong() {
    let net = TestNet::new(2);
    let dir = tempfile::tempdir().unwrap();
    let source = ledger_with(&net, &dir.path().join("a"), 12_000);
    let root = source.snapshot().unwrap().state_root();
    let bytes = snapshot_of(&source);
    let goal = target(&net, root);
    let mut n = 0;
    let mut refuse = |bytes: &[u8], target: &SnapshotTarget| {
        n += 1;
        match install(&dir.path().join(format!("j{n}")), bytes, target) {
            Ok(_) => panic!("case {n} installed"),
            Err(e) => e,
        }
    };

    // One byte of an entry in the second chunk.
    let mut bad = bytes.clone();
    let at = section(&bytes, 2) + 9 + 40;
    bad[at] ^= 0x01;
    let err = refuse(&bad, &goal);
    assert!(err.starts_with("snapshot refused at chunk 2"), "{err}");
    // One byte of a node hash in the header.
    let mut bad = bytes.clone();
    bad[9 + 32 + 4 + 2 + 4 + 40] ^= 0x80;
    let err = refuse(&bad, &goal);
    assert!(err.starts_with("snapshot refused at header"), "{err}");
    // Cut short inside the last chunk.
    let err = refuse(&bytes[..bytes.len() - 1000], &goal);
    assert!(err.contains("the file ends inside it"), "{err}");
    // Padding that is not zeros.
    let mut bad = bytes.clone();
    let end = section(&bytes, 2) - 1;
    bad[end] = 1;
    let err = refuse(&bad, &goal);
    assert!(err.contains("padding that is not zeros"), "{err}");
    // Chunks swapped.
    let (one, two) = (section(&bytes, 1), section(&bytes, 2));
    let three = section(&bytes, 3);
    let mut swapped = bytes[..one].to_vec();
    swapped.extend_from_slice(&bytes[two..three]);
    swapped.extend_from_slice(&bytes[one..two]);
    swapped.extend_from_slice(&bytes[three..]);
    let err = refuse(&swapped, &goal);
    assert_eq!(err, "snapshot refused at chunk 2: subtrees out of order");

    // Another state: consistent in itself, so its torrent's piece hashes would hold, but not
    // the state of the signed root.
    let other = ledger_with(&net, &dir.path().join("o"), 11_999);
    let foreign = snapshot_of(&other);
    let err = refuse(&foreign, &goal);
    assert!(err.contains("a snapshot of state root"), "{err}");
    // The same, claiming the signed root in its header.
    let mut claiming = foreign.clone();
    claiming[9..41].copy_from_slice(root.as_bytes());
    let err = refuse(&claiming, &goal);
    assert!(err.starts_with("snapshot refused at header: its nodes hash to"), "{err}");
    // Its chunks after the right header: refused at the first that differs.
    let mut mixed = bytes[..section(&bytes, 1)].to_vec();
    mixed.extend_from_slice(&foreign[section(&foreign, 1)..]);
    let err = refuse(&mixed, &goal);
    assert!(err.starts_with("snapshot refused at chunk"), "{err}");

    // And the right bytes still install.
    install(&dir.path().join("ok"), &bytes, &goal).unwrap();
}

/// A snapshot of only a header whose body is `body` after the root.
fn header_only(root: &Hash32, nodes: &[(Vec<u8>, swarmvm_vm::StoredNode)]) -> Vec<u8> {
    let mut body = root.as_bytes().to_vec();
    body.extend_from_slice(&(nodes.len() as u32).to_le_bytes());
    for (path, node) in nodes {
        body.extend_from_slice(&(path.len() as u16).to_le_bytes());
        body.extend_from_slice(path);
        let mut enc = Vec::new();
        node.encode(&mut enc);
        body.extend_from_slice(&(enc.len() as u32).to_le_bytes());
        body.extend_from_slice(&enc);
    }
    body.extend_from_slice(&[0; 12]);
    let mut out = b"SVS1\x01".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out.resize(
        out.len().div_ceil(swarmvm_ledger::SNAPSHOT_PIECE) * swarmvm_ledger::SNAPSHOT_PIECE,
        0,
    );
    out
}

#[test]
fn hostile_headers_and_trailing_bytes_are_refused_before_anything_is_built_from_them() {
    let net = TestNet::new(2);
    let dir = tempfile::tempdir().unwrap();
    let source = ledger_with(&net, &dir.path().join("a"), 10);
    let root = source.snapshot().unwrap().state_root();
    let goal = target(&net, root);
    let node =
        |children: Vec<(Box<[u8]>, Hash32)>| swarmvm_vm::StoredNode { value: None, children };
    let h = Hash32::digest(b"x");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Children whose paths would be longer than any key.
        (
            header_only(&root, &[(Vec::new(), node(vec![(vec![b'a'; 1100].into(), h)]))]),
            "a path longer than any key",
        ),
        // Children out of order, or two with one first byte.
        (
            header_only(
                &root,
                &[(Vec::new(), node(vec![(b"b".to_vec().into(), h), (b"a".to_vec().into(), h)]))],
            ),
            "children are not in order",
        ),
        (
            header_only(
                &root,
                &[(Vec::new(), node(vec![(b"ab".to_vec().into(), h), (b"ac".to_vec().into(), h)]))],
            ),
            "children are not in order",
        ),
        // A node nobody reaches, and no root.
        (
            header_only(
                &root,
                &[
                    (Vec::new(), node(vec![(b"a".to_vec().into(), h)])),
                    (b"zz".to_vec(), node(vec![])),
                ],
            ),
            "hangs from no other",
        ),
        (
            header_only(&root, &[(b"a".to_vec(), node(vec![(b"b".to_vec().into(), h)]))]),
            "no root node",
        ),
        // Well formed, but not the state's.
        (
            header_only(
                &root,
                &[(Vec::new(), node(vec![(b"a".to_vec().into(), h), (b"b".to_vec().into(), h)]))],
            ),
            "its nodes hash to",
        ),
    ];
    for (i, (bytes, says)) in cases.iter().enumerate() {
        let err = install(&dir.path().join(format!("h{i}")), bytes, &goal).unwrap_err();
        assert!(err.starts_with("snapshot refused at header") && err.contains(says), "{i}: {err}");
    }
    // Whole and right, then one byte more.
    let mut bytes = snapshot_of(&source);
    bytes.push(0);
    let err = install(&dir.path().join("t"), &bytes, &goal).unwrap_err();
    assert_eq!(err, "snapshot refused at end: bytes after the last section");
}
