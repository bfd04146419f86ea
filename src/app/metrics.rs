//! What the application layer counts, for the operations listener: every call by operation
//! and status code with its latency, and every match-or-create by decision. Recorded here
//! so every door is counted alike; each record is a few atomic adds. The gauges (queue
//! depth, store size, feed head, memory) are read from the service when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::auth::Operation;
use crate::error::{Code, Result};
use crate::linker::Decision;
use crate::metrics::{Exposition, Histogram, Kind};
use crate::service::MatchResult;
use crate::store::{TaskQuery, UnixMillis};

use super::App;

/// Calls of one operation (or of an unknown one), by status code.
#[derive(Debug, Default)]
struct OpCounts {
    by_code: [AtomicU64; Code::ALL.len()],
    latency: Histogram,
}

/// The application layer's counters.
#[derive(Debug)]
pub struct AppMetrics {
    /// One per [`counted`] operation, then one for calls to an unknown method.
    ops: Vec<OpCounts>,
    /// Match-or-create answers: linked, review, created, unchanged.
    decisions: [AtomicU64; 4],
}

impl Default for AppMetrics {
    fn default() -> Self {
        AppMetrics {
            ops: (0..=counted().count())
                .map(|_| OpCounts::default())
                .collect(),
            decisions: Default::default(),
        }
    }
}

/// Every operation counted, in order: the RPCs, the standards doors' and the console's own.
fn counted() -> impl Iterator<Item = Operation> + Clone {
    Operation::ALL
        .into_iter()
        .chain(Operation::STANDARDS)
        .chain(Operation::CONSOLE)
}

const DECISIONS: [&str; 4] = ["linked", "review", "created", "unchanged"];

fn op_index(name: &str) -> usize {
    counted()
        .position(|o| o.name() == name)
        .unwrap_or_else(|| counted().count())
}

