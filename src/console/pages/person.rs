//! The person page (golden view, records by source, history; unlink, split, merge) and the
//! merge preview.

use std::collections::BTreeMap;

use maud::{html, Markup};

use crate::console::forms::key_value;
use crate::service::{MergePreview, PersonView};
use crate::store::{HistoryAction, HistoryEntry, LinkMethod, PersonStatus, StoredRecord};

use super::{csrf, golden, layout, record_name, when, Frame};

fn action_words(a: HistoryAction) -> &'static str {
    match a {
        HistoryAction::PersonCreated => "person created",
        HistoryAction::RecordLinked => "record linked",
        HistoryAction::RecordUpdated => "record updated",
        HistoryAction::RecordUnlinked => "record moved out",
        HistoryAction::RecordRemoved => "record removed",
        HistoryAction::MergedInto => "merged into another person",
        HistoryAction::MergeAbsorbed => "another person merged in",
        HistoryAction::Split => "records split off",
        HistoryAction::Retired => "retired (no records left)",
        HistoryAction::NotDuplicateAsserted => "asserted a different person",
        HistoryAction::NotDuplicateRetracted => "different-person assertion withdrawn",
        HistoryAction::ReviewOpened => "review task opened",
        HistoryAction::ReviewResolved => "review task resolved",
    }
}

fn link_words(m: &LinkMethod) -> String {
    match m {
        LinkMethod::Created => "created the person".into(),
        LinkMethod::Auto { score } => format!("automatic, score {score:.1}"),
        LinkMethod::Registrar => "by a registrar".into(),
        LinkMethod::Merge => "through a merge".into(),
    }
}

/// The history table; an entry of a person merged in names that person.
fn history(euid: &crate::store::Euid, entries: &[HistoryEntry]) -> Markup {
    html! {
        table class="history" {
            caption { "History, newest first" }
            thead { tr {
                th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" }
                th scope="col" { "Records" } th scope="col" { "Persons" } th scope="col" { "Task" }
                th scope="col" { "Why" }
            } }
            tbody {
                @for h in entries.iter().rev() {
                    tr {
                        td { (when(h.at)) }
                        td { (h.actor) }
                        td { (action_words(h.action)) @if h.euid != *euid { " (of " (h.euid) ")" } }
                        td { @for (i, r) in h.records.iter().enumerate() { @if i > 0 { ", " } (r) } }
                        td { @for (i, e) in h.euids.iter().enumerate() { @if i > 0 { ", " } a href={"/persons/" (e)} { (e) } } }
                        td { @if let Some(t) = h.task { a href={"/tasks/" (t)} { (t) } } }
                        td { (h.reason) }
                    }
                }
            }
        }
    }
}

