//! The fuzz targets on their seeds and on the checked-in corpus (`fuzz/corpus/<target>/`),
//! so every test run exercises what fuzzing found. With `SWARMVM_WRITE_CORPUS=1` the seeds
//! are (re)written into the corpus first (`make fuzz-corpus`).

use std::path::PathBuf;

use swarmvm_test_support::fuzz::{TARGETS, seeds};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

#[test]
fn fuzz_targets_hold_on_seeds_and_the_checked_in_corpus() {
    let seeds = seeds();
    if std::env::var_os("SWARMVM_WRITE_CORPUS").is_some() {
        for (i, seed) in seeds.iter().enumerate() {
            let dir = corpus_dir(seed.target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{i:02}")), &seed.bytes).unwrap();
        }
    }
    let mut replayed = 0;
    for (name, run) in TARGETS {
        let mine: Vec<_> = seeds.iter().filter(|s| s.target == name).collect();
        assert!(mine.iter().any(|s| s.accepted), "{name} has no seed it accepts");
        for (i, seed) in mine.iter().enumerate() {
            assert_eq!(run(&seed.bytes), seed.accepted, "{name} seed {i}");
        }
        let dir = corpus_dir(name);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; the corpus is checked in", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        for f in files {
            let _accepted = run(&std::fs::read(&f).unwrap());
            replayed += 1;
        }
    }
    assert!(replayed >= TARGETS.len(), "replayed {replayed} corpus files");
}
