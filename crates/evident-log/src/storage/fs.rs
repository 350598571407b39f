//! The real storage: files on the local file system, positioned I/O, `fdatasync` for data and
//! `fsync` on the directory for entries, and an advisory `flock` on `LOCK` so two processes
//! never open one store.

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use super::{Storage, StorageFile};

/// Files on the local file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

struct FsFile(File);

impl StorageFile for FsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    #[allow(unsafe_code)]
    fn map(&self, len: u64) -> io::Result<Option<bytes::Bytes>> {
        if len == 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(io::Error::other)?;
        // SAFETY: a mapped file can change or shrink underneath the mapping. evident's segment
        // files are only appended to while the store is open (the directory lock keeps other
        // evident processes out), torn-tail truncation happens before any read, and readers
        // only touch bytes below the written position, so every byte read through the map is
        // in the file and no longer changes. Checksums are verified on every read regardless.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.0)? };
        Ok(Some(bytes::Bytes::from_owner(map)))
    }
}

impl Storage for FsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        // Owner-only permissions: an event store holds an organisation's audit trail.
        let file = OpenOptions::new().read(true).write(true).create(create).mode(0o600).open(path)?;
        Ok(Arc::new(FsFile(file)))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path.join("LOCK"))?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("data directory {} is locked by another process", path.display()),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
