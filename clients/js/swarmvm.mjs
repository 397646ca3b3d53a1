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
