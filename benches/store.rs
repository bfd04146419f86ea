//! Durable commit throughput of the sled store with 1, 8 and 64 concurrent writers.
//!
//! Each commit creates a person with one record (record, person, history entry and counters
//! in one transaction) and waits until it is flushed to disk (group commit). Criterion
//! reports the time per commit; the flushes per commit are printed after each group.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use empi::record::{Address, Identifier, PartialDate, Record, Sex};
use empi::store::{LinkMethod, Plan, SledStore, Stamp, Store};

fn record(n: u64) -> Record {
    Record {
        source: format!("bench-{}", n % 7),
        local_id: format!("MRN{n:09}"),
        given_name: Some("Alex".into()),
        family_name: Some(format!("Family{}", n % 1000)),
        birth_date: Some(PartialDate {
            year: 1950 + (n % 60) as u16,
            month: Some(3),
            day: Some(14),
        }),
        sex: Sex::Female,
        address: Address {
            lines: vec![format!("{} Main St", n % 500)],
            city: Some("Springfield".into()),
            postal_code: Some("12345".into()),
            ..Default::default()
        },
        phones: vec!["555-0100".into()],
        identifiers: vec![Identifier {
            system: "national_id".into(),
            value: format!("{n:09}"),
        }],
        ..Default::default()
    }
}

async fn commit_one(store: &SledStore, n: u64) {
    let mut plan = Plan::new(store, Stamp::now("bench", ""));
    plan.create_person(record(n), LinkMethod::Created)
        .expect("fresh key");
    let ticket = store.apply(&plan.finish()).expect("apply");
    store.wait_durable(ticket).await.expect("durable");
}

fn durable_commits(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("store_durable_commit");
    group.throughput(Throughput::Elements(1));
    for writers in [1u64, 8, 64] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SledStore::open(dir.path()).expect("open store"));
        let next = Arc::new(AtomicU64::new(0));
        let mut commits = 0u64;
        group.bench_function(BenchmarkId::new("writers", writers), |b| {
            b.iter_custom(|iters| {
                commits += iters;
                rt.block_on(async {
                    let start = Instant::now();
                    let handles: Vec<_> = (0..writers)
                        .map(|w| {
                            // writer w does iters/writers commits, plus one of the remainder
                            let share = iters / writers + u64::from(w < iters % writers);
                            let (store, next) = (Arc::clone(&store), Arc::clone(&next));
                            tokio::spawn(async move {
                                for _ in 0..share {
                                    commit_one(&store, next.fetch_add(1, Ordering::Relaxed)).await;
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.expect("writer task");
                    }
                    start.elapsed()
                })
            });
        });
        let flushes = store.flush_count();
        println!(
            "store_durable_commit/writers/{writers}: {commits} commits, {flushes} flushes, {:.1} commits per flush",
            commits as f64 / flushes.max(1) as f64
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = durable_commits
}
criterion_main!(benches);
