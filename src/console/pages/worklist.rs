//! The worklist: counts by age and reason, filters, the page of tasks, bulk keep-separate.

use maud::{html, Markup};

use crate::service::{AgeBand, TaskReason, Worklist, WorklistQuery, WorklistSort, WorklistStatus};
use crate::store::{ResolutionAction, TaskId, UnixMillis};

use super::{age, csrf, layout, percent, score, select, when, Frame};
use crate::console::forms::percent_encode;

/// Most tasks one bulk action takes.
pub const MAX_BULK: usize = 100;

/// The worklist's address for `q` on page `page` (from 0).
pub fn href(q: &WorklistQuery, page: usize) -> String {
    let mut parts = Vec::new();
    if q.status == WorklistStatus::Resolved {
        parts.push("status=resolved".to_string());
    }
    if let Some(a) = q.age {
        parts.push(format!("age={}", a.name()));
    }
    if let Some(r) = q.reason {
        parts.push(format!("reason={}", r.name()));
    }
    if let Some(s) = &q.source {
        parts.push(format!("source={}", percent_encode(s)));
    }
    if q.sort != WorklistSort::default() {
        parts.push(format!("sort={}", q.sort.name()));
    }
    if page > 0 {
        parts.push(format!("page={}", page + 1));
    }
    if parts.is_empty() {
        "/worklist".into()
    } else {
        format!("/worklist?{}", parts.join("&"))
    }
}

pub(super) fn resolution_text(a: &ResolutionAction) -> String {
    match a {
        ResolutionAction::Link { euid } => format!("linked to {euid}"),
        ResolutionAction::Merge { into } => format!("merged into {into}"),
        ResolutionAction::KeepSeparate => "kept separate".into(),
        ResolutionAction::Superseded => "superseded (the record changed)".into(),
    }
}

/// The worklist page.
pub fn worklist(frame: &Frame<'_>, list: &Worklist, q: &WorklistQuery, now: UnixMillis) -> Markup {
    let pages = (list.matching as usize)
        .div_ceil(list.page_size.max(1))
        .max(1);
    let open = q.status == WorklistStatus::Open;
    let filtered = |f: &dyn Fn(&mut WorklistQuery)| {
        let mut q = WorklistQuery {
            status: WorklistStatus::Open,
            ..q.clone()
        };
        f(&mut q);
        href(&q, 0)
    };
    layout(
        "Worklist",
        "worklist",
        frame,
        html! {
            h1 { "Worklist" }
            section aria-labelledby="workload" class="summary" {
                h2 id="workload" { (list.open) " open review tasks" }
                div class="counts" {
                    table {
                        caption { "By age" }
                        tbody {
                            @for (band, n) in &list.by_age {
                                tr {
                                    th scope="row" {
                                        a href=(filtered(&|q| q.age = Some(*band))) { (band.text()) }
                                    }
                                    td class="num" { (n) }
                                }
                            }
                        }
                    }
                    table {
                        caption { "By reason" }
                        tbody {
                            @for (reason, n) in &list.by_reason {
                                tr {
                                    th scope="row" {
                                        a href=(filtered(&|q| q.reason = Some(*reason))) { (reason.text()) }
                                    }
                                    td class="num" { (n) }
                                }
                            }
                        }
                    }
                }
            }
            form method="get" action="/worklist" class="filters" aria-label="Filter and sort" {
                (select("status", "Status", false, [
                    ("open", "open".to_string(), open),
                    ("resolved", "resolved".to_string(), !open),
                ]))
                (select("age", "Age", true, AgeBand::ALL.map(|b| (b.name(), b.text().to_string(), q.age == Some(b)))))
                (select("reason", "Reason", true, TaskReason::ALL.map(|r| (r.name(), r.text().to_string(), q.reason == Some(r)))))
                (select("source", "Source", true, list.by_source.iter().map(|(s, n)| {
                    (s.as_str(), format!("{s} ({n})"), q.source.as_deref() == Some(s.as_str()))
                })))
                (select("sort", "Sort", false, WorklistSort::ALL.map(|s| (s.name(), s.text().to_string(), q.sort == s))))
                button type="submit" { "Apply" }
            }
            p id="matching" role="status" {
                (list.matching) " tasks match · page " (list.page + 1) " of " (pages)
            }
            form method="post" action="/worklist/keep-separate" {
                (csrf(frame))
                table class="tasks" aria-describedby="matching" {
                    thead { tr {
                        @if open { th scope="col" { span class="sr-only" { "Select" } } }
                        th scope="col" { "Task" }
                        th scope="col" { "Age" }
                        th scope="col" { "Source" }
                        th scope="col" class="num" { "Best score" }
                        th scope="col" class="num" { "Probability" }
                        th scope="col" { "Why a registrar is needed" }
                        th scope="col" class="num" { "Candidates" }
                        @if !open { th scope="col" { "Resolved" } }
                    } }
                    tbody {
                        @for row in &list.rows {
                            tr {
                                @if open {
                                    td {
                                        input type="checkbox" name="task" value=(row.id) id={"sel-" (row.id)} data-select;
                                        label for={"sel-" (row.id)} class="sr-only" { "Select task " (row.id) }
                                    }
                                }
                                td { a href={"/tasks/" (row.id)} data-row { (row.id) } }
                                td { (age(row.created_at, now)) }
                                td { (row.record.source) }
                                td class="num" { (score(row.score)) }
                                td class="num" { (percent(row.probability)) }
                                td { (row.reason.text()) }
                                td class="num" { (row.candidates) }
                                @if let Some(r) = &row.resolved {
                                    td { (resolution_text(&r.action)) " by " (r.actor) ", " (when(r.at)) }
                                }
                            }
                        }
                    }
                }
                @if list.rows.is_empty() {
                    p { "No task matches." }
                }
                @if open && !list.rows.is_empty() {
                    button type="submit" { "Keep selected separate…" }
                }
            }
            nav aria-label="Pages" class="pager" {
                @if list.page > 0 {
                    a href=(href(q, list.page - 1)) rel="prev" { "← Previous page" }
                }
                @if list.page + 1 < pages {
                    a href=(href(q, list.page + 1)) rel="next" { "Next page →" }
                }
            }
        },
    )
}

