//! The validation pass: one streaming read of the whole input before anything is sent.
//!
//! Every row is planned (JSON, CSV shape, templates, parameters), every key
//! collected, and every problem gathered, so a bad input costs nothing. The
//! same pass counts what a run will send and what it may cost.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::input::{self, InputError, InputFile};
use crate::job::{Format, Job};
use crate::keys::{estimate_lines, Gather, Keep, KeyId, KeyTable, ShortId};
use crate::plan::Planner;

use super::estimate::Estimate;
use super::over_rate::OverRate;
use crate::sink::ResumeState;

/// How many problems are listed before the rest are only counted.
pub const SHOWN_PROBLEMS: usize = 20;

/// One key of the job: 8 bytes, so a million keys take 24 MB with their ids.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// The line of its row (saturating: it only names a duplicate's first row).
    pub line: u32,
    /// How it ended in this run, once it has.
    pub ok: Option<bool>,
    /// How its latest line in the output ended, when that line is of the same request.
    pub prior: Option<bool>,
    /// The output has a line of it (of this request or an edited one).
    pub in_file: bool,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub rows: u64,
    /// Every key of the job.
    pub keys: KeyTable<Seen>,
    /// The job's keys the output has a line of.
    pub in_file: u64,
    /// Which requests, numbered in input order, are to be sent: the
    /// producer plans only the rows that have one (a rerun over a complete
    /// output plans and hashes nothing twice).
    pub send: Bits,
    /// What the requests may cost, per parameter set and model.
    pub estimate: Estimate,
    /// Keys whose latest output line is `ok` for the same request: not sent again.
    pub resumed: u64,
    pub problems: Vec<InputError>,
    pub problem_count: u64,
}

impl Scan {
    pub fn requests(&self) -> u64 {
        self.keys.len() as u64
    }

    pub fn to_send(&self) -> u64 {
        self.requests() - self.resumed
    }

    /// The output's keys the job does not have.
    pub fn other_keys(&self, resume: &ResumeState) -> u64 {
        resume.keys.saturating_sub(self.in_file)
    }

    fn problem(&mut self, e: InputError) {
        self.problem_count += 1;
        if self.problems.len() < SHOWN_PROBLEMS {
            self.problems.push(e);
        }
    }
}

/// Every problem found, for the user: the first 20 (`shown`), then a count.
pub fn problem_report(shown: &[InputError], count: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "the input has {}; nothing was sent:",
        crate::printer::count(count, "problem")
    );
    for p in shown {
        let _ = writeln!(out, "  {p}");
    }
    let more = count.saturating_sub(shown.len() as u64);
    if more > 0 {
        let _ = writeln!(out, "  ... and {more} more");
    }
    out
}

/// Reads every row of `file`, plans it, and checks keys; `resume` marks
/// what is already done, and its table of keys is let go once read (before
/// the job's own table is built: the two never need to be whole at once).
pub fn scan(job: &Job, file: &InputFile, resume: &mut ResumeState) -> Scan {
    let mut scan = Scan::default();
    let planner = Planner::new(job);
    let rows = match input::open(file, job.input.format) {
        Ok(rows) => rows,
        Err(e) => {
            scan.problem(e);
            return scan;
        }
    };
    let limit = job.row_limit.unwrap_or(u64::MAX);
    let mut over_rate = OverRate::new(job.limits.tokens_per_minute);
    // "no model for parameter set ..." -> (first line, rows).
    let mut no_model: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut keys = Gather::default();
    keys.expect(estimate_lines(&file.path).saturating_mul(planner.requests_per_row() as usize));
    let mut send_bits = Bits::default();
    for row in rows.take(usize::try_from(limit).unwrap_or(usize::MAX)) {
        scan.rows += 1;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                scan.problem(e);
                continue;
            }
        };
        let line = row.line;
        if scan.rows == 1 && job.input.format == Format::Csv {
            // A template field that is not a column fails every row: say it once.
            if let Some(problem) = missing_columns(job, &row.fields, &file.display) {
                scan.problem(problem);
                return scan;
            }
        }
        let requests = match planner.plan(row, &file.display) {
            Ok(requests) => requests,
            Err(problems) => {
                for p in problems {
                    // A set without a model fails every row alike: said once, below.
                    if p.field.as_deref() == Some("model") {
                        no_model.entry(p.message).or_insert((line, 0)).1 += 1;
                    } else {
                        scan.problem(p);
                    }
                }
                continue;
            }
        };
        for req in requests {
            let id = KeyId::of(&req.key);
            let latest = resume.latest.get(&ShortId::from(id)).copied();
            let prior = latest.and_then(|l| l.prior(&req.sha256));
            scan.estimate.add(&req, prior != Some(true));
            let send = prior != Some(true);
            if !send {
                scan.resumed += 1;
            } else if over_rate.over(&req, &file.display, line) {
                send_bits.push(false);
                continue;
            }
            send_bits.push(send);
            scan.in_file += u64::from(latest.is_some());
            keys.push((
                id,
                Seen {
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                    ok: None,
                    prior,
                    in_file: latest.is_some(),
                },
            ));
        }
    }
    resume.release_keys();
    // Duplicates are found once every key is in: the first row of a key
    // keeps it (sorted in place, rows in line order within a key).
    let (keys, duplicates) = KeyTable::build(keys, Keep::First, Some(|a, b| a.line.cmp(&b.line)));
    scan.keys = keys;
    scan.send = send_bits;
    if !duplicates.is_empty() {
        name_duplicates(&mut scan, &planner, job, file, &duplicates);
    }
    for (message, (first, rows)) in no_model {
        let rows = match rows {
            1 => format!("line {first}"),
            n => format!("{n} rows, the first at line {first}"),
        };
        scan.problem(InputError::new(
            &file.display,
            None,
            format!("{message} ({rows})"),
        ));
    }
    for problem in over_rate.problems(&file.display) {
        scan.problem(problem);
    }
    scan
}

