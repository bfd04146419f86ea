use proptest::prelude::*;

use super::*;
use crate::record::{Address, Identifier, PartialDate, Sex, NATIONAL_ID_SYSTEM};

fn person() -> Record {
    Record {
        source: "adt".into(),
        local_id: "1".into(),
        given_name: Some("Margaret".into()),
        middle_name: Some("Ann".into()),
        family_name: Some("Okonkwo".into()),
        birth_date: Some(PartialDate::full(1961, 7, 2).unwrap()),
        sex: Sex::Female,
        address: Address {
            lines: vec!["14 Elm Street".into()],
            city: Some("Springfield".into()),
            postal_code: Some("01103".into()),
            ..Default::default()
        },
        phones: vec!["413-555-0142".into()],
        email: Some("m.okonkwo@example.org".into()),
        identifiers: vec![Identifier {
            system: NATIONAL_ID_SYSTEM.into(),
            value: "219-09-9999".into(),
        }],
        ..Default::default()
    }
}

fn scorer() -> &'static Scorer {
    static S: std::sync::OnceLock<Scorer> = std::sync::OnceLock::new();
    S.get_or_init(|| Scorer::new(Model::default_model()).unwrap())
}

#[test]
fn default_model_validates_and_round_trips() {
    let m = Model::default_model();
    m.validate().unwrap();
    let back = Model::from_json(&m.to_json()).unwrap();
    assert_eq!(back, m);
}

#[test]
fn bad_models_are_rejected_with_the_reason() {
    let mut m = Model::default_model();
    m.comparisons[0].levels[1].name = "bogus".into();
    assert!(m.validate().unwrap_err().to_string().contains("given_name"));
    let mut m = Model::default_model();
    m.comparisons[3].levels[0].u = 0.0;
    assert!(m.validate().unwrap_err().to_string().contains("birth_date"));
    let mut m = Model::default_model();
    m.format_version = 99;
    assert!(m.validate().is_err());
    assert!(Model::from_json("{").is_err());
}

#[test]
fn identical_records_link_and_strangers_do_not() {
    let s = scorer();
    let a = s.prepare(&person());
    let same = s.score(&a, &a);
    assert!(same.weight > s.thresholds().upper, "{}", same.weight);
    assert_eq!(same.rival, None);
    let other = Record {
        given_name: Some("Tyrone".into()),
        middle_name: None,
        family_name: Some("Baker".into()),
        birth_date: Some(PartialDate::full(1990, 2, 11).unwrap()),
        sex: Sex::Male,
        address: Address::default(),
        phones: vec!["617-555-0199".into()],
        email: None,
        identifiers: vec![],
        ..person()
    };
    let b = s.prepare(&other);
    assert!(s.score(&a, &b).weight < s.thresholds().lower);
}

#[test]
fn twins_are_held_back_by_the_twin_hypothesis() {
    let s = scorer();
    let upper = s.thresholds().upper;
    let mut t1 = person();
    t1.identifiers.clear();
    t1.email = None;
    let mut t2 = t1.clone();
    t2.given_name = Some("Chidi".into());
    let (a, b) = (s.prepare(&t1), s.prepare(&t2));
    let e = s.explain(&a, &b);
    assert!(e.stranger_weight > upper, "{e:?}");
    assert!(e.weight < upper, "{e:?}");
    assert_eq!(e.rival, Some(Rival::Twin));
    t2.given_name = t1.given_name.clone();
    t1.multiple_birth_order = Some(1);
    t2.multiple_birth_order = Some(2);
    let (a, b) = (s.prepare(&t1), s.prepare(&t2));
    assert_eq!(s.score(&a, &b).rival, Some(Rival::BirthOrderDiffers));
}

#[test]
fn an_exact_national_id_closes_the_relative_hypotheses() {
    let s = scorer();
    let upper = s.thresholds().upper;
    let t1 = person();
    assert!(!t1.identifiers.is_empty());
    let mut t2 = t1.clone();
    t2.given_name = Some("Chidi".into());
    let (a, b) = (s.prepare(&t1), s.prepare(&t2));
    let e = s.explain(&a, &b);
    assert!(e.twin_weight > upper && e.relative_weight > upper, "{e:?}");
    assert!(e.weight >= upper, "{e:?}");
}

