//! One retry policy for everything the library retries: a command whose append lost a race (the
//! repository) and an event whose projection handler failed (the runner). Both are "try up to N
//! times, waiting a doubling, capped delay between tries"; one type means one set of names, one
//! backoff formula and one place to document them. Only the defaults differ, because the two
//! failures differ: a lost race clears within milliseconds, a failing handler usually waits on
//! something outside (a database, a service) that needs longer.

use std::time::Duration;

use rand::Rng;

/// How often to try an operation that may fail for a while, and how long to wait between tries:
/// exponential backoff from `initial_backoff`, doubling after each failed attempt up to
/// `max_backoff`, with "equal jitter" (a wait is uniformly between half and all of that), so
/// that writers which lost the same race, or runners failing on the same database, do not
/// retry in lockstep.
///
/// [`RetryPolicy::default`] is the repository's policy for lost races (10 attempts, 1 ms
/// doubling to 100 ms); [`RetryPolicy::handler`] the projection runner's for failing handlers
/// (3 attempts, 50 ms doubling to 2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first included); at least 1 (0 counts as 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles after each.
    pub initial_backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// The repository's policy for a command whose append lost a race.
    fn default() -> Self {
        Self { max_attempts: 10, initial_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(100) }
    }
}

impl RetryPolicy {
    /// No retry: one attempt (a repository returns a lost race as
    /// [`Error::WrongExpectedVersion`](crate::Error::WrongExpectedVersion); a runner parks the
    /// event at its first failure).
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The projection runner's policy for a failing handler.
    pub fn handler() -> Self {
        Self { max_attempts: 3, initial_backoff: Duration::from_millis(50), max_backoff: Duration::from_secs(2) }
    }

    /// The wait after failed attempt `attempt` (1-based): exponential, capped, with equal jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max_backoff);
        let half = capped / 2;
        half + half.mul_f64(rand::thread_rng().gen::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy::handler();
        for (attempt, full) in [(1, 50), (2, 100), (3, 200), (6, 1600), (7, 2000), (40, 2000)] {
            let full = Duration::from_millis(full);
            for _ in 0..20 {
                let wait = policy.backoff(attempt);
                assert!(
                    wait >= full / 2 && wait <= full,
                    "attempt {attempt}: {wait:?} outside [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        assert_eq!(RetryPolicy::none().max_attempts, 1);
    }
}
