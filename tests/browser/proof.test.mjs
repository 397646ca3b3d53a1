// The explorer checks an entry's proof and head in the browser. Run by the Rust test
// crates/swarmvm/tests/it/explorer.rs, which starts a sequencer that applied a contract and
// passes:
//   SWARMVM_NODE  the node's base URL
//   SWARMVM_ID    a student id in its state
// Exits 0 when every check passed; prints each check and fails on the first that does not.
import assert from "node:assert/strict";
import { launch, watch } from "./chromium.mjs";

const base = process.env.SWARMVM_NODE;
const id = process.env.SWARMVM_ID;
const TIMEOUT = 30_000;

function step(text) { console.log("ok - " + text); }

/** Clicks `id`'s verify button and waits for the verdict; returns [state, text]. */
async function verify(page) {
  await page.locator(`#state tbody tr[data-id="${id}"] button[data-verify]`).click();
  const out = page.locator("#state-proof");
  await page.waitForFunction(
    () => !["checking", undefined].includes(document.querySelector("#state-proof").dataset.state),
    null, { timeout: TIMEOUT });
  return [await out.getAttribute("data-state"), (await out.textContent()).trim()];
}

const browser = await launch();
try {
  const page = await (await browser.newContext()).newPage();
  const seen = watch(page);
  await page.goto(base + "/#state");
  await page.locator(`#state tbody tr[data-id="${id}"]`).waitFor({ timeout: TIMEOUT });

  const status = await (await fetch(base + "/v1/status")).json();
  let [state, text] = await verify(page);
  assert.equal(state, "verified", text);
  assert.match(text, new RegExp(`^students ${id}: present \\{.*"name":"Zoë".*\\}, verified against head seq ${status.last_seq}, signed by `));
  const authority = (await (await fetch(base + "/v1/authorities")).json()).authorities[0].kid;
  assert.ok(text.includes(authority), text);
  step("an entry is verified against the signed head: " + text);

  // The overview says where the node's head came from: it signed it.
  await page.goto(base + "/#overview");
  const via = page.locator('[data-field="head_via"]').first();
  await via.waitFor({ timeout: TIMEOUT });
  assert.equal(status.head.via, "self");
  assert.match((await via.textContent()).trim(), /^signed here, .+ ago$/);
  await page.goto(base + "/#state");
  await page.locator(`#state tbody tr[data-id="${id}"]`).waitFor({ timeout: TIMEOUT });
  step("the overview says the head was signed here");

  // A node that lies about the value, or about the head, is caught here.
  await page.route("**/v1/proof/**", async (route) => {
    const response = await route.fetch();
    const doc = await response.json();
    doc.value.name = "Mallory";
    await route.fulfill({ response, json: doc });
  });
  [state, text] = await verify(page);
  assert.equal(state, "failed", text);
  assert.match(text, /NOT verified: the proof leads to root/);
  step("a changed value is refused: " + text);

  // A valid proof of another entry (an absent one) served for this one.
  await page.unroute("**/v1/proof/**");
  await page.route("**/v1/proof/**", async (route) => {
    const response = await route.fetch({ url: base + "/v1/proof/students/NOBODY" });
    await route.fulfill({ response, json: await response.json() });
  });
  [state, text] = await verify(page);
  assert.equal(state, "failed", text);
  assert.match(text, /NOT verified: the node answered for another entry than the one asked/);
  step("a proof of another entry is refused: " + text);

  await page.unroute("**/v1/proof/**");
  await page.route("**/v1/proof/**", async (route) => {
    const response = await route.fetch();
    const doc = await response.json();
    const [header, payload, signature] = doc.head.split(".");
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
    claims.exp += 3600;
    doc.head = [header, Buffer.from(JSON.stringify(claims)).toString("base64url"), signature].join(".");
    await route.fulfill({ response, json: doc });
  });
  [state, text] = await verify(page);
  assert.equal(state, "failed", text);
  assert.match(text, /NOT verified: the signature of '.*' does not verify/);
  step("a head whose claims were changed is refused: " + text);

  // A browser without Ed25519 in WebCrypto says so instead of claiming the head verified.
  const old = await browser.newContext();
  await old.addInitScript(() => {
    const importKey = crypto.subtle.importKey.bind(crypto.subtle);
    crypto.subtle.importKey = (format, key, alg, ...rest) => (alg && alg.name === "Ed25519")
      ? Promise.reject(new DOMException("Ed25519 is not supported", "NotSupportedError"))
      : importKey(format, key, alg, ...rest);
  });
  const oldPage = await old.newPage();
  await oldPage.goto(base + "/#state");
  await oldPage.locator(`#state tbody tr[data-id="${id}"]`).waitFor({ timeout: TIMEOUT });
  [state, text] = await verify(oldPage);
  assert.equal(state, "unchecked", text);
  assert.match(text, /present \{.*\}; the proof holds against the root its head names, but this browser cannot verify Ed25519 signatures/);
  step("without Ed25519 in WebCrypto the page says the head is not checked: " + text);

  assert.deepEqual(seen.errors, [], "console or page errors");
  assert.deepEqual(seen.requests.filter((u) => new URL(u).origin !== new URL(base).origin), []);
  console.log("all proof checks passed");
} finally {
  await browser.close();
}
