//! The console's HTML, written with maud (checked at compile time; every value escaped).
//!
//! Pages work without scripting: every action is a plain form, every filter a link or a GET
//! form without patient data. The one script (`/static/console.js`) adds keyboard
//! operation and the help overlay; the stylesheet gives a visible focus ring and text
//! contrast of at least 4.5:1 (dimmed rows included). No inline script or style, so the
//! Content-Security-Policy allows scripts and styles from the console itself only.

mod person;
mod task;
mod worklist;

pub use person::{merge_preview, person};
pub use task::task;
pub use worklist::{bulk_confirm, bulk_done, worklist, MAX_BULK};

use maud::{html, Markup, DOCTYPE};

use crate::auth::Identity;
use crate::record::{PartialDate, Sex};
use crate::service::{GoldenView, PersonHit};
use crate::store::UnixMillis;

/// What every page needs besides its content.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Who is signed in (`None` on the login page).
    pub who: Option<&'a Identity>,
    /// The session's CSRF token, for the forms.
    pub csrf: &'a str,
    /// A message left by the previous action.
    pub flash: Option<&'a str>,
    /// Whether the console asks for a login (logout is shown only then).
    pub auth: bool,
}

/// The hidden CSRF field of a state-changing form.
pub fn csrf(frame: &Frame<'_>) -> Markup {
    html! { input type="hidden" name="csrf" value=(frame.csrf); }
}

