//! The batch commands on files as hospitals export them: one table row per case — the
//! files, the command, the exit code and what stderr (or stdout) must say — and a few
//! cases that also look inside the files written.

use std::path::Path;
use std::process::Command;

const EMPI: &str = env!("CARGO_BIN_EXE_empi");

/// A hospital-style export: `mrn,first,last,dob(MM/DD/YYYY),zip,phone`, synthetic rows.
/// 1001 and 1002 are one person; 1003 is her twin sister; 1004 is someone else.
const HOSP: &str = "\
mrn,first,last,dob,zip,phone
1001,Margaret,Okonkwo,07/02/1961,01852,413-555-0142
1002,Margaret,Okonkwo,07/02/1961,01852,413-555-0142
1003,Olga,Okonkwo,07/02/1961,01852,413-555-0142
1004,Peter,Ng,01/15/1990,02139,617-555-0199
";

const MAP: &str =
    "local_id=mrn,given_name=first,family_name=last,birth_date=dob,postal_code=zip,phone=phone";

const TRUTH_OTHER_SOURCE: &str = "source,local_id,person_id\nadt,1001,P1\nadt,1002,P1\n";

/// One case: files written into an empty directory, then `empi ARGS` run there.
struct Case {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    args: String,
    code: i32,
    /// Each must appear in stderr or stdout.
    says: Vec<&'static str>,
    /// None of these may appear.
    never: Vec<&'static str>,
}

fn case(name: &'static str, args: &str, code: i32, says: &[&'static str]) -> Case {
    Case {
        name,
        files: vec![("hosp.csv", HOSP.as_bytes().to_vec())],
        args: args.replace("MAP", MAP),
        code,
        says: says.to_vec(),
        never: Vec::new(),
    }
}

impl Case {
    fn file(mut self, name: &'static str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.push((name, bytes.into()));
        self
    }

    fn never(mut self, s: &[&'static str]) -> Self {
        self.never.extend_from_slice(s);
        self
    }
}

fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(EMPI)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs empi");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn check(c: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &c.files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    // `~` stands for a space inside an argument.
    let args: Vec<String> = c
        .args
        .split_whitespace()
        .map(|a| a.replace('~', " "))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text) = run(dir.path(), &args);
    let mut wrong = Vec::new();
    if code != c.code {
        wrong.push(format!("exit {code}, expected {}", c.code));
    }
    wrong.extend(
        c.says
            .iter()
            .filter(|s| !text.contains(**s))
            .map(|s| format!("does not say {s:?}")),
    );
    wrong.extend(
        c.never
            .iter()
            .filter(|s| text.contains(**s))
            .map(|s| format!("says {s:?}")),
    );
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}\n{text}", c.name, wrong.join("; ")))
    }
}

