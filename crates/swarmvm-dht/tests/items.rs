//! Head items: made and read back, refused when hostile, the link, and the golden vector
//! that `tests/vectors/verify_dht_item.py` checks with Python's own SHA-1, Ed25519 and JSON.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use serde_json::{Value, json};
use swarmvm_dht::{DhtError, HeadItem, MAX_VALUE, item_seq, link, links, parse_link, target};
use swarmvm_primitives::{BundleId, Hash32};
use swarmvm_token::{AuthoritySet, HeadContent, SnapshotClaim, sign_head, verify_head};
use swarmvm_wallet::{Algorithm, Wallet};

const IH: &str = "0123456789abcdef0123456789abcdef01234567";

/// Members from fixed seeds (1, 2, 3, ...), so heads and items are the same bytes each run.
fn members(n: u8) -> Vec<Wallet> {
    (1..=n).map(|i| Wallet::from_ed25519_seed(&[i; 32]).unwrap()).collect()
}

fn ih() -> [u8; 20] {
    data_encoding_hex(IH).try_into().unwrap()
}

fn data_encoding_hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn head(
    signers: &[&Wallet],
    set: &AuthoritySet,
    seq: u64,
    snapshot: Option<&SnapshotClaim>,
) -> String {
    let network = set.network_id().to_string();
    let magnet = format!("magnet:?xt=urn:btih:{IH}&dn=bundle-{seq}");
    sign_head(
        signers,
        &HeadContent {
            network: &network,
            seq,
            bundle: BundleId::of_payload(format!("bundle {seq}").as_bytes()),
            magnet: &magnet,
            state_root: Hash32::digest(format!("root {seq}").as_bytes()),
            now: 1_800_000_000,
            max_age: 60,
            snapshot,
        },
    )
    .unwrap()
}

fn snapshot(seq: u64) -> SnapshotClaim {
    SnapshotClaim {
        seq,
        state_root: Hash32::digest(b"snapshot root"),
        magnet: format!(
            "magnet:?xt=urn:btih:89abcdef0123456789abcdef0123456789abcdef&dn=snapshot-{seq}"
        ),
    }
}

#[test]
fn an_item_carries_a_k_signature_head_that_a_reader_rebuilds_byte_for_byte() {
    let w = members(3);
    let set = AuthoritySet::new(w.iter().map(|k| k.public_key().clone()).collect(), 2).unwrap();
    let network = set.network_id().to_string();
    let snap = snapshot(40);
    let text = head(&[&w[2], &w[0]], &set, 41, Some(&snap));
    let item = HeadItem::put(&w[1], &text, &ih(), &set, 3).unwrap();
    assert_eq!(item.seq, (41 << 32) | 3);
    assert_eq!(item.salt, network.as_bytes());
    assert_eq!(&item.key, w[1].public_key().ed25519_bytes().unwrap());
    item.check().unwrap();
    let (got_ih, rebuilt) = item.head(&network, &set).unwrap();
    assert_eq!((got_ih, rebuilt.as_str()), (ih(), text.as_str()));
    let verified = verify_head(&rebuilt, &network, &set, 1_800_000_010).unwrap();
    assert_eq!((verified.seq, verified.snapshot), (41, Some(snap)));
    // A head signed again later replaces it: a higher seq in the same slot.
    assert!(
        item_seq(41, 4).unwrap() > item.seq && item_seq(42, 0).unwrap() > item_seq(41, 9).unwrap()
    );
}

#[test]
fn seven_signatures_and_a_snapshot_fit_in_bep_44s_thousand_bytes() {
    let w = members(7);
    let set = AuthoritySet::new(w.iter().map(|k| k.public_key().clone()).collect(), 7).unwrap();
    let snap = snapshot(2_147_483_000);
    let all: Vec<&Wallet> = w.iter().collect();
    let text = head(&all, &set, 2_147_483_647, Some(&snap));
    assert!(text.len() > 2 * MAX_VALUE, "the head itself is {} bytes", text.len());
    let item = HeadItem::put(&w[0], &text, &ih(), &set, u32::MAX).unwrap();
    let on_wire = swarmvm_dht::encoded_len(&item.value);
    assert!(on_wire <= MAX_VALUE, "{on_wire} bytes");
    assert_eq!(item.head(set.network_id().as_str(), &set).unwrap().1, text);
    // The highest seq an item can name, and one above it.
    assert_eq!(item.seq, i64::MAX);
    let e = HeadItem::put(&w[0], &head(&all, &set, 2_147_483_648, None), &ih(), &set, 0);
    assert!(matches!(e, Err(DhtError::Head(_))), "{e:?}");
}

