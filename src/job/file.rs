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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Number, Value};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::lenient::{unreadable, Lenient};
use super::params::{is_chat_param, layer_from_map, UnknownKeys};
use super::problem::{describe, unknown_key, Lines, Problems};
use super::settings::{self, Key, Settings, KEYS};
use super::{ParamLayer, ParamSet, Price, Pricing};

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

    /// Chat parameters of `[defaults]` or one `[[params]]` set (without its
    /// `name`); `path` leads to the table, for the places of unknown keys.
    fn layer(&mut self, section: &str, path: &[&str], table: &Table) -> ParamLayer {
        let mut map = Map::new();
        for (key, node) in table {
            if key == "name" && section.starts_with("[[") {
                continue;
            }
            match to_json(node.get_ref()) {
                Ok(json) => drop(map.insert(key.clone(), json)),
                Err((inside, message)) => {
                    self.push(node.span(), &format!("{section} {key}{inside}"), message)
                }
            }
        }
        layer_from_map(&map, UnknownKeys::Reject).unwrap_or_else(|found| {
            for p in found {
                // An unknown key is shown where the key is, a bad value where the value is.
                let value = table.get(&p.key).map_or(0..0, Spanned::span);
                let span = match is_chat_param(&p.key) || p.key == "extra" {
                    true => Some(value.clone()),
                    false => self.key_span(&[path, &[&p.key]].concat()),
                };
                let what = format!("{section} {}", p.key);
                self.push(span.unwrap_or(value), &what, p.message);
            }
            ParamLayer::default()
        })
    }

    fn param_sets(&mut self, node: &Spanned<Lenient<ParamSets>>) -> Vec<ParamSet> {
        let items = match node.get_ref() {
            Lenient::Read(items) => items,
            Lenient::Unreadable(why) => {
                self.push(node.span(), "params", unreadable(why));
                return Vec::new();
            }
            Lenient::Not(value) => {
                let message = match value {
                    toml::Value::Table(_) => "must be a list of tables: write [[params]] (double brackets) above each parameter set".to_string(),
                    _ => format!("must be a list of [[params]] tables, got {}", describe(value)),
                };
                self.push(node.span(), "params", message);
                return Vec::new();
            }
        };
        // Names seen so far: a set makes the duplicate check linear in the sets
        // (a scan of the earlier ones made 80,000 sets take seconds).
        let mut names: HashSet<&str> = HashSet::with_capacity(items.len());
        let mut sets = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let number = i + 1;
            let Some(table) = self.table(&format!("[[params]] #{number}"), Some(item)) else {
                continue;
            };
            let name_node = table.get("name");
            let name = name_node.and_then(|n| n.get_ref().as_str());
            let section = match name {
                Some(n) => format!("[[params]] #{number} ({n:?})"),
                None => format!("[[params]] #{number}"),
            };
            let name_ok = match (name_node, name) {
                (None, _) => Err("every parameter set needs a name, e.g. name = \"precise\"".to_string()),
                (Some(node), None) => Err(format!("must be a string, got {}", describe(node.get_ref()))),
                (Some(_), Some(n)) if n.trim().is_empty() => Err("must not be empty".to_string()),
                (Some(_), Some(n)) if n.contains('/') => Err(format!(
                    "{n:?} contains '/', which separates the id from the set in request keys; pick another name"
                )),
                (Some(_), Some(n)) if !names.insert(n) => Err(format!(
                    "{n:?} is the name of an earlier set; set names must be unique"
                )),
                (Some(_), Some(n)) => Ok(n.to_string()),
            };
            let span = name_node.map_or(item.span(), Spanned::span);
            let name = self.report(span, &format!("{section} name"), name_ok);
            let layer = self.layer(&section, &["params", &i.to_string()], table);
            if let Some(name) = name {
                sets.push(ParamSet { name, layer });
            }
        }
        sets
    }

    /// The prices of the table at `at` (`["pricing"]` in a job file, `[]`
    /// in a file of prices alone); their unknown keys go to `unknown`,
    /// reported after `params_ok` is known.
    pub(super) fn pricing<'f>(
        &mut self,
        table: &'f Prices,
        at: &[&'f str],
        unknown: &mut Vec<Vec<&'f str>>,
    ) -> Pricing {
        let mut pricing = Pricing::default();
        for (model, entry) in table {
            let what = format!("[pricing] {model:?}");
            let price = match entry.get_ref() {
                Lenient::Read(price) => price,
                Lenient::Not(value) if model == "image_tokens" => {
                    let n = settings::whole(value, 1, MAX_IMAGE_TOKENS);
                    if let Some(n) = self.report(entry.span(), "[pricing] image_tokens", n) {
                        pricing.image_tokens = n.unsigned_abs();
                    }
                    continue;
                }
                Lenient::Not(_) | Lenient::Unreadable(_)
                    if self.is_date(&[at, &[model.as_str()]].concat()) =>
                {
                    self.push(entry.span(), &what, "must be a table, got a date-time");
                    continue;
                }
                Lenient::Unreadable(why) => {
                    self.push(entry.span(), &what, unreadable(why));
                    continue;
                }
                Lenient::Not(value) => {
                    let message = format!("must be {{ input = USD per 1M tokens, output = USD per 1M tokens }}, got {}", describe(value));
                    self.push(entry.span(), &what, message);
                    continue;
                }
            };
            let known = |k: &str| PRICE_KEYS.contains(&k) || BATCH_PRICE_KEYS.contains(&k);
            for key in price.keys().filter(|k| !known(k.as_str())) {
                unknown.push([at, &[model.as_str(), key.as_str()]].concat());
            }
            let usd = PRICE_KEYS.map(|key| {
                let what = format!("{what} {key}");
                match price.get(key) {
                    Some(node) => {
                        let usd = settings::price(node.get_ref());
                        self.report(node.span(), &what, usd)
                    }
                    None => {
                        let message = "is missing: give the price in USD per 1M tokens (0 if free)";
                        self.push(entry.span(), &what, message);
                        None
                    }
                }
            });
            if let [Some(input), Some(output)] = usd {
                pricing
                    .models
                    .insert(model.clone(), Price { input, output });
                // Each batch price falls back to its chat price (an upper bound).
                let batch = BATCH_PRICE_KEYS.map(|key| {
                    let node = price.get(key)?;
                    self.report(
                        node.span(),
                        &format!("{what} {key}"),
                        settings::price(node.get_ref()),
                    )
                });
                if batch.iter().any(Option::is_some) {
                    let price = Price {
                        input: batch[0].unwrap_or(input),
                        output: batch[1].unwrap_or(output),
                    };
                    pricing.batch.insert(model.clone(), price);
                }
            }
        }
        pricing
    }
}

/// Converts a TOML value to JSON for the chat parameters: date-times become
/// strings; a NaN or infinite float (JSON has none) is a problem at the path
/// inside the value (`.bias`), returned with its message.
fn to_json(value: &toml::Value) -> Result<Value, (String, String)> {
    let inside = |at: String| move |(path, m): (String, String)| (format!("{at}{path}"), m);
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(n) => Value::Number((*n).into()),
        toml::Value::Float(x) => {
            let message = format!("{x} cannot be sent as JSON; write a finite number");
            Value::Number(Number::from_f64(*x).ok_or((String::new(), message))?)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            (items.iter().enumerate())
                .map(|(i, item)| to_json(item).map_err(inside(format!("[{i}]"))))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => {
            let mut map = Map::new();
            for (k, v) in t {
                map.insert(k.clone(), to_json(v).map_err(inside(format!(".{k}")))?);
            }
            Value::Object(map)
        }
    })
}
