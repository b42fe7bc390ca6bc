//! The TOML job file: parsed into toml's spanned document, every key checked
//! where it is written and every problem placed at its file:line:column.
//!
//! Scalar keys go through [`settings::KEYS`], the table the flags write
//! through too; `[defaults]` and `[[params]]` become parameter layers;
//! `[pricing]` becomes prices. Values are typed by serde (`toml::Value`
//! from the spanned document) and judged by our own checks, not by serde's
//! first error: a user fixing a job one error per run would give up.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use serde::de::{Deserialize, IntoDeserializer};
use serde_json::{Map, Number, Value};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::params::{is_chat_param, layer_from_map, UnknownKeys};
use super::problem::{describe, unknown_key, Lines, Problems};
use super::settings::{self, Settings, KEYS};
use super::{ParamLayer, ParamSet, Price, Pricing};

/// The sections of a job file; any other top-level key is a setting of `KEYS`.
const SECTIONS: &[&str] = &[
    "endpoint", "input", "output", "limits", "retry", "defaults", "params", "pricing",
];
const PRICE_KEYS: &[&str] = &["input", "output"];
/// The largest `[pricing] image_tokens`: like a token cap, past 2^31 it can only be a typo.
const MAX_IMAGE_TOKENS: i64 = 1 << 31;

/// What the job file says besides its settings (which went into [`Settings`]).
#[derive(Debug, Default)]
pub(crate) struct FileJob {
    pub defaults: ParamLayer,
    /// Empty when the file has no `[[params]]`.
    pub param_sets: Vec<ParamSet>,
    pub pricing: Pricing,
    /// False when a parameter or price had a problem: the layers above are
    /// then incomplete, and a budget check over them would report noise.
    pub params_ok: bool,
    /// Where each key is written; `None` when there is no job file.
    pub places: Option<Places>,
}

/// Where the keys of the job file are, for problems found after reading it.
#[derive(Debug, Default)]
pub(crate) struct Places {
    /// The job file as the user named it, e.g. `faq.toml`.
    label: String,
    /// Line and column of each key and section written (`limits.concurrency`, `input`).
    lines: HashMap<String, (usize, usize)>,
}

impl Places {
    /// `faq.toml:7:1: [input] path`: the key where it is written, else its
    /// section, else the top of the file (a problem about a missing key).
    pub fn place(&self, path: &str) -> String {
        let section = path.split('.').next().unwrap_or(path);
        let (line, col) = (self.lines.get(path))
            .or_else(|| self.lines.get(section))
            .copied()
            .unwrap_or((1, 1));
        format!("{}:{line}:{col}: {}", self.label, display(path))
    }
}

/// `limits.concurrency` → `[limits] concurrency`; `pricing` → `[pricing]`; `name` → `name`.
fn display(path: &str) -> String {
    match path.split_once('.') {
        Some((section, key)) => format!("[{section}] {key}"),
        None if SECTIONS.contains(&path) => format!("[{path}]"),
        None => path.to_string(),
    }
}

