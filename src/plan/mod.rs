//! The plan stage: rows × parameter sets → requests. One row in, one [`Request`] per parameter set out.
//!
//! It decides the id, the messages (the row's own, its `prompt`, or the job's
//! template), the merged chat parameters, the exact body bytes and their
//! hash. It runs for every row on the hot path, so whatever does not depend
//! on the row (the sets' merged parameters, names, sanitized id parts) is
//! worked out once in [`Planner::new`], and a row's problems are all
//! collected rather than stopping at the first.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::input::{InputError, RawRow};
use crate::job::params::{self, describe, UnknownKeys};
use crate::job::{Format, Job, ParamLayer, Pricing, SystemMode};
use crate::template::Template;

mod batch;
mod body;
mod images;
mod messages;
pub mod request;
mod request_id;
pub mod structured;
#[cfg(test)]
mod tests;

pub(crate) use body::hex;
use images::Images;
use messages::{Built, Problem};
pub use request::Request;
use structured::{OutputCheck, Schemas};

/// Builds the requests of each row; made once per run.
#[derive(Debug)]
pub struct Planner {
    format: Format,
    id_template: Option<Template>,
    template: Option<Template>,
    system: Option<String>,
    system_mode: SystemMode,
    defaults: ParamLayer,
    overrides: ParamLayer,
    sets: Vec<SetPlan>,
    /// The prices, when a budget is set (every request then needs a price and a token cap).
    budget: Option<Pricing>,
    /// What one image part counts for in a prompt's token bound (`[pricing] image_tokens`).
    image_tokens: u64,
    /// The job name, sanitized for `X-Client-Request-Id`.
    job_part: String,
    include_usage: Value,
    /// Whether requests get their body and its hash: a check against an
    /// output with no line has nothing to compare a hash with, and the
    /// sending pass builds them again anyway.
    bodies: bool,
    /// `[output] json`: every reply must be JSON.
    json: bool,
    /// Compiled `response_format` schemas, once each.
    schemas: Schemas,
    /// `[input] images`, when the job lists any.
    images: Option<Images>,
}

#[derive(Debug)]
struct SetPlan {
    name: Arc<str>,
    /// The name, sanitized for `X-Client-Request-Id`.
    id_part: String,
    layer: ParamLayer,
    /// The parameters of a row without `params`, which is most rows.
    common: Result<Resolved, Vec<Problem>>,
}

/// One set's parameters after merging, and what follows from them.
#[derive(Debug, Clone)]
struct Resolved {
    params: ParamLayer,
    model: String,
    fold: bool,
    stream: bool,
    max_output_tokens: Option<u64>,
    /// Compact JSON bytes of `extra` (tools, response_format, ...): the
    /// model reads them as prompt tokens too.
    extra_bytes: u64,
    /// The record's `params`: what was sent besides model and messages
    /// (shared by every request of a set: a row's own `params` make its own).
    record: Arc<Map<String, Value>>,
    /// What the reply must be, when JSON is asked for.
    output: Option<Arc<OutputCheck>>,
}