impl AppMetrics {
    /// Counts a call of `op` answered with `code` (`started`: when it began, for its
    /// latency; `None` for a call refused at the door, which has none worth the name).
    pub(super) fn call(&self, op: &str, code: Code, started: Option<Instant>) {
        let counts = &self.ops[op_index(op)];
        counts.by_code[code as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(t) = started {
            counts.latency.observe(t.elapsed());
        }
    }

    /// Counts a call's result.
    pub(super) fn finished<T>(&self, op: Operation, result: &Result<T>, started: Instant) {
        let code = result.as_ref().map_or_else(|e| e.code(), |_| Code::Ok);
        self.call(op.name(), code, Some(started));
    }

    /// Counts a match-or-create's decision.
    pub(super) fn decided(&self, r: &MatchResult) {
        let i = match (r.unchanged, r.decision) {
            (true, _) => 3,
            (false, Decision::Link) => 0,
            (false, Decision::Review) => 1,
            (false, Decision::New) => 2,
        };
        self.decisions[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of `op` answered with `code` so far.
    pub fn calls(&self, op: Operation, code: Code) -> u64 {
        self.ops[op_index(op.name())].by_code[code as usize].load(Ordering::Relaxed)
    }
}

impl App {
    /// The application layer's counters.
    pub fn metrics(&self) -> &AppMetrics {
        &self.metrics
    }

    /// Everything the operations listener shows, as Prometheus text: calls, latencies and
    /// decisions counted here; the review queue, store, flushes, index, memory and change
    /// feed read from the service now; the audit writer's lag. Names, codes and kinds only,
    /// never a key or an EUID. Blocking (a few store reads).
    ///
    /// # Errors
    /// Store errors.
    pub fn metrics_text(&self) -> Result<String> {
        let m = &self.metrics;
        let mut e = Exposition::new();
        e.family(
            "empi_calls_total",
            "Calls answered, by operation and status code.",
            Kind::Counter,
        );
        let names = counted()
            .map(|o| o.name())
            .chain(std::iter::once("unknown"));
        for (name, counts) in names.clone().zip(&m.ops) {
            for (code, n) in Code::ALL.iter().zip(&counts.by_code) {
                let n = n.load(Ordering::Relaxed);
                // Every operation's OK series exists from the start, so rates begin at 0.
                if n > 0 || (*code == Code::Ok && name != "unknown") {
                    e.sample(
                        "empi_calls_total",
                        &[("operation", name), ("code", code.name())],
                        n as f64,
                    );
                }
            }
        }
        e.family(
            "empi_call_duration_seconds",
            "Time from a call's start in the application layer to its answer (audit line durable).",
            Kind::Histogram,
        );
        for (name, counts) in names.zip(&m.ops) {
            if counts.latency.count() > 0 {
                e.histogram(
                    "empi_call_duration_seconds",
                    &[("operation", name)],
                    &counts.latency,
                );
            }
        }
        e.family(
            "empi_decisions_total",
            "Match-or-create answers by decision (unchanged: an identical resubmission).",
            Kind::Counter,
        );
        for (d, n) in DECISIONS.iter().zip(&m.decisions) {
            e.sample(
                "empi_decisions_total",
                &[("decision", d)],
                n.load(Ordering::Relaxed) as f64,
            );
        }

        let service = &self.service;
        let store = service.store();
        let stats = store.stats()?;
        let gauge = |e: &mut Exposition, name: &str, help: &str, v: f64| {
            e.family(name, help, Kind::Gauge).sample(name, &[], v);
        };
        gauge(
            &mut e,
            "empi_records",
            "Stored records.",
            stats.records as f64,
        );
        gauge(
            &mut e,
            "empi_persons",
            "Active persons.",
            stats.persons as f64,
        );
        gauge(
            &mut e,
            "empi_review_queue_depth",
            "Open review tasks.",
            stats.open_tasks as f64,
        );
        let oldest = store
            .list_tasks(&TaskQuery {
                open: Some(true),
                page_size: 1,
                ..TaskQuery::default()
            })?
            .tasks
            .first()
            .map_or(0.0, |t| {
                (UnixMillis::now().0 - t.created_at.0).max(0) as f64 / 1000.0
            });
        gauge(
            &mut e,
            "empi_review_oldest_open_age_seconds",
            "Age of the oldest open review task (0 when none is open).",
            oldest,
        );
        if let Some(bytes) = store.size_on_disk() {
            gauge(
                &mut e,
                "empi_store_size_bytes",
                "Bytes the store occupies on disk.",
                bytes as f64,
            );
        }
        e.family(
            "empi_store_flush_duration_seconds",
            "Durability cycles: the store's flush and fdatasync, each shared by the writes before it.",
            Kind::Histogram,
        )
        .histogram(
            "empi_store_flush_duration_seconds",
            &[],
            store.flush_latency(),
        );
        gauge(
            &mut e,
            "empi_index_records",
            "Records in the in-memory matching index.",
            service.indexed_records() as f64,
        );
        if let Some(rss) = crate::service::resident_bytes() {
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory of the server process (the index is most of it).",
                rss as f64,
            );
        }
        let feed = store.feed_bounds()?;
        gauge(
            &mut e,
            "empi_feed_head_sequence",
            "The change feed's newest durable event.",
            feed.head as f64,
        );
        gauge(
            &mut e,
            "empi_feed_first_sequence",
            "The change feed's oldest retained event.",
            feed.first as f64,
        );
        if let Some(trail) = &self.trail {
            let lag = trail.lag();
            e.family(
                "empi_audit_wait_seconds",
                "Time an audit line waits from hand-over to the writer until it is durable.",
                Kind::Histogram,
            )
            .histogram("empi_audit_wait_seconds", &[], &lag.wait);
            gauge(
                &mut e,
                "empi_audit_waiting_lines",
                "Audit lines handed to the writer and not yet durable.",
                lag.waiting.load(Ordering::Relaxed) as f64,
            );
        }
        Ok(e.finish())
    }
}
