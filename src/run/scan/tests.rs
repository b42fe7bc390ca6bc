//! The check pass on small inputs: problems said once, and the same
//! decisions whether it is judged against the output as it plans or after.
use super::*;
use crate::cli::JobArgs;
use crate::input::InputFile;

fn scan_csv(csv: &str, template: &str) -> Scan {
    scan_csv_with(csv, template, None)
}

fn scan_csv_with(csv: &str, template: &str, tpm: Option<u64>) -> Scan {
    let dir = tempfile::tempdir().expect("tempdir");
    let (job, file) = csv_job(dir.path(), csv, template, tpm);
    scan(&job, &file, &mut ResumeState::default())
}

/// A job over `csv` (written as `q.csv` in `dir`), `template` its prompt.
fn csv_job(dir: &std::path::Path, csv: &str, template: &str, tpm: Option<u64>) -> (Job, InputFile) {
    let path = dir.join("q.csv");
    std::fs::write(&path, csv).expect("write");
    let args = JobArgs {
        input: Some("q.csv".into()),
        template: Some(template.into()),
        model: Some("m".into()),
        params: vec!["max_tokens=100".into()],
        tpm,
        ..JobArgs::default()
    };
    let job = Job::load(&args, dir, chrono::Utc::now()).expect("valid job");
    let file = InputFile {
        path,
        display: "q.csv".into(),
    };
    (job, file)
}

#[test]
fn a_template_field_missing_from_the_header_is_one_problem_not_one_per_row() {
    let rows: String = (1..=50).map(|i| format!("{i},q{i}\n")).collect();
    let s = scan_csv(&format!("id,question\n{rows}"), "{{nope}}: {{question}}");
    assert_eq!(s.problem_count, 1);
    let message = s.problems[0].to_string();
    assert!(
        message.contains("\"nope\"") && message.contains("\"question\""),
        "{message}"
    );
}

#[test]
fn a_request_larger_than_the_tokens_per_minute_is_a_problem() {
    // "x" + 8 per message + 100 = 109 tokens at most; "long" 112.
    let s = scan_csv_with("id,question\na,x\nb,long\n", "{{question}}", Some(109));
    assert_eq!(s.problem_count, 1);
    let message = s.problems[0].to_string();
    assert!(
        message.contains("q.csv:3") && message.contains("\"b/default\" may use up to 112 tokens"),
        "{message}"
    );
    assert_eq!(s.requests(), 1, "the request that fits is still counted");
    // None fits: the rate is the problem, said once.
    let s = scan_csv_with("id,question\na,x\nb,y\n", "{{question}}", Some(108));
    assert_eq!(s.problem_count, 1);
    let message = s.problems[0].to_string();
    assert!(
        message.contains("every one of the 2 requests") && message.contains("at least 109"),
        "{message}"
    );
    let s = scan_csv_with("id,question\na,x\n", "{{question}}", Some(109));
    assert_eq!(s.problem_count, 0);
}

#[test]
fn a_missing_model_is_one_problem_not_one_per_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("q.jsonl");
    let rows: String = (1..=30)
        .map(|i| format!("{{\"prompt\": \"q{i}\"}}\n"))
        .collect();
    std::fs::write(&path, rows).expect("write");
    let args = JobArgs {
        input: Some("q.jsonl".into()),
        ..JobArgs::default()
    };
    let job = Job::load(&args, dir.path(), chrono::Utc::now()).expect("valid job");
    let file = InputFile {
        path,
        display: "q.jsonl".into(),
    };
    let s = scan(&job, &file, &mut ResumeState::default());
    assert_eq!(
        s.problem_count,
        1,
        "{}",
        problem_report(&s.problems, s.problem_count)
    );
    let message = s.problems[0].to_string();
    assert!(
        message.contains("no model for parameter set \"default\""),
        "{message}"
    );
    assert!(
        message.contains("30 rows, the first at line 1"),
        "{message}"
    );
}

