//! Where a transfer's files live: opened relative to directory handles, never through a
//! symbolic link, and only a few at a time.
//!
//! librqbit's own storage opens `output_folder/relative_path` by path, which follows any
//! symlink on the way: a dangling link planted at `OUT/NAME` made a fetch write outside
//! `--out`. This storage opens the torrent's folder below `OUT` and every folder and file
//! below that with `openat(2)` and `O_NOFOLLOW`, creating what is missing with `mkdirat(2)`,
//! so a link anywhere below `OUT` fails the transfer instead of redirecting it. It also keeps
//! at most [`OPEN_FILES`] files open per transfer, so a torrent of many files cannot run the
//! process out of descriptors.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context as _;
use librqbit::storage::{
    BoxStorageFactory, StorageFactory, StorageFactoryExt as _, TorrentStorage,
};
use librqbit::{ManagedTorrentShared, TorrentMetadata};
use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;

/// Files kept open per transfer, at most.
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
}

impl NoFollowStorageFactory {
    pub(crate) fn new(base: &Path, prefix: &Path, failure: StorageFailure) -> Self {
        Self { base: base.to_path_buf(), prefix: prefix.to_path_buf(), failure }
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
        Ok(NoFollowStorage {
            factory: self.clone(),
            root: None,
            files: Arc::new(files),
            open: Mutex::new(VecDeque::new()),
            dead: AtomicBool::new(false),
        })
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

/// A transfer's files, opened without following links, at most [`OPEN_FILES`] at a time.
pub(crate) struct NoFollowStorage {
    factory: NoFollowStorageFactory,
    /// The torrent's folder (`base/prefix`), once opened.
    root: Option<Arc<OwnedFd>>,
    /// Each file's path below the root; `None` for BEP 47 padding files, which are not kept.
    files: Arc<Vec<Option<PathBuf>>>,
    /// Open files, most recently used last.
    open: Mutex<VecDeque<(usize, Arc<File>)>>,
    /// Set when the engine took this storage over (pausing): then it does nothing more.
    dead: AtomicBool,
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

impl NoFollowStorage {
    fn root(&self) -> anyhow::Result<&Arc<OwnedFd>> {
        if self.dead.load(Ordering::Acquire) {
            anyhow::bail!("storage was taken over");
        }
        self.root.as_ref().context("storage is not initialized")
    }

    /// The folder holding file `rel`, opened from the root without following links.
    fn parent_of(&self, rel: &Path, create: bool) -> anyhow::Result<(OwnedFd, PathBuf)> {
        let root = self.root()?;
        let parts = components(rel)?;
        let (name, dirs) = parts.split_last().context("empty file path")?;
        let mut dir = rustix::io::dup(root.as_ref()).context("cannot duplicate a folder handle")?;
        let mut shown = self.factory.base.join(&self.factory.prefix);
        for part in dirs {
            shown.push(part);
            dir = open_dir(&dir, part, create, &shown)?;
        }
        Ok((dir, PathBuf::from(name)))
    }

    fn open_file(&self, rel: &Path) -> anyhow::Result<File> {
        let (dir, name) = self.parent_of(rel, true)?;
        let shown = self.factory.base.join(&self.factory.prefix).join(rel);
        let fd = rustix::fs::openat(
            &dir,
            &name,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| {
            let _ = self.factory.failure.note::<()>(Err(e.into()));
            errno(e, &shown)
        })?;
        let file = File::from(fd);
        let meta =
            file.metadata().with_context(|| format!("cannot inspect {}", shown.display()))?;
        if !meta.is_file() {
            anyhow::bail!("{} is not a regular file", shown.display());
        }
        Ok(file)
    }

    /// File `id`, from the cache or opened now (closing the least recently used).
    fn file(&self, id: usize) -> anyhow::Result<Arc<File>> {
        let rel = self.files.get(id).context("no such file")?.as_ref().context("padding file")?;
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pos) = open.iter().position(|(i, _)| *i == id) {
            let entry = open.remove(pos).context("cache entry vanished")?;
            let file = entry.1.clone();
            open.push_back(entry);
            return Ok(file);
        }
        let file = Arc::new(self.open_file(rel)?);
        if open.len() >= OPEN_FILES {
            open.pop_front();
        }
        open.push_back((id, file.clone()));
        Ok(file)
    }
}

impl NoFollowStorage {
    /// Opens the torrent's folder (creating it and its parents below `base`) and creates
    /// every file, as the engine expects of `init`, without keeping them all open.
    fn prepare(&mut self) -> anyhow::Result<()> {
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
            root = open_dir(&root, part, true, &shown)?;
        }
        self.root = Some(Arc::new(root));
        for id in 0..self.files.len() {
            if self.files[id].is_some() {
                self.file(id)?;
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
        Ok(self.file(file_id)?.read_exact_at(buf, offset)?)
    }

    fn pwrite_all(&self, file_id: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        use std::os::unix::fs::FileExt as _;
        Ok(self.factory.failure.note(self.file(file_id)?.write_all_at(buf, offset))?)
    }

    fn remove_file(&self, file_id: usize, _filename: &Path) -> anyhow::Result<()> {
        let rel = self.files.get(file_id).context("no such file")?.as_ref().context("padding")?;
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|(i, _)| *i != file_id);
        drop(open);
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
        Ok(self.factory.failure.note(self.file(file_id)?.set_len(length))?)
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        self.dead.store(true, Ordering::Release);
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        Ok(Box::new(Self {
            factory: self.factory.clone(),
            root: self.root.clone(),
            files: self.files.clone(),
            open: Mutex::new(VecDeque::new()),
            dead: AtomicBool::new(false),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(base: &Path, prefix: &str, files: &[&str]) -> NoFollowStorage {
        NoFollowStorage {
            factory: NoFollowStorageFactory::new(
                base,
                Path::new(prefix),
                StorageFailure::default(),
            ),
            root: None,
            files: Arc::new(files.iter().map(|f| Some(PathBuf::from(f))).collect()),
            open: Mutex::new(VecDeque::new()),
            dead: AtomicBool::new(false),
        }
    }

    fn init(s: &mut NoFollowStorage) -> anyhow::Result<()> {
        s.prepare()
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
        assert!(s.open.lock().unwrap().len() <= OPEN_FILES);
        assert_eq!(std::fs::read(dir.path().join("many/f199")).unwrap(), [199]);
        assert_eq!(std::fs::read_dir(dir.path().join("many")).unwrap().count(), 200);
    }
}
