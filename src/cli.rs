//! The command line: clap derive definitions only.
//!
//! Doc comments are the help text. Every job key people change per run has a
//! flag here; `job::Job::load` merges these over the job file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::printer::{ColorChoice, LogFormat};

/// `--version`: the package version and the commit it was built from
/// ("unknown" outside a git checkout, as in a crates.io build); see build.rs.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PROMPTBATCH_COMMIT"),
    ")"
);

/// Run large batches of prompts through an OpenAI-compatible chat-completions endpoint.
///
/// Reads rows from JSONL or CSV, sends one request per row and parameter set with
/// bounded concurrency, rate limits and retries, and writes one JSON line per request
/// plus a cost and latency summary.
#[derive(Debug, Parser)]
#[command(name = "promptbatch", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// When to colour messages on stderr; NO_COLOR (set, not empty) means never unless --color always.
    ///
    /// auto colours a terminal whose TERM is not dumb; e.g. --color never
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job; an existing output is resumed (only missing, failed or edited requests are sent).
    #[command(after_help = "Examples:
  promptbatch run samples/quickstart.toml --simulate
  promptbatch run job.toml --limit 10 --param temperature=0.3
  promptbatch run --input rows.jsonl --model google/gemma-3-4b-it --output out.jsonl

Exit codes: 0 all ok, 1 some failed, 2 invalid job/input/key (nothing sent),
3 budget reached, 4 endpoint refuses (key, credits) or cannot be reached,
5 a local failure after sending (disk full), 130 interrupted.")]
    Run(RunArgs),
    /// Check the job and every input row, count requests and estimate tokens and cost; sends nothing.
    #[command(
        mut_args(hide_sending_only),
        after_help = "Examples:
  promptbatch validate samples/quickstart.toml --limit 100
  promptbatch validate job.toml --json | jq .estimate.totals.expected_usd

