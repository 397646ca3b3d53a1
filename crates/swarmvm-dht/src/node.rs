//! A node of the mainline DHT that puts and gets head items (through the `mainline` crate, a
//! BEP 5 and BEP 44 implementation), in server mode so that it stores the items others put
//! and answers for them: the nodes of a network are its DHT, and heads outlive the writer
//! that put them. It never contacts the public bootstrap nodes unless asked to
//! (an empty bootstrap list starts a DHT of its own that others may join).

use std::net::{SocketAddr, SocketAddrV4};

use mainline::{Dht, MutableItem};

use crate::{DhtError, HeadItem};

/// The public mainline DHT's bootstrap nodes (mainline's defaults), for a node that follows a
/// link with no private DHT given. Never used in tests.
pub fn public_bootstrap() -> Vec<String> {
    mainline::DEFAULT_BOOTSTRAP_NODES.iter().map(|s| (*s).to_owned()).collect()
}

/// One DHT node.
#[derive(Debug, Clone)]
pub struct DhtNode {
    dht: mainline::async_dht::AsyncDht,
    addr: SocketAddrV4,
}

/// Why the DHT could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DhtNodeError {
    /// The UDP socket could not be bound.
    #[error("cannot start the DHT on {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddrV4,
        /// Why.
        source: std::io::Error,
    },
    /// A put reached no node that stored the item.
    #[error("the item was not stored: {0}")]
    Put(String),
    /// An announce reached no node that took it.
    #[error("the announce was not taken: {0}")]
    Announce(String),
}

impl DhtNode {
    /// Starts a node on `bind` (port 0 for any) that joins the DHT through `bootstrap`
    /// (`HOST:PORT` of nodes already in it; empty for a DHT of its own).
    pub async fn start(bind: SocketAddrV4, bootstrap: &[String]) -> Result<Self, DhtNodeError> {
        let mut builder = Dht::builder();
        builder.bind_address(*bind.ip()).port(bind.port()).server_mode();
        if bootstrap.is_empty() {
            builder.no_bootstrap();
        } else {
            builder.bootstrap(bootstrap);
        }
        let dht =
            builder.build().map_err(|source| DhtNodeError::Bind { addr: bind, source })?.as_async();
        let addr = dht.info().await.local_addr();
        Ok(Self { dht, addr })
    }

    /// Where it listens (UDP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(self.addr)
    }

    /// Waits until it has joined the DHT through its bootstrap nodes; false when none answered.
    pub async fn bootstrapped(&self) -> bool {
        self.dht.bootstrapped().await
    }

    /// Puts `item` (signed by its member, or by another: anyone may put a signed item again).
    /// Refused locally first when the item does not [check](HeadItem::check).
    pub async fn put(&self, item: &HeadItem) -> Result<(), DhtNodeError> {
        item.check().map_err(|e| DhtNodeError::Put(e.to_string()))?;
        let mutable = MutableItem::new_signed_unchecked(
            item.key,
            item.signature,
            &item.value,
            item.seq,
            Some(&item.salt),
        );
        self.dht
            .put_mutable(mutable, None)
            .await
            .map(|_| ())
            .map_err(|e| DhtNodeError::Put(e.to_string()))
    }

    /// The items the DHT holds in the slot of `key` and `salt` with a seq above
    /// `more_recent_than`, each checked (a bad signature or an oversized value is dropped),
    /// newest first. BEP 44 nodes keep one item a slot: several answers mean nodes that have
    /// not heard of the newest yet.
    pub async fn get(
        &self,
        key: &[u8; 32],
        salt: &[u8],
        more_recent_than: Option<i64>,
    ) -> Vec<Result<HeadItem, DhtError>> {
        use futures_util::StreamExt as _;
        let items: Vec<MutableItem> =
            self.dht.get_mutable(key, Some(salt), more_recent_than).collect().await;
        let mut out: Vec<HeadItem> = Vec::new();
        for m in items {
            let item = HeadItem {
                key: *m.key(),
                salt: m.salt().unwrap_or_default().to_vec(),
                seq: m.seq(),
                value: m.value().to_vec(),
                signature: *m.signature(),
            };
            if !out.contains(&item) {
                out.push(item);
            }
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.seq));
        out.into_iter().map(|i| i.check().map(|()| i)).collect()
    }

    /// Announces that this node's BitTorrent session serves the torrent `info_hash` on TCP
    /// `port` (BEP 5 `announce_peer`, from this node's address).
    pub async fn announce(&self, info_hash: [u8; 20], port: u16) -> Result<(), DhtNodeError> {
        self.dht
            .announce_peer(mainline::Id::from(info_hash), Some(port))
            .await
            .map(|_| ())
            .map_err(|e| DhtNodeError::Announce(e.to_string()))
    }

    /// The peers announced for the torrent `info_hash` (BEP 5 `get_peers`), at most `limit`
    /// of them, each once.
    pub async fn peers(&self, info_hash: [u8; 20], limit: usize) -> Vec<SocketAddr> {
        use futures_util::StreamExt as _;
        let mut stream = self.dht.get_peers(mainline::Id::from(info_hash));
        let mut out: Vec<SocketAddr> = Vec::new();
        while let Some(batch) = stream.next().await {
            for peer in batch {
                let peer = SocketAddr::V4(peer);
                if !out.contains(&peer) {
                    out.push(peer);
                }
            }
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        out
    }
}