#[test]
fn hostile_items_are_refused_and_say_why() {
    let w = members(3);
    let set = AuthoritySet::new(w.iter().map(|k| k.public_key().clone()).collect(), 2).unwrap();
    let network = set.network_id().to_string();
    let text = head(&[&w[0], &w[1]], &set, 7, None);
    let good = HeadItem::put(&w[0], &text, &ih(), &set, 0).unwrap();

    // A value changed after signing, or a seq raised: the signature no longer holds.
    let mut changed = good.clone();
    let last = changed.value.len() - 2;
    changed.value[last] ^= 1;
    assert_eq!(changed.check(), Err(DhtError::BadSignature));
    let mut raised = good.clone();
    raised.seq += 1 << 32;
    assert_eq!(raised.check(), Err(DhtError::BadSignature));

    // An outsider's item in its own slot, and an outsider's signature inside a member's item.
    let outsider = Wallet::from_ed25519_seed(&[99; 32]).unwrap();
    let mut bigger: Vec<_> = w.iter().map(|k| k.public_key().clone()).collect();
    bigger.push(outsider.public_key().clone());
    let with_outsider = AuthoritySet::new(bigger, 2).unwrap();
    let theirs = head(&[&outsider, &w[0]], &with_outsider, 8, None);
    let e = HeadItem::put(&outsider, &theirs, &ih(), &set, 0).unwrap_err();
    assert!(e.to_string().contains("not an Ed25519 member"), "{e}");
    let mut net_items = HeadItem::put(&outsider, &theirs, &ih(), &with_outsider, 0).unwrap();
    // Read against the real set: the key is no member's.
    net_items.salt = network.as_bytes().to_vec();
    let e = net_items.head(&network, &set).unwrap_err();
    assert!(matches!(e, DhtError::Key(_) | DhtError::BadSignature), "{e}");
    let inside = HeadItem::put(&w[0], &theirs, &ih(), &with_outsider, 0).unwrap();
    let e = inside.head(with_outsider.network_id().as_str(), &set).unwrap_err();
    assert!(e.to_string().contains("salt") || e.to_string().contains("no member"), "{e}");

    // A head of fewer than K signatures travels, but does not verify: readers verify it.
    let one = head(&[&w[2]], &set, 9, None);
    let item = HeadItem::put(&w[2], &one, &ih(), &set, 0).unwrap();
    let (_, rebuilt) = item.head(&network, &set).unwrap();
    let e = verify_head(&rebuilt, &network, &set, 1_800_000_010).unwrap_err();
    assert!(e.to_string().contains("2 of 3 are required"), "{e}");

    // A head whose magnet names trackers or another torrent, and a value over 1000 bytes.
    let tracked = sign_head(
        &[&w[0], &w[1]],
        &HeadContent {
            network: &network,
            seq: 10,
            bundle: BundleId::of_payload(b"10"),
            magnet: &format!("magnet:?xt=urn:btih:{IH}&tr=http%3A%2F%2F127.0.0.1%3A1%2Fannounce"),
            state_root: Hash32::digest(b"10"),
            now: 1_800_000_000,
            max_age: 60,
            snapshot: None,
        },
    )
    .unwrap();
    let e = HeadItem::put(&w[0], &tracked, &ih(), &set, 0).unwrap_err();
    assert!(e.to_string().contains("trackers"), "{e}");
    let e = HeadItem::put(&w[0], &text, &[7; 20], &set, 0).unwrap_err();
    assert!(e.to_string().contains("does not name the info-hash"), "{e}");
    let long = sign_head(
        &[&w[0], &w[1]],
        &HeadContent {
            network: &network,
            seq: 11,
            bundle: BundleId::of_payload(b"11"),
            magnet: &format!("magnet:?xt=urn:btih:{IH}&dn={}", "x".repeat(700)),
            state_root: Hash32::digest(b"11"),
            now: 1_800_000_000,
            max_age: 60,
            snapshot: None,
        },
    )
    .unwrap();
    let e = HeadItem::put(&w[0], &long, &ih(), &set, 0).unwrap_err();
    assert!(matches!(e, DhtError::TooLarge { .. }), "{e}");
    let mut oversized = good.clone();
    // v is the value as a byte string: 996 bytes take 1000 ("996:..."), 997 take 1001.
    oversized.value = vec![b'x'; MAX_VALUE - 3];
    assert_eq!(oversized.check(), Err(DhtError::TooLarge { size: MAX_VALUE + 1 }));
    oversized.value.pop();
    assert_eq!(oversized.check(), Err(DhtError::BadSignature), "1000 bytes are within bounds");

    // A signed item whose seq is not its head's × 2^32.
    let text12 = head(&[&w[0], &w[1]], &set, 12, None);
    let at12 = HeadItem::put(&w[0], &text12, &ih(), &set, 0).unwrap();
    let relabelled = resign(&w[0], HeadItem { seq: 99 << 32, ..at12 });
    let e = relabelled.head(&network, &set).unwrap_err();
    assert!(e.to_string().contains("not its head's"), "{e}");

    // Values that are not head items, signed by a member.
    for value in [&b"i1e"[..], b"d2:ih20:aaaaaaaaaaaaaaaaaaaae", b"d1:zi1ee", b"not bencode"] {
        let item = resign(&w[0], HeadItem { value: value.to_vec(), ..good.clone() });
        item.check().unwrap();
        let e = item.head(&network, &set).unwrap_err();
        assert!(matches!(e, DhtError::Malformed(_)), "{e}");
    }
}

