//! Torrent files (BEP 3 v1 metainfo) and magnet links: made deterministically, read
//! defensively.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use aws_lc_rs::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY};
use url::Url;

use crate::error::{Result, SwarmError};

/// Smallest piece length accepted or made (one 16 KiB block).
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;
/// Largest piece length accepted or made.
pub const MAX_PIECE_LENGTH: u32 = 64 * 1024 * 1024;
/// Most pieces a torrent may have.
pub const MAX_PIECES: u64 = 1 << 22;
/// Largest torrent file read.
pub const MAX_TORRENT_FILE: usize = 16 * 1024 * 1024;
/// Most files a torrent may list. A transfer keeps only a few files open at a time, but
/// each file is created on disk when the transfer starts.
pub const MAX_FILES: usize = 10_000;
/// Longest magnet link read or written, before and after normalization.
pub const MAX_MAGNET_LEN: usize = 8 * 1024;
/// Most trackers kept from a magnet link.
pub const MAX_MAGNET_TRACKERS: usize = 64;

/// A BitTorrent v1 info-hash: SHA-1 of the bencoded `info` dictionary.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InfoHash(pub [u8; 20]);

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}

impl FromStr for InfoHash {
    type Err = SwarmError;

    /// 40 hex characters, or 32 base32 characters (both magnet forms), in either case.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || SwarmError::BadMagnet(format!("'{}' is not an info-hash", short(s)));
        let bytes = match s.len() {
            40 => data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()),
            32 => data_encoding::BASE32.decode(s.to_ascii_uppercase().as_bytes()),
            _ => return Err(bad()),
        };
        let bytes = bytes.map_err(|_| bad())?;
        Ok(Self(bytes.try_into().map_err(|_| bad())?))
    }
}

use swarmvm_primitives::text::shown as short;

/// A magnet link reduced to what we use: the v1 info-hash, a display name, trackers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagnetLink {
    /// The info-hash (`xt=urn:btih:`).
    pub info_hash: InfoHash,
    /// The display name (`dn`), if any.
    pub name: Option<String>,
    /// Trackers (`tr`).
    pub trackers: Vec<Url>,
}

impl MagnetLink {
    /// Parses a `magnet:?xt=urn:btih:...` link. Members other than `xt`, `dn` and `tr` are
    /// ignored (`so` file selections too: a bundle is fetched whole).
    pub fn parse(link: &str) -> Result<Self> {
        let bad = |why: &str| SwarmError::BadMagnet(format!("{why}: {}", short(link)));
        if link.len() > MAX_MAGNET_LEN {
            return Err(SwarmError::BadMagnet("magnet link longer than 8 KiB".into()));
        }
        let url = Url::parse(link).map_err(|_| bad("not a url"))?;
        if url.scheme() != "magnet" {
            return Err(bad("not a magnet: link"));
        }
        let (mut hash, mut name, mut trackers) = (None, None, Vec::new());
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "xt" => {
                    if let Some(h) = value.strip_prefix("urn:btih:") {
                        hash = Some(h.parse::<InfoHash>()?);
                    }
                }
                "dn" if !value.is_empty() => name = Some(value.chars().take(255).collect()),
                "tr" => {
                    let t = Url::parse(&value).map_err(|_| bad("a tracker is not a url"))?;
                    check_tracker(&t).map_err(|why| bad(&why))?;
                    if trackers.len() < MAX_MAGNET_TRACKERS {
                        trackers.push(t);
                    }
                }
                _ => {}
            }
        }
        let info_hash = hash.ok_or_else(|| bad("no xt=urn:btih: info-hash (BitTorrent v1)"))?;
        let magnet = Self { info_hash, name, trackers };
        // Percent-encoding can triple a value: the printed form must parse again too (found
        // by the `magnet_parse` fuzz target).
        if magnet.to_string().len() > MAX_MAGNET_LEN {
            return Err(SwarmError::BadMagnet(
                "magnet link longer than 8 KiB once normalized".into(),
            ));
        }
        Ok(magnet)
    }
}