fn cases() -> Vec<Case> {
    let semi = HOSP.replace(',', ";");
    let tab = HOSP.replace(',', "\t");
    let latin1 = b"mrn,first,last\n1,Jos\xE9,M\xFCller\n2,Ren\xE9e,Dubois\n".to_vec();
    let bom_crlf = format!("\u{feff}{}", HOSP.replace('\n', "\r\n"));
    let open_quote = "mrn,first,last\n1,Ann,Lee\n2,\"Bob,Ray\n3,Cleo,Day\n4,Dev,Ode\n";
    let long = "x".repeat(400);
    let refusable =
        format!("{HOSP}1005,Ana,Lima,12/30/2099,01852,\n1006,{long},Lima,12/30/1970,01852,\n");
    let dup = format!("{HOSP}1004,Peter,Ng,01/15/1991,02139,617-555-0199\n");
    vec![
        // Real exports.
        case("semicolon", "dedup --input hosp.csv --output o.csv --columns MAP", 0, &[
            "semicolon-delimited (detected)",
            "4 records -> 3 clusters",
        ])
        .file("hosp.csv", semi.clone()),
        case("semicolon given", "dedup --input hosp.csv --output o.csv --columns MAP --delimiter ;", 0, &[
            "semicolon-delimited,",
        ])
        .file("hosp.csv", semi),
        case("tab", "dedup --input hosp.csv --output o.csv --columns MAP", 0, &[
            "tab-delimited (detected)",
            "4 records -> 3 clusters",
        ])
        .file("hosp.csv", tab),
        case("latin-1 read as utf-8", "dedup --input l.csv --output o.csv --columns local_id=mrn,given_name=first,family_name=last", 1, &[
            "error: reading input file l.csv: input: line 2: the bytes are not UTF-8 text",
            "give --encoding latin1",
        ])
        .file("l.csv", latin1.clone()),
        case("latin-1", "dedup --input l.csv --output o.csv --columns local_id=mrn,given_name=first,family_name=last --encoding latin1", 0, &[
            "2 rows -> 2 records; comma-delimited (detected), windows-1252",
        ])
        .file("l.csv", latin1),
        case("bom and crlf, headers in another case", "dedup --input hosp.csv --output o.csv --columns local_id=MRN,given_name=First,family_name=LAST,birth_date=Dob,postal_code=zip,phone=phone", 0, &[
            "4 rows -> 4 records",
            "4 records -> 3 clusters",
        ])
        .file("hosp.csv", bom_crlf),
        case("utf-16", "dedup --input u.csv --output o.csv", 1, &["the file is UTF-16 text"])
            .file("u.csv", b"\xFF\xFEm\0r\0n\0".to_vec()),
        case("unterminated quote", "dedup --input q.csv --output o.csv --columns local_id=mrn,given_name=first,family_name=last", 1, &[
            "line 3: a quoted value runs from here to the end of the file (line 5)",
        ])
        .file("q.csv", open_quote),
        // Dates.
        case("MM/DD/YYYY without a format", "dedup --input hosp.csv --output o.csv --columns MAP", 0, &[
            "birth_date: no format given; using %m/%d/%Y: it reads 4 of the first 4 values",
            "4 records -> 3 clusters",
        ])
        .never(&["unusable"]),
        case("MM/DD/YYYY as letters", "dedup --input hosp.csv --output o.csv --columns local_id=mrn,given_name=first,birth_date=dob:MM/DD/YYYY", 0, &[
            "4 rows -> 4 records",
        ])
        .never(&["unusable", "no format given"]),
        case("a format after a space", "dedup --input hosp.csv --output o.csv --columns local_id=mrn,given_name=first,birth_date=dob:~%m/%d/%Y", 0, &[
            "4 rows -> 4 records",
        ])
        .never(&["unusable", "no format given"]),
        case("a format none of the values fits", "dedup --input hosp.csv --output o.csv --columns local_id=mrn,given_name=first,birth_date=dob:%d.%m.%Y", 1, &[
            "birth_date: all 4 values of column 'dob' are unusable: none is a date in the format %d.%m.%Y",
        ]),
        case("strict names line, column and format", "dedup --input d.csv --output o.csv --columns local_id=mrn,given_name=first,birth_date=dob:%m/%d/%Y --strict", 1, &[
            "birth_date: line 3, column 'dob': not a date in the format %m/%d/%Y",
        ])
        .file("d.csv", "mrn,first,dob\n1,Ann,07/02/1961\n2,Bob,1961-07-02\n"),
        // Mapping mistakes.
        case("no --columns, local_id unmapped", "dedup --input hosp.csv --output o.csv", 1, &[
            "local_id is not mapped",
            "the file's headers (delimiter comma): mrn, first, last, dob, zip, phone",
        ]),
        case("only local_id mapped", "dedup --input hosp.csv --output o.csv --columns local_id=mrn", 1, &[
            "no records read: all 4 rows left out: 4 with no value but the local_id",
        ]),
        case("missing header lists the file's", "dedup --input hosp.csv --output o.csv --columns local_id=mrn,family_name=surname", 1, &[
            "header 'surname' (for family_name) not in the file; the file's headers (delimiter comma): mrn, first",
        ]),
        case("unknown field lists ours", "dedup --input hosp.csv --output o.csv --columns local_id=mrn,foo=first", 1, &[
            "unknown field 'foo' (our fields: source, local_id, given_name",
        ]),
        case("a column without one usable value", "dedup --input s.csv --output o.csv --columns local_id=mrn,given_name=first,sex=sex", 1, &[
            "sex: all 2 values of column 'sex' are unusable",
        ])
        .file("s.csv", "mrn,first,sex\n1,Ann,1\n2,Bob,2\n"),
        // The server's rules.
        case("refused as the server would", "dedup --input r.csv --output o.csv --columns MAP", 0, &[
            "rows refused (the server would refuse them too): 2 (birth_date: in the future: 1, given_name: longer than 256 bytes: 1)",
        ])
        .file("r.csv", refusable.clone())
        .never(&["xxxxxxxx"]),
        case("refused under --strict", "dedup --input r.csv --output o.csv --columns MAP --strict", 1, &[
            "record file/1005: birth_date: line 6: in the future",
        ])
        .file("r.csv", refusable),
        case("duplicate local ids", "dedup --input d.csv --output o.csv --columns MAP", 0, &[
            "duplicate keys: 1 rows repeat an earlier row's source and local_id (the first: file/1004)",
        ])
        .file("d.csv", dup),
        // Output paths.
        case("output is the input", "dedup --input hosp.csv --output hosp.csv --columns MAP", 1, &[
            "--output hosp.csv is the file given as --input",
        ]),
        case("output is the review", "dedup --input hosp.csv --output x.csv --review ./x.csv --columns MAP", 1, &[
            "--output and --review are the same file",
        ]),
        case("output exists", "dedup --input hosp.csv --output o.csv --columns MAP", 1, &[
            "--output o.csv exists: give --force to overwrite it",
        ])
        .file("o.csv", "keep me"),
        case("output exists, --force", "dedup --input hosp.csv --output o.csv --columns MAP --force", 0, &[
            "4 records -> 3 clusters",
        ])
        .file("o.csv", "keep me"),
        case("link output is the left file", "link --left hosp.csv --right hosp.csv --output hosp.csv --columns-left MAP", 1, &[
            "--output hosp.csv is the file given as --left",
        ]),
        case("eval json is the truth", "eval --input hosp.csv --columns MAP --truth t.csv --json t.csv", 1, &[
            "--json t.csv is the file given as --truth",
        ])
        .file("t.csv", TRUTH_OTHER_SOURCE),
        // Truth, training, models.
        case("dedup truth matching no key", "dedup --input hosp.csv --output o.csv --columns MAP --truth t.csv", 1, &[
            "truth file t.csv: none of its 2 rows has the key (source, local_id) of one of the 4 records such as file/1001",
        ])
        .file("t.csv", TRUTH_OTHER_SOURCE),
        case("eval truth matching no key", "eval --input hosp.csv --columns MAP --truth t.csv", 1, &[
            "truth file t.csv: none of its 2 rows has the key",
        ])
        .file("t.csv", TRUTH_OTHER_SOURCE),
        case("eval names its units and reasons in words", "eval --input hosp.csv --columns MAP --truth t.csv --source adt --explain-errors 2", 0, &[
            "false-merge: % of clusters holding more than one true person",
            "upper: the upper threshold, a match weight (log2 odds)",
        ])
        .file("t.csv", TRUTH_OTHER_SOURCE)
        .never(&["Some(", "GivenNameDiffers"]),
        case("train on too little data", "train --input hosp.csv --columns MAP --out m.json", 1, &[
            "too little data to train: 4 records",
            "nothing was written",
        ]),
        case("missing input file, said once", "dedup --input nope.csv --output o.csv", 1, &[
            "error: input file nope.csv: No such file or directory (os error 2)\n",
        ]),
        case("missing model file", "dedup --input hosp.csv --output o.csv --columns MAP --model m.json", 1, &[
            "error: model file m.json: No such file",
        ]),
        case("model export", "model export", 0, &["\"format_version\": 2", "\"thresholds\""]),
        case("model set", "model set default --upper 10 --lower 2 --out m.json", 0, &[
            "model default-2-upper10-lower2 written to m.json: upper 10",
        ]),
        case("model set, lower above upper", "model set default --lower 9 --out m.json", 1, &[
            "the lower threshold (9) would be above the upper (8)",
        ]),
        // --data.
        case("--data with --review", "dedup --data st --review r.csv", 2, &["cannot be used with"]),
        case("--data with --output", "dedup --data st --output o.csv", 2, &["cannot be used with"]),
    ]
}

