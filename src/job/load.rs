//! Loading a job: the job file and the flags merged into one validated [`Job`].
//!
//! Every problem is collected and reported together, each with its place (file
//! and key, or the flag) and what to do, because a user fixing a job one error
//! per run would give up. Only an unreadable or unparseable job file stops
//! early: nothing in it can be trusted then.
//!
//! Sources, each checked where it is written through the key table of
//! [`super::settings`]: [`super::file`] (the TOML file) first, then
//! [`super::flags`] (the command line) over it. This file fills the defaults
//! that depend on other settings and checks what spans both sources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::placeholder::Values;
use super::problem::{JobError, Problems};
use super::settings::{self, Settings};
use super::shard::{self, Shard};
use super::{
    file, flags, CacheConfig, Format, InputConfig, InputSource, Job, OutputConfig, ParamLayer,
    ParamSet, Pricing,
};
use crate::cli::JobArgs;

/// The set used when the job file has no `[[params]]`.
const DEFAULT_SET: &str = "default";
const FALLBACK_NAME: &str = "promptbatch";

impl Job {
    /// Reads the job file (if any), applies the flags over it and validates the result.
    ///
    /// `cwd`: where flag paths are relative to; `started`: the run's start,
    /// for `{date}` and `{datetime}`. The API key is not read here.
    pub fn load(args: &JobArgs, cwd: &Path, started: DateTime<Utc>) -> Result<Job, JobError> {
        let mut problems = Problems::default();
        let mut s = Settings::default();
        let mut file = match &args.job {
            Some(path) => match file::read(path, cwd, &mut s, &mut problems) {
                Some(file) => file,
                None => {
                    return Err(JobError {
                        problems: problems.0,
                    })
                }
            },
            None => file::FileJob {
                params_ok: true,
                ..Default::default()
            },
        };
        let (overrides, flags_ok) = flags::read(args, cwd, &mut s, &mut problems);
        // Where a problem that spans sources is reported: the job file's key
        // (where it is written, else its section) when there is a file, else the flag.
        let places = file.places.take();
        let at = |key: &str, flag: &str| match &places {
            Some(places) => places.place(key),
            None => flag.to_string(),
        };
        check_backoff(&s, &at, &mut problems);

        let name = job_name(&s, args, &mut problems);
        let input = input_config(&s, &at, &mut problems);
        let env = |name: &str| std::env::var(name).ok();
        let shard_from = shard::source(args.shard.as_deref(), args.shards, &env);
        let shard = shard::resolve(args.shard.as_deref(), args.shards, &env).unwrap_or_else(|e| {
            problems.push(e.place, e.message);
            Shard::default()
        });
        divide_limits(&mut s, shard, &at, &mut problems);
        let shard_text = shard.placeholder();
        let values = Values {
            name: Some(&name),
            shard: Some(&shard_text),
            at: started,
        };
        let output = output_config(&s, &values, cwd, input.as_ref(), &at, &mut problems);

        if args.limit == Some(0) {
            problems.push(
                "--limit",
                "must be at least 1 (the number of rows to use); leave it out to use every row",
            );
        }
        let param_sets = if file.param_sets.is_empty() {
            vec![ParamSet {
                name: DEFAULT_SET.into(),
                layer: ParamLayer::default(),
            }]
        } else {
            file.param_sets
        };
        if s.limits.max_cost_usd > 0.0 && file.params_ok && flags_ok {
            check_budget(
                &file.defaults,
                &param_sets,
                &overrides,
                &file.pricing,
                &at,
                &mut problems,
            );
        }
        let models = super::set_models(&file.defaults, &param_sets, &overrides);
        let endpoints = super::endpoints::resolve(
            std::mem::take(&mut file.endpoints),
            &s,
            args,
            shard.count,
            &models,
            &mut problems,
            &at,
        );
        let (Some(input), Some(output), true) = (input, output, problems.0.is_empty()) else {
            return Err(JobError {
                problems: problems.0,
            });
        };
        Ok(Job {
            name,
            endpoint: endpoints.first().map_or(s.endpoint, |e| e.config.clone()),
            endpoints,
            input,
            output,
            limits: s.limits,
            retry: s.retry,
            defaults: file.defaults,
            param_sets,
            overrides,
            pricing: file.pricing,
            row_limit: args.limit,
            simulate: args.simulate,
            shard,
            shard_from,
            cache: s.cache_dir.map(|dir| CacheConfig {
                dir,
                max_mb: s.cache_max_mb,
            }),
        })
    }
}