/// A whole page: `page` names it for the script's keyboard map.
pub fn layout(title: &str, page: &str, frame: &Frame<'_>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · empi registrar console" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body data-page=(page) {
                a class="skip" href="#main" { "Skip to main content" }
                header {
                    nav aria-label="Main" {
                        span class="brand" { "empi registrar console" }
                        @if frame.who.is_some() {
                            a href="/worklist" data-key="w" { "Worklist" }
                            a href="/search" data-key="/" { "Search" }
                            a href="/help" { "Keyboard help" }
                        }
                        @if let Some(who) = frame.who {
                            span class="who" {
                                "Signed in as " strong { (who.name) } " (" (who.role) ")"
                            }
                            @if frame.auth {
                                form method="post" action="/logout" class="inline" {
                                    (csrf(frame))
                                    button type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    @if let Some(msg) = frame.flash {
                        p class="flash" role="status" { (msg) }
                    }
                    (content)
                }
                @if frame.who.is_some() {
                    (help_overlay())
                }
            }
        }
    }
}

/// The keyboard map, as a table (the help page and the overlay show the same).
pub fn keys_table() -> Markup {
    let rows: &[(&str, &str)] = &[
        ("?", "show or hide this help"),
        ("w", "worklist"),
        ("/", "search for a person"),
        (
            "j / k",
            "worklist: next / previous task; task page: next / previous task",
        ),
        ("Enter", "worklist: open the task in focus"),
        (
            "x",
            "worklist: select the task in focus for bulk keep-separate",
        ),
        ("1 – 5", "task page: choose candidate 1 to 5"),
        ("l", "task page: link the record to the chosen candidate"),
        (
            "s",
            "task page: keep separate (not a duplicate of any candidate)",
        ),
        (
            "m",
            "task page: merge the record's person into the chosen candidate",
        ),
        ("n", "task page: skip to the next task without deciding"),
        ("c", "task page: write a comment (kept in history)"),
        ("Esc", "close this help, or leave a text field"),
    ];
    html! {
        table class="keys" {
            caption { "Keyboard shortcuts (not while typing in a field)" }
            thead { tr { th scope="col" { "Key" } th scope="col" { "Does" } } }
            tbody {
                @for (k, what) in rows {
                    tr { td { kbd { (k) } } td { (what) } }
                }
            }
        }
    }
}

fn help_overlay() -> Markup {
    html! {
        div id="help" class="overlay" role="dialog" aria-modal="true" aria-labelledby="help-title" hidden {
            div class="dialog" tabindex="-1" {
                h2 id="help-title" { "Keyboard help" }
                (keys_table())
                button type="button" id="help-close" { "Close (Esc)" }
            }
        }
    }
}

/// The help page (reached without scripting).
pub fn help(frame: &Frame<'_>) -> Markup {
    layout(
        "Keyboard help",
        "help",
        frame,
        html! {
            h1 { "Keyboard help" }
            p { "Every action is also a button; the keys are shortcuts for trained hands." }
            (keys_table())
        },
    )
}

/// The login form; `refusal` explains a refused attempt.
pub fn login(login_csrf: &str, refusal: Option<&str>) -> Markup {
    let frame = Frame {
        who: None,
        csrf: "",
        flash: None,
        auth: true,
    };
    layout(
        "Sign in",
        "login",
        &frame,
        html! {
            h1 { "Sign in" }
            @if let Some(why) = refusal {
                p class="error" role="alert" { (why) }
            }
            p { "Sign in with your registrar token (ask an operator: " code { "empi token create --role registrar" } ")." }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(login_csrf);
                label for="token" { "Token" }
                input id="token" name="token" type="password" autocomplete="off" required autofocus;
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// A page explaining why an action or page failed; `back` leads back to where it was.
pub fn error(frame: &Frame<'_>, heading: &str, message: &str, back: Option<&str>) -> Markup {
    layout(
        heading,
        "error",
        frame,
        html! {
            h1 { (heading) }
            p class="error" role="alert" { (message) }
            @if let Some(href) = back {
                p { a href=(href) { "Back" } }
            }
            p { a href="/worklist" { "To the worklist" } }
        },
    )
}

/// The search form and, after a search, the persons found.
pub fn search(frame: &Frame<'_>, hits: Option<&[PersonHit]>) -> Markup {
    let field = |id: &str, label: &str, kind: &str, hint: Option<&str>| {
        html! {
            div class="field" {
                label for=(id) { (label) }
                @if let Some(h) = hint {
                    input id=(id) name=(id) type=(kind) autocomplete="off" aria-describedby={(id) "-hint"};
                    span id={(id) "-hint"} class="hint" { (h) }
                } @else {
                    input id=(id) name=(id) type=(kind) autocomplete="off";
                }
            }
        }
    };
    layout(
        "Search",
        "search",
        frame,
        html! {
            h1 { "Search for a person" }
            p { "Through the matcher: misspelt names still find the person. What you type is sent in the form, never in the address." }
            form method="post" action="/search" class="search" {
                (csrf(frame))
                (field("given_name", "Given name", "text", None))
                (field("family_name", "Family name", "text", None))
                (field("birth_date", "Birth date", "text", Some("YYYY-MM-DD, YYYY-MM or YYYY")))
                (select("sex", "Sex", true, ["female", "male", "other"].map(|s| (s, s.to_string(), false))))
                (field("national_id", "National id", "text", None))
                (field("phone", "Phone", "tel", None))
                (field("postcode", "Postcode", "text", None))
                button type="submit" { "Search" }
            }
            @if let Some(hits) = hits {
                h2 id="results" { "Persons found" }
                @if hits.is_empty() {
                    p { "Nobody like that." }
                } @else {
                    table aria-labelledby="results" {
                        thead { tr {
                            th scope="col" { "Person" } th scope="col" { "Name" }
                            th scope="col" { "Birth date" } th scope="col" { "Sex" }
                            th scope="col" { "Records" } th scope="col" class="num" { "Score" }
                            th scope="col" class="num" { "Probability" }
                        } }
                        tbody {
                            @for h in hits {
                                tr {
                                    td { a href={"/persons/" (h.euid)} { (h.euid) } }
                                    td { (golden_name(&h.golden)) }
                                    td { (date(h.golden.birth_date.as_ref())) }
                                    td { (sex(h.golden.sex)) }
                                    td class="num" { (h.records.len()) }
                                    td class="num" { (score(h.score)) }
                                    td class="num" { (percent(h.probability)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

// ---- small formatting helpers ------------------------------------------------------------

/// A time as `YYYY-MM-DD HH:MM UTC`.
pub fn when(at: UnixMillis) -> String {
    let t = crate::time::format_rfc3339(at.0);
    format!("{} {} UTC", &t[..10], &t[11..16])
}

/// An age in words: minutes, hours or days.
pub fn age(created: UnixMillis, now: UnixMillis) -> String {
    let mins = (now.0 - created.0).max(0) / 60_000;
    match mins {
        0..=59 => format!("{mins} min"),
        60..=1439 => format!("{} h", mins / 60),
        _ => match mins / 1440 {
            1 => "1 day".into(),
            d => format!("{d} days"),
        },
    }
}

/// A match weight.
pub fn score(w: f64) -> String {
    if w.is_finite() {
        format!("{w:.1}")
    } else {
        "–".into()
    }
}

/// A probability as a percentage.
pub fn percent(p: f64) -> String {
    if !p.is_finite() {
        "–".into()
    } else if (0.9995..1.0).contains(&p) {
        ">99.9%".into()
    } else {
        format!("{:.1}%", p * 100.0)
    }
}

fn date(d: Option<&PartialDate>) -> String {
    d.map(ToString::to_string).unwrap_or_default()
}

fn sex(s: Sex) -> &'static str {
    match s {
        Sex::Unknown => "",
        s => s.as_str(),
    }
}

/// A name from its parts (given, middle, family), those present.
pub fn name_of(parts: [&Option<String>; 3]) -> String {
    parts
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A golden view's name.
pub fn golden_name(g: &GoldenView) -> String {
    name_of([&g.given_name, &g.middle_name, &g.family_name])
}

/// A record's name.
pub fn record_name(r: &crate::record::Record) -> String {
    name_of([&r.given_name, &r.middle_name, &r.family_name])
}

/// A labelled drop-down: `options` are (value, text, selected); `any` adds a first option
/// with no value.
pub fn select<'a>(
    id: &str,
    label: &str,
    any: bool,
    options: impl IntoIterator<Item = (&'a str, String, bool)>,
) -> Markup {
    html! {
        div class="field" {
            label for=(id) { (label) }
            select id=(id) name=(id) {
                @if any { option value="" { "any" } }
                @for (value, text, selected) in options {
                    option value=(value) selected[selected] { (text) }
                }
            }
        }
    }
}

/// A golden view as a definition list.
pub fn golden(g: &GoldenView) -> Markup {
    let ids: Vec<String> = g
        .identifiers
        .iter()
        .map(|i| format!("{}: {}", i.system, i.value))
        .collect();
    let address: Vec<&str> = g
        .address
        .lines
        .iter()
        .map(String::as_str)
        .chain(
            [
                &g.address.city,
                &g.address.state,
                &g.address.postal_code,
                &g.address.country,
            ]
            .into_iter()
            .flatten()
            .map(String::as_str),
        )
        .collect();
    let rows: Vec<(&str, String)> = vec![
        ("Name", golden_name(g)),
        ("Previous family names", g.previous_family_names.join(", ")),
        ("Birth date", date(g.birth_date.as_ref())),
        ("Sex", sex(g.sex).to_string()),
        ("Address", address.join(", ")),
        ("Phones", g.phones.join(", ")),
        ("Email", g.email.clone().unwrap_or_default()),
        ("Identifiers", ids.join(", ")),
        (
            "Multiple birth order",
            g.multiple_birth_order
                .map(|o| o.to_string())
                .unwrap_or_default(),
        ),
    ];
    html! {
        dl class="golden" {
            @for (k, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
                dt { (k) } dd { (v) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_no_inline_script_or_style() {
        let who = Identity {
            name: "<script>alert(1)</script>".into(),
            ..Identity::local_dev()
        };
        let frame = Frame {
            who: Some(&who),
            csrf: "t",
            flash: Some("<b>"),
            auth: true,
        };
        let page = help(&frame).into_string();
        assert!(!page.contains("<script>alert"), "escaped");
        assert!(page.contains("&lt;b&gt;"));
        assert_eq!(
            page.matches("<script").count(),
            1,
            "only the external script"
        );
        assert!(page.contains(r#"<script src="/static/console.js" defer>"#));
        assert!(!page.contains("style="), "no inline style");
        assert!(!page.contains("onclick"), "no inline handlers");
    }

    #[test]
    fn formatting() {
        let day = 86_400_000;
        assert_eq!(age(UnixMillis(0), UnixMillis(3 * day)), "3 days");
        assert_eq!(age(UnixMillis(0), UnixMillis(day)), "1 day");
        assert_eq!(age(UnixMillis(0), UnixMillis(7_200_000)), "2 h");
        assert_eq!(percent(0.5), "50.0%");
        assert_eq!(percent(0.99999), ">99.9%");
        assert_eq!(score(f64::NAN), "–");
        assert_eq!(when(UnixMillis(0)), "1970-01-01 00:00 UTC");
    }
}