/// Asks to confirm keeping `tasks` separate.
pub fn bulk_confirm(frame: &Frame<'_>, tasks: &[TaskId]) -> Markup {
    layout(
        "Confirm keep separate",
        "bulk",
        frame,
        html! {
            h1 { "Keep " (tasks.len()) " tasks separate?" }
            p { "Each task's record is asserted not to be a duplicate of any of its candidates; automatic matching remembers it." }
            ul {
                @for t in tasks { li { a href={"/tasks/" (t)} { (t) } } }
            }
            form method="post" action="/worklist/keep-separate/confirm" {
                (csrf(frame))
                @for t in tasks { input type="hidden" name="task" value=(t); }
                div class="field" {
                    label for="comment" { "Comment (optional, kept in history)" }
                    textarea id="comment" name="comment" rows="2" maxlength="1024" {}
                }
                button type="submit" data-key="s" { "Keep " (tasks.len()) " tasks separate" }
                " "
                a href="/worklist" { "Cancel" }
            }
        },
    )
}

/// What a bulk action did, task by task.
pub fn bulk_done(frame: &Frame<'_>, outcomes: &[(TaskId, Result<(), String>)]) -> Markup {
    let done = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    layout(
        "Kept separate",
        "bulk",
        frame,
        html! {
            h1 { (done) " of " (outcomes.len()) " tasks kept separate" }
            ul {
                @for (t, r) in outcomes {
                    li {
                        a href={"/tasks/" (t)} { (t) } ": "
                        @match r {
                            Ok(()) => "kept separate",
                            Err(why) => span class="error" { "not changed: " (why) },
                        }
                    }
                }
            }
            p { a href="/worklist" { "Back to the worklist" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_carry_filters_only() {
        let q = WorklistQuery {
            source: Some("st marys/adt".into()),
            sort: WorklistSort::ScoreHigh,
            ..WorklistQuery::default()
        };
        assert_eq!(
            href(&q, 2),
            "/worklist?source=st%20marys%2Fadt&sort=score&page=3"
        );
        assert_eq!(href(&WorklistQuery::default(), 0), "/worklist");
    }
}
