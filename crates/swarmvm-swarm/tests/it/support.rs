//! Folders of test data and bounded waits.

use std::path::Path;
use std::time::Duration;

/// Writes `n` bytes of deterministic pseudo-random data to `path`.
pub fn random_file(path: &Path, n: usize, seed: u64) {
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(n);
    while data.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(n);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// A bundle-like folder `dir/name` with three files of the given sizes.
pub fn bundle_dir(dir: &Path, name: &str, sizes: [usize; 3]) -> std::path::PathBuf {
    let root = dir.join(name);
    random_file(&root.join("registration_tokens.txt"), sizes[0], 1);
    random_file(&root.join("contracts.jsonl"), sizes[1], 2);
    random_file(&root.join("manifest.jwt"), sizes[2], 3);
    root
}

/// Bytes of every file below `dir`, by relative path.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Every wait in these tests is bounded.
pub const LIMIT: Duration = Duration::from_secs(60);
