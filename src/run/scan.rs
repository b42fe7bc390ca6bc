//! The validation pass: one streaming read of the whole input before anything is sent.
//!
//! Every row is planned (JSON, CSV shape, templates, parameters), every key
//! collected, and every problem gathered, so a bad input costs nothing. The
//! same pass counts what a run will send and what it may cost.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::input::{self, InputError, InputFile};
use crate::job::{Format, Job};
use crate::keys::{estimate_lines, sha_prefix, Gather, Keep, KeyId, KeyMap, KeyTable, ShortId};
use crate::plan::Planner;

use super::estimate::Estimate;
use super::over_rate::OverRate;
use crate::sink::ResumeState;

/// How many problems are listed before the rest are only counted.
pub const SHOWN_PROBLEMS: usize = 20;

/// One key of the job: 8 bytes, so a million keys take 24 MB with their ids.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// The request's number in input order (saturating): of two requests
    /// with one key, the first keeps it.
    pub order: u32,
    /// How it ended in this run, once it has.
    pub ok: Option<bool>,
    /// How its latest line in the output ended, when that line is of the same request.
    pub prior: Option<bool>,
    /// The output has a line of it (of this request or an edited one).
    pub in_file: bool,
}

#[derive(Debug, Default)]
pub struct Scan {
    /// Rows read and checked (every shard checks every row).
    pub rows: u64,
    /// Of those, the rows of this run's shard (all of them unsharded).
    pub shard_rows: u64,
    /// Every key of the job.
    pub keys: KeyTable<Seen>,
    /// The job's keys the output has a line of.
    pub in_file: u64,
    /// Which requests, numbered in input order, are to be sent: the
    /// producer plans only the rows that have one (a rerun over a complete
    /// output plans and hashes nothing twice).
    pub send: Bits,
    /// What the requests may cost, per parameter set and model (only from a
    /// pass judged against the output as it planned: `validate`'s).
    pub estimate: Estimate,
    /// The models this shard's requests ask for (rows' own `params` included).
    pub models: std::collections::BTreeSet<String>,
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

/// The check pass before it is judged against the output ([`join`]): every
/// request's fingerprint and hash in input order, 24 bytes each.
#[derive(Debug, Default)]
pub struct Pass {
    scan: Scan,
    /// (key, [`sha_prefix`] of its request, or [`OVER_RATE`]) per request, in input order.
    requests: Gather<(KeyId, u64)>,
    /// "no model for parameter set ..." (or a response_format schema that is
    /// no schema) -> (first line, rows).
    no_model: BTreeMap<String, (u64, u64)>,
    over_rate: OverRate,
    /// The output's table was at hand as the rows were planned: the
    /// estimate and the tokens-per-minute check know what is to send.
    judged: bool,
    /// Requests were hashed: without, every hash is [`NO_SHA`] (planned
    /// for an output with no line, there was nothing to compare one with).
    hashed: bool,
}

/// In place of a request's hash: the request is to send and over the
/// tokens per minute, so it is left out of the keys (a problem already).
const OVER_RATE: u64 = u64::MAX;
/// A hash no output line has (a [`sha_prefix`] is below 2^62).
const NO_SHA: u64 = u64::MAX - 1;
/// In place of a request's hash: the request is another shard's. Checked
/// like every other (a bad row anywhere stops every shard), then left out
/// of this shard's keys; kept only to find duplicate keys among them.
const OTHER_SHARD: u64 = u64::MAX - 2;

impl Pass {
    /// A pass made without the output's table must be made again with it
    /// when some request is over the tokens per minute: only a request to
    /// send is a problem, and which are to send was not known yet.
    pub fn needs_output(&self) -> bool {
        !self.judged && self.over_rate.any()
    }

