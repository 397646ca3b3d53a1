//! Where a transfer's files live: opened relative to the torrent's folder, never through a
//! symbolic link, and only a few at a time in the whole process.
//!
//! librqbit's own storage opens `output_folder/relative_path` by path, which follows any
//! symlink on the way: a dangling link planted at `OUT/NAME` made a fetch write outside
//! `--out`. This storage opens the torrent's folder below `OUT` and every folder and file
//! below that with `openat(2)` and `O_NOFOLLOW`, creating what is missing with `mkdirat(2)`,
//! so a link anywhere below `OUT` fails the transfer instead of redirecting it.
//!
//! A node seeds every bundle of its chain for as long as it runs, so descriptors held per
//! transfer grow with the chain: with each transfer keeping its folder and files open, 255
//! bundles held 786 descriptors, and a follower under `ulimit -n 512` stopped for good
//! ("Too many open files"). So no transfer holds anything between reads and writes: its
//! files are opened on demand and kept in one [`FileCache`] shared by every transfer of the
//! process, which closes the least recently used beyond [`MAX_OPEN_FILES`] (and beyond
//! [`OPEN_FILES`] of one transfer, so a torrent of many files cannot take them all). Folders
//! are not kept at all: each file is opened by walking again from `base` without following
//! links, and the torrent's folder must still be the very folder that `init` opened (its
//! device and inode), as when a handle of it was kept.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use librqbit::storage::{
    BoxStorageFactory, StorageFactory, StorageFactoryExt as _, TorrentStorage,
};
use librqbit::{ManagedTorrentShared, TorrentMetadata};
use parking_lot::{Mutex, MutexGuard};
use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;

/// Files kept open by every transfer of the process together, at most. A read or write under
/// way keeps the file it uses open until it ends, even when the file was closed for the cache
/// meanwhile, so the bound is this plus the reads and writes running at that moment. Folders
/// are open only while a file is being opened. Without a bound across transfers a node's
/// descriptors grew with its chain (about three per bundle seeded); 64 leaves most of a usual
/// limit (1024, or even 512) to peers' sockets, the ledger and the HTTP server.
pub(crate) const MAX_OPEN_FILES: usize = 64;

/// Files kept open per transfer, at most: its share of [`MAX_OPEN_FILES`].
pub(crate) const OPEN_FILES: usize = 32;

/// The kind of a transfer's first failed write, kept for the transfer to report: the
/// engine passes storage errors on only as text.
#[derive(Clone, Debug, Default)]
pub(crate) struct StorageFailure(Arc<OnceLock<std::io::ErrorKind>>);

impl StorageFailure {
    /// The kind of the first write that failed, if one did.
    pub(crate) fn kind(&self) -> Option<std::io::ErrorKind> {
        self.0.get().copied()
    }

    /// `result`, noting its error's kind (the first one only).
    fn note<T>(&self, result: std::io::Result<T>) -> std::io::Result<T> {
        result.inspect_err(|e| {
            let _ = self.0.set(e.kind());
        })
    }
}

/// A cached file: the transfer (its [`NoFollowStorage::key`]) and the file's index.
type Key = (u64, usize);

/// Open files of many transfers, the least recently used closed beyond a cap. Handles are
/// shared as `Arc<File>`: closing one for the cache only drops the cache's reference, so a
/// read or write using it goes on and the file is closed when it ends.
pub(crate) struct FileCache {
    /// Files kept, at most.
    cap: usize,
    /// Files kept per transfer, at most.
    per_transfer: usize,
    /// The next transfer's key.
    next: AtomicU64,
    lru: Mutex<Lru>,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("cap", &self.cap)
            .field("per_transfer", &self.per_transfer)
            .finish_non_exhaustive()
    }
}

/// The cached files, each with the tick of its last use.
#[derive(Default)]
struct Lru {
    tick: u64,
    entries: HashMap<Key, (Arc<File>, u64)>,
}

impl Lru {
    /// Takes out the least recently used file among those `which` selects.
    fn evict_oldest(&mut self, which: impl Fn(&Key) -> bool) -> Option<Arc<File>> {
        let oldest = self
            .entries
            .iter()
            .filter(|&(key, _)| which(key))
            .min_by_key(|&(_, &(_, tick))| tick)
            .map(|(key, _)| *key)?;
        self.entries.remove(&oldest).map(|(file, _)| file)
    }
}

