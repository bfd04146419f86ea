//! Form posts and query strings into domain requests. A value that cannot be used is
//! refused with [`Error::InvalidInput`] naming the form field, never quoting what was typed.

use crate::app::{
    Attribution, Incoming, LinkRecord, MatchQuery, MergePersons, ResolveReviewTask, SplitPerson,
    UnlinkRecord, Unreadable,
};
use crate::error::{Error, Result};
use crate::record::{Address, Identifier, PartialDate, Record, RecordKey, Sex, NATIONAL_ID_SYSTEM};
use crate::service::{
    AgeBand, TaskReason, WorklistQuery, WorklistSort, WorklistStatus, MAX_SEARCH_HITS,
};
use crate::store::{Euid, ResolutionAction, TaskId};

/// A form's fields in the order sent (a name may repeat: checkboxes).
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every non-blank value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
            .collect()
    }
}

/// Longest comment kept in history, in bytes (the service's limit on a reason).
const MAX_COMMENT: usize = crate::service::stamp::MAX_REASON_LEN;

/// The optional comment of a registrar action, as its attribution.
///
/// # Errors
/// [`Error::InvalidInput`] naming `comment`: too long, or control characters.
pub fn attribution(f: &Fields, actor: &str) -> Result<Attribution> {
    let comment = f.one("comment").unwrap_or("");
    if comment.len() > MAX_COMMENT {
        return Err(Error::invalid(
            "comment",
            format!("longer than {MAX_COMMENT} bytes"),
        ));
    }
    // Browsers send line breaks as CRLF; history keeps plain newlines.
    let comment = comment.replace("\r\n", "\n");
    if comment
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Error::invalid("comment", "contains control characters"));
    }
    Ok(Attribution {
        actor: actor.to_string(),
        reason: comment,
    })
}

/// An EUID from field `field`.
fn euid(f: &Fields, field: &'static str) -> Result<Euid> {
    let v = f
        .one(field)
        .ok_or_else(|| Error::invalid(field, "missing"))?;
    Euid::parse(v).map_err(|_| Error::invalid(field, "not an EUID (E and 10 base-36 digits)"))
}

/// A value percent-encoded for a query string or form body (every byte but the unreserved
/// characters).
pub fn percent_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A record key as a form carries it: source and local id, each with `%` and `/` escaped,
/// joined by `/`.
pub fn key_value(key: &RecordKey) -> String {
    let esc = |s: &str| s.replace('%', "%25").replace('/', "%2F");
    format!("{}/{}", esc(&key.source), esc(&key.local_id))
}

fn parse_key(field: &'static str, v: &str) -> Result<RecordKey> {
    let bad = || Error::invalid(field, "not a record key");
    let unesc = |s: &str| s.replace("%2F", "/").replace("%25", "%");
    let (source, local_id) = v.split_once('/').ok_or_else(bad)?;
    if source.is_empty() || local_id.is_empty() {
        return Err(bad());
    }
    Ok(RecordKey::new(unesc(source), unesc(local_id)))
}

/// A review task's resolution: `action` (`link`, `merge`, `keep_separate`), the chosen
/// candidate `euid` for a link or merge, and the comment.
pub fn resolution(task: TaskId, f: &Fields, actor: &str) -> Incoming<ResolveReviewTask> {
    let by = attribution(f, actor)?;
    let action = match f.one("action") {
        Some("link") => ResolutionAction::Link {
            euid: euid(f, "euid")?,
        },
        Some("merge") => ResolutionAction::Merge {
            into: euid(f, "euid")?,
        },
        Some("keep_separate") => ResolutionAction::KeepSeparate,
        Some(_) => {
            return Err(Unreadable::from(Error::invalid(
                "action",
                "expected link, merge or keep_separate",
            )))
        }
        None => return Err(Error::invalid("action", "missing").into()),
    };
    Ok(ResolveReviewTask { task, action, by })
}