    /// Made without hashes for an output then found to have lines (written
    /// meanwhile): it must be made again, with them.
    pub fn needs_hashes(&self, resume: &ResumeState) -> bool {
        !self.hashed && resume.lines > 0
    }
}

/// Reads every row of `file`, plans it, and checks keys; `resume` marks
/// what is already done, and its table of keys is let go once read (before
/// the job's own table is built: the two never need to be whole at once).
pub fn scan(job: &Job, file: &InputFile, resume: &mut ResumeState) -> Scan {
    let pass = check(job, file, Some(resume), resume.lines > 0);
    join(pass, job, file, resume)
}

/// The check pass: reads every row of `file`, plans it, and keeps each
/// request's fingerprint and hash. With `output` (the resume scan's table)
/// the estimate and the tokens-per-minute check count only what is to
/// send; without, the pass runs beside the resume scan, counts no
/// estimate, and [`Pass::needs_output`] says when it must be made again.
/// `hash`: whether the output may have a line to compare a request's hash
/// with; without, requests are planned without their body and hash (the
/// sending pass builds them), about a third of planning's work.
pub fn check(job: &Job, file: &InputFile, output: Option<&ResumeState>, hash: bool) -> Pass {
    let mut pass = Pass {
        judged: output.is_some(),
        hashed: hash,
        over_rate: OverRate::new(job.limits.tokens_per_minute),
        ..Pass::default()
    };
    let scan = &mut pass.scan;
    let planner = match hash {
        true => Planner::new(job),
        false => Planner::new(job).without_bodies(),
    };
    let rows = match input::open(file, job.input.format) {
        Ok(rows) => rows,
        Err(e) => {
            scan.problem(e);
            return pass;
        }
    };
    let limit = job.row_limit.unwrap_or(u64::MAX);
    let keys = &mut pass.requests;
    keys.expect(estimate_lines(&file.path).saturating_mul(planner.requests_per_row() as usize));
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
                return pass;
            }
        }
        let requests = match planner.plan(row, &file.display) {
            Ok(requests) => requests,
            Err(problems) => {
                for p in problems {
                    // A set without a model, or with a schema that is no
                    // schema, fails every row alike: said once, below.
                    if p.field.as_deref() == Some("model") {
                        pass.no_model.entry(p.message).or_insert((line, 0)).1 += 1;
                    } else if let Some(field) = p
                        .field
                        .as_deref()
                        .filter(|f| f.starts_with("extra.response_format"))
                    {
                        let message = format!("{field} {}", p.message);
                        pass.no_model.entry(message).or_insert((line, 0)).1 += 1;
                    } else {
                        scan.problem(p);
                    }
                }
                continue;
            }
        };
        // Every request of a row has the row's id, so one shard.
        let mine = requests.first().is_none_or(|req| job.shard.has(&req.id));
        scan.shard_rows += u64::from(mine);
        for req in requests {
            let id = KeyId::of(&req.key);
            if !mine {
                keys.push((id, OTHER_SHARD));
                continue;
            }
            // Looked up first: no string allocated per request.
            if !scan.models.contains(&req.model) {
                scan.models.insert(req.model.clone());
            }
            let sha = sha_prefix(&req.sha256).unwrap_or(NO_SHA);
            let send = match output {
                Some(resume) => {
                    let latest = resume.latest.get(&ShortId::from(id)).copied();
                    let send = latest.and_then(|l| l.prior_of(sha)) != Some(true);
                    scan.estimate.add(&req, send);
                    send
                }
                // Judged later: every request is checked as one to send.
                None => true,
            };
            if send && pass.over_rate.over(&req, &file.display, line) {
                keys.push((id, OVER_RATE));
                continue;
            }
            keys.push((id, sha));
        }
    }
    pass
}

/// Judges every request of `pass` against the output's table in `resume`
/// (then lets that table go), builds the job's table of keys, and names
/// every problem of the pass.
pub fn join(pass: Pass, job: &Job, file: &InputFile, resume: &mut ResumeState) -> Scan {
    let Pass {
        mut scan,
        requests,
        no_model,
        over_rate,
        judged,
        hashed: _,
    } = pass;
    let mut send = Bits::default();
    let (mut resumed, mut in_file) = (0u64, 0u64);
    let mut others = Vec::new();
    // In place: each request's 24 bytes become its key's 24 bytes.
    let keys = requests.filter_map(|order, (id, sha)| {
        if sha == OVER_RATE {
            send.push(false);
            return None;
        }
        if sha == OTHER_SHARD {
            send.push(false);
            others.push(id);
            return None;
        }
        let latest = resume.latest.get(&ShortId::from(id)).copied();
        let prior = latest.and_then(|l| l.prior_of(sha));
        send.push(prior != Some(true));
        resumed += u64::from(prior == Some(true));
        in_file += u64::from(latest.is_some());
        Some((
            id,
            Seen {
                order: u32::try_from(order).unwrap_or(u32::MAX),
                ok: None,
                prior,
                in_file: latest.is_some(),
            },
        ))
    });
    resume.release_keys();
    (scan.resumed, scan.in_file, scan.send) = (resumed, in_file, send);
    // Duplicates are found once every key is in: the first request of a key
    // keeps it (sorted in place, requests in input order within a key).
    let (table, duplicates) =
        KeyTable::build(keys, Keep::First, Some(|a, b| a.order.cmp(&b.order)));
    scan.keys = table;
    // A key's rows all have one id, so one shard: the other shards' keys
    // are checked among themselves, and every shard names every duplicate.
    let mut duplicates: Vec<KeyId> = duplicates.iter().map(|(id, _)| *id).collect();
    others.sort_unstable();
    duplicates.extend(others.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]));
    drop(others);
    if !duplicates.is_empty() {
        name_duplicates(&mut scan, job, file, duplicates);
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
    // Judged later, the pass checked every request as one to send; its
    // caller makes it again when one was over (`Pass::needs_output`).
    if judged {
        for problem in over_rate.problems(&file.display) {
            scan.problem(problem);
        }
    }
    scan
}

/// One problem per row whose key an earlier row has, in input order: the
/// input is read again for the keys themselves and their lines (only on
/// this error path: the table holds fingerprints, not keys).
fn name_duplicates(scan: &mut Scan, job: &Job, file: &InputFile, mut ids: Vec<KeyId>) {
    ids.sort_unstable();
    ids.dedup();
    // The line of each duplicated key's first row, once met.
    let mut first: KeyMap<u64> = KeyMap::default();
    let planner = Planner::new(job);
    let Ok(rows) = input::open(file, job.input.format) else {
        return;
    };
    let limit = usize::try_from(job.row_limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    for row in rows.take(limit).flatten() {
        let line = row.line;
        let Ok(requests) = planner.plan(row, &file.display) else {
            continue;
        };
        for req in requests {
            let id = KeyId::of(&req.key);
            if ids.binary_search(&id).is_err() {
                continue;
            }
            let Some(first) = first.get(&id).copied() else {
                first.insert(id, line);
                continue;
            };
            let e = InputError::new(
                file.display.clone(),
                Some(line),
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
        .chain(&job.input.images)
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
mod tests;
