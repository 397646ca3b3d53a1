// The explorer's Wallet view, on clients/js/swarmvm.mjs. A key is made (or imported) in this
// browser as a non-extractable WebCrypto key and kept in IndexedDB: neither this page nor
// anything else can read it back, and it never leaves the browser. The view shows the key's
// wallet id and public JWK to hand to an authority, builds a contract from the operations
// this node has registered, checks it, signs it, submits it to this node and shows its
// receipt when it arrives. Every value is put into the page as text.
import { Client, Wallet, signContract } from "/explorer/swarmvm.mjs";

const $ = (id) => document.getElementById(id);
const client = new Client(location.origin);
const DB = "swarmvm-wallet";
const STORE = "keys";
const SLOT = "wallet";

/** The built-in handlers' fields, as a starting point for the action's form. */
const TEMPLATES = {
  register_student: { student: { id: "", name: "", department: "" } },
  add_course: { course: { id: "", name: "", department: "" } },
  enroll_student: { student_id: "", course_id: "" },
  vote_proposal: { proposal: { id: "", description: "" } },
  generate_nft: { nft: { id: "", name: "", metadata: {} } },
  transfer_nft: { nft_id: "", to: "" },
};

/** Runs `f` on the key store in one transaction; resolves to its request's result. */
function store(mode, f) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction(STORE, mode);
      const request = f(tx.objectStore(STORE));
      tx.oncomplete = () => { open.result.close(); resolve(request.result); };
      tx.onerror = () => { open.result.close(); reject(tx.error); };
    };
  });
}

let wallet = null;
let handlers = new Map();

function say(text, state) {
  const out = $("wallet-status");
  out.textContent = text;
  out.dataset.state = state;
}

function showKey() {
  $("wallet-id").textContent = wallet ? wallet.id : "no key in this browser yet";
  $("wallet-public").value = wallet ? JSON.stringify(wallet.publicJwk) : "";
  $("wallet-submit").disabled = !wallet;
}

async function keep(made) {
  await store("readwrite", (s) => s.put({ privateKey: made.privateKey, x: made.publicJwk.x, id: made.id }, SLOT));
  wallet = made;
  showKey();
}

async function loadKey() {
  const kept = await store("readonly", (s) => s.get(SLOT));
  if (kept) wallet = new Wallet(kept.privateKey, kept.x, kept.id);
  showKey();
}

async function loadOperations() {
  const page = await (await fetch("/v1/state/operations?limit=1000", { headers: { accept: "application/json" } })).json();
  handlers = new Map(page.entries.map((e) => [e.id, e.wasm ? null : e.value]));
  const select = $("wallet-action");
  const chosen = select.value;
  select.replaceChildren(...[...handlers.keys()].map((name) => {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    return option;
  }));
  if (handlers.has(chosen)) select.value = chosen;
  else fillTemplate();
}

function fillTemplate() {
  const template = TEMPLATES[handlers.get($("wallet-action").value)] ?? {};
  $("wallet-fields").value = JSON.stringify(template, null, 2);
}

/** The action from the form, or a one-line reason why it cannot be signed. */
function action() {
  const name = $("wallet-action").value;
  if (!handlers.has(name)) throw new Error("choose one of the registered operations");
  let fields;
  try {
    fields = JSON.parse($("wallet-fields").value);
  } catch (e) {
    throw new Error("the action's fields are not JSON: " + e.message);
  }
  if (!fields || typeof fields !== "object" || Array.isArray(fields)) throw new Error("the action's fields are one JSON object");
  if (Object.hasOwn(fields, "action")) throw new Error("the operation is chosen above, not named in the fields");
  const template = TEMPLATES[handlers.get(name)];
  for (const [key, value] of Object.entries(template ?? {})) {
    if (!Object.hasOwn(fields, key)) throw new Error(`'${key}' is missing`);
    for (const member of Object.keys(value ?? {})) {
      const given = fields[key]?.[member];
      if (given === undefined || given === "") throw new Error(`'${key}.${member}' is empty`);
    }
  }
  return { action: name, ...fields };
}

async function submit() {
  let act;
  try {
    act = action();
  } catch (e) {
    say(e.message, "invalid");
    return;
  }
  try {
    say("signing", "busy");
    const { network } = await client.status();
    let nonce;
    try {
      nonce = await client.nextNonce(wallet.id);
    } catch (e) {
      if (e.status === 404) throw new Error("this wallet is not registered yet: hand its public key to an authority");
      throw e;
    }
    const { id } = await client.submit(await signContract(wallet, [act], { network, nonce }));
    $("wallet-contract").textContent = id;
    say(`submitted with nonce ${nonce}, waiting for its bundle`, "pending");
    const outcome = await client.wait(id, { timeoutMs: 120000 });
    const seq = outcome.seq ? ` in bundle ${outcome.seq}` : "";
    say(`${outcome.state}${seq}${outcome.reason ? ": " + outcome.reason : ""}`, outcome.state);
    $("wallet-receipt").textContent = JSON.stringify(outcome, null, 2);
  } catch (e) {
    say(e.message, "failed");
  }
}

let replacing = 0;
$("wallet-new").addEventListener("click", async () => {
  // A key made here exists nowhere else: replacing it loses the wallet, so ask twice.
  if (wallet && Date.now() - replacing > 10000) {
    replacing = Date.now();
    say(`this browser holds wallet ${wallet.id}, and its key exists nowhere else: click again within 10 s to replace it for good`, "confirm");
    return;
  }
  replacing = 0;
  try {
    await keep(await Wallet.generate());
    say("a new key, made in this browser; it cannot be exported", "ready");
  } catch (e) {
    say("this browser cannot make an Ed25519 key: " + e.message, "failed");
  }
});
$("wallet-import").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  try {
    await keep(await Wallet.importJwk(JSON.parse(await file.text())));
    say("key imported; this browser keeps it as a key it cannot export", "ready");
  } catch (e) {
    say("not a private Ed25519 JWK: " + e.message, "failed");
  }
  event.target.value = "";
});
$("wallet-action").addEventListener("change", fillTemplate);
$("wallet-submit").addEventListener("click", submit);
window.addEventListener("hashchange", () => { if (location.hash === "#wallet") loadOperations().catch(() => {}); });

loadKey().catch((e) => say("this browser keeps no keys here: " + e.message, "failed"));
loadOperations().catch((e) => say("cannot read the operations: " + e.message, "failed"));
