//! A simulated disk for crash tests, after TigerBeetle's `testing/storage.zig` and redb's
//! `crash_consistency.rs`: each file keeps the bytes written so far apart from the bytes a sync
//! made durable, and each directory keeps its live entries apart from its durable ones.
//! [`SimStorage::crash`] throws away what a power loss could lose (unsynced bytes, except a
//! random prefix that may end mid-write, and unsynced directory entries), which is exactly the
//! state a reopened log must recover from. Faults (failing syncs, failing writes) are switched
//! on through [`SimFaults`].

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Storage, StorageFile};

/// Faults to inject; all off by default.
#[derive(Debug, Default, Clone)]
pub struct SimFaults {
    /// Every `sync_data`/`sync_dir` fails with EIO, and, as Linux does after a failed
    /// writeback, the unsynced bytes are dropped from what a later sync can save.
    pub fail_syncs: bool,
    /// Every write fails with ENOSPC.
    pub fail_writes: bool,
}

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Bytes past `durable.len()` that a failed sync lost: a later crash never keeps them.
    writeback_lost: bool,
}

#[derive(Default)]
struct Disk {
    inodes: Vec<Inode>,
    /// Directory -> live entries (name -> inode).
    dirs: HashMap<PathBuf, BTreeMap<String, usize>>,
    /// Directory -> entries as of its last sync.
    durable_dirs: HashMap<PathBuf, BTreeMap<String, usize>>,
    faults: SimFaults,
    locked: Vec<PathBuf>,
    syncs: u64,
}

/// An in-memory disk that remembers what is durable. Clones share the disk.
#[derive(Clone, Default)]
pub struct SimStorage {
    disk: Arc<Mutex<Disk>>,
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path.parent().ok_or_else(|| io::Error::other("path has no parent"))?;
    let name =
        path.file_name().ok_or_else(|| io::Error::other("path has no file name"))?.to_string_lossy().into_owned();
    Ok((parent.to_path_buf(), name))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

impl SimStorage {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panic in another test thread must not hide this test's result.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the faults to inject from now on.
    pub fn set_faults(&self, faults: SimFaults) {
        self.disk().faults = faults;
    }

    /// Number of successful syncs (file and directory) so far.
    pub fn sync_count(&self) -> u64 {
        self.disk().syncs
    }

    /// Simulates a power loss: directories revert to their durable entries; each file keeps its
    /// durable bytes plus a prefix of its unsynced appended bytes chosen by `keep(unsynced_len)`
    /// (0 keeps nothing; anything between tears a write). Locks are released, as the process
    /// holding them is gone. Faults are cleared.
    pub fn crash(&self, mut keep: impl FnMut(usize) -> usize) {
        let mut disk = self.disk();
        disk.dirs = disk.durable_dirs.clone();
        for inode in &mut disk.inodes {
            let durable_len = inode.durable.len();
            let extends = inode.data.len() > durable_len && inode.data[..durable_len] == inode.durable[..];
            let mut image = inode.durable.clone();
            // After a failed writeback the pages may be partly on the platter or not at all:
            // either way the crash image is some prefix, like any unsynced write.
            if extends {
                let unsynced = inode.data.len() - durable_len;
                let kept = keep(unsynced).min(unsynced);
                image.extend_from_slice(&inode.data[durable_len..durable_len + kept]);
            }
            inode.data = image.clone();
            inode.durable = image;
            inode.writeback_lost = false;
        }
        disk.locked.clear();
        disk.faults = SimFaults::default();
    }

    /// Reads a whole file's current bytes (for tests that corrupt files).
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = self.disk();
        let (dir, name) = split(path)?;
        let ino = *disk.dirs.get(&dir).and_then(|d| d.get(&name)).ok_or_else(|| not_found(path))?;
        Ok(disk.inodes[ino].data.clone())
    }

    /// Replaces a file's bytes, durably (for tests that corrupt files "on disk").
    pub fn write_file_durably(&self, path: &Path, bytes: Vec<u8>) -> io::Result<()> {
        let mut disk = self.disk();
        let (dir, name) = split(path)?;
        let ino = *disk.dirs.get(&dir).and_then(|d| d.get(&name)).ok_or_else(|| not_found(path))?;
        disk.inodes[ino].data = bytes.clone();
        disk.inodes[ino].durable = bytes;
        Ok(())
    }
}

struct SimFile {
    disk: Arc<Mutex<Disk>>,
    ino: usize,
}

