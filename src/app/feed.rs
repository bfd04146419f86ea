//! The change feed as a door serves it: [`App::watch_changes`] checks the role and the
//! consumer's position and audits the call once, then hands back a [`ChangeFeed`] the door
//! drains for as long as its stream stays open. What the feed holds and when an event is
//! shown is the store's ([`crate::store::feed`]).

use std::sync::Arc;

use tokio::sync::watch;

use crate::auth::Operation;
use crate::error::{Error, Result};
use crate::store::{ChangeEvent, FeedBounds, Store};

use super::{App, Caller, Incoming};

/// Most events handed over at once.
pub const FEED_BATCH: usize = 256;

/// Least time between two hand-overs to a consumer that is following live (its previous
/// batch was not full). Without it a busy server sends one message per durability flush
/// (a thousand a second at full load), and the wake-ups and frames cost the writers about
/// a fifth of their throughput on two cores (BENCHMARKS.md); batched every 10 ms, a live
/// consumer hears of a change at most 10 ms later and the cost is lost in the noise. A
/// consumer catching up gets full batches back to back.
pub const FOLLOW_PACE: std::time::Duration = std::time::Duration::from_millis(10);

/// An open change feed: the events after a position, replayed then followed live.
pub struct ChangeFeed {
    store: Arc<dyn Store>,
    heads: watch::Receiver<u64>,
    /// The last event handed over.
    position: u64,
    /// When the last batch was handed over, if it was not full (the consumer is live).
    live_since: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// The last event handed over (the position the consumer started from, before any).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next events: up to [`FEED_BATCH`] consecutive ones after the last handed over,
    /// waiting until there is at least one. `None` once the store is gone (the server
    /// stops).
    ///
    /// # Errors
    /// [`Error::Resync`] when retention pruned the next event before it was read; store
    /// errors.
    pub async fn next(&mut self) -> Option<Result<Vec<ChangeEvent>>> {
        if let Some(at) = self.live_since.take() {
            tokio::time::sleep_until(at + FOLLOW_PACE).await;
        }
        loop {
            // Marked seen before reading, so a head published after the read wakes us.
            self.heads.borrow_and_update();
            let events = match self.store.changes_after(self.position, FEED_BATCH) {
                Ok(events) => events,
                Err(e) => return Some(Err(e)),
            };
            if !events.is_empty() {
                return Some(self.hand_over(events));
            }
            if self.heads.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Checks that `events` continue the feed from the position, without a gap, and
    /// moves the position to the last of them.
    fn hand_over(&mut self, events: Vec<ChangeEvent>) -> Result<Vec<ChangeEvent>> {
        for (i, e) in events.iter().enumerate() {
            let due = self.position + 1 + i as u64;
            if e.seq != due {
                let bounds = self.store.feed_bounds()?;
                return Err(Error::Resync(format!(
                    "event {due} was pruned by retention while the feed was read; take a \
                     fresh copy, then watch after sequence {}",
                    bounds.head
                )));
            }
        }
        self.position += events.len() as u64;
        self.live_since = (events.len() < FEED_BATCH).then(tokio::time::Instant::now);
        Ok(events)
    }
}

/// Why a consumer at `after` cannot resume, in words that say what to do.
fn not_resumable(after: u64, bounds: FeedBounds) -> Error {
    let head = bounds.head;
    if after > head {
        Error::Resync(format!(
            "after_sequence {after} is ahead of the feed (its head is {head}): the store was \
             restored from an earlier backup; take a fresh copy, then watch after sequence \
             {head}"
        ))
    } else {
        Error::Resync(format!(
            "events after sequence {after} were pruned by retention (the feed keeps {} to \
             {head}); take a fresh copy, then watch after sequence {head}",
            bounds.first
        ))
    }
}

impl App {
    /// Opens the change feed after `after` (the last sequence the consumer processed; 0
    /// from the start). Audited once, when opened.
    ///
    /// # Errors
    /// [`Error::Denied`] for a role other than consumer or admin; [`Error::Resync`] when the
    /// feed cannot continue after `after` (pruned, or ahead of a restored store); store
    /// errors.
    pub async fn watch_changes(&self, caller: &Caller, after: Incoming<u64>) -> Result<ChangeFeed> {
        self.run(
            caller,
            Operation::WatchChanges,
            after,
            async |call, after| {
                call.note(format!("change feed after sequence {after}"));
                let store = Arc::clone(self.service.store());
                // Subscribed before the bounds are read: a head published in between is seen.
                let heads = store.watch_feed();
                let bounds = store.feed_bounds()?;
                if !bounds.resumable(after) {
                    return Err(not_resumable(after, bounds));
                }
                Ok(ChangeFeed {
                    store,
                    heads,
                    position: after,
                    live_since: None,
                })
            },
        )
        .await
    }

    /// Retention: drops the change feed's events older than `keep`, in change sets of at
    /// most 10,000 events. Returns how many were dropped. Blocking (store writes).
    ///
    /// # Errors
    /// Store errors.
    pub fn prune_changes(&self, keep: std::time::Duration) -> Result<u64> {
        const BATCH: usize = 10_000;
        let now = crate::store::UnixMillis::now().0;
        let before = crate::store::UnixMillis(
            now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX)),
        );
        let mut dropped = 0;
        loop {
            let n = self.service.store().prune_changes(before, BATCH)?;
            dropped += n;
            if n < BATCH as u64 {
                return Ok(dropped);
            }
        }
    }
}
