//! The one pass over output files that a report is: every line parsed
//! light ([`UsageLine`]), the same API call seen twice counted once, each
//! line added to its group, the totals and the charts' series.
//!
//! Memory is bounded whatever the files' size: per group a few counters and
//! two HDR histograms; per counted call one 128-bit fingerprint, for dedupe.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::path::{Path, PathBuf};

use super::figures::{Acc, Priced};
use super::line::{instant, UsageLine};
use super::model::{Bucket, Charts, DayModel, Field, FileFacts, Group, PricingCheck, Report};
use crate::job::Pricing;
use crate::keys::IdHasher;
use crate::printer;
use crate::report::ReportError;
use crate::scheduler::pricing::{add_usd, is_amount};
use crate::sink::record::significant;
use crate::sink::{Lines, Torn};

/// The report over `paths` (files, in order), grouped by `by`, with lines
/// that have no provider cost priced by `pricing` where it has the model.
pub fn fold(
    paths: &[PathBuf],
    by: &[Field],
    pricing: Option<&Pricing>,
) -> Result<Report, ReportError> {
    let mut fold = Fold::new(by, pricing);
    for path in paths {
        fold.read(path)?;
    }
    if fold.counted == 0 && fold.duplicates == 0 {
        let names: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ReportError::Empty(names.join(", ")));
    }
    Ok(fold.finish())
}

/// UTF-8's byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

struct Fold<'p> {
    by: Vec<Field>,
    pricing: Option<&'p Pricing>,
    /// A group's values, encoded (see `group_key`), to its place in `groups`.
    index: HashMap<String, usize>,
    groups: Vec<(Vec<Option<String>>, Acc)>,
    totals: Acc,
    /// Fingerprints of the calls counted so far.
    seen: HashSet<u128, BuildHasherDefault<IdHasher>>,
    seeds: (RandomState, RandomState),
    files: Vec<FileFacts>,
    check: PricingCheck,
    charts: Charts,
    counted: u64,
    duplicates: u64,
    /// Reused for every line's group key.
    key: String,
    /// With `--pricing`: the models it has no price for, and how many `ok`
    /// lines of each it left unpriced (a typo in a model name is otherwise
    /// a silent no-op).
    unpriced_models: BTreeMap<String, u64>,
}

