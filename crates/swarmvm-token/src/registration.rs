//! Registration tokens: an authority's `operations` and `wallets` registrations.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};
use swarmvm_primitives::Hash32;
use swarmvm_primitives::fuel::{DEFAULT_FUEL, MAX_FUEL};
use swarmvm_wallet::{KeyMaterial, PublicKey};

use crate::error::{IssueError, Result, VerifyError};
use crate::jws::{Decoded, Signer, sign};
use crate::kind::{Kind, shorten};
use crate::time::{TimeCheck, Validity, check_times};
use crate::trust::TrustStore;

/// Default lifetime of a registration token: 30 days.
pub const DEFAULT_TTL_SECS: u64 = 30 * 24 * 3600;
/// Longest lifetime a token may be issued with: 10 years.
pub const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;
/// Most wallets or actions one token may revoke or withdraw.
pub const MAX_REVOCATIONS: usize = 256;
/// Longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 128;
/// Most operations one token may register.
pub const MAX_OPERATIONS: usize = 256;
/// Longest action or handler name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest wallet label.
pub const MAX_LABEL_LEN: usize = 128;

/// A verified registration token.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The authority that signed it (wallet id, or the HS256 issuer name).
    pub issuer: String,
    /// The JWS algorithm it was signed with (`EdDSA`, `RS256`, `HS256`).
    pub algorithm: &'static str,
    /// Its time claims.
    pub validity: Validity,
    /// Its `jti`, when present.
    pub jti: Option<String>,
    /// SHA-256 of its payload (what its signature covers).
    pub digest: Hash32,
    /// What it registers.
    pub body: RegistrationBody,
    /// What it takes back: wallet ids (`revoke`, wallets tokens) or action names (`withdraw`,
    /// operations tokens), applied after its registrations.
    pub revocations: Vec<String>,
}

impl Registration {
    /// The key under which the state remembers that it was applied: `ISS/JTI`, or
    /// `ISS/sha256:HEX` of its payload when it has no `jti`. The issuer comes first, so one
    /// member's token ids can never block another member's tokens.
    pub fn replay_key(&self) -> String {
        match &self.jti {
            Some(jti) => format!("{}/{jti}", self.issuer),
            None => format!("{}/sha256:{}", self.issuer, self.digest.to_hex()),
        }
    }

    /// The kind: operations or wallets.
    pub fn kind(&self) -> Kind {
        match self.body {
            RegistrationBody::Operations(_) => Kind::Operations,
            RegistrationBody::Wallets(_) => Kind::Wallets,
        }
    }

    /// The modules an operations token binds actions to (its WebAssembly operations), in the
    /// order of the actions, once per action; none for a wallets token.
    pub fn modules(&self) -> Vec<Hash32> {
        match &self.body {
            RegistrationBody::Operations(ops) => ops
                .values()
                .filter_map(|op| match op {
                    Operation::Wasm { module, .. } => Some(*module),
                    Operation::Handler(_) => None,
                })
                .collect(),
            RegistrationBody::Wallets(_) => Vec::new(),
        }
    }
}

/// What a registration token registers.
#[derive(Debug, Clone)]
pub enum RegistrationBody {
    /// Action name → what it runs.
    Operations(BTreeMap<String, Operation>),
    /// Wallets that may act.
    Wallets(Vec<WalletEntry>),
}

/// What an operations token binds an action to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// A handler of the VM's catalogue, by name (a JSON string in the token).
    Handler(String),
    /// A WebAssembly module, by the SHA-256 of its bytes, run with `fuel` per action
    /// (`{"wasm": "<64 hex>", "fuel": N}` in the token).
    Wasm {
        /// The module's SHA-256.
        module: Hash32,
        /// Fuel per action, 1 to [`MAX_FUEL`].
        fuel: u64,
    },
}

impl Operation {
    /// A WebAssembly operation with the default fuel.
    pub fn wasm(module: Hash32) -> Self {
        Self::Wasm { module, fuel: DEFAULT_FUEL }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Handler(h) => f.write_str(h),
            Self::Wasm { module, fuel } => write!(f, "wasm {module} (fuel {fuel})"),
        }
    }
}

impl From<&str> for Operation {
    fn from(handler: &str) -> Self {
        Self::Handler(handler.to_owned())
    }
}

impl Serialize for Operation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Handler(h) => s.serialize_str(h),
            Self::Wasm { module, fuel } => {
                serde_json::json!({"wasm": module.to_hex(), "fuel": fuel}).serialize(s)
            }
        }
    }
}

