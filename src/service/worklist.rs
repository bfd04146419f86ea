//! The registrar's worklist: open review tasks counted by age and by reason, filtered,
//! sorted and paged.
//!
//! The open tasks are summarised in memory ([`OpenTasks`]): one small row per task (id,
//! creation time, record key, best score, reason, candidate count), built from the store
//! the first time it is asked for ([`Service::warm_worklist`] at the console's start) and
//! kept in step by every change set the service applies (a task written open is added, one
//! written resolved or superseded is dropped), under the same lock as the index, so it
//! never lags the store. Building scans the store without holding up writes: change sets
//! applied meanwhile are kept aside and replayed over the scan, newest last. A page then costs one pass
//! over the rows in memory instead of a store scan that decodes every task: at 100,000
//! open tasks about a millisecond (BENCHMARKS.md). Resolved tasks are not kept; listing them
//! scans the store (an occasional look back, not the daily queue).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use serde::Deserialize;

use crate::error::Result;
use crate::linker::ReviewReason;
use crate::record::RecordKey;
use crate::scoring::Rival;
use crate::store::{Op, ReviewTask, TaskId, TaskQuery, TaskStatus, UnixMillis};

use super::Service;

/// A day in milliseconds.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// How old a task is, in the bands a manager plans staff by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgeBand {
    /// Opened less than a day ago.
    UnderADay,
    /// One to seven days.
    UnderAWeek,
    /// Seven to thirty days.
    UnderAMonth,
    /// Thirty days or more.
    Older,
}

impl AgeBand {
    /// Every band, youngest first.
    pub const ALL: [AgeBand; 4] = [
        AgeBand::UnderADay,
        AgeBand::UnderAWeek,
        AgeBand::UnderAMonth,
        AgeBand::Older,
    ];

    /// The band of a task opened at `created` when it is `now`.
    pub fn of(created: UnixMillis, now: UnixMillis) -> AgeBand {
        match (now.0 - created.0).max(0) / DAY_MS {
            0 => AgeBand::UnderADay,
            1..=6 => AgeBand::UnderAWeek,
            7..=29 => AgeBand::UnderAMonth,
            _ => AgeBand::Older,
        }
    }

    /// The short name in a filter (`day`, `week`, `month`, `older`).
    pub fn name(self) -> &'static str {
        match self {
            AgeBand::UnderADay => "day",
            AgeBand::UnderAWeek => "week",
            AgeBand::UnderAMonth => "month",
            AgeBand::Older => "older",
        }
    }

    /// The band in words.
    pub fn text(self) -> &'static str {
        match self {
            AgeBand::UnderADay => "under a day",
            AgeBand::UnderAWeek => "1 to 7 days",
            AgeBand::UnderAMonth => "7 to 30 days",
            AgeBand::Older => "over 30 days",
        }
    }

    /// The band named `name`.
    pub fn parse(name: &str) -> Option<AgeBand> {
        AgeBand::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// Why a task is waiting for a registrar: the reason of its best candidate, or `None` for
/// a task stored without its candidates' detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskReason(pub Option<ReviewReason>);

impl TaskReason {
    /// Every reason a task can have, in the order a summary lists them.
    pub const ALL: [TaskReason; 7] = [
        TaskReason(Some(ReviewReason::BetweenThresholds)),
        TaskReason(Some(ReviewReason::Ambiguous)),
        TaskReason(Some(ReviewReason::Rival(Rival::Twin))),
        TaskReason(Some(ReviewReason::Rival(Rival::TwinNoGivenName))),
        TaskReason(Some(ReviewReason::Rival(Rival::Relative))),
        TaskReason(Some(ReviewReason::Rival(Rival::BirthOrderDiffers))),
        TaskReason(None),
    ];

    /// The short name in a filter, e.g. `between_thresholds`, `twin`, `unknown`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Some(ReviewReason::BetweenThresholds) => "between_thresholds",
            Some(ReviewReason::Ambiguous) => "ambiguous",
            Some(ReviewReason::Rival(r)) => r.name(),
            None => "unknown",
        }
    }

    /// The reason in words a registrar reads.
    pub fn text(self) -> &'static str {
        match self.0 {
            Some(r) => r.text(),
            None => "the task was stored without its candidates' detail",
        }
    }

    /// The reason named `name`.
    pub fn parse(name: &str) -> Option<TaskReason> {
        TaskReason::ALL.into_iter().find(|r| r.name() == name)
    }

    fn index(self) -> usize {
        TaskReason::ALL.iter().position(|r| *r == self).unwrap_or(6)
    }

    /// The reason of a stored task: its best candidate's, or [`ReviewReason::Ambiguous`]
    /// when that candidate alone would have linked (another reached the top beside it).
    pub fn of(task: &ReviewTask) -> TaskReason {
        #[derive(Deserialize)]
        struct Reasoned {
            #[serde(default)]
            reason: Option<ReviewReason>,
        }
        match Vec::<Reasoned>::deserialize(&task.explanation) {
            Ok(detail) if detail.len() == task.candidates.len() && !detail.is_empty() => {
                TaskReason(Some(detail[0].reason.unwrap_or(ReviewReason::Ambiguous)))
            }
            _ => TaskReason(None),
        }
    }
}

