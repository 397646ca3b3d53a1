//! `swarmvm token issue operations|wallets` and `swarmvm token verify`.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use swarmvm_token::{
    IssueTime, Operation, Registration, RegistrationBody, Signer, TimeCheck, WalletEntry,
    issue_operations_withdrawing, issue_wallets_revoking, unix_now, verify_registration,
};
use swarmvm_vm::HANDLER_NAMES;

use super::OutputArgs;
use super::args::{Hs256Args, PassphraseArgs, TrustArgs, load_key, load_wallet};
use super::duration::parse_duration;
use crate::exit::refused;
use crate::output;

/// Largest file of tokens or operations read.
const MAX_INPUT_FILE: u64 = 16 * 1024 * 1024;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Issue a registration token; prints the token alone on one line.
    #[command(subcommand)]
    Issue(IssueCommand),
    /// Verify tokens: one token, or a file with one token a line (registration_tokens.txt).
    Verify {
        /// A token, a file of tokens, or `-` for stdin.
        token_or_file: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Check the time rules at this moment (RFC 3339 or Unix seconds) instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
}

/// Who signs: a wallet key file, or the HS256 shared secret.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SignerArgs {
    /// The authority's private key file.
    #[arg(
        long,
        value_name = "AUTH",
        required_unless_present = "hs256_secret_file",
        conflicts_with = "hs256_secret_file"
    )]
    key: Option<PathBuf>,
    #[command(flatten)]
    passphrase: PassphraseArgs,
    #[command(flatten)]
    hs256: Hs256Args,
    /// Lifetime of the token (`exp` - `iat`), like 90s, 15m, 2h, 30d.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    ttl: Duration,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum IssueCommand {
    /// Register operations: OPS.json maps action names to handler names of the VM catalogue,
    /// or to WebAssembly modules: {"wasm": "<sha256 or path of a .wasm/.wat>", "fuel": N}.
    Operations {
        #[command(flatten)]
        signer: SignerArgs,
        /// JSON object, action name → handler name or {"wasm": ..., "fuel": ...}.
        #[arg(long, value_name = "OPS.json", required_unless_present = "withdraw")]
        ops: Option<PathBuf>,
        /// Withdraw an action: from the bundle that applies the token, contracts using it
        /// are rejected. Repeat for several.
        #[arg(long = "withdraw", value_name = "ACTION")]
        withdraw: Vec<String>,
    },
    /// Register wallets by their public keys.
    Wallets {
        #[command(flatten)]
        signer: SignerArgs,
        /// A wallet's key file (only its public key is used), optionally as LABEL=FILE;
        /// the label defaults to the file name without extensions. Repeat for several.
        #[arg(long = "wallet", value_name = "[LABEL=]PUBFILE", required_unless_present = "revoke")]
        wallets: Vec<String>,
        /// Revoke a wallet (its id), for good: from the bundle that applies the token, its
        /// contracts are rejected. Repeat for several.
        #[arg(long = "revoke", value_name = "ID", allow_hyphen_values = true)]
        revoke: Vec<String>,
    },
}

pub(crate) fn run(cmd: TokenCommand, out: OutputArgs) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Issue(IssueCommand::Operations { signer, ops, withdraw }) => {
            let ops = match ops {
                Some(path) => read_operations(&path)?,
                None => Default::default(),
            };
            let token = with_signer(&signer, |s, time| {
                issue_operations_withdrawing(s, &ops, &withdraw, HANDLER_NAMES, time)
                    .map_err(Into::into)
            })?;
            print_token(&token, out);
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Issue(IssueCommand::Wallets { signer, wallets, revoke }) => {
            let entries = wallets
                .iter()
                .map(|spec| wallet_entry(spec, &signer.passphrase))
                .collect::<Result<Vec<_>>>()?;
            let token = with_signer(&signer, |s, time| {
                issue_wallets_revoking(s, &entries, &revoke, time).map_err(Into::into)
            })?;
            print_token(&token, out);
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Verify { token_or_file, trust, at } => {
            verify(&token_or_file, &trust, at, out)
        }
    }
}

fn print_token(token: &str, out: OutputArgs) {
    if out.json {
        output::json(&json!({ "token": token }));
    } else {
        output::line(token);
    }
}