/// Each shard's share of the per-run limits: requests and tokens per
/// minute and the budget divided by the number of shards (rounded down, so
/// the shards together never pass the figure written), unless `[limits]
/// per_shard = true` says the figures are each shard's already. A rate that
/// rounds down to nothing would mean no limit at all: refused instead.
fn divide_limits(
    s: &mut Settings,
    shard: Shard,
    at: &dyn Fn(&str, &str) -> String,
    problems: &mut Problems,
) {
    let n = shard.count;
    if n <= 1 || s.limits.per_shard {
        return;
    }
    let l = &mut s.limits;
    let rpm = u64::from(l.requests_per_minute);
    if rpm > 0 && rpm < n {
        problems.push(
            at("limits.requests_per_minute", "--rpm"),
            format!("{rpm} requests per minute shared by {n} shards is less than one a minute each; raise it, use fewer shards, or set [limits] per_shard = true if each shard has its own limit"),
        );
    }
    if l.tokens_per_minute > 0 && l.tokens_per_minute < n {
        problems.push(
            at("limits.tokens_per_minute", "--tpm"),
            format!("{} tokens per minute shared by {n} shards is less than one a minute each; raise it or set [limits] per_shard = true", l.tokens_per_minute),
        );
    }
    l.requests_per_minute = u32::try_from(rpm / n).unwrap_or(u32::MAX);
    l.tokens_per_minute /= n;
    l.max_cost_usd /= n as f64;
}

/// `max_backoff_ms` below `initial_backoff_ms` (given or default) could never back off.
fn check_backoff(s: &Settings, at: &dyn Fn(&str, &str) -> String, problems: &mut Problems) {
    let (initial, max) = (
        s.retry.initial_backoff.as_millis(),
        s.retry.max_backoff.as_millis(),
    );
    if max < initial {
        let key = match s.given.contains(&"retry.max_backoff_ms") {
            true => "retry.max_backoff_ms",
            false => "retry.initial_backoff_ms",
        };
        problems.push(
            at(key, "--max-attempts"),
            format!("max_backoff_ms ({max}) must be at least initial_backoff_ms ({initial})"),
        );
    }
}

/// `--name`, else `name`, else the job file's stem, else the input file's stem, else `promptbatch`.
fn job_name(s: &Settings, args: &JobArgs, problems: &mut Problems) -> String {
    if let Some(name) = &s.name {
        return name.clone();
    }
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned());
    let derived = args
        .job
        .as_deref()
        .and_then(stem)
        .or_else(|| match &s.input {
            Some(InputSource::File(p)) => stem(p),
            _ => None,
        })
        .unwrap_or_else(|| FALLBACK_NAME.into());
    if let Err(message) = settings::check_name(&derived) {
        problems.push(
            "name",
            format!(
                "the name taken from a file name {message}; set one with --name or name = \"...\""
            ),
        );
    }
    derived
}

