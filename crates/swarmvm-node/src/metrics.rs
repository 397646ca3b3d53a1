//! What operators scrape: `GET /metrics` in the Prometheus text exposition format (version
//! 0.0.4), and `GET /v1/health`. Counters are kept as the node works (HTTP answers, bundle
//! applies and their durations); gauges are read from the node when scraped.

use std::fmt::Write as _;

use crate::api::Api;
use crate::counters::{APPLY_BUCKETS, HttpCounts};
use crate::protocol::{BundleState, CutHealth, Health};

/// One metric family: `# HELP`, `# TYPE`, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn one(value: f64) -> Vec<(String, f64)> {
    vec![(String::new(), value)]
}

/// The exposition text for `node`, with its HTTP answers `http` and its open event
/// `streams`.
pub(crate) fn render(node: &Api, http: &HttpCounts, streams: usize) -> String {
    let times = node.apply_times();
    let status = node.status();
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "swarmvm_last_seq",
        "gauge",
        "The last applied bundle's seq.",
        &one(status.last_seq as f64),
    );
    family(
        &mut out,
        "swarmvm_ledger_batches",
        "gauge",
        "Batches in the ledger's log.",
        &one(status.batches as f64),
    );
    let states = [
        BundleState::Resolving,
        BundleState::Fetching,
        BundleState::Waiting,
        BundleState::Applying,
        BundleState::Applied,
        BundleState::Rejected,
    ];
    // Every bundle the node knows, not only the newest that the status lists; one applying
    // whose seq the ledger holds already is applied, as the status shows it.
    let bundles = node.bundles();
    let by_state: Vec<(String, f64)> = states
        .iter()
        .map(|s| {
            let name = serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned));
            let count = bundles.iter().filter(|t| t.shown(status.last_seq) == *s).count();
            (format!("{{state=\"{}\"}}", name.unwrap_or_default()), count as f64)
        })
        .collect();
    family(&mut out, "swarmvm_bundles", "gauge", "Bundles this node knows, by state.", &by_state);
    let (fetched, uploaded, peers) =
        (status.transfer.fetched, status.transfer.uploaded, status.transfer.peers);
    family(
        &mut out,
        "swarmvm_downloaded_bytes_total",
        "counter",
        "Bytes downloaded from peers for the bundles known (this run).",
        &one(fetched as f64),
    );
    family(
        &mut out,
        "swarmvm_uploaded_bytes_total",
        "counter",
        "Bytes uploaded to peers of the bundles known (this run).",
        &one(uploaded as f64),
    );
    family(
        &mut out,
        "swarmvm_peers",
        "gauge",
        "Peer connections over all bundles.",
        &one(f64::from(peers)),
    );
    family(
        &mut out,
        "swarmvm_event_streams",
        "gauge",
        "Open GET /v1/events streams (explorer pages watching this node).",
        &one(streams as f64),
    );
    family(
        &mut out,
        "swarmvm_bundles_applied_total",
        "counter",
        "Bundles applied (this run).",
        &one(times.count() as f64),
    );
    // The apply-time histogram: cumulative buckets, sum and count.
    let _ = writeln!(
        out,
        "# HELP swarmvm_apply_seconds Time to verify, execute and commit one bundle."
    );
    let _ = writeln!(out, "# TYPE swarmvm_apply_seconds histogram");
    let buckets = times.buckets();
    let mut cumulative = 0;
    for (i, bound) in APPLY_BUCKETS.iter().enumerate() {
        cumulative += buckets[i];
        let _ = writeln!(out, "swarmvm_apply_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += buckets[APPLY_BUCKETS.len()];
    let _ = writeln!(out, "swarmvm_apply_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "swarmvm_apply_seconds_sum {}", times.seconds());
    let _ = writeln!(out, "swarmvm_apply_seconds_count {cumulative}");
    let (requests, contracts) = node.forward_totals();
    family(
        &mut out,
        "swarmvm_forward_requests_total",
        "counter",
        "Requests that forwarded contracts to the nodes this node follows (this run).",
        &one(requests as f64),
    );
    family(
        &mut out,
        "swarmvm_forwarded_contracts_total",
        "counter",
        "Contracts those requests carried: more than the requests when they went in batches.",
        &one(contracts as f64),
    );
    let queued = status.sequencer.as_ref().map_or(0, |s| s.queued);
    family(
        &mut out,
        "swarmvm_sequencer_queue_length",
        "gauge",
        "Items waiting in the sequencer's queue (0 on other nodes).",
        &one(queued as f64),
    );
    family(
        &mut out,
        "swarmvm_head_seq",
        "gauge",
        "The seq of the newest signed head known (0 before any).",
        &one(status.head.as_ref().map_or(0, |h| h.seq) as f64),
    );
    family(
        &mut out,
        "swarmvm_stale",
        "gauge",
        "1 when the newest head has expired.",
        &one(f64::from(u8::from(status.stale))),
    );
    family(
        &mut out,
        "swarmvm_diverged",
        "gauge",
        "1 when this node's root differs from a head's (it stopped applying).",
        &one(f64::from(u8::from(status.diverged))),
    );
    family(
        &mut out,
        "swarmvm_fork_evidence",
        "gauge",
        "Forks seen: validly signed bundles for a seq already applied.",
        &one(status.evidence.len() as f64),
    );
    let http: Vec<(String, f64)> = http
        .by_class()
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{{code=\"{}xx\"}}", i + 1), *c as f64))
        .collect();
    family(
        &mut out,
        "swarmvm_http_requests_total",
        "counter",
        "HTTP requests answered, by status class.",
        &http,
    );
    if let Some(cluster) = &status.cluster {
        cluster_families(&mut out, cluster, node.equivocations().len());
    }
    out
}

/// An authority replica's families: its consensus term, leader changes, commit index and
/// newest snapshot, whether it leads, and the evidence of equivocating members.
fn cluster_families(out: &mut String, c: &crate::protocol::ClusterSummary, equivocations: usize) {
    family(
        out,
        "swarmvm_cluster_term",
        "gauge",
        "This replica's current consensus term.",
        &one(c.term as f64),
    );
    family(
        out,
        "swarmvm_cluster_leader_changes_total",
        "counter",
        "Times this replica saw the leader change since it started.",
        &one(c.leader_changes as f64),
    );
    family(
        out,
        "swarmvm_cluster_commit_index",
        "gauge",
        "The index of the last log entry this replica applied.",
        &one(c.commit_index as f64),
    );
    family(
        out,
        "swarmvm_cluster_snapshot_index",
        "gauge",
        "The last log index this replica's newest snapshot holds (the log before it is purged).",
        &one(c.snapshot_index as f64),
    );
    family(
        out,
        "swarmvm_cluster_is_leader",
        "gauge",
        "1 while this replica leads.",
        &one(f64::from(u8::from(c.role == "leader"))),
    );
    family(
        out,
        "swarmvm_cluster_equivocations",
        "gauge",
        "Members seen signing two conflicting manifests or heads for one seq.",
        &one(equivocations as f64),
    );
}

/// `GET /v1/health`: `{"status": "ok" | "unhealthy", "problems": [...], "sequencer": ...}`,
/// healthy when: the ledger can be read, the node has not diverged, its newest
/// head is fresh, and on a sequencer its cuts go through (unhealthy after
/// [`FAILING_CUTS`](crate::sequencer::FAILING_CUTS) failed in a row). `sequencer` is `null`
/// on other nodes, else `{"failed_cuts": N, "last_failure": "..." | null}`: the cuts that
/// failed since the last one that went through, and why the last failed.
pub(crate) fn health(node: &Api) -> Health {
    let mut problems = Vec::new();
    if node.snapshot().is_none() {
        problems
            .push("the ledger cannot be read (a storage failure, or the node stopped)".to_owned());
    }
    if let Some(why) = node.diverged() {
        problems.push(format!("diverged: {why}"));
    }
    if node.is_stale() {
        problems.push("stale: the newest head has expired".to_owned());
    }
    let cuts = node.cut_failures();
    if let Some(f) = &cuts
        && f.in_a_row >= crate::sequencer::FAILING_CUTS
    {
        problems.push(format!(
            "sequencer: the last {} cuts failed: {}",
            f.in_a_row,
            f.last.as_deref().unwrap_or("no reason recorded")
        ));
    }
    let sequencer = cuts.map(|f| CutHealth { failed_cuts: f.in_a_row, last_failure: f.last });
    let status = if problems.is_empty() { "ok" } else { "unhealthy" };
    Health { status: status.into(), problems, sequencer }
}
