//! Hand-made bencode, for hostile torrents in tests (keys in the order given, so tests can
//! write them out of order or twice).

/// Minimal bencode for hand-made torrents. Dict keys are written in the order given.
#[derive(Debug, Clone)]
pub enum B {
    /// An integer.
    I(i128),
    /// A byte string.
    S(Vec<u8>),
    /// A list.
    L(Vec<B>),
    /// A dict, keys in the order given.
    D(Vec<(&'static str, B)>),
}

/// A byte string.
pub fn s(x: impl AsRef<[u8]>) -> B {
    B::S(x.as_ref().to_vec())
}

/// Encodes `b` onto `out`.
pub fn enc(b: &B, out: &mut Vec<u8>) {
    match b {
        B::I(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
        B::S(x) => {
            out.extend_from_slice(format!("{}:", x.len()).as_bytes());
            out.extend_from_slice(x);
        }
        B::L(items) => {
            out.push(b'l');
            items.iter().for_each(|i| enc(i, out));
            out.push(b'e');
        }
        B::D(items) => {
            out.push(b'd');
            for (k, v) in items {
                enc(&s(k), out);
                enc(v, out);
            }
            out.push(b'e');
        }
    }
}

/// A multi-file torrent named `name` with `files`, the given piece length and hash bytes.
pub fn torrent(name: &str, files: B, piece_length: i128, pieces: Vec<u8>) -> Vec<u8> {
    let info = B::D(vec![
        ("files", files),
        ("name", s(name)),
        ("piece length", B::I(piece_length)),
        ("pieces", B::S(pieces)),
    ]);
    let mut out = Vec::new();
    enc(&B::D(vec![("info", info)]), &mut out);
    out
}

/// One entry of a torrent's `files` list.
pub fn file(path: &[&str], length: i128) -> B {
    B::D(vec![("length", B::I(length)), ("path", B::L(path.iter().map(s).collect()))])
}

/// The bytes of `b`.
pub fn encode(b: &B) -> Vec<u8> {
    let mut out = Vec::new();
    enc(b, &mut out);
    out
}