impl SimFile {
    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StorageFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let disk = self.disk();
        let data = &disk.inodes[self.ino].data;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start.checked_add(buf.len()).ok_or_else(|| io::Error::other("overflow"))?;
        if end > data.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"));
        }
        buf.copy_from_slice(&data[start..end]);
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut disk = self.disk();
        if disk.faults.fail_writes {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let data = &mut disk.inodes[self.ino].data;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        if data.len() < start + buf.len() {
            data.resize(start + buf.len(), 0);
        }
        data[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.disk().inodes[self.ino].data.len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut disk = self.disk();
        let len = usize::try_from(len).map_err(io::Error::other)?;
        disk.inodes[self.ino].data.resize(len, 0);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut disk = self.disk();
        if disk.faults.fail_syncs {
            // fsyncgate: the kernel reports EIO once and marks the pages clean; the bytes are
            // gone from the disk's future even if a retried sync "succeeds".
            disk.inodes[self.ino].writeback_lost = true;
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        let inode = &mut disk.inodes[self.ino];
        if inode.writeback_lost {
            // What the failed writeback dropped never reaches the disk; the rest does.
            let keep = inode.durable.len().min(inode.data.len());
            let mut image = inode.durable[..keep].to_vec();
            image.resize(inode.data.len(), 0);
            inode.durable = image;
        } else {
            inode.durable = inode.data.clone();
        }
        disk.syncs += 1;
        Ok(())
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        // Directories themselves are modelled as always durable; their entries are not.
        for ancestor in path.ancestors() {
            disk.dirs.entry(ancestor.to_path_buf()).or_default();
            disk.durable_dirs.entry(ancestor.to_path_buf()).or_default();
        }
        Ok(())
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let disk = self.disk();
        let dir = disk.dirs.get(path).ok_or_else(|| not_found(path))?;
        Ok(dir.keys().cloned().collect())
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut disk = self.disk();
        let (dir, name) = split(path)?;
        if !disk.dirs.contains_key(&dir) {
            return Err(not_found(&dir));
        }
        let existing = disk.dirs.get(&dir).and_then(|d| d.get(&name)).copied();
        let ino = match existing {
            Some(ino) => ino,
            None if create => {
                if disk.faults.fail_writes {
                    return Err(io::Error::from_raw_os_error(28));
                }
                disk.inodes.push(Inode::default());
                let ino = disk.inodes.len() - 1;
                disk.dirs.entry(dir).or_default().insert(name, ino);
                ino
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile { disk: self.disk.clone(), ino }))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        let disk = self.disk();
        if disk.dirs.contains_key(path) {
            return Ok(true);
        }
        let (dir, name) = split(path)?;
        Ok(disk.dirs.get(&dir).is_some_and(|d| d.contains_key(&name)))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        let (dir, name) = split(path)?;
        disk.dirs.get_mut(&dir).and_then(|d| d.remove(&name)).map(|_| ()).ok_or_else(|| not_found(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        let ino = disk.dirs.get_mut(&from_dir).and_then(|d| d.remove(&from_name)).ok_or_else(|| not_found(from))?;
        disk.dirs.entry(to_dir).or_default().insert(to_name, ino);
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        if disk.faults.fail_syncs {
            return Err(io::Error::from_raw_os_error(5));
        }
        let entries = disk.dirs.get(path).cloned().ok_or_else(|| not_found(path))?;
        disk.durable_dirs.insert(path.to_path_buf(), entries);
        disk.syncs += 1;
        Ok(())
    }
    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let mut disk = self.disk();
        if disk.locked.iter().any(|p| p == path) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("data directory {} is locked by another process", path.display()),
            ));
        }
        disk.locked.push(path.to_path_buf());
        Ok(Box::new(SimLock { disk: self.disk.clone(), path: path.to_path_buf() }))
    }
}

struct SimLock {
    disk: Arc<Mutex<Disk>>,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        disk.locked.retain(|p| p != &self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_only_synced_bytes_and_entries() {
        let s = SimStorage::new();
        let dir = Path::new("/d");
        s.create_dir_all(dir).expect("mkdir");
        let a = s.open(&dir.join("a"), true).expect("open");
        a.write_all_at(b"hello", 0).expect("write");
        a.sync_data().expect("sync");
        s.sync_dir(dir).expect("sync dir");
        a.write_all_at(b" world", 5).expect("write");
        let b = s.open(&dir.join("b"), true).expect("open");
        b.write_all_at(b"x", 0).expect("write");
        b.sync_data().expect("sync"); // data durable, entry not
        s.crash(|_| 0);
        assert_eq!(s.read_file(&dir.join("a")).expect("a"), b"hello");
        assert!(!s.exists(&dir.join("b")).expect("exists"));
    }

    #[test]
    fn failed_sync_loses_the_writeback_for_good() {
        let s = SimStorage::new();
        let dir = Path::new("/d");
        s.create_dir_all(dir).expect("mkdir");
        let a = s.open(&dir.join("a"), true).expect("open");
        s.sync_dir(dir).expect("sync dir");
        a.write_all_at(b"abc", 0).expect("write");
        s.set_faults(SimFaults { fail_syncs: true, ..SimFaults::default() });
        assert!(a.sync_data().is_err());
        s.set_faults(SimFaults::default());
        a.sync_data().expect("a retried sync reports success");
        s.crash(|n| n);
        assert_eq!(s.read_file(&dir.join("a")).expect("a"), vec![0, 0, 0], "the retried sync saved nothing");
    }
}
