//! `swarmvm contract submit` and `swarmvm bundle submit`: hand work to a running network
//! through any node's HTTP API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use swarmvm_node::client::{Client, Reply};
use swarmvm_token::{sign_contract, unix_now};
use swarmvm_wallet::Wallet;

use super::OutputArgs;
use super::args::{PassphraseArgs, load_wallet, read_token_lines};
use super::duration::parse_duration;
use crate::exit::{Coded, TIMED_OUT, refused};
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
    anyhow::Error::new(Coded { code: TIMED_OUT, message: what })
}

/// A refusal by the node (4xx): exit 1 with its line; anything else: exit 2.
fn answer_error(url: &str, reply: &Reply) -> anyhow::Error {
    let line = format!("{url} refused it: {}", reply.error_line());
    if (400..500).contains(&reply.status) { refused(line) } else { anyhow::anyhow!(line) }
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
                    None => node_network(&client, url).await?,
                };
                let nonce = next_nonce(&client, url, w.id().as_ref()).await?;
                let actions = actions.as_deref().unwrap_or_default();
                sign(w, &network, nonce, actions)?.1
            }
            (None, None) => unreachable!("a contract is read or signed"),
        };
        let mut attempts = 0;
        let id = loop {
            attempts += 1;
            let reply = client
                .post(url, "/v1/contracts", "application/jose", token.clone().into_bytes(), &[])
                .await?;
            match reply.status {
                202 => break id_of(&reply)?,
                409 if reply.body.get("duplicate").and_then(Value::as_bool) == Some(true) => {
                    break swarmvm_vm::Hash32::digest(token.as_bytes()).to_hex();
                }
                409 if attempts < 5 && wallet.is_some() => {
                    // Another contract of this wallet took the nonce first (or is queued):
                    // sign again with the next one the sequencer names.
                    let Some(next) = reply.body.get("next_nonce").and_then(Value::as_u64) else {
                        return Err(answer_error(url, &reply));
                    };
                    let (w, network) =
                        (wallet.as_ref().unwrap_or_else(|| unreachable!()), aud_of(&token)?);
                    token = sign(w, &network, next, actions.as_deref().unwrap_or_default())?.1;
                }
                429 if Instant::now() < deadline => {
                    let wait = Duration::from_secs(reply.retry_after.unwrap_or(1).clamp(1, 30));
                    tokio::time::sleep(
                        wait.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
                429 => {
                    return Err(timed_out(format!(
                        "{url}: the queue stayed full: {}",
                        reply.error_line()
                    )));
                }
                // The sequencer is starting, or a follower cannot reach it for now.
                503 if Instant::now() + Duration::from_secs(1) < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => return Err(answer_error(url, &reply)),
            }
        };
        if !args.wait {
            if out.json {
                output::json(&json!({ "id": id, "state": "pending" }));
            } else {
                output::line(&id);
            }
            return Ok(ExitCode::SUCCESS);
        }
        let mut delay = Duration::from_millis(50);
        loop {
            let reply = client.get(url, &format!("/v1/contracts/{id}")).await;
            if let Ok(r) = &reply
                && r.status == 200
            {
                match r.body.get("state").and_then(Value::as_str) {
                    Some("applied") => {
                        report(&r.body, &id, out);
                        return Ok(ExitCode::SUCCESS);
                    }
                    Some("rejected") => {
                        report(&r.body, &id, out);
                        return Ok(ExitCode::from(crate::exit::REFUSED));
                    }
                    _ => {}
                }
            }
            if Instant::now() + delay >= deadline {
                return Err(timed_out(format!(
                    "contract {id} was accepted but not applied within {}",
                    humantime::format_duration(args.timeout)
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    })
}

fn report(body: &Value, id: &str, out: OutputArgs) {
    if out.json {
        output::json(body);
        return;
    }
    let seq = body
        .get("seq")
        .and_then(Value::as_u64)
        .map_or_else(String::new, |s| format!(" in bundle seq {s}"));
    match body.get("reason").and_then(Value::as_str) {
        Some(reason) => output::line(format!("{id} rejected{seq}: {reason}")),
        None => output::line(format!("{id} applied{seq}")),
    }
}

fn id_of(reply: &Reply) -> Result<String> {
    reply
        .body
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the node's 202 names no contract id")
}

fn sign(wallet: &Wallet, network: &str, nonce: u64, actions: &[Value]) -> Result<(u64, String)> {
    let token = sign_contract(wallet, network, nonce, actions, unix_now())
        .context("cannot sign contract")?;
    Ok((nonce, token))
}

/// The `aud` of a token this command signed.
fn aud_of(token: &str) -> Result<String> {
    let payload = token.split('.').nth(1).context("not a compact JWS")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    let claims: Value = serde_json::from_slice(&bytes)?;
    claims.get("aud").and_then(Value::as_str).map(str::to_owned).context("no aud")
}

async fn node_network(client: &Client, url: &str) -> Result<String> {
    let reply = client.get(url, "/v1/authorities").await?;
    if reply.status != 200 {
        return Err(answer_error(url, &reply));
    }
    reply
        .body
        .get("network")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{url} names no network"))
}

async fn next_nonce(client: &Client, url: &str, wallet: &str) -> Result<u64> {
    let reply = client.get(url, &format!("/v1/wallets/{wallet}")).await?;
    match reply.status {
        200 => Ok(reply.body.get("nonce").and_then(Value::as_u64).unwrap_or(0) + 1),
        404 => Err(refused(format!("wallet {wallet} is not registered on the network of {url}"))),
        _ => Err(answer_error(url, &reply)),
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
    let mut body = json!({ "tokens": tokens, "modules": modules });
    if let Some(m) = manifest {
        body["manifest"] = json!(m);
        body["contracts"] = json!(contracts);
    }
    super::net::runtime()?.block_on(async move {
        let client = Client::new(args.timeout);
        let url = args.node.as_str();
        let reply = client
            .post(url, "/v1/registrations", "application/json", serde_json::to_vec(&body)?, &[])
            .await?;
        if !reply.is_success() {
            return Err(answer_error(url, &reply));
        }
        if out.json {
            output::json(&reply.body);
        } else if let Some(seq) = reply.body.get("seq").and_then(Value::as_u64) {
            output::line(format!("published as bundle seq {seq}"));
        } else {
            let n = reply.body.get("queued").and_then(Value::as_u64).unwrap_or(0);
            output::line(format!("{n} items queued for the next cut"));
        }
        Ok(ExitCode::SUCCESS)
    })
}
