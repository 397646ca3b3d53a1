// swarmvm.mjs: sign, submit and follow swarmvm contracts from a browser or Node.js 20+, with
// WebCrypto's Ed25519 and no dependency. Contracts are signed byte for byte as the swarmvm
// command line signs them (docs/format.md, "Contracts and actions";
// tests/vectors/contracts.json).
//
// Nonces only have to exceed the wallet's last applied one: read the next from
// client.nextNonce(wallet.id). Two tabs or processes sharing one wallet draw from disjoint
// ranges (or one shared counter, e.g. in IndexedDB behind a Web Lock); a reused nonce is
// refused (409) and never applied twice.

const enc = new TextEncoder();
const subtle = globalThis.crypto.subtle;
const ED25519 = { name: "Ed25519" };

/** Unpadded base64url of bytes. */
const b64u = (bytes) => {
  let text = "";
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};

/** Orders names by their UTF-8 bytes (JavaScript's own order is UTF-16 code units). */
const byUtf8 = (a, b) => {
  const x = enc.encode(a);
  const y = enc.encode(b);
  for (let i = 0; i < x.length && i < y.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};

/** Compact JSON with every object's members sorted by UTF-8 bytes. Written by hand:
 * JSON.stringify puts integer-like names first. */
export function canonical(value) {
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (value !== null && typeof value === "object") {
    const names = Object.keys(value).filter((k) => value[k] !== undefined).sort(byUtf8);
    return "{" + names.map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  if (typeof value === "number" && !Number.isFinite(value)) throw new TypeError("not a JSON number");
  return JSON.stringify(value);
}

/** The largest nonce, 2^53 - 1. */
export const MAX_NONCE = Number.MAX_SAFE_INTEGER;

/** An Ed25519 wallet whose private key stays a CryptoKey. */
export class Wallet {
  constructor(privateKey, x, id) {
    this.privateKey = privateKey;
    /** The wallet's id: the RFC 7638 SHA-256 thumbprint of its public key. */
    this.id = id;
    /** The public JWK, as `swarmvm wallet public --format jwk` writes it. */
    this.publicJwk = { alg: "EdDSA", crv: "Ed25519", kty: "OKP", x, kid: id };
  }

  static async #of(privateKey, x) {
    const input = `{"crv":"Ed25519","kty":"OKP","x":"${x}"}`;
    return new Wallet(privateKey, x, b64u(await subtle.digest("SHA-256", enc.encode(input))));
  }

  /** A new wallet; its private key cannot be exported. */
  static async generate() {
    const pair = await subtle.generateKey(ED25519, false, ["sign", "verify"]);
    const { x } = await subtle.exportKey("jwk", pair.publicKey);
    return Wallet.#of(pair.privateKey, x);
  }

  /** The wallet of a private Ed25519 JWK (`d` and `x`), imported as not extractable. */
  static async importJwk(jwk) {
    if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || !jwk.d || !jwk.x) {
      throw new TypeError("not a private Ed25519 JWK");
    }
    const { kty, crv, d, x } = jwk;
    const key = await subtle.importKey("jwk", { kty, crv, d, x }, ED25519, false, ["sign"]);
    return Wallet.#of(key, x);
  }
}

/** Signs `contract` (its list of actions, or `{actions}`) by `wallet` for `network` with
 * `nonce` (1 to 2^53 - 1); `iat` defaults to now. Resolves to the compact JWS. */
export async function signContract(wallet, contract, { network, nonce, iat }) {
  const actions = Array.isArray(contract) ? contract : contract.actions;
  if (!Array.isArray(actions)) throw new TypeError("a contract is a list of actions");
  if (!Number.isSafeInteger(nonce) || nonce < 1) {
    throw new RangeError(`nonce ${nonce} is out of range (1 to 2^53-1)`);
  }
  iat ??= Math.floor(Date.now() / 1000);
  const id = JSON.stringify(wallet.id);
  const header = `{"typ":"swarmvm-contract+jwt","alg":"EdDSA","kid":${id}}`;
  const claims =
    `{"iss":${id},"aud":${JSON.stringify(network)},"iat":${iat},"nonce":${nonce},` +
    `"actions":${canonical(actions)}}`;
  const input = b64u(enc.encode(header)) + "." + b64u(enc.encode(claims));
  return input + "." + b64u(await subtle.sign(ED25519, wallet.privateKey, enc.encode(input)));
}

/** A node answered with an error: `status` is the HTTP status, `message` its reason. */
export class SwarmvmError extends Error {
  constructor(status, message) {
    super(`${status}: ${message}`);
    this.status = status;
    this.reason = message;
  }
}

/** A node's HTTP API. */
export class Client {
  constructor(url) {
    this.url = url.replace(/\/+$/, "");
  }

