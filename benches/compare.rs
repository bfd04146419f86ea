//! Criterion benches for the comparators, one per function, over a fixed set of realistic
//! normalised name pairs. Each iteration is one call on the next pair (round robin), so the
//! reported time is per call.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use empi::compare::{self, NicknameTable};
use empi::record::PartialDate;

/// Given and family names after normalisation, with the slips the matcher sees.
const NAME_PAIRS: [(&str, &str); 12] = [
    ("martha", "marhta"),
    ("jonathan", "johnathan"),
    ("catherine", "kathryn"),
    ("smith", "smyth"),
    ("robert", "rupert"),
    ("garcia", "garica"),
    ("nguyen", "nguyen"),
    ("elizabeth", "elisabeth"),
    ("williams", "wiliams"),
    ("de la cruz", "delacruz"),
    ("oconnor", "oconner"),
    ("mohammed", "muhammad"),
];

const NICKNAME_PAIRS: [(&str, &str); 8] = [
    ("bob", "robert"),
    ("bill", "william"),
    ("peggy", "margaret"),
    ("rob", "bob"),
    ("jon", "jonathan"),
    ("maria", "mary"),
    ("xochitl", "maria"),
    ("liz", "elizabeth"),
];

const DATE_PAIRS: [(&str, &str); 8] = [
    ("1956-03-14", "1956-03-14"),
    ("1956-03-12", "1956-12-03"),
    ("1980-05-12", "1980-05-21"),
    ("1989-12-15", "1990-01-15"),
    ("1989-06-15", "1990-06-15"),
    ("1956", "1956-03-14"),
    ("1971-07-04", "1983-11-22"),
    ("2000-02-29", "2000-02-28"),
];

const ID_PAIRS: [(&str, &str); 6] = [
    ("123456789", "123456789"),
    ("123456789", "123456780"),
    ("123456789", "123456798"),
    ("123456789", "987654321"),
    ("MRN0041733", "MRN0041733"),
    ("MRN0041733", "MRN004173"),
];

/// Benches `f` on the pairs round robin, one call per iteration.
fn bench_pairs<P: Copy, R>(c: &mut Criterion, name: &str, pairs: &[P], f: impl Fn(P) -> R) {
    c.bench_function(name, |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % pairs.len();
            f(black_box(pairs[i]))
        })
    });
}

fn strings(c: &mut Criterion) {
    bench_pairs(c, "jaro_winkler", &NAME_PAIRS, |(a, b)| {
        compare::jaro_winkler(a, b)
    });
    bench_pairs(c, "levenshtein", &NAME_PAIRS, |(a, b)| {
        compare::levenshtein(a, b)
    });
    bench_pairs(c, "damerau", &NAME_PAIRS, |(a, b)| {
        compare::damerau_levenshtein(a, b)
    });
    // What the wrappers replace, for comparison.
    bench_pairs(
        c,
        "strsim_baseline/jaro_winkler_chars",
        &NAME_PAIRS,
        |(a, b)| strsim::jaro_winkler(a, b),
    );
    bench_pairs(
        c,
        "strsim_baseline/levenshtein_chars",
        &NAME_PAIRS,
        |(a, b)| strsim::levenshtein(a, b),
    );
    bench_pairs(
        c,
        "strsim_baseline/osa_distance_chars",
        &NAME_PAIRS,
        |(a, b)| strsim::osa_distance(a, b),
    );
}

fn phonetics(c: &mut Criterion) {
    let names: Vec<&str> = NAME_PAIRS.iter().map(|p| p.0).collect();
    bench_pairs(c, "soundex", &names, compare::soundex);
    bench_pairs(c, "double_metaphone", &names, compare::double_metaphone);
    bench_pairs(c, "nysiis", &names, compare::nysiis);
}

fn nicknames(c: &mut Criterion) {
    let table = NicknameTable::shipped();
    bench_pairs(c, "nickname/are_equivalent", &NICKNAME_PAIRS, |(a, b)| {
        table.are_equivalent(a, b)
    });
    // The per-pair cost when groups are looked up once per record.
    let groups: Vec<(&[u32], &[u32])> = NICKNAME_PAIRS
        .iter()
        .map(|&(a, b)| (table.groups(a), table.groups(b)))
        .collect();
    bench_pairs(c, "nickname/share_group", &groups, |(a, b)| {
        NicknameTable::share_group(a, b)
    });
}

fn dates_and_ids(c: &mut Criterion) {
    let dates: Vec<(PartialDate, PartialDate)> = DATE_PAIRS
        .iter()
        .map(|&(a, b)| {
            let parse = |s| PartialDate::parse_iso(s).expect("bench dates are valid");
            (parse(a), parse(b))
        })
        .collect();
    bench_pairs(c, "compare_dates", &dates, |(a, b)| {
        compare::compare_dates(&a, &b)
    });
    bench_pairs(c, "compare_identifiers", &ID_PAIRS, |(a, b)| {
        compare::compare_identifiers(a, b)
    });
}

criterion_group!(benches, strings, phonetics, nicknames, dates_and_ids);
criterion_main!(benches);
