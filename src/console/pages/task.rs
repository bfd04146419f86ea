//! The task page: the record under review beside each candidate's closest record, field by
//! field (agreeing fields dimmed, differing characters highlighted, each comparison's level
//! and weight), the score, probability and reason in words, the candidate's other records,
//! and the actions.

use maud::{html, Markup};

use crate::record::Record;
use crate::service::{CandidateDetail, ComparisonView, TaskDetail, TaskReason};
use crate::store::{StoredRecord, TaskId, TaskStatus};

use super::{csrf, layout, percent, record_name, score, when, worklist::resolution_text, Frame};
use crate::console::diff::runs;

/// One row of the side-by-side table: its label, the comparison scoring it (if any), and
/// how to read the field from a record.
struct FieldRow {
    label: &'static str,
    comparison: Option<&'static str>,
    value: fn(&Record) -> String,
}

fn join(v: &[String]) -> String {
    v.join(", ")
}

const FIELDS: &[FieldRow] = &[
    FieldRow {
        label: "Given name",
        comparison: Some("given_name"),
        value: |r| r.given_name.clone().unwrap_or_default(),
    },
    FieldRow {
        label: "Middle name",
        comparison: Some("middle_name"),
        value: |r| r.middle_name.clone().unwrap_or_default(),
    },
    FieldRow {
        label: "Family name",
        comparison: Some("family_name"),
        value: |r| r.family_name.clone().unwrap_or_default(),
    },
    FieldRow {
        label: "Previous family names",
        comparison: None,
        value: |r| join(&r.previous_family_names),
    },
    FieldRow {
        label: "Birth date",
        comparison: Some("birth_date"),
        value: |r| r.birth_date.map(|d| d.to_string()).unwrap_or_default(),
    },
    FieldRow {
        label: "Sex",
        comparison: Some("sex"),
        value: |r| match r.sex {
            crate::record::Sex::Unknown => String::new(),
            s => s.as_str().to_string(),
        },
    },
    FieldRow {
        label: "National id",
        comparison: Some("national_id"),
        value: |r| r.national_id().unwrap_or_default().to_string(),
    },
    FieldRow {
        label: "Phone",
        comparison: Some("phone"),
        value: |r| join(&r.phones),
    },
    FieldRow {
        label: "Street",
        comparison: Some("street"),
        value: |r| join(&r.address.lines),
    },
    FieldRow {
        label: "City",
        comparison: None,
        value: |r| r.address.city.clone().unwrap_or_default(),
    },
    FieldRow {
        label: "Postcode",
        comparison: Some("postcode"),
        value: |r| r.address.postal_code.clone().unwrap_or_default(),
    },
    FieldRow {
        label: "Email",
        comparison: Some("email"),
        value: |r| r.email.clone().unwrap_or_default(),
    },
    FieldRow {
        label: "Other identifiers",
        comparison: None,
        value: |r| {
            r.identifiers
                .iter()
                .filter(|i| i.system != crate::record::NATIONAL_ID_SYSTEM)
                .map(|i| format!("{}: {}", i.system, i.value))
                .collect::<Vec<_>>()
                .join(", ")
        },
    },
    FieldRow {
        label: "Multiple birth order",
        comparison: None,
        value: |r| {
            r.multiple_birth_order
                .map(|o| o.to_string())
                .unwrap_or_default()
        },
    },
];