/// One registered wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletEntry {
    /// A human label (`peer1`); not unique, not trusted for anything.
    pub label: String,
    /// The wallet's public key.
    pub key: PublicKey,
}

/// Time claims of a token to issue.
#[derive(Debug, Clone, Copy)]
pub struct IssueTime {
    /// `iat` and `nbf`, Unix seconds.
    pub now: u64,
    /// Seconds until `exp`.
    pub ttl: u64,
}

impl IssueTime {
    /// Issued at the system clock's time with the default TTL.
    pub fn system_now() -> Self {
        Self { now: crate::time::unix_now(), ttl: DEFAULT_TTL_SECS }
    }
}

#[derive(Serialize)]
struct RegistrationClaims<'a, T: Serialize> {
    iss: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct OperationsBody<'a> {
    operations: &'a BTreeMap<String, Operation>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    withdraw: &'a [String],
}

#[derive(Serialize)]
struct WalletsBody<'a> {
    wallets: Vec<Value>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    revoke: &'a [String],
}

fn claims<'a, T: Serialize>(
    signer: &'a str,
    time: IssueTime,
    body: T,
) -> Result<RegistrationClaims<'a, T>, IssueError> {
    if time.ttl == 0 || time.ttl > MAX_TTL_SECS {
        return Err(IssueError::BadTtl(time.ttl));
    }
    Ok(RegistrationClaims {
        iss: signer,
        iat: time.now,
        nbf: time.now,
        exp: time.now.saturating_add(time.ttl),
        jti: uuid::Uuid::new_v4().to_string(),
        body,
    })
}

/// Issues an `operations` token. Every handler must be in `handlers` (the VM's catalogue);
/// a module's fuel must be 1 to [`MAX_FUEL`].
pub fn issue_operations(
    signer: &Signer<'_>,
    operations: &BTreeMap<String, Operation>,
    handlers: &[&str],
    time: IssueTime,
) -> Result<String, IssueError> {
    issue_operations_withdrawing(signer, operations, &[], handlers, time)
}

/// [`issue_operations`] that also withdraws the actions `withdraw` (`withdraw` claim): from
/// the bundle that applies it, contracts using them are rejected. `operations` may then be
/// empty.
pub fn issue_operations_withdrawing(
    signer: &Signer<'_>,
    operations: &BTreeMap<String, Operation>,
    withdraw: &[String],
    handlers: &[&str],
    time: IssueTime,
) -> Result<String, IssueError> {
    check_operations(operations, handlers, !withdraw.is_empty())?;
    check_withdraw(withdraw, operations)?;
    let issuer = signer.issuer();
    let body = OperationsBody { operations, withdraw };
    sign(signer, Kind::Operations, &claims(&issuer, time, body)?)
}

/// Issues a `wallets` token listing public keys with their labels.
pub fn issue_wallets(
    signer: &Signer<'_>,
    wallets: &[WalletEntry],
    time: IssueTime,
) -> Result<String, IssueError> {
    issue_wallets_revoking(signer, wallets, &[], time)
}

/// [`issue_wallets`] that also revokes the wallets `revoke` (ids; `revoke` claim): from the
/// bundle that applies it, their contracts are rejected, for good. `wallets` may then be
/// empty.
pub fn issue_wallets_revoking(
    signer: &Signer<'_>,
    wallets: &[WalletEntry],
    revoke: &[String],
    time: IssueTime,
) -> Result<String, IssueError> {
    check_wallets(wallets, !revoke.is_empty())?;
    check_revoke(revoke, wallets)?;
    let wallets = wallets
        .iter()
        .map(|w| serde_json::json!({"label": w.label, "jwk": w.key.to_jwk()}))
        .collect();
    let issuer = signer.issuer();
    sign(signer, Kind::Wallets, &claims(&issuer, time, WalletsBody { wallets, revoke })?)
}