  async #call(path, init) {
    const answer = await fetch(this.url + path, { headers: { accept: "application/json" }, ...init });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) throw new SwarmvmError(answer.status, body.error ?? answer.statusText);
    return body;
  }

  /** `GET /v1/status`. */
  status() {
    return this.#call("/v1/status");
  }

  /** The next nonce of a registered wallet: its last applied nonce + 1. */
  async nextNonce(walletId) {
    return (await this.#call("/v1/wallets/" + encodeURIComponent(walletId))).nonce + 1;
  }

  /** `POST /v1/contracts`: `{id, state: "pending"}` once the network took it. */
  submit(jws) {
    return this.#call("/v1/contracts", {
      method: "POST",
      headers: { "content-type": "application/jose", accept: "application/json" },
      body: jws,
    });
  }

  /** The contract's answer once applied or rejected; rejects after `timeoutMs`. */
  async wait(id, { timeoutMs = 60000, pollMs = 200 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let state = "unknown here";
      try {
        const answer = await this.#call("/v1/contracts/" + encodeURIComponent(id));
        if (answer.state === "applied" || answer.state === "rejected") return answer;
        state = answer.state;
      } catch (e) {
        if (e.status !== 404) throw e;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out: contract ${id} is still ${state}`);
      await new Promise((done) => setTimeout(done, Math.min(pollMs, left)));
    }
  }

  /** `GET /v1/proof/{table}/{id}`: the proof document, not checked (see `verified`). */
  proof(table, id) {
    return this.#call(`/v1/proof/${encodeURIComponent(table)}/${encodeURIComponent(id)}`);
  }

  /** The entry's value (its record's fields), or null when proved absent, checked with the
   * node's proof against a head that K members of the set `network` (a parsed network file)
   * puts in force signed, through the rotations the node sends. Rejects with a
   * VerificationError when the answer does not hold. */
  async verified(table, id, network) {
    return (await verifyAnswer(await this.proof(table, id), network, { asked: [table, id] })).value;
  }

  /** `GET /v1/state/{table}/{id}`: the entry, or null when absent. */
  async state(table, id) {
    try {
      const path = `/v1/state/${encodeURIComponent(table)}/${encodeURIComponent(id)}`;
      return (await this.#call(path)).entry;
    } catch (e) {
      if (e.status === 404 && e.reason.startsWith("no entry")) return null;
      throw e;
    }
  }
}

// ---- Verified reads (docs/format.md, "Network files", "Signed objects", "Proofs") ----

/** A proof document that does not hold; `message` says why. */
export class VerificationError extends Error {}

const fail = (why) => { throw new VerificationError(why); };
const dec = new TextDecoder();
const unb64 = (text) => {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text)) fail("not base64url");
  return Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
};
const cat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const sha = async (...parts) => new Uint8Array(await subtle.digest("SHA-256", cat(...parts)));
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (t) => /^([0-9a-f]{2})*$/.test(t) ? Uint8Array.from(t.match(/../g) ?? [], (b) => parseInt(b, 16)) : fail("not hex");
const le = (n, bytes) => { const b = new Uint8Array(bytes); let v = BigInt(n); for (let i = 0; i < bytes; i++) { b[i] = Number(v & 255n); v >>= 8n; } return b; };
const str = (b) => cat(le(b.length, 4), b);
const isInt = Number.isSafeInteger;
const TABLES = {
  operations: [1, null], wallets: [2, "label key"], nonces: [3, "last#"],
  students: [4, "name department"], courses: [5, "name department"], enrollments: [6, ""],
  proposals: [7, "description votes#"], votes: [8, ""], nfts: [9, "name metadata owner"],
  wasm: [10, "value~"], authorities: [11, "set"], revocations: [12, ""], tokens: [13, ""],
};

function recordBytes(table, value) {
  if (!value || typeof value !== "object" || Array.isArray(value)) fail("a value is a JSON object");
  let spec = TABLES[table][1];
  if (spec === null) spec = value.handler === "wasm" ? "handler module@ fuel#" : "handler";
  const fields = spec.split(" ").filter(Boolean).map((f) => [f.replace(/[#~@]$/, ""), f.at(-1)]);
  if (canonical(Object.keys(value).sort()) !== canonical(fields.map(([n]) => n).sort())) {
    fail("the value's members are not those of " + table);
  }
  return cat(...fields.map(([name, kind]) => {
    const v = value[name];
    if (kind === "#") return isInt(v) && v >= 0 ? le(v, 8) : fail("a number field is not a u64");
    if (typeof v !== "string") fail(`'${name}' is not a string`);
    if (kind === "@") return v.length === 64 ? unhex(v) : fail("a module hash is not 64 hex");
    return str(kind === "~" && v.startsWith("hex:") ? unhex(v.slice(4)) : enc.encode(v));
  }));
}

async function provedRoot(proof, key, leaf) {
  if (proof.length > 262144) fail("the proof is over 262144 bytes");
  if (proof[0] !== 1) fail("not a version 1 proof");
  let pos = 1;
  const take = (n) => (pos + n > proof.length ? fail("truncated proof") : proof.subarray(pos, (pos += n)));
  const nodes = [];
  while (pos < proof.length) {
    if (nodes.length > key.length) fail("more nodes than the key has bytes");
    const n = take(2); const segment = take(n[0] | (n[1] << 8));
    const flag = take(1)[0];
    const value = flag === 0 ? null : flag === 1 ? take(32) : flag === 2 ? "proved" : fail("bad value flag");
    const step = take(1)[0];
    if (step === 0) {
      const has = take(1)[0];
      if (has > 1) fail("bad children flag");
      nodes.push({ segment, value, last: true, children: has ? take(32) : null });
      if (pos !== proof.length) fail("bytes after the last node");
    } else if (step === 1) {
      const splits = [];
      for (let k = take(1)[0]; k > 0; k--) {
        const depth = take(1)[0];
        if (depth > 7 || (splits.length && depth <= splits.at(-1)[0])) fail("split depths are not increasing bits 0 to 7");
        splits.push([depth, take(32)]);
      }
      nodes.push({ segment, value, last: false, splits });
    } else fail("bad step flag");
  }
  if (!nodes.length) return leaf ? fail("the proof shows an empty state") : sha(new Uint8Array(0));
  if (!nodes.at(-1).last) fail("truncated proof");
  let rest = key; let present = false; let splits = [];
  const ways = [];
  for (const [i, n] of nodes.entries()) {
    if (i === 0 && n.segment.length) fail("the root has a segment");
    if (i > 0) {
      if (!n.segment.length) fail("an empty segment below the root");
      if (splits.some(([d]) => (n.segment[0] ^ ways.at(-1)) & (0x80 >> d))) fail("a child that is not where its first byte puts it");
    }
    if (!(n.segment.length <= rest.length && n.segment.every((x, j) => rest[j] === x))) {
      if (i < nodes.length - 1 || n.value === "proved") fail("the key leaves the trie above the last node");
      break;
    }
    rest = rest.subarray(n.segment.length);
    if (!n.last) {
      if (!rest.length || n.value === "proved") fail("it goes down below the end of the key or the entry");
      ways.push(rest[0]);
      splits = n.splits;
    } else if (!rest.length) {
      if (n.value === "proved") present = true;
      else if (n.value !== null) fail("the proof shows another entry at this key");
    } else if (n.value === "proved" || n.children !== null) fail("the proof stops where the key goes on");
  }
  if (present !== Boolean(leaf)) fail("the proof shows the entry " + (present ? "present" : "absent"));
  let below = null;
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    let children = n.children;
    if (!n.last) {
      children = below;
      for (const [d, sib] of [...n.splits].reverse()) {
        children = await sha(Uint8Array.of(2, d), ...((ways[i] & (0x80 >> d)) ? [sib, children] : [children, sib]));
      }
    }
    const v = n.value === "proved" ? leaf : n.value;
    below = await sha(Uint8Array.of(1), le(n.segment.length, 4), n.segment,
      v ? cat(Uint8Array.of(1), v) : Uint8Array.of(0), children ? cat(Uint8Array.of(1), children) : Uint8Array.of(0));
  }
  return below;
}

const RSA = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };

/** An authority set: members by wallet id, each with its algorithm and WebCrypto key. */
async function authoritySet(authorities, threshold) {
  if (!Array.isArray(authorities) || !authorities.length) fail("an authority set has no authorities");
  const members = new Map();
  for (const jwk of authorities) {
    const ed = jwk?.kty === "OKP" && jwk.crv === "Ed25519";
    if (!ed && jwk?.kty !== "RSA") fail("an authority's key is neither Ed25519 nor RSA");
    const material = ed ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x } : { e: jwk.e, kty: jwk.kty, n: jwk.n };
    const id = b64u(await subtle.digest("SHA-256", enc.encode(JSON.stringify(material))));
    if ((jwk.kid ?? id) !== id) fail("an authority's kid is not its key's wallet id");
    const key = await subtle.importKey("jwk", material, ed ? ED25519 : RSA, false, ["verify"]);
    members.set(id, { alg: ed ? "EdDSA" : "RS256", key, algo: ed ? ED25519 : RSA });
  }
  if (!isInt(threshold) || threshold < 1 || threshold > members.size) fail("an authority set's threshold is out of range");
  return { members, threshold };
}

/** The claims of a JWS (compact or JSON) of kind `typ`, and its signatures as
 * [protected, payload, signature] parts. */
function jws(text, typ) {
  if (typeof text !== "string") fail(`a ${typ} is not text`);
  let parts;
  if (text.startsWith("{")) {
    const j = JSON.parse(text);
    parts = j.signatures.map((s) => [s.protected, j.payload, s.signature]);
  } else if ((parts = [text.split(".")])[0].length !== 3) fail(`the ${typ} is not a JWS`);
  return { claims: JSON.parse(dec.decode(unb64(parts[0][1]))), parts, typ };
}

/** The ids of `members` whose signatures on `signed` (from `jws`) verify; any other signer,
 * a mismatched algorithm or a bad signature refuses the whole object. */
async function signersOf({ parts, typ }, members) {
  const signers = new Set();
  for (const [protectedB64, payload, signature] of parts) {
    const header = JSON.parse(dec.decode(unb64(protectedB64)));
    if (header.typ !== typ) fail(`not a ${typ}`);
    const m = members.get(header.kid) ?? fail(`the ${typ} is signed by '${header.kid}', not a member of the set`);
    if (header.alg !== m.alg) fail(`a signature names ${header.alg}, not its key's`);
    if (!(await subtle.verify(m.algo, m.key, unb64(signature), enc.encode(protectedB64 + "." + payload)))) {
      fail(`the signature of '${header.kid}' does not verify`);
    }
    signers.add(header.kid);
  }
  return signers;
}

/** Checks a proof document against `network` (a parsed network file) at `now` (Unix
 * seconds), and that it answers `asked` ([table, id]) when given. Resolves to
 * `{value, head}` (value null when proved absent); rejects with a VerificationError. */
export async function verifyAnswer(doc, network, { now = Math.floor(Date.now() / 1000), asked } = {}) {
  try {
    if (!Object.hasOwn(TABLES, doc.table) || typeof doc.id !== "string") fail("no such state table");
    if (asked && (asked[0] !== doc.table || asked[1] !== doc.id)) fail("the node answered for another entry than the one asked");
    let set = await authoritySet(network.authorities, network.threshold);
    const manifests = doc.manifests ?? [];
    if (!Array.isArray(manifests) || manifests.length > 64) fail("more than 64 rotation manifests");
    let lastSeq = 0;
    for (const manifest of manifests) {
      // K signatures of the set in force, and one of every key the rotation adds.
      const signed = jws(manifest, "swarmvm-manifest+jwt");
      const { claims } = signed;
      const next = claims.authority_set ? await authoritySet(claims.authority_set.authorities, claims.authority_set.threshold)
        : fail(`bundle ${claims.seq} rotates nothing`);
      const added = [...next.members].filter(([k]) => !set.members.has(k));
      const signers = await signersOf(signed, new Map([...set.members, ...added]));
      if (claims.aud !== network.network) fail("a rotation manifest is for another network");
      const old = [...signers].filter((k) => set.members.has(k)).length;
      if (old < set.threshold) fail(`a rotation is signed by ${old} member(s) of the set, which needs ${set.threshold}`);
      if (!added.every(([k]) => signers.has(k))) fail("a rotation adds a key that did not sign it");
      if (!isInt(claims.seq) || claims.seq <= lastSeq) fail(`rotation seq ${claims.seq} is not after ${lastSeq}`);
      lastSeq = claims.seq;
      set = next;
    }
    if (typeof doc.head !== "string") fail("the document carries no head to check the proof against");
    const signedHead = jws(doc.head, "swarmvm-head+jwt");
    const head = signedHead.claims;
    const signers = await signersOf(signedHead, set.members);
    if (signers.size < set.threshold) fail(`the head is signed by ${signers.size} member(s), the set needs ${set.threshold}`);
    if (!set.members.has(head.iss)) fail("the head's issuer is not a member of the set");
    if (head.aud !== network.network) fail("the head is for another network");
    if (!isInt(head.iat) || !isInt(head.exp) || head.exp - head.iat > 3600) fail("the head would live longer than a head may");
    if (head.exp <= now) fail("the head expired");
    if (head.iat > now + 60) fail("the head is issued in the future");
    if (!/^[0-9a-f]{64}$/.test(head.state_root)) fail("the head's state root is malformed");
    if (lastSeq > head.seq) fail(`rotation seq ${lastSeq} is after the head's`);
    const tag = Uint8Array.of(TABLES[doc.table][0]);
    const id = enc.encode(doc.id);
    const leaf = doc.value === null ? null : await sha(Uint8Array.of(0), tag, str(id), recordBytes(doc.table, doc.value));
    const got = hex(await provedRoot(unb64(doc.proof), cat(tag, id), leaf));
    if (got !== head.state_root) fail(`the proof leads to root ${got}, not to ${head.state_root}`);
    return { value: doc.value, head };
  } catch (e) {
    throw e instanceof VerificationError ? e : new VerificationError("not a proof document: " + e.message);
  }
}
