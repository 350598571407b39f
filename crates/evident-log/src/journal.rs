//! The journal: one append-only, checksummed log of frames for the whole store, cut into
//! segment files named by the journal position they start at. A position is a byte address in
//! the journal as a whole; segment `S` holds positions `[S, S + file length)` and its first 64
//! bytes are its header, so frames start at `S + 64`.
//!
//! Why one journal rather than a file per partition: a single file makes group commit one
//! `fdatasync` for every topic, gives the store-wide commit sequence for free (journal order),
//! and turns recovery into one forward scan (the raft-engine and KurrentDB design).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::storage::{Storage, StorageFile};

/// Bytes of a segment's header.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 64;
const SEGMENT_MAGIC: &[u8; 16] = b"EVIDENT JOURNAL\0";
const SEGMENT_FORMAT: u32 = 1;
const SUFFIX: &str = ".journal";

/// One segment file.
#[derive(Clone)]
pub(crate) struct Segment {
    /// Journal position of the file's first byte (its header).
    pub base: u64,
    /// Path.
    pub path: PathBuf,
    /// Open file.
    pub file: Arc<dyn StorageFile>,
    /// The file mapped read-only, `segment_size_max` bytes or the file's length if larger,
    /// when the storage supports it: reads then cost no system call and no copy.
    pub map: Option<bytes::Bytes>,
}

/// The segment files of the journal, in position order.
pub(crate) struct Journal {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    map_len: u64,
    pub segments: Vec<Segment>,
}

/// The header every segment starts with.
pub(crate) fn encode_segment_header(base: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..16].copy_from_slice(SEGMENT_MAGIC);
    h[16..20].copy_from_slice(&SEGMENT_FORMAT.to_le_bytes());
    h[24..32].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header against the base its file name gives.
pub(crate) fn check_segment_header(h: &[u8], base: u64) -> std::result::Result<(), String> {
    if h.len() < SEGMENT_HEADER_LEN as usize {
        return Err("segment header truncated".into());
    }
    let crc = u32::from_le_bytes([h[60], h[61], h[62], h[63]]);
    if crc32c::crc32c(&h[..60]) != crc {
        return Err("segment header checksum mismatch".into());
    }
    if &h[0..16] != SEGMENT_MAGIC {
        return Err("not an evident journal segment".into());
    }
    let format = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
    if format != SEGMENT_FORMAT {
        return Err(format!("segment format {format} is not supported by this version (expects {SEGMENT_FORMAT})"));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[24..32]);
    if u64::from_le_bytes(b) != base {
        return Err(format!("segment header names base {}, file name says {base}", u64::from_le_bytes(b)));
    }
    Ok(())
}

impl Journal {
    /// Opens the segments present in `dir` (creating `dir` if needed). Headers are checked by
    /// recovery, not here.
    pub fn open(storage: Arc<dyn Storage>, dir: &Path, map_len: u64) -> Result<Self> {
        storage.create_dir_all(dir)?;
        let mut segments = Vec::new();
        for name in storage.list_dir(dir)? {
            let Some(stem) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            let base: u64 = stem.parse().map_err(|_| Error::Corrupted {
                file: dir.join(&name),
                offset: 0,
                what: "journal segment name is not a position".into(),
            })?;
            let path = dir.join(&name);
            let file = storage.open(&path, false)?;
            let map = file.map(map_len.max(file.len()?))?;
            segments.push(Segment { base, path, file, map });
        }
        segments.sort_by_key(|s| s.base);
        Ok(Self { storage, dir: dir.to_path_buf(), map_len, segments })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the segment starting at `base`.
    pub fn segment_path(&self, base: u64) -> PathBuf {
        self.dir.join(format!("{base:020}{SUFFIX}"))
    }

    /// Creates a segment at `base` durably (header written and synced, directory synced) before
    /// anything is written into it: rule "new files need a directory fsync".
    ///
    /// Failures say what they left behind. `Error::Io`: nothing (the file could not be opened,
    /// or its header could not be written and the file was removed again, durably), so the
    /// caller may go on (out of descriptors, a full disk). `Error::Poisoned`: a sync failed,
    /// or the clean-up did, and the directory's state on disk is unknown.
    pub fn create_segment(&mut self, base: u64) -> Result<()> {
        if let Some(last) = self.segments.last() {
            assert!(base > last.base, "segments are created in position order");
        }
        let path = self.segment_path(base);
        let file = self.storage.open(&path, true)?;
        if let Err(e) = file.set_len(0).and_then(|()| file.write_all_at(&encode_segment_header(base), 0)) {
            drop(file);
            return match self.storage.remove_file(&path).and_then(|()| self.storage.sync_dir(&self.dir)) {
                Ok(()) => Err(Error::Io(e)),
                Err(cleanup) => Err(Error::Poisoned(format!(
                    "{e}; removing the unfinished segment {} failed: {cleanup}",
                    path.display()
                ))),
            };
        }
        let unknown =
            |e: std::io::Error| Error::Poisoned(format!("syncing the new segment {} failed: {e}", path.display()));
        file.sync_data().map_err(unknown)?;
        self.storage.sync_dir(&self.dir).map_err(unknown)?;
        let map = file.map(self.map_len)?;
        self.segments.push(Segment { base, path, file, map });
        Ok(())
    }

    /// The segment holding position `pos`.
    pub fn segment_for(&self, pos: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.base <= pos);
        i.checked_sub(1).and_then(|i| self.segments.get(i))
    }

    /// Reads `buf.len()` bytes at journal position `pos` (within one segment).
    pub fn read(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let seg = self.segment_for(pos).ok_or_else(|| Error::Corrupted {
            file: self.dir.clone(),
            offset: pos,
            what: "no segment holds this journal position".into(),
        })?;
        seg.file.read_exact_at(buf, pos - seg.base).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::Corrupted {
                    file: seg.path.clone(),
                    offset: pos - seg.base,
                    what: "file is shorter than its index says".into(),
                }
            } else {
                Error::Io(e)
            }
        })
    }

    /// Syncs the segments from index `first` on, and the directory: recovery's way of making
    /// sure bytes it read from the page cache are on disk before it relies on them.
    pub fn sync_from(&self, first: usize) -> Result<()> {
        for seg in self.segments.iter().skip(first) {
            seg.file.sync_data()?;
        }
        self.storage.sync_dir(&self.dir)?;
        Ok(())
    }

    /// Removes every segment after index `keep` durably (torn-tail recovery).
    pub fn remove_segments_after(&mut self, keep: usize) -> Result<()> {
        while self.segments.len() > keep + 1 {
            if let Some(seg) = self.segments.pop() {
                self.storage.remove_file(&seg.path)?;
            }
        }
        self.storage.sync_dir(&self.dir)?;
        Ok(())
    }

    /// Removes the last segment durably (a segment whose creation was torn).
    pub fn remove_last_segment(&mut self) -> Result<()> {
        if let Some(seg) = self.segments.pop() {
            self.storage.remove_file(&seg.path)?;
            self.storage.sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trip_and_checks() {
        let h = encode_segment_header(4096);
        assert_eq!(check_segment_header(&h, 4096), Ok(()));
        assert!(check_segment_header(&h, 0).is_err());
        let mut bad = h;
        bad[3] ^= 1;
        assert!(check_segment_header(&bad, 4096).is_err());
        assert!(check_segment_header(&[0; 64], 0).is_err());
    }
}