impl<'p> Fold<'p> {
    fn new(by: &[Field], pricing: Option<&'p Pricing>) -> Fold<'p> {
        Fold {
            by: by.to_vec(),
            pricing,
            index: HashMap::new(),
            groups: Vec::new(),
            totals: Acc::default(),
            seen: HashSet::default(),
            seeds: (RandomState::new(), RandomState::new()),
            files: Vec::new(),
            check: PricingCheck {
                requests: 0,
                provider_usd: 0.0,
                pricing_usd: 0.0,
            },
            charts: Charts::default(),
            counted: 0,
            duplicates: 0,
            key: String::new(),
            unpriced_models: BTreeMap::new(),
        }
    }

    fn read(&mut self, path: &Path) -> Result<(), ReportError> {
        let io = |error| ReportError::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut lines = Lines::new(file, path, Torn::Yield);
        let name = path.display().to_string();
        let mut facts = FileFacts {
            path: name.clone(),
            lines: 0,
            duplicates: 0,
            span_s: 0.0,
        };
        let (mut first, mut last): (Option<i64>, Option<i64>) = (None, None);
        while let Some(line) = lines.next_line().map_err(io)? {
            // A file saved by a Windows editor starts with a byte order mark.
            let text = match line.text.strip_prefix(BOM) {
                Some(rest) if line.number == 1 => rest,
                _ => line.text,
            };
            let parsed =
                serde_json::from_slice::<UsageLine>(text).map_err(|e| line.bad(e.to_string()));
            let parsed: UsageLine = match parsed {
                Ok(parsed) => parsed,
                Err(bad) if line.torn => {
                    printer::notice(format_args!(
                        "{}:{}: left out an incomplete last line (a run still writing, or one stopped mid-write)",
                        path.display(),
                        bad.line
                    ));
                    continue;
                }
                Err(bad) => return Err(bad.into()),
            };
            if !self.observe(&name, &parsed) {
                facts.duplicates += 1;
                continue;
            }
            facts.lines += 1;
            if let Some(t) = parsed.started_at.as_deref().and_then(instant) {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
            if let Some(t) = parsed.finished_at.as_deref().and_then(instant) {
                last = Some(last.map_or(t, |l| l.max(t)));
            }
        }
        if let (Some(first), Some(last)) = (first, last) {
            facts.span_s = (last - first).max(0) as f64 / 1e6;
        }
        self.files.push(facts);
        Ok(())
    }

    /// Adds one line; false when it is a call counted before.
    fn observe(&mut self, file: &str, line: &UsageLine<'_>) -> bool {
        if let Some(id) = self.call_id(line) {
            if !self.seen.insert(id) {
                self.duplicates += 1;
                return false;
            }
        }
        self.counted += 1;
        let priced = self.price(line);
        self.totals.add(line, priced);
        // Parsed once: both the `day` grouping and the daily chart use it.
        let day = line.day();
        if !self.by.is_empty() {
            self.group(file, line, day.as_deref()).add(line, priced);
        }
        self.chart(line, day, priced);
        true
    }

    /// The same call is the same key with the same response id, or the same
    /// start when there is no response id; a line with neither is its own.
    fn call_id(&self, line: &UsageLine<'_>) -> Option<u128> {
        let (tag, id) = match (nonempty(&line.response_id), nonempty(&line.started_at)) {
            (Some(id), _) => (1u8, id),
            (None, Some(at)) => (2u8, at),
            (None, None) => return None,
        };
        let hash = |seed: &RandomState| {
            let mut h = seed.build_hasher();
            h.write(line.key.as_bytes());
            // 0xff is never part of UTF-8: key and id cannot run into each other.
            h.write_u8(0xff);
            h.write_u8(tag);
            h.write(id.as_bytes());
            h.finish()
        };
        Some((u128::from(hash(&self.seeds.0)) << 64) | u128::from(hash(&self.seeds.1)))
    }

    /// The provider's figure first; else `--pricing` where it knows the
    /// model and the usage is known (the user overrides the job's prices);
    /// else the cost the run priced; else unpriced.
    fn price(&mut self, line: &UsageLine<'_>) -> Priced {
        let recorded = line.cost_usd.filter(|c| is_amount(*c));
        let flag = (self.pricing)
            .zip(line.usage.as_ref())
            .and_then(|(p, u)| p.cost(&line.model, Some(&u.as_usage())));
        match (line.cost_source.as_deref(), recorded, flag) {
            // Answered from the cache: no call was made, nothing to price.
            _ if line.cached == Some(true) => Priced::Provider(0.0),
            (Some("provider"), Some(provider), flag) => {
                if let Some(priced) = flag {
                    self.check.requests += 1;
                    self.check.provider_usd = add_usd(self.check.provider_usd, provider);
                    self.check.pricing_usd = add_usd(self.check.pricing_usd, priced);
                }
                Priced::Provider(provider)
            }
            (_, _, Some(priced)) => Priced::Pricing(priced),
            (_, Some(cost), None) => Priced::Pricing(cost),
            (_, None, None) => {
                if line.ok() && self.pricing.is_some_and(|p| p.price(&line.model).is_none()) {
                    bump(&mut self.unpriced_models, &line.model);
                }
                Priced::Unpriced
            }
        }
    }

    /// The group of `line`, made when it is the first of its values.
    fn group(&mut self, file: &str, line: &UsageLine<'_>, day: Option<&str>) -> &mut Acc {
        self.key.clear();
        for field in &self.by {
            match value(*field, file, line, day) {
                // Length-prefixed: no two lists of values encode alike.
                Some(v) => {
                    // Into the reused buffer: no allocation per line.
                    let _ = write!(self.key, "{}:{v}", v.len());
                }
                None => self.key.push('-'),
            }
        }
        let at = match self.index.get(self.key.as_str()) {
            Some(&at) => at,
            None => {
                let values = (self.by.iter())
                    .map(|f| value(*f, file, line, day).map(str::to_string))
                    .collect();
                self.groups.push((values, Acc::default()));
                self.index.insert(self.key.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        &mut self.groups[at].1
    }

    fn chart(&mut self, line: &UsageLine<'_>, day: Option<Cow<'_, str>>, priced: Priced) {
        let c = &mut self.charts;
        let status = if line.ok() { "ok" } else { "error" };
        bump(&mut c.by_status, status);
        if !line.ok() {
            let kind = line.error.as_ref().map_or("unknown", |e| &e.kind);
            bump(&mut c.by_error_kind, kind);
        }
        let Some(day) = day else {
            return;
        };
        let models = match c.days.get_mut(day.as_ref()) {
            Some(models) => models,
            None => c.days.entry(day.into_owned()).or_default(),
        };
        let cell = match models.get_mut(line.model.as_ref()) {
            Some(cell) => cell,
            None => models.entry(line.model.to_string()).or_default(),
        };
        add_to_day(cell, line, priced);
    }

    fn finish(mut self) -> Report {
        if !self.unpriced_models.is_empty() {
            let mut named: Vec<String> = (self.unpriced_models.iter())
                .take(5)
                .map(|(model, n)| format!("{model} ({})", printer::count(*n, "request")))
                .collect();
            if self.unpriced_models.len() > 5 {
                named.push(format!("{} more", self.unpriced_models.len() - 5));
            }
            printer::warning(format_args!(
                "--pricing has no price for {}; they stay unpriced (a model's name must match the outputs' exactly)",
                named.join(", ")
            ));
        }
        self.groups.sort_by(|a, b| compare(&a.0, &b.0));
        let groups = (self.groups.iter())
            .map(|(values, acc)| Group {
                values: values.clone(),
                figures: acc.figures(),
            })
            .collect();
        let span: f64 = self.files.iter().map(|f| f.span_s).sum();
        let mut charts = self.charts;
        for cell in charts.days.values_mut().flat_map(|m| m.values_mut()) {
            cell.cost_usd = significant(cell.cost_usd);
        }
        let mut check = self.check;
        check.provider_usd = significant(check.provider_usd);
        check.pricing_usd = significant(check.pricing_usd);
        charts.latency = latency_buckets(&self.totals.latency.values());
        Report {
            by: self.by,
            groups,
            totals: self.totals.figures(),
            span_s: (span * 1000.0).round() / 1000.0,
            files: self.files,
            pricing_check: (check.requests > 0).then_some(check),
            charts,
        }
    }
}

fn nonempty<'s>(s: &'s Option<Cow<'_, str>>) -> Option<&'s str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// A line's value for `field`.
fn value<'l>(
    field: Field,
    file: &'l str,
    line: &'l UsageLine<'_>,
    day: Option<&'l str>,
) -> Option<&'l str> {
    let nonempty = |s: &'l str| (!s.is_empty()).then_some(s);
    match field {
        Field::Model => nonempty(&line.model),
        Field::ParamSet => nonempty(&line.param_set),
        Field::Job => nonempty(&line.job),
        Field::Day => day,
        Field::Status => Some(if line.ok() { "ok" } else { "error" }),
        Field::FinishReason => line.finish_reason.as_deref(),
        Field::ErrorKind => line.error.as_ref().map(|e| e.kind.as_ref()),
        Field::File => Some(file),
        Field::Endpoint => line.endpoint.as_deref().and_then(nonempty),
    }
}

/// Values in order, a missing value after every present one.
fn compare(a: &[Option<String>], b: &[Option<String>]) -> std::cmp::Ordering {
    let key = |v: &Option<String>| (v.is_none(), v.clone());
    a.iter().map(key).cmp(b.iter().map(key))
}

fn bump(map: &mut BTreeMap<String, u64>, name: &str) {
    match map.get_mut(name) {
        Some(n) => *n += 1,
        None => drop(map.insert(name.to_string(), 1)),
    }
}

fn add_to_day(cell: &mut DayModel, line: &UsageLine<'_>, priced: Priced) {
    cell.requests += 1;
    if let Some(u) = &line.usage {
        cell.tokens = (cell.tokens)
            .saturating_add(u.prompt_tokens)
            .saturating_add(u.completion_tokens);
    }
    match priced {
        Priced::Provider(usd) | Priced::Pricing(usd) => cell.cost_usd = add_usd(cell.cost_usd, usd),
        Priced::Unpriced if line.ok() => cell.unpriced_requests += 1,
        Priced::Unpriced => {}
    }
}

/// Ten steps a decade (the R10 series: edges people read at a glance).
const R10: [f64; 10] = [1.0, 1.25, 1.6, 2.0, 2.5, 3.2, 4.0, 5.0, 6.3, 8.0];
/// Past four decades, five a decade keeps the chart under 40 bars.
const R5: [f64; 5] = [1.0, 1.6, 2.5, 4.0, 6.3];

/// The latency histogram: log-spaced buckets over the range of `values`
/// (ms, ascending, with counts), each holding the values in `[lo, hi)`.
pub fn latency_buckets(values: &[(f64, u64)]) -> Vec<Bucket> {
    let (Some(&(min, _)), Some(&(max, _))) = (values.first(), values.last()) else {
        return Vec::new();
    };
    let floor = min.max(0.1);
    let decades = (max.max(floor) / floor).log10();
    let steps: &[f64] = if decades <= 4.0 { &R10 } else { &R5 };
    let mut edges = Vec::new();
    let mut decade = 10f64.powi(floor.log10().floor() as i32);
    'outer: loop {
        for step in steps {
            let edge = decade * step;
            if edge > max {
                edges.push(edge);
                break 'outer;
            }
            edges.push(edge);
        }
        decade *= 10.0;
    }
    // Keep the edge just below the smallest value, drop the ones before it.
    let start = edges.partition_point(|e| *e <= floor).saturating_sub(1);
    let mut edges = edges.split_off(start);
    if min < edges[0] {
        edges[0] = 0.0;
    }
    let mut buckets: Vec<Bucket> = (edges.windows(2))
        .map(|w| Bucket {
            lo_ms: w[0],
            hi_ms: w[1],
            count: 0,
        })
        .collect();
    for &(ms, count) in values {
        let at = buckets.partition_point(|b| b.hi_ms <= ms.clamp(min, max));
        let last = buckets.len() - 1;
        if let Some(b) = buckets.get_mut(at.min(last)) {
            b.count += count;
        }
    }
    buckets
}

#[cfg(test)]
mod tests;