/// The tasks chosen for a bulk action (field `task`, repeated), at most `max`.
///
/// # Errors
/// [`Error::InvalidInput`] naming `task`: none chosen, too many, or not a task id.
pub fn tasks(f: &Fields, max: usize) -> Result<Vec<TaskId>> {
    let ids = f.all("task");
    if ids.is_empty() {
        return Err(Error::invalid("task", "choose at least one task"));
    }
    if ids.len() > max {
        return Err(Error::invalid(
            "task",
            format!("at most {max} tasks at once"),
        ));
    }
    let mut out: Vec<TaskId> = ids
        .into_iter()
        .map(|v| TaskId::parse(v).map_err(|_| Error::invalid("task", "not a task id")))
        .collect::<Result<_>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Unlink the record of field `record` from its person.
pub fn unlink(f: &Fields, actor: &str) -> Incoming<UnlinkRecord> {
    let by = attribution(f, actor)?;
    let key = parse_key("record", f.one("record").unwrap_or(""))?;
    Ok(UnlinkRecord { key, by })
}

/// Link the record of field `record` to the person of field `euid`.
pub fn link(f: &Fields, actor: &str) -> Incoming<LinkRecord> {
    let by = attribution(f, actor)?;
    let key = parse_key("record", f.one("record").unwrap_or(""))?;
    Ok(LinkRecord {
        key,
        euid: euid(f, "euid")?,
        by,
    })
}

/// Split the records of field `record` (repeated) out of `person`.
pub fn split(person: Euid, f: &Fields, actor: &str) -> Incoming<SplitPerson> {
    let by = attribution(f, actor)?;
    let values = f.all("record");
    if values.is_empty() {
        return Err(Error::invalid("record", "choose at least one record to move").into());
    }
    let keys = values
        .into_iter()
        .map(|v| parse_key("record", v))
        .collect::<Result<Vec<_>>>()?;
    Ok(SplitPerson {
        euid: person,
        keys,
        by,
    })
}

/// Merge `from` into the person of field `into`.
pub fn merge(from: Euid, f: &Fields, actor: &str) -> Incoming<MergePersons> {
    let by = attribution(f, actor)?;
    Ok(MergePersons {
        from,
        into: euid(f, "into")?,
        by,
    })
}

/// A person's EUID from a path segment.
pub fn path_euid(v: &str) -> Incoming<Euid> {
    Euid::parse(v).map_err(|_| Error::invalid("euid", "not an EUID").into())
}

/// A task id from a path segment.
pub fn path_task(v: &str) -> Incoming<TaskId> {
    TaskId::parse(v).map_err(|_| Error::invalid("task_id", "not a task id").into())
}

/// Longest search value, in bytes.
const MAX_SEARCH_VALUE: usize = 200;

/// A search for persons: given and family name, birth date, sex, national id, phone,
/// postcode; at least one.
pub fn search(f: &Fields) -> Incoming<MatchQuery> {
    let text = |field: &'static str| -> Result<Option<String>> {
        match f.one(field) {
            Some(v) if v.len() > MAX_SEARCH_VALUE || v.chars().any(char::is_control) => {
                Err(Error::invalid(
                    field,
                    format!("up to {MAX_SEARCH_VALUE} printable characters"),
                ))
            }
            v => Ok(v.map(str::to_string)),
        }
    };
    let birth_date = match f.one("birth_date") {
        Some(v) => Some(PartialDate::parse_iso(v).map_err(|_| {
            Error::invalid(
                "birth_date",
                "expected a date as YYYY-MM-DD, YYYY-MM or YYYY",
            )
        })?),
        None => None,
    };
    let sex = match f.one("sex") {
        Some(v) => Sex::parse(v)
            .map_err(|_| Error::invalid("sex", "expected female, male, other or unknown"))?,
        None => Sex::Unknown,
    };
    let record = Record {
        given_name: text("given_name")?,
        family_name: text("family_name")?,
        birth_date,
        sex,
        phones: text("phone")?.into_iter().collect(),
        identifiers: text("national_id")?
            .map(|value| Identifier {
                system: NATIONAL_ID_SYSTEM.into(),
                value,
            })
            .into_iter()
            .collect(),
        address: Address {
            postal_code: text("postcode")?,
            ..Address::default()
        },
        ..Record::default()
    };
    if record.is_empty() {
        return Err(Error::invalid("search", "fill in at least one field").into());
    }
    Ok(MatchQuery {
        record,
        max_candidates: MAX_SEARCH_HITS,
    })
}

