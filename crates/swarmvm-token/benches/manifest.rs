//! Manifest verification with K = 1, 3 and 7 signatures (a set of 7 keys, threshold K), Ed25519
//! and RS256, beside K raw signature checks: what a threshold costs a node per bundle.
//!
//! `cargo bench -p swarmvm-token --bench manifest`.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use swarmvm_primitives::Hash32;
use swarmvm_token::{
    AuthoritySet, FileDigest, ManifestContent, Network, sign_manifest, verify_manifest,
};
use swarmvm_wallet::{Algorithm, Wallet};

fn bench(c: &mut Criterion) {
    let files: BTreeMap<String, FileDigest> = ["contracts.jsonl", "registration_tokens.txt"]
        .iter()
        .map(|n| {
            ((*n).to_owned(), FileDigest { size: 1 << 20, sha256: Hash32::digest(n.as_bytes()) })
        })
        .collect();
    for algorithm in [Algorithm::Ed25519, Algorithm::Rsa2048] {
        let keys: Vec<Wallet> =
            (0..7).map(|_| Wallet::generate(algorithm).expect("keygen")).collect();
        let alg = keys[0].kind().jws_algorithm();
        let mut group = c.benchmark_group(format!("manifest/{alg}"));
        group.throughput(Throughput::Elements(1));
        for k in [1usize, 3, 7] {
            let set =
                AuthoritySet::new(keys.iter().map(|w| w.public_key().clone()).collect(), k as u64)
                    .expect("set");
            let network = Network::from_set(set);
            let content = ManifestContent {
                seq: 1,
                parent: None,
                parent_info_hash: None,
                files: &files,
                network: network.id(),
                authority_set: None,
                now: 1_700_000_000,
                rules: swarmvm_primitives::Rules::CURRENT,
            };
            let signers: Vec<&Wallet> = keys.iter().take(k).collect();
            let manifest = sign_manifest(&signers, &content).expect("sign");
            // The same K signatures checked bare, for reference: each signer's compact
            // manifest split into signing input and signature.
            let raw: Vec<(Vec<u8>, Vec<u8>, &Wallet)> = signers
                .iter()
                .map(|w| {
                    let compact = sign_manifest(&[*w], &content).expect("sign");
                    let dot = compact.rfind('.').expect("jws");
                    let sig = base64::Engine::decode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        &compact[dot + 1..],
                    )
                    .expect("b64");
                    (compact.as_bytes()[..dot].to_vec(), sig, *w)
                })
                .collect();
            group.bench_function(format!("{k} raw signatures"), |b| {
                b.iter(|| {
                    for (input, sig, w) in &raw {
                        let key = w.public_key();
                        let ok = match key.rsa_components() {
                            None => key.verify_ed25519_strict(black_box(input), black_box(sig)),
                            Some((n, e)) => aws_lc_rs::signature::RsaPublicKeyComponents { n, e }
                                .verify(
                                    &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                                    black_box(input),
                                    black_box(sig),
                                )
                                .is_ok(),
                        };
                        assert!(ok);
                    }
                });
            });
            group.bench_function(format!("verify, K = {k}"), |b| {
                b.iter(|| {
                    verify_manifest(black_box(&manifest), network.id(), network.genesis())
                        .expect("valid")
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