fn input_config(
    s: &Settings,
    at: &dyn Fn(&str, &str) -> String,
    problems: &mut Problems,
) -> Option<InputConfig> {
    let Some(source) = s.input.clone() else {
        problems.push(
            at("input.path", "--input"),
            "no input: set [input] path in the job file or pass --input PATH",
        );
        return None;
    };
    let format = match (&s.format, &source) {
        (Some(f), _) => *f,
        (None, InputSource::Stdin) => Format::Jsonl,
        // Given but bad: that problem is reported already.
        (None, _) if s.given.contains(&"input.format") => return None,
        (None, InputSource::File(path)) => match format_from_extension(path) {
            Some(Format::Jsonl) if batch_lines(path) => Format::OpenaiBatch,
            Some(f) => f,
            None => {
                problems.push(
                    at("input.format", "--format"),
                    format!(
                        "cannot tell the format of {} from its extension; set [input] format = \"jsonl\" or \"csv\", or pass --format jsonl|csv",
                        path.display()
                    ),
                );
                return None;
            }
        },
    };
    if format == Format::Csv && s.template.is_none() && !s.given.contains(&"input.template") {
        // Caught once here rather than on every row.
        problems.push(
            at("input.template", "--template"),
            "CSV rows are sent through a template over their columns, and the job has none: set [input] template or pass --template (e.g. --template 'Answer: {{question}}')",
        );
        return None;
    }
    Some(InputConfig {
        source,
        format,
        id: s.id.clone(),
        // `--system ''` clears a system message the job file sets.
        system: s.system.clone().filter(|text| !text.is_empty()),
        system_mode: s.system_mode,
        template: s.template.clone(),
        images: s.images.clone(),
        max_image_bytes: s.max_image_bytes,
    })
}

fn output_config(
    s: &Settings,
    values: &Values,
    cwd: &Path,
    input: Option<&InputConfig>,
    at: &dyn Fn(&str, &str) -> String,
    problems: &mut Problems,
) -> Option<OutputConfig> {
    let input_path = match input.map(|i| &i.source) {
        Some(InputSource::File(input)) => Some(input),
        _ => None,
    };
    let name = values.name.unwrap_or(FALLBACK_NAME);
    // Checked when read; a failure here would be a placeholder the check let through.
    let mut expanded = |spec: &settings::PathSpec, key: &str, flag: &str| {
        spec.resolve(values).unwrap_or_else(|e| {
            problems.push(at(key, flag), e.to_string());
            spec.base.join(&spec.text)
        })
    };
    let path = match &s.output {
        Some(spec) => expanded(spec, "output.path", "--output"),
        None => {
            // `--input rows.jsonl` names the job "rows", and "rows.jsonl" is the
            // input itself: the default steps aside instead of refusing.
            let default = cwd.join(format!("{name}.jsonl"));
            match input_path {
                Some(input) if same_file(input, &default) => cwd.join(format!("{name}.out.jsonl")),
                _ => default,
            }
        }
    };
    let summary = match &s.summary {
        Some(spec) => expanded(spec, "output.summary", "--summary"),
        None => summary_for(&path),
    };
    let batch = s
        .batch_output
        .as_ref()
        .map(|spec| expanded(spec, "output.batch_output", "[output] batch_output"));
    let mut ok = true;
    // By identity, not spelling (`dir/../out.jsonl`, a linked folder): the
    // summary replaces its file at the end, which would be the output's lines
    // or the lock another run is waiting on.
    let mut lock = path.clone().into_os_string();
    lock.push(".lock");
    if same_file(&path, &summary) || same_file(Path::new(&lock), &summary) {
        problems.push(
            at("output.summary", "--summary"),
            format!(
                "the summary path {} is the output path or its lock file; pick another",
                summary.display()
            ),
        );
        ok = false;
    }
    if let Some(input) = input_path {
        if same_file(input, &path) || same_file(input, &summary) {
            problems.push(
                at("output.path", "--output"),
                format!(
                    "{} is both the input and an output, and writing it would destroy the input; pass --output PATH or set [output] path",
                    input.display()
                ),
            );
            ok = false;
        }
    }
    if let Some(batch) = &batch {
        // Replaced whole at the end of every run: it must not be a file the run keeps.
        let taken = [Some(&path), Some(&summary), input_path]
            .into_iter()
            .flatten()
            .any(|other| same_file(other, batch))
            || same_file(Path::new(&lock), batch);
        if taken {
            problems.push(
                at("output.batch_output", "[output] batch_output"),
                format!(
                    "the batch output path {} is the input, the output, its lock or the summary; pick another",
                    batch.display()
                ),
            );
            ok = false;
        }
    }
    ok.then_some(OutputConfig {
        path,
        summary,
        json: s.json,
        batch,
    })
}