/// A worklist query from the page's query string: `status`, `age`, `reason`, `source`,
/// `sort`, `page`. Unknown values are refused naming the field.
pub fn worklist(f: &Fields) -> Incoming<WorklistQuery> {
    let mut q = WorklistQuery::default();
    if let Some(v) = f.one("status") {
        q.status = match v {
            "open" => WorklistStatus::Open,
            "resolved" => WorklistStatus::Resolved,
            _ => return Err(Error::invalid("status", "expected open or resolved").into()),
        };
    }
    if let Some(v) = f.one("age") {
        q.age = Some(
            AgeBand::parse(v)
                .ok_or_else(|| Error::invalid("age", "expected day, week, month or older"))?,
        );
    }
    if let Some(v) = f.one("reason") {
        q.reason =
            Some(TaskReason::parse(v).ok_or_else(|| Error::invalid("reason", "unknown reason"))?);
    }
    if let Some(v) = f.one("source") {
        if v.len() > 128 || v.chars().any(char::is_control) {
            return Err(Error::invalid("source", "not a source name").into());
        }
        q.source = Some(v.to_string());
    }
    if let Some(v) = f.one("sort") {
        q.sort = WorklistSort::parse(v)
            .ok_or_else(|| Error::invalid("sort", "expected oldest, newest, score or score_low"))?;
    }
    if let Some(v) = f.one("page") {
        let page: usize = v
            .parse()
            .map_err(|_| Error::invalid("page", "expected a page number"))?;
        q.page = page.saturating_sub(1);
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn message<T: std::fmt::Debug>(r: Incoming<T>) -> String {
        r.unwrap_err().error.to_string()
    }

    #[test]
    fn bad_values_are_named_never_quoted() {
        let e = message(search(&fields(&[("birth_date", "1958-13-45")])));
        assert!(e.contains("birth_date") && !e.contains("1958"), "{e}");
        let e = message(search(&fields(&[("given_name", "  ")])));
        assert!(e.contains("search"), "{e}");
        let e = message(resolution(TaskId(1), &fields(&[("action", "link")]), "ann"));
        assert!(e.contains("euid") && e.contains("missing"), "{e}");
        let e = message(resolution(
            TaskId(1),
            &fields(&[("action", "link"), ("euid", "Zephyrine")]),
            "ann",
        ));
        assert!(e.contains("euid") && !e.contains("Zephyrine"), "{e}");
        let long = "x".repeat(MAX_COMMENT + 1);
        let e = message(resolution(
            TaskId(1),
            &fields(&[("action", "keep_separate"), ("comment", &long)]),
            "ann",
        ));
        assert!(e.contains("comment") && !e.contains("xxx"), "{e}");
        let e = message(worklist(&fields(&[("reason", "Quillfeather")])));
        assert!(e.contains("reason") && !e.contains("Quill"), "{e}");
        assert!(tasks(&fields(&[]), 10).is_err());
        assert!(tasks(&fields(&[("task", "T1"), ("task", "T2")]), 1).is_err());
    }

    #[test]
    fn good_values_become_requests() {
        let r = resolution(
            TaskId(4),
            &fields(&[
                ("action", "merge"),
                ("euid", "E0000000001"),
                ("comment", "same MRN\r\nchecked"),
            ]),
            "ann",
        )
        .unwrap();
        assert_eq!(r.by.reason, "same MRN\nchecked");
        assert!(matches!(r.action, ResolutionAction::Merge { .. }));
        let key = RecordKey::new("st/marys", "MRN%1");
        let f = fields(&[("record", &key_value(&key))]);
        assert_eq!(unlink(&f, "ann").unwrap().key, key);
        let q = search(&fields(&[
            ("family_name", "Okonkwo"),
            ("birth_date", "1961"),
        ]))
        .unwrap();
        assert_eq!(q.record.family_name.as_deref(), Some("Okonkwo"));
        let w = worklist(&fields(&[
            ("sort", "score"),
            ("page", "3"),
            ("age", "week"),
        ]))
        .unwrap();
        assert_eq!(
            (w.sort, w.page, w.age),
            (WorklistSort::ScoreHigh, 2, Some(AgeBand::UnderAWeek))
        );
        assert_eq!(
            tasks(
                &fields(&[("task", "T2"), ("task", "T1"), ("task", "T2")]),
                5
            )
            .unwrap(),
            [TaskId(1), TaskId(2)]
        );
    }
}