#[test]
fn a_template_field_close_to_a_column_gets_a_suggestion() {
    let s = scan_csv("id,question\n1,q\n", "{{questoin}}");
    let message = s.problems[0].to_string();
    assert!(message.contains("did you mean \"question\"?"), "{message}");
    let s = scan_csv("id,question\n1,q\n", "{{zzz}}");
    let message = s.problems[0].to_string();
    assert!(!message.contains("did you mean"), "{message}");
}

#[test]
fn keys_and_counts_of_a_clean_csv() {
    let s = scan_csv("id,question\na,x\nb,y\n", "{{question}}");
    assert_eq!((s.rows, s.requests(), s.problem_count), (2, 2, 0));
    assert_eq!(s.to_send(), 2);
}

/// A job over `csv` and an output holding `lines` (each `(key, status,
/// same request?)`), judged both ways: against the output's table as
/// the rows are planned (`validate`, and once the lock is held), and
/// beside the resume scan, joined after (a run's start).
fn both_ways(csv: &str, tpm: Option<u64>, lines: &[(&str, &str, bool)]) -> [Scan; 2] {
    both_ways_hashing(csv, tpm, lines, !lines.is_empty())
}

/// [`both_ways`], the pass beside the scan hashing requests or not (a run
/// does when the output has a byte when it starts).
fn both_ways_hashing(
    csv: &str,
    tpm: Option<u64>,
    lines: &[(&str, &str, bool)],
    hash: bool,
) -> [Scan; 2] {
    let dir = tempfile::tempdir().expect("tempdir");
    let (job, file) = csv_job(dir.path(), csv, "{{question}}", tpm);
    // The hash of every request, as a run records it.
    let planner = Planner::new(&job);
    let mut sha = BTreeMap::new();
    for row in input::open(&file, job.input.format).expect("open") {
        for req in planner.plan(row.expect("row"), "q.csv").expect("plans") {
            sha.insert(req.key, req.sha256);
        }
    }
    let output: String = lines
        .iter()
        .map(|(key, status, same)| {
            let hash = match (same, sha.get(*key)) {
                (true, Some(hash)) => hash.clone(),
                _ => "0".repeat(64),
            };
            crate::sink::resume::tests::record(key, status, "", "").replacen(
                "\"request_sha256\":\"\"",
                &format!("\"request_sha256\":\"{hash}\""),
                1,
            ) + "\n"
        })
        .collect();
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, output).expect("write");
    let judged = scan(&job, &file, &mut crate::sink::scan(&out).expect("scan"));
    let mut resume = crate::sink::scan(&out).expect("scan");
    let mut pass = check(&job, &file, None, hash);
    if pass.needs_output() || pass.needs_hashes(&resume) {
        pass = check(&job, &file, Some(&resume), resume.lines > 0);
    }
    let joined = join(pass, &job, &file, &mut resume);
    [judged, joined]
}

/// What a scan decided: per request whether to send it, per key how its line ended.
fn decisions(s: &Scan) -> String {
    let send: Vec<bool> = (0..s.requests() + 1).map(|i| s.send.get(i)).collect();
    let mut seen: Vec<String> = s.keys.values().map(|v| format!("{v:?}")).collect();
    seen.sort();
    let problems: Vec<String> = s.problems.iter().map(ToString::to_string).collect();
    format!(
        "{send:?} resumed {} in file {} {seen:?} {problems:?} {}",
        s.resumed, s.in_file, s.problem_count
    )
}

#[test]
fn the_pass_beside_the_resume_scan_decides_as_the_pass_after_it() {
    let csv = "id,question\na,x\nb,y\nc,z\nd,w\ne,v\n";
    let lines = [
        ("a/default", "ok", true),
        ("b/default", "error", true),
        ("c/default", "ok", false),
        ("e/default", "error", true),
        ("e/default", "ok", true),
        ("gone/default", "ok", true),
    ];
    let [judged, joined] = both_ways(csv, None, &lines);
    assert_eq!(decisions(&judged), decisions(&joined));
    // Sent: b (failed), c (edited), d (never sent); a and e are done.
    let send: Vec<bool> = (0..5).map(|i| joined.send.get(i)).collect();
    assert_eq!(send, [false, true, true, true, false]);
    assert_eq!(
        (joined.resumed, joined.in_file, joined.to_send()),
        (2, 4, 3)
    );
    assert!(
        judged
            .estimate
            .price(&Default::default(), &Default::default())
            .totals
            .sums
            .requests
            == 5
    );
}

