//! The job: the TOML job file merged with flags, validated as a whole.
//!
//! Everything downstream works from a [`Job`]; nothing else reads the job file
//! or the flags. `load` reports every problem at once (file, key, what to do).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::template::Template;

mod endpoints;
mod file;
mod flags;
mod lenient;
mod load;
pub mod params;
pub mod placeholder;
mod prices;
mod problem;
mod settings;
pub mod shard;

pub use load::SUMMARY_SUFFIX;
pub use prices::read_pricing;
pub use problem::{did_you_mean, JobError, Problem};
pub use settings::endpoint_warning;

pub const DEFAULT_ENDPOINT: &str = "https://api.aimlapi.com/v1/chat/completions";
pub const DEFAULT_KEY_ENV: &str = "AIMLAPI_API_KEY";
/// `[cache] max_mb` when unset: room for about a million short replies.
pub const DEFAULT_CACHE_MAX_MB: f64 = 1024.0;

/// A validated job, ready to plan requests from.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub endpoint: EndpointConfig,
    pub input: InputConfig,
    pub output: OutputConfig,
    pub limits: Limits,
    pub retry: RetryConfig,
    /// `[defaults]`: the first layer of every request's parameters.
    pub defaults: ParamLayer,
    /// `[[params]]`, or one set named `default` when the job has none.
    pub param_sets: Vec<ParamSet>,
    /// `--param` and `--model`: the last layer, above a row's own `params`.
    pub overrides: ParamLayer,
    pub pricing: Pricing,
    /// `--limit N`: only the first N rows.
    pub row_limit: Option<u64>,
    /// `--simulate`: the endpoint is the built-in mock, no key needed.
    pub simulate: bool,
    /// `--cache DIR` / `[cache]`: None = no cache (the default).
    pub cache: Option<CacheConfig>,
    /// The slice of the job this process runs (`0/1`: all of it); the
    /// limits above are already this shard's share.
    pub shard: shard::Shard,
    /// Where the shard was said ([`shard::source`]), for the start line.
    pub shard_from: &'static str,
    /// `[[endpoints]]`: empty for a job of one endpoint (`[endpoint]`, or
    /// `--endpoint`), which is `endpoint` above. With several, `endpoint`
    /// is a copy of the first.
    pub endpoints: Vec<NamedEndpoint>,
}

impl Job {
    /// The models the job's parameter sets request (a row's own `params` aside).
    pub fn models(&self) -> Vec<String> {
        set_models(&self.defaults, &self.param_sets, &self.overrides)
    }
}

/// The model each set requests after merging (`--model` > set > `[defaults]`).
pub(crate) fn set_models(
    defaults: &ParamLayer,
    sets: &[ParamSet],
    overrides: &ParamLayer,
) -> Vec<String> {
    let model = |layer: &ParamLayer| {
        layer
            .named
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    sets.iter()
        .filter_map(|set| {
            model(overrides)
                .or_else(|| model(&set.layer))
                .or_else(|| model(defaults))
        })
        .collect()
}

/// One entry of `[[endpoints]]`.
#[derive(Debug, Clone)]
pub struct NamedEndpoint {
    /// Unique and non-empty: records, warnings and the state file name it.
    pub name: String,
    pub config: EndpointConfig,
    /// Its share of the requests, relative to the others' (>= 1).
    pub weight: u32,
    /// Its own limits (0 = none), on top of the job's `[limits]`.
    pub requests_per_minute: u32,
    pub tokens_per_minute: u64,
    /// The model ids it serves; None = every model.
    pub models: Option<Vec<String>>,
}

/// `[cache]`: where the store is and how large it may grow.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// `max_mb`: least-recently-used replies go past it.
    pub max_mb: f64,
}

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub url: String,
    /// "" = send no Authorization header.
    pub api_key_env: String,
    pub timeout: Duration,
    pub headers: Vec<(String, String)>,
    /// `max_reply_bytes`: the most one reply (or one SSE line) may hold.
    pub max_reply_bytes: u64,
    /// `max_attempt_secs`: the hard deadline of one attempt, streams included.
    pub max_attempt: Duration,
    /// `http`: "auto" (default), "1.1" or "2".
    pub http: HttpSetting,
    /// `mode`: request by request (`chat`, the default) or through the
    /// provider's Batch API (`batch`, or `--batch-api`).
    pub mode: EndpointMode,
    /// `batch_wait_secs`: in batch mode, how long a run waits for its
    /// batches to settle before it leaves them to the next run (None: until
    /// they settle).
    pub batch_wait: Option<Duration>,
}

