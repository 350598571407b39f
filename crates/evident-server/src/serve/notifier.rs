//! Wakes live subscriptions and Kafka fetches when new events commit. The log's commit thread
//! publishes the visible commit sequence in a `watch` channel through a commit hook; every
//! subscription awaits that channel, so a thousand idle subscribers cost nothing but their
//! task, and a subscriber never blocks the commit path.
//!
//! A hook rather than a thread waiting on `Log::wait_for_sequence`: such a thread was woken by
//! every commit round only to pass the number on, a context switch per append even with no
//! subscriber at all. `watch::Sender::send_if_modified` from the commit thread is a lock and a
//! few atomics, and wakes only the tasks that wait.

use std::sync::Arc;

use evident_log::Log;
use tokio::sync::watch;

/// The installed hook.
pub struct Notifier {
    rx: watch::Receiver<u64>,
    log: Arc<Log>,
}

impl Notifier {
    /// Starts publishing `log`'s visible commit sequence.
    pub fn start(log: Arc<Log>) -> Self {
        let (tx, rx) = watch::channel(log.stats().next_sequence);
        log.set_commit_hook(Some(Box::new(move |visible| {
            tx.send_if_modified(|seen| {
                let moved = *seen != visible;
                *seen = visible;
                moved
            });
        })));
        Self { rx, log }
    }

    /// A receiver of the visible commit sequence (one past the last readable event).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.rx.clone()
    }

    /// Removes the hook: the channel closes, so whoever still waits on it learns that no
    /// commit will be announced any more.
    pub fn stop(self) {
        self.log.set_commit_hook(None);
    }
}