/// `item` signed again by `wallet` as it stands (for hostile items a member signs).
fn resign(wallet: &Wallet, item: HeadItem) -> HeadItem {
    let pair = aws_lc_rs_sign(wallet, &swarmvm_dht::signable(&item.salt, item.seq, &item.value));
    HeadItem { signature: pair, ..item }
}

fn aws_lc_rs_sign(wallet: &Wallet, message: &[u8]) -> [u8; 64] {
    let pkcs8 = wallet.to_pkcs8_der();
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).unwrap();
    pair.sign(message).as_ref().try_into().unwrap()
}

#[test]
fn links_name_each_ed25519_members_slot_and_a_network_without_one_is_refused() {
    let w = members(2);
    let set = AuthoritySet::new(w.iter().map(|k| k.public_key().clone()).collect(), 1).unwrap();
    let network = set.network_id().to_string();
    let all = links(&set, &network).unwrap();
    assert_eq!(all.len(), 2);
    for (l, wallet) in all.iter().zip(set.members()) {
        let key = wallet.1.ed25519_bytes().unwrap();
        assert_eq!(*l, link(key, &network));
        assert_eq!(parse_link(l).unwrap(), (*key, network.clone()));
        assert!(l.starts_with("magnet:?xs=urn:btpk:"), "{l}");
    }
    for bad in [
        "magnet:?xt=urn:btih:00",
        "magnet:?xs=urn:btpk:00&s=6e6574",
        "magnet:?xs=urn:btpk:zz&s=6e6574",
        "http://example.invalid/",
        &format!("magnet:?xs=urn:btpk:{}", hex(&[1; 32])),
    ] {
        assert!(matches!(parse_link(bad), Err(DhtError::Link(_))), "{bad}");
    }
    let rsa = Wallet::generate(Algorithm::Rsa2048).unwrap();
    let rsa_set = AuthoritySet::single(rsa.public_key().clone());
    let e = links(&rsa_set, rsa_set.network_id().as_str()).unwrap_err();
    assert!(e.to_string().contains("no Ed25519 member"), "{e}");
}

fn vector_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/dht-head.json")
}

/// The golden vector: three members from seeds 1, 2, 3, a 2-of-3 set, a head of seq 41
/// signed by members 3 and 1 with a snapshot claim, put by member 2, signed again 3 times.
fn vector() -> Value {
    let w = members(3);
    let set = AuthoritySet::new(w.iter().map(|k| k.public_key().clone()).collect(), 2).unwrap();
    let network = set.network_id().to_string();
    let text = head(&[&w[2], &w[0]], &set, 41, Some(&snapshot(40)));
    let item = HeadItem::put(&w[1], &text, &ih(), &set, 3).unwrap();
    json!({
        "about": "A BEP 44 head item (docs/format.md, Heads in the DHT). Members are Ed25519 keys from the seeds [i; 32] for i = 1, 2, 3; the set is 2 of 3. tests/vectors/verify_dht_item.py checks it.",
        "members": w.iter().map(|k| hex(k.public_key().ed25519_bytes().unwrap())).collect::<Vec<_>>(),
        "member_ids": w.iter().map(|k| k.id().to_string()).collect::<Vec<_>>(),
        "network": network,
        "head": text,
        "ih": IH,
        "k": hex(&item.key),
        "salt": network,
        "seq": item.seq,
        "v": hex(&item.value),
        "sig": hex(&item.signature),
        "target": hex(&target(&item.key, &item.salt)),
    })
}

#[test]
fn the_golden_vector_is_what_this_code_writes_and_python_checks_it_alone() {
    let made = vector();
    if std::env::var_os("SWARMVM_WRITE_VECTORS").is_some() {
        std::fs::write(vector_path(), serde_json::to_string_pretty(&made).unwrap() + "\n").unwrap();
    }
    let pinned: Value =
        serde_json::from_str(&std::fs::read_to_string(vector_path()).unwrap()).unwrap();
    assert_eq!(made, pinned, "the item bytes changed; if on purpose, write the vector again");
    swarmvm_test_support::require_python_modules(&["cryptography"]);
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/verify_dht_item.py");
    let out =
        std::process::Command::new("python3").arg(&script).arg(vector_path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok: head seq 41"), "{stdout}");
    // It refuses the vector with one byte of the value changed.
    let mut bad = pinned;
    let v = bad["v"].as_str().unwrap().to_owned();
    bad["v"] = json!(format!("{}{}", &v[..v.len() - 2], if v.ends_with('0') { "1" } else { "0" }));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, bad.to_string()).unwrap();
    let out = std::process::Command::new("python3").arg(&script).arg(&path).output().unwrap();
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