/// Which tasks a worklist shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorklistStatus {
    /// Waiting for a registrar (from the summary in memory).
    #[default]
    Open,
    /// Resolved by a registrar or superseded (a store scan).
    Resolved,
}

/// How a worklist is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorklistSort {
    /// Oldest first (the queue's natural order).
    #[default]
    Oldest,
    /// Newest first.
    Newest,
    /// Highest score first (the likeliest links).
    ScoreHigh,
    /// Lowest score first.
    ScoreLow,
}

impl WorklistSort {
    /// Every order.
    pub const ALL: [WorklistSort; 4] = [
        WorklistSort::Oldest,
        WorklistSort::Newest,
        WorklistSort::ScoreHigh,
        WorklistSort::ScoreLow,
    ];

    /// The short name in a query (`oldest`, `newest`, `score`, `score_low`).
    pub fn name(self) -> &'static str {
        match self {
            WorklistSort::Oldest => "oldest",
            WorklistSort::Newest => "newest",
            WorklistSort::ScoreHigh => "score",
            WorklistSort::ScoreLow => "score_low",
        }
    }

    /// The order in words.
    pub fn text(self) -> &'static str {
        match self {
            WorklistSort::Oldest => "oldest first",
            WorklistSort::Newest => "newest first",
            WorklistSort::ScoreHigh => "highest score first",
            WorklistSort::ScoreLow => "lowest score first",
        }
    }

    /// The order named `name`.
    pub fn parse(name: &str) -> Option<WorklistSort> {
        WorklistSort::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What a worklist page shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorklistQuery {
    /// Open or resolved tasks.
    pub status: WorklistStatus,
    /// Only tasks of this age band.
    pub age: Option<AgeBand>,
    /// Only tasks with this reason.
    pub reason: Option<TaskReason>,
    /// Only tasks about records of this source.
    pub source: Option<String>,
    /// The order.
    pub sort: WorklistSort,
    /// The page, from 0.
    pub page: usize,
    /// Rows per page; 0 means [`TaskQuery::DEFAULT_PAGE_SIZE`], at most
    /// [`TaskQuery::MAX_PAGE_SIZE`].
    pub page_size: usize,
}

/// One task as a worklist row.
#[derive(Debug, Clone, PartialEq)]
pub struct WorklistRow {
    /// The task.
    pub id: TaskId,
    /// When it was opened.
    pub created_at: UnixMillis,
    /// The record under review.
    pub record: RecordKey,
    /// The best candidate's match weight.
    pub score: f64,
    /// The best candidate's match probability.
    pub probability: f64,
    /// Why it waits for a registrar.
    pub reason: TaskReason,
    /// How many candidates it lists.
    pub candidates: usize,
    /// How it was resolved, for a resolved task: who and when.
    pub resolved: Option<crate::store::Resolution>,
}

/// A worklist page with the counts a manager plans by.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Worklist {
    /// Open tasks in all.
    pub open: u64,
    /// Open tasks per age band, in [`AgeBand::ALL`] order.
    pub by_age: Vec<(AgeBand, u64)>,
    /// Open tasks per reason, in [`TaskReason::ALL`] order (reasons with none left out).
    pub by_reason: Vec<(TaskReason, u64)>,
    /// Open tasks per source of the record under review, by name.
    pub by_source: Vec<(String, u64)>,
    /// Tasks passing the query's filters.
    pub matching: u64,
    /// The page asked for.
    pub rows: Vec<WorklistRow>,
    /// The page number (from 0) and size actually served.
    pub page: usize,
    /// Rows per page.
    pub page_size: usize,
}

