//! The threads that serve HTTP connections: each runs its own single-threaded tokio runtime,
//! and every accepted connection lives on one of them for its whole life (thread per core, as
//! actix-web and Seastar-style servers do).
//!
//! Why not the shared multi-threaded runtime that runs the Kafka listener. Its work-stealing
//! workers wake each other whenever one goes from idle to busy (a parked worker is told to go
//! looking for work, finds none and parks again), so on a lightly loaded server each request
//! cost two extra context switches on top of its own, and on a virtual machine those switches
//! were most of an append's CPU (profiles: a 1-client append 310 µs of server CPU with two
//! workers, 127 µs with one). A connection pinned to one thread is read, served and answered
//! there with no other thread woken; with the log's inline commit (evident-log's module
//! `log`) an append on an idle server wakes nothing at all. Load spreads over the threads by
//! connection, round robin, which suits keep-alive HTTP clients; work that must not block a
//! thread's other connections (long reads) still goes to its runtime's blocking pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;

/// How long a connection thread's runtime waits for its blocking tasks when it ends.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A unit of work for a connection thread: called on that thread inside its runtime, where it
/// registers its socket and spawns its task.
pub type Job = Box<dyn FnOnce() + Send>;

/// The connection threads. Dropping the value (after the accept loop has stopped) ends them
/// once their queues are empty; tasks still running are then cancelled with their runtime.
pub struct ConnectionThreads {
    queues: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
    threads: Vec<JoinHandle<()>>,
}

impl ConnectionThreads {
    /// Starts `count` threads (at least one).
    pub fn start(count: usize) -> anyhow::Result<Self> {
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting an HTTP connection thread's runtime")?;
            // Unbounded, but only accepted connections under the connection cap are queued.
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let thread = std::thread::Builder::new()
                .name(format!("evident-http-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some(job) = rx.recv().await {
                            job();
                        }
                    });
                    // Connections still open after the shutdown timeout are cut here, as the
                    // shared runtime's shutdown cuts its own; a plain drop would wait forever
                    // for blocking reads.
                    runtime.shutdown_timeout(SHUTDOWN_GRACE);
                })
                .context("starting an HTTP connection thread")?;
            queues.push(tx);
            threads.push(thread);
        }
        Ok(Self { queues, next: AtomicUsize::new(0), threads })
    }

    /// Runs `job` on the next thread, round robin. Returns false if that thread has ended
    /// (only after a panic there); the job is then dropped, closing its connection.
    pub fn run(&self, job: Job) -> bool {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        self.queues[i].send(job).is_ok()
    }
}

impl Drop for ConnectionThreads {
    fn drop(&mut self) {
        self.queues.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
