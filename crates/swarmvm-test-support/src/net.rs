//! A test network: an authority, wallets, registration tokens and contracts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use swarmvm_primitives::{BundleId, Rules};
use swarmvm_token::{
    FileDigest, IssueTime, ManifestContent, Network, Signer, TrustStore, WalletEntry,
    issue_operations, issue_wallets, sign_contract,
};
use swarmvm_vm::HANDLER_NAMES;
use swarmvm_wallet::{Algorithm, Wallet};

/// An authority with `peers` registered wallets and tokens registering every catalogue
/// handler under its own name.
#[derive(Debug)]
pub struct TestNet {
    /// The authority (its id is the network id).
    pub authority: Wallet,
    /// The peers' wallets.
    pub peers: Vec<Wallet>,
    /// Trusts the authority.
    pub trust: TrustStore,
    /// The network of the authority's key alone.
    pub network: Network,
    /// The operations token, then the wallets token.
    pub tokens: Vec<String>,
    /// The time the tokens were issued at.
    pub issued_at: u64,
}

impl TestNet {
    /// A network of fresh Ed25519 keys, tokens issued now with a 30-day TTL.
    pub fn new(peers: usize) -> Self {
        Self::at(peers, crate::now())
    }

    /// A network whose tokens were issued at `issued_at` (valid for 30 days).
    pub fn at(peers: usize, issued_at: u64) -> Self {
        let authority = Wallet::generate(Algorithm::Ed25519).unwrap();
        let peers: Vec<Wallet> =
            (0..peers).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
        let time = IssueTime { now: issued_at, ttl: 30 * 86_400 };
        let ops: BTreeMap<String, swarmvm_token::Operation> =
            HANDLER_NAMES.iter().map(|h| ((*h).to_owned(), (*h).into())).collect();
        let signer = Signer::Wallet(&authority);
        let entries: Vec<WalletEntry> = peers
            .iter()
            .enumerate()
            .map(|(i, w)| WalletEntry {
                label: format!("peer{}", i + 1),
                key: w.public_key().clone(),
            })
            .collect();
        let tokens = vec![
            issue_operations(&signer, &ops, HANDLER_NAMES, time).unwrap(),
            issue_wallets(&signer, &entries, time).unwrap(),
        ];
        let trust = TrustStore::with_keys([authority.public_key()]);
        let network = Network::single(authority.public_key().clone());
        Self { authority, peers, trust, network, tokens, issued_at }
    }

    /// The network id.
    pub fn id(&self) -> String {
        self.authority.id().to_string()
    }

    /// Peer `peer`'s contract with `nonce` over `actions`.
    pub fn contract(&self, peer: usize, nonce: u64, actions: &[Value]) -> String {
        sign_contract(&self.peers[peer], &self.id(), nonce, actions, self.issued_at).unwrap()
    }
}

/// A `register_student` action.
pub fn student(id: &str) -> Value {
    json!({"action": "register_student", "student": {"id": id, "name": "John Doe", "department": "Computer Science"}})
}

/// An `add_course` action.
pub fn course(id: &str) -> Value {
    json!({"action": "add_course", "course": {"id": id, "name": "Blockchain Technology", "department": "Computer Science"}})
}

/// A `vote_proposal` action.
pub fn vote(id: &str) -> Value {
    json!({"action": "vote_proposal", "proposal": {"id": id, "description": "Increase Research Funding"}})
}

/// A `generate_nft` action.
pub fn nft(id: &str) -> Value {
    json!({"action": "generate_nft", "nft": {"id": id, "name": "RareArt",
        "metadata": {"artist": "Alice", "creation_date": "2024-11-23", "description": "A rare piece of digital art."}}})
}

impl TestNet {
    /// Writes a bundle folder `parent/name`: the network's registration tokens when
    /// `with_tokens`, the given contracts, and a manifest signed by the authority, as the
    /// next bundle after `after` (or seq 1).
    pub fn bundle(
        &self,
        parent: &Path,
        name: &str,
        with_tokens: bool,
        contracts: &[String],
        after: Option<&Path>,
    ) -> PathBuf {
        self.bundle_under(parent, name, with_tokens, contracts, after, Rules::CURRENT)
    }

    /// [`TestNet::bundle`] whose manifest names `rules`.
    pub fn bundle_under(
        &self,
        parent: &Path,
        name: &str,
        with_tokens: bool,
        contracts: &[String],
        after: Option<&Path>,
        rules: Rules,
    ) -> PathBuf {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let tokens = if with_tokens { self.tokens.join("\n") + "\n" } else { String::new() };
        std::fs::write(dir.join("registration_tokens.txt"), tokens).unwrap();
        let body: String = contracts.iter().map(|c| format!("{c}\n")).collect();
        std::fs::write(dir.join("contracts.jsonl"), body).unwrap();
        let options = swarmvm_bundle::CreateOptions {
            after,
            now: self.issued_at,
            force: true,
            rules,
            ..Default::default()
        };
        swarmvm_bundle::create_bundle(&dir, &[&self.authority], &self.network, &options).unwrap();
        dir
    }

    /// Opens a bundle folder of this network (against its one-key set).
    pub fn open(
        &self,
        dir: &Path,
    ) -> Result<swarmvm_bundle::OpenedBundle, swarmvm_bundle::BundleError> {
        swarmvm_bundle::open_bundle(dir, self.network.id(), self.network.genesis())
    }

    /// A manifest signed by the authority alone for its network.
    pub fn manifest(
        &self,
        seq: u64,
        parent: Option<BundleId>,
        files: &BTreeMap<String, FileDigest>,
        now: u64,
    ) -> String {
        sign_single(&self.authority, seq, parent, files, now)
    }
}

/// A manifest signed by `wallet` alone, for the network of its key.
pub fn sign_single(
    wallet: &Wallet,
    seq: u64,
    parent: Option<BundleId>,
    files: &BTreeMap<String, FileDigest>,
    now: u64,
) -> String {
    sign_single_under(wallet, seq, parent, files, now, Rules::CURRENT)
}

/// [`sign_single`], naming `rules`.
pub fn sign_single_under(
    wallet: &Wallet,
    seq: u64,
    parent: Option<BundleId>,
    files: &BTreeMap<String, FileDigest>,
    now: u64,
    rules: Rules,
) -> String {
    let network = wallet.id().to_string();
    let content = ManifestContent {
        seq,
        parent,
        parent_info_hash: None,
        files,
        network: &network,
        authority_set: None,
        now,
        rules,
    };
    swarmvm_token::sign_manifest(&[wallet], &content).unwrap()
}