impl FileCache {
    /// A cache keeping at most `cap` files, and `per_transfer` of one transfer.
    pub(crate) fn new(cap: usize, per_transfer: usize) -> Self {
        let cap = cap.max(1);
        Self {
            cap,
            per_transfer: per_transfer.clamp(1, cap),
            next: AtomicU64::new(0),
            lru: Mutex::new(Lru::default()),
        }
    }

    /// The process's cache, which every transfer uses: at most [`MAX_OPEN_FILES`] files,
    /// [`OPEN_FILES`] of one transfer.
    pub(crate) fn global() -> &'static Arc<Self> {
        static GLOBAL: OnceLock<Arc<FileCache>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(Self::new(MAX_OPEN_FILES, OPEN_FILES)))
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.lru.lock()
    }

    /// A key for a new transfer.
    fn register(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The file `key`, if it is open.
    fn get(&self, key: Key) -> Option<Arc<File>> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let entry = lru.entries.get_mut(&key)?;
        entry.1 = tick;
        Some(entry.0.clone())
    }

    /// Keeps `file`, just opened as `key`, closing the least recently used file of its
    /// transfer when the transfer has its share, and the least recently used of all when the
    /// cache is full. When another reader or writer opened `key` meanwhile, theirs is kept
    /// and returned, and `file` is closed.
    fn insert(&self, key: Key, file: Arc<File>) -> Arc<File> {
        // Closed once the lock is released.
        let mut closed = Vec::new();
        let kept = {
            let mut lru = self.lock();
            lru.tick += 1;
            let tick = lru.tick;
            if let Some(entry) = lru.entries.get_mut(&key) {
                entry.1 = tick;
                closed.push(file);
                entry.0.clone()
            } else {
                while lru.entries.keys().filter(|k| k.0 == key.0).count() >= self.per_transfer {
                    match lru.evict_oldest(|k| k.0 == key.0) {
                        Some(old) => closed.push(old),
                        None => break,
                    }
                }
                while lru.entries.len() >= self.cap {
                    match lru.evict_oldest(|_| true) {
                        Some(old) => closed.push(old),
                        None => break,
                    }
                }
                lru.entries.insert(key, (file.clone(), tick));
                file
            }
        };
        drop(closed);
        kept
    }

    /// Closes (for the cache) the files `which` selects.
    fn forget(&self, which: impl Fn(&Key) -> bool) {
        let mut closed = Vec::new();
        {
            let mut lru = self.lock();
            let keys: Vec<Key> = lru.entries.keys().filter(|&k| which(k)).copied().collect();
            for key in keys {
                if let Some((file, _)) = lru.entries.remove(&key) {
                    closed.push(file);
                }
            }
        }
        drop(closed);
    }

    /// Files kept, of every transfer.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Files kept of transfer `transfer`.
    #[cfg(test)]
    fn held_by(&self, transfer: u64) -> usize {
        self.lock().entries.keys().filter(|k| k.0 == transfer).count()
    }
}

/// Makes a [`NoFollowStorage`] for one transfer.
#[derive(Clone, Debug)]
pub(crate) struct NoFollowStorageFactory {
    /// The folder given by the user (`--out`, a node's bundle folder); opened as it is.
    base: PathBuf,
    /// The path below `base` that the torrent's files are relative to (the torrent's folder
    /// for a multi-file torrent; empty for a single file), walked without following links.
    prefix: PathBuf,
    /// Where a failed write's kind is noted for the transfer.
    failure: StorageFailure,
    /// The open files, shared with every other transfer.
    cache: Arc<FileCache>,
}

impl NoFollowStorageFactory {
    /// A factory whose transfers use the process's [`FileCache::global`].
    pub(crate) fn new(base: &Path, prefix: &Path, failure: StorageFailure) -> Self {
        Self::with_cache(base, prefix, failure, FileCache::global().clone())
    }

    /// A factory whose transfers keep their open files in `cache`.
    pub(crate) fn with_cache(
        base: &Path,
        prefix: &Path,
        failure: StorageFailure,
        cache: Arc<FileCache>,
    ) -> Self {
        Self { base: base.to_path_buf(), prefix: prefix.to_path_buf(), failure, cache }
    }

    pub(crate) fn boxed_factory(self) -> BoxStorageFactory {
        self.boxed()
    }
}

