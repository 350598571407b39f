//! The single-writer ratio against the raw `fdatasync` rate, taken in interleaved short rounds
//! (raw overwrite, evident with one writer, raw growing file, and again), so that both sides of
//! each ratio see the same flush regime: on this machine an `fdatasync` costs ~0.1-0.2 ms when
//! the host is quiet and ~4 ms when neighbours write, and the regime can change within a minute,
//! which makes a ratio of two figures taken minutes apart meaningless.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::evident::Writes;
use crate::physical::{self, Mode};
use crate::report::{num, Key, Measurement, System};
use crate::stats::median;

/// Runs `rounds` rounds of `round` each; returns the median ratios (evident over raw
/// pre-written, evident over raw growing file).
pub fn single_writer_vs_raw(
    raw_dir: &Path,
    writes: &Writes,
    rounds: usize,
    round: Duration,
) -> Result<Vec<Measurement>> {
    let (mut over, mut grow, mut ev) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        over.push(physical::sync_4k(raw_dir, Mode::Overwrite, round, Key::SyncOverwrite)?.rate);
        ev.push(writes.append_single(1, round)?.rate);
        grow.push(physical::sync_4k(raw_dir, Mode::Grow, round, Key::SyncGrow)?.rate);
    }
    let list = |v: &[f64]| v.iter().map(|x| num(*x)).collect::<Vec<_>>().join(", ");
    let row = |raw: &[f64], grow: bool| {
        let ratios: Vec<f64> = ev.iter().zip(raw).map(|(e, r)| e / r).collect();
        Measurement::new(
            System::Evident,
            Key::Paired { grow },
            format!(
                "1 writer / raw 4 KiB write+fdatasync ({}), interleaved rounds",
                if grow { "growing file" } else { "pre-written file" }
            ),
            median(&ratios),
            "x",
        )
        .note(format!(
            "median of {rounds} rounds of {:.1} s; evident events/s: {}; raw syncs/s: {}",
            round.as_secs_f64(),
            list(&ev),
            list(raw)
        ))
    };
    Ok(vec![row(&over, false), row(&grow, true)])
}