#[test]
fn each_export_case_exits_and_says_what_it_should() {
    let cases = cases();
    // Every case is its own process in its own directory: run them a few at a time.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(4))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|c| check(c).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_csv_command_lists_our_fields_and_the_mapping_grammar() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["dedup", "eval", "train", "link", "load", "model report"] {
        let mut args: Vec<&str> = cmd.split(' ').collect();
        args.push("--help");
        let (code, text) = run(dir.path(), &args);
        assert_eq!(code, 0, "{cmd}");
        for s in [
            "--columns 'local_id=mrn,given_name=first",
            "birth_date=dob:FORMAT",
            "Our fields: source local_id given_name",
            "multiple_birth_order",
        ] {
            assert!(text.contains(s), "{cmd} --help lacks {s:?}:\n{text}");
        }
    }
}

/// Clusters joined to the input's own columns, and the review pairs a person reads.
#[test]
fn joined_clusters_and_the_readable_review_hold_the_input_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosp.csv"), HOSP.replace(',', ";")).unwrap();
    let args = format!(
        "dedup --input hosp.csv --columns {MAP} --output c.csv --joined j.csv --review r.csv \
         --review-text r.txt"
    );
    let (code, text) = run(dir.path(), &args.split_whitespace().collect::<Vec<_>>());
    assert_eq!(code, 0, "{text}");
    let joined = std::fs::read_to_string(dir.path().join("j.csv")).unwrap();
    let lines: Vec<&str> = joined.lines().collect();
    assert_eq!(
        lines[0],
        "cluster_id,cluster_size,match_weight,mrn,first,last,dob,zip,phone"
    );
    // The two records of one person share a cluster of two, with the weight that joined
    // them; the twin and the stranger are alone.
    let row = |mrn: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.split(',').nth(3) == Some(mrn))
            .unwrap()
            .split(',')
            .collect()
    };
    let (a, b, twin) = (row("1001"), row("1002"), row("1003"));
    assert_eq!((a[0], a[1]), (b[0], "2"));
    assert!(a[2].parse::<f64>().unwrap() >= 8.0, "{joined}");
    assert_eq!((twin[1], twin[2]), ("1", ""));
    assert_eq!(
        &twin[3..],
        [
            "1003",
            "Olga",
            "Okonkwo",
            "07/02/1961",
            "01852",
            "413-555-0142"
        ]
    );
    // The twin pair is for review: values side by side, levels, weights, the reason.
    let review = std::fs::read_to_string(dir.path().join("r.txt")).unwrap();
    assert!(review.contains("pair 1 of"), "{review}");
    assert!(
        review.contains("a twin sharing the household and birth date could have these records"),
        "{review}"
    );
    let given = review
        .lines()
        .find(|l| l.trim_start().starts_with("given_name") && l.contains("Olga"))
        .unwrap_or_else(|| panic!("{review}"));
    assert!(
        given.contains("Margaret") && given.contains("else"),
        "{given}"
    );
    let birth = review
        .lines()
        .find(|l| l.trim_start().starts_with("birth_date"))
        .unwrap();
    let cells: Vec<&str> = birth.split_whitespace().collect();
    assert_eq!(
        cells[1..4],
        ["1961-07-02", "1961-07-02", "exact"],
        "{birth}"
    );
    assert!(cells[4].starts_with('+'), "{birth}");
    // The CSV review keeps to keys and levels.
    let csv = std::fs::read_to_string(dir.path().join("r.csv")).unwrap();
    assert!(!csv.contains("Olga") && csv.contains("file,1003"), "{csv}");
}