/// One open task in memory.
#[derive(Debug, Clone)]
struct Row {
    created_at: UnixMillis,
    source: Arc<str>,
    local_id: Box<str>,
    score: f64,
    probability: f64,
    reason: TaskReason,
    candidates: u16,
}

impl Row {
    fn of(task: &ReviewTask, source: Arc<str>) -> Row {
        let best = task.candidates.first();
        Row {
            created_at: task.created_at,
            source,
            local_id: task.record.local_id.as_str().into(),
            score: best.map_or(f64::NAN, |c| c.score),
            probability: best.map_or(f64::NAN, |c| c.probability),
            reason: TaskReason::of(task),
            candidates: u16::try_from(task.candidates.len()).unwrap_or(u16::MAX),
        }
    }

    fn out(&self, id: TaskId) -> WorklistRow {
        WorklistRow {
            id,
            created_at: self.created_at,
            record: RecordKey::new(&*self.source, &*self.local_id),
            score: self.score,
            probability: self.probability,
            reason: self.reason,
            candidates: usize::from(self.candidates),
            resolved: None,
        }
    }
}

/// The open tasks, summarised (see the module docs).
#[derive(Debug, Default)]
struct Rows {
    rows: BTreeMap<TaskId, Row>,
    /// Source names, shared by the rows.
    sources: BTreeMap<Arc<str>, u64>,
}

impl Rows {
    fn put(&mut self, task: &ReviewTask) {
        self.remove(task.id);
        if !task.is_open() {
            return;
        }
        let source = match self.sources.get_key_value(task.record.source.as_str()) {
            Some((s, _)) => Arc::clone(s),
            None => Arc::from(task.record.source.as_str()),
        };
        *self.sources.entry(Arc::clone(&source)).or_default() += 1;
        self.rows.insert(task.id, Row::of(task, source));
    }

    fn remove(&mut self, id: TaskId) {
        if let Some(old) = self.rows.remove(&id) {
            if let Some(n) = self.sources.get_mut(&old.source) {
                *n -= 1;
                if *n == 0 {
                    self.sources.remove(&old.source);
                }
            }
        }
    }
}

/// Where the summary of open tasks stands.
#[derive(Debug, Default)]
enum Summary {
    /// Not built: nothing is kept.
    #[default]
    Cold,
    /// Being built from a store scan: the tasks written meanwhile, in the order applied.
    Building(Vec<ReviewTask>),
    /// Built and kept in step.
    Ready(Rows),
}

/// The service's summary of open tasks.
#[derive(Debug, Default)]
pub(super) struct OpenTasks {
    summary: RwLock<Summary>,
    /// Held by the one thread building the summary.
    building: Mutex<()>,
}

impl OpenTasks {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Summary> {
        // Plain values replaced whole; a poisoned lock still holds a valid one.
        self.summary.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, Summary> {
        self.summary.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the summary in step with a change set just applied (called under the index
    /// lock, in the order the store applied the change sets).
    pub(super) fn apply(&self, ops: &[Op]) {
        let tasks = ops.iter().filter_map(|op| match op {
            Op::PutTask(task) => Some(task),
            _ => None,
        });
        match &mut *self.write() {
            Summary::Cold => {}
            Summary::Building(written) => written.extend(tasks.cloned()),
            Summary::Ready(rows) => tasks.for_each(|t| rows.put(t)),
        }
    }
}

/// The built summary behind a read guard.
pub(super) struct ReadyRows<'a>(RwLockReadGuard<'a, Summary>);

impl ReadyRows<'_> {
    fn rows(&self) -> Option<&Rows> {
        match &*self.0 {
            Summary::Ready(rows) => Some(rows),
            _ => None,
        }
    }
}

/// Whether a row passes the query's filters.
fn passes(
    q: &WorklistQuery,
    now: UnixMillis,
    created: UnixMillis,
    reason: TaskReason,
    source: &str,
) -> bool {
    q.age.is_none_or(|a| AgeBand::of(created, now) == a)
        && q.reason.is_none_or(|r| r == reason)
        && q.source.as_deref().is_none_or(|s| s == source)
}

/// Orders `(score, id)` pairs as `sort` says.
fn order(sort: WorklistSort, a: (f64, TaskId), b: (f64, TaskId)) -> std::cmp::Ordering {
    let by_score = |x: f64, y: f64| x.total_cmp(&y);
    match sort {
        WorklistSort::Oldest => a.1.cmp(&b.1),
        WorklistSort::Newest => b.1.cmp(&a.1),
        WorklistSort::ScoreHigh => by_score(b.0, a.0).then(a.1.cmp(&b.1)),
        WorklistSort::ScoreLow => by_score(a.0, b.0).then(a.1.cmp(&b.1)),
    }
}

/// The slice of `keys` (sorted as `sort` says) on page `page` of `size`: only that page is
/// put in order, after a selection of everything before its end.
fn page_of(
    mut keys: Vec<(f64, TaskId)>,
    sort: WorklistSort,
    page: usize,
    size: usize,
) -> Vec<TaskId> {
    let start = page.saturating_mul(size);
    if start >= keys.len() {
        return Vec::new();
    }
    let end = (start + size).min(keys.len());
    let cmp = |a: &(f64, TaskId), b: &(f64, TaskId)| order(sort, *a, *b);
    if end < keys.len() {
        keys.select_nth_unstable_by(end, cmp);
        keys.truncate(end);
    }
    if start > 0 {
        keys.select_nth_unstable_by(start, cmp);
    }
    let mut out = keys.split_off(start);
    out.sort_unstable_by(cmp);
    out.into_iter().map(|(_, id)| id).collect()
}

impl Service {
    /// Builds the summary of open tasks now if it is not built yet, so the first worklist
    /// need not wait for it (it takes seconds at 100,000 open tasks).
    ///
    /// # Errors
    /// Store errors while scanning.
    pub fn warm_worklist(&self) -> Result<()> {
        self.open_tasks().map(drop)
    }