#[test]
fn the_decision_weight_never_exceeds_the_weight_against_a_stranger() {
    let s = scorer();
    let base = person();
    let variants = [
        Record {
            given_name: Some("Chidi".into()),
            ..base.clone()
        },
        Record {
            birth_date: Some(PartialDate::full(1990, 2, 11).unwrap()),
            ..base.clone()
        },
        Record {
            identifiers: vec![],
            ..base.clone()
        },
        base.clone(),
    ];
    let a = s.prepare(&base);
    for v in &variants {
        let e = s.explain(&a, &s.prepare(v));
        assert!(e.weight <= e.stranger_weight + 1e-9, "{e:?}");
        assert!(
            e.weight <= e.twin_weight.min(e.relative_weight) + 1e-9,
            "{e:?}"
        );
        assert!(e.weight >= e.stranger_weight.min(e.twin_weight).min(e.relative_weight) - 2.0);
        assert_eq!(e.weight, s.score(&a, &s.prepare(v)).weight);
    }
}

#[test]
fn rare_surnames_weigh_more_than_common_ones() {
    let s = scorer();
    let mut common = person();
    common.family_name = Some("Smith".into());
    let a = s.prepare(&common);
    let b = s.prepare(&person());
    let fam = Comparison::FamilyName.index();
    let e_common = s.explain(&a, &a);
    let e_rare = s.explain(&b, &b);
    assert!(e_common.comparisons[fam].weight < e_rare.comparisons[fam].weight);
    assert!(e_common.comparisons[fam].tf_adjustment < 0.0);
    assert!(e_common.comparisons[fam].weight >= MIN_AGREEMENT_WEIGHT);
}

#[test]
fn explanation_adds_up_to_the_score() {
    let s = scorer();
    let mut other = person();
    other.given_name = Some("Peggy".into());
    other.birth_date = Some(PartialDate::full(1961, 2, 7).unwrap());
    other.phones.clear();
    let (a, b) = (s.prepare(&person()), s.prepare(&other));
    let e = s.explain(&a, &b);
    let sum: f64 = e.prior_weight + e.comparisons.iter().map(|c| c.weight).sum::<f64>();
    assert!((sum - e.stranger_weight).abs() < 1e-9);
    let all = combine(&[e.stranger_weight, e.twin_weight, e.relative_weight]);
    assert!((all - e.weight).abs() < 1e-9);
    assert!((e.weight - s.score(&a, &b).weight).abs() < 1e-9);
    assert_eq!(e.comparisons[0].level, "nickname");
    assert_eq!(
        e.comparisons[Comparison::BirthDate.index()].level,
        "day_month_swapped"
    );
    assert_eq!(e.comparisons[Comparison::Phone.index()].level, "missing");
    assert_eq!(e.comparisons[Comparison::Phone.index()].weight, 0.0);
}

#[test]
fn thresholds_from_probabilities() {
    let t = Thresholds::from_probabilities(0.99, 0.5).unwrap();
    assert!((t.lower - 0.0).abs() < 1e-12);
    assert!((weight_to_prob(t.upper) - 0.99).abs() < 1e-12);
    assert!(Thresholds::from_probabilities(0.5, 0.9).is_err());
}

/// A record with each field either equal to the base person's or a clearly different value.
fn variant(mask: u16) -> Record {
    let base = person();
    let pick = |bit: u16| mask & (1 << bit) != 0;
    Record {
        local_id: "2".into(),
        given_name: if pick(0) {
            base.given_name.clone()
        } else {
            Some("Zelda".into())
        },
        middle_name: if pick(1) {
            base.middle_name.clone()
        } else {
            Some("Quinn".into())
        },
        family_name: if pick(2) {
            base.family_name.clone()
        } else {
            Some("Vasquez".into())
        },
        birth_date: if pick(3) {
            base.birth_date
        } else {
            PartialDate::full(1999, 12, 25).ok()
        },
        sex: if pick(4) { base.sex } else { Sex::Male },
        phones: if pick(5) {
            base.phones.clone()
        } else {
            vec!["212-555-0987".into()]
        },
        email: if pick(6) {
            base.email.clone()
        } else {
            Some("z@example.com".into())
        },
        identifiers: if pick(7) {
            base.identifiers.clone()
        } else {
            vec![Identifier {
                system: NATIONAL_ID_SYSTEM.into(),
                value: "532-77-1029".into(),
            }]
        },
        address: if pick(8) {
            base.address.clone()
        } else {
            Address {
                lines: vec!["900 Ocean Drive".into()],
                postal_code: Some("33139".into()),
                ..Default::default()
            }
        },
        ..base
    }
}