#[test]
fn a_dry_run_rescan_opens_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosp.csv"), HOSP).unwrap();
    let load = format!("load --data st --create --input hosp.csv --columns {MAP}");
    let (code, text) = run(dir.path(), &load.split_whitespace().collect::<Vec<_>>());
    assert_eq!(code, 0, "{text}");
    // The twin went to review when loaded; merging the two persons again is what a
    // re-scan looks for (none here beyond it): a dry run words its counts as "would".
    let (code, text) = run(dir.path(), &["dedup", "--data", "st", "--dry-run"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("review tasks would be opened") && text.contains("dry run: nothing written"),
        "{text}"
    );
    assert!(!text.contains("tasks opened"), "{text}");
}

#[test]
fn batch_runs_say_what_they_found_of_twins() {
    // A file of the outside family (no households) and the committed standard set (twins
    // and relatives): each run says whether twins are evident in its input, and the prior
    // it counted there (unless told to use the model's).
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = run(
        dir.path(),
        &[
            "synth",
            "--profile",
            "outside",
            "--persons",
            "1500",
            "--seed",
            "5",
            "--out",
            "o",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(
        dir.path(),
        &["dedup", "--input", "o/records.csv", "--output", "c.csv"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("rivals counted from the input: twins not evident"),
        "{text}"
    );
    assert!(
        text.contains("prior counted from the input: λ ")
            && text.contains("is one person (the model's 1.000e-5)"),
        "{text}"
    );
    let (code, text) = run(
        dir.path(),
        &[
            "dedup",
            "--input",
            "o/records.csv",
            "--output",
            "c2.csv",
            "--model-tf",
            "--report",
            "r.json",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("prior counted"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert!(report["scoring"]["prior"].is_null(), "{report}");
    let standard = Path::new(env!("CARGO_MANIFEST_DIR")).join("synthetic-data/small/records.csv");
    let (code, text) = run(dir.path(), &["eval", "--input", standard.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("rivals counted from the records: twins evident (likelihood-ratio statistic"),
        "{text}"
    );
    assert!(
        text.contains("prior counted from the records: λ "),
        "{text}"
    );
}