/// Trackers are contacted at whatever address they name, so only the BitTorrent tracker
/// protocols are accepted: `http`, `https` (BEP 3) and `udp` (BEP 15), without credentials.
/// Any other scheme (`file`, `gopher`, `ftp`, ...) is refused rather than left to the engine.
pub fn check_tracker(url: &Url) -> std::result::Result<(), String> {
    match url.scheme() {
        "http" | "https" | "udp" => {}
        other => {
            return Err(format!("tracker scheme '{}' is not http, https or udp", short(other)));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a tracker url carries a user name or password".into());
    }
    if url.host().is_none() {
        return Err("a tracker url has no host".into());
    }
    Ok(())
}

/// A magnet link value, `application/x-www-form-urlencoded`.
fn percent_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl fmt::Display for MagnetLink {
    /// `magnet:?xt=urn:btih:<hex>&dn=<name>&tr=<tracker>...`, values percent-encoded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "magnet:?xt=urn:btih:{}", self.info_hash)?;
        if let Some(name) = &self.name {
            write!(f, "&dn={}", percent_encode(name))?;
        }
        for t in &self.trackers {
            write!(f, "&tr={}", percent_encode(t.as_str()))?;
        }
        Ok(())
    }
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentEntry {
    /// Its path inside the torrent's folder.
    pub path: PathBuf,
    /// Its length in bytes.
    pub length: u64,
}

/// A parsed, checked `.torrent` file.
#[derive(Clone)]
pub struct TorrentFile {
    bytes: Vec<u8>,
    info_hash: InfoHash,
    name: String,
    files: Vec<TorrentEntry>,
    piece_length: u32,
    trackers: Vec<Url>,
    multi_file: bool,
    pieces: Vec<u8>,
}

impl fmt::Debug for TorrentFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TorrentFile")
            .field("info_hash", &self.info_hash)
            .field("name", &self.name)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

fn safe_component(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s != crate::partial::PARTIAL_DIR
        && s.len() <= 255
        && !s.contains(['/', '\\', '\0'])
        && !swarmvm_primitives::text::has_hidden(s);
    ok.then(|| s.to_owned())
}

impl TorrentFile {
    /// Reads a `.torrent`: librqbit's parser, then our limits: a safe UTF-8 name and paths
    /// (no `..`, separators or control characters), piece length from 16 KiB to 64 MiB, at
    /// most 4 Mi pieces and exactly 20 bytes of hash per piece, at most 100,000 files.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: String| SwarmError::BadTorrent(why);
        if bytes.len() > MAX_TORRENT_FILE {
            return Err(bad(format!("larger than {MAX_TORRENT_FILE} bytes")));
        }
        bencode::check(bytes).map_err(|why| bad(format!("not a torrent file: {why}")))?;
        let parsed = librqbit::torrent_from_bytes(bytes)
            .map_err(|e| bad(format!("not a torrent file: {e}")))?;
        let info = &parsed.info.data;
        if !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&info.piece_length) {
            return Err(bad(format!(
                "piece length {} is outside {MIN_PIECE_LENGTH}..={MAX_PIECE_LENGTH}",
                info.piece_length
            )));
        }
        let name = info
            .name
            .as_ref()
            .and_then(|n| safe_component(n.as_ref()))
            .ok_or_else(|| bad("its name is missing or not a safe folder name".into()))?;
        let (files, multi_file) = match (&info.files, info.length) {
            (Some(list), None) => {
                if list.is_empty() || list.len() > MAX_FILES {
                    return Err(bad(format!("it lists {} files", list.len())));
                }
                let mut files = Vec::with_capacity(list.len());
                for f in list {
                    let mut path = PathBuf::new();
                    for part in &f.path {
                        let part = safe_component(part.as_ref()).ok_or_else(|| {
                            bad("a file path has an unsafe part ('..', a separator, a control character)".into())
                        })?;
                        path.push(part);
                    }
                    if path.as_os_str().is_empty() {
                        return Err(bad("a file has an empty path".into()));
                    }
                    files.push(TorrentEntry { path, length: f.length });
                }
                (files, true)
            }
            (None, Some(length)) => {
                (vec![TorrentEntry { path: PathBuf::from(&name), length }], false)
            }
            _ => return Err(bad("it has neither 'files' nor 'length'".into())),
        };
        let total = files
            .iter()
            .try_fold(0u64, |acc, f| acc.checked_add(f.length))
            .ok_or_else(|| bad("file lengths overflow".into()))?;
        if total == 0 {
            return Err(bad("it holds no data".into()));
        }
        let pieces = total.div_ceil(u64::from(info.piece_length));
        if pieces > MAX_PIECES {
            return Err(bad(format!("{pieces} pieces; at most {MAX_PIECES} are accepted")));
        }
        if info.pieces.as_ref().len() as u64 != pieces * 20 {
            return Err(bad(format!(
                "{pieces} pieces need {} bytes of hashes, found {}",
                pieces * 20,
                info.pieces.as_ref().len()
            )));
        }
        // librqbit's own checks (duplicate files, and what it needs to run the torrent).
        info.clone().validate().map_err(|e| bad(format!("rejected by the engine: {e}")))?;
        let mut trackers = Vec::new();
        // An empty `announce` stands for "none" (librqbit writes one for magnet metadata).
        for t in parsed.iter_announce().filter(|t| !t.as_ref().is_empty()) {
            let url = std::str::from_utf8(t.as_ref())
                .ok()
                .and_then(|s| Url::parse(s).ok())
                .ok_or_else(|| bad("a tracker is not a url".into()))?;
            check_tracker(&url).map_err(bad)?;
            if !trackers.contains(&url) {
                trackers.push(url);
            }
        }
        Ok(Self {
            bytes: bytes.to_vec(),
            info_hash: InfoHash(parsed.info_hash.0),
            name,
            files,
            piece_length: info.piece_length,
            trackers,
            multi_file,
            pieces: info.pieces.as_ref().to_vec(),
        })
    }

    /// Reads a `.torrent` file from disk.
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| SwarmError::io("cannot read", path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_TORRENT_FILE as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| SwarmError::io("cannot read", path, e))?;
        Self::from_bytes(&bytes).map_err(|e| e.in_file(path))
    }

    /// Makes a v1 torrent of the folder `dir`: every regular file below it, in byte order of
    /// their paths; the torrent's name is the folder's name; `trackers` go to `announce` and
    /// `announce-list` (one tier each, in order). The piece length is chosen from the total
    /// size (see [`auto_piece_length`]) unless given.
    pub fn create(dir: &Path, trackers: &[Url], piece_length: Option<u32>) -> Result<Self> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| safe_component(n.as_bytes()))
            .ok_or_else(|| {
                SwarmError::BadInput(format!("{} has no usable folder name", dir.display()))
            })?;
        let mut files = Vec::new();
        collect_files(dir, Path::new(""), &mut files, 0)?;
        files.sort_by(|a, b| {
            a.0.as_os_str().as_encoded_bytes().cmp(b.0.as_os_str().as_encoded_bytes())
        });
        let total: u64 = files.iter().map(|f| f.1).sum();
        if total == 0 {
            return Err(SwarmError::BadInput(format!("{} holds no data to share", dir.display())));
        }
        let piece_length = piece_length.unwrap_or_else(|| auto_piece_length(total));
        if !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&piece_length)
            || !piece_length.is_power_of_two()
        {
            return Err(SwarmError::BadInput(format!(
                "piece length {piece_length} must be a power of two from 16 KiB to 64 MiB"
            )));
        }
        let mut pieces = Vec::new();
        hash_pieces(dir, &files, piece_length, |_, hash| {
            pieces.extend_from_slice(&hash);
            true
        })?;
        let mut info = Vec::new();
        bencode::dict(&mut info, |d| {
            d.key("files");
            bencode::list(d.out(), |l| {
                for (path, length) in &files {
                    bencode::dict(l, |f| {
                        f.key("length");
                        bencode::int(f.out(), *length);
                        f.key("path");
                        bencode::list(f.out(), |p| {
                            for c in path.components() {
                                bencode::bytes(p, c.as_os_str().as_encoded_bytes());
                            }
                        });
                    });
                }
            });
            d.key("name");
            bencode::bytes(d.out(), name.as_bytes());
            d.key("piece length");
            bencode::int(d.out(), u64::from(piece_length));
            d.key("pieces");
            bencode::bytes(d.out(), &pieces);
        });
        let mut torrent = Vec::new();
        bencode::dict(&mut torrent, |d| {
            if let Some(first) = trackers.first() {
                d.key("announce");
                bencode::bytes(d.out(), first.as_str().as_bytes());
                d.key("announce-list");
                bencode::list(d.out(), |tiers| {
                    for t in trackers {
                        bencode::list(tiers, |tier| bencode::bytes(tier, t.as_str().as_bytes()));
                    }
                });
            }
            d.key("created by");
            bencode::bytes(d.out(), concat!("swarmvm ", env!("CARGO_PKG_VERSION")).as_bytes());
            d.key("info");
            d.out().extend_from_slice(&info);
        });
        Self::from_bytes(&torrent)
    }

    /// The `.torrent` bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The torrent's name: the folder (or single file) it unpacks to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its files, with paths inside the torrent's folder.
    pub fn files(&self) -> &[TorrentEntry] {
        &self.files
    }

    /// True for a multi-file torrent (a folder); false for a single file.
    pub fn is_multi_file(&self) -> bool {
        self.multi_file
    }

    /// Total bytes.
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }

    /// Bytes per piece.
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// The trackers it announces to.
    pub fn trackers(&self) -> &[Url] {
        &self.trackers
    }

    /// Where the torrent's data lives when its folder (or file) is placed in `parent`.
    pub fn path_in(&self, parent: &Path) -> PathBuf {
        parent.join(&self.name)
    }

    /// The folder the engine writes files relative to, for data placed in `parent`: the
    /// torrent's own folder for a multi-file torrent, `parent` for a single file.
    pub(crate) fn storage_root(&self, parent: &Path) -> PathBuf {
        if self.multi_file { parent.join(&self.name) } else { parent.to_path_buf() }
    }

    /// Checks, without changing anything, whether `root` (the folder the files are relative
    /// to) holds exactly this torrent's data: every file present with its length, every piece
    /// hashing right. Returns why not.
    pub fn check_data(&self, root: &Path) -> Result<(), String> {
        let mut files = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let path = root.join(&f.path);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && m.len() == f.length => {
                    files.push((f.path.clone(), f.length))
                }
                Ok(m) if m.is_file() => {
                    return Err(format!(
                        "{} has {} bytes, the torrent says {}",
                        f.path.display(),
                        m.len(),
                        f.length
                    ));
                }
                Ok(_) => return Err(format!("{} is not a file", f.path.display())),
                Err(_) => return Err(format!("{} is missing", f.path.display())),
            }
        }
        let mut bad_piece = None;
        hash_pieces(root, &files, self.piece_length, |index, hash| {
            if self.pieces.get(index * 20..index * 20 + 20) == Some(&hash[..]) {
                true
            } else {
                bad_piece = Some(index);
                false
            }
        })
        .map_err(|e| e.to_string())?;
        match bad_piece {
            Some(i) => Err(format!("piece {i} does not match its hash")),
            None => Ok(()),
        }
    }

    /// Its magnet link (info-hash, name, trackers): as many of the trackers, in order, as
    /// keep the link within the 8 KiB that [`MagnetLink::parse`] accepts.
    pub fn magnet(&self) -> MagnetLink {
        let mut magnet = MagnetLink {
            info_hash: self.info_hash,
            name: Some(self.name.clone()),
            trackers: vec![],
        };
        let mut len = magnet.to_string().len();
        for t in self.trackers.iter().take(MAX_MAGNET_TRACKERS) {
            len += "&tr=".len() + percent_encode(t.as_str()).len();
            if len > MAX_MAGNET_LEN {
                break;
            }
            magnet.trackers.push(t.clone());
        }
        magnet
    }
}