proptest! {
    /// Moving any one field from disagreement to agreement never lowers the score.
    #[test]
    fn agreement_is_monotone(mask in 0u16..512, bit in 0u16..9) {
        let s = scorer();
        let base = s.prepare(&person());
        let without = s.prepare(&variant(mask & !(1 << bit)));
        let with = s.prepare(&variant(mask | (1 << bit)));
        prop_assert!(s.score(&base, &with).weight >= s.score(&base, &without).weight);
    }

    /// Scoring is symmetric.
    #[test]
    fn score_is_symmetric(mask in 0u16..512) {
        let s = scorer();
        let a = s.prepare(&person());
        let b = s.prepare(&variant(mask));
        prop_assert!((s.score(&a, &b).weight - s.score(&b, &a).weight).abs() < 1e-9);
    }
}

#[test]
fn a_move_is_charged_once() {
    let s = scorer();
    let a = s.prepare(&person());
    let mut moved = person();
    moved.address = Address {
        lines: vec!["9 Harbor Road".into()],
        city: Some("Worcester".into()),
        postal_code: Some("01608".into()),
        ..Default::default()
    };
    let b = s.prepare(&moved);
    let e = s.explain(&a, &b);
    let level = |name: &str| {
        e.comparisons
            .iter()
            .find(|c| c.comparison == name)
            .expect("compared")
    };
    assert_eq!(level("street").level, "else");
    assert_eq!(level("postcode").level, "else");
    // The postcode weighs as the chance it differs given that the street does.
    let m = s.model();
    let last = |c: Comparison| {
        let l = m.params(c).levels.last().unwrap().clone();
        (l.m, l.u)
    };
    let ((m_st, u_st), (m_pc, u_pc)) = (last(Comparison::Street), last(Comparison::Postcode));
    let moved_weight = ((m_pc / m_st).min(1.0) / (u_pc / u_st).min(1.0)).log2();
    assert!(
        (level("postcode").weight - moved_weight).abs() < 1e-9,
        "{e:?}"
    );
    let independent = m
        .params(Comparison::Postcode)
        .levels
        .last()
        .unwrap()
        .weight();
    assert!(level("postcode").weight > independent + 1.0, "{e:?}");
    // The explanation still adds up to the score.
    assert!((s.score(&a, &b).weight - e.weight).abs() < 1e-9);
    // A postcode that differs on the same street weighs as before.
    let mut typo = person();
    typo.address.postal_code = Some("01608".into());
    let e = s.explain(&a, &s.prepare(&typo));
    let pc = e
        .comparisons
        .iter()
        .find(|c| c.comparison == "postcode")
        .unwrap();
    assert!((pc.weight - independent).abs() < 1e-9, "{e:?}");
}

#[test]
fn a_birth_order_on_one_side_makes_the_twin_as_likely_as_the_same_person() {
    let s = scorer();
    let mut t1 = person();
    t1.identifiers.clear();
    t1.email = None;
    t1.middle_name = None;
    let mut t2 = t1.clone();
    t2.given_name = Some("Margarita".into());
    let plain = s.explain(&s.prepare(&t1), &s.prepare(&t2));
    t1.multiple_birth_order = Some(1);
    let known = s.explain(&s.prepare(&t1), &s.prepare(&t2));
    // The twin's prior moves from log2(1 / 0.03) to 0; nothing else changes.
    let shift = plain.twin_weight - known.twin_weight;
    let expected = -Model::default_model().rivals.twin.ratio.log2() - rivals::KNOWN_TWIN_PRIOR;
    assert!((shift - expected).abs() < 1e-9, "{plain:?} {known:?}");
    assert!(known.weight < plain.weight);
    assert_eq!(known.rival, Some(Rival::Twin));
    // The same, from the person's other records: score_with says the person is a twin.
    t1.multiple_birth_order = None;
    let (a, b) = (s.prepare(&t1), s.prepare(&t2));
    assert_eq!(
        s.score_with(&a, &b, true).weight,
        s.score(
            &s.prepare(&{
                let mut x = t1.clone();
                x.multiple_birth_order = Some(1);
                x
            }),
            &b
        )
        .weight
    );
    // Both records giving the same order say they are one child: the population's share.
    t1.multiple_birth_order = Some(2);
    t2.multiple_birth_order = Some(2);
    let same = s.explain(&s.prepare(&t1), &s.prepare(&t2));
    assert!((same.twin_weight - plain.twin_weight).abs() < 1e-9);
}

