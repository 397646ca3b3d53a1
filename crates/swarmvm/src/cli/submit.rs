//! `swarmvm contract submit` and `swarmvm bundle submit`: hand work to a running network
//! through any node's HTTP API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use backon::{ExponentialBuilder, Retryable as _};
use base64::Engine as _;
use serde_json::Value;
use swarmvm_node::client::{Client, ClientError};
use swarmvm_node::protocol::{ContractState, ContractView, RegistrationsAnswer, RegistrationsBody};
use swarmvm_primitives::{ErrorClass, Hash32};
use swarmvm_token::{sign_contract, unix_now};
use swarmvm_wallet::Wallet;

use super::OutputArgs;
use super::args::{PassphraseArgs, load_wallet, read_token_lines};
use super::duration::parse_duration;
use crate::exit::{Coded, refused};
use crate::output;

/// `contract submit`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ContractSubmitArgs {
    /// A signed contract (one line, as `contract sign` prints it), or with --wallet a
    /// contract (`{"actions": [...]}`) to sign here.
    contract: PathBuf,
    /// The node to submit to (`http://host:port`); any node of the network will do.
    #[arg(long, value_name = "URL")]
    node: String,
    /// Sign the contract with this wallet: the network from --network (else the node's),
    /// the next nonce from the node.
    #[arg(long, value_name = "FILE")]
    wallet: Option<PathBuf>,
    /// The network (a network file, its id, or an authority key file) to sign for.
    #[arg(long, value_name = "NET", requires = "wallet", allow_hyphen_values = true)]
    network: Option<String>,
    /// Wait for the outcome: exit 0 applied, 1 rejected, 3 timed out.
    #[arg(long)]
    wait: bool,
    /// The longest the whole command takes.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

/// `bundle submit`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct BundleSubmitArgs {
    /// The folder: its registration tokens and modules go into the sequencer's next cut; a
    /// folder with a signed manifest (`bundle create --after ...`) is published whole as the
    /// next bundle.
    dir: PathBuf,
    /// The node to submit to (`http://host:port`): the sequencer or a node that follows it.
    #[arg(long, value_name = "URL")]
    node: String,
    /// The longest the command takes.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
}

fn timed_out(what: String) -> anyhow::Error {
    anyhow::Error::new(Coded { code: ErrorClass::TimedOut.exit_code(), message: what })
}

/// Retries while the node is busy or cannot reach the sequencer for now (429, 503), with a
/// growing delay (or the node's `Retry-After`), until `deadline`.
fn while_passing(deadline: Instant) -> ExponentialBuilder {
    let left = deadline.saturating_duration_since(Instant::now());
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(30))
        .with_total_delay(Some(left))
        .without_max_times()
}