#[test]
fn a_pass_without_hashes_decides_as_one_with_them_for_an_output_with_no_line() {
    let csv = "id,question\na,x\nb,y\nb,z\n";
    let [judged, joined] = both_ways_hashing(csv, None, &[], false);
    assert_eq!(decisions(&judged), decisions(&joined));
    assert_eq!((joined.to_send(), joined.problem_count), (2, 1));
}

#[test]
fn a_pass_without_hashes_is_made_again_for_an_output_found_with_lines() {
    // Planned as for an empty output, then the resume scan found lines (an
    // output written meanwhile): done requests must not be sent again.
    let csv = "id,question\na,x\nb,y\nc,z\n";
    let lines = [("a/default", "ok", true), ("b/default", "ok", false)];
    let [judged, joined] = both_ways_hashing(csv, None, &lines, false);
    assert_eq!(decisions(&judged), decisions(&joined));
    let send: Vec<bool> = (0..3).map(|i| joined.send.get(i)).collect();
    assert_eq!(send, [false, true, true]);
}

#[test]
fn a_request_over_the_rate_is_a_problem_only_when_it_is_to_send_both_ways() {
    // "long" may use 112 tokens, 109 fit in a minute.
    let csv = "id,question\na,x\nb,long\n";
    // Done already: no problem, though the pass beside the scan could not know.
    let [judged, joined] = both_ways(csv, Some(109), &[("b/default", "ok", true)]);
    assert_eq!(judged.problem_count, 0);
    assert_eq!(decisions(&judged), decisions(&joined));
    // To send: the same one problem.
    let [judged, joined] = both_ways(csv, Some(109), &[("b/default", "error", true)]);
    assert_eq!(judged.problem_count, 1);
    assert_eq!(decisions(&judged), decisions(&joined));
}

#[test]
fn duplicates_are_named_the_same_both_ways() {
    let csv = "id,question\na,x\nb,y\na,z\nb,w\na,v\n";
    let [judged, joined] = both_ways(csv, None, &[("a/default", "ok", true)]);
    assert_eq!(judged.problem_count, 3);
    assert_eq!(decisions(&judged), decisions(&joined));
    assert!(
        judged.problems[2].to_string().contains("q.csv:6"),
        "{:?}",
        judged.problems
    );
}

#[test]
fn duplicate_ids_are_reported_with_the_first_line() {
    let s = scan_csv("id,question\na,x\nb,y\na,z\n", "{{question}}");
    assert_eq!(s.problem_count, 1);
    let message = s.problems[0].to_string();
    assert!(
        message.contains("q.csv:4") && message.contains("line 2"),
        "{message}"
    );
}

#[test]
fn a_shard_keeps_its_rows_and_still_checks_every_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ids q1 and q2 hash to shards 2 and 3 of 4 (pinned in job::shard).
    let (mut job, file) = csv_job(
        dir.path(),
        "id,question\nq1,a\nq2,b\n",
        "{{question}}",
        None,
    );
    job.shard = crate::job::shard::Shard { index: 3, count: 4 };
    let s = scan(&job, &file, &mut ResumeState::default());
    assert_eq!((s.rows, s.shard_rows, s.requests()), (2, 1, 1));
    assert_eq!(s.problem_count, 0);
    assert!(!s.send.get(0) && s.send.get(1), "only q2 is sent");
    // A duplicate among another shard's rows stops this one too.
    let (mut job, file) = csv_job(
        dir.path(),
        "id,question\nq1,a\nq2,b\nq1,c\n",
        "{{question}}",
        None,
    );
    job.shard = crate::job::shard::Shard { index: 3, count: 4 };
    let s = scan(&job, &file, &mut ResumeState::default());
    assert_eq!(s.problem_count, 1);
    let message = s.problems[0].to_string();
    assert!(
        message.contains("duplicate request key \"q1/default\""),
        "{message}"
    );
}