/// Reads and walks the job file, writing its settings into `s`. `None` when it
/// cannot be read or parsed at all (that one problem is pushed); otherwise
/// every problem in it is pushed.
pub(crate) fn read(
    path: &Path,
    cwd: &Path,
    s: &mut Settings,
    problems: &mut Problems,
) -> Option<FileJob> {
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
    let root = match DeTable::parse(&text) {
        Ok(root) => root,
        Err(e) => {
            let place = match e.span() {
                Some(span) => {
                    let (line, col) = Lines::new(&text).at(span.start);
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
    let mut walk = Walk {
        lines: Lines::new(&text),
        base: full.parent().unwrap_or(cwd),
        problems,
        places: Places {
            label,
            ..Places::default()
        },
        job: FileJob::default(),
    };
    let top: Vec<&str> = std::iter::once("name")
        .chain(SECTIONS.iter().copied())
        .collect();
    walk.job.params_ok = true;
    for (key, value) in root.get_ref() {
        let name: &str = key.get_ref();
        walk.mark(name, key.span());
        let before = walk.problems.0.len();
        match name {
            "defaults" => {
                if let Some(table) = walk.table("defaults", value) {
                    walk.job.defaults = walk.layer("[defaults]", table);
                }
            }
            "params" => walk.param_sets(value),
            "pricing" => {
                if let Some(table) = walk.table("pricing", value) {
                    walk.pricing(table);
                }
            }
            _ if SECTIONS.contains(&name) => {
                let Some(table) = walk.table(name, value) else {
                    continue;
                };
                let prefix = format!("{name}.");
                let keys: Vec<&str> = (KEYS.iter())
                    .filter_map(|k| k.path.strip_prefix(&prefix))
                    .collect();
                for (k, v) in table {
                    let path = format!("{prefix}{}", k.get_ref());
                    walk.setting(&path, k, v, &keys, s);
                }
                continue;
            }
            _ => {
                walk.setting(name, key, value, &top, s);
                continue;
            }
        }
        // A bad parameter or price leaves the layers incomplete.
        if walk.problems.0.len() != before {
            walk.job.params_ok = false;
        }
    }
    walk.job.places = Some(walk.places);
    Some(walk.job)
}

type Key<'t> = Spanned<std::borrow::Cow<'t, str>>;
type Node<'t> = Spanned<DeValue<'t>>;

/// One pass over the document: where problems go and where relative paths start.
struct Walk<'a> {
    lines: Lines<'a>,
    base: &'a Path,
    problems: &'a mut Problems,
    places: Places,
    job: FileJob,
}

impl Walk<'_> {
    fn mark(&mut self, path: &str, span: Range<usize>) {
        let at = self.lines.at(span.start);
        self.places.lines.insert(path.to_string(), at);
    }

    /// `faq.toml:12:5: what` for the text at `span`.
    fn at(&self, span: Range<usize>, what: &str) -> String {
        let (line, col) = self.lines.at(span.start);
        format!("{}:{line}:{col}: {what}", self.places.label)
    }

    /// The value as serde types it, or a problem where it is written.
    fn value(&mut self, node: &Node, what: &str) -> Option<toml::Value> {
        match toml::Value::deserialize(node.clone().into_deserializer()) {
            Ok(value) => Some(value),
            Err(e) => {
                let place = self.at(e.span().unwrap_or(node.span()), what);
                self.problems.push(place, e.message().to_string());
                None
            }
        }
    }

    /// `the string "x"`: what a value is, for a problem about its type.
    fn got(&mut self, node: &Node, what: &str) -> String {
        self.value(node, what)
            .map_or_else(String::new, |v| describe(&v))
    }

    /// A section that must be a table.
    fn table<'n, 't>(&mut self, name: &str, node: &'n Node<'t>) -> Option<&'n DeTable<'t>> {
        let table = node.get_ref().as_table();
        if table.is_none() {
            let message = format!("must be a table, got {}", self.got(node, name));
            let place = self.at(node.span(), name);
            self.problems.push(place, message);
        }
        table
    }

    /// One key of `KEYS` (`limits.concurrency`), or an unknown key among `known`.
    fn setting(&mut self, path: &str, key: &Key, node: &Node, known: &[&str], s: &mut Settings) {
        let what = display(path);
        let Some(entry) = settings::key(path) else {
            let place = self.at(key.span(), &what);
            self.problems.push(place, unknown_key(key.get_ref(), known));
            return;
        };
        self.mark(path, node.span());
        // Headers are checked one by one, each problem at its own header.
        if let (DeValue::Table(headers), "endpoint.headers") = (node.get_ref(), path) {
            for (name, value) in headers {
                let what = format!("{what} {:?}", name.get_ref());
                let Some(value) = self.value(value, &what) else {
                    continue;
                };
                let one = toml::Table::from_iter([(name.get_ref().to_string(), value)]);
                let result = entry.apply(s, &toml::Value::Table(one), self.base);
                let place = self.at(name.span(), &what);
                self.problems.report(result, place);
            }
            return;
        }
        if let Some(value) = self.value(node, &what) {
            let result = entry.apply(s, &value, self.base);
            let place = self.at(node.span(), &what);
            self.problems.report(result, place);
        }
    }

    /// Chat parameters of `[defaults]` or one `[[params]]` set (without its `name`).
    fn layer(&mut self, section: &str, table: &DeTable) -> ParamLayer {
        let mut map = Map::new();
        let mut places = HashMap::new();
        for (name, node) in table {
            let key: &str = name.get_ref();
            if key == "name" && section.starts_with("[[") {
                continue;
            }
            let here = self.at(node.span(), section);
            let value = self.value(node, &format!("{section} {key}"));
            let place = |path: &str| format!("{here} {path}");
            if let Some(json) = value.and_then(|v| to_json(&v, key, &place, self.problems)) {
                map.insert(key.to_string(), json);
            }
            // An unknown key is shown where the key is, a bad value where the value is.
            let known = is_chat_param(key) || key == "extra";
            let at = if known {
                place(key)
            } else {
                self.at(name.span(), &format!("{section} {key}"))
            };
            places.insert(key.to_string(), at);
        }
        match layer_from_map(&map, UnknownKeys::Reject) {
            Ok(layer) => layer,
            Err(found) => {
                for p in found {
                    let place = places.get(&p.key).cloned().unwrap_or_default();
                    self.problems.push(place, p.message);
                }
                ParamLayer::default()
            }
        }
    }

    fn param_sets(&mut self, node: &Node) {
        let Some(items) = node.get_ref().as_array() else {
            let message = match node.get_ref() {
                DeValue::Table(_) => "must be a list of tables: write [[params]] (double brackets) above each parameter set".to_string(),
                _ => format!("must be a list of [[params]] tables, got {}", self.got(node, "params")),
            };
            let place = self.at(node.span(), "params");
            self.problems.push(place, message);
            return;
        };
        // Names seen so far: a set makes the duplicate check linear in the sets
        // (a scan of the earlier ones made 80,000 sets take seconds).
        let mut names: HashSet<String> = HashSet::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let number = i + 1;
            let Some(table) = self.table(&format!("[[params]] #{number}"), item) else {
                continue;
            };
            let name_node = table.get("name");
            let name = name_node
                .and_then(|n| n.get_ref().as_str())
                .map(str::to_string);
            let section = match &name {
                Some(n) => format!("[[params]] #{number} ({n:?})"),
                None => format!("[[params]] #{number}"),
            };
            let name_ok = match (name_node, &name) {
                (None, _) => Err("every parameter set needs a name, e.g. name = \"precise\"".to_string()),
                (Some(node), None) => Err(format!("must be a string, got {}", self.got(node, "name"))),
                (Some(_), Some(n)) if n.trim().is_empty() => Err("must not be empty".to_string()),
                (Some(_), Some(n)) if n.contains('/') => Err(format!(
                    "{n:?} contains '/', which separates the id from the set in request keys; pick another name"
                )),
                (Some(_), Some(n)) if !names.insert(n.clone()) => Err(format!(
                    "{n:?} is the name of an earlier set; set names must be unique"
                )),
                (Some(_), Some(n)) => Ok(n.clone()),
            };
            let span = name_node.map_or(item.span(), Spanned::span);
            let place = self.at(span, &format!("{section} name"));
            let name = self.problems.report(name_ok, place);
            let layer = self.layer(&section, table);
            if let Some(name) = name {
                self.job.param_sets.push(ParamSet { name, layer });
            }
        }
    }

    fn pricing(&mut self, table: &DeTable) {
        for (model, entry) in table {
            let model: &str = model.get_ref();
            let what = format!("[pricing] {model:?}");
            if model == "image_tokens" {
                let what = "[pricing] image_tokens";
                if let Some(v) = self.value(entry, what) {
                    let place = self.at(entry.span(), what);
                    let n = settings::whole(&v, 1, MAX_IMAGE_TOKENS);
                    if let Some(n) = self.problems.report(n, place) {
                        self.job.pricing.image_tokens = n.unsigned_abs();
                    }
                }
                continue;
            }
            let Some(fields) = entry.get_ref().as_table() else {
                let got = self.got(entry, &what);
                let place = self.at(entry.span(), &what);
                self.problems.push(place, format!("must be {{ input = USD per 1M tokens, output = USD per 1M tokens }}, got {got}"));
                continue;
            };
            for (key, _) in fields {
                if !PRICE_KEYS.contains(&key.get_ref().as_ref()) {
                    let place = self.at(key.span(), &format!("{what} {}", key.get_ref()));
                    self.problems
                        .push(place, unknown_key(key.get_ref(), PRICE_KEYS));
                }
            }
            let mut price = [None, None];
            for (slot, key) in price.iter_mut().zip(PRICE_KEYS) {
                let what = format!("{what} {key}");
                let Some(node) = fields.get(*key) else {
                    let place = self.at(entry.span(), &what);
                    self.problems.push(
                        place,
                        "is missing: give the price in USD per 1M tokens (0 if free)",
                    );
                    continue;
                };
                let usd = match self.value(node, &what).map(|v| settings::number(&v)) {
                    Some(Ok(usd)) if usd >= 0.0 && usd.is_finite() => Ok(usd),
                    Some(Ok(usd)) => Err(format!("must be USD per 1M tokens >= 0, got {usd}")),
                    Some(Err(message)) => Err(message),
                    None => continue,
                };
                let place = self.at(node.span(), &what);
                *slot = self.problems.report(usd, place);
            }
            if let [Some(input), Some(output)] = price {
                let price = Price { input, output };
                self.job.pricing.models.insert(model.to_string(), price);
            }
        }
    }
}

/// Converts a TOML value to JSON for the chat parameters: date-times become
/// strings; a NaN or infinite float (JSON has none) is a problem at `place(key path)`.
fn to_json(
    value: &toml::Value,
    path: &str,
    place: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<Value> {
    Some(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(n) => Value::Number((*n).into()),
        toml::Value::Float(x) => match Number::from_f64(*x) {
            Some(n) => Value::Number(n),
            None => {
                problems.push(
                    place(path),
                    format!("{x} cannot be sent as JSON; write a finite number"),
                );
                return None;
            }
        },
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            (items.iter().enumerate())
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]"), place, problems))
                .collect::<Option<_>>()?,
        ),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| {
                    Some((
                        k.clone(),
                        to_json(v, &format!("{path}.{k}"), place, problems)?,
                    ))
                })
                .collect::<Option<_>>()?,
        ),
    })
}
