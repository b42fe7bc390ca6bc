//! The chat-parameter sections of a job file as [`Doc`] reads them:
//! `[defaults]` and each `[[params]]` set (checked key by key, unknown keys
//! said with "did you mean"), and `[pricing]`.

use std::collections::HashSet;

use serde_json::{Map, Number, Value};
use toml::Spanned;

use super::*;

impl Doc<'_, '_> {
    /// Chat parameters of `[defaults]` or one `[[params]]` set (without its
    /// `name`); `path` leads to the table, for the places of unknown keys.
    pub(super) fn layer(&mut self, section: &str, path: &[&str], table: &Table) -> ParamLayer {
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

    pub(super) fn param_sets(&mut self, node: &Spanned<Lenient<ParamSets>>) -> Vec<ParamSet> {
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
    pub(in crate::job) fn pricing<'f>(
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
