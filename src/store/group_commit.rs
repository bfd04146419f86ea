//! Group commit: one flush (fsync) makes every write applied before it durable, so
//! concurrent writers share flushes instead of each paying for its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::error::{Error, Result};

use super::types::Ticket;

/// Makes everything written so far durable (e.g. `sled::Db::flush`). Blocking.
pub(crate) type Flusher = Arc<dyn Fn() -> Result<()> + Send + Sync>;

#[derive(Debug, Default)]
struct State {
    /// Ticket of the last applied write.
    written: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A flush is running.
    flushing: bool,
    /// The last failed flush: tickets up to `.0` that are not durable get this error.
    failed: Option<(u64, String)>,
    /// Whether the latest flush to finish failed.
    last_failed: bool,
}

/// Shared flush coordinator. Writers take a [`Ticket`] after applying their write, then wait
/// until a flush that started after that write has finished.
///
/// Protocol: a waiter whose ticket is not durable first yields once to the scheduler (so
/// writers that are ready apply their writes), then, if no flush is running, starts one on a
/// blocking thread; the flush covers every ticket issued when it begins. Writers arriving
/// while it runs wait for the next flush, which then covers all of them. The flush task
/// updates the state itself, so a cancelled waiter never leaves the flag stuck.
pub(crate) struct GroupCommit {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    notify: Notify,
    flusher: Flusher,
    flushes: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain counters updated in single statements; a panic elsewhere while
        // holding the lock cannot leave it half-updated, so a poisoned lock is still valid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the end of a flush covering tickets up to `target`; `error` when it failed.
    /// `background`: it was the shared flush started by [`GroupCommit::wait`].
    fn finish(&self, target: u64, error: Option<String>, background: bool) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.lock();
            if background {
                st.flushing = false;
            }
            st.last_failed = error.is_some();
            match error {
                None => st.durable = st.durable.max(target),
                Some(msg) => st.failed = Some((target, msg)),
            }
        }
        self.notify.notify_waiters();
    }
}

impl GroupCommit {
    /// A coordinator flushing with `flusher`.
    pub(crate) fn new(flusher: Flusher) -> Self {
        GroupCommit {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                notify: Notify::new(),
                flusher,
                flushes: AtomicU64::new(0),
            }),
        }
    }

    /// Registers a write that has just been applied; its ticket is durable after the next
    /// flush that starts from now on.
    pub(crate) fn written(&self) -> Ticket {
        let mut st = self.inner.lock();
        st.written += 1;
        Ticket(st.written)
    }

    /// Flushes now on the calling thread, covering every write applied so far.
    pub(crate) fn flush_sync(&self) -> Result<()> {
        let target = self.inner.lock().written;
        let result = (self.inner.flusher)();
        self.inner
            .finish(target, result.as_ref().err().map(|e| e.to_string()), false);
        result
    }

    /// Makes `ticket` durable on the calling thread: returns at once when a finished flush
    /// covers it already, flushes now otherwise (covering every write applied so far, so
    /// the callers after it in one batch return at once).
    pub(crate) fn flush_through(&self, ticket: Ticket) -> Result<()> {
        if self.inner.lock().durable >= ticket.0 {
            return Ok(());
        }
        self.flush_sync()
    }

    /// Whether the latest flush to finish failed (false before the first).
    pub(crate) fn last_flush_failed(&self) -> bool {
        self.inner.lock().last_failed
    }

    /// Number of flushes run so far.
    pub(crate) fn flushes(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }

    /// Waits until `ticket` is durable, starting a shared flush when none is running.
    ///
    /// # Errors
    /// [`Error::Storage`] when the flush covering the ticket failed.
    pub(crate) async fn wait(&self, ticket: Ticket) -> Result<()> {
        let mut yielded = false;
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Register before reading the state, so a notification between the read and the
            // await is not lost.
            notified.as_mut().enable();
            {
                let mut st = self.inner.lock();
                if st.durable >= ticket.0 {
                    return Ok(());
                }
                if let Some((through, msg)) = &st.failed {
                    if *through >= ticket.0 {
                        return Err(Error::Storage(format!("flush failed: {msg}")));
                    }
                }
                if !st.flushing && yielded {
                    st.flushing = true;
                    let inner = Arc::clone(&self.inner);
                    // The flush task updates the state itself and runs to completion even if
                    // this waiter is cancelled; the handle is not needed.
                    drop(tokio::task::spawn_blocking(move || {
                        // Read the target when the flush really starts: every write applied
                        // by now (ticket <= target) is covered by it.
                        let target = inner.lock().written;
                        let error = (inner.flusher)().err().map(|e| e.to_string());
                        inner.finish(target, error, true);
                    }));
                }
            }
            if !yielded {
                // Before starting a flush, let the writers that are ready to run apply their
                // writes first, so that one flush covers them all. No timer is involved: at
                // low concurrency this costs one trip through the scheduler.
                yielded = true;
                tokio::task::yield_now().await;
                continue;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    fn slow_flusher(count: Arc<AtomicU64>, fail: Arc<AtomicBool>) -> Flusher {
        Arc::new(move || {
            std::thread::sleep(Duration::from_millis(2));
            count.fetch_add(1, Ordering::SeqCst);
            if fail.load(Ordering::SeqCst) {
                Err(Error::Storage("disk on fire".into()))
            } else {
                Ok(())
            }
        })
    }

    #[test]
    fn flush_through_flushes_only_what_is_not_durable_yet() {
        let count = Arc::new(AtomicU64::new(0));
        let gc = GroupCommit::new(slow_flusher(count.clone(), Arc::default()));
        let (a, b) = (gc.written(), gc.written());
        gc.flush_through(a).unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // The flush covered every write applied before it, `b` too.
        gc.flush_through(b).unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let c = gc.written();
        gc.flush_through(c).unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_flushes() {
        let count = Arc::new(AtomicU64::new(0));
        let gc = Arc::new(GroupCommit::new(slow_flusher(
            count.clone(),
            Default::default(),
        )));
        let mut handles = Vec::new();
        for _ in 0..16 {
            let gc = gc.clone();
            handles.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let t = gc.written();
                    gc.wait(t).await.unwrap();
                    assert!(gc.inner.lock().durable >= t.0);
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let flushes = count.load(Ordering::SeqCst);
        assert_eq!(flushes, gc.flushes());
        assert!(
            flushes >= 10,
            "each writer waited 10 times in sequence: {flushes}"
        );
        assert!(flushes <= 160 / 4, "160 commits took {flushes} flushes");
    }

    #[tokio::test]
    async fn failed_flush_reports_to_its_waiters_then_recovers() {
        let count = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicBool::new(true));
        let gc = GroupCommit::new(slow_flusher(count.clone(), fail.clone()));
        let t = gc.written();
        assert!(matches!(gc.wait(t).await, Err(Error::Storage(_))));
        assert!(gc.last_flush_failed());
        fail.store(false, Ordering::SeqCst);
        let t2 = gc.written();
        gc.wait(t2).await.unwrap();
        // the earlier write is covered by the later successful flush
        gc.wait(t).await.unwrap();
        assert!(!gc.last_flush_failed());
        assert_eq!(gc.flushes(), 2);
        assert!(gc.flush_sync().is_ok());
        assert_eq!(gc.flushes(), 3);
    }

    #[tokio::test]
    async fn nothing_written_needs_no_flush() {
        let gc = GroupCommit::new(Arc::new(|| Ok(())));
        gc.wait(Ticket(0)).await.unwrap();
        assert_eq!(gc.flushes(), 0);
    }
}