impl StorageFactory for NoFollowStorageFactory {
    type Storage = NoFollowStorage;

    fn create(
        &self,
        _shared: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<NoFollowStorage> {
        let files = metadata
            .file_infos
            .iter()
            .map(|f| (!f.attrs.padding).then(|| f.relative_filename.clone()))
            .collect();
        Ok(NoFollowStorage::new(self.clone(), Arc::new(files), None))
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

/// A transfer's files, opened without following links when used, and kept open only in the
/// shared [`FileCache`]. Nothing is held open by the storage itself.
pub(crate) struct NoFollowStorage {
    factory: NoFollowStorageFactory,
    /// This storage's files' key in the cache (a new one after [`TorrentStorage::take`]).
    key: u64,
    /// The device and inode of the torrent's folder (`base/prefix`) as `init` opened it:
    /// every later open must find this very folder there.
    root_id: Option<(u64, u64)>,
    /// Each file's path below the root; `None` for BEP 47 padding files, which are not kept.
    files: Arc<Vec<Option<PathBuf>>>,
    /// Set when the engine took this storage over (pausing): then it does nothing more.
    dead: AtomicBool,
}

impl Drop for NoFollowStorage {
    fn drop(&mut self) {
        self.factory.cache.forget(|k| k.0 == self.key);
    }
}

fn errno(e: Errno, what: &Path) -> anyhow::Error {
    let io = std::io::Error::from(e);
    if e == Errno::LOOP || e == Errno::NOTDIR {
        anyhow::anyhow!(
            "{} is a symbolic link or not a folder; fetched files are never written through one",
            what.display()
        )
    } else {
        anyhow::Error::new(io).context(format!("cannot open {}", what.display()))
    }
}

/// The single normal components of `path`, or an error for anything else.
fn components(path: &Path) -> anyhow::Result<Vec<&OsStr>> {
    path.components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => anyhow::bail!("unsafe path {}", path.display()),
        })
        .collect()
}

/// Opens (creating when `create`) the folder `name` in `parent`, refusing a link.
fn open_dir(parent: &OwnedFd, name: &OsStr, create: bool, shown: &Path) -> anyhow::Result<OwnedFd> {
    if create {
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(errno(e, shown)),
        }
    }
    rustix::fs::openat(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno(e, shown))
}

/// `dir` with its device and inode.
fn identity(dir: OwnedFd, shown: &Path) -> anyhow::Result<(OwnedFd, (u64, u64))> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = File::from(dir);
    let meta = dir.metadata().with_context(|| format!("cannot inspect {}", shown.display()))?;
    Ok((OwnedFd::from(dir), (meta.dev(), meta.ino())))
}

impl NoFollowStorage {
    fn new(
        factory: NoFollowStorageFactory,
        files: Arc<Vec<Option<PathBuf>>>,
        root_id: Option<(u64, u64)>,
    ) -> Self {
        let key = factory.cache.register();
        Self { factory, key, root_id, files, dead: AtomicBool::new(false) }
    }

    /// The torrent's folder, for messages.
    fn shown_root(&self) -> PathBuf {
        self.factory.base.join(&self.factory.prefix)
    }

    /// Opens the torrent's folder: `base` as it is, then each folder of `prefix` below it
    /// without following a link (creating it when `create`).
    fn walk_root(&self, create: bool) -> anyhow::Result<OwnedFd> {
        let base = &self.factory.base;
        let mut root = rustix::fs::openat(
            CWD,
            base,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno(e, base))?;
        let mut shown = base.clone();
        for part in components(&self.factory.prefix)? {
            shown.push(part);
            root = open_dir(&root, part, create, &shown)?;
        }
        Ok(root)
    }

    /// The torrent's folder, opened again (no handle of it is kept between uses) and checked
    /// to be the very folder `init` opened.
    fn root(&self, create: bool) -> anyhow::Result<OwnedFd> {
        if self.dead.load(Ordering::Acquire) {
            anyhow::bail!("storage was taken over");
        }
        let expected = self.root_id.context("storage is not initialized")?;
        let shown = self.shown_root();
        let (root, found) = identity(self.walk_root(create)?, &shown)?;
        if found != expected {
            anyhow::bail!(
                "{} is no longer the folder this transfer started in; files are never \
                 written or read elsewhere",
                shown.display()
            );
        }
        Ok(root)
    }

