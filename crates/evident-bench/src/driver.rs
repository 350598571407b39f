//! The closed-loop load driver shared by every system: `n` threads, each with its own state
//! (a connection, its streams), start together, each runs its operation back to back until the
//! duration is up, and every operation's latency is kept. Throughput is operations over the
//! wall time from the common start to the last thread's end.

use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::stats::Latencies;

/// What a timed run did.
#[derive(Debug)]
pub struct Outcome {
    /// Operations completed.
    pub ops: u64,
    /// Wall time from the start to the last thread's end.
    pub elapsed: Duration,
    /// Every operation's latency.
    pub latencies: Latencies,
}

impl Outcome {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `op` on `threads` threads for `duration`. `setup(thread)` builds each thread's state
/// before the clock starts; `op(state, thread, iteration)` is one timed operation.
pub fn run<S, Setup, Op>(threads: usize, duration: Duration, setup: Setup, op: Op) -> Result<Outcome>
where
    Setup: Fn(usize) -> Result<S> + Sync,
    Op: Fn(&mut S, usize, u64) -> Result<()> + Sync,
{
    let barrier = Barrier::new(threads + 1);
    // One start for every thread and for the wall time: whichever leaves the barrier first
    // reads the clock. (Each reading its own clock let a descheduled main thread start the
    // wall time after the workers, so a run could measure less than its duration.)
    let start_cell = OnceLock::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, setup, op, start_cell) = (&barrier, &setup, &op, &start_cell);
                scope.spawn(move || -> Result<(u64, Latencies)> {
                    let state = setup(t);
                    barrier.wait();
                    let deadline = *start_cell.get_or_init(Instant::now) + duration;
                    let mut state = state?;
                    let mut lat = Latencies::with_capacity(1 << 14);
                    let mut i = 0u64;
                    loop {
                        let t0 = Instant::now();
                        if t0 >= deadline {
                            break;
                        }
                        op(&mut state, t, i)?;
                        lat.push(t0.elapsed());
                        i += 1;
                    }
                    drop(state);
                    Ok((i, lat))
                })
            })
            .collect();
        barrier.wait();
        let start = *start_cell.get_or_init(Instant::now);
        let mut ops = 0;
        let mut latencies = Latencies::with_capacity(1 << 16);
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok((n, lat))) => {
                    ops += n;
                    latencies.merge(lat);
                }
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(anyhow!("a load thread panicked"));
                }
            }
        }
        let elapsed = start.elapsed();
        match first_err {
            Some(e) => Err(e),
            None => Ok(Outcome { ops, elapsed, latencies }),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_until_the_deadline() {
        let out = run(3, Duration::from_millis(50), Ok, |_, _, _| {
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        })
        .expect("run");
        assert!(out.ops >= 3 * 10, "{}", out.ops);
        assert_eq!(out.latencies.len() as u64, out.ops);
        assert!(out.elapsed >= Duration::from_millis(50));
    }

    #[test]
    fn a_failing_setup_is_reported_without_deadlock() {
        let err =
            run(2, Duration::from_millis(10), |t| if t == 1 { Err(anyhow!("no")) } else { Ok(()) }, |_, _, _| Ok(()))
                .unwrap_err();
        assert_eq!(err.to_string(), "no");
    }
}
