//! The TOML job file, read by serde into one field per section.
//!
//! Every value is `Spanned`, so each problem names its file:line:column. A
//! section of settings is a table of the `toml::Value`s written, each judged
//! by its key's entry in [`settings::KEYS`] (the table the flags write through
//! too) rather than by serde's first error: a user fixing a job one error per
//! run would give up. For the same reason an unknown key (one `KEYS`,
//! `SECTIONS` or `PRICE_KEYS` lacks) is one problem with "did you mean", and
//! a section of the wrong type ([`Lenient`]) is one problem, not the end of
//! reading.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::lenient::{unreadable, Lenient};
use super::params::{is_chat_param, layer_from_map, UnknownKeys};
use super::problem::{describe, unknown_key, Lines, Problems};
use super::settings::{self, Key, Settings, KEYS};
use super::{ParamLayer, ParamSet, Price, Pricing};

mod sections;

/// The sections of a job file; any other top-level key is a setting of `KEYS`.
const SECTIONS: &[&str] = &[
    "endpoint",
    "input",
    "output",
    "limits",
    "retry",
    "cache",
    "defaults",
    "params",
    "pricing",
    "endpoints",
];
/// The keys of a `[pricing]` entry: `"model" = { input = 0.02, output = 0.04 }`.
pub(super) const PRICE_KEYS: [&str; 2] = ["input", "output"];
/// The optional keys of a `[pricing]` entry: the Batch API's prices.
pub(super) const BATCH_PRICE_KEYS: [&str; 2] = ["batch_input", "batch_output"];
/// The largest `[pricing] image_tokens`: like a token cap, past 2^31 it can only be a typo.
const MAX_IMAGE_TOKENS: i64 = 1 << 31;

type Node = Spanned<toml::Value>;
/// A table section: absent, read, or something else written in its place.
type Section<T> = Option<Spanned<Lenient<T>>>;
/// A section's keys, sorted (as the layers are).
type Table = BTreeMap<String, Node>;
type ParamSets = Vec<Spanned<Lenient<Table>>>;
pub(super) type Prices = BTreeMap<String, Spanned<Lenient<Table>>>;

/// The job file. The sections of settings are read as tables, each key then
/// looked up in `KEYS` (so a key's name is written once, there); `[defaults]`,
/// `[[params]]` and `[pricing]` have keys of the user's choosing.
#[derive(Deserialize, Default)]
#[serde(default)]
struct JobFile {
    name: Option<Node>,
    endpoint: Section<Table>,
    input: Section<Table>,
    output: Section<Table>,
    limits: Section<Table>,
    retry: Section<Table>,
    cache: Section<Table>,
    defaults: Section<Table>,
    params: Section<ParamSets>,
    pricing: Section<Prices>,
    endpoints: Option<Spanned<Lenient<super::endpoints::Entries>>>,
}

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
    /// `[[endpoints]]`; empty when the file has none (one `[endpoint]`).
    pub endpoints: Vec<super::NamedEndpoint>,
}

/// Where the keys of the job file are, for problems found after reading it.
#[derive(Debug, Default)]
pub(crate) struct Places {
    /// The job file as the user named it, e.g. `faq.toml`.
    label: String,
    /// Line and column of each setting's value and each section (`limits.concurrency`, `input`).
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
        None if path == "endpoints" => "[[endpoints]]".to_string(),
        None if SECTIONS.contains(&path) => format!("[{path}]"),
        None => path.to_string(),
    }
}

