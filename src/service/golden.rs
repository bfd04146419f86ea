//! The golden view: a person's best current demographics assembled from its records.
//!
//! The rule (also in [`crate::service`]): order the linked records newest first (by when
//! their content was last stored), then most complete first (most fields present), then by
//! key. Then, per field:
//! - names, email, multiple-birth order: the first non-empty value in that order;
//! - sex: the first value that is not unknown;
//! - birth date: the first *full* date; only when no record has one, the first partial date;
//! - address: taken whole from the first record with any address part (lines of different
//!   addresses are never mixed);
//! - previous family names, phones, identifiers: every distinct value, in that order, at most
//!   [`MAX_REPEATED`] of each.

use std::cmp::Reverse;

use crate::record::{Record, Sex, MAX_REPEATED};
use crate::store::StoredRecord;

use super::types::GoldenView;

/// How many demographic fields a record carries.
fn completeness(r: &Record) -> usize {
    [
        r.given_name.is_some(),
        r.middle_name.is_some(),
        r.family_name.is_some(),
        !r.previous_family_names.is_empty(),
        r.birth_date.is_some(),
        r.sex != Sex::Unknown,
        !r.address.is_empty(),
        !r.phones.is_empty(),
        r.email.is_some(),
        !r.identifiers.is_empty(),
        r.multiple_birth_order.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count()
}

fn present(v: &Option<String>) -> Option<&String> {
    v.as_ref().filter(|s| !s.trim().is_empty())
}

/// Assembles the golden view of a person from its records (see the module docs).
pub fn golden_view(records: &[StoredRecord]) -> GoldenView {
    let mut order: Vec<&StoredRecord> = records.iter().collect();
    order.sort_by_key(|s| {
        (
            Reverse(s.updated_at),
            Reverse(completeness(&s.record)),
            s.key(),
        )
    });
    let recs: Vec<&Record> = order.iter().map(|s| &s.record).collect();
    let first = |f: fn(&Record) -> &Option<String>| -> Option<String> {
        recs.iter().find_map(|r| present(f(r))).cloned()
    };
    let birth_date = recs
        .iter()
        .filter_map(|r| r.birth_date)
        .find(|d| d.is_full())
        .or_else(|| recs.iter().find_map(|r| r.birth_date));
    let mut g = GoldenView {
        given_name: first(|r| &r.given_name),
        middle_name: first(|r| &r.middle_name),
        family_name: first(|r| &r.family_name),
        birth_date,
        sex: recs
            .iter()
            .map(|r| r.sex)
            .find(|s| *s != Sex::Unknown)
            .unwrap_or_default(),
        address: recs
            .iter()
            .find(|r| !r.address.is_empty())
            .map(|r| r.address.clone())
            .unwrap_or_default(),
        email: first(|r| &r.email),
        multiple_birth_order: recs.iter().find_map(|r| r.multiple_birth_order),
        ..Default::default()
    };
    for r in &recs {
        for name in &r.previous_family_names {
            push_distinct(&mut g.previous_family_names, name, |a, b| {
                a.trim().eq_ignore_ascii_case(b.trim())
            });
        }
        for phone in &r.phones {
            push_distinct(&mut g.phones, phone, |a, b| digits(a) == digits(b));
        }
        for id in &r.identifiers {
            push_distinct(&mut g.identifiers, id, |a, b| {
                a.system == b.system && a.value.trim() == b.value.trim()
            });
        }
    }
    g
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn push_distinct<T: Clone>(list: &mut Vec<T>, v: &T, same: impl Fn(&T, &T) -> bool) {
    if list.len() < MAX_REPEATED && !list.iter().any(|x| same(x, v)) {
        list.push(v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Address, Identifier, PartialDate};
    use crate::store::{Euid, LinkInfo, LinkMethod, UnixMillis};

    fn stored(id: &str, at: i64, f: impl FnOnce(&mut Record)) -> StoredRecord {
        let mut record = Record {
            source: "adt".into(),
            local_id: id.into(),
            ..Default::default()
        };
        f(&mut record);
        StoredRecord {
            record,
            euid: Euid::from_seq(1),
            link: LinkInfo {
                method: LinkMethod::Created,
                at: UnixMillis(at),
                actor: "t".into(),
            },
            updated_at: UnixMillis(at),
            answer: None,
            version: 1,
        }
    }

    #[test]
    fn newest_non_empty_value_wins_per_field() {
        let old = stored("1", 100, |r| {
            r.given_name = Some("Margaret".into());
            r.family_name = Some("Okafor".into());
            r.birth_date = Some(PartialDate::full(1961, 7, 2).unwrap());
            r.sex = Sex::Female;
            r.phones = vec!["413-555-0142".into()];
            r.address = Address {
                lines: vec!["12 Elm St".into()],
                city: Some("Springfield".into()),
                ..Default::default()
            };
        });
        let new = stored("2", 200, |r| {
            r.family_name = Some("Okafor-Bell".into());
            r.previous_family_names = vec!["Okafor".into()];
            r.birth_date = Some(PartialDate {
                year: 1961,
                month: None,
                day: None,
            });
            r.phones = vec!["(413) 555-0142".into(), "413-555-0199".into()];
            r.email = Some(" ".into());
            r.identifiers = vec![Identifier {
                system: "national_id".into(),
                value: "123456789".into(),
            }];
        });
        let g = golden_view(&[old, new]);
        assert_eq!(g.family_name.as_deref(), Some("Okafor-Bell"), "newest");
        assert_eq!(
            g.given_name.as_deref(),
            Some("Margaret"),
            "newest non-empty"
        );
        assert_eq!(
            g.birth_date.unwrap().to_string(),
            "1961-07-02",
            "a full date beats a newer partial one"
        );
        assert_eq!(g.sex, Sex::Female);
        assert_eq!(g.email, None, "blank values are empty");
        assert_eq!(
            g.phones,
            vec!["(413) 555-0142".to_string(), "413-555-0199".to_string()],
            "distinct by digits, newest first"
        );
        assert_eq!(g.address.city.as_deref(), Some("Springfield"));
        assert_eq!(g.identifiers.len(), 1);
        assert_eq!(g.previous_family_names, vec!["Okafor".to_string()]);
    }

    #[test]
    fn ties_go_to_the_most_complete_record() {
        let sparse = stored("1", 100, |r| r.given_name = Some("Bob".into()));
        let full = stored("2", 100, |r| {
            r.given_name = Some("Robert".into());
            r.family_name = Some("Ng".into());
        });
        let g = golden_view(&[sparse, full]);
        assert_eq!(g.given_name.as_deref(), Some("Robert"));
        assert_eq!(golden_view(&[]), GoldenView::default());
    }
}
