//! Hostile head items from the BitTorrent DHT (issue 30): each is read as a node following a
//! link reads one (the item checked and its head rebuilt against the set in force, then the
//! head verified) and must be refused with a one-line reason. What a refused item cannot do
//! to a follower (replace its good head, block another member's slot) is tested live in
//! `dht::a_hostile_item_never_replaces_a_good_head_and_blocks_only_its_own_slot`.

use swarmvm_dht::HeadItem;
use swarmvm_token::{AuthoritySet, HeadContent, Network, sign_head, unix_now, verify_head};
use swarmvm_vm::Hash32;
use swarmvm_wallet::{Algorithm, Wallet};

use super::{Case, World, case};

/// The rule that must refuse each case: a part of its one-line reason.
pub(super) const RULES: &[(&str, &str, &str)] = &[
    ("dht", "a value changed after signing", "signature does not verify"),
    ("dht", "a seq raised after signing", "signature does not verify"),
    ("dht", "a value of 1001 bytes", "BEP 44 stores at most 1000"),
    ("dht", "an item under an outsider's key", "its key is not a member's"),
    ("dht", "a head signed by an outsider", "no member's key begins"),
    ("dht", "a head signed by fewer than K members", "are required"),
    ("dht", "a seq below its head's", "is not its head's"),
    ("dht", "a seq far above its head's", "is not its head's"),
    ("dht", "another network's item", "salt is not this network's id"),
    ("dht", "a magnet naming another info-hash", "does not name its ih"),
    ("dht", "a value that is not bencode", "not a swarmvm head"),
    ("dht", "an expired head", "token expired at"),
];

/// The info-hash the cases' heads point at.
const IH: [u8; 20] = [0x5a; 20];

fn magnet(ih: &[u8; 20]) -> String {
    let hex: String = ih.iter().map(|b| format!("{b:02x}")).collect();
    format!("magnet:?xt=urn:btih:{hex}&dn=bundle-7")
}

/// A head of `network` for seq 7 signed by `signers` at `iat`, living `age` seconds.
fn head(network: &str, signers: &[&Wallet], iat: u64, age: u64, magnet: &str) -> String {
    let content = HeadContent {
        network,
        seq: 7,
        bundle: swarmvm_primitives::BundleId::of_payload(b"bundle 7"),
        magnet,
        state_root: Hash32::digest(b"root 7"),
        now: iat,
        max_age: age,
        snapshot: None,
    };
    sign_head(signers, &content).unwrap()
}

/// Reads `item` as a follower does against `network`: the item and the head inside.
fn read(item: &HeadItem, network: &Network) -> Result<(), String> {
    let set = network.genesis();
    let (_, text) = item.head(network.id(), set).map_err(|e| e.to_string())?;
    verify_head(&text, network.id(), set, unix_now()).map(|_| ()).map_err(|e| e.to_string())
}

/// The world's own, good item: its member's head, put by its member.
fn good(w: &World) -> HeadItem {
    let network = &w.net.network;
    let text = head(network.id(), &[&w.net.authority], unix_now(), 600, &magnet(&IH));
    HeadItem::put(&w.net.authority, &text, &IH, network.genesis(), 1).unwrap()
}