    /// The folder holding file `rel`, opened from the root without following links.
    fn parent_of(&self, rel: &Path, create: bool) -> anyhow::Result<(OwnedFd, PathBuf)> {
        let mut dir = self.root(create)?;
        let parts = components(rel)?;
        let (name, dirs) = parts.split_last().context("empty file path")?;
        let mut shown = self.shown_root();
        for part in dirs {
            shown.push(part);
            dir = open_dir(&dir, part, create, &shown)?;
        }
        Ok((dir, PathBuf::from(name)))
    }

    /// Opens file `rel` for reading and writing, creating it (and its folders) when `create`
    /// (writes; a read never creates a file that went missing).
    fn open_file(&self, rel: &Path, create: bool) -> anyhow::Result<File> {
        let (dir, name) = self.parent_of(rel, create)?;
        let shown = self.shown_root().join(rel);
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let flags = if create { flags | OFlags::CREATE } else { flags };
        let fd =
            rustix::fs::openat(&dir, &name, flags, Mode::from_raw_mode(0o644)).map_err(|e| {
                if create {
                    let _ = self.factory.failure.note::<()>(Err(e.into()));
                }
                errno(e, &shown)
            })?;
        drop(dir);
        let file = File::from(fd);
        let meta =
            file.metadata().with_context(|| format!("cannot inspect {}", shown.display()))?;
        if !meta.is_file() {
            anyhow::bail!("{} is not a regular file", shown.display());
        }
        Ok(file)
    }

    /// File `id`, from the cache or opened now (the cache then closes the least recently
    /// used file beyond its caps). `create` when about to write.
    fn file(&self, id: usize, create: bool) -> anyhow::Result<Arc<File>> {
        if self.dead.load(Ordering::Acquire) {
            anyhow::bail!("storage was taken over");
        }
        let rel = self.files.get(id).context("no such file")?.as_ref().context("padding file")?;
        let key = (self.key, id);
        if let Some(file) = self.factory.cache.get(key) {
            return Ok(file);
        }
        let file = Arc::new(self.open_file(rel, create)?);
        let file = self.factory.cache.insert(key, file);
        // Taken over while the file was being opened: its entry must not outlive `take`,
        // which forgot this storage's files before the insert.
        if self.dead.load(Ordering::Acquire) {
            self.factory.cache.forget(|k| *k == key);
            anyhow::bail!("storage was taken over");
        }
        Ok(file)
    }

    /// Opens the torrent's folder (creating it and its parents below `base`), notes which
    /// folder it is, and creates every file, as the engine expects of `init`, without
    /// keeping more of them open than the cache allows.
    fn prepare(&mut self) -> anyhow::Result<()> {
        let (root, id) = identity(self.walk_root(true)?, &self.shown_root())?;
        drop(root);
        self.root_id = Some(id);
        for file_id in 0..self.files.len() {
            if self.files[file_id].is_some() {
                self.file(file_id, true)?;
            }
        }
        Ok(())
    }
}

impl TorrentStorage for NoFollowStorage {
    fn init(
        &mut self,
        _shared: &ManagedTorrentShared,
        _metadata: &TorrentMetadata,
    ) -> anyhow::Result<()> {
        self.prepare()
    }

    fn pread_exact(&self, file_id: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        use std::os::unix::fs::FileExt as _;
        Ok(self.file(file_id, false)?.read_exact_at(buf, offset)?)
    }

    fn pwrite_all(&self, file_id: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        use std::os::unix::fs::FileExt as _;
        Ok(self.factory.failure.note(self.file(file_id, true)?.write_all_at(buf, offset))?)
    }

    fn remove_file(&self, file_id: usize, _filename: &Path) -> anyhow::Result<()> {
        let rel = self.files.get(file_id).context("no such file")?.as_ref().context("padding")?;
        let key = (self.key, file_id);
        self.factory.cache.forget(|k| *k == key);
        let (dir, name) = self.parent_of(rel, false)?;
        rustix::fs::unlinkat(&dir, &name, AtFlags::empty()).map_err(|e| errno(e, rel))
    }

