//! The engine's transport: each request to another replica is a signed [`Envelope`] posted to
//! `{url}/v1/cluster/raft/{kind}`, and its answer a signed envelope checked before use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use swarmvm_token::AuthoritySet;
use swarmvm_wallet::Wallet;

use crate::error::ClusterError;
use crate::message::{Envelope, Expect};
use crate::types::{NodeId, Replica, TypeConfig};

/// What every connection of a replica shares.
pub(crate) struct Shared {
    pub(crate) http: reqwest::Client,
    pub(crate) key: Wallet,
    pub(crate) member: String,
    pub(crate) network: String,
    pub(crate) set: RwLock<AuthoritySet>,
    pub(crate) nonce: AtomicU64,
}

/// Sends `body` as a `kind` message of `term` to `to` and opens its signed answer.
pub(crate) async fn call<B: Serialize, A: DeserializeOwned>(
    shared: &Shared,
    to: &Replica,
    kind: &str,
    term: u64,
    body: &B,
) -> Result<A, ClusterError> {
    call_within(shared, to, kind, term, body, None).await
}

async fn call_within<B: Serialize, A: DeserializeOwned>(
    shared: &Shared,
    to: &Replica,
    kind: &str,
    term: u64,
    body: &B,
    timeout: Option<Duration>,
) -> Result<A, ClusterError> {
    let peer = |why: String| ClusterError::Peer { url: to.url.clone(), why };
    let nonce = shared.nonce.fetch_add(1, Ordering::Relaxed);
    let body = serde_json::to_string(body).map_err(|e| peer(e.to_string()))?;
    let envelope =
        Envelope::seal(&shared.key, kind, &shared.network, &to.member, term, nonce, body)?;
    let mut request = shared
        .http
        .post(format!("{}/v1/cluster/raft/{kind}", to.url.trim_end_matches('/')))
        .json(&envelope);
    if let Some(t) = timeout {
        request = request.timeout(t);
    }
    let answer = request.send().await.map_err(|e| {
        if e.is_connect() {
            ClusterError::Unreachable { url: to.url.clone(), why: e.to_string() }
        } else {
            peer(e.to_string())
        }
    })?;
    let status = answer.status();
    if !status.is_success() {
        let text = answer.text().await.unwrap_or_default();
        return Err(peer(format!("answered {status}: {}", text.trim())));
    }
    let reply: Envelope = answer.json().await.map_err(|e| peer(e.to_string()))?;
    let set = shared.set.read().clone();
    let expect = Expect {
        kind: &format!("{kind}-reply"),
        network: &shared.network,
        me: &shared.member,
        nonce: Some(nonce),
        from: Some(&to.member),
    };
    Ok(reply.open(expect, &set)?)
}

/// Makes a [`Peer`] for each replica the engine talks to.
pub(crate) struct Network {
    pub(crate) shared: std::sync::Arc<Shared>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Replica) -> Peer {
        Peer { shared: self.shared.clone(), target, to: node.clone() }
    }
}

/// The engine's connection to one other replica.
pub(crate) struct Peer {
    shared: std::sync::Arc<Shared>,
    target: NodeId,
    to: Replica,
}

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Replica, RaftError<NodeId, E>>>;

impl Peer {
    async fn send<B, A, E>(&self, kind: &str, term: u64, body: &B, option: &RPCOption) -> Rpc<A, E>
    where
        B: Serialize,
        A: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Result<A, RaftError<NodeId, E>>, ClusterError> =
            call_within(&self.shared, &self.to, kind, term, body, Some(option.hard_ttl())).await;
        match answer {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.to.clone(),
                e,
            ))),
            // Nobody listens there: the engine backs off. Anything else (a slow answer, a
            // refusal) is a network error, tried again at once.
            Err(ClusterError::Unreachable { why, .. }) => {
                Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(why))))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        self.send("append", rpc.vote.leader_id.term, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send("snapshot", rpc.vote.leader_id.term, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        self.send("vote", rpc.vote.leader_id.term, &rpc, &option).await
    }
}