/// `[endpoint] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointMode {
    #[default]
    Chat,
    Batch,
}

/// `[endpoint] http` as the job says it; the run hands it to the client as
/// the client's own `HttpVersion` (the job imports nothing downstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpSetting {
    /// HTTP/2 when an https:// server offers it (ALPN), else HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
}

#[derive(Debug, Clone)]
pub struct InputConfig {
    pub source: InputSource,
    pub format: Format,
    pub id: Option<Template>,
    pub system: Option<String>,
    pub system_mode: SystemMode,
    pub template: Option<Template>,
    /// `[input] images`: one `image_url` part per template, after the text.
    pub images: Vec<Template>,
    /// `[input] max_image_bytes`: the largest local image file sent.
    pub max_image_bytes: u64,
}

/// `[input] max_image_bytes` when the job names none: 20 MiB, what the
/// largest providers accept for one image.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 20 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    File(PathBuf),
    Stdin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    /// OpenAI Batch API request lines: `{"custom_id","method","url","body"}`.
    OpenaiBatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemMode {
    Auto,
    Message,
    Fold,
}

#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub path: PathBuf,
    pub summary: PathBuf,
    /// `[output] json`: every reply is parsed as JSON into the record's `json`.
    pub json: bool,
    /// `[output] batch_output`: the output also written in the Batch API's output format.
    pub batch: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub concurrency: usize,
    /// 0 = no limit.
    pub requests_per_minute: u32,
    /// 0 = no limit.
    pub tokens_per_minute: u64,
    /// 0 = no budget.
    pub max_cost_usd: f64,
    /// `per_shard = true`: the figures above hold for each shard as written,
    /// instead of being divided among the shards.
    pub per_shard: bool,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Total attempts per request, the first included (>= 1).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts whose reply is not the JSON asked for (`bad_output`), the
    /// first included; counted apart from `max_attempts` (see `scheduler`).
    pub bad_output_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct ParamSet {
    pub name: String,
    pub layer: ParamLayer,
}

/// One level of chat parameters. A `Value::Null` removes what an earlier level set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamLayer {
    /// The chat parameters DESIGN.md names (`model`, `temperature`, ...), already validated.
    pub named: BTreeMap<String, Value>,
    /// Passed through untouched (`response_format`, `tools`, ...).
    pub extra: Map<String, Value>,
}

/// USD per 1M tokens by requested model id (what a request or reply costs: `scheduler::pricing`).
#[derive(Debug, Clone)]
pub struct Pricing {
    pub models: BTreeMap<String, Price>,
    /// `[pricing] image_tokens`: the most tokens one image part of a prompt
    /// can take (the model's image token bound; 1,024 for Gemma 3).
    pub image_tokens: u64,
    /// `batch_input` / `batch_output`: the Batch API's prices, by model
    /// (batch mode charges these; a model without them its chat prices).
    pub batch: BTreeMap<String, Price>,
}

impl Pricing {
    /// The prices a batch-mode run charges: each model's batch prices where
    /// `[pricing]` gives them, its chat prices (an upper bound) elsewhere.
    pub fn for_batches(&self) -> Pricing {
        let mut models = self.models.clone();
        for (model, price) in &self.batch {
            models.insert(model.clone(), *price);
        }
        Pricing {
            models,
            image_tokens: self.image_tokens,
            batch: self.batch.clone(),
        }
    }
}

/// The image token bound when `[pricing]` names none (Gemma 3's).
pub const DEFAULT_IMAGE_TOKENS: u64 = 1024;

impl Default for Pricing {
    fn default() -> Pricing {
        Pricing {
            models: BTreeMap::new(),
            image_tokens: DEFAULT_IMAGE_TOKENS,
            batch: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}
