//! The `empi load`, `empi check` and `empi serve` commands as a user runs them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use empi::grpc::pb::{self, empi_client::EmpiClient};

/// `empi load` of `people.csv` into a new store.
const LOAD_NEW: &[&str] = &[
    "load",
    "--data",
    "store",
    "--create",
    "--input",
    "people.csv",
];

const EMPI: &str = env!("CARGO_BIN_EXE_empi");

fn empi(args: &[&str], dir: &Path) -> Output {
    Command::new(EMPI)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs empi")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Hand-made synthetic rows: two copies of one person, a twin, a stranger, and a row whose
/// date cannot be read (kept, with the date treated as missing).
const CSV: &str = "\
source,local_id,given_name,family_name,birth_date,phone,address_line,postal_code
adt,1,Margaret,Okonkwo,1961-07-02,413-555-0142,12 Elm St,01852
clinic,A7,Margaret,Okonkwo,1961-07-02,413-555-0142,12 Elm St,01852
adt,2,Olga,Okonkwo,1961-07-02,413-555-0142,12 Elm St,01852
adt,3,Peter,Ng,1990-01-15,617-555-0199,,
adt,4,Ana,Lima,1970-02-30,,,
";

#[test]
fn load_then_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("people.csv"), CSV).unwrap();
    let out = empi(LOAD_NEW, dir.path());
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("5 records") && err.contains("1 linked") && err.contains("1 review"),
        "{err}"
    );
    assert!(!err.contains("Okonkwo"), "no patient data in the summary");

    let out = empi(&["check", "--data", "store"], dir.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("records            5"), "{stdout}");
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");

    // loading the same file again changes nothing
    let out = empi(
        &["load", "--data", "store", "--input", "people.csv"],
        dir.path(),
    );
    assert!(
        text(&out.stderr).contains("5 unchanged"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_fails_on_a_broken_store_and_on_no_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("people.csv"), CSV).unwrap();
    let out = empi(LOAD_NEW, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    {
        // Break an invariant behind the store's back: delete every person.
        let db = crate::raw_sled(&dir.path().join("store"));
        db.open_tree("persons").unwrap().clear().unwrap();
        db.flush().unwrap();
    }
    let out = empi(&["check", "--data", "store"], dir.path());
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("does not exist"), "{stdout}");
    assert!(
        text(&out.stderr).contains("violation"),
        "{}",
        text(&out.stderr)
    );

    let out = empi(&["check", "--data", "nowhere"], dir.path());
    assert!(!out.status.success());
    assert!(
        !dir.path().join("nowhere").exists(),
        "check creates nothing"
    );
}

#[tokio::test]
async fn serve_answers_then_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(EMPI)
        .args(["serve", "--data", "store", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns empi serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let mut client = EmpiClient::connect(format!("http://{addr}")).await.unwrap();
    let stats = client
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.records, 0);
    assert!(!stats.model_version.is_empty());

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // generous bound so a stuck shutdown fails the test instead of hanging it
    let mut status = None;
    for _ in 0..200 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("empi serve did not stop within 10 s of SIGTERM");
    };
    assert!(status.success(), "{status}");
    assert!(dir.path().join("store").exists(), "the store was created");
}
