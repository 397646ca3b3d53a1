// Types of swarmvm.mjs.

/** The largest nonce, 2^53 - 1. */
export const MAX_NONCE: number;

/** Compact JSON with every object's members sorted by their names' UTF-8 bytes. */
export function canonical(value: unknown): string;

/** A public Ed25519 JWK as `swarmvm wallet public --format jwk` writes it. */
export interface PublicJwk {
  alg: "EdDSA";
  crv: "Ed25519";
  kty: "OKP";
  x: string;
  kid: string;
}

/** An Ed25519 wallet whose private key stays a CryptoKey. */
export class Wallet {
  readonly privateKey: CryptoKey;
  /** The RFC 7638 SHA-256 thumbprint of the public key. */
  readonly id: string;
  readonly publicJwk: PublicJwk;
  /** A new wallet; its private key cannot be exported. */
  static generate(): Promise<Wallet>;
  /** The wallet of a private Ed25519 JWK (`d` and `x`), imported as not extractable. */
  static importJwk(jwk: JsonWebKey): Promise<Wallet>;
}

/** One action of a contract: `action` names a registered operation. */
export type Action = { action: string; [field: string]: unknown };

/** Signs a contract; resolves to its compact JWS. `iat` defaults to now. */
export function signContract(
  wallet: Wallet,
  contract: Action[] | { actions: Action[] },
  options: { network: string; nonce: number; iat?: number },
): Promise<string>;

/** A node answered with an error. */
export class SwarmvmError extends Error {
  readonly status: number;
  readonly reason: string;
}

/** What became of a contract (`GET /v1/contracts/{id}`). */
export interface ContractAnswer {
  id: string;
  state: "pending" | "applied" | "rejected";
  seq?: number | null;
  receipt?: Record<string, unknown> | null;
  reason?: string | null;
}

/** A node's HTTP API. */
export class Client {
  constructor(url: string);
  readonly url: string;
  status(): Promise<Record<string, unknown> & { network: string; last_seq: number; state_root: string }>;
  /** The next nonce of a registered wallet: its last applied nonce + 1. */
  nextNonce(walletId: string): Promise<number>;
  submit(jws: string): Promise<{ id: string; state: "pending" }>;
  /** Resolves once applied or rejected; rejects after `timeoutMs` (default 60000). */
  wait(id: string, options?: { timeoutMs?: number; pollMs?: number }): Promise<ContractAnswer>;
  /** One state entry, or null when absent. */
  state(table: string, id: string): Promise<Record<string, unknown> | null>;
  /** `GET /v1/proof/{table}/{id}`: the proof document, not checked. */
  proof(table: string, id: string): Promise<ProofDocument>;
  /** The entry's value checked with a proof against a head signed by K members of the set
   * `network` puts in force (through the rotations the node sends); null when proved absent.
   * Rejects with a VerificationError when the answer does not hold. */
  verified(table: string, id: string, network: NetworkFile): Promise<Record<string, unknown> | null>;
}

/** A network file (`swarmvm network init`): the root of trust, handed over out of band. */
export interface NetworkFile {
  authorities: Record<string, unknown>[];
  network: string;
  threshold: number;
}

/** A proof document (docs/format.md, "Proofs"). */
export interface ProofDocument {
  head?: string;
  table: string;
  id: string;
  value: Record<string, unknown> | null;
  proof: string;
  root?: string;
  manifests?: string[];
}

/** A proof document that does not hold; the message says why. */
export class VerificationError extends Error {}

/** Checks a proof document against a network file at `now` (Unix seconds; default now), and
 * that it answers `asked` ([table, id]) when given. */
export function verifyAnswer(
  doc: ProofDocument,
  network: NetworkFile,
  options?: { now?: number; asked?: [string, string] },
): Promise<{ value: Record<string, unknown> | null; head: Record<string, unknown> }>;
