//! Blocking: computing a record's keys, and looking up its candidates in an index of the
//! committed synthetic set (~10k records).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use empi::blocking::{block_keys, BlockIndex};
use empi::input::{read_csv, ReadOptions};
use empi::linker::Linker;

fn bench(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("synthetic-data/small/records.csv");
    let (records, _) = read_csv(&path, None, &ReadOptions::default()).expect("committed set reads");
    let linker = Linker::with_default_model();
    let prepared: Vec<_> = records.iter().map(|r| linker.prepare(r)).collect();
    let mut index = BlockIndex::new(linker.blocking().clone());
    for (i, p) in prepared.iter().enumerate() {
        index.insert(i as u32, p);
    }
    let queries = &prepared[..1000];
    let rules = &linker.blocking().rules;
    let mut g = c.benchmark_group("blocking");
    g.throughput(Throughput::Elements(queries.len() as u64));
    g.bench_function("block_keys", |b| {
        b.iter(|| {
            for q in queries {
                black_box(block_keys(black_box(q), rules));
            }
        })
    });
    g.bench_function("candidates_lookup", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let mut n = 0;
            for q in queries {
                n += index.candidates(black_box(q), None, &mut buf).candidates;
            }
            n
        })
    });
    g.bench_function("insert_remove", |b| {
        let mut idx = index.clone();
        b.iter(|| {
            for (i, q) in queries.iter().enumerate() {
                idx.insert(1_000_000 + i as u32, q);
            }
            for i in 0..queries.len() {
                idx.remove(1_000_000 + i as u32);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
