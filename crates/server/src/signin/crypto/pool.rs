//! Argon2id on a small, fixed pool of threads, each keeping its own memory for every hash it
//! computes: no sign-in allocates the 19 MiB an Argon2id hash needs, so the broker's memory after
//! any number of sign-ins is what it was at start, and no more hashes run at once than there are
//! workers. More work than that waits in a bounded queue; a caller that finds the queue full
//! waits for room, and one that gives up (its request was dropped) leaves its hash uncomputed.
//!
//! The pool belongs to the process, not to an [`crate::App`]: memory is a process's, and every
//! service of the process shares the same few workers. `Server::start` starts it
//! ([`super::password::start_pool`]) with the configured number of workers, allocating and
//! writing their memory then, so that a broker that cannot have it finds out at start rather than
//! in an emergency; if nothing started it, the first hash starts it with [`DEFAULT_WORKERS`].

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::Block;
use tokio::sync::{mpsc, oneshot};

use super::AuthCryptoError;
use super::password::blocks;

/// Workers when nothing says otherwise: two hashes at once, 38 MiB at the current parameters.
pub const DEFAULT_WORKERS: usize = 2;
/// Hashes that may wait for a worker before a caller waits for room in the queue.
const QUEUE: usize = 64;

/// One hash (or verification) to compute with a worker's memory.
type Work = Box<dyn FnOnce(&mut [Block]) + Send>;

struct Pool {
    queue: mpsc::Sender<Work>,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Starts the pool with `workers` threads (at least one) if it is not running yet, each with the
/// memory of one hash allocated and written now. Returns how many workers are ready, or `None`
/// if the pool was running already (and nothing changed). It waits for the workers' memory: call
/// it off the async threads.
pub(super) fn start(workers: usize) -> Option<usize> {
    let mut ready = None;
    POOL.get_or_init(|| {
        let (pool, n) = Pool::spawn(workers.max(1), blocks());
        ready = Some(n);
        pool
    });
    ready
}

/// Runs `f` on a worker with its memory, once one is free, and returns what it returned.
pub(super) async fn run<T: Send + 'static>(
    f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
) -> Result<T, AuthCryptoError> {
    let pool = match POOL.get() {
        Some(p) => p,
        None => {
            tokio::task::spawn_blocking(|| start(DEFAULT_WORKERS))
                .await
                .map_err(|_| AuthCryptoError::TaskFailed)?;
            POOL.get().ok_or(AuthCryptoError::TaskFailed)?
        }
    };
    let (reply, answer) = oneshot::channel();
    let work: Work = Box::new(move |memory| {
        // Nobody waits for this one any more (the request was dropped): spare the work.
        if reply.is_closed() {
            return;
        }
        let _ = reply.send(f(memory));
    });
    pool.queue
        .send(work)
        .await
        .map_err(|_| AuthCryptoError::TaskFailed)?;
    answer.await.map_err(|_| AuthCryptoError::TaskFailed)
}

impl Pool {
    fn spawn(workers: usize, blocks: usize) -> (Self, usize) {
        let (queue, rx) = mpsc::channel::<Work>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<bool>();
        for i in 0..workers {
            let rx = Arc::clone(&rx);
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&rx, ready, blocks));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing worker");
            }
        }
        drop(ready_tx);
        // Every worker that started says whether it has its memory, then lets go of its sender:
        // this ends once each has.
        let ready = ready_rx.iter().filter(|ok| *ok).count();
        (Self { queue }, ready)
    }
}

/// A worker: its memory, then one job at a time until the pool is gone.
fn worker(rx: &Mutex<mpsc::Receiver<Work>>, ready: std::sync::mpsc::Sender<bool>, blocks: usize) {
    let memory = memory(blocks);
    let _ = ready.send(memory.is_some());
    drop(ready);
    let Some(mut memory) = memory else {
        tracing::error!(
            mib = blocks / 1024,
            "a password hashing worker could not allocate its memory; it is not started"
        );
        return;
    };
    loop {
        // The lock is held only while waiting for the next job, never while hashing.
        let next = match rx.lock() {
            Ok(mut rx) => rx.blocking_recv(),
            Err(_) => None,
        };
        let Some(work) = next else { return };
        // A job that panics loses its answer (the caller sees `TaskFailed`), not the worker.
        if std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut memory))).is_err() {
            tracing::error!("a password hashing job panicked");
        }
        // Nothing computed from one password stays in memory until the next sign-in, which may
        // be months away. (A few milliseconds against the tens a hash takes.)
        memory.fill(Block::new());
    }
}

/// `blocks` Argon2 blocks, written once so that they are resident from now on; `None` if the
/// memory is not there.
fn memory(blocks: usize) -> Option<Vec<Block>> {
    let mut m = Vec::new();
    m.try_reserve_exact(blocks).ok()?;
    m.resize(blocks, Block::new());
    Some(m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[tokio::test]
    async fn more_work_than_the_queue_holds_waits_and_reuses_the_workers_memory() {
        let jobs: Vec<_> = (0..3 * QUEUE)
            .map(|i| {
                tokio::spawn(run(move |memory| {
                    // What a job sees: its worker's memory, whole and cleared by the last job.
                    assert_eq!(memory.len(), blocks());
                    for b in [memory.first(), memory.last()].into_iter().flatten() {
                        assert!(b.as_ref().iter().all(|w| *w == 0));
                    }
                    if let Some(b) = memory.first_mut() {
                        b.as_mut().fill(u64::try_from(i).unwrap());
                    }
                    (memory.as_ptr().addr(), i)
                }))
            })
            .collect();
        let mut buffers = HashSet::new();
        for (i, job) in jobs.into_iter().enumerate() {
            let (buffer, j) = job.await.unwrap().unwrap();
            assert_eq!(i, j);
            buffers.insert(buffer);
        }
        assert!(
            buffers.len() <= DEFAULT_WORKERS,
            "{} buffers for {DEFAULT_WORKERS} workers",
            buffers.len()
        );
    }
}