/// Reads the job file, writing its settings into `s`. `None` when it cannot
/// be read or parsed at all (that one problem is pushed); otherwise every
/// problem in it is pushed, in the order of the file.
pub(crate) fn read(
    path: &Path,
    cwd: &Path,
    s: &mut Settings,
    problems: &mut Problems,
) -> Option<FileJob> {
    let label = path.display().to_string();
    let full = cwd.join(path);
    let text = (std::fs::read_to_string(&full).map_err(|e| {
        let message = format!("cannot read the job file: {e}; check the path (it is relative to the working directory)");
        problems.push(label.clone(), message)
    }))
    .ok()?;
    let lines = Lines::new(&text);
    let parsed = DeTable::parse(&text).and_then(|root| {
        let file = JobFile::deserialize(toml::de::Deserializer::from(root.clone()))?;
        Ok((root, file))
    });
    let (root, file) = (parsed.map_err(|e| {
        let place = match e.span().map(|span| lines.at(span.start)) {
            Some((line, col)) => format!("{label}:{line}:{col}"),
            None => label.clone(),
        };
        let message = format!("TOML syntax error: {}", e.message().trim_end());
        problems.push(place, message)
    }))
    .ok()?;
    let mut doc = Doc {
        root: root.get_ref(),
        lines,
        label,
        found: Vec::new(),
    };
    let base = full.parent().unwrap_or(cwd);
    let mut job = FileJob::default();
    let mut places = HashMap::new();
    let mut unknown: Vec<Vec<&str>> = (root.get_ref().iter())
        .map(|(key, _)| key.get_ref().as_ref())
        .filter(|key| *key != "name" && !SECTIONS.contains(key))
        .map(|key| vec![key])
        .collect();
    if let (Some(name), Some(entry)) = (&file.name, settings::key("name")) {
        places.insert("name".to_string(), doc.lines.at(name.span().start));
        doc.setting(entry, name, base, s);
    }
    // The first six `SECTIONS` are those of settings.
    let f = &file;
    let tables = [
        &f.endpoint,
        &f.input,
        &f.output,
        &f.limits,
        &f.retry,
        &f.cache,
    ];
    for (section, node) in SECTIONS.iter().zip(tables) {
        for (key, node) in doc.table(section, node.as_ref()).into_iter().flatten() {
            let path = format!("{section}.{key}");
            places.insert(path.clone(), doc.lines.at(node.span().start));
            match settings::key(&path) {
                Some(entry) => doc.setting(entry, node, base, s),
                None => unknown.push(vec![section, key]),
            }
        }
    }
    let before = doc.found.len();
    if let Some(defaults) = doc.table("defaults", file.defaults.as_ref()) {
        job.defaults = doc.layer("[defaults]", &["defaults"], defaults);
    }
    if let Some(params) = &file.params {
        job.param_sets = doc.param_sets(params);
    }
    if let Some(pricing) = doc.table("pricing", file.pricing.as_ref()) {
        job.pricing = doc.pricing(pricing, &["pricing"], &mut unknown);
    }
    // A bad parameter or price leaves the layers incomplete.
    job.params_ok = doc.found.len() == before;
    if let Some(endpoints) = &file.endpoints {
        if let (Some(_), Some(span)) = (&file.endpoint, doc.key_span(&["endpoints"])) {
            let message = "[endpoint] and [[endpoints]] are exclusive: write one endpoint as [endpoint], or every endpoint (this one included) as [[endpoints]]";
            doc.push(span, "[[endpoints]]", message);
        }
        job.endpoints = doc.endpoints(endpoints, base);
    }
    for path in &unknown {
        doc.unknown(path);
    }
    for section in SECTIONS {
        if let Some(span) = doc.key_span(&[section]) {
            places.insert(section.to_string(), doc.lines.at(span.start));
        }
    }
    doc.found.sort_by_key(|(offset, _)| *offset);
    problems.0.extend(doc.found.into_iter().map(|(_, p)| p));
    job.places = Some(Places {
        label: doc.label,
        lines: places,
    });
    Some(job)
}

/// The parsed document, for the places of keys, and the problems found so far.
pub(super) struct Doc<'a, 't> {
    pub(super) root: &'a DeTable<'t>,
    pub(super) lines: Lines<'a>,
    pub(super) label: String,
    /// Each problem with the byte offset it is at, to sort them into file order.
    pub(super) found: Vec<(usize, super::Problem)>,
}

impl Doc<'_, '_> {
    /// A problem about `what` (`[limits] concurrency`) at the text at `span`.
    pub(super) fn push(&mut self, span: Range<usize>, what: &str, message: impl Into<String>) {
        let (line, col) = self.lines.at(span.start);
        let place = format!("{}:{line}:{col}: {what}", self.label);
        let message = message.into();
        self.found
            .push((span.start, super::Problem { place, message }));
    }