The flags of run that change only how requests are sent (--endpoint, --header,
--timeout, --summary, --concurrency, --rpm, --max-attempts) are not listed
here but are accepted and checked, so one set of flags serves both commands."
    )]
    Validate(JobArgs),
    /// Print a usage report (tokens, cost, latency, errors) over one or more output files.
    #[command(after_help = "Examples:
  promptbatch report out/ --by day,model
  promptbatch report out/*.jsonl --by model --pricing prices.toml --format csv
  promptbatch report out/ --by day,model -o weekly-{date}.html")]
    Report(ReportArgs),
    /// Serve the built-in simulated chat-completions endpoint on loopback.
    #[command(
        after_help = format!("{MOCK_EXAMPLE}\n\nPer-prompt faults: put [mock:fail=429,500,reset,...] in a prompt; --help lists every directive and fault.")
    )]
    MockServer(MockArgs),
    /// Print a shell completion script on standard output.
    #[command(after_help = "Examples:
  promptbatch completions bash > ~/.local/share/bash-completion/completions/promptbatch
  promptbatch completions zsh > ~/.zfunc/_promptbatch
  promptbatch completions fish > ~/.config/fish/completions/promptbatch.fish")]
    Completions(CompletionsArgs),
    /// Print the man page (roff) on standard output.
    #[command(after_help = "Example:
  promptbatch man > ~/.local/share/man/man1/promptbatch.1")]
    Man,
}

pub const MOCK_EXAMPLE: &str = "Example:
  promptbatch mock-server --port 8089 --latency-ms 50 --rate-429 0.05
  promptbatch run job.toml --endpoint http://127.0.0.1:8089/v1/chat/completions --api-key-env ''";

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// The `JobArgs` flags that change nothing `validate` checks or estimates
/// beyond their own value: how requests are sent, and where the summary goes.
/// `validate --help` leaves them out; `validate` still accepts and checks
/// them, so a preflight given the run's flags passes only if the run can start.
pub const SENDING_ONLY: &[&str] = &[
    "endpoint",
    "headers",
    "timeout",
    "summary",
    "concurrency",
    "rpm",
    "max_attempts",
];

fn hide_sending_only(arg: clap::Arg) -> clap::Arg {
    let hide = SENDING_ONLY.contains(&arg.get_id().as_str());
    arg.hide(hide)
}

/// The job: a job file and the flags that override its keys.
#[derive(Debug, Clone, Default, Args)]
pub struct JobArgs {
    /// Job file (TOML); optional, as every key people change per run has a flag.
    ///
    /// e.g. samples/quickstart.toml. Relative paths inside it are relative to its folder.
    #[arg(value_name = "JOB.toml")]
    pub job: Option<PathBuf>,

    /// Job name, used in output names and request ids [default: the job file's stem, else the input's stem].
    ///
    /// e.g. --name faq-nightly
    #[arg(long, value_name = "NAME", help_heading = "Job")]
    pub name: Option<String>,

    /// Input rows: a .jsonl or .csv file, or - for standard input.
    ///
    /// e.g. --input questions.csv
    #[arg(long, value_name = "PATH|-", help_heading = "Input")]
    pub input: Option<String>,

    /// Input format [default: from the file extension (a .jsonl of OpenAI Batch request lines is openai-batch); jsonl for standard input].
    ///
    /// e.g. --format csv
    #[arg(long, value_enum, value_name = "FORMAT", help_heading = "Input")]
    pub format: Option<FormatArg>,

    /// Row id template [default: the "id" field, else the 1-based row number].
    ///
    /// e.g. --id '{{qid}}'
    #[arg(long, value_name = "TEMPLATE", help_heading = "Input")]
    pub id: Option<String>,

    /// System message sent with prompt and template rows.
    ///
    /// e.g. --system 'You are concise.'
    #[arg(long, value_name = "TEXT", help_heading = "Input")]
    pub system: Option<String>,

    /// How the system message is sent [default: auto].
    ///
    /// auto folds it into the first user turn for Gemma models, message always sends a
    /// system message, fold always folds; e.g. --system-mode message
    #[arg(long, value_enum, value_name = "MODE", help_heading = "Input")]
    pub system_mode: Option<SystemModeArg>,

    /// User message template over the row's fields.
    ///
    /// e.g. --template 'Answer briefly: {{question}}'
    #[arg(long, value_name = "TEXT", help_heading = "Input")]
    pub template: Option<String>,

    /// Use only the first N rows.
    ///
    /// e.g. --limit 10 for a trial run
    #[arg(long, value_name = "N", help_heading = "Input")]
    pub limit: Option<u64>,

    /// Accept an input with no rows (exit 0, a summary of 0 requests) instead of exit 2.
    ///
    /// e.g. for a nightly export that is empty on some days
    #[arg(long, help_heading = "Input")]
    pub allow_empty: bool,

    /// Output JSONL, one line per request; {name}, {date}, {datetime} and {shard} are expanded [default: {name}.jsonl].
    ///
    /// {date} and {datetime} are the run's start in UTC (2026-11-26, 20261126T020005Z), so a
    /// scheduled run writes a new file instead of resuming the last one; e.g. --output 'out/{name}-{date}.jsonl'
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub output: Option<String>,

    /// Summary JSON [default: the output path with .jsonl replaced by .summary.json].
    ///
    /// Takes the placeholders of --output; e.g. --summary 'reports/{name}-{datetime}.json'
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub summary: Option<String>,

    /// Chat-completions URL [default: https://api.aimlapi.com/v1/chat/completions].
    ///
    /// One endpoint: it replaces a job file's [[endpoints]] list.
    /// e.g. --endpoint http://127.0.0.1:8000/v1/chat/completions
    #[arg(long, value_name = "URL", help_heading = "Endpoint")]
    pub endpoint: Option<String>,

    /// Environment variable holding the API key; "" sends no key [default: AIMLAPI_API_KEY].
    ///
    /// e.g. --api-key-env OPENAI_API_KEY, or --api-key-env '' for a local server
    /// (no Authorization header is sent)
    #[arg(long, value_name = "NAME", help_heading = "Endpoint")]
    pub api_key_env: Option<String>,

    /// Extra HTTP header, repeatable.
    ///
    /// e.g. --header X-Title=faq
    #[arg(long = "header", value_name = "K=V", help_heading = "Endpoint")]
    pub headers: Vec<String>,

    /// Per-attempt timeout in seconds; for a stream, per read [default: 120].
    ///
    /// e.g. --timeout 60
    #[arg(long, value_name = "SECS", help_heading = "Endpoint")]
    pub timeout: Option<f64>,

    /// Model for every request; the same as --param model=ID, so it beats the parameter sets.
    ///
    /// e.g. --model google/gemma-3-27b-it
    #[arg(long, value_name = "ID", help_heading = "Parameters")]
    pub model: Option<String>,

    /// Chat parameter for every request, repeatable; JSON values allowed.
    ///
    /// A key that is not a chat parameter goes into extra;
    /// e.g. --param temperature=0.2 --param 'stop=["\n\n"]'
    #[arg(long = "param", value_name = "KEY=VALUE", help_heading = "Parameters")]
    pub params: Vec<String>,

    /// Most requests in flight at once [default: 16].
    ///
    /// e.g. --concurrency 32
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub concurrency: Option<usize>,

    /// Requests per minute; 0 = no limit [default: 0].
    ///
    /// e.g. --rpm 600
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub rpm: Option<u32>,

    /// Tokens per minute (prompt bound + max tokens); 0 = no limit [default: 0].
    ///
    /// A request whose own bound is above it can never be sent: validate and run refuse
    /// the job (exit 2); e.g. --tpm 200000
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub tpm: Option<u64>,

    /// Total attempts per request, the first included [default: 5].
    ///
    /// e.g. --max-attempts 3
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_attempts: Option<u32>,

    /// Stop dispatching before the recorded cost could pass this many USD; 0 = no budget [default: 0].
    ///
    /// A run stopped by it exits 3, and a rerun with a higher budget resumes; e.g. --max-cost 2.50
    #[arg(long, value_name = "USD", help_heading = "Limits")]
    pub max_cost: Option<f64>,

    /// Answer requests answered `ok` before (same body, same endpoint) from a cache in this folder.
    ///
    /// A SQLite file made in DIR if missing (owner-only), shared safely by runs at once, bounded
    /// by [cache] max_mb (default 1024); off unless given; e.g. --cache ~/.cache/promptbatch
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub cache: Option<String>,

    /// Run only shard K of N (0-based): the rows whose id hashes to K.
    ///
    /// Beats PROMPTBATCH_SHARD and Slurm's array variables; rpm, tpm and the budget are
    /// divided by N unless [limits] per_shard = true; e.g. --shard 2/4
    #[arg(
        long,
        value_name = "K/N",
        help_heading = "Shards",
        conflicts_with = "shards"
    )]
    pub shard: Option<String>,

    /// Run one of N shards, K taken from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job).
    ///
    /// e.g. --shards 4 in a Job with completionMode: Indexed and completions: 4
    #[arg(long, value_name = "N", help_heading = "Shards")]
    pub shards: Option<u64>,

    /// Send to the built-in simulated endpoint on loopback instead; no API key needed.
    ///
    /// e.g. promptbatch run job.toml --simulate --limit 5
    #[arg(long, help_heading = "Endpoint")]
    pub simulate: bool,

    /// Send the job through the endpoint's Batch API (about half the price, results within 24 h).
    ///
    /// The same as [endpoint] mode = "batch"; batch ids are kept in <output>.batches.json,
    /// so a rerun resumes polling; e.g. promptbatch run job.toml --batch-api
    #[arg(long, help_heading = "Endpoint")]
    pub batch_api: bool,

    /// How messages on stderr are written: text for people, json for log shippers.
    ///
    /// json is one object per line: ts, level, event, message and figures; e.g. --log-format json
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text, help_heading = "Output")]
    pub log_format: LogFormat,

    /// Print the result as JSON on standard output: the summary for run, the estimate for validate.
    ///
    /// Nothing else goes to standard output; e.g. promptbatch run job.toml --json | jq .cost_usd.total
    #[arg(long, help_heading = "Output")]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub job: JobArgs,

    /// Start over: move an existing output aside instead of resuming it.
    ///
    /// Once every check has passed, the output is renamed <output>.<UTC YYYYMMDDTHHMMSSZ>.bak;
    /// e.g. promptbatch run job.toml --fresh
    #[arg(long, help_heading = "Output")]
    pub fresh: bool,

    /// Progress display.
    ///
    /// auto is a bar on a terminal and a log line every 5 s otherwise;
    /// e.g. --progress log in cron jobs
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto, help_heading = "Output")]
    pub progress: ProgressArg,

    /// Print nothing but errors (no progress, no summary table).
    ///
    /// A run that exits non-zero still prints one line saying why; e.g. for cron: run job.toml -q
    #[arg(long, short, help_heading = "Output")]
    pub quiet: bool,

    /// Say more: a line for each retry (why, attempt n of max, the wait) and each change of pace.
    ///
    /// In JSON logs these are `retry` and `pace` events; e.g. run job.toml -v
    #[arg(long, short, help_heading = "Output")]
    pub verbose: bool,

    /// Neither read nor write the learned paces in $XDG_STATE_HOME/promptbatch/rates.json.
    ///
    /// Without it, a run without --rpm/--tpm starts at the pace an earlier run learned
    /// for the same endpoint and model, and keeps what it learned; e.g. --no-state
    #[arg(long, help_heading = "Limits")]
    pub no_state: bool,

    /// Cancel every batch of <output>.batches.json still in flight, record what they finished, and exit.
    ///
    /// Batch mode only; the requests they had not finished are sent by the next run;
    /// e.g. promptbatch run job.toml --cancel-batches
    #[arg(long, help_heading = "Endpoint")]
    pub cancel_batches: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Output files written by `promptbatch run`, folders of them (their *.jsonl), or globs, e.g. out/
    #[arg(value_name = "OUTPUT", required = true)]
    pub outputs: Vec<PathBuf>,

    /// Group by these fields, comma-separated or repeated, e.g. --by day,model
    #[arg(long, value_enum, value_delimiter = ',', value_name = "FIELD")]
    pub by: Vec<ByField>,

    /// The report's format [default: table, or the -o file's extension: .json .csv .md .html]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ReportFormat>,

    /// Short for --format json
    #[arg(long, conflicts_with = "format")]
    pub json: bool,

    /// Write the report to this file instead of standard output ({date} and {datetime} are expanded), e.g. -o weekly-{date}.html
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Price lines that have no provider cost with this TOML file of the [pricing] shape (a job file will do), e.g. --pricing prices.toml
    #[arg(long, value_name = "FILE")]
    pub pricing: Option<PathBuf>,
}

/// A field `report --by` groups by (the report's own `Field`, named here so
/// the command line imports nothing downstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ByField {
    Model,
    ParamSet,
    Job,
    /// The UTC day of finished_at
    Day,
    Status,
    FinishReason,
    ErrorKind,
    /// The output file, as named
    File,
    /// The endpoint that answered (jobs with [[endpoints]])
    Endpoint,
}

/// `report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for a terminal
    Table,
    /// by, groups, totals, span_s, files
    Json,
    /// One row per group and a totals row
    Csv,
    /// A GitHub table
    Markdown,
    /// One self-contained page: charts above the tables
    Html,
}

#[derive(Debug, Clone, Args)]
pub struct MockArgs {
    /// Loopback port to listen on; 0 picks a free one, e.g. --port 8089
    #[arg(long, default_value_t = 8089)]
    pub port: u16,

    /// Base latency of every reply in milliseconds, e.g. --latency-ms 50
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Random extra latency, uniform in 0..=N milliseconds, e.g. --jitter-ms 20
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,

    /// Fraction of requests answered 429 with Retry-After, e.g. --rate-429 0.05
    #[arg(long, default_value_t = 0.0)]
    pub rate_429: f64,

    /// Fraction of requests answered 500, e.g. --rate-500 0.02
    #[arg(long, default_value_t = 0.0)]
    pub rate_500: f64,

    /// Enforced limit: at most N requests per window (429 beyond it); 0 = none, e.g. --limit-requests 600
    #[arg(long, default_value_t = 0)]
    pub limit_requests: u64,

    /// The enforced limit's window in milliseconds, e.g. --limit-window-ms 60000
    #[arg(long, default_value_t = 60_000)]
    pub limit_window_ms: u64,

    /// Announce the enforced limit as OpenAI does: x-ratelimit-limit/remaining/reset-requests on every answer
    #[arg(long)]
    pub rate_headers: bool,

    /// Answer with the AI/ML API's cost header x-aimlapi-usd-spent at this USD per 1M tokens.
    #[arg(long)]
    pub usd_per_million: Option<f64>,

    /// Require this bearer key (401 otherwise), e.g. --require-key test-key
    #[arg(long)]
    pub require_key: Option<String>,

    /// Answer with recorded server answers: every NAME.http file in DIR (status line, headers,
    /// blank line, body), chosen by the request's model, e.g. --replay tests/fixtures/compat/openai
    #[arg(long, value_name = "DIR")]
    pub replay: Option<std::path::PathBuf>,

    /// Batch API: how long a batch takes from creation to completed, in milliseconds, e.g. --batch-complete-ms 60000
    #[arg(long, default_value_t = 1_000)]
    pub batch_complete_ms: u64,

    /// Batch API: batches still unfinished this long after creation expire (0 = never), e.g. --batch-expire-ms 5000
    #[arg(long, default_value_t = 0)]
    pub batch_expire_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Csv,
    /// OpenAI Batch API request lines (`custom_id`, `method`, `url`, `body`).
    OpenaiBatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SystemModeArg {
    Auto,
    Message,
    Fold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Bar,
    Log,
    Off,
}

#[cfg(test)]
mod tests;
