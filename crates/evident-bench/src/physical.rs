//! The physical limits of the disk the stores live on, measured with plain files in the same
//! data directory, in the same run: how many 4 KiB `write` + `fdatasync` pairs one thread gets
//! per second (overwriting a pre-written, synced file, and growing a file, which adds an ext4
//! journal commit for the size change), and the sequential bandwidth when every 1 MiB write is
//! followed by an `fdatasync`. Nothing a store does durably can beat these.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::report::{Key, Measurement, System};
use crate::stats::Latencies;

/// How the 4 KiB writes land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Overwrite a pre-written, synced region (no metadata changes).
    Overwrite,
    /// Append at the end: every write grows the file.
    Grow,
}

const BLOCK: usize = 4096;
/// Size of the pre-written file the overwrite test cycles through.
const PREWRITTEN: u64 = 64 << 20;

fn create(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// 4 KiB `write` + `fdatasync` in a loop for `duration`; `key` names the row (the same test is
/// run before and after the write workloads).
pub fn sync_4k(dir: &Path, mode: Mode, duration: Duration, key: Key) -> Result<Measurement> {
    let path = dir.join(match mode {
        Mode::Overwrite => "raw-overwrite.dat",
        Mode::Grow => "raw-grow.dat",
    });
    let file = create(&path)?;
    if mode == Mode::Overwrite {
        let chunk = vec![0u8; 1 << 20];
        for i in 0..PREWRITTEN / chunk.len() as u64 {
            file.write_all_at(&chunk, i * chunk.len() as u64)?;
        }
        file.sync_all()?;
    }
    let block = vec![0xA5u8; BLOCK];
    let mut syncs = Latencies::with_capacity(50_000);
    let mut ops = Latencies::with_capacity(50_000);
    let mut offset = 0u64;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        let t = Instant::now();
        file.write_all_at(&block, offset)?;
        let s = Instant::now();
        file.sync_data()?;
        syncs.push(s.elapsed());
        ops.push(t.elapsed());
        n += 1;
        offset += BLOCK as u64;
        if mode == Mode::Overwrite && offset >= PREWRITTEN {
            offset = 0;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    let (p50, p99) = syncs.p50_p99();
    let (op50, _) = ops.p50_p99();
    let what = match (mode, key) {
        (Mode::Overwrite, Key::SyncOverwriteAfter) => {
            "4 KiB write + fdatasync, pre-written file (again, after the write workloads)"
        }
        (Mode::Overwrite, _) => "4 KiB write + fdatasync, pre-written file",
        (Mode::Grow, _) => "4 KiB write + fdatasync, growing file",
    };
    Ok(Measurement::new(System::Disk, key, what, n as f64 / elapsed, "syncs/s")
        .latency(p50, p99)
        .mb(n as f64 * BLOCK as f64 / elapsed / 1e6)
        .note(format!("p50/p99 are of fdatasync alone; write+fdatasync p50 {}", crate::report::dur(op50))))
}

/// 1 MiB `write` + `fdatasync` in a loop for `duration`, growing the file.
pub fn seq_write_1m(dir: &Path, duration: Duration) -> Result<Measurement> {
    let path = dir.join("raw-seq.dat");
    let file = create(&path)?;
    let chunk = vec![0x5Au8; 1 << 20];
    let mut syncs = Latencies::with_capacity(10_000);
    let mut offset = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        file.write_all_at(&chunk, offset)?;
        let s = Instant::now();
        file.sync_data()?;
        syncs.push(s.elapsed());
        offset += chunk.len() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    let (p50, p99) = syncs.p50_p99();
    let mb = offset as f64 / elapsed / 1e6;
    Ok(Measurement::new(
        System::Disk,
        Key::SeqWrite1M,
        "sequential 1 MiB writes, fdatasync after each",
        syncs.len() as f64 / elapsed,
        "syncs/s",
    )
    .latency(p50, p99)
    .mb(mb)
    .note("p50/p99 are of fdatasync alone"))
}
