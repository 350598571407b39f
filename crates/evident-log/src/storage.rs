//! The storage seam: every byte the log reads or writes, and every fsync it asks for, goes
//! through [`Storage`] and [`StorageFile`]. [`FsStorage`] is the real thing (files on Linux);
//! [`SimStorage`] keeps written and synced bytes apart so tests can crash the "machine" at any
//! point, tear writes, flip bits and fail syncs, and then reopen the log on what a real disk
//! could have kept.
//!
//! Architecture invariant: nothing else in evident calls `fsync`/`fdatasync`; they are
//! `StorageFile::sync_data` and `Storage::sync_dir` here.

use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::Arc;

mod fs;
mod sim;

pub use fs::FsStorage;
pub use sim::{SimFaults, SimStorage};

/// A file opened for reading and writing at explicit offsets.
#[allow(clippy::len_without_is_empty)] // a file's emptiness is never asked on its own
pub trait StorageFile: Send + Sync + 'static {
    /// Reads exactly `buf.len()` bytes at `offset`; a short file is an `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// `fdatasync`: makes the file's data (and the size needed to read it) durable.
    fn sync_data(&self) -> io::Result<()>;
    /// A read-only memory map of the file's first `len` bytes, if this storage can map files.
    /// `len` may exceed the file's current length (so a growing segment is mapped once); the
    /// caller must only touch bytes it knows were written, as pages past the end of the file
    /// cannot be read. Bytes written later through [`StorageFile::write_all_at`] appear in
    /// the map.
    fn map(&self, len: u64) -> io::Result<Option<bytes::Bytes>> {
        let _ = len;
        Ok(None)
    }
}

/// A directory tree of files.
pub trait Storage: Send + Sync + 'static {
    /// Creates `path` and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of directory `path`.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for reading and writing, creating it if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to` (not durable until the directory is synced).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `fsync` on a directory: makes its entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on the directory `path`, held until the returned guard drops.
    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
}
