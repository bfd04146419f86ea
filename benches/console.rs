//! Server time of the registrar console's worklist and task pages over a large store: the
//! request through the router in process (session, application layer with its audit line,
//! service, rendering), no network.
//!
//! ```sh
//! cargo bench --bench console                                   # 20,000 records, 2,000 tasks
//! cargo bench --bench console -- --records 1000000 --tasks 100000 --data /tmp/console-1m
//! ```
//!
//! `--data DIR` keeps the generated store there and reuses it on the next run (building a
//! million records takes minutes); without it a temporary directory is used. Each record is
//! a person of its own; every `records / tasks`-th record has an open review task against
//! the person before it, with a realistic stored explanation, opened over the last 60 days.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use empi::app::App;
use empi::auth::{AuditLog, AuthMode};
use empi::console::{Console, ConsoleConfig};
use empi::linker::{Linker, ReviewReason};
use empi::record::{Address, Identifier, PartialDate, Record, Sex};
use empi::scoring::Rival;
use empi::service::{CandidateView, ComparisonView, Service, ServiceConfig};
use empi::store::{Euid, LinkMethod, Plan, SledStore, Stamp, Store, TaskCandidate, UnixMillis};
use tower::ServiceExt;

struct Args {
    records: u64,
    tasks: u64,
    rounds: usize,
    data: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        records: 20_000,
        tasks: 2_000,
        rounds: 30,
        data: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_default();
        match flag.as_str() {
            "--records" => a.records = value().parse().expect("--records N"),
            "--tasks" => a.tasks = value().parse().expect("--tasks N"),
            "--rounds" => a.rounds = value().parse().expect("--rounds N"),
            "--data" => a.data = Some(value().into()),
            // cargo bench passes --bench; anything else is not ours either.
            _ => {}
        }
    }
    a.tasks = a.tasks.min(a.records / 2);
    a
}

/// A synthetic record (names no real person).
fn record(n: u64) -> Record {
    Record {
        source: format!("bench-{}", n % 7),
        local_id: format!("MRN{n:09}"),
        given_name: Some(["Alex", "Sam", "Robin", "Kim"][(n % 4) as usize].into()),
        family_name: Some(format!("Family{}", n % 5000)),
        birth_date: Some(PartialDate {
            year: 1930 + (n % 80) as u16,
            month: Some(1 + (n % 12) as u8),
            day: Some(1 + (n % 28) as u8),
        }),
        sex: if n.is_multiple_of(2) {
            Sex::Female
        } else {
            Sex::Male
        },
        address: Address {
            lines: vec![format!("{} Main St", n % 900)],
            city: Some("Springfield".into()),
            postal_code: Some(format!("{:05}", 10_000 + n % 800)),
            ..Default::default()
        },
        phones: vec![format!("555-{:04}", n % 10_000)],
        identifiers: vec![Identifier {
            system: "national_id".into(),
            value: format!("{n:09}"),
        }],
        ..Default::default()
    }
}

/// The stored explanation of a task's one candidate, as the service writes it.
fn explanation(candidate: &Euid, best: &Record, n: u64) -> serde_json::Value {
    let reasons = [
        ReviewReason::BetweenThresholds,
        ReviewReason::Rival(Rival::Twin),
        ReviewReason::Rival(Rival::Relative),
    ];
    let comparisons = [
        "given_name",
        "middle_name",
        "family_name",
        "birth_date",
        "sex",
        "national_id",
        "phone",
        "street",
        "postcode",
        "email",
    ];
    let view = CandidateView {
        euid: candidate.clone(),
        score: 2.0 + (n % 60) as f64 / 10.0,
        probability: 0.9,
        best_record: Some(best.key()),
        explanation: comparisons
            .iter()
            .map(|c| ComparisonView {
                comparison: (*c).into(),
                level: "exact".into(),
                weight: 3.5,
            })
            .collect(),
        reason: Some(reasons[(n % 3) as usize]),
    };
    serde_json::to_value(vec![view]).expect("encodes")
}