/// Verifies a registration token of either kind: strict parsing, trusted signer with the
/// algorithm of its key, `iss`, `exp` (required), `nbf`, `iat` at `time`, and the content
/// rules (known handlers, public keys only, RSA ≥ 2048 bits).
pub fn verify_registration(
    token: &str,
    trust: &TrustStore,
    time: TimeCheck,
    handlers: &[&str],
) -> Result<Registration> {
    let decoded = Decoded::parse(token)?;
    let kind = Kind::resolve(decoded.typ.as_deref(), &decoded.claims)?;
    if !kind.is_registration() {
        return Err(VerifyError::WrongKind {
            found: kind,
            expected: "an operations or wallets token".into(),
        });
    }
    let (issuer, algorithm) = trust.authenticate(&decoded, kind)?;
    let validity = check_times(&decoded.claims, time, Some(MAX_TTL_SECS))?;
    let jti = match decoded.claims.get("jti") {
        None => None,
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= MAX_JTI_LEN
                && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Some(s.clone())
        }
        Some(_) => {
            return Err(invalid(
                "jti",
                format!("not a string of 1 to {MAX_JTI_LEN} printable ascii characters"),
            ));
        }
    };
    let (body, revocations) = match kind {
        Kind::Operations => {
            if decoded.claims.contains_key("revoke") {
                return Err(invalid("revoke", "belongs in a wallets token"));
            }
            let ops = parse_operations(&decoded.claims)?;
            let withdraw = parse_names(&decoded.claims, "withdraw")?;
            check_operations(&ops, handlers, !withdraw.is_empty())?;
            check_withdraw(&withdraw, &ops)?;
            (RegistrationBody::Operations(ops), withdraw)
        }
        _ => {
            if decoded.claims.contains_key("withdraw") {
                return Err(invalid("withdraw", "belongs in an operations token"));
            }
            let wallets = parse_wallets(&decoded.claims)?;
            let revoke = parse_names(&decoded.claims, "revoke")?;
            check_wallets(&wallets, !revoke.is_empty())?;
            check_revoke(&revoke, &wallets)?;
            (RegistrationBody::Wallets(wallets), revoke)
        }
    };
    let digest = Hash32::digest(&decoded.payload);
    Ok(Registration { issuer, algorithm, validity, jti, digest, body, revocations })
}

fn invalid(claim: impl Into<String>, reason: impl Into<String>) -> VerifyError {
    VerifyError::InvalidClaim { claim: claim.into(), reason: reason.into() }
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn parse_operations(claims: &Map<String, Value>) -> Result<BTreeMap<String, Operation>> {
    let Some(Value::Object(ops)) = claims.get("operations") else {
        return Err(invalid("operations", "not an object of action name to handler name"));
    };
    ops.iter().map(|(action, op)| Ok((action.clone(), parse_operation(action, op)?))).collect()
}

/// A handler name, or exactly `{"wasm": "<64 lowercase hex>", "fuel": N}`.
fn parse_operation(action: &str, op: &Value) -> Result<Operation> {
    let claim = || format!("operations.{}", shorten(action));
    let shape = "a handler name, or {\"wasm\": \"<64 hex of the module's sha256>\", \"fuel\": N}";
    match op {
        Value::String(h) => Ok(Operation::Handler(h.clone())),
        Value::Object(o) => {
            if o.len() != 2 {
                return Err(invalid(claim(), shape));
            }
            let module = match o.get("wasm") {
                Some(Value::String(h)) => h
                    .parse::<Hash32>()
                    .map_err(|_| invalid(format!("{}.wasm", claim()), "is not 64 lowercase hex"))?,
                _ => return Err(invalid(claim(), shape)),
            };
            let fuel = match o.get("fuel").and_then(Value::as_u64) {
                Some(f) => f,
                None => return Err(invalid(claim(), shape)),
            };
            Ok(Operation::Wasm { module, fuel })
        }
        _ => Err(invalid(claim(), shape)),
    }
}

/// A list of strings under `claim` (absent: empty).
fn parse_names(claims: &Map<String, Value>, claim: &str) -> Result<Vec<String>> {
    match claims.get(claim) {
        None => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(invalid(claim, "not a list of strings")),
            })
            .collect(),
        Some(_) => Err(invalid(claim, "not a list of strings")),
    }
}

fn check_withdraw(withdraw: &[String], ops: &BTreeMap<String, Operation>) -> Result<()> {
    if withdraw.len() > MAX_REVOCATIONS {
        return Err(invalid("withdraw", format!("at most {MAX_REVOCATIONS} actions")));
    }
    let mut seen = BTreeSet::new();
    for action in withdraw {
        if !is_name(action) {
            return Err(invalid(
                format!("withdraw.{}", shorten(action)),
                format!("action names are 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 _ - ."),
            ));
        }
        if ops.contains_key(action) {
            return Err(invalid(
                format!("withdraw.{}", shorten(action)),
                "is also registered by this token",
            ));
        }
        if !seen.insert(action) {
            return Err(invalid(format!("withdraw.{}", shorten(action)), "is listed twice"));
        }
    }
    Ok(())
}