    fn remove_directory_if_empty(&self, path: &Path) -> anyhow::Result<()> {
        let (dir, name) = self.parent_of(path, false)?;
        match rustix::fs::unlinkat(&dir, &name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOENT) => Ok(()),
            Err(e) => Err(errno(e, path)),
        }
    }

    fn ensure_file_length(&self, file_id: usize, length: u64) -> anyhow::Result<()> {
        Ok(self.factory.failure.note(self.file(file_id, true)?.set_len(length))?)
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        self.dead.store(true, Ordering::Release);
        self.factory.cache.forget(|k| k.0 == self.key);
        Ok(Box::new(Self::new(self.factory.clone(), self.files.clone(), self.root_id)))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt as _;

    use super::*;

    fn storage_in(
        cache: &Arc<FileCache>,
        base: &Path,
        prefix: &str,
        files: &[&str],
    ) -> NoFollowStorage {
        let factory = NoFollowStorageFactory::with_cache(
            base,
            Path::new(prefix),
            StorageFailure::default(),
            cache.clone(),
        );
        let files = files.iter().map(|f| Some(PathBuf::from(f))).collect();
        NoFollowStorage::new(factory, Arc::new(files), None)
    }

    /// A storage keeping its files in the process's cache, as every transfer does.
    fn storage(base: &Path, prefix: &str, files: &[&str]) -> NoFollowStorage {
        storage_in(FileCache::global(), base, prefix, files)
    }

    fn init(s: &mut NoFollowStorage) -> anyhow::Result<()> {
        s.prepare()
    }

    /// Descriptors of this process open on something below `dir` (a file or a folder).
    fn open_below(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count()
    }

    #[test]
    fn writes_stay_below_the_folder_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();

        // An ordinary fetch: folders and files created below OUT/NAME.
        let mut s = storage(&out, "bundle", &["a.txt", "sub/b.txt"]);
        init(&mut s).unwrap();
        s.pwrite_all(1, 3, b"xyz").unwrap();
        let mut back = [0u8; 3];
        s.pread_exact(1, 3, &mut back).unwrap();
        assert_eq!(&back, b"xyz");
        assert_eq!(std::fs::read(out.join("bundle/sub/b.txt")).unwrap(), b"\0\0\0xyz");

        // A dangling link at OUT/NAME, a link to a folder below it, a link at a file.
        std::os::unix::fs::symlink(outside.join("gone"), out.join("dangling")).unwrap();
        let err = init(&mut storage(&out, "dangling", &["a.txt"])).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        std::fs::create_dir(out.join("t")).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("t/sub")).unwrap();
        let err = init(&mut storage(&out, "t", &["sub/x.txt"])).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        std::fs::create_dir(out.join("f")).unwrap();
        std::os::unix::fs::symlink(outside.join("target"), out.join("f/x.txt")).unwrap();
        let err = init(&mut storage(&out, "f", &["x.txt"])).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written outside");
    }

    /// No folder handle is kept, so each file is opened by walking from `base` again: a link
    /// or another folder put in the torrent's folder's place later is refused, not followed.
    #[test]
    fn a_folder_replaced_after_init_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        // One file open at a time: every other file is opened again.
        let cache = Arc::new(FileCache::new(1, 1));
        let mut s = storage_in(&cache, &out, "bundle", &["a.txt", "sub/b.txt"]);
        init(&mut s).unwrap();
        s.pwrite_all(1, 0, b"b").unwrap();
        s.pwrite_all(0, 0, b"a").unwrap();

        std::fs::rename(out.join("bundle"), dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("bundle")).unwrap();
        let err = s.pwrite_all(1, 0, b"x").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        let mut back = [0u8; 1];
        let err = s.pread_exact(1, 0, &mut back).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");

        std::fs::remove_file(out.join("bundle")).unwrap();
        std::fs::create_dir(out.join("bundle")).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("bundle/sub")).unwrap();
        let err = s.pwrite_all(1, 0, b"x").unwrap_err().to_string();
        assert!(err.contains("no longer the folder"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written outside");
        assert_eq!(std::fs::read(dir.path().join("moved/sub/b.txt")).unwrap(), b"b");
    }

    #[test]
    fn many_files_use_few_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..200).map(|i| format!("f{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut s = storage(dir.path(), "many", &refs);
        init(&mut s).unwrap();
        for id in 0..200 {
            s.pwrite_all(id, 0, &[id as u8]).unwrap();
        }
        assert!(FileCache::global().held_by(s.key) <= OPEN_FILES);
        assert!(open_below(&dir.path().canonicalize().unwrap()) <= OPEN_FILES);
        assert_eq!(std::fs::read(dir.path().join("many/f199")).unwrap(), [199]);
        assert_eq!(std::fs::read_dir(dir.path().join("many")).unwrap().count(), 200);
    }

    /// Issue 25, finding 1: every transfer kept its folder and files open for as long as it
    /// was seeded, so a node's descriptors grew with its chain. Now the process keeps at most
    /// [`MAX_OPEN_FILES`], however many transfers there are.
    #[test]
    fn descriptors_stay_bounded_however_many_transfers() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().canonicalize().unwrap();
        let names = ["registration_tokens.txt", "contracts.jsonl", "manifest.jwt"];
        let mut transfers = Vec::new();
        for i in 0..200u8 {
            let mut s = storage(&out, &format!("bundle-{i}"), &names);
            init(&mut s).unwrap();
            for id in 0..names.len() {
                s.pwrite_all(id, 0, &[i, id as u8]).unwrap();
            }
            let mut back = [0u8; 2];
            s.pread_exact(1, 0, &mut back).unwrap();
            assert_eq!(back, [i, 1]);
            transfers.push(s);
        }
        let open = open_below(&out);
        assert!(
            open <= MAX_OPEN_FILES,
            "{open} descriptors open below the folder of 200 transfers (at most {MAX_OPEN_FILES})"
        );
        assert!(FileCache::global().len() <= MAX_OPEN_FILES);

        // The first transfer's files were closed long ago: they open again when read.
        let mut back = [0u8; 2];
        transfers[0].pread_exact(2, 0, &mut back).unwrap();
        assert_eq!(back, [0, 2]);
        // Transfers that end close their files.
        drop(transfers);
        assert_eq!(open_below(&out), 0);
    }

    #[test]
    fn a_transfer_keeps_at_most_its_share() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(FileCache::new(4, 2));
        let mut small = storage_in(&cache, dir.path(), "small", &["a"]);
        init(&mut small).unwrap();
        let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut big = storage_in(&cache, dir.path(), "big", &refs);
        init(&mut big).unwrap();
        for id in 0..refs.len() {
            big.pwrite_all(id, 0, b"x").unwrap();
        }
        assert_eq!(cache.held_by(big.key), 2);
        assert_eq!(cache.held_by(small.key), 1, "the big transfer closed only its own files");
        assert!(open_below(&dir.path().canonicalize().unwrap()) <= 3);
    }

    /// A file closed for the cache stays open for whoever is using it.
    #[test]
    fn eviction_never_closes_a_file_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(FileCache::new(2, 2));
        let mut a = storage_in(&cache, dir.path(), "a", &["x"]);
        init(&mut a).unwrap();
        let mut b = storage_in(&cache, dir.path(), "b", &["x", "y", "z"]);
        init(&mut b).unwrap();
        // As a read or write under way holds it.
        let held = a.file(0, false).unwrap();
        for id in 0..3 {
            b.pwrite_all(id, 0, b"b").unwrap();
        }
        assert_eq!(cache.held_by(a.key), 0, "closed for the cache");
        assert_eq!(cache.len(), 2);
        held.write_all_at(b"still open", 0).unwrap();
        drop(held);
        assert_eq!(std::fs::read(dir.path().join("a/x")).unwrap(), b"still open");
        let mut back = [0u8; 5];
        a.pread_exact(0, 0, &mut back).unwrap();
        assert_eq!(&back, b"still");
    }

    /// A storage the engine took over (pausing) closes its files; the new one opens them.
    #[test]
    fn take_closes_the_old_storages_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(FileCache::new(8, 8));
        let mut s = storage_in(&cache, dir.path(), "t", &["x", "y"]);
        init(&mut s).unwrap();
        assert_eq!(cache.held_by(s.key), 2);
        let next = s.take().unwrap();
        assert_eq!(cache.len(), 0);
        assert!(s.pwrite_all(0, 0, b"old").is_err(), "the old storage does nothing more");
        next.pwrite_all(0, 0, b"new").unwrap();
        assert_eq!(cache.len(), 1);
        drop(next);
        assert_eq!(cache.len(), 0);
        assert_eq!(std::fs::read(dir.path().join("t/x")).unwrap(), b"new");
    }
}