/// Fills `store` with `a.records` records and `a.tasks` open tasks.
fn build(store: &SledStore, a: &Args) {
    let started = Instant::now();
    let every = (a.records / a.tasks.max(1)).max(2);
    let day = 86_400_000;
    let now = UnixMillis::now().0;
    let mut last: Option<(Euid, Record)> = None;
    let batch = 1_000;
    for chunk in 0..a.records.div_ceil(batch) {
        let mut plan = Plan::new(store, Stamp::now("bench", ""));
        for n in chunk * batch..((chunk + 1) * batch).min(a.records) {
            let r = record(n);
            let euid = plan
                .create_person(r.clone(), LinkMethod::Created)
                .expect("fresh");
            if n % every == 1 {
                if let Some((candidate, best)) = &last {
                    let c = TaskCandidate {
                        euid: candidate.clone(),
                        score: 5.0,
                        probability: 0.97,
                    };
                    plan.open_task(&r.key(), vec![c], explanation(candidate, best, n))
                        .expect("task");
                }
            }
            last = Some((euid, r));
        }
        // Tasks opened over the last 60 days, oldest first.
        let mut changes = plan.finish();
        let age = (a.records - chunk * batch) as i64 * 60 * day / a.records as i64;
        let stamped: Vec<_> = changes
            .ops()
            .iter()
            .cloned()
            .map(|op| match op {
                empi::store::Op::PutTask(mut t) => {
                    t.created_at = UnixMillis(now - age);
                    empi::store::Op::PutTask(t)
                }
                other => other,
            })
            .collect();
        changes = stamped.into_iter().collect();
        store.apply(&changes).expect("apply");
        if chunk % 100 == 99 {
            store.flush().expect("flush");
            eprintln!("  {} records", (chunk + 1) * batch);
        }
    }
    store.flush().expect("flush");
    eprintln!(
        "built {} records, {} open tasks in {:.1} s",
        a.records,
        store.stats().expect("stats").open_tasks,
        started.elapsed().as_secs_f64()
    );
}

fn median_p90(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 9 / 10).min(v.len() - 1)]),
    )
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = a.data.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let fresh = !dir.join("db").exists();
    let store = Arc::new(SledStore::open(&dir).expect("open store"));
    if fresh {
        build(&store, &a);
    }
    let started = Instant::now();
    let service = Service::open(
        Arc::clone(&store) as Arc<dyn Store>,
        Linker::with_default_model(),
        ServiceConfig::default(),
    )
    .expect("service");
    eprintln!("service open in {:.1} s", started.elapsed().as_secs_f64());
    let stats = service.stats().expect("stats");
    let trail = AuditLog::open_staged(&dir, Arc::clone(&store) as _).expect("audit trail");
    let app = Arc::new(App::new(Arc::new(service), Some(Arc::new(trail)), None));
    let console = Arc::new(Console::new(
        Arc::clone(&app),
        AuthMode::Disabled,
        &ConsoleConfig::default(),
        false,
    ));
    let router = empi::console::router(console);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let get = |path: String, cookie: String| {
        let router = router.clone();
        async move {
            let req = Request::get(path)
                .header("host", "127.0.0.1")
                .header("cookie", cookie)
                .body(Body::empty())
                .expect("request");
            let started = Instant::now();
            let res = router.oneshot(req).await.expect("answer");
            let status = res.status();
            let cookie = res
                .headers()
                .get("set-cookie")
                .and_then(|c| c.to_str().ok())
                .map(|c| c.split(';').next().unwrap_or("").to_string());
            let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .expect("body");
            assert!(status.is_success(), "{status}");
            (started.elapsed(), cookie, body.len())
        }
    };
    rt.block_on(async {
        let (first, cookie, _) = get("/worklist".into(), String::new()).await;
        let cookie = cookie.expect("a session for local-dev");
        println!(
            "records {} · open tasks {} · first worklist (builds the summary) {:.1} ms",
            stats.records,
            stats.open_tasks,
            first.as_secs_f64() * 1e3
        );
        let deep = (stats.open_tasks / 50 / 2).max(1);
        let pages: Vec<(&str, String)> = vec![
            ("worklist, oldest first", "/worklist".into()),
            (
                "worklist, by score, page in the middle",
                format!("/worklist?sort=score&page={deep}"),
            ),
            (
                "worklist, reason and source filters",
                "/worklist?reason=twin&source=bench-3".into(),
            ),
            (
                "worklist, age band, newest first",
                "/worklist?age=month&sort=newest".into(),
            ),
        ];
        println!(
            "{:<42} {:>10} {:>10} {:>9}",
            "page", "median ms", "p90 ms", "bytes"
        );
        for (name, path) in pages {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..a.rounds {
                let (t, _, b) = get(path.clone(), cookie.clone()).await;
                times.push(t);
                bytes = b;
            }
            let (med, p90) = median_p90(times);
            println!("{name:<42} {med:>10.2} {p90:>10.2} {bytes:>9}");
        }
        // Task pages: tasks spread over the queue.
        let open = app
            .service()
            .store()
            .list_tasks(&empi::store::TaskQuery {
                open: Some(true),
                page_size: 1000,
                ..Default::default()
            })
            .expect("tasks")
            .tasks;
        let mut times = Vec::new();
        let mut bytes = 0;
        for i in 0..a.rounds {
            let t = &open[(i * 37) % open.len()];
            let (d, _, b) = get(format!("/tasks/{}", t.id), cookie.clone()).await;
            times.push(d);
            bytes = b;
        }
        let (med, p90) = median_p90(times);
        println!("{:<42} {med:>10.2} {p90:>10.2} {bytes:>9}", "task page");
    });
}
