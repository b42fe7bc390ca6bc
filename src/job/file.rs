//! The TOML job file: read, parse and walk every section into [`Settings`],
//! parameter layers and prices, collecting every problem on the way.

use std::collections::HashSet;
use std::path::Path;

use super::params::{layer_from_map, UnknownKeys};
use super::settings::{self, report, Settings, MAX_ATTEMPTS, MAX_CONCURRENCY};
use super::toml_walk::{describe, line_col, table_to_json, Problems, Section};
use super::{ParamLayer, ParamSet, Price, Pricing};
use crate::template::Template;

const TOP_KEYS: &[&str] = &[
    "name", "endpoint", "input", "output", "limits", "retry", "defaults", "params", "pricing",
];
const ENDPOINT_KEYS: &[&str] = &[
    "url",
    "api_key_env",
    "timeout_secs",
    "headers",
    "max_reply_bytes",
    "max_attempt_secs",
];
const INPUT_KEYS: &[&str] = &["path", "format", "id", "system", "system_mode", "template"];
const OUTPUT_KEYS: &[&str] = &["path", "summary"];
const LIMITS_KEYS: &[&str] = &[
    "concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "max_cost_usd",
];
const RETRY_KEYS: &[&str] = &["max_attempts", "initial_backoff_ms", "max_backoff_ms"];
const PRICE_KEYS: &[&str] = &["input", "output"];

/// What the job file says, each value checked where it is written.
#[derive(Debug, Default)]
pub(crate) struct FileJob {
    pub settings: Settings,
    pub defaults: ParamLayer,
    /// Empty when the file has no `[[params]]`.
    pub param_sets: Vec<ParamSet>,
    pub pricing: Pricing,
    /// False when a parameter or price had a problem: the layers above are
    /// then incomplete, and a budget check over them would report noise.
    pub params_ok: bool,
}

/// Reads and walks the job file. `None` when it cannot be read or parsed at
/// all (that one problem is pushed); otherwise every problem in it is pushed.
pub(crate) fn read(path: &Path, cwd: &Path, problems: &mut Problems) -> Option<FileJob> {
    let label = path.display().to_string();
    let full = cwd.join(path);
    let text = match std::fs::read_to_string(&full) {
        Ok(text) => text,
        Err(e) => {
            problems.push(
                label,
                format!("cannot read the job file: {e}; check the path (it is relative to the working directory)"),
            );
            return None;
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            let place = match e.span() {
                Some(span) => {
                    let (line, col) = line_col(&text, span.start);
                    format!("{label}:{line}:{col}")
                }
                None => label,
            };
            problems.push(
                place,
                format!("TOML syntax error: {}", e.message().trim_end()),
            );
            return None;
        }
    };
    let base = full.parent().unwrap_or(cwd);
    let top = Section {
        file: &label,
        name: String::new(),
        table: &table,
    };
    top.reject_unknown(TOP_KEYS, problems);
    let mut job = FileJob::default();
    let s = &mut job.settings;
    if let Some(name) = top.string("name", problems) {
        s.name = report(
            settings::check_name(&name).map(|_| name),
            top.place("name"),
            problems,
        );
    }
    if let Some(t) = sub(&top, "endpoint", ENDPOINT_KEYS, problems) {
        endpoint(&t, s, problems);
    }
    if let Some(t) = sub(&top, "input", INPUT_KEYS, problems) {
        input(&t, base, s, problems);
    }
    if let Some(t) = sub(&top, "output", OUTPUT_KEYS, problems) {
        for (key, slot) in [("path", &mut s.output), ("summary", &mut s.summary)] {
            if let Some(text) = t.string(key, problems) {
                *slot = report(settings::path_spec(&text, base), t.place(key), problems);
            }
        }
    }
    if let Some(t) = sub(&top, "limits", LIMITS_KEYS, problems) {
        let max = MAX_CONCURRENCY as i64;
        s.concurrency = t.whole("concurrency", 1, max, problems).map(|n| n as usize);
        s.requests_per_minute = t
            .whole("requests_per_minute", 0, u32::MAX.into(), problems)
            .map(|n| n as u32);
        s.tokens_per_minute = t
            .whole("tokens_per_minute", 0, i64::MAX, problems)
            .map(|n| n as u64);
        if let Some(usd) = t.number("max_cost_usd", problems) {
            s.max_cost_usd = report(
                settings::check_max_cost(usd),
                t.place("max_cost_usd"),
                problems,
            );
        }
    }
    if let Some(t) = sub(&top, "retry", RETRY_KEYS, problems) {
        s.max_attempts = t
            .whole("max_attempts", 1, MAX_ATTEMPTS.into(), problems)
            .map(|n| n as u32);
        s.initial_backoff_ms = t
            .whole("initial_backoff_ms", 0, i64::MAX, problems)
            .map(|n| n as u64);
        s.max_backoff_ms = t
            .whole("max_backoff_ms", 0, i64::MAX, problems)
            .map(|n| n as u64);
        let initial = s
            .initial_backoff_ms
            .unwrap_or(settings::DEFAULT_INITIAL_BACKOFF_MS);
        let max = s.max_backoff_ms.unwrap_or(settings::DEFAULT_MAX_BACKOFF_MS);
        if max < initial {
            let key = if s.max_backoff_ms.is_some() {
                "max_backoff_ms"
            } else {
                "initial_backoff_ms"
            };
            problems.push(
                t.place(key),
                format!("max_backoff_ms ({max}) must be at least initial_backoff_ms ({initial})"),
            );
        }
    }
    let before = problems.0.len();
    if let Some(t) = top.table("defaults", problems) {
        let section = Section {
            file: &label,
            name: "[defaults]".into(),
            table: t,
        };
        job.defaults = layer(&section, t, problems);
    }
    if let Some(value) = top.get("params") {
        job.param_sets = param_sets(&label, value, problems);
    }
    if let Some(t) = top.table("pricing", problems) {
        job.pricing = pricing(&label, t, problems);
    }
    job.params_ok = problems.0.len() == before;
    Some(job)
}

