// Checks swarmvm.mjs in Node.js: the shared vectors byte for byte, its size minified and
// gzipped, and (given a node's URL and a wallet's PKCS#8 PEM) a contract signed, submitted,
// followed and read back. Prints what it saw as JSON; crates/swarmvm/tests/it/clients.rs
// runs it and asserts on the output.
//
//   node test.mjs VECTORS_JSON TERSER_MODULE [NODE_URL WALLET_PEM NETWORK_JSON]

import fs from "node:fs";
import zlib from "node:zlib";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Client, Wallet, signContract, canonical, verifyAnswer } from "./swarmvm.mjs";

const [vectorsPath, terserPath, url, pem, networkPath] = process.argv.slice(2);
const out = {};
const pkcs8Prefix = Buffer.from("302e020100300506032b657004220420", "hex");

/** A wallet from PKCS#8 DER, through an extractable key's JWK (tests only). */
async function fromPkcs8(der) {
  const key = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
  return Wallet.importJwk(await crypto.subtle.exportKey("jwk", key));
}

const vectors = JSON.parse(fs.readFileSync(vectorsPath, "utf8"));
out.vectors = [];
for (const c of vectors.cases) {
  const wallet = await fromPkcs8(Buffer.concat([pkcs8Prefix, Buffer.from(c.seed, "hex")]));
  const jws = await signContract(wallet, c.actions, { network: c.network, nonce: c.nonce, iat: c.iat });
  out.vectors.push(wallet.id === c.expect.wallet && jws === c.expect.jws);
}
// JSON.stringify's order would put integer-like names first; ours does not.
out.order = canonical({ b: 1, 10: 2, 9: 3, a: { "\u{1F600}": 1, "\uFF61": 2 } });

const source = fs.readFileSync(fileURLToPath(new URL("./swarmvm.mjs", import.meta.url)), "utf8");
const { minify } = await import(pathToFileURL(terserPath).href);
const minified = (await minify(source, { module: true, compress: true, mangle: true })).code;
out.size = { source: source.length, minified: minified.length, gzipped: zlib.gzipSync(minified, { level: 9 }).length };

if (url) {
  const der = Buffer.from(fs.readFileSync(pem, "utf8").replace(/-----[^-]+-----|\s/g, ""), "base64");
  const wallet = await fromPkcs8(der);
  const generated = await Wallet.generate();
  out.generated = { id: generated.id.length, extractable: generated.privateKey.extractable };
  const client = new Client(url);
  const { network } = await client.status();
  out.wallet = wallet.id;
  const nonce = await client.nextNonce(wallet.id);
  out.nonce = nonce;
  const student = { action: "register_student", student: { id: "JS1", name: "Zoë Script", department: "Webs" } };
  out.signed = await signContract(wallet, [student], { network, nonce });
  out.network = network;
  out.publicJwk = wallet.publicJwk;
  out.submitted = await client.submit(out.signed);
  out.outcome = await client.wait(out.submitted.id, { timeoutMs: 60000 });
  out.entry = await client.state("students", "JS1");
  out.absent = await client.state("students", "NOPE");
  out.nextNonce = await client.nextNonce(wallet.id);
  try {
    await client.submit(await signContract(wallet, [student], { network, nonce }));
    out.replay = "accepted";
  } catch (e) {
    out.replay = { status: e.status, reason: e.reason };
  }
  const started = Date.now();
  try {
    await client.wait("00".repeat(32), { timeoutMs: 500, pollMs: 100 });
    out.timeout = "resolved";
  } catch (e) {
    out.timeout = { after: (Date.now() - started) / 1000, message: e.message };
  }

  // Verified reads: present and absent against the network file, then tampered answers.
  const networkFile = JSON.parse(fs.readFileSync(networkPath, "utf8"));
  out.verified = await client.verified("students", "JS1", networkFile);
  out.verifiedAbsent = await client.verified("students", "NOPE", networkFile);
  const doc = await client.proof("students", "JS1");
  const head = JSON.parse(Buffer.from(doc.head.split(".")[1], "base64url"));
  const refusal = (d, net, options) => verifyAnswer(d, net, options).then(() => "accepted", (e) => e.message);
  const proof = Buffer.from(doc.proof, "base64url");
  proof[proof.length >> 1] ^= 1;
  out.refusals = {
    untouched: await refusal(doc, networkFile),
    value: await refusal({ ...doc, value: { ...doc.value, name: "Mallory" } }, networkFile),
    proof: await refusal({ ...doc, proof: proof.toString("base64url") }, networkFile),
    network: await refusal(doc, { ...networkFile, network: "another-network" }),
    expired: await refusal(doc, networkFile, { now: head.exp + 1 }),
    outsiders: await refusal(doc, { ...networkFile, authorities: [(await Wallet.generate()).publicJwk] }),
    asked: await refusal(doc, networkFile, { asked: ["students", "JS2"] }),
  };
}
console.log(JSON.stringify(out));