    /// `r`'s error as a problem at `at`, or its value.
    fn report<T>(&mut self, at: Range<usize>, what: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|message| self.push(at, what, message)).ok()
    }

    /// Where the key at `path` is written (`["params", "0", "temprature"]`).
    pub(super) fn key_span(&self, path: &[&str]) -> Option<Range<usize>> {
        let (mut table, mut span) = (self.root, None);
        let mut keys = path.iter().peekable();
        while let Some(key) = keys.next() {
            let (k, mut value) = table.get_key_value(*key)?;
            span = Some(k.span());
            let index = keys.peek().and_then(|i| i.parse::<usize>().ok());
            if let (DeValue::Array(items), Some(i)) = (value.get_ref(), index) {
                value = items.get(i)?;
                keys.next();
            }
            if keys.peek().is_some() {
                table = value.get_ref().as_table()?;
            }
        }
        span
    }

    /// Whether the value at `path` is a date-time, which serde reads as a
    /// table with one private key.
    fn is_date(&self, path: &[&str]) -> bool {
        let mut table = self.root;
        for (i, key) in path.iter().enumerate() {
            match table.get(*key).map(Spanned::get_ref) {
                Some(DeValue::Datetime(_)) => return i + 1 == path.len(),
                Some(DeValue::Table(inner)) => table = inner,
                _ => return false,
            }
        }
        false
    }

    /// A table, or a problem at `what` when something else is written there.
    pub(super) fn table<'f, T>(
        &mut self,
        what: &str,
        node: Option<&'f Spanned<Lenient<T>>>,
    ) -> Option<&'f T> {
        let node = node?;
        let value = match node.get_ref() {
            Lenient::Read(table) => return Some(table),
            Lenient::Not(value) => value,
            // A date-time reads as a table with one private key, which fails.
            Lenient::Unreadable(why) if !self.is_date(&[what]) => {
                self.push(node.span(), what, unreadable(why));
                return None;
            }
            Lenient::Unreadable(_) => &toml::Value::Boolean(false),
        };
        if self.is_date(&[what]) {
            let span = self.key_span(&[what]).unwrap_or(node.span());
            self.push(span, what, "must be a table, got a date-time");
        } else {
            let message = format!("must be a table, got {}", describe(value));
            self.push(node.span(), what, message);
        }
        None
    }

    /// One setting of `KEYS`; each header is checked on its own, at its own name.
    fn setting(&mut self, entry: &Key, node: &Node, base: &Path, s: &mut Settings) {
        let what = display(entry.path);
        if let (toml::Value::Table(headers), "endpoint.headers") = (node.get_ref(), entry.path) {
            for (name, value) in headers {
                let one = toml::Table::from_iter([(name.clone(), value.clone())]);
                let result = entry.apply(s, &toml::Value::Table(one), base);
                let span = self.key_span(&["endpoint", "headers", name]);
                let what = format!("{what} {name:?}");
                self.report(span.unwrap_or(node.span()), &what, result);
            }
            return;
        }
        let result = entry.apply(s, node.get_ref(), base);
        self.report(node.span(), &what, result);
    }

    /// An unknown key, where it is written, with the nearest key of its table.
    fn unknown(&mut self, path: &[&str]) {
        let Some((key, parents)) = path.split_last() else {
            return;
        };
        let (what, known): (String, Vec<&str>) = match parents {
            [] => (key.to_string(), [&["name"], SECTIONS].concat()),
            [section] => {
                let prefix = format!("{section}.");
                let known = KEYS.iter().filter_map(|k| k.path.strip_prefix(&prefix));
                (format!("[{section}] {key}"), known.collect())
            }
            ["pricing", model] => (format!("[pricing] {model:?} {key}"), PRICE_KEYS.to_vec()),
            _ => (path.join("."), Vec::new()),
        };
        let span = self.key_span(path).unwrap_or(0..0);
        self.push(span, &what, unknown_key(key, &known));
    }
}
