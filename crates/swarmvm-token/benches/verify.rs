//! EdDSA token verification against raw Ed25519 signature verification, in one run.
//!
//! `cargo bench -p swarmvm-token --bench verify`. The token path must keep at least 85% of
//! the raw rate of the signature check it makes: parsing, strict JSON, key lookup and claim
//! checks cost little next to the signature. Ed25519 is checked strictly (ed25519-dalek's
//! `verify_strict`); aws-lc-rs's plain Ed25519 check is measured beside it for reference.
//! RS256 is measured the same way.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;

use aws_lc_rs::signature::{
    ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use swarmvm_token::{
    IssueTime, Signer, TimeCheck, TrustStore, issue_operations, verify_registration,
};
use swarmvm_vm::HANDLER_NAMES;
use swarmvm_wallet::{Algorithm, Wallet};

fn note_token(authority: &Wallet) -> String {
    let ops: BTreeMap<String, swarmvm_token::Operation> =
        HANDLER_NAMES.iter().map(|n| ((*n).to_owned(), (*n).into())).collect();
    issue_operations(&Signer::Wallet(authority), &ops, HANDLER_NAMES, IssueTime::system_now())
        .expect("issue")
}

fn split(token: &str) -> (&[u8], Vec<u8>) {
    let dot = token.rfind('.').expect("compact jws");
    let sig = URL_SAFE_NO_PAD.decode(&token[dot + 1..]).expect("base64url");
    (&token.as_bytes()[..dot], sig)
}

fn bench(c: &mut Criterion) {
    let time = TimeCheck::system_now();
    for algorithm in [Algorithm::Ed25519, Algorithm::Rsa2048] {
        let authority = Wallet::generate(algorithm).expect("keygen");
        let token = note_token(&authority);
        let trust = TrustStore::with_keys([authority.public_key()]);
        let (input, sig) = split(&token);
        let mut group = c.benchmark_group(format!("verify/{}", authority.kind().jws_algorithm()));
        group.throughput(Throughput::Elements(1));
        if algorithm == Algorithm::Ed25519 {
            group.bench_function("raw signature, aws-lc-rs (not strict)", |b| {
                let x = authority.public_key().ed25519_bytes().expect("ed25519");
                let key = UnparsedPublicKey::new(&ED25519, x);
                b.iter(|| key.verify(black_box(input), black_box(&sig)).expect("valid"));
            });
        }
        if algorithm == Algorithm::Ed25519 {
            // Rules 4's contract signatures: ZIP-215 alone, and in batches of 64.
            let x = *authority.public_key().ed25519_bytes().expect("ed25519");
            let signature: [u8; 64] = sig.as_slice().try_into().expect("64 bytes");
            let check = swarmvm_token::zip215::Ed25519Check::new(x, signature, input.to_vec());
            group.bench_function("raw signature, ZIP-215 alone", |b| {
                b.iter(|| assert!(black_box(&check).verify_one()));
            });
            let batch: Vec<&swarmvm_token::zip215::Ed25519Check> = vec![&check; 64];
            group.throughput(Throughput::Elements(64));
            group.bench_function("raw signatures, ZIP-215 in a batch of 64", |b| {
                b.iter(|| assert!(swarmvm_token::zip215::verify_batch(black_box(&batch))[63]));
            });
            group.throughput(Throughput::Elements(1));
        }
        group.bench_function("raw signature", |b| match algorithm {
            Algorithm::Ed25519 => {
                let key = authority.public_key();
                b.iter(|| assert!(key.verify_ed25519_strict(black_box(input), black_box(&sig))));
            }
            _ => {
                let (n, e) = authority.public_key().rsa_components().expect("rsa");
                let key = RsaPublicKeyComponents { n, e };
                b.iter(|| {
                    key.verify(&RSA_PKCS1_2048_8192_SHA256, black_box(input), black_box(&sig))
                        .expect("valid")
                });
            }
        });
        group.bench_function("registration token", |b| {
            b.iter(|| {
                verify_registration(black_box(&token), &trust, time, HANDLER_NAMES).expect("valid")
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