/// One problem per row whose key an earlier row has, in input order: the
/// input is read again for the keys themselves (only on this error path:
/// the table holds fingerprints, not keys).
fn name_duplicates(
    scan: &mut Scan,
    planner: &Planner,
    job: &Job,
    file: &InputFile,
    duplicates: &[(KeyId, Seen)],
) {
    let mut lines: Vec<u32> = duplicates.iter().map(|(_, seen)| seen.line).collect();
    lines.sort_unstable();
    let Ok(rows) = input::open(file, job.input.format) else {
        return;
    };
    for row in rows.flatten() {
        let line = u32::try_from(row.line).unwrap_or(u32::MAX);
        if lines.binary_search(&line).is_err() {
            continue;
        }
        let Ok(requests) = planner.plan(row, &file.display) else {
            continue;
        };
        for req in requests {
            let id = KeyId::of(&req.key);
            let Some(first) = scan.keys.get(&id).map(|seen| seen.line) else {
                continue;
            };
            if first == line {
                continue;
            }
            let e = InputError::new(
                file.display.clone(),
                Some(u64::from(line)),
                format!(
                    "duplicate request key {:?}: line {first} has the same id; ids must be unique (set [input] id or --id)",
                    req.key
                ),
            )
            .with_field("id");
            scan.problem(e);
        }
    }
}

/// One bit per request, in input order.
#[derive(Debug, Default)]
pub struct Bits {
    words: Vec<u64>,
    len: u64,
}

impl Bits {
    pub fn push(&mut self, bit: bool) {
        let (word, at) = ((self.len / 64) as usize, self.len % 64);
        if word == self.words.len() {
            self.words.push(0);
        }
        self.words[word] |= u64::from(bit) << at;
        self.len += 1;
    }

    /// Bit `i` (false past the end).
    pub fn get(&self, i: u64) -> bool {
        let word = usize::try_from(i / 64).unwrap_or(usize::MAX);
        self.words.get(word).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }
}

/// The template and id fields a CSV header lacks, as one problem naming the columns it has.
fn missing_columns(
    job: &Job,
    columns: &serde_json::Map<String, serde_json::Value>,
    display: &str,
) -> Option<InputError> {
    let templates = [job.input.template.as_ref(), job.input.id.as_ref()];
    let mut missing: Vec<&str> = templates
        .into_iter()
        .flatten()
        .flat_map(|t| t.fields())
        .filter(|f| !columns.contains_key(*f))
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return None;
    }
    let have: Vec<&str> = columns.keys().map(String::as_str).collect();
    let near = crate::job::did_you_mean(missing[0], have.iter().copied());
    Some(
        InputError::new(
            display,
            Some(1),
            format!(
                "the template needs column{} {} but the header has {}{near}",
                if missing.len() == 1 { "" } else { "s" },
                quoted(&missing),
                quoted(&have)
            ),
        )
        .with_field(missing[0]),
    )
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::JobArgs;
    use crate::input::InputFile;

    fn scan_csv(csv: &str, template: &str) -> Scan {
        scan_csv_with(csv, template, None)
    }

    fn scan_csv_with(csv: &str, template: &str, tpm: Option<u64>) -> Scan {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.csv");
        std::fs::write(&path, csv).expect("write");
        let args = JobArgs {
            input: Some("q.csv".into()),
            template: Some(template.into()),
            model: Some("m".into()),
            params: vec!["max_tokens=100".into()],
            tpm,
            ..JobArgs::default()
        };
        let job = Job::load(&args, dir.path(), chrono::Utc::now()).expect("valid job");
        let file = InputFile {
            path,
            display: "q.csv".into(),
        };
        scan(&job, &file, &mut ResumeState::default())
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
            message.contains("q.csv:3")
                && message.contains("\"b/default\" may use up to 112 tokens"),
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
}