/// A section that must be a table of known keys.
fn sub<'a>(
    top: &Section<'a>,
    key: &str,
    allowed: &[&str],
    problems: &mut Problems,
) -> Option<Section<'a>> {
    let table = top.table(key, problems)?;
    let section = Section {
        file: top.file,
        name: format!("[{key}]"),
        table,
    };
    section.reject_unknown(allowed, problems);
    Some(section)
}

fn endpoint(t: &Section, s: &mut Settings, problems: &mut Problems) {
    if let Some(url) = t.string("url", problems) {
        s.url = report(
            settings::check_url(&url).map(|_| url),
            t.place("url"),
            problems,
        );
    }
    if let Some(env) = t.string("api_key_env", problems) {
        s.api_key_env = report(
            settings::check_key_env(&env).map(|_| env),
            t.place("api_key_env"),
            problems,
        );
    }
    if let Some(secs) = t.number("timeout_secs", problems) {
        s.timeout = report(
            settings::check_timeout(secs),
            t.place("timeout_secs"),
            problems,
        );
    }
    // Whole numbers >= 1: a cap of 0 bytes or a 0 s deadline could never succeed.
    s.max_reply_bytes = t
        .whole("max_reply_bytes", 1, i64::MAX, problems)
        .map(|n| n.unsigned_abs());
    s.max_attempt_secs = t
        .whole("max_attempt_secs", 1, i64::MAX, problems)
        .map(|n| n.unsigned_abs());
    if let Some(headers) = t.table("headers", problems) {
        for (name, value) in headers {
            let place = format!("{} {name:?}", t.place("headers"));
            match value {
                toml::Value::String(v) => match settings::check_header(name, v) {
                    Ok(()) => s.headers.push((name.clone(), v.clone())),
                    Err(message) => problems.push(place, message),
                },
                other => problems.push(
                    place,
                    format!("a header value must be a string, got {}", describe(other)),
                ),
            }
        }
    }
}

fn input(t: &Section, base: &Path, s: &mut Settings, problems: &mut Problems) {
    if let Some(path) = t.string("path", problems) {
        s.input = report(
            settings::input_source(&path, base),
            t.place("path"),
            problems,
        );
    }
    if let Some(format) = t.string("format", problems) {
        s.format = report(settings::parse_format(&format), t.place("format"), problems);
    }
    for (key, slot) in [("id", &mut s.id), ("template", &mut s.template)] {
        if let Some(text) = t.string(key, problems) {
            *slot = report(
                Template::parse(&text).map_err(|e| e.to_string()),
                t.place(key),
                problems,
            );
        }
    }
    s.system = t.string("system", problems);
    if let Some(mode) = t.string("system_mode", problems) {
        s.system_mode = report(
            settings::parse_system_mode(&mode),
            t.place("system_mode"),
            problems,
        );
    }
}

/// Chat parameters of `[defaults]` or one `[[params]]` set (its `name` already removed).
fn layer(section: &Section, table: &toml::Table, problems: &mut Problems) -> ParamLayer {
    let map = table_to_json(table, &|key: &str| section.place(key), problems);
    match layer_from_map(&map, UnknownKeys::Reject) {
        Ok(layer) => layer,
        Err(found) => {
            for p in found {
                problems.push(section.place(&p.key), p.message);
            }
            ParamLayer::default()
        }
    }
}