    /// The summary of open tasks, built from the store on first use. Writes go on while it
    /// is built: from the moment the scan starts, the tasks they write are kept aside
    /// ([`OpenTasks::apply`]) and replayed over the scan in the order applied, so a task
    /// ends as its latest write left it.
    fn open_tasks(&self) -> Result<ReadyRows<'_>> {
        let open = &self.open_tasks;
        let ready = ReadyRows(open.read());
        if ready.rows().is_some() {
            return Ok(ready);
        }
        drop(ready);
        let _one = open.building.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*open.read(), Summary::Ready(_)) {
            return Ok(ReadyRows(open.read()));
        }
        let started = std::time::Instant::now();
        *open.write() = Summary::Building(Vec::new());
        let mut built = Rows::default();
        let scanned = self.scan_open_tasks(&mut built);
        let mut summary = open.write();
        match (scanned, std::mem::take(&mut *summary)) {
            (Ok(()), Summary::Building(written)) => {
                for task in &written {
                    built.put(task);
                }
                tracing::info!(
                    open_tasks = built.rows.len(),
                    written_meanwhile = written.len(),
                    secs = started.elapsed().as_secs_f64(),
                    "worklist summary built"
                );
                *summary = Summary::Ready(built);
            }
            (Err(e), _) => return Err(e),
            // Only this thread, holding `building`, leaves the Building state.
            (Ok(()), other) => *summary = other,
        }
        drop(summary);
        Ok(ReadyRows(open.read()))
    }

    /// Every open task in the store into `rows`.
    fn scan_open_tasks(&self, rows: &mut Rows) -> Result<()> {
        let mut after = None;
        loop {
            let page = self.store.list_tasks(&TaskQuery {
                open: Some(true),
                page_size: TaskQuery::MAX_PAGE_SIZE,
                after,
                ..TaskQuery::default()
            })?;
            for task in &page.tasks {
                rows.put(task);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// The open tasks just before and just after `id` in the queue (oldest first), whether
    /// or not `id` itself is open.
    ///
    /// # Errors
    /// Store errors (building the summary).
    pub fn open_neighbours(&self, id: TaskId) -> Result<(Option<TaskId>, Option<TaskId>)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let guard = self.open_tasks()?;
        let Some(open) = guard.rows() else {
            return Ok((None, None));
        };
        let prev = open.rows.range(..id).next_back().map(|(k, _)| *k);
        let next = open
            .rows
            .range((Excluded(id), Unbounded))
            .next()
            .map(|(k, _)| *k);
        Ok((prev, next))
    }

    /// A worklist page: the open tasks counted by age band, reason and source, and the
    /// page of tasks passing the query's filters in its order. `now` dates the age bands.
    ///
    /// # Errors
    /// Store errors (building the summary, or listing resolved tasks).
    pub fn worklist(&self, q: &WorklistQuery, now: UnixMillis) -> Result<Worklist> {
        let size = TaskQuery {
            page_size: q.page_size,
            ..TaskQuery::default()
        }
        .effective_page_size();
        let guard = self.open_tasks()?;
        let Some(open) = guard.rows() else {
            return Ok(Worklist::default());
        };
        let mut by_age = [0u64; 4];
        let mut by_reason = [0u64; 7];
        let mut keys = Vec::new();
        for (id, row) in &open.rows {
            let band = AgeBand::of(row.created_at, now);
            by_age[AgeBand::ALL.iter().position(|b| *b == band).unwrap_or(3)] += 1;
            by_reason[row.reason.index()] += 1;
            if q.status == WorklistStatus::Open
                && passes(q, now, row.created_at, row.reason, &row.source)
            {
                keys.push((row.score, *id));
            }
        }
        let mut list = Worklist {
            open: open.rows.len() as u64,
            by_age: AgeBand::ALL.into_iter().zip(by_age).collect(),
            by_reason: TaskReason::ALL
                .into_iter()
                .zip(by_reason)
                .filter(|(_, n)| *n > 0)
                .collect(),
            by_source: open
                .sources
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            page: q.page,
            page_size: size,
            ..Worklist::default()
        };
        if q.status == WorklistStatus::Open {
            list.matching = keys.len() as u64;
            list.rows = page_of(keys, q.sort, q.page, size)
                .into_iter()
                .filter_map(|id| open.rows.get(&id).map(|r| r.out(id)))
                .collect();
            return Ok(list);
        }
        drop(guard);
        let resolved = self.resolved_tasks(q, now)?;
        list.matching = resolved.len() as u64;
        let keys = resolved.iter().map(|(id, r)| (r.score, *id)).collect();
        let rows: BTreeMap<TaskId, WorklistRow> = resolved.into_iter().collect();
        list.rows = page_of(keys, q.sort, q.page, size)
            .into_iter()
            .filter_map(|id| rows.get(&id).cloned())
            .collect();
        Ok(list)
    }

    /// Every resolved task passing the query's filters, from a store scan.
    fn resolved_tasks(
        &self,
        q: &WorklistQuery,
        now: UnixMillis,
    ) -> Result<Vec<(TaskId, WorklistRow)>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_tasks(&TaskQuery {
                open: Some(false),
                page_size: TaskQuery::MAX_PAGE_SIZE,
                after,
                ..TaskQuery::default()
            })?;
            for task in page.tasks {
                let reason = TaskReason::of(&task);
                if !passes(q, now, task.created_at, reason, &task.record.source) {
                    continue;
                }
                let mut row = Row::of(&task, Arc::from(task.record.source.as_str())).out(task.id);
                if let TaskStatus::Resolved(r) = task.status {
                    row.resolved = Some(r);
                }
                out.push((task.id, row));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bands_and_names_round_trip() {
        let now = UnixMillis(100 * DAY_MS);
        let at = |days: i64| UnixMillis(now.0 - days * DAY_MS);
        assert_eq!(AgeBand::of(at(0), now), AgeBand::UnderADay);
        assert_eq!(AgeBand::of(at(1), now), AgeBand::UnderAWeek);
        assert_eq!(AgeBand::of(at(7), now), AgeBand::UnderAMonth);
        assert_eq!(AgeBand::of(at(30), now), AgeBand::Older);
        assert_eq!(AgeBand::of(UnixMillis(now.0 + 5), now), AgeBand::UnderADay);
        for b in AgeBand::ALL {
            assert_eq!(AgeBand::parse(b.name()), Some(b));
        }
        for r in TaskReason::ALL {
            assert_eq!(TaskReason::parse(r.name()), Some(r));
            assert!(!r.text().is_empty());
        }
        for s in WorklistSort::ALL {
            assert_eq!(WorklistSort::parse(s.name()), Some(s));
        }
        assert_eq!(TaskReason::parse("nope"), None);
    }

    #[test]
    fn a_page_is_the_slice_of_the_full_order() {
        let keys: Vec<(f64, TaskId)> = (0..200u64)
            .map(|i| (((i * 37) % 101) as f64, TaskId(i)))
            .collect();
        for sort in WorklistSort::ALL {
            let mut all = keys.clone();
            all.sort_by(|a, b| order(sort, *a, *b));
            let full: Vec<TaskId> = all.iter().map(|k| k.1).collect();
            for page in 0..5 {
                let got = page_of(keys.clone(), sort, page, 45);
                let want: Vec<TaskId> = full.iter().skip(page * 45).take(45).copied().collect();
                assert_eq!(got, want, "{sort:?} page {page}");
            }
        }
    }
}
