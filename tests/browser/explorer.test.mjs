// The explorer in a real browser, against real nodes. Run by the Rust test
// crates/swarmvm/tests/it/explorer.rs, which starts the nodes and passes:
//   SWARMVM_NODES    base URLs of nodes that applied bundle 1, comma separated
//   SWARMVM_TORRENT  a .torrent of bundle 2 (seeded slowly), added to the last node while
//                    its page is open
//   SWARMVM_XSS      the name of student S002, markup that must show as text
//   SWARMVM_SHOTS    where to save screenshots
// Exits 0 when every check passed; prints each check and fails on the first that does not.
import assert from "node:assert/strict";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { launch, watch } from "./chromium.mjs";

const nodes = process.env.SWARMVM_NODES.split(",");
const torrent = process.env.SWARMVM_TORRENT;
const xss = process.env.SWARMVM_XSS;
const shots = process.env.SWARMVM_SHOTS;
mkdirSync(shots, { recursive: true });

const VIEWS = ["overview", "bundles", "state", "operations", "wallets", "receipts", "evidence"];
const TIMEOUT = 30_000;

function step(text) { console.log("ok - " + text); }

async function api(base, path, init) {
  const r = await fetch(base + path, init);
  const body = await r.json();
  if (!r.ok) throw new Error(path + ": " + r.status + " " + JSON.stringify(body));
  return body;
}

/** The text of `[data-field=name]` once it is not empty. */
async function field(page, name) {
  const el = page.locator(`[data-field="${name}"]`).first();
  await el.waitFor({ timeout: TIMEOUT });
  return (await el.textContent()).trim();
}

async function checkClean(seen, base, what) {
  const origin = new URL(base).origin;
  const outside = seen.requests.filter((u) => new URL(u).origin !== origin);
  assert.deepEqual(outside, [], what + ": requests outside the node");
  assert.deepEqual(seen.errors, [], what + ": console or page errors");
  assert.deepEqual(seen.dialogs, [], what + ": dialogs opened");
}