fn param_sets(label: &str, value: &toml::Value, problems: &mut Problems) -> Vec<ParamSet> {
    let Some(items) = value.as_array() else {
        problems.push(
            format!("{label}: params"),
            match value {
                toml::Value::Table(_) => "must be a list of tables: write [[params]] (double brackets) above each parameter set".to_string(),
                other => format!("must be a list of [[params]] tables, got {}", describe(other)),
            },
        );
        return Vec::new();
    };
    let mut sets: Vec<ParamSet> = Vec::new();
    // Names seen so far: a set makes the duplicate check linear in the sets
    // (a scan of the earlier ones made 80,000 sets take seconds).
    let mut names: HashSet<String> = HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let number = i + 1;
        let Some(table) = item.as_table() else {
            problems.push(
                format!("{label}: [[params]] #{number}"),
                format!("must be a table, got {}", describe(item)),
            );
            continue;
        };
        let name = match table.get("name") {
            Some(toml::Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let section_name = match &name {
            Some(n) => format!("[[params]] #{number} ({n:?})"),
            None => format!("[[params]] #{number}"),
        };
        let section = Section {
            file: label,
            name: section_name,
            table,
        };
        let name_place = section.place("name");
        let name_ok = match (table.get("name"), &name) {
            (None, _) => Err("every parameter set needs a name, e.g. name = \"precise\"".to_string()),
            (Some(other), None) => Err(format!("must be a string, got {}", describe(other))),
            (Some(_), Some(n)) if n.trim().is_empty() => Err("must not be empty".to_string()),
            (Some(_), Some(n)) if n.contains('/') => Err(format!(
                "{n:?} contains '/', which separates the id from the set in request keys; pick another name"
            )),
            (Some(_), Some(n)) if !names.insert(n.clone()) => Err(format!(
                "{n:?} is the name of an earlier set; set names must be unique"
            )),
            (Some(_), Some(n)) => Ok(n.clone()),
        };
        let mut params = table.clone();
        params.remove("name");
        let layer = layer(&section, &params, problems);
        match name_ok {
            Ok(name) => sets.push(ParamSet { name, layer }),
            Err(message) => problems.push(name_place, message),
        }
    }
    sets
}

/// The largest `[pricing] image_tokens`: like a token cap, past 2^31 it can only be a typo.
const MAX_IMAGE_TOKENS: i64 = 1 << 31;

fn pricing(label: &str, table: &toml::Table, problems: &mut Problems) -> Pricing {
    let mut pricing = Pricing::default();
    let section = Section {
        file: label,
        name: "[pricing]".into(),
        table,
    };
    if let Some(n) = section.whole("image_tokens", 1, MAX_IMAGE_TOKENS, problems) {
        pricing.image_tokens = n as u64;
    }
    for (model, entry) in table {
        if model == "image_tokens" {
            continue;
        }
        let place = format!("{label}: [pricing] {model:?}");
        let Some(entry) = entry.as_table() else {
            problems.push(
                place,
                format!(
                    "must be {{ input = USD per 1M tokens, output = USD per 1M tokens }}, got {}",
                    describe(entry)
                ),
            );
            continue;
        };
        let section = Section {
            file: label,
            name: format!("[pricing] {model:?}"),
            table: entry,
        };
        section.reject_unknown(PRICE_KEYS, problems);
        let mut price = [None, None];
        for (slot, key) in price.iter_mut().zip(PRICE_KEYS) {
            match section.number(key, problems) {
                Some(usd) if usd >= 0.0 => *slot = Some(usd),
                Some(usd) => problems.push(
                    section.place(key),
                    format!("must be USD per 1M tokens >= 0, got {usd}"),
                ),
                None if entry.get(*key).is_none() => problems.push(
                    section.place(key),
                    "is missing: give the price in USD per 1M tokens (0 if free)",
                ),
                None => {}
            }
        }
        if let [Some(input), Some(output)] = price {
            pricing
                .models
                .insert(model.clone(), Price { input, output });
        }
    }
    pricing
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` sets named by a long shared prefix and their number, as TOML would give them.
    fn sets(n: usize) -> toml::Value {
        let prefix = "p".repeat(512);
        let items = (0..n)
            .map(|i| {
                let mut table = toml::Table::new();
                table.insert("name".into(), toml::Value::String(format!("{prefix}{i}")));
                toml::Value::Table(table)
            })
            .collect();
        toml::Value::Array(items)
    }

    #[test]
    fn checking_many_sets_is_linear() {
        // Comparing each name with every earlier one is 3.2 billion comparisons of
        // 512-byte names here (minutes); a set of names is 80,000 lookups (well
        // under a second, even in a debug build on a loaded machine).
        let value = sets(80_000);
        let mut problems = Problems::default();
        let started = std::time::Instant::now();
        let found = param_sets("job.toml", &value, &mut problems);
        let elapsed = started.elapsed();
        assert_eq!(found.len(), 80_000);
        assert!(problems.0.is_empty(), "{:?}", problems.0);
        assert!(
            elapsed < std::time::Duration::from_secs(20),
            "checking 80,000 sets took {elapsed:?}"
        );
    }

    #[test]
    fn a_repeated_set_name_is_named_once_per_repeat() {
        let mut items = sets(3).as_array().cloned().unwrap_or_default();
        items.push(items[1].clone());
        items.push(items[1].clone());
        let mut problems = Problems::default();
        let found = param_sets("job.toml", &toml::Value::Array(items), &mut problems);
        assert_eq!(found.len(), 3);
        assert_eq!(problems.0.len(), 2, "{:?}", problems.0);
        assert!(
            problems.0[0].to_string().contains("[[params]] #4"),
            "{}",
            problems.0[0]
        );
        assert!(
            problems.0[0].to_string().contains("must be unique"),
            "{}",
            problems.0[0]
        );
    }
}