pub(crate) fn contract_submit(args: ContractSubmitArgs, out: OutputArgs) -> Result<ExitCode> {
    let deadline = Instant::now() + args.timeout;
    let wallet = args.wallet.as_ref().map(|w| load_wallet(w, &args.passphrase)).transpose()?;
    let actions = match &wallet {
        Some(_) => Some(super::contract::read_contract(&args.contract)?),
        None => None,
    };
    let signed = match &wallet {
        None => Some(read_one_token(&args.contract)?),
        Some(_) => None,
    };
    let network = args.network.as_deref().map(super::contract::network_id).transpose()?;
    super::net::runtime()?.block_on(async move {
        let client = Client::new(args.timeout.min(Duration::from_secs(30)));
        let url = args.node.as_str();
        let mut token = match (&wallet, signed) {
            (_, Some(t)) => t,
            (Some(w), None) => {
                let network = match network {
                    Some(n) => n,
                    None => client.network(url).await?,
                };
                let nonce = next_nonce(&client, url, w.id().as_ref()).await?;
                let actions = actions.as_deref().unwrap_or_default();
                sign(w, &network, nonce, actions)?.1
            }
            (None, None) => unreachable!("a contract is read or signed"),
        };
        // A stale nonce (another contract of this wallet took it first, or is queued) is
        // signed again with the next one the sequencer names, a few times at most.
        let mut signings = 1;
        let id = loop {
            let submitted = (|| client.submit_contract(url, &token))
                .retry(while_passing(deadline))
                .when(|e: &ClientError| e.is_passing() && Instant::now() < deadline)
                .adjust(|e: &ClientError, delay| {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let asked = e.retry_after().map(|s| Duration::from_secs(s.clamp(1, 30)));
                    asked.or(delay).map(|d| d.min(left))
                })
                .await;
            let e = match submitted {
                Ok(view) => break view.id,
                Err(e) => e,
            };
            let refusal = e.refusal().cloned().unwrap_or_default();
            match e.status() {
                Some(409) if refusal.duplicate => break Hash32::digest(token.as_bytes()),
                Some(409) if signings < 5 && wallet.is_some() => {
                    let Some(next) = refusal.next_nonce else { return Err(e.into()) };
                    let w = wallet.as_ref().unwrap_or_else(|| unreachable!());
                    let network = swarmvm_token::peek_contract(&token)?.network;
                    token = sign(w, &network, next, actions.as_deref().unwrap_or_default())?.1;
                    signings += 1;
                }
                Some(429) => {
                    return Err(timed_out(format!(
                        "{url}: the queue stayed full: {}",
                        refusal.error
                    )));
                }
                _ => return Err(e.into()),
            }
        };
        if !args.wait {
            if out.json {
                output::json(&ContractView::pending(id));
            } else {
                output::line(id.to_hex());
            }
            return Ok(ExitCode::SUCCESS);
        }
        // Asked again with a growing delay (50 ms to 500 ms) until it is applied or rejected.
        let settled = (|| async {
            match client.contract(url, &id).await {
                Ok(Some(v)) if v.state != ContractState::Pending => Ok(v),
                _ => Err(()),
            }
        })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_millis(500))
                .without_max_times(),
        )
        .when(|()| Instant::now() < deadline)
        .await;
        let Ok(view) = settled else {
            return Err(timed_out(format!(
                "contract {id} was accepted but not applied within {}",
                humantime::format_duration(args.timeout)
            )));
        };
        report(&view, out);
        if view.state == ContractState::Rejected {
            return Ok(ExitCode::from(ErrorClass::Refused.exit_code()));
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn report(view: &ContractView, out: OutputArgs) {
    if out.json {
        output::json(view);
        return;
    }
    let id = view.id;
    let seq = view.seq.map_or_else(String::new, |s| format!(" in bundle seq {s}"));
    match &view.reason {
        Some(reason) => output::line(format!("{id} rejected{seq}: {reason}")),
        None => output::line(format!("{id} applied{seq}")),
    }
}

fn sign(wallet: &Wallet, network: &str, nonce: u64, actions: &[Value]) -> Result<(u64, String)> {
    let token = sign_contract(wallet, network, nonce, actions, unix_now())
        .context("cannot sign contract")?;
    Ok((nonce, token))
}

async fn next_nonce(client: &Client, url: &str, wallet: &str) -> Result<u64> {
    match client.wallet(url, wallet).await? {
        Some(w) => Ok(w.nonce + 1),
        None => Err(refused(format!("wallet {wallet} is not registered on the network of {url}"))),
    }
}

/// A file holding one signed contract on one line.
fn read_one_token(path: &Path) -> Result<String> {
    let lines = read_token_lines(path)?;
    match lines.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("{} holds no contract", path.display()),
        _ => bail!(
            "{} holds {} lines; submit one signed contract at a time",
            path.display(),
            lines.len()
        ),
    }
}

pub(crate) fn bundle_submit(args: BundleSubmitArgs, out: OutputArgs) -> Result<ExitCode> {
    use swarmvm_bundle::layout::{CONTRACTS_FILE, MANIFEST_FILE, MODULES_DIR, TOKENS_FILE};
    let dir = &args.dir;
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let lines = |name: &str| -> Result<Vec<String>> {
        let path = dir.join(name);
        if path.exists() { read_token_lines(&path) } else { Ok(Vec::new()) }
    };
    let tokens = lines(TOKENS_FILE)?;
    let contracts = lines(CONTRACTS_FILE)?;
    let manifest = match std::fs::read_to_string(dir.join(MANIFEST_FILE)) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read {}", dir.join(MANIFEST_FILE).display()));
        }
    };
    let mut modules = Vec::new();
    if let Ok(list) = std::fs::read_dir(dir.join(MODULES_DIR)) {
        let mut paths: Vec<PathBuf> = list.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            modules.push(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
    if manifest.is_none() && !contracts.is_empty() {
        bail!(
            "{} holds contracts but no manifest: submit contracts with `contract submit` once their wallets are registered, or sign the folder (`bundle create`) to submit it whole",
            dir.display()
        );
    }
    let (manifest, contracts) = match manifest {
        Some(m) => (Some(m), contracts),
        None => (None, Vec::new()),
    };
    let body = RegistrationsBody { tokens, modules, manifest, contracts };
    super::net::runtime()?.block_on(async move {
        let client = Client::new(args.timeout);
        let answer = client.submit_registrations(args.node.as_str(), &body).await?;
        if out.json {
            output::json(&answer);
        } else {
            match answer {
                RegistrationsAnswer::Published { seq, .. } => {
                    output::line(format!("published as bundle seq {seq}"));
                }
                RegistrationsAnswer::Queued { queued } => {
                    output::line(format!("{queued} items queued for the next cut"));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