fn with_signer(
    args: &SignerArgs,
    issue: impl FnOnce(&Signer<'_>, IssueTime) -> Result<String>,
) -> Result<String> {
    let time = IssueTime { now: unix_now(), ttl: args.ttl.as_secs() };
    if let Some(hs) = args.hs256.load()? {
        return issue(&Signer::Hs256(&hs), time).context("cannot issue token");
    }
    let Some(path) = &args.key else { bail!("give --key AUTH or --hs256-secret-file FILE") };
    let wallet = load_wallet(path, &args.passphrase)?;
    issue(&Signer::Wallet(&wallet), time).context("cannot issue token")
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let reader: Box<dyn std::io::Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
    };
    reader
        .take(MAX_INPUT_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_INPUT_FILE {
        bail!("{} is larger than {MAX_INPUT_FILE} bytes", path.display());
    }
    Ok(bytes)
}

/// OPS.json: action → a handler name, or `{"wasm": HASH_OR_PATH, "fuel": N}` (`fuel`
/// optional; a path to a `.wasm` or `.wat` file, relative to OPS.json's folder, is checked
/// against the ABI and replaced by its hash).
fn read_operations(path: &Path) -> Result<BTreeMap<String, Operation>> {
    let bytes = read_limited(path)?;
    let value = swarmvm_token::parse_strict(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Value::Object(map) = value else {
        bail!("{} must be a JSON object of action name to handler name", path.display());
    };
    let base = path.parent().unwrap_or(Path::new("."));
    map.into_iter()
        .map(|(action, op)| {
            let shown = swarmvm_primitives::text::shown(&action);
            let op = match op {
                Value::String(h) => Operation::Handler(h),
                Value::Object(o) => wasm_operation(&o, base)
                    .with_context(|| format!("{}: operation '{shown}'", path.display()))?,
                _ => bail!(
                    "{}: operation '{shown}' is neither a handler name nor {{\"wasm\": ...}}",
                    path.display()
                ),
            };
            Ok((action, op))
        })
        .collect()
}

/// `{"wasm": HASH_OR_PATH, "fuel": N}` as an operation.
fn wasm_operation(o: &serde_json::Map<String, Value>, base: &Path) -> Result<Operation> {
    if let Some(extra) = o.keys().find(|k| *k != "wasm" && *k != "fuel") {
        bail!("unknown member '{}' (only wasm and fuel)", swarmvm_primitives::text::shown(extra));
    }
    let fuel = match o.get("fuel") {
        None => swarmvm_primitives::fuel::DEFAULT_FUEL,
        Some(v) => v.as_u64().context("fuel is not a whole number")?,
    };
    let Some(Value::String(target)) = o.get("wasm") else {
        bail!("'wasm' must be a module's sha-256 (64 hex) or the path of a .wasm or .wat file");
    };
    let module = match target.parse::<swarmvm_primitives::Hash32>() {
        Ok(hash) => hash,
        Err(_) => {
            let file = base.join(target);
            let raw = std::fs::read(&file)
                .with_context(|| format!("cannot read module {}", file.display()))?;
            let bytes = swarmvm_wasm::module_bytes(&raw)
                .with_context(|| format!("module {} refused", file.display()))?;
            swarmvm_wasm::check_module(&bytes)
                .with_context(|| format!("module {} refused", file.display()))?
                .hash
        }
    };
    Ok(Operation::Wasm { module, fuel })
}

fn wallet_entry(spec: &str, passphrase: &PassphraseArgs) -> Result<WalletEntry> {
    let (label, path) = match spec.split_once('=') {
        Some((label, path)) if !label.is_empty() && !label.contains('/') => {
            (label.to_owned(), PathBuf::from(path))
        }
        _ => {
            let path = PathBuf::from(spec);
            let name =
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let label = name.split('.').next().unwrap_or_default().to_owned();
            (label, path)
        }
    };
    let key = load_key(&path, passphrase)?.public_key().clone();
    Ok(WalletEntry { label, key })
}

fn parse_time(text: &str) -> Result<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    let time = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("'{text}' is neither RFC 3339 nor Unix seconds"))?;
    Ok(time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// The tokens named by the argument: the argument itself when it looks like a compact JWS
/// and names no file, else the non-empty lines of the file.
fn tokens_of(arg: &str) -> Result<Vec<String>> {
    let path = Path::new(arg);
    let looks_like_token = arg.split('.').count() == 3 && !arg.contains('/');
    if looks_like_token && !path.exists() {
        return Ok(vec![arg.trim().to_owned()]);
    }
    let bytes = read_limited(path)?;
    let text = String::from_utf8(bytes).with_context(|| format!("{arg} is not UTF-8 text"))?;
    let tokens: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if tokens.is_empty() {
        bail!("{arg} holds no token");
    }
    Ok(tokens)
}

fn registration_json(reg: &Registration) -> Value {
    let mut value = json!({
        "valid": true,
        "kind": reg.kind(),
        "issuer": reg.issuer,
        "alg": reg.algorithm,
        "iat": reg.validity.issued_at,
        "nbf": reg.validity.not_before,
        "exp": reg.validity.expires_at,
        "jti": reg.jti,
    });
    match &reg.body {
        RegistrationBody::Operations(ops) => {
            value["operations"] = json!(ops);
            if !reg.revocations.is_empty() {
                value["withdraw"] = json!(reg.revocations);
            }
        }
        RegistrationBody::Wallets(wallets) => {
            value["wallets"] = wallets
                .iter()
                .map(|w| {
                    json!({
                        "label": w.label,
                        "id": w.key.id(),
                        "algorithm": w.key.kind().to_string(),
                        "jwk": w.key.to_jwk(),
                    })
                })
                .collect();
            if !reg.revocations.is_empty() {
                value["revoke"] = json!(reg.revocations);
            }
        }
    }
    value
}

fn print_registration(reg: &Registration, prefix: &str) {
    let time = |t: Option<u64>| t.map_or_else(|| "-".to_owned(), fmt_time);
    output::line(format!("{prefix}valid {} token", reg.kind()));
    output::line(format!("  issuer:  {} ({})", reg.issuer, reg.algorithm));
    output::line(format!(
        "  valid:   {} to {}",
        time(reg.validity.not_before.or(reg.validity.issued_at)),
        time(reg.validity.expires_at)
    ));
    if let Some(jti) = &reg.jti {
        output::line(format!("  jti:     {jti}"));
    }
    match &reg.body {
        RegistrationBody::Operations(ops) => {
            for (action, handler) in ops {
                output::line(format!("  operation {action} -> {handler}"));
            }
        }
        RegistrationBody::Wallets(wallets) => {
            for w in wallets {
                output::line(format!("  wallet {} {} ({})", w.key.id(), w.label, w.key.kind()));
            }
        }
    }
    let taken_back = match reg.body {
        RegistrationBody::Operations(_) => "withdraw",
        RegistrationBody::Wallets(_) => "revoke",
    };
    for name in &reg.revocations {
        output::line(format!("  {taken_back} {name}"));
    }
}

fn fmt_time(secs: u64) -> String {
    std::time::UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| secs.to_string())
}

fn verify(arg: &str, trust: &TrustArgs, at: Option<String>, out: OutputArgs) -> Result<ExitCode> {
    let store = trust.load()?;
    let time = match at {
        Some(text) => TimeCheck::at(parse_time(&text)?),
        None => TimeCheck::system_now(),
    };
    let tokens = tokens_of(arg)?;
    let many = tokens.len() > 1;
    let mut failures = Vec::new();
    for (index, token) in tokens.iter().enumerate() {
        let line = index + 1;
        let prefix = if many { format!("token {line}: ") } else { String::new() };
        match verify_registration(token, &store, time, HANDLER_NAMES) {
            Ok(reg) if out.json => {
                let mut value = registration_json(&reg);
                if many {
                    value["line"] = json!(line);
                }
                output::json(&value);
            }
            Ok(reg) => print_registration(&reg, &prefix),
            Err(err) => {
                if out.json {
                    output::json(&json!({"valid": false, "line": line, "error": err.to_string()}));
                }
                failures.push(format!("{prefix}{err}"));
            }
        }
    }
    match failures.len() {
        0 => Ok(ExitCode::SUCCESS),
        1 if !many => Err(refused(failures.remove(0))),
        n => {
            for f in &failures {
                eprintln!("error: {f}");
            }
            Err(refused(format!("{n} of {} tokens refused", tokens.len())))
        }
    }
}