const browser = await launch();
try {
  // 1. Every node's page shows the state it holds, with the same root.
  const roots = [];
  for (const [i, base] of nodes.entries()) {
    const status = await api(base, "/v1/status");
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    const seen = watch(page);
    try {
      await page.goto(base + "/");
      await page.waitForFunction((root) => {
        const el = document.querySelector('[data-field="state_root"]');
        return el && el.textContent.trim() === root;
      }, status.state_root, { timeout: TIMEOUT });
      assert.equal(await field(page, "last_seq"), String(status.last_seq));
      assert.equal(await field(page, "network"), status.network);
      roots.push(await field(page, "state_root"));
      step(`node ${i + 1}: the overview shows seq ${status.last_seq} and root ${status.state_root}`);

      // The state table: the demo's students, the hostile name as text.
      await page.goto(base + "/#state");
      const row = page.locator('#state tbody tr[data-id="S002"]');
      await row.waitFor({ timeout: TIMEOUT });
      assert.equal((await row.locator('td[data-col="name"]').textContent()), xss);
      assert.equal(await page.locator("#state img").count(), 0, "no element made from a name");
      assert.equal(await page.locator('#state tbody tr[data-id="S001"] td[data-col="name"]').textContent(), "John Doe");
      step(`node ${i + 1}: student S002's name ${JSON.stringify(xss)} shows as text, no element, no dialog`);

      // The search box filters what is loaded.
      await page.fill("#state-search", "john");
      await page.locator('#state tbody tr[data-id="S002"]').waitFor({ state: "detached", timeout: TIMEOUT });
      assert.equal(await page.locator("#state tbody tr").count(), 1);
      await page.fill("#state-search", "");
      step(`node ${i + 1}: the search box filters the table`);

      // A rejected contract and its reason, as the API gives them.
      const receipts = (await api(base, "/v1/receipts?from=1&limit=1000")).receipts;
      const rejected = receipts.find((r) => r.status === "rejected");
      assert.ok(rejected, "the bundle has a rejected contract");
      // The first answer (all receipts) is held back until after the filter changed, so it
      // arrives late: the page must not draw it over the filtered one.
      let held = 0;
      await page.route("**/v1/receipts*", async (r) => {
        if (held++ === 0) await new Promise((done) => setTimeout(done, 700));
        await r.continue();
      });
      await page.goto(base + "/#receipts");
      await page.selectOption("#receipts-filter", "rejected");
      const rrow = page.locator(`#receipts tbody tr[data-contract="${rejected.contract}"]`);
      await rrow.waitFor({ timeout: TIMEOUT });
      assert.equal(await rrow.locator('[data-field="reason"]').textContent(), rejected.reason);
      await page.waitForTimeout(1000);
      assert.ok(held >= 2, "the held answer and the filtered one were both asked for");
      assert.equal(await page.locator('#receipts tbody tr[data-status="applied"]').count(), 0);
      assert.equal(await rrow.count(), 1);
      await page.unroute("**/v1/receipts*");
      step(`node ${i + 1}: the rejected contract shows its reason: ${rejected.reason}`);

      // Operations and wallets from the registration tokens.
      await page.goto(base + "/#operations");
      await page.locator('#operations tbody tr[data-id="register_student"]').waitFor({ timeout: TIMEOUT });
      await page.goto(base + "/#wallets");
      const wallets = await api(base, "/v1/wallets");
      for (const id of Object.keys(wallets)) {
        await page.locator(`#wallets tbody tr[data-id="${id}"]`).waitFor({ timeout: TIMEOUT });
      }
      step(`node ${i + 1}: operations and ${Object.keys(wallets).length} wallets listed`);

      // Keyboard: the views are links in the tab order.
      await page.goto(base + "/#overview");
      await page.locator('[data-field="state_root"]').waitFor({ timeout: TIMEOUT });
      await page.focus('nav a[data-view="bundles"]');
      await page.keyboard.press("Enter");
      await page.locator("#view-bundles").waitFor({ state: "visible", timeout: TIMEOUT });
      assert.equal(await page.locator('nav a[aria-current="page"]').textContent(), "Bundles");
      step(`node ${i + 1}: views open from the keyboard`);

      if (i === 0) {
        for (const view of VIEWS) {
          await page.goto(base + "/#" + view);
          await page.waitForTimeout(300);
          await page.screenshot({ path: join(shots, `${view}.png`), fullPage: true });
        }
        await page.emulateMedia({ colorScheme: "dark" });
        await page.goto(base + "/#overview");
        await page.waitForTimeout(300);
        await page.screenshot({ path: join(shots, "overview-dark.png"), fullPage: true });
        const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
        const small = await phone.newPage();
        const phoneSeen = watch(small);
        await small.goto(base + "/#state");
        await small.locator('#state tbody tr[data-id="S001"]').waitFor({ timeout: TIMEOUT });
        const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 1, `the page is no wider than a phone (${overflow} px over)`);
        await small.screenshot({ path: join(shots, "state-phone.png"), fullPage: true });
        await checkClean(phoneSeen, base, "phone");
        await phone.close();
        step("screenshots of every view (light, dark, phone) in " + shots);
      }
      await checkClean(seen, base, `node ${i + 1}`);
      step(`node ${i + 1}: no request outside the node, no console error, no dialog`);
    } catch (e) {
      // Say what the browser saw: a policy violation or a script error explains a timeout.
      e.message += "\nbrowser errors: " + JSON.stringify(seen.errors) + "\ndialogs: " + JSON.stringify(seen.dialogs);
      throw e;
    }
    await context.close();
  }
  assert.ok(roots.every((r) => r === roots[0]), "every page shows one root");
  step(`all ${nodes.length} pages show root ${roots[0]}`);

  // 2. A bundle fetched while the page is open: progress, then applied, without a reload.
  const base = nodes[nodes.length - 1];
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const seen = watch(page);
  await page.goto(base + "/#bundles");
  await page.locator('[data-field="state_root"]').waitFor({ state: "attached", timeout: TIMEOUT });
  await page.evaluate(() => { window.__sameDocument = true; });
  const requestsBefore = seen.requests.length;
  const added = await api(base, "/v1/bundles", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ torrent_base64: readFileSync(torrent).toString("base64") }),
  });
  const hash = added.info_hash;
  const row = `#bundles tbody tr[data-hash="${hash}"]`;
  // Progress strictly between 0 and 100 while it downloads.
  const partial = await page.waitForFunction((sel) => {
    const r = document.querySelector(sel);
    if (!r) return false;
    const p = parseFloat(r.querySelector('[data-field="percent"]').textContent);
    return p > 0 && p < 100 ? p : false;
  }, row, { timeout: TIMEOUT, polling: 50 });
  const percent = await partial.jsonValue();
  await page.screenshot({ path: join(shots, "bundles-fetching.png"), fullPage: true });
  step(`the new bundle shows ${percent}% while it downloads`);
  await page.waitForSelector(`${row}[data-state="applied"]`, { timeout: 60_000 });
  await page.evaluate(() => { location.hash = "#overview"; });
  await page.waitForFunction(() => document.querySelector('[data-field="last_seq"]').textContent === "2", null, { timeout: TIMEOUT });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
  const during = seen.requests.slice(requestsBefore).map((u) => new URL(u).pathname);
  assert.ok(!during.includes("/v1/status"), "no status polling: " + during.join(" "));
  assert.ok(seen.requests.some((u) => new URL(u).pathname === "/v1/events"), "the page listens to /v1/events");
  await page.screenshot({ path: join(shots, "overview-after-fetch.png"), fullPage: true });
  await checkClean(seen, base, "live fetch");
  step("the bundle went on to applied and seq 2 on the same page, updated by server-sent events");
  await context.close();
} finally {
  await browser.close();
}
console.log("all explorer checks passed");
