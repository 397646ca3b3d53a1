// The explorer's overview on authority replicas. Run by the Rust test
// crates/swarmvm/tests/it/explorer.rs, which starts replicas that applied a bundle and passes:
//   SWARMVM_NODES  the running replicas' base URLs, comma-separated
//   SWARMVM_GONE   (optional) the member id of a replica that was killed
// On each node's page the overview's "Replicas" shows this replica's role and term as its
// status gives them, the leader (the same on every node, never the killed member), and every
// member with its last signed seq, the leader marked. Exits 0 when every check passed.
import assert from "node:assert/strict";
import { launch, watch } from "./chromium.mjs";

const nodes = process.env.SWARMVM_NODES.split(",");
const gone = process.env.SWARMVM_GONE || "";
const TIMEOUT = 30_000;

function step(text) { console.log("ok - " + text); }

const browser = await launch();
try {
  const leaders = new Set();
  for (const base of nodes) {
    const page = await (await browser.newContext()).newPage();
    const seen = watch(page);
    const status = await (await fetch(base + "/v1/status")).json();
    const c = status.cluster;
    assert.ok(c, `${base} has no cluster in its status`);
    await page.goto(base + "/#overview");
    const field = page.locator('[data-field="cluster"]').first();
    await field.waitFor({ timeout: TIMEOUT });
    const head = `this replica is ${c.role} (term ${c.term}); leader `;
    await page.waitForFunction(
      (want) => document.querySelector('[data-field="cluster"]').textContent.startsWith(want),
      head, { timeout: TIMEOUT });
    assert.ok(c.leader, `${base} knows no leader`);
    assert.notEqual(c.leader, gone, `${base} names the killed replica as leader`);
    leaders.add(c.leader);
    const leaderCode = field.locator("div > code").first();
    assert.equal(await leaderCode.getAttribute("title"), c.leader);

    const items = field.locator("li[data-member]");
    assert.equal(await items.count(), c.members.length);
    for (const m of c.members) {
      const text = (await field.locator(`li[data-member="${m.member}"]`).textContent()).trim();
      assert.ok(text.includes(`: last signed seq ${m.last_seq}, ${m.url}`), text);
      assert.equal(text.includes("(leader)"), m.member === c.leader, text);
      assert.ok(m.last_seq >= 1, `${m.member} signed nothing: ${text}`);
    }
    assert.deepEqual(seen.errors, []);
    assert.deepEqual(seen.dialogs, []);
    for (const url of seen.requests) {
      assert.ok(url.startsWith(base + "/"), "a request outside the node: " + url);
    }
    step(`${base}: ${c.role} in term ${c.term}, ${c.members.length} members listed, the leader marked`);
    await page.context().close();
  }
  assert.equal(leaders.size, 1, "the nodes name different leaders: " + [...leaders].join(", "));
  step("every node names the same leader" + (gone ? ", not the killed one" : ""));
  console.log("all cluster checks passed");
} finally {
  await browser.close();
}
