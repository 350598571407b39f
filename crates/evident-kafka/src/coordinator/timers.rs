//! The task that wakes the coordinator when something is due. It decides nothing: every
//! deadline (join phase, sync phase, session, unused member id) is a field of a group in the
//! injected clock's milliseconds, and `Coordinator::tick` compares them with `Clock::now_ms`.
//! This task only sleeps until the earliest of them (at most [`SWEEP_INTERVAL`], for sessions)
//! and is woken early when a transition sets a new one. Tests run no such task: they move a
//! `ManualClock` and call `tick` themselves, so no test waits on the wall clock.
//!
//! Why not tokio's paused clock: the group store expires members and the broker allocates
//! producer ids on the injected `Clock`, so a paused tokio clock would be a second clock that
//! tests must keep in step with the first. One clock, and timers as data, keep one time.

use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use super::Inner;

/// Longest sleep between ticks: a session ends at most this late.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Starts the wake-up task on the current runtime; it ends when the coordinator is dropped.
/// False outside a runtime (the caller tries again later).
pub(super) fn spawn(inner: Weak<Inner>) -> bool {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    runtime.spawn(async move {
        // Sessions are swept on a fixed period, whatever wakes the task in between.
        let mut sweep_at = Instant::now() + SWEEP_INTERVAL;
        loop {
            let (wake_at, rearmed) = {
                let Some(inner) = inner.upgrade() else { return };
                let now = inner.clock.now_ms();
                let due = inner.next_deadline().map(|at| {
                    Instant::now() + Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
                });
                (due.map_or(sweep_at, |due| due.min(sweep_at)), inner.rearmed.clone())
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                // A transition set a deadline: recompute the wake-up time.
                () = rearmed.notified() => continue,
            }
            let Some(inner) = inner.upgrade() else { return };
            inner.tick();
            if Instant::now() >= sweep_at {
                sweep_at = Instant::now() + SWEEP_INTERVAL;
            }
        }
    });
    true
}