/// Where a row's messages come from.
enum Content<'a> {
    Messages(&'a [Value]),
    Text(Cow<'a, str>),
}

impl Planner {
    pub fn new(job: &Job) -> Planner {
        let budget = (job.limits.max_cost_usd > 0.0).then(|| job.pricing.clone());
        let mut planner = Planner {
            format: job.input.format,
            id_template: job.input.id.clone(),
            template: job.input.template.clone(),
            system: job.input.system.clone().filter(|s| !s.is_empty()),
            system_mode: job.input.system_mode,
            defaults: job.defaults.clone(),
            overrides: job.overrides.clone(),
            sets: Vec::new(),
            budget,
            image_tokens: job.pricing.image_tokens,
            job_part: request_id::sanitize(&job.name),
            include_usage: json!({"include_usage": true}),
            bodies: true,
            json: job.output.json,
            schemas: Schemas::default(),
            images: Images::new(job),
        };
        planner.sets = job
            .param_sets
            .iter()
            .map(|set| SetPlan {
                name: Arc::from(set.name.as_str()),
                id_part: request_id::sanitize(&set.name),
                layer: set.layer.clone(),
                common: planner.resolve(&set.name, &set.layer, None),
            })
            .collect();
        planner
    }

    /// All requests of one row, one per parameter set, in set order; or every problem of the row.
    /// How many requests every row makes (one per parameter set), planned or not.
    /// Plans requests without their body and its hash (`body` empty,
    /// `sha256` ""): for a check with no output line to compare a hash with.
    /// Every row is judged as by [`Self::new`]: building a body never fails.
    pub fn without_bodies(mut self) -> Planner {
        self.bodies = false;
        self
    }

    pub fn requests_per_row(&self) -> u64 {
        self.sets.len() as u64
    }

    pub fn plan(&self, row: RawRow, path: &str) -> Result<Vec<Request>, Vec<InputError>> {
        let line = row.line;
        let number = row.number;
        let fields = Arc::new(row.fields);
        let error = |(field, message): Problem| {
            let e = InputError::new(path, Some(line), message);
            match field {
                Some(field) => e.with_field(field),
                None => e,
            }
        };
        let mut problems: Vec<Problem> = Vec::new();
        if self.format == Format::OpenaiBatch {
            problems.extend(batch::envelope(&fields));
        }

        let id = self.id(&fields, number).map_err(|p| problems.push(p)).ok();
        let content = self.content(&fields).map_err(|p| problems.extend(p)).ok();
        let row_layer = self.row_layer(&fields).map_err(|p| problems.extend(p)).ok();
        let images = match (&self.images, &content) {
            (Some(_), Some(Content::Messages(_))) => {
                problems.push((
                    Some("messages".into()),
                    "[input] images adds image parts to the job's user message, and this row brings its own messages: put its image_url parts in them, or give it a prompt".into(),
                ));
                None
            }
            (Some(images), Some(Content::Text(_))) => {
                images.resolve(&fields).map_err(|p| problems.extend(p)).ok()
            }
            _ => None,
        };

        let mut resolved = Vec::with_capacity(self.sets.len());
        if let Some(row_layer) = &row_layer {
            for set in &self.sets {
                match row_layer {
                    None => match &set.common {
                        Ok(r) => resolved.push(Cow::Borrowed(r)),
                        Err(p) => problems.extend(p.iter().cloned()),
                    },
                    Some(layer) => match self.resolve(&set.name, &set.layer, Some(layer)) {
                        Ok(r) => resolved.push(Cow::Owned(r)),
                        Err(p) => problems.extend(p),
                    },
                }
            }
        }

        // Read only for a row that will be sent: its other problems stop it anyway.
        let mut parts = Vec::new();
        if let (Some(images), Some(checked), true) = (&self.images, &images, problems.is_empty()) {
            match images.parts(checked, self.bodies) {
                Ok(read) => parts = read,
                Err(p) => problems.push(p),
            }
        }

        // Messages depend on the set only through folding: build each variant once.
        let mut variants: [Option<Built>; 2] = [None, None];
        if let Some(content) = &content {
            for fold in [false, true] {
                if resolved.iter().any(|r| r.fold == fold) {
                    match self.messages(content, fold, &parts) {
                        Ok(built) => variants[usize::from(fold)] = Some(built),
                        Err(p) => problems.push(p),
                    }
                }
            }
        }

        let (Some(id), true) = (id, problems.is_empty()) else {
            return Err(problems.into_iter().map(error).collect());
        };
        let requests = self
            .sets
            .iter()
            .zip(&resolved)
            .map(|(set, r)| {
                let built = variants[usize::from(r.fold)]
                    .as_ref()
                    .expect("every fold variant a set uses was built above");
                self.request(&id, set, r, built, &fields, line)
            })
            .collect();
        Ok(requests)
    }

    /// The row's id: the job's id template, else the field `id`, else the row number.
    fn id(&self, fields: &Map<String, Value>, number: u64) -> Result<String, Problem> {
        if self.format == Format::OpenaiBatch {
            // The id that matches the provider's outputs to its inputs.
            return batch::custom_id(fields);
        }
        let id = match (&self.id_template, fields.get("id")) {
            (Some(template), _) => template.render(fields).map_err(|e| {
                (
                    Some(e.field().to_string()),
                    format!("the id template {:?}: {e}", template.source()),
                )
            })?,
            (None, None) => number.to_string(),
            (None, Some(Value::String(s))) => s.clone(),
            (None, Some(Value::Number(n))) if n.is_i64() || n.is_u64() => n.to_string(),
            (None, Some(other)) => {
                return Err((
                    Some("id".into()),
                    format!(
                        "id must be a string or a whole number, not {}",
                        describe(other)
                    ),
                ))
            }
        };
        if id.trim().is_empty() {
            let field = if self.id_template.is_some() {
                None
            } else {
                Some("id".into())
            };
            return Err((
                field,
                "the id is empty; every row needs a non-empty id".into(),
            ));
        }
        Ok(id)
    }

    /// Where the messages come from. JSONL: `messages`, else `prompt`, else the
    /// template. CSV values are all strings, so `messages` means nothing there,
    /// and every column is a template field: the template, else `prompt`.
    fn content<'a>(&self, fields: &'a Map<String, Value>) -> Result<Content<'a>, Vec<Problem>> {
        let present = |key: &str| fields.get(key).filter(|v| !v.is_null());
        if self.format == Format::OpenaiBatch {
            return batch::messages(fields).map(Content::Messages);
        }
        if self.format == Format::Jsonl {
            if let Some(value) = present("messages") {
                return messages::check(value).map(Content::Messages);
            }
        }
        // CSV: every column is a template field; no column name is special.
        let prompt = match (self.format, present("prompt")) {
            (Format::Csv | Format::OpenaiBatch, _) | (_, None) => None,
            (Format::Jsonl, Some(Value::String(text))) => Some(text),
            (Format::Jsonl, Some(other)) => {
                return Err(vec![(
                    Some("prompt".into()),
                    format!(
                        "must be a string (the user message), not {}",
                        describe(other)
                    ),
                )])
            }
        };
        match (prompt, self.template.as_ref()) {
            (Some(text), _) => Ok(Content::Text(Cow::Borrowed(text))),
            (None, Some(template)) => template
                .render(fields)
                .map(|text| Content::Text(Cow::Owned(text)))
                .map_err(|e| {
                    let near = crate::job::did_you_mean(e.field(), fields.keys().map(String::as_str));
                    vec![(Some(e.field().to_string()), format!("{e}{near}"))]
                }),
            (None, None) if self.format == Format::Csv => Err(vec![(
                None,
                "CSV rows are sent through the template, and the job has none: set [input] template or --template (e.g. --template '{{question}}')".into(),
            )]),
            (None, None) => Err(vec![(
                None,
                "this row has no messages or prompt, and the job has no template: set [input] template or --template".into(),
            )]),
        }
    }

    /// A JSONL row's own `params`; `Ok(None)` when it has none.
    fn row_layer(&self, fields: &Map<String, Value>) -> Result<Option<ParamLayer>, Vec<Problem>> {
        if self.format == Format::OpenaiBatch {
            return batch::params(fields);
        }
        if self.format != Format::Jsonl {
            return Ok(None);
        }
        match fields.get("params") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => params::layer_from_map(map, UnknownKeys::IntoExtra)
                .map(Some)
                .map_err(|problems| {
                    problems
                        .into_iter()
                        .map(|p| (Some(format!("params.{}", p.key)), p.message))
                        .collect()
                }),
            Some(other) => Err(vec![(
                Some("params".into()),
                format!(
                    "must be an object of chat parameters like {{\"temperature\": 0.2}}, not {}",
                    describe(other)
                ),
            )]),
        }
    }

    /// Merges one set's parameters (with the row's, if any) and checks what must hold after merging.
    fn resolve(
        &self,
        set: &str,
        layer: &ParamLayer,
        row: Option<&ParamLayer>,
    ) -> Result<Resolved, Vec<Problem>> {
        let params = match row {
            Some(row) => ParamLayer::merged([&self.defaults, layer, row, &self.overrides]),
            None => ParamLayer::merged([&self.defaults, layer, &self.overrides]),
        };
        let mut problems = Vec::new();
        for key in params.extra.keys() {
            if key == "model" || key == "messages" || params::is_chat_param(key) {
                problems.push((
                    Some(format!("extra.{key}")),
                    format!("{key:?} cannot be set under extra: set it as a chat parameter (messages come from the row)"),
                ));
            }
        }
        let Some(model) = params.named.get("model").and_then(Value::as_str) else {
            problems.push((
                Some("model".into()),
                format!("no model for parameter set {set:?}: set [defaults] model, the set's model, or --model"),
            ));
            return Err(problems);
        };
        let model = model.to_string();
        // Both may be set (servers differ in which they honour): the larger bounds the reply.
        let max_output_tokens = ["max_tokens", "max_completion_tokens"]
            .iter()
            .filter_map(|key| params.named.get(*key).and_then(Value::as_u64))
            .max();
        // Each of `n` choices (or `best_of` candidates) is billed up to the cap.
        let choices = ["n", "best_of"]
            .iter()
            .filter_map(|key| params.extra.get(*key).and_then(Value::as_u64))
            .fold(1, u64::max);
        let max_output_tokens = max_output_tokens.map(|cap| cap.saturating_mul(choices));
        let extra_bytes = params
            .extra
            .iter()
            .map(|(key, value)| (key.len() as u64).saturating_add(messages::json_len(value)))
            .fold(0, u64::saturating_add);
        if let Some(pricing) = &self.budget {
            if !pricing.models.contains_key(&model) {
                problems.push((None, format!("with max_cost_usd set, model {model:?} (parameter set {set:?}) needs a [pricing] entry, so that its cost can be bounded before sending")));
            }
            if max_output_tokens.is_none() {
                problems.push((None, format!("with max_cost_usd set, parameter set {set:?} needs max_tokens or max_completion_tokens, so that its cost can be bounded before sending")));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let fold = match self.system_mode {
            SystemMode::Message => false,
            SystemMode::Fold => true,
            SystemMode::Auto => model.to_ascii_lowercase().contains("gemma"),
        };
        let stream = params.named.get("stream").and_then(Value::as_bool) == Some(true);
        let mut record: Map<String, Value> = params
            .named
            .iter()
            .filter(|(k, _)| k.as_str() != "model")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        record.extend(params.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        let record = Arc::new(record);
        let output = self
            .schemas
            .for_params(self.json, &params.extra)
            .map_err(|(field, message)| vec![(Some(field), message)])?;
        Ok(Resolved {
            params,
            model,
            fold,
            stream,
            max_output_tokens,
            extra_bytes,
            record,
            output,
        })
    }

    fn messages(
        &self,
        content: &Content<'_>,
        fold: bool,
        images: &[Value],
    ) -> Result<Built, Problem> {
        match content {
            Content::Messages(messages) => messages::from_row(messages, fold, self.image_tokens),
            Content::Text(text) => Ok(messages::from_text(
                self.system.as_deref(),
                text,
                fold,
                images,
                self.image_tokens,
            )),
        }
    }

    fn request(
        &self,
        id: &str,
        set: &SetPlan,
        r: &Resolved,
        built: &Built,
        fields: &Arc<Map<String, Value>>,
        line: u64,
    ) -> Request {
        let (body, sha256) = match self.bodies {
            true => body::encode(r, &built.messages, &self.include_usage),
            false => (bytes::Bytes::new(), String::new()),
        };
        Request {
            key: [id, "/", &set.name].concat(),
            id: id.to_string(),
            param_set: Arc::clone(&set.name),
            model: r.model.clone(),
            body,
            stream: r.stream,
            sha256,
            params: Arc::clone(&r.record),
            input: Arc::clone(fields),
            client_request_id_prefix: request_id::prefix(&self.job_part, id, &set.id_part),
            prompt_bytes: built.prompt_bytes.saturating_add(r.extra_bytes),
            image_tokens: built.image_tokens,
            message_count: built.count,
            max_output_tokens: r.max_output_tokens,
            line,
            output: r.output.clone(),
        }
    }
}
