// The explorer's Wallet view in Chromium: a key made in the page, registered by an authority
// with the command line, then a contract signed and submitted in the page whose receipt shows
// without a reload. Run by crates/swarmvm/tests/it/explorer.rs, which starts a sequencer
// (cutting every second) that applied its genesis, and passes:
//   SWARMVM_NODE  the node's base URL
//   SWARMVM_BIN   the swarmvm binary
//   SWARMVM_DIR   the folder holding the authority's key, auth.pem
//   SWARMVM_SHOTS a folder for a screenshot of the view
// Exits 0 when every check passed; prints each check and fails on the first that does not.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { launch, watch } from "./chromium.mjs";

const base = process.env.SWARMVM_NODE;
const dir = process.env.SWARMVM_DIR;
const TIMEOUT = 30_000;
const swarmvm = (...args) => execFileSync(process.env.SWARMVM_BIN, args, { cwd: dir, encoding: "utf8" });

function step(text) { console.log("ok - " + text); }

const browser = await launch();
try {
  const page = await (await browser.newContext()).newPage();
  const seen = watch(page);
  await page.goto(base + "/#wallet");
  await page.evaluate(() => { window.sameDocument = true; });

  // A key made in the page.
  await page.locator("#wallet-new").click();
  await page.waitForFunction(() => document.querySelector("#wallet-public").value.startsWith("{"), null, { timeout: TIMEOUT });
  const jwk = JSON.parse(await page.locator("#wallet-public").inputValue());
  const id = (await page.locator("#wallet-id").textContent()).trim();
  assert.equal(jwk.kid, id);
  assert.deepEqual(Object.keys(jwk).sort(), ["alg", "crv", "kid", "kty", "x"], "a public JWK only");
  step("a key is made in the page: wallet " + id);

  // Its private key cannot be read back, by the page or anything else in it.
  const kept = await page.evaluate(async () => {
    const db = await new Promise((ok, no) => { const r = indexedDB.open("swarmvm-wallet", 1); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
    const record = await new Promise((ok, no) => { const r = db.transaction("keys").objectStore("keys").get("wallet"); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
    db.close();
    const key = record.privateKey;
    let exported = "refused";
    for (const format of ["jwk", "pkcs8", "raw"]) {
      try { await crypto.subtle.exportKey(format, key); exported = format; } catch { /* refused */ }
    }
    return { type: key.type, extractable: key.extractable, usages: key.usages, exported, members: Object.keys(record).sort() };
  });
  assert.deepEqual(kept, { type: "private", extractable: false, usages: ["sign"], exported: "refused", members: ["id", "privateKey", "x"] });
  step("the private key is kept in IndexedDB as a key nobody can export: " + JSON.stringify(kept));

  // An authority registers it with the command line, from the public key the page showed.
  fs.writeFileSync(path.join(dir, "browser.jwk"), JSON.stringify(jwk));
  const token = swarmvm("token", "issue", "wallets", "--key", "auth.pem", "--wallet", "browser=browser.jwk");
  fs.mkdirSync(path.join(dir, "registration"), { recursive: true });
  fs.writeFileSync(path.join(dir, "registration/registration_tokens.txt"), token);
  swarmvm("bundle", "submit", "registration", "--node", base);
  for (let i = 0; ; i++) {
    if ((await fetch(`${base}/v1/wallets/${id}`)).ok) break;
    assert.ok(i < 300, "the registration was not applied within 30 s");
    await new Promise((done) => setTimeout(done, 100));
  }
  step("an authority registered the page's key with the command line");

  // The form is checked before anything is signed.
  await page.locator("#wallet-action").selectOption("register_student");
  await page.locator("#wallet-fields").fill('{"student": {"id": "WEB1", "name": "Zoë Web"');
  let posts = seen.requests.filter((u) => u.endsWith("/v1/contracts")).length;
  await page.locator("#wallet-submit").click();
  await page.waitForFunction(() => document.querySelector("#wallet-status").dataset.state === "invalid", null, { timeout: TIMEOUT });
  assert.match(await page.locator("#wallet-status").textContent(), /not JSON/);
  await page.locator("#wallet-fields").fill('{"student": {"id": "WEB1", "name": "Zoë Web", "department": ""}}');
  await page.locator("#wallet-submit").click();
  await page.waitForFunction(() => document.querySelector("#wallet-status").dataset.state === "invalid", null, { timeout: TIMEOUT });
  assert.match(await page.locator("#wallet-status").textContent(), /'student.department' is empty/);
  assert.equal(seen.requests.filter((u) => u.endsWith("/v1/contracts")).length, posts, "nothing was submitted");
  step("a malformed or incomplete action is refused before signing");

  // Signed and submitted in the page; the receipt arrives without a reload.
  await page.locator("#wallet-fields").fill('{"student": {"id": "WEB1", "name": "Zoë Web", "department": "Browsers"}}');
  const started = Date.now();
  await page.locator("#wallet-submit").click();
  await page.waitForFunction(() => ["applied", "rejected", "failed"].includes(document.querySelector("#wallet-status").dataset.state), null, { timeout: 60_000 });
  const elapsed = (Date.now() - started) / 1000;
  const status = (await page.locator("#wallet-status").textContent()).trim();
  assert.match(status, /^applied in bundle \d+$/, status);
  const receipt = JSON.parse(await page.locator("#wallet-receipt").textContent());
  assert.equal(receipt.state, "applied");
  assert.equal(receipt.id, (await page.locator("#wallet-contract").textContent()).trim());
  assert.equal(await page.evaluate(() => window.sameDocument), true, "the page was not reloaded");
  const entry = await (await fetch(`${base}/v1/state/students/WEB1`)).json();
  assert.equal(entry.entry.name, "Zoë Web");
  posts = seen.requests.filter((u) => u.endsWith("/v1/contracts")).length;
  assert.equal(posts, 1, "one contract posted");
  step(`a contract signed in the page was applied and its receipt shown, ${elapsed.toFixed(2)} s from the click (submit to receipt on screen)`);

  // A key that exists nowhere else is not replaced by one stray click.
  await page.locator("#wallet-new").click();
  await page.waitForFunction(() => document.querySelector("#wallet-status").dataset.state === "confirm", null, { timeout: TIMEOUT });
  assert.equal((await page.locator("#wallet-id").textContent()).trim(), id);
  step("one click on 'Make a key' keeps the wallet and asks again: " + (await page.locator("#wallet-status").textContent()).trim());

  if (process.env.SWARMVM_SHOTS) {
    fs.mkdirSync(process.env.SWARMVM_SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(process.env.SWARMVM_SHOTS, "wallet.png"), fullPage: true });
  }

  // Every request went to the node's own origin, and nothing went wrong on the console.
  const elsewhere = seen.requests.filter((u) => new URL(u).origin !== base);
  assert.deepEqual(elsewhere, [], "requests to other origins");
  assert.deepEqual(seen.errors, [], "errors in the page");
  assert.deepEqual(seen.dialogs, []);
  step(`all ${seen.requests.length} requests went to ${base}; no console error`);
  console.log("all wallet checks passed");
} finally {
  await browser.close();
}