fn check_revoke(revoke: &[String], wallets: &[WalletEntry]) -> Result<()> {
    if revoke.len() > MAX_REVOCATIONS {
        return Err(invalid("revoke", format!("at most {MAX_REVOCATIONS} wallets")));
    }
    let mut seen = BTreeSet::new();
    for id in revoke {
        if id.parse::<swarmvm_wallet::WalletId>().is_err() {
            return Err(invalid(
                format!("revoke.{}", shorten(id)),
                "is not a wallet id (43 base64url characters)",
            ));
        }
        if wallets.iter().any(|w| w.key.id().as_str() == id) {
            return Err(invalid(
                format!("revoke.{}", shorten(id)),
                "is also registered by this token",
            ));
        }
        if !seen.insert(id) {
            return Err(invalid(format!("revoke.{}", shorten(id)), "is listed twice"));
        }
    }
    Ok(())
}

fn check_operations(
    ops: &BTreeMap<String, Operation>,
    handlers: &[&str],
    withdraws: bool,
) -> Result<()> {
    if (ops.is_empty() && !withdraws) || ops.len() > MAX_OPERATIONS {
        return Err(invalid(
            "operations",
            format!("must register 1 to {MAX_OPERATIONS} operations, not {}", ops.len()),
        ));
    }
    for (action, handler) in ops {
        if !is_name(action) {
            return Err(invalid(
                format!("operations.{}", shorten(action)),
                format!("action names are 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 _ - ."),
            ));
        }
        match handler {
            Operation::Handler(h) if !handlers.contains(&h.as_str()) => {
                return Err(VerifyError::UnknownHandler {
                    action: shorten(action),
                    handler: shorten(h),
                    known: handlers.join(", "),
                });
            }
            Operation::Wasm { fuel, .. } if !(1..=MAX_FUEL).contains(fuel) => {
                return Err(invalid(
                    format!("operations.{}.fuel", shorten(action)),
                    format!("{fuel} is not from 1 to {MAX_FUEL}"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_wallets(claims: &Map<String, Value>) -> Result<Vec<WalletEntry>> {
    let Some(Value::Array(list)) = claims.get("wallets") else {
        return Err(invalid("wallets", "not a list"));
    };
    list.iter()
        .enumerate()
        .map(|(index, entry)| {
            let Value::Object(entry) = entry else {
                return Err(invalid(format!("wallets[{index}]"), "not an object"));
            };
            let label = match entry.get("label") {
                None => format!("wallet-{}", index + 1),
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(invalid(format!("wallets[{index}].label"), "not a string")),
            };
            let key = match (entry.get("jwk"), entry.get("public_key")) {
                (Some(jwk), None) => PublicKey::from_jwk(jwk),
                // The design note's form: a PKCS#1 `RSA PUBLIC KEY` PEM.
                (None, Some(Value::String(pem))) => {
                    match KeyMaterial::parse(pem.as_bytes(), None) {
                        Ok((KeyMaterial::Public(key), _)) => Ok(key),
                        Ok((KeyMaterial::Private(_), _)) => {
                            return Err(VerifyError::PrivateKeyMaterial(format!(
                                "a private key at wallets[{index}].public_key"
                            )));
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => {
                    return Err(invalid(
                        format!("wallets[{index}]"),
                        "needs exactly one of 'jwk' (public JWK) or 'public_key' (PEM)",
                    ));
                }
            }
            .map_err(|reason| VerifyError::WalletKey { index, reason })?;
            Ok(WalletEntry { label, key })
        })
        .collect()
}

fn check_wallets(wallets: &[WalletEntry], revokes: bool) -> Result<()> {
    if wallets.is_empty() && !revokes {
        return Err(invalid("wallets", "must register at least one wallet (or revoke one)"));
    }
    let mut seen = BTreeSet::new();
    for (index, w) in wallets.iter().enumerate() {
        if w.label.chars().count() > MAX_LABEL_LEN || swarmvm_primitives::text::has_hidden(&w.label)
        {
            return Err(invalid(
                format!("wallets[{index}].label"),
                format!(
                    "at most {MAX_LABEL_LEN} characters, no control or invisible format characters (bidirectional overrides, zero-width)"
                ),
            ));
        }
        if !seen.insert(w.key.id()) {
            return Err(invalid(
                format!("wallets[{index}]"),
                format!("wallet {} is listed twice", w.key.id()),
            ));
        }
    }
    Ok(())
}