/// Whether two paths name the same file: by identity (device and inode) when
/// both exist, so a hard link or a symlink to the input is caught; else
/// through `..` or links in their folders (the output need not exist yet).
fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    #[cfg(unix)]
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::MetadataExt;
        return (x.dev(), x.ino()) == (y.dev(), y.ino());
    }
    let real = |p: &Path| {
        let folder = std::fs::canonicalize(p.parent()?).ok()?;
        Some(folder.join(p.file_name()?))
    };
    matches!((real(a), real(b)), (Some(x), Some(y)) if x == y)
}

/// With a budget, every model the job names needs a price and every set a
/// token cap, or the worst case of a request cannot be bounded. Rows can still
/// change both; the planner checks them.
fn check_budget(
    defaults: &ParamLayer,
    sets: &[ParamSet],
    overrides: &ParamLayer,
    pricing: &Pricing,
    at: &dyn Fn(&str, &str) -> String,
    problems: &mut Problems,
) {
    let mut unpriced: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut uncapped = Vec::new();
    for set in sets {
        let merged = ParamLayer::merged([defaults, &set.layer, overrides]);
        if let Some(model) = merged.named.get("model").and_then(|m| m.as_str()) {
            if !pricing.models.contains_key(model) {
                unpriced
                    .entry(model.to_string())
                    .or_default()
                    .push(&set.name);
            }
        }
        let capped = ["max_tokens", "max_completion_tokens"]
            .iter()
            .any(|k| merged.named.contains_key(*k));
        if !capped {
            uncapped.push(format!("{:?}", set.name));
        }
    }
    for (model, sets) in unpriced {
        problems.push(
            at("pricing", "--max-cost"),
            format!(
                "with max_cost_usd set, model {model:?} (parameter set {}) needs a [pricing] entry: add {model:?} = {{ input = USD per 1M tokens, output = USD per 1M tokens }} to the job file, or drop the budget",
                sets.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    if !uncapped.is_empty() {
        problems.push(
            at("defaults", "--max-cost"),
            format!(
                "with max_cost_usd set, every request needs a token cap, and parameter set {} has none: set max_tokens (or max_completion_tokens) in [defaults], the set, or with --param max_tokens=N",
                uncapped.join(", ")
            ),
        );
    }
}

/// How the name of an output's default summary ends.
pub const SUMMARY_SUFFIX: &str = ".summary.json";

/// `x.jsonl` → `x.summary.json`; anything else gets `.summary.json` appended.
pub(crate) fn summary_for(output: &Path) -> PathBuf {
    let text = output.as_os_str().to_string_lossy();
    match text.strip_suffix(".jsonl") {
        Some(stem) if !stem.is_empty() && !stem.ends_with(['/', '\\']) => {
            PathBuf::from(format!("{stem}{SUMMARY_SUFFIX}"))
        }
        _ => PathBuf::from(format!("{text}{SUMMARY_SUFFIX}")),
    }
}

/// Whether the first non-blank line of a `.jsonl` file is an OpenAI Batch
/// request line (an object with `custom_id` and `body`). A file that cannot
/// be read, or whose first line is too long to look at, is plain JSONL (the
/// check pass then says what is wrong with it). Only a plain file is looked
/// at: reading a FIFO or `<(...)` here would take lines the run never sees
/// (or wait for a writer); such an input says `--format openai-batch`.
fn batch_lines(path: &Path) -> bool {
    use std::io::{BufRead, Read};
    /// Enough for any request line worth sniffing; a longer one is read as JSONL.
    const MOST: u64 = 16 * 1024 * 1024;
    // Only a plain file is looked at: reading a FIFO here would take the
    // rows the run then waits for (it is spooled once, later).
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut reader = std::io::BufReader::new(file).take(MOST);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(_) => break,
        }
    }
    let text = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&line);
    match serde_json::from_slice::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => {
            map.contains_key("custom_id") && map.contains_key("body")
        }
        _ => false,
    }
}

/// The format a file name implies: `.jsonl`/`.ndjson` or `.csv`, any case.
pub(crate) fn format_from_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "csv" => Some(Format::Csv),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