/// A power of two giving about 256 pieces, from 16 KiB to 16 MiB: few pieces for a small
/// bundle, enough for peers to trade pieces of a large one.
pub fn auto_piece_length(total: u64) -> u32 {
    let target = total.div_ceil(256).next_power_of_two();
    u32::try_from(target.clamp(u64::from(MIN_PIECE_LENGTH), 16 * 1024 * 1024))
        .unwrap_or(MIN_PIECE_LENGTH)
}

fn collect_files(
    root: &Path,
    rel: &Path,
    out: &mut Vec<(PathBuf, u64)>,
    depth: usize,
) -> Result<()> {
    if depth > 32 {
        return Err(SwarmError::BadInput(format!("{} nests folders too deep", root.display())));
    }
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|e| SwarmError::io("cannot read", &dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SwarmError::io("cannot read", &dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str().and_then(|n| safe_component(n.as_bytes())) else {
            return Err(SwarmError::BadInput(format!(
                "{} has a name that cannot go in a torrent",
                entry.path().display()
            )));
        };
        let rel_path = rel.join(&name);
        let kind =
            entry.file_type().map_err(|e| SwarmError::io("cannot read", &entry.path(), e))?;
        if kind.is_dir() {
            collect_files(root, &rel_path, out, depth + 1)?;
        } else if kind.is_file() {
            let len = entry
                .metadata()
                .map_err(|e| SwarmError::io("cannot read", &entry.path(), e))?
                .len();
            out.push((rel_path, len));
            if out.len() > MAX_FILES {
                return Err(SwarmError::BadInput(format!(
                    "{} holds more than {MAX_FILES} files",
                    root.display()
                )));
            }
        }
        // Symlinks and special files are left out: a torrent carries regular files only.
    }
    Ok(())
}

/// Hashes `files` (relative to `root`, in order) piece by piece, calling `on_piece(index,
/// sha1)` for each; stops early when it returns false.
fn hash_pieces(
    root: &Path,
    files: &[(PathBuf, u64)],
    piece_length: u32,
    mut on_piece: impl FnMut(usize, [u8; 20]) -> bool,
) -> Result<()> {
    let piece_length = piece_length as usize;
    let mut buf = vec![0u8; piece_length];
    let mut filled = 0;
    let mut index = 0;
    for (rel, expected) in files {
        let path = root.join(rel);
        let mut file =
            std::fs::File::open(&path).map_err(|e| SwarmError::io("cannot read", &path, e))?;
        let mut read_total = 0u64;
        loop {
            let n = file
                .read(&mut buf[filled..])
                .map_err(|e| SwarmError::io("cannot read", &path, e))?;
            if n == 0 {
                break;
            }
            filled += n;
            read_total += n as u64;
            if filled == piece_length {
                if !on_piece(index, sha1(&buf)) {
                    return Ok(());
                }
                index += 1;
                filled = 0;
            }
        }
        if read_total != *expected {
            return Err(SwarmError::BadInput(format!(
                "{} changed while it was being hashed",
                path.display()
            )));
        }
    }
    if filled > 0 {
        on_piece(index, sha1(&buf[..filled]));
    }
    Ok(())
}

/// SHA-1, which BitTorrent v1 piece hashes require.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut ctx = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(data);
    let mut out = [0u8; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Just enough bencode (BEP 3): a structural check of untrusted metainfo, and a writer
/// (keys must be given in sorted order).
mod bencode {
    /// Deepest nesting a torrent may have (real ones use 4 or 5 levels).
    const MAX_DEPTH: usize = 64;

    /// Checks that `input` is exactly one bencoded value in its canonical form (BEP 3),
    /// without building it, before librqbit's parser sees the bytes. Canonical means: dict
    /// keys are strings in strictly ascending byte order (so never twice), integers and string
    /// lengths have no leading zeros and no `-0`, and nothing follows the value. Two parsers
    /// then cannot read the same bytes differently (a duplicated `name` or `length` read
    /// first-wins by one and last-wins by another), and the info-hash covers exactly what
    /// was checked.
    ///
    /// It also keeps librqbit's parser safe: that parser multiplies a string's length prefix
    /// without an overflow check (found by the `torrent_parse` fuzz target) and reads `piece
    /// length` into a u32 the same way. Here a string length has at most 8 digits (the file
    /// is at most 16 MiB) and must fit in what is left, an integer has at most 18 digits (it
    /// fits in an i64), the integer after a `piece length` key fits in a u32, and nesting is
    /// bounded.
    pub(super) fn check(input: &[u8]) -> Result<(), &'static str> {
        /// What an open container expects next.
        enum Frame<'a> {
            List,
            /// A dict: the last key seen, and whether a value is due.
            Dict {
                last: Option<&'a [u8]>,
                value_due: bool,
            },
        }
        let mut pos = 0;
        let mut stack: Vec<Frame<'_>> = Vec::new();
        // Whether the last key was `piece length` (so the next value is its value).
        let mut piece_length_next = false;
        loop {
            let after_piece_length = std::mem::take(&mut piece_length_next);
            let at_key = matches!(stack.last(), Some(Frame::Dict { value_due: false, .. }));
            match input.get(pos) {
                None => return Err("it ends in the middle of a value"),
                Some(b'e') if !stack.is_empty() => {
                    if matches!(stack.last(), Some(Frame::Dict { value_due: true, .. })) {
                        return Err("a dict key has no value");
                    }
                    stack.pop();
                    pos += 1;
                }
                Some(b'd' | b'l') if at_key => return Err("a dict key is not a string"),
                Some(&open @ (b'd' | b'l')) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err("it is nested too deeply");
                    }
                    stack.push(if open == b'd' {
                        Frame::Dict { last: None, value_due: false }
                    } else {
                        Frame::List
                    });
                    pos += 1;
                    continue;
                }
                Some(b'i') if at_key => return Err("a dict key is not a string"),
                Some(b'i') => {
                    let rest = &input[pos + 1..];
                    let end =
                        rest.iter().position(|&b| b == b'e').ok_or("an integer has no end")?;
                    let negative = rest.first() == Some(&b'-');
                    let digits = &rest[usize::from(negative)..end];
                    if digits.is_empty()
                        || digits.len() > 18
                        || !digits.iter().all(u8::is_ascii_digit)
                    {
                        return Err("an integer is malformed or out of range");
                    }
                    if (digits[0] == b'0' && digits.len() > 1) || (negative && digits == b"0") {
                        return Err("an integer is not in canonical form (leading zero or -0)");
                    }
                    if after_piece_length
                        && (negative
                            || digits.len() > 10
                            || digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
                                > u64::from(u32::MAX))
                    {
                        return Err("the piece length is out of range");
                    }
                    pos += end + 2;
                }
                Some(b'0'..=b'9') => {
                    let rest = &input[pos..];
                    let colon = rest
                        .iter()
                        .take(9)
                        .position(|&b| b == b':')
                        .ok_or("a string length is malformed or too large")?;
                    let digits = &rest[..colon];
                    if !digits.iter().all(u8::is_ascii_digit) {
                        return Err("a string length is malformed or too large");
                    }
                    if digits.len() > 1 && digits[0] == b'0' {
                        return Err("a string length is not in canonical form (leading zero)");
                    }
                    let len = digits.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
                    pos += colon + 1;
                    if input.len() - pos < len {
                        return Err("a string runs past the end");
                    }
                    let text = &input[pos..pos + len];
                    pos += len;
                    if let Some(Frame::Dict { last, value_due: due @ false }) = stack.last_mut() {
                        if last.is_some_and(|l| l >= text) {
                            return Err(
                                "dict keys are not in strictly ascending order (or one is repeated)",
                            );
                        }
                        *last = Some(text);
                        *due = true;
                        piece_length_next = text == b"piece length";
                        continue;
                    }
                }
                Some(_) => return Err("it is not bencode"),
            }
            // A value ended: a dict now expects its next key.
            if let Some(Frame::Dict { value_due, .. }) = stack.last_mut() {
                *value_due = false;
            }
            if stack.is_empty() {
                return if pos == input.len() { Ok(()) } else { Err("bytes follow the value") };
            }
        }
    }

    pub(super) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(b.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(b);
    }

    pub(super) fn int(out: &mut Vec<u8>, n: u64) {
        out.push(b'i');
        out.extend_from_slice(n.to_string().as_bytes());
        out.push(b'e');
    }

    pub(super) fn list(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
        out.push(b'l');
        f(out);
        out.push(b'e');
    }

    pub(super) struct Dict<'a> {
        out: &'a mut Vec<u8>,
        last: Option<&'static str>,
    }

    impl Dict<'_> {
        pub(super) fn key(&mut self, k: &'static str) {
            debug_assert!(self.last.is_none_or(|l| l < k), "bencode keys must be sorted");
            self.last = Some(k);
            bytes(self.out, k.as_bytes());
        }

        pub(super) fn out(&mut self) -> &mut Vec<u8> {
            self.out
        }
    }

    pub(super) fn dict(out: &mut Vec<u8>, f: impl FnOnce(&mut Dict<'_>)) {
        out.push(b'd');
        f(&mut Dict { out, last: None });
        out.push(b'e');
    }

    #[cfg(test)]
    mod tests {
        use super::check;

        #[test]
        fn accepts_well_formed_values_and_refuses_what_would_overflow() {
            for ok in [
                &b"d4:infod6:lengthi5e4:name3:abcee"[..],
                b"i-12e",
                b"i0e",
                b"0:",
                b"le",
                b"de",
                b"l1:xi0ee",
                b"d1:ad1:bi1eee",
                b"d12:piece lengthi4294967295e1:xi4294967296ee",
            ] {
                assert_eq!(check(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
            }
            let deep = [b"l".repeat(65), b"e".repeat(65)].concat();
            for (bad, why) in [
                (
                    &b"d4:inf8888888888888888888888:x"[..],
                    "a string length is malformed or too large",
                ),
                (b"99999999:x", "a string runs past the end"),
                (b"i9999999999999999999e", "an integer is malformed or out of range"),
                (b"i-e", "an integer is malformed or out of range"),
                (b"d12:piece lengthi4294967296ee", "the piece length is out of range"),
                (b"d12:piece lengthi13555556384ee", "the piece length is out of range"),
                (b"i12", "an integer has no end"),
                (b"d4:info", "it ends in the middle of a value"),
                (b"x", "it is not bencode"),
                (b"e", "it is not bencode"),
                (&deep, "it is nested too deeply"),
                (b"3:abcTRAILING", "bytes follow the value"),
                (b"i03e", "an integer is not in canonical form (leading zero or -0)"),
                (b"i-0e", "an integer is not in canonical form (leading zero or -0)"),
                (b"03:abc", "a string length is not in canonical form (leading zero)"),
                (
                    b"d4:name1:a4:name1:be",
                    "dict keys are not in strictly ascending order (or one is repeated)",
                ),
                (
                    b"d1:bi1e1:ai1ee",
                    "dict keys are not in strictly ascending order (or one is repeated)",
                ),
                (b"di1ei2ee", "a dict key is not a string"),
                (b"dle1:ae", "a dict key is not a string"),
                (b"d1:ae", "a dict key has no value"),
                (b"d12:piece lengthi-1ee", "the piece length is out of range"),
            ] {
                assert_eq!(check(bad), Err(why), "{}", String::from_utf8_lossy(bad));
            }
        }
    }
}

#[cfg(test)]
mod info_hash_tests {
    use super::InfoHash;

    #[test]
    fn info_hashes_read_in_hex_and_base32_of_either_case() {
        let hash = InfoHash(core::array::from_fn(|i| (i as u8).wrapping_mul(37)));
        let hex = hash.to_string();
        assert_eq!(hex.len(), 40);
        assert_eq!(hex, hex.to_lowercase());
        let base32 = data_encoding::BASE32.encode(&hash.0);
        assert_eq!(base32.len(), 32);
        for form in [hex.clone(), hex.to_uppercase(), base32.clone(), base32.to_lowercase()] {
            assert_eq!(form.parse::<InfoHash>().unwrap(), hash, "{form}");
        }
        for bad in ["", "00", &hex[1..], &format!("{}g", &hex[1..]), &format!("{}1", &base32[1..])]
        {
            assert!(bad.parse::<InfoHash>().is_err(), "{bad}");
        }
    }
}