pub(super) fn cases() -> Vec<Case> {
    let c = |name: &'static str, f: fn(&World) -> Result<(), String>| {
        case("dht", name, move |w| {
            // The good item is read as good: a case's refusal is its own.
            read(&good(w), &w.net.network).map_err(|e| format!("the good item: {e}"))?;
            f(w)
        })
    };
    vec![
        c("a value changed after signing", |w| {
            let mut item = good(w);
            let last = item.value.len() - 2;
            item.value[last] ^= 1;
            read(&item, &w.net.network)
        }),
        c("a seq raised after signing", |w| {
            let mut item = good(w);
            item.seq += 1 << 32;
            read(&item, &w.net.network)
        }),
        c("a value of 1001 bytes", |w| {
            let item = good(w);
            let mut value = item.value.clone();
            while swarmvm_dht::encoded_len(&value) < 1001 {
                value.push(b'x');
            }
            let item =
                HeadItem::signed(&w.net.authority, item.salt, item.seq, value).map_err(one)?;
            read(&item, &w.net.network)
        }),
        c("an item under an outsider's key", |w| {
            let item = good(w);
            let outsider = &w.stranger.authority;
            let item = HeadItem::signed(outsider, item.salt, item.seq, item.value).map_err(one)?;
            read(&item, &w.net.network)
        }),
        c("a head signed by an outsider", |w| {
            // The member puts a head the outsider signed, as a writer that counts the
            // outsider in would encode it.
            let (member, outsider) = (&w.net.authority, &w.stranger.authority);
            let both = AuthoritySet::new(
                vec![member.public_key().clone(), outsider.public_key().clone()],
                1,
            )
            .unwrap();
            let net = w.net.network.id();
            let text = head(net, &[outsider], unix_now(), 600, &magnet(&IH));
            let item = HeadItem::put(member, &text, &IH, &both, 1).map_err(one)?;
            read(&item, &w.net.network)
        }),
        c("a head signed by fewer than K members", |_| {
            let keys: Vec<Wallet> =
                (0..2).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
            let set = AuthoritySet::new(keys.iter().map(|k| k.public_key().clone()).collect(), 2)
                .unwrap();
            let network = Network::from_set(set.clone());
            let text = head(network.id(), &[&keys[0]], unix_now(), 600, &magnet(&IH));
            let item = HeadItem::put(&keys[0], &text, &IH, &set, 1).map_err(one)?;
            read(&item, &network)
        }),
        c("a seq below its head's", |w| {
            let item = good(w);
            let item =
                HeadItem::signed(&w.net.authority, item.salt, 6 << 32, item.value).map_err(one)?;
            read(&item, &w.net.network)
        }),
        c("a seq far above its head's", |w| {
            // The item a member would put to hold its slot against every later head.
            let item = good(w);
            let item =
                HeadItem::signed(&w.net.authority, item.salt, i64::MAX, item.value).map_err(one)?;
            read(&item, &w.net.network)
        }),
        c("another network's item", |w| {
            // The same key governs another network (a shared key): its item is not this
            // network's head.
            let other = Network::from_set(
                AuthoritySet::new(
                    vec![
                        w.net.authority.public_key().clone(),
                        w.stranger.authority.public_key().clone(),
                    ],
                    1,
                )
                .unwrap(),
            );
            let text = head(other.id(), &[&w.net.authority], unix_now(), 600, &magnet(&IH));
            let item =
                HeadItem::put(&w.net.authority, &text, &IH, other.genesis(), 1).map_err(one)?;
            read(&item, &w.net.network)
        }),
        c("a magnet naming another info-hash", |w| {
            let network = &w.net.network;
            let other = [0x17; 20];
            let text = head(network.id(), &[&w.net.authority], unix_now(), 600, &magnet(&other));
            let item =
                HeadItem::put(&w.net.authority, &text, &other, network.genesis(), 1).unwrap();
            // The value's ih says IH while its magnet names another torrent.
            let value = replace(&item.value, &other, &IH);
            let item =
                HeadItem::signed(&w.net.authority, item.salt, item.seq, value).map_err(one)?;
            read(&item, network)
        }),
        c("a value that is not bencode", |w| {
            let item = good(w);
            let item = HeadItem::signed(
                &w.net.authority,
                item.salt,
                item.seq,
                b"{\"ih\": \"not bencode\"}".to_vec(),
            )
            .map_err(one)?;
            read(&item, &w.net.network)
        }),
        c("an expired head", |w| {
            // Taken only to catch up when nothing newer is known; read as a head, refused.
            let network = &w.net.network;
            let text = head(network.id(), &[&w.net.authority], unix_now() - 120, 60, &magnet(&IH));
            let item = HeadItem::put(&w.net.authority, &text, &IH, network.genesis(), 1).unwrap();
            read(&item, network)
        }),
    ]
}

fn one(e: swarmvm_dht::DhtError) -> String {
    e.to_string()
}

/// `bytes` with the first `from` replaced by `to`.
fn replace(bytes: &[u8], from: &[u8; 20], to: &[u8; 20]) -> Vec<u8> {
    let at = bytes.windows(20).position(|w| w == from).unwrap();
    let mut out = bytes.to_vec();
    out[at..at + 20].copy_from_slice(to);
    out
}