/// `Dixon, Jeffery` against `Jeff Dixon`: the names written in each other's fields, one of
/// them with a slip, read crosswise (alike given name, exact family name less the cost of
/// a swap) instead of as two names that differ.
#[test]
fn names_written_crosswise_with_a_slip_are_read_crosswise() {
    let s = scorer();
    let upper = s.thresholds().upper;
    let mut direct = person();
    direct.identifiers.clear();
    let mut crossed = direct.clone();
    crossed.given_name = Some("Okonkwo".into());
    crossed.family_name = Some("Margret".into());
    let (a, b) = (s.prepare(&direct), s.prepare(&crossed));
    for (x, y) in [(&a, &b), (&b, &a)] {
        let e = s.explain(x, y);
        let (g, f) = (
            Comparison::GivenName.index(),
            Comparison::FamilyName.index(),
        );
        assert_eq!(e.comparisons[g].level, "crosswise_jw_0.92", "{e:?}");
        assert_eq!(e.comparisons[f].level, "crosswise_exact", "{e:?}");
        let sum: f64 = e.prior_weight + e.comparisons.iter().map(|c| c.weight).sum::<f64>();
        assert!((sum - e.stranger_weight).abs() < 1e-9, "{e:?}");
        assert!(e.weight >= upper, "{e:?}");
        assert_eq!(e.weight, s.score(x, y).weight);
    }
    // Read crosswise, the names weigh less than the same names written in place.
    let mut slipped = direct.clone();
    slipped.given_name = Some("Margret".into());
    let in_place = s.explain(&a, &s.prepare(&slipped));
    let e = s.explain(&a, &b);
    let names = |e: &Explanation| e.comparisons[0].weight + e.comparisons[2].weight;
    assert!(names(&e) < names(&in_place) - 4.0, "{e:?} {in_place:?}");
    // Two names that differ both ways stay `else`.
    crossed.family_name = Some("Chidi".into());
    let e = s.explain(&a, &s.prepare(&crossed));
    assert_eq!(e.comparisons[0].level, "else");
    assert_eq!(e.comparisons[2].level, "else");
}

/// Names swapped or read crosswise weigh against a household relative as names in place
/// do: a co-twin named alike stays a possible twin, and a swapped record of the person is
/// not taken for one.
#[test]
fn swapped_names_weigh_against_the_rivals_as_names_in_place() {
    let s = scorer();
    let upper = s.thresholds().upper;
    let mut ava = person();
    ava.identifiers.clear();
    ava.email = None;
    ava.middle_name = None;
    ava.given_name = Some("Ava".into());
    let mut eva = ava.clone();
    eva.given_name = Some("Okonkwo".into());
    eva.family_name = Some("Eva".into());
    let e = s.explain(&s.prepare(&ava), &s.prepare(&eva));
    assert!(
        e.comparisons[0].level.starts_with(CROSSWISE_PREFIX),
        "{e:?}"
    );
    assert!(e.weight < upper, "{e:?}");
    assert_eq!(e.rival, Some(Rival::Twin));
    // Against the rivals, as the same names in place (the spelling evidence included).
    let in_place = Record {
        given_name: Some("Eva".into()),
        ..ava.clone()
    };
    let direct = s.explain(&s.prepare(&ava), &s.prepare(&in_place));
    let level = e.comparisons[0].level.replace(CROSSWISE_PREFIX, "");
    assert_eq!(direct.comparisons[0].level, level);
    assert!(
        (e.twin_weight - direct.twin_weight).abs() < 1e-9,
        "{e:?} {direct:?}"
    );
    assert!(
        (e.relative_weight - direct.relative_weight).abs() < 1e-9,
        "{e:?} {direct:?}"
    );
    let mut swapped = ava.clone();
    swapped.given_name = ava.family_name.clone();
    swapped.family_name = ava.given_name.clone();
    let e = s.explain(&s.prepare(&ava), &s.prepare(&swapped));
    assert_eq!(e.comparisons[0].level, "swapped");
    let same = s.explain(&s.prepare(&ava), &s.prepare(&ava));
    assert!(
        (e.twin_weight - same.twin_weight).abs() < 1e-9,
        "{e:?} {same:?}"
    );
    assert!(
        (e.relative_weight - same.relative_weight).abs() < 1e-9,
        "{e:?} {same:?}"
    );
    assert!(e.weight >= upper, "{e:?}");
}
