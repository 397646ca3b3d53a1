// The swarmvm explorer: reads this node's /v1 routes and redraws from GET /v1/events.
//
// Safety rule: every value from the network is put into the page as text (textContent,
// attribute values through setAttribute on fixed names, hrefs built from encoded parts),
// never as markup. In browsers that enforce Trusted Types (Chromium), the page's
// Content-Security-Policy also makes an innerHTML assignment throw rather than render.
"use strict";

(() => {
  // ---------- small helpers ----------

  /** An element with attributes and children; strings become text nodes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") el.className = value;
      else if (name === "text") el.textContent = String(value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  /** A link to one of this node's own routes; parts are URI-encoded. */
  function jsonLink(path, label) {
    return h("a", { class: "json", href: path }, label || "JSON");
  }

  function route(strings, ...parts) {
    let out = strings[0];
    parts.forEach((p, i) => { out += encodeURIComponent(String(p)) + strings[i + 1]; });
    return out;
  }

  function bytes(n) {
    if (!Number.isFinite(n)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
  }

  function rate(n) { return n > 0 ? bytes(n) + "/s" : "–"; }

  function short(id, n = 12) {
    const s = String(id ?? "");
    return s.length > n + 1 ? s.slice(0, n) + "…" : s;
  }

  function ago(unix) {
    if (!unix) return "–";
    const s = Math.round(Date.now() / 1000 - unix);
    if (s < 0) return "in " + duration(-s);
    return duration(s) + " ago";
  }

  function duration(s) {
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function when(unix) {
    return unix ? new Date(unix * 1000).toISOString().replace(".000Z", "Z") : "–";
  }

  /** A value shown in a table cell: text for scalars, compact JSON for the rest. */
  function shown(v) {
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) return v.every((x) => typeof x !== "object") ? v.join(", ") : JSON.stringify(v);
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  /** Runs `draw`, which replaces what `box` holds, and gives the focus back to the link
   * (same href) or control (same id) that had it, so redraws do not lose a keyboard user. */
  function keepFocus(box, draw) {
    const had = document.activeElement;
    const key = had && box.contains(had) ? (had.getAttribute("href") || had.id) : null;
    draw();
    if (!key) return;
    const again = [...box.querySelectorAll("a[href], [id]")]
      .find((el) => el.getAttribute("href") === key || el.id === key);
    if (again) again.focus({ preventScroll: true });
  }

  /** A <dl> filled from [term, value] pairs; a value may be a node. */
  function fill(dl, pairs) {
    keepFocus(dl, () => dl.replaceChildren(...pairs.flatMap(([term, value, field]) => [
      h("dt", {}, term),
      h("dd", { "data-field": field }, value instanceof Node ? value : value ?? "–"),
    ])));
  }

  function code(text, title) { return h("code", { title: title || text }, text); }

  function badge(text, kind) { return h("span", { class: "badge " + (kind || text) }, text); }

  async function getJson(path) {
    const response = await fetch(path, { headers: { accept: "application/json" }, cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
    return body;
  }

  function emptyRow(tbody, columns, text) {
    tbody.replaceChildren(h("tr", { class: "empty" }, h("td", { colspan: columns }, text)));
  }

  function failed(tbody, columns, err) {
    tbody.replaceChildren(h("tr", { class: "error" }, h("td", { colspan: columns }, "Cannot read: " + err.message)));
  }

  const $ = (id) => document.getElementById(id);

  // ---------- live status ----------

  let status = null;
  let lastRoot = null;
  const samples = { t: [], down: [], up: [] };
  const SAMPLE_WINDOW = 120; // seconds shown on the chart
  let chart = null;

  function renderNode(s) {
    const fresh = s.diverged ? badge("diverged", "bad") : s.stale ? badge("stale", "warn")
      : s.head ? badge("fresh", "good") : badge("no signed head", "none");
    fill($("node"), [
      ["Network", s.network ? code(s.network) : "none yet", "network"],
      ["Wallet", s.wallet ? h("a", { href: route`/v1/wallets/${s.wallet}` }, code(s.wallet)) : "none", "wallet"],
      ["Last seq", String(s.last_seq), "last_seq"],
      ["State root", code(s.state_root), "state_root"],
      ["Batches", String(s.batches), "batches"],
      ["Head", fresh, "freshness"],
      ["Up for", duration(Math.max(0, Math.round(Date.now() / 1000 - s.started_at))), "uptime"],
      ["BitTorrent", s.listen ? code(s.listen) : "not listening", "listen"],
      ["DHT", s.dht ? code(s.dht) : "off", "dht"],
      ["Peer id", code(short(s.peer_id, 16), s.peer_id), "peer_id"],
      ["Sequencer", s.sequencer ? "yes, " + s.sequencer.queued + " queued" : "no", "sequencer"],
      ["Follows", s.following.length ? h("ul", {}, s.following.map((u) => h("li", {}, code(u)))) : "none", "following"],
    ].concat(s.cluster ? [["Replicas", renderCluster(s.cluster), "cluster"]] : [])
      .concat(s.diverged_reason ? [["Diverged", s.diverged_reason, "diverged_reason"]] : [])
      .concat(s.head_refused ? [["Last head refused", s.head_refused, "head_refused"]] : []));
    const f = $("freshness");
    f.textContent = s.diverged ? "diverged" : s.stale ? "stale" : s.head ? "fresh" : "no head";
    f.className = "badge " + (s.diverged ? "bad" : s.stale ? "warn" : s.head ? "good" : "");
  }

  /** An authority replica's cluster (`cluster` in the status): this replica's role and
   * term, the leader, and each member with the last seq whose manifest it signed. */
  function renderCluster(c) {
    return h("div", {},
      `this replica is ${c.role} (term ${c.term}); leader `,
      c.leader ? code(short(c.leader, 16), c.leader) : "none known",
      h("ul", {}, c.members.map((m) => h("li", { "data-member": m.member },
        code(short(m.member, 16), m.member),
        m.member === c.leader ? " (leader)" : "",
        `: last signed seq ${m.last_seq}, `, code(m.url)))));
  }

  /** Where a node's newest head came from (`head.via` in the status). */
  const VIA = { self: "signed here", relay: "a followed node (HTTP relay)", dht: "the BitTorrent DHT" };

  function renderHead(s) {
    const head = s.head;
    if (!head) {
      fill($("head"), [["Head", "none yet: the sequencer signs one after each bundle", "head"]]);
      return;
    }
    fill($("head"), [
      ["Seq", h("a", { href: route`/v1/bundles/${head.seq}` }, String(head.seq)), "head_seq"],
      ["Bundle", code(short(head.bundle, 16), head.bundle), "head_bundle"],
      ["State root", code(head.state_root), "head_root"],
      ["Matches this node", head.seq === s.last_seq ? (head.state_root === s.state_root ? "yes" : "NO")
        : head.seq > s.last_seq ? "not applied here yet" : "this node is ahead of it", "head_match"],
      ["Signed", ago(head.issued_at), "head_iat"],
      ["Expires", ago(head.expires_at), "head_exp"],
      ["Signers", h("ul", {}, head.signers.map((id) => h("li", {}, code(id)))), "head_signers"],
      ["Came from", head.via ? `${VIA[head.via] || head.via}, ${ago(head.received_at)}` : "unknown", "head_via"],
    ]);
  }

  function renderAuthorities(s) {
    const a = s.authorities;
    fill($("authorities"), [
      ["Threshold", a.threshold + " of " + a.members.length, "threshold"],
      ["Members", h("ul", {}, a.members.map((id) => h("li", {}, code(id)))), "members"],
    ]);
  }

  function renderBundles(s) {
    const tbody = $("bundles").tBodies[0];
    if (!s.torrents.length) { emptyRow(tbody, 10, "No bundle yet."); return; }
    keepFocus(tbody, () => tbody.replaceChildren(...olderRows(s), ...s.torrents.map((t) => {
      const link = t.seq !== null && t.state === "applied" ? route`/v1/bundles/${t.seq}` : "/v1/bundles";
      const ratio = t.size > 0 ? (t.uploaded / t.size).toFixed(2) : "–";
      const percent = Math.min(100, Math.max(0, t.percent));
      return h("tr", { "data-hash": t.info_hash, "data-state": t.state },
        h("td", {}, t.seq ?? "–"),
        h("td", {}, h("a", { href: link, title: t.info_hash }, t.name || short(t.info_hash, 16))),
        h("td", { "data-field": "state" }, badge(t.state)),
        h("td", { class: "num" }, t.size ? bytes(t.size) : "–"),
        h("td", { class: "progress" },
          h("progress", { max: 100, value: percent, "aria-label": "verified " + percent + "%" }),
          h("span", { "data-field": "percent" }, percent.toFixed(percent % 1 ? 1 : 0) + "%")),
        h("td", { class: "num" }, rate(t.down_bps)),
        h("td", { class: "num" }, rate(t.up_bps)),
        h("td", { class: "num" }, t.peers),
        h("td", { class: "num", title: bytes(t.uploaded) + " uploaded" }, ratio),
        h("td", { "data-field": "reason" }, t.reason || ""));
    })));
  }

  /** The status lists only the newest bundles: a first row saying how many older ones there
   * are, with a link to them (`GET /v1/bundles` pages through every bundle); none when it lists
   * them all. */
  function olderRows(s) {
    const older = (s.torrents_known || 0) - s.torrents.length;
    if (older <= 0) return [];
    return [h("tr", { class: "empty", "data-older": older },
      h("td", { colspan: 10 }, older + (older === 1 ? " older bundle: " : " older bundles: "),
        h("a", { href: route`/v1/bundles?from=1&limit=${Math.min(older, 1000)}` }, "JSON")))];
  }

  /** Transfers summed over every bundle the node knows (the status lists only the newest). */
  function totals(s) {
    if (s.transfer) return s.transfer;
    return s.torrents.reduce((a, t) => ({
      fetched: a.fetched + t.fetched, uploaded: a.uploaded + t.uploaded,
      down_bps: a.down_bps + t.down_bps, up_bps: a.up_bps + t.up_bps,
    }), { fetched: 0, uploaded: 0, down_bps: 0, up_bps: 0 });
  }

  /** Adds the rates of the newest status to the chart: at each status event and, between
   * events (no change on the node), once a second so the time axis moves. No request. */
  function sample() {
    if (!status) return;
    const s = status;
    const now = Date.now() / 1000;
    samples.t.push(now);
    const sum = totals(s);
    samples.down.push(sum.down_bps);
    samples.up.push(sum.up_bps);
    while (samples.t.length && samples.t[0] < now - SAMPLE_WINDOW) {
      samples.t.shift(); samples.down.shift(); samples.up.shift();
    }
    drawChart();
  }

  function drawChart() {
    const box = $("chart");
    if (typeof uPlot === "undefined" || box.offsetParent === null) return;
    const width = Math.max(240, box.clientWidth);
    const data = [samples.t, samples.down, samples.up];
    if (!chart) {
      const dark = matchMedia("(prefers-color-scheme: dark)").matches;
      const axis = { stroke: dark ? "#c9d1d9" : "#30363d", grid: { stroke: dark ? "#30363d" : "#e5e7eb" } };
      chart = new uPlot({
        width, height: 180,
        legend: { live: false },
        scales: { x: { time: true, range: () => [Date.now() / 1000 - SAMPLE_WINDOW, Date.now() / 1000] }, y: { range: (u, min, max) => [0, Math.max(1024, max * 1.1)] } },
        axes: [axis, Object.assign({ values: (u, vals) => vals.map((v) => bytes(v) + "/s"), size: 90 }, axis)],
        series: [{}, { label: "down", stroke: "#2f81f7", width: 2 }, { label: "up", stroke: "#3fb950", width: 2 }],
      }, data, box);
    } else {
      if (Math.abs(chart.width - width) > 4) chart.setSize({ width, height: 180 });
      chart.setData(data);
    }
    const sum = status ? totals(status) : { fetched: 0, uploaded: 0 };
    $("chart-note").textContent = "This run: " + bytes(sum.fetched) + " down, " + bytes(sum.uploaded) + " up.";
  }

  function onStatus(s) {
    if (!s || !Array.isArray(s.torrents) || typeof s.state_root !== "string") {
      console.warn("ignoring a status that is not one");
      return;
    }
    status = s;
    document.title = "swarmvm · seq " + s.last_seq + (s.stale ? " · stale" : "");
    renderNode(s);
    renderHead(s);
    renderAuthorities(s);
    renderBundles(s);
    sample();
    const root = s.last_seq + ":" + s.batches + ":" + s.state_root + ":" + s.evidence.length;
    if (root !== lastRoot) {
      lastRoot = root;
      // The ledger moved: what the tables show is out of date.
      for (const v of Object.values(views)) v.loaded = false;
      const current = views[currentView()];
      if (current.load) current.load().then(() => { current.loaded = true; }, () => {});
    }
    document.body.dataset.ready = "1";
  }

  function setConnection(text, kind) {
    const conn = $("connection");
    if (conn.textContent !== text) conn.textContent = text;
    conn.className = "badge " + kind;
  }

  function connect() {
    const events = new EventSource("/v1/events");
    events.addEventListener("status", (e) => {
      setConnection("live", "good");
      try { onStatus(JSON.parse(e.data)); } catch (err) { console.warn("bad status event", err); }
    });
    events.addEventListener("open", () => setConnection("live", "good"));
    events.addEventListener("error", () => {
      if (events.readyState !== EventSource.CLOSED) {
        // The browser reconnects by itself (the node asks for 2 s).
        setConnection("reconnecting", "warn");
        return;
      }
      // Refused (a busy node answers 503): browsers do not retry that. Show the status
      // once, and try again in a few seconds.
      setConnection("disconnected; retrying", "warn");
      events.close();
      getJson("/v1/status").then(onStatus, () => {});
      setTimeout(connect, 5000 + Math.random() * 2000);
    });
  }

  // ---------- state tables ----------

  const TABLES = ["students", "courses", "enrollments", "proposals", "votes", "nfts", "wasm",
    "operations", "wallets", "nonces", "authorities", "revocations", "tokens"];
  const PAGE = 100;
  const stateView = { table: "students", rows: [], next: null, asked: 0 };

  function setupState() {
    const select = $("state-table");
    select.replaceChildren(...TABLES.map((t) => h("option", { value: t }, t)));
    const fromHash = new URLSearchParams(location.hash.split("?")[1] || "").get("table");
    if (fromHash && TABLES.includes(fromHash)) stateView.table = fromHash;
    select.value = stateView.table;
    select.addEventListener("change", () => { stateView.table = select.value; loadState(); });
    $("state-search").addEventListener("input", drawState);
    $("state-more").addEventListener("click", () => loadState(true));
    $("state").addEventListener("click", (e) => {
      const button = e.target.closest("button[data-verify]");
      if (button) verifyEntry(stateView.table, button.getAttribute("data-verify"));
    });
  }

  async function loadState(more) {
    // Only the newest request draws: an older answer arriving late is dropped.
    const asked = ++stateView.asked;
    const table = stateView.table;
    $("state-json").setAttribute("href", route`/v1/state/${table}`);
    if (!more) { stateView.rows = []; stateView.next = null; }
    let path = route`/v1/state/${table}` + "?limit=" + PAGE;
    if (more && stateView.next !== null) path += "&after=" + encodeURIComponent(stateView.next);
    try {
      const page = await getJson(path);
      if (asked !== stateView.asked) return;
      stateView.rows = stateView.rows.concat(page.entries);
      stateView.next = page.next;
      drawState();
    } catch (err) {
      if (asked === stateView.asked) failed($("state").tBodies[0], 1, err);
    }
  }

  function drawState() {
    const { rows, table } = stateView;
    const query = $("state-search").value.trim().toLowerCase();
    const columns = ["id"];
    for (const r of rows) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
    const shownRows = query
      ? rows.filter((r) => columns.some((c) => shown(r[c]).toLowerCase().includes(query)))
      : rows;
    const t = $("state");
    t.tHead.replaceChildren(h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)),
      h("th", { scope: "col" }, "JSON"), h("th", { scope: "col" }, "Proof")));
    const tbody = t.tBodies[0];
    if (!shownRows.length) {
      emptyRow(tbody, columns.length + 2, rows.length ? "Nothing loaded matches." : "This table is empty.");
    } else {
      tbody.replaceChildren(...shownRows.map((r) => {
        const i = rows.indexOf(r);
        const after = i > 0 ? "&after=" + encodeURIComponent(rows[i - 1].id) : "";
        return h("tr", { "data-id": r.id },
          columns.map((c) => h("td", { "data-col": c }, shown(r[c]))),
          h("td", {}, jsonLink(route`/v1/state/${table}` + "?limit=1" + after)),
          h("td", {}, h("button", { type: "button", class: "verify", "data-verify": r.id }, "verify")));
      }));
    }
    $("state-more").hidden = stateView.next === null;
    $("state-count").textContent = (query ? shownRows.length + " of " : "") + rows.length + " loaded" +
      (stateView.next === null ? "" : ", more on the node");
  }

  /** Fetches the proof of `id` in `table` and checks it here (proof.js): the value against
   * the proof, the proof against the head's root, the head's signatures against the set in
   * force this node reports. Says which, in #state-proof. */
  async function verifyEntry(table, id) {
    const out = $("state-proof");
    const what = table + " " + id;
    out.dataset.state = "checking";
    out.textContent = what + ": checking…";
    try {
      const [doc, set] = await Promise.all([
        getJson(route`/v1/proof/${table}/${id}`), getJson("/v1/authorities"),
      ]);
      const r = await globalThis.swarmvmProof.verifyAnswer(doc, set, Math.floor(Date.now() / 1000), { table, id });
      // What was verified is the value the proof holds, shown as it is: the row above came
      // from another answer of the node's.
      const is = r.ok && (r.present ? "present " + JSON.stringify(r.value) : "absent");
      if (!r.ok) {
        out.dataset.state = "failed";
        out.textContent = `${what}: NOT verified: ${r.reason}`;
      } else if (r.head && r.head.unsupported) {
        out.dataset.state = "unchecked";
        out.textContent = `${what}: ${is}; the proof holds against the root its head names, but this browser cannot verify ${r.head.unsupported} signatures, so the head is not checked`;
      } else if (r.head) {
        out.dataset.state = "verified";
        out.textContent = `${what}: ${is}, verified against head seq ${r.head.seq}, signed by ${r.head.signers.join(", ")} (${set.threshold} of ${set.authorities.length} of the authority set this node reports)`;
      } else {
        out.dataset.state = "root";
        out.textContent = `${what}: ${is}; the proof holds against root ${short(r.root)}, but this node keeps no signed head for it`;
      }
    } catch (err) {
      out.dataset.state = "failed";
      out.textContent = `${what}: cannot check: ${err.message}`;
    }
  }

  /** Every page of a table from `after` (bounded: at most 5,000 entries; `truncated` says
   * there were more). */
  async function wholeTable(table, after = null) {
    let rows = [];
    for (let i = 0; i < 5; i++) {
      let path = route`/v1/state/${table}` + "?limit=1000";
      if (after !== null) path += "&after=" + encodeURIComponent(after);
      const page = await getJson(path);
      rows = rows.concat(page.entries);
      after = page.next;
      if (after === null) return { rows, truncated: false };
    }
    return { rows, truncated: true };
  }

  async function loadOperations() {
    const tbody = $("operations").tBodies[0];
    try {
      const { rows } = await wholeTable("operations");
      if (!rows.length) { emptyRow(tbody, 3, "No operation registered yet."); return; }
      tbody.replaceChildren(...rows.map((r) => {
        const wasm = r.wasm ? h("span", {}, "WebAssembly module ", code(short(r.wasm, 16), r.wasm)) : h("span", {}, "built-in handler ", code(shown(r.value)));
        return h("tr", { "data-id": r.id }, h("th", { scope: "row" }, r.id), h("td", {}, wasm), h("td", { class: "num" }, r.fuel ?? "–"));
      }));
    } catch (err) { failed(tbody, 3, err); }
  }

  async function loadWallets() {
    const tbody = $("wallets").tBodies[0];
    try {
      // Wallet revocations are the revocations table's ids under "wallet/".
      const [wallets, revoked] = await Promise.all([wholeTable("wallets"), wholeTable("revocations", "wallet/")]);
      const rows = wallets.rows;
      const gone = new Set(revoked.rows.map((r) => r.id).filter((id) => id.startsWith("wallet/")));
      const unsure = revoked.truncated && revoked.rows.every((r) => r.id.startsWith("wallet/"));
      if (!rows.length) { emptyRow(tbody, 4, "No wallet registered yet."); return; }
      tbody.replaceChildren(...rows.map((r) => {
        const out = gone.has("wallet/" + r.id);
        const standing = out ? badge("revoked", "bad") : unsure ? h("a", { href: route`/v1/wallets/${r.id}` }, "see its JSON") : badge("registered", "good");
        return h("tr", { "data-id": r.id },
          h("th", { scope: "row" }, h("a", { href: route`/v1/wallets/${r.id}` }, code(r.id))),
          h("td", {}, r.label ?? ""),
          h("td", {}, r.jwk ? r.jwk.kty + " " + (r.jwk.crv || "") : ""),
          h("td", {}, standing));
      }));
      if (wallets.truncated) tbody.append(h("tr", { class: "empty" }, h("td", { colspan: 4 }, "The first 5,000 wallets; the rest are in the JSON.")));
    } catch (err) { failed(tbody, 4, err); }
  }

  const RECEIPT_BATCHES = 20;
  const receiptsView = { end: null, asked: 0 };

  async function loadReceipts() {
    // Only the newest request draws: an older answer arriving late is dropped.
    const asked = ++receiptsView.asked;
    const tbody = $("receipts").tBodies[0];
    const batches = status ? status.batches : 0;
    const end = receiptsView.end === null ? batches : Math.min(receiptsView.end, batches);
    const from = Math.max(1, end - RECEIPT_BATCHES + 1);
    $("receipts-range").textContent = batches ? "batches " + from + " to " + end + " of " + batches : "";
    $("receipts-json").setAttribute("href", "/v1/receipts?from=" + from + "&limit=10000");
    $("receipts-older").disabled = from <= 1;
    if (!batches) { emptyRow(tbody, 7, "No receipt yet."); return; }
    try {
      const all = (await getJson("/v1/receipts?from=" + from + "&limit=10000")).receipts;
      if (asked !== receiptsView.asked) return;
      const cut = all.length === 10000;
      const list = all.filter((r) => r.position <= end).reverse();
      $("receipts-range").textContent += cut ? " (the first 10,000 receipts of these batches; the rest are in the JSON)" : "";
      const filter = $("receipts-filter").value;
      const rows = filter === "all" ? list : list.filter((r) => r.status === filter);
      if (!rows.length) { emptyRow(tbody, 7, "No " + (filter === "all" ? "" : filter + " ") + "receipt in these batches."); return; }
      tbody.replaceChildren(...rows.map((r) => h("tr", { "data-contract": r.contract, "data-status": r.status },
        h("td", { class: "num" }, r.position),
        h("td", { class: "num" }, r.index),
        h("td", {}, h("a", { href: route`/v1/contracts/${r.contract}` }, code(short(r.contract, 16), r.contract))),
        h("td", {}, r.signer ? code(short(r.signer, 16), r.signer) : "–"),
        h("td", { class: "num" }, r.nonce ?? "–"),
        h("td", {}, badge(r.status, r.status === "applied" ? "good" : "bad")),
        h("td", { "data-field": "reason" }, r.reason || ""))));
    } catch (err) { if (asked === receiptsView.asked) failed(tbody, 7, err); }
  }

  function setupReceipts() {
    $("receipts-filter").addEventListener("change", loadReceipts);
    $("receipts-older").addEventListener("click", () => {
      const batches = status ? status.batches : 0;
      const end = receiptsView.end === null ? batches : receiptsView.end;
      receiptsView.end = Math.max(1, end - RECEIPT_BATCHES);
      loadReceipts();
    });
    $("receipts-newest").addEventListener("click", () => { receiptsView.end = null; loadReceipts(); });
  }

  async function loadEvidence() {
    const tbody = $("evidence").tBodies[0];
    try {
      const list = (await getJson("/v1/evidence")).evidence;
      if (!list.length) { emptyRow(tbody, 4, "No fork seen: every seq has one bundle."); return; }
      tbody.replaceChildren(...list.map((e) => h("tr", {},
        h("td", {}, h("a", { href: route`/v1/bundles/${e.seq}` }, e.seq)),
        h("td", {}, code(short(e.kept, 16), e.kept)),
        h("td", {}, code(short(e.other, 16), e.other)),
        h("td", {}, when(e.seen_at)))));
    } catch (err) { failed(tbody, 4, err); }
  }

  // ---------- views ----------

  const views = {
    overview: { load: null, shown: drawChart },
    bundles: { load: null },
    state: { load: () => loadState(false) },
    operations: { load: loadOperations },
    wallets: { load: loadWallets },
    receipts: { load: loadReceipts },
    evidence: { load: loadEvidence },
    wallet: { load: null }, // wallet.js (a module) runs the view
  };

  let lastView = "overview";

  /** The view the address names; another hash (the skip link's #main) keeps the last. */
  function currentView() {
    const name = location.hash.slice(1).split("?")[0];
    if (Object.hasOwn(views, name)) lastView = name;
    return lastView;
  }

  function show() {
    const name = currentView();
    for (const v of Object.keys(views)) $("view-" + v).hidden = v !== name;
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.view === name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const view = views[name];
    if (view.shown) view.shown();
    if (view.load && !view.loaded && status) {
      view.load().then(() => { view.loaded = true; }, () => {});
    }
  }

  window.addEventListener("hashchange", () => { show(); $("main").focus({ preventScroll: true }); });
  window.addEventListener("resize", drawChart);
  setInterval(sample, 1000);
  setupState();
  setupReceipts();
  show();
  connect();
})();