/// An agreement level in words.
pub fn level_words(level: &str) -> String {
    if let Some(level) = level.strip_prefix(crate::scoring::CROSSWISE_PREFIX) {
        return format!(
            "{} (given and family name read crosswise)",
            level_words(level)
        );
    }
    let fixed = match level {
        "exact" => "exact",
        "missing" => "missing on one side",
        "else" => "different",
        "nickname" => "nickname",
        "swapped" => "given and family name swapped",
        "previous_name" => "a previous family name",
        "phonetic" => "sounds alike",
        "initial" => "initial only",
        "jw_0.92" => "very alike spelling (Jaro–Winkler ≥ 0.92)",
        "jw_0.90" => "alike spelling (Jaro–Winkler ≥ 0.90)",
        "jw_0.88" => "alike spelling (Jaro–Winkler ≥ 0.88, or one edit apart)",
        "day_month_swapped" => "day and month swapped",
        "one_year_off" => "one year apart",
        "one_month_off" => "one month apart",
        "one_digit_off" => "one digit different",
        "one_substitution" => "one character different",
        "transposition" => "two characters transposed",
        "partial" => "agrees as far as given",
        "first_3" => "first three characters agree",
        "shared_word" => "a word in common",
        "agree" => "agree",
        other => return other.replace('_', " "),
    };
    fixed.to_string()
}

/// One side of a row: its characters, those that differ from the other side highlighted.
fn side(text: &str, other: &str) -> Markup {
    if text.is_empty() {
        return html! { span class="missing" { "(none)" } };
    }
    let (mine, _) = runs(text, other);
    html! {
        @for r in &mine {
            @if r.differs && !other.is_empty() {
                mark { (r.text) }
            } @else {
                (r.text)
            }
        }
    }
}

fn compare_table(n: usize, record: Option<&StoredRecord>, cand: &CandidateDetail) -> Markup {
    let explained = |name: &str| -> Option<&ComparisonView> {
        cand.candidate
            .explanation
            .iter()
            .find(|c| c.comparison == name)
    };
    let empty = Record::default();
    let (mine, theirs) = (
        record.map_or(&empty, |s| &s.record),
        cand.best.as_ref().map_or(&empty, |s| &s.record),
    );
    html! {
        table class="compare" {
            caption { "The record under review beside candidate " (n) "'s closest record" }
            thead { tr {
                th scope="col" { "Field" }
                th scope="col" { "Under review" @if let Some(r) = record { br; span class="key" { (r.key()) } } }
                th scope="col" { "Candidate " (n) @if let Some(b) = &cand.best { br; span class="key" { (b.key()) } } }
                th scope="col" { "Agreement" }
                th scope="col" class="num" { "Weight" }
            } }
            tbody {
                @for f in FIELDS {
                    @let (a, b) = ((f.value)(mine), (f.value)(theirs));
                    @if !a.is_empty() || !b.is_empty() {
                        @let same = a.trim().eq_ignore_ascii_case(b.trim());
                        @let view = f.comparison.and_then(explained);
                        tr class=[same.then_some("agree")] {
                            th scope="row" { (f.label) }
                            td { (side(&a, &b)) }
                            td { (side(&b, &a)) }
                            td { @if let Some(v) = view { (level_words(&v.level)) } @else if same { "same" } @else { "not compared" } }
                            td class="num" { @if let Some(v) = view { (format!("{:+.1}", v.weight)) } }
                        }
                    }
                }
            }
        }
    }
}

