// Checks a proof document (GET /v1/proof/{table}/{id}) in the browser, from docs/format.md
// ("Proofs") alone: the value rebuilt into the entry's bytes, the proof hashed up to a root
// with WebCrypto's SHA-256, and the head's signatures verified with WebCrypto against an
// authority set. Exposes globalThis.swarmvmProof = { verifyAnswer }.
"use strict";

(() => {
  const enc = new TextEncoder();
  const TABLES = {
    operations: [1, null],
    wallets: [2, [["label", "str"], ["key", "str"]]],
    nonces: [3, [["last", "u64"]]],
    students: [4, [["name", "str"], ["department", "str"]]],
    courses: [5, [["name", "str"], ["department", "str"]]],
    enrollments: [6, []],
    proposals: [7, [["description", "str"], ["votes", "u64"]]],
    votes: [8, []],
    nfts: [9, [["name", "str"], ["metadata", "str"], ["owner", "str"]]],
    wasm: [10, [["value", "shown"]]],
    authorities: [11, [["set", "str"]]],
    revocations: [12, []],
    tokens: [13, []],
  };
  const HEAD_TYP = "swarmvm-head+jwt";
  const LEEWAY = 60;
  const MAX_LIFETIME = 3600;

  class Refused extends Error {}

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  async function sha256(...parts) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
  }
  function hex(bytes) { return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""); }
  function fromHex(text) {
    if (!/^([0-9a-f]{2})*$/.test(text)) throw new Refused("not lowercase hex");
    return new Uint8Array(text.match(/../g)?.map((b) => parseInt(b, 16)) ?? []);
  }
  function fromB64url(text) {
    if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text)) throw new Refused("not base64url");
    const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }
  function u32(n) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n, true); return b; }
  function u64(n) {
    if (!Number.isSafeInteger(n) || n < 0) throw new Refused("a number field is not a u64 JavaScript can hold");
    const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n), true); return b;
  }
  function str(bytes) { return concat(u32(bytes.length), bytes); }

  /** The record's bytes from a document's `value`: exactly its table's fields. */
  function recordBytes(table, value) {
    if (!value || typeof value !== "object" || Array.isArray(value)) throw new Refused("a value is a JSON object");
    let fields = TABLES[table][1];
    if (fields === null) {
      fields = value.handler === "wasm"
        ? [["handler", "str"], ["module", "hash"], ["fuel", "u64"]]
        : [["handler", "str"]];
    }
    const names = fields.map(([n]) => n).sort();
    if (JSON.stringify(Object.keys(value).sort()) !== JSON.stringify(names)) {
      throw new Refused("the value's fields are not those of " + table);
    }
    return concat(...fields.map(([name, kind]) => {
      const v = value[name];
      if (kind === "u64") return u64(v);
      if (typeof v !== "string") throw new Refused(`'${name}' is not a string`);
      if (kind === "hash") {
        const h = fromHex(v);
        if (h.length !== 32) throw new Refused("a module hash is not 32 bytes");
        return h;
      }
      if (kind === "shown" && v.startsWith("hex:")) return str(fromHex(v.slice(4)));
      return str(enc.encode(v));
    }));
  }

  async function nodeHash(segment, leaf, children) {
    return sha256(Uint8Array.of(1), u32(segment.length), segment,
      leaf ? concat(Uint8Array.of(1), leaf) : Uint8Array.of(0),
      children ? concat(Uint8Array.of(1), children) : Uint8Array.of(0));
  }

  /** The root that `proof` and the claim (`leaf`, or null for absent) hash to. */
  async function proofRoot(proof, key, leaf) {
    if (proof.length > 262144) throw new Refused("the proof is over 262144 bytes");
    if (proof[0] !== 1) throw new Refused("not a version 1 proof");
    let pos = 1;
    const take = (n) => {
      if (pos + n > proof.length) throw new Refused("truncated proof");
      pos += n;
      return proof.subarray(pos - n, pos);
    };
    const nodes = [];
    while (pos < proof.length) {
      if (nodes.length > key.length) throw new Refused("more nodes than the key has bytes");
      const len = take(2); const segment = take(len[0] | (len[1] << 8));
      const flag = take(1)[0];
      const value = flag === 0 ? null : flag === 1 ? take(32) : flag === 2 ? "proved" : undefined;
      if (value === undefined) throw new Refused("bad value flag");
      const step = take(1)[0];
      if (step === 0) {
        const has = take(1)[0];
        if (has > 1) throw new Refused("bad children flag");
        nodes.push({ segment, value, last: true, children: has ? take(32) : null });
        if (pos !== proof.length) throw new Refused("bytes after the last node");
      } else if (step === 1) {
        const splits = [];
        for (let n = take(1)[0]; n > 0; n--) {
          const depth = take(1)[0];
          if (depth > 7 || (splits.length && depth <= splits[splits.length - 1][0])) {
            throw new Refused("split depths are not increasing bits 0 to 7");
          }
          splits.push([depth, take(32)]);
        }
        nodes.push({ segment, value, last: false, splits });
      } else {
        throw new Refused("bad step flag");
      }
    }
    if (!nodes.length) {
      if (leaf) throw new Refused("the proof shows an empty state");
      return sha256(new Uint8Array(0));
    }
    if (!nodes[nodes.length - 1].last) throw new Refused("truncated proof");
    let rest = key; const ways = []; let present = false; let splits = [];
    const startsWith = (a, b) => b.length <= a.length && b.every((x, i) => a[i] === x);
    for (const [i, n] of nodes.entries()) {
      const last = i === nodes.length - 1;
      if (i === 0 && n.segment.length) throw new Refused("the root has a segment");
      if (i > 0) {
        if (!n.segment.length) throw new Refused("an empty segment below the root");
        const b = ways[ways.length - 1];
        if (splits.some(([d]) => (n.segment[0] ^ b) & (0x80 >> d))) throw new Refused("a child that is not where its first byte puts it");
      }
      if (!startsWith(rest, n.segment)) {
        if (!last || n.value === "proved") throw new Refused("the key leaves the trie above the last node");
        break;
      }
      rest = rest.subarray(n.segment.length);
      if (!n.last) {
        if (!rest.length || n.value === "proved") throw new Refused("it goes down below the end of the key or the entry");
        ways.push(rest[0]);
        splits = n.splits;
      } else if (!rest.length) {
        if (n.value === "proved") present = true;
        else if (n.value !== null) throw new Refused("the proof shows another entry at this key");
      } else if (n.value === "proved" || n.children !== null) {
        throw new Refused("the proof stops where the key goes on");
      }
    }
    if (present !== Boolean(leaf)) throw new Refused("the proof shows the entry " + (present ? "present" : "absent"));
    let below = null;
    for (let i = nodes.length - 1; i >= 0; i--) {
      const n = nodes[i];
      let children = n.children;
      if (!n.last) {
        children = below;
        for (const [depth, sibling] of [...n.splits].reverse()) {
          children = (ways[i] & (0x80 >> depth))
            ? await sha256(Uint8Array.of(2, depth), sibling, children)
            : await sha256(Uint8Array.of(2, depth), children, sibling);
        }
      }
      below = await nodeHash(n.segment, n.value === "proved" ? leaf : n.value, children);
    }
    return below;
  }

  const ALGS = {
    EdDSA: { key: { name: "Ed25519" }, verify: { name: "Ed25519" } },
    ES256: { key: { name: "ECDSA", namedCurve: "P-256" }, verify: { name: "ECDSA", hash: "SHA-256" } },
    RS256: { key: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, verify: { name: "RSASSA-PKCS1-v1_5" } },
  };

  /** The head's claims once K members of `set` signed it, or `{unsupported, stateRoot}` when this
   * browser cannot check a member's algorithm. */
  async function verifyHead(text, set, now) {
    let parts;
    if (text.startsWith("{")) {
      const json = JSON.parse(text);
      parts = json.signatures.map((s) => [s.protected, json.payload, s.signature]);
    } else {
      const p = text.split(".");
      if (p.length !== 3) throw new Refused("the head is not a JWS");
      parts = [p];
    }
    const members = new Map(set.authorities.map((k) => [k.kid, k]));
    const signers = new Set();
    for (const [protectedB64, payload, signature] of parts) {
      const header = JSON.parse(new TextDecoder().decode(fromB64url(protectedB64)));
      if (header.typ !== HEAD_TYP) throw new Refused("not a head");
      const jwk = members.get(header.kid);
      if (!jwk) throw new Refused(`signer '${header.kid}' is not a member of the authority set`);
      const alg = ALGS[header.alg];
      if (!alg || (jwk.alg && jwk.alg !== header.alg && !(jwk.alg === "Ed25519" && header.alg === "EdDSA"))) {
        throw new Refused("a signature's algorithm is not its key's");
      }
      let key;
      try {
        const { kid, alg: _a, use: _u, key_ops: _k, ...material } = jwk;
        key = await crypto.subtle.importKey("jwk", material, alg.key, false, ["verify"]);
      } catch (e) {
        if (header.alg === "EdDSA") {
          const claims = JSON.parse(new TextDecoder().decode(fromB64url(payload)));
          return { unsupported: "Ed25519", stateRoot: claims.state_root };
        }
        throw new Refused("a member's key cannot be used: " + e.message);
      }
      const ok = await crypto.subtle.verify(alg.verify, key, fromB64url(signature),
        enc.encode(protectedB64 + "." + payload));
      if (!ok) throw new Refused(`the signature of '${header.kid}' does not verify`);
      signers.add(header.kid);
    }
    if (signers.size < set.threshold) {
      throw new Refused(`signed by ${signers.size} member(s), the set needs ${set.threshold}`);
    }
    const claims = JSON.parse(new TextDecoder().decode(fromB64url(parts[0][1])));
    if (!members.has(claims.iss)) throw new Refused("the head's issuer is not a member of the authority set");
    if (claims.aud !== set.network) throw new Refused("the head is for another network");
    if (!(claims.exp - claims.iat <= MAX_LIFETIME)) throw new Refused("the head would live longer than a head may");
    if (!(claims.exp > now)) throw new Refused("the head expired");
    if (claims.iat > now + LEEWAY) throw new Refused("the head is issued in the future");
    if (!/^[0-9a-f]{64}$/.test(claims.state_root)) throw new Refused("the head's state root is malformed");
    return { seq: claims.seq, stateRoot: claims.state_root, exp: claims.exp, signers: [...signers].sort() };
  }

  /**
   * Checks a proof document against `set` (GET /v1/authorities: network, threshold,
   * authorities) at `now` (Unix seconds), and that it answers `asked` ({table, id}) when
   * given. Resolves to {ok: true, present, value, root, head} where
   * head is the verified head's claims, null when the document carries none (the proof then
   * holds against its `root` only), or {unsupported} when this browser cannot verify its
   * signatures; or to {ok: false, reason}.
   */
  async function verifyAnswer(doc, set, now, asked) {
    try {
      if (typeof doc.table !== "string" || !Object.hasOwn(TABLES, doc.table)) throw new Refused("no such state table");
      if (typeof doc.id !== "string") throw new Refused("the document has no id");
      if (asked && (doc.table !== asked.table || doc.id !== asked.id)) {
        throw new Refused("the node answered for another entry than the one asked");
      }
      const tag = Uint8Array.of(TABLES[doc.table][0]);
      const id = enc.encode(doc.id);
      const key = concat(tag, id);
      const leaf = doc.value === null ? null
        : await sha256(Uint8Array.of(0), tag, str(id), recordBytes(doc.table, doc.value));
      let head = null; let root;
      if (typeof doc.head === "string") {
        // Against the set in force that `set` gives; `swarmvm proof verify --network` follows
        // the document's rotations from the network file instead.
        head = await verifyHead(doc.head, set, now);
        root = head.stateRoot;
      } else {
        root = doc.root;
      }
      const got = hex(await proofRoot(fromB64url(doc.proof), key, leaf));
      if (got !== root) throw new Refused(`the proof leads to root ${got}, not to ${root}`);
      return { ok: true, present: leaf !== null, value: doc.value, root, head };
    } catch (e) {
      return { ok: false, reason: e instanceof Refused ? e.message : "not a proof document: " + e.message };
    }
  }

  globalThis.swarmvmProof = { verifyAnswer };
})();