fn records_by_source(frame: &Frame<'_>, p: &PersonView) -> Markup {
    let mut by_source: BTreeMap<&str, Vec<&StoredRecord>> = BTreeMap::new();
    for r in &p.records {
        by_source.entry(&r.record.source).or_default().push(r);
    }
    let euid = &p.person.euid;
    let several = p.records.len() > 1;
    html! {
        h2 id="records" { "Records (" (p.records.len()) ")" }
        @for (source, recs) in &by_source {
            table class="records" {
                caption { "Source " (source) }
                thead { tr {
                    @if several { th scope="col" { span class="sr-only" { "Select for split" } } }
                    th scope="col" { "Record" } th scope="col" { "Name" } th scope="col" { "Birth date" }
                    th scope="col" { "Linked" } th scope="col" { "Updated" }
                    @if several { th scope="col" { "Unlink" } }
                } }
                tbody {
                    @for r in recs {
                        @let id = format!("rec-{}", key_value(&r.key()).replace(['/', '%'], "-"));
                        tr {
                            @if several {
                                td {
                                    input type="checkbox" form="split" name="record" value=(key_value(&r.key())) id=(id);
                                    label for=(id) class="sr-only" { "Select record " (r.key()) " to split off" }
                                }
                            }
                            td { span class="key" { (r.record.local_id) } }
                            td { (record_name(&r.record)) }
                            td { (r.record.birth_date.map(|d| d.to_string()).unwrap_or_default()) }
                            td { (link_words(&r.link.method)) ", " (r.link.actor) ", " (when(r.link.at)) }
                            td { (when(r.updated_at)) }
                            @if several {
                                td {
                                    form method="post" action={"/persons/" (euid) "/unlink"} class="inline" {
                                        (csrf(frame))
                                        input type="hidden" name="record" value=(key_value(&r.key()));
                                        button type="submit" aria-label={"Unlink record " (r.key()) " into a new person"} { "Unlink" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The person page.
pub fn person(frame: &Frame<'_>, p: &PersonView) -> Markup {
    let euid = &p.person.euid;
    let active = p.person.is_active();
    layout(
        &format!("Person {euid}"),
        "person",
        frame,
        html! {
            h1 { "Person " (euid) }
            @if !p.merge_path.is_empty() {
                p role="status" { (p.requested) " was merged; this is its survivor." }
            }
            @match &p.person.status {
                PersonStatus::Active => {}
                PersonStatus::MergedInto(into) => p { "Merged into " a href={"/persons/" (into)} { (into) } "." },
                PersonStatus::Retired => p { "Retired: this person has no records left." },
            }
            h2 { "Golden view" }
            (golden(&p.golden))
            @if active {
                (records_by_source(frame, p))
                @if p.records.len() > 1 {
                    form method="post" action={"/persons/" (euid) "/split"} id="split" class="box" {
                        (csrf(frame))
                        h3 { "Split" }
                        p { "Move the records selected above into a new person; at least one stays." }
                        div class="field" {
                            label for="split-comment" { "Comment (optional, kept in history)" }
                            textarea id="split-comment" name="comment" rows="2" maxlength="1024" {}
                        }
                        button type="submit" { "Split selected records off" }
                    }
                }
                form method="get" action={"/persons/" (euid) "/merge-preview"} class="box" {
                    h3 { "Merge" }
                    div class="field" {
                        label for="into" { "Merge this person into person (EUID)" }
                        input id="into" name="into" type="text" required pattern="E[0-9A-Z]{10,13}" autocomplete="off";
                    }
                    button type="submit" { "Preview the merge" }
                }
            }
            h2 { "History" }
            (history(euid, &p.history))
        },
    )
}

/// The merge preview: both persons now and the survivor's golden view afterwards.
pub fn merge_preview(frame: &Frame<'_>, m: &MergePreview) -> Markup {
    let (from, into) = (&m.from.person.euid, &m.into.person.euid);
    layout(
        "Merge preview",
        "merge",
        frame,
        html! {
            h1 { "Merge " (from) " into " (into) "?" }
            div class="columns" {
                section aria-labelledby="m-from" {
                    h2 id="m-from" { "Folded away: " a href={"/persons/" (from)} { (from) } " (" (m.from.records.len()) " records)" }
                    (golden(&m.from.golden))
                }
                section aria-labelledby="m-into" {
                    h2 id="m-into" { "Survivor: " a href={"/persons/" (into)} { (into) } " (" (m.into.records.len()) " records)" }
                    (golden(&m.into.golden))
                }
                section aria-labelledby="m-after" {
                    h2 id="m-after" { "Afterwards: " (into) " (" (m.from.records.len() + m.into.records.len()) " records)" }
                    (golden(&m.golden))
                }
            }
            @match &m.refused {
                Some(why) => p class="error" role="alert" { "This merge would be refused: " (why) "." },
                None => form method="post" action={"/persons/" (from) "/merge"} {
                    (csrf(frame))
                    input type="hidden" name="into" value=(into);
                    div class="field" {
                        label for="comment" { "Comment (optional, kept in history)" }
                        textarea id="comment" name="comment" rows="2" maxlength="1024" {}
                    }
                    button type="submit" { "Merge " (from) " into " (into) }
                    " "
                    a href={"/persons/" (from)} { "Cancel" }
                },
            }
        },
    )
}