fn other_records(n: usize, cand: &CandidateDetail) -> Markup {
    html! {
        @if !cand.others.is_empty() {
            details {
                summary { "Candidate " (n) "'s other records (" (cand.others.len()) ")" }
                table {
                    thead { tr {
                        th scope="col" { "Record" } th scope="col" { "Name" } th scope="col" { "Birth date" }
                    } }
                    tbody {
                        @for r in &cand.others {
                            tr {
                                td { (r.key()) }
                                td { (record_name(&r.record)) }
                                td { (r.record.birth_date.map(|d| d.to_string()).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The task page; `prev` and `next` are the neighbouring open tasks.
pub fn task(
    frame: &Frame<'_>,
    d: &TaskDetail,
    prev: Option<TaskId>,
    next: Option<TaskId>,
) -> Markup {
    let t = &d.view.task;
    let reason = TaskReason::of(t);
    let open = t.is_open();
    layout(
        &format!("Review task {}", t.id),
        "task",
        frame,
        html! {
            nav aria-label="Tasks" class="pager" {
                @if let Some(p) = prev { a href={"/tasks/" (p)} data-key="k" rel="prev" { "← Previous task" } }
                a href="/worklist" { "Worklist" }
                @if let Some(n) = next { a href={"/tasks/" (n)} data-key="j" rel="next" { "Next task →" } }
            }
            h1 { "Review task " (t.id) }
            @match &t.status {
                TaskStatus::Open => p class="why" {
                    strong { "Why a registrar is needed: " } (reason.text()) "."
                },
                TaskStatus::Resolved(r) => p class="resolved" role="status" {
                    "Resolved: " (resolution_text(&r.action)) " by " (r.actor) " at " (when(r.at)) "."
                    @if !r.reason.is_empty() { " Comment: " (r.reason) }
                },
            }
            p {
                "Record under review: "
                @match &d.record {
                    Some(r) => { span class="key" { (r.key()) } ", now in person " a href={"/persons/" (r.euid)} { (r.euid) } }
                    None => { span class="key" { (t.record) } " (no longer stored)" }
                }
                ". Opened " (when(t.created_at)) "."
            }
            @if open {
                form method="post" action={"/tasks/" (t.id) "/resolve"} class="decide" {
                    (csrf(frame))
                    fieldset {
                        legend { "Candidate" }
                        @for (i, c) in d.candidates.iter().enumerate() {
                            div class="choice" {
                                input type="radio" name="euid" value=(c.candidate.euid) id={"c" (i + 1)}
                                    checked[i == 0] data-key=[(i < 9).then(|| (i + 1).to_string())];
                                label for={"c" (i + 1)} {
                                    (i + 1) ": person " (c.candidate.euid)
                                    " · score " (score(c.candidate.score))
                                    " · probability " (percent(c.candidate.probability))
                                }
                            }
                        }
                    }
                    div class="field" {
                        label for="comment" { "Comment (optional, kept in history)" }
                        textarea id="comment" name="comment" rows="2" maxlength="1024" data-key="c" {}
                    }
                    div class="actions" {
                        button type="submit" name="action" value="link" data-key="l" { "Link to chosen person " kbd { "l" } }
                        button type="submit" name="action" value="keep_separate" data-key="s" { "Keep separate " kbd { "s" } }
                        button type="submit" name="action" value="merge" data-key="m" { "Merge persons " kbd { "m" } }
                        a href={"/tasks/" (t.id) "/skip"} data-key="n" class="button" { "Skip " kbd { "n" } }
                    }
                }
            }
            @for (i, c) in d.candidates.iter().enumerate() {
                section class="candidate" aria-labelledby={"cand-" (i + 1)} {
                    h2 id={"cand-" (i + 1)} {
                        "Candidate " (i + 1) ": person "
                        @match &c.person {
                            Some(p) => a href={"/persons/" (p)} { (p) },
                            None => (c.candidate.euid),
                        }
                    }
                    p {
                        "Score " strong { (score(c.candidate.score)) }
                        " · probability " strong { (percent(c.candidate.probability)) }
                        " · "
                        @match c.candidate.reason {
                            Some(r) => (r.text()),
                            None => "would link on its own, but another candidate is as close",
                        }
                        @if c.person.as_ref().is_some_and(|p| *p != c.candidate.euid) {
                            " (merged into " (c.person.as_ref().map(ToString::to_string).unwrap_or_default()) " since)"
                        }
                    }
                    (compare_table(i + 1, d.record.as_ref(), c))
                    (other_records(i + 1, c))
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_read_as_words() {
        assert_eq!(
            level_words("jw_0.92"),
            "very alike spelling (Jaro–Winkler ≥ 0.92)"
        );
        assert_eq!(level_words("some_new_level"), "some new level");
    }

    #[test]
    fn differing_characters_are_marked() {
        let m = side("Quillfeather", "Quilfeather").into_string();
        assert_eq!(m, "Quil<mark>l</mark>feather");
        assert_eq!(
            side("", "x").into_string(),
            r#"<span class="missing">(none)</span>"#
        );
    }
}
