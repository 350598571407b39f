//! Restart: how long a store holding N events (10,000,000 by default) takes to open, and how
//! much memory it holds once open. The store is loaded with batches of 1,000 events carrying
//! event ids (so the id index is as big as it gets), closed, and then opened by a fresh child
//! process (this binary, re-executed with a hidden subcommand), so the resident memory it
//! reports is the open store's alone and not the loader's. Opens are measured with the page
//! cache warm, with it dropped (root only), and with the index checkpoint removed (a full
//! journal replay, the worst case after a damaged checkpoint).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use evident_core::batch::BatchBuilder;
use evident_log::{Log, LogConfig, TopicConfig};

use crate::machine;
use crate::payload;
use crate::report::{num, Key, Measurement, System};

const TOPIC: &str = "restart";
const BATCH: u64 = 1000;
/// The marker the child's report line starts with.
const PROBE_TAG: &str = "evident-open-probe";

/// Loads `events` events into a new store in `dir` with `writers` threads, then closes it.
pub fn load(dir: &Path, events: u64, writers: u64) -> Result<Measurement> {
    let log =
        Log::open(dir, LogConfig::default()).with_context(|| format!("opening evident log in {}", dir.display()))?;
    log.create_topic(TOPIC, TopicConfig::default())?;
    let streams = (events / 10).max(BATCH);
    let batches = events.div_ceil(BATCH);
    let next = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let now = payload::now_ms();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= batches {
                            return Ok(());
                        }
                        let mut b = BatchBuilder::new();
                        for g in k * BATCH..((k + 1) * BATCH).min(events) {
                            let key = format!("s{}", g % streams);
                            b.push(payload::record(key.as_bytes(), payload::event_id(7, g), now));
                        }
                        log.append_batch(TOPIC, 0, &b.build(), None)?;
                        if (k + 1).is_multiple_of((batches / 10).max(1)) {
                            eprintln!(
                                "    loaded {} of {} events ({:.0} s)",
                                num(((k + 1) * BATCH).min(events) as f64),
                                num(events as f64),
                                start.elapsed().as_secs_f64()
                            );
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a loader panicked"))??;
        }
        Ok(())
    })?;
    let load_secs = start.elapsed().as_secs_f64();
    let stats = log.stats();
    let t = Instant::now();
    log.close()?;
    let close_secs = t.elapsed().as_secs_f64();
    let checkpoint_mb = std::fs::metadata(dir.join("index.checkpoint")).map_or(0.0, |m| m.len() as f64 / 1e6);
    Ok(Measurement::new(
        System::Evident,
        Key::RestartLoad,
        format!(
            "load {} events ({} streams, batches of 1,000 with ce_ids, {writers} writers)",
            num(events as f64),
            num(streams as f64)
        ),
        events as f64 / load_secs,
        "events/s",
    )
    .mb(stats.bytes_written as f64 / load_secs / 1e6)
    .note(format!(
        "{load_secs:.1} s; journal {:.0} MB; {} checkpoints written during the load; close {close_secs:.1} s; checkpoint file {checkpoint_mb:.0} MB",
        stats.bytes_written as f64 / 1e6,
        stats.checkpoints
    )))
}

/// What the child saw.
#[derive(Debug, Default)]
struct Probe {
    open_s: f64,
    rss_before_kib: u64,
    rss_kib: u64,
    hwm_kib: u64,
    events: u64,
    checkpoint_loaded: bool,
    replayed_mb: f64,
    close_s: f64,
}

fn parse_probe(stdout: &str) -> Result<Probe> {
    let Some(line) = stdout.lines().find(|l| l.starts_with(PROBE_TAG)) else {
        bail!("the open probe printed no report: {stdout}");
    };
    let mut p = Probe::default();
    for field in line.split_whitespace().skip(1) {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        match k {
            "open_s" => p.open_s = v.parse()?,
            "rss_before_kib" => p.rss_before_kib = v.parse()?,
            "rss_kib" => p.rss_kib = v.parse()?,
            "hwm_kib" => p.hwm_kib = v.parse()?,
            "events" => p.events = v.parse()?,
            "checkpoint_loaded" => p.checkpoint_loaded = v.parse()?,
            "replayed_mb" => p.replayed_mb = v.parse()?,
            "close_s" => p.close_s = v.parse()?,
            _ => {}
        }
    }
    Ok(p)
}

/// Opens the store in a fresh process and reports the open time and memory. `cold` drops the
/// page cache first; `checkpoint: false` removes the index checkpoint first. Returns None when
/// the page cache cannot be dropped (not root).
pub fn probe(dir: &Path, events: u64, cold: bool, checkpoint: bool) -> Result<Option<Measurement>> {
    if !checkpoint {
        let path = dir.join("index.checkpoint");
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    if cold && !machine::drop_page_cache() {
        return Ok(None);
    }
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).arg("open-probe").arg("--dir").arg(dir).output().context("running the open probe")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the open probe failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    }
    let p = parse_probe(&stdout)?;
    if p.events != events {
        bail!("the reopened store holds {} events, expected {events}", p.events);
    }
    if p.checkpoint_loaded != checkpoint {
        bail!("checkpoint_loaded = {} but expected {checkpoint}", p.checkpoint_loaded);
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(Some(
        Measurement::new(
            System::Evident,
            Key::Open { cold, checkpoint },
            format!(
                "open {} events in a fresh process ({}, {})",
                num(events as f64),
                if cold { "page cache dropped" } else { "page cache warm" },
                if checkpoint {
                    "from the index checkpoint"
                } else {
                    "checkpoint removed: full journal replay"
                }
            ),
            p.open_s,
            "s",
        )
        .note(format!(
            "VmRSS after open {:.0} MiB ({:.0} MiB before open; peak {:.0} MiB); journal replayed {:.0} MB; close {:.1} s",
            mib(p.rss_kib),
            mib(p.rss_before_kib),
            mib(p.hwm_kib),
            p.replayed_mb,
            p.close_s
        )),
    ))
}

/// The child side of [`probe`]: opens the store, prints one report line, closes it.
pub fn child_main(dir: &Path) -> Result<()> {
    let rss_before_kib = machine::status_kib("VmRSS").unwrap_or(0);
    let t = Instant::now();
    let log = Log::open(dir, LogConfig::default()).with_context(|| format!("opening {}", dir.display()))?;
    let open = t.elapsed();
    let rss_kib = machine::status_kib("VmRSS").unwrap_or(0);
    let hwm_kib = machine::status_kib("VmHWM").unwrap_or(0);
    let report = log.recovery_report().clone();
    let events = log.stats().next_sequence;
    let t = Instant::now();
    log.close()?;
    let close: Duration = t.elapsed();
    println!(
        "{PROBE_TAG} open_s={:.6} rss_before_kib={rss_before_kib} rss_kib={rss_kib} hwm_kib={hwm_kib} events={events} checkpoint_loaded={} replayed_mb={:.1} close_s={:.3}",
        open.as_secs_f64(),
        report.checkpoint_loaded,
        report.replay.bytes as f64 / 1e6,
        close.as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_line_parses() {
        let p = parse_probe(
            "noise\nevident-open-probe open_s=1.5 rss_before_kib=10 rss_kib=2048 hwm_kib=4096 events=7 checkpoint_loaded=true replayed_mb=0.0 close_s=0.2\n",
        )
        .expect("parse");
        assert_eq!(p.open_s, 1.5);
        assert_eq!(p.rss_kib, 2048);
        assert_eq!(p.events, 7);
        assert!(p.checkpoint_loaded);
        assert!(parse_probe("nothing").is_err());
    }
}
