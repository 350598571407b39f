//! Wakes live subscriptions when new events commit. One thread waits on the log's commit
//! signal and publishes the store's visible commit sequence in a `watch` channel; every
//! subscription awaits that channel, so a thousand idle subscribers cost one thread, not a
//! thousand, and a subscriber never blocks the commit path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use evident_log::Log;
use tokio::sync::watch;

/// How long the thread waits before re-checking whether it should stop.
const POLL: Duration = Duration::from_millis(200);

/// The running notifier.
pub struct Notifier {
    rx: watch::Receiver<u64>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Notifier {
    /// Starts watching `log`.
    pub fn start(log: Arc<Log>) -> Self {
        let (tx, rx) = watch::channel(log.stats().next_sequence);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("evident-notifier".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let seen = *tx.borrow();
                    // `wait_for_sequence(s)` returns once an event with sequence >= s is visible.
                    match log.wait_for_sequence(seen, POLL) {
                        Ok(true) => {
                            tx.send_replace(log.stats().next_sequence);
                        }
                        Ok(false) => {}
                        Err(_) => return, // closed
                    }
                }
            })
            .expect("spawning the notifier thread");
        Self { rx, stop, thread }
    }

    /// A receiver of the visible commit sequence (one past the last readable event).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.rx.clone()
    }

    /// Stops the thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
