//! Flags for talking to the BitTorrent network, and the progress display of transfers.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::json;
use swarmvm_swarm::{Listen, Progress, SwarmOptions, Transfer};
use url::Url;

use crate::output;

/// How to find peers.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NetArgs {
    /// A peer to connect to (IP:PORT). Repeat for several.
    #[arg(long = "peer", value_name = "ADDR")]
    pub(crate) peers: Vec<SocketAddr>,
    /// A tracker to announce to, besides the torrent's own. Repeat for several.
    #[arg(long = "tracker", value_name = "URL", value_parser = parse_tracker)]
    pub(crate) trackers: Vec<Url>,
    /// Do not use the DHT (it is on by default).
    #[arg(long)]
    pub(crate) no_dht: bool,
    /// Use local service discovery (BEP 14) to find peers on the LAN.
    #[arg(long)]
    pub(crate) lsd: bool,
    /// Listen on this address (IP:PORT; port 0 for any free port) instead of the first free
    /// port of 6881-6891.
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Upload at most this many bytes per second.
    #[arg(long, value_name = "BYTES")]
    pub(crate) upload_limit: Option<NonZeroU32>,
    /// Download at most this many bytes per second.
    #[arg(long, value_name = "BYTES")]
    pub(crate) download_limit: Option<NonZeroU32>,
}

/// Trackers are http, https or udp URLs without credentials ([`swarmvm_swarm::check_tracker`]).
pub(crate) fn parse_tracker(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("'{s}' is not a URL: {e}"))?;
    swarmvm_swarm::check_tracker(&url)?;
    Ok(url)
}

impl NetArgs {
    pub(crate) fn options(&self) -> SwarmOptions {
        let mut o = SwarmOptions { dht: !self.no_dht, lsd: self.lsd, ..SwarmOptions::default() };
        if let Some(addr) = self.listen {
            o.listen = Listen::Addr(addr);
        }
        o.trackers = self.trackers.clone();
        o.peers = self.peers.clone();
        o.upload_limit = self.upload_limit;
        o.download_limit = self.download_limit;
        o
    }
}

/// A tokio runtime for the commands that talk to the network.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn rate(bps: f64) -> String {
    format!("{:.2} kB/s", bps / 1000.0)
}

/// Shows a transfer's progress: a bar on a terminal, JSON lines with `--json`, and otherwise
/// the design note's line every few seconds.
pub(crate) struct ProgressView {
    json: bool,
    bar: Option<indicatif::ProgressBar>,
    last_plain: Option<Instant>,
    last_json: Option<Instant>,
    name: String,
}

impl ProgressView {
    pub(crate) fn new(name: &str, total: u64, json: bool) -> Self {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {msg}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(name.to_owned());
            bar
        });
        // The first plain line comes after a while, so quick fetches print none.
        Self { json, bar, last_plain: Some(Instant::now()), last_json: None, name: name.to_owned() }
    }

    pub(crate) fn update(&mut self, p: &Progress) {
        let now = Instant::now();
        if self.json {
            if self.last_json.is_none_or(|t| now - t >= Duration::from_millis(500)) {
                self.last_json = Some(now);
                output::json(&progress_json("progress", p));
            }
        } else if let Some(bar) = &self.bar {
            bar.set_length(p.total);
            bar.set_position(p.done);
            bar.set_message(format!(
                "down {} up {} peers {}",
                rate(p.down_bps),
                rate(p.up_bps),
                p.peers
            ));
        } else if self.last_plain.is_none_or(|t| now - t >= Duration::from_secs(2)) {
            self.last_plain = Some(now);
            eprintln!(
                "{}: downloading... {:.2}% complete (down: {}, up: {}, peers: {})",
                self.name,
                p.percent(),
                rate(p.down_bps),
                rate(p.up_bps),
                p.peers
            );
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub(crate) fn progress_json(event: &str, p: &Progress) -> serde_json::Value {
    json!({
        "event": event,
        "percent": (p.percent() * 100.0).round() / 100.0,
        "done": p.done,
        "total": p.total,
        "fetched": p.fetched,
        "verified": p.verified,
        "uploaded": p.uploaded,
        "down_bps": p.down_bps.round(),
        "up_bps": p.up_bps.round(),
        "peers": p.peers,
        "peers_seen": p.peers_seen,
    })
}

/// Waits for `transfer` to complete within `deadline`, showing progress.
pub(crate) async fn wait_with_progress(
    transfer: &Transfer,
    view: &mut ProgressView,
    started: Instant,
    limit: Duration,
) -> Result<()> {
    let wait = transfer.wait_complete();
    tokio::pin!(wait);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            done = &mut wait => {
                view.finish();
                return done.map_err(Into::into);
            }
            _ = tick.tick() => {
                let p = transfer.progress();
                view.update(&p);
                if started.elapsed() >= limit {
                    view.finish();
                    return Err(swarmvm_swarm::SwarmError::TimedOut {
                        seconds: limit.as_secs(),
                        peers: p.peers_seen.max(p.peers),
                        percent: p.percent(),
                    }
                    .into());
                }
            }
        }
    }
}

/// Watches SIGINT and SIGTERM from now on; the future ends at the first of them.
pub(crate) fn stop_signals() -> Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    })
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn stop_signal() -> Result<&'static str> {
    Ok(stop_signals()?.await)
}
