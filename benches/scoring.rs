//! Scoring one candidate pair with every comparison, and preparing one record.
//!
//! Pairs come from the committed synthetic set: each record against its blocking
//! candidates, so the mix of matches and non-matches is the one the linker really sees.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use empi::blocking::BlockIndex;
use empi::input::{read_csv, ReadOptions};
use empi::linker::Linker;

fn load() -> (Linker, Vec<empi::record::Record>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("synthetic-data/small/records.csv");
    let (records, _) = read_csv(&path, None, &ReadOptions::default()).expect("committed set reads");
    (Linker::with_default_model(), records)
}

fn bench(c: &mut Criterion) {
    let (linker, records) = load();
    let prepared: Vec<_> = records.iter().map(|r| linker.prepare(r)).collect();
    let mut index = BlockIndex::new(linker.blocking().clone());
    for (i, p) in prepared.iter().enumerate() {
        index.insert(i as u32, p);
    }
    let mut pairs = Vec::new();
    let mut buf = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        index.candidates(p, Some(i as u32), &mut buf);
        pairs.extend(buf.iter().map(|&j| (i, j as usize)));
        if pairs.len() >= 4096 {
            break;
        }
    }
    let scorer = linker.scorer();
    let mut g = c.benchmark_group("scoring");
    g.throughput(Throughput::Elements(pairs.len() as u64));
    g.bench_function("score_candidate_pair", |b| {
        b.iter(|| {
            let mut total = 0.0;
            for &(i, j) in &pairs {
                total += scorer
                    .score(black_box(&prepared[i]), black_box(&prepared[j]))
                    .weight;
            }
            total
        })
    });
    g.finish();
    let mut g = c.benchmark_group("explain");
    let few = &pairs[..256];
    g.throughput(Throughput::Elements(few.len() as u64));
    g.bench_function("explain_candidate_pair", |b| {
        b.iter(|| {
            for &(i, j) in few {
                black_box(scorer.explain(&prepared[i], &prepared[j]));
            }
        })
    });
    g.finish();
    let mut g = c.benchmark_group("prepare");
    let sample: Vec<_> = records.iter().take(1000).collect();
    g.throughput(Throughput::Elements(sample.len() as u64));
    g.bench_function("prepare_record", |b| {
        b.iter(|| {
            for r in &sample {
                black_box(linker.prepare(r));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
