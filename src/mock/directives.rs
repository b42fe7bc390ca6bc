//! `[mock:...]` directives: how a prompt asks the mock for a fault, a delay or
//! a reply shape.
//!
//! Directives live in the text of the last user message, so a test (or a user
//! trying the client's retry logic) steers one request without touching the
//! server's configuration. They are removed from the text the mock echoes.

use std::time::Duration;

/// What a prompt asked for. The default is a plain, immediate reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Directives {
    /// `[mock:fail=F1,F2]`: the Nth attempt of this body answers the Nth fault.
    pub fails: Vec<Fault>,
    /// `[mock:retry-after-ms=N]`: 429 faults send `retry-after-ms: N` instead of `Retry-After: 1`.
    pub retry_after_ms: Option<u64>,
    /// `[mock:latency=MS]`: added to the configured latency.
    pub latency: Duration,
    /// `[mock:chunk-ms=MS]`: pause between stream chunks.
    pub chunk_gap: Duration,
    /// `[mock:no-usage]`: no `usage` anywhere, streams included.
    pub no_usage: bool,
    /// `[mock:cost=...]`: how the reply reports its cost.
    pub cost: Option<CostMode>,
    /// `[mock:model=NAME]`: the reply names this model instead of the requested one.
    pub model: Option<String>,
    /// `[mock:tools]`: the reply is a single tool call and no content.
    pub tools: bool,
    /// `[mock:echo-auth]`: the reply echoes the credentials it was sent (see `echo.rs`).
    pub echo_auth: bool,
    /// `[mock:reply=B64,B64]`: the Nth attempt of this body replies exactly the
    /// Nth text (base64, so that any JSON fits in a directive); later ones the last.
    pub replies: Vec<String>,
}

/// One way a provider reports what a request cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostMode {
    /// AI/ML API header `x-aimlapi-usd-spent`.
    AimlHeader,
    /// AI/ML API body `meta.usage.usd_spent`.
    AimlBody,
    /// AI/ML API header `x-aimlapi-credits-used` ($1 = 2,000,000 credits).
    AimlCredits,
    /// OpenRouter `usage.cost` plus `provider`.
    OpenRouter,
}

/// A fault one attempt answers instead of the normal reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    RateLimit,
    Quota,
    Server500,
    BadGateway,
    GatewayTimeout,
    Unavailable503Html,
    BadRequest400,
    Unprocessable422,
    Unauthorized401,
    PaymentRequired402,
    Forbidden403,
    NotFound404,
    Reset,
    Hang,
    Malformed,
    Empty,
    Cut,
    SseError,
    /// The `echo-*` faults: error replies quoting the credentials (see `echo.rs`).
    Echo401,
    Echo502,
    Echo200,
    EchoSse,
}

impl Fault {
    /// Whether the reply quotes the credentials the request carried.
    pub fn is_echo(self) -> bool {
        matches!(
            self,
            Fault::Echo401 | Fault::Echo502 | Fault::Echo200 | Fault::EchoSse
        )
    }
}

/// Every fault `[mock:fail=...]` understands, with what the attempt gets:
/// the one table parsing, error messages and `mock-server --help` read.
pub(crate) const FAULT_NAMES: &[(&str, Fault, &str)] = &[
    (
        "429",
        Fault::RateLimit,
        "429 rate_limit_error with Retry-After: 1 (or retry-after-ms)",
    ),
    (
        "quota",
        Fault::Quota,
        "429 insufficient_quota: out of credits, not a rate limit",
    ),
    (
        "500",
        Fault::Server500,
        "500 in the AI/ML API's error shape",
    ),
    ("502", Fault::BadGateway, "502 Bad Gateway, plain text"),
    (
        "504",
        Fault::GatewayTimeout,
        "504 Gateway Timeout, plain text",
    ),
    (
        "503html",
        Fault::Unavailable503Html,
        "503 with a load balancer's HTML page",
    ),
    (
        "400",
        Fault::BadRequest400,
        "400 in the AI/ML API's shape (statusCode as a string)",
    ),
    (
        "422",
        Fault::Unprocessable422,
        "422 in vLLM's shape (context length exceeded)",
    ),
    ("401", Fault::Unauthorized401, "401 invalid API key"),
    (
        "402",
        Fault::PaymentRequired402,
        "402 insufficient credits (OpenRouter)",
    ),
    (
        "403",
        Fault::Forbidden403,
        "403 insufficient credits (AI/ML API)",
    ),
    ("404", Fault::NotFound404, "404 model not found"),
    (
        "reset",
        Fault::Reset,
        "the connection is closed without an answer",
    ),
    (
        "hang",
        Fault::Hang,
        "no answer at all until the server stops (a timeout)",
    ),
    (
        "malformed",
        Fault::Malformed,
        "200 with the first half of a JSON body",
    ),
    ("empty", Fault::Empty, "200 whose choices are empty"),
    (
        "cut",
        Fault::Cut,
        "the body (or stream) ends before it is complete",
    ),
    (
        "sse-error",
        Fault::SseError,
        "an error event inside a 200 stream (an error object in a 200 body)",
    ),
    (
        "echo-401",
        Fault::Echo401,
        "401 quoting the key and x-api-key sent (redaction tests)",
    ),
    (
        "echo-502",
        Fault::Echo502,
        "502 with the credentials in an upstream excerpt",
    ),
    (
        "echo-200",
        Fault::Echo200,
        "200 with broken JSON quoting the key where a completion belongs",
    ),
    (
        "echo-sse",
        Fault::EchoSse,
        "an in-band error quoting the credentials",
    ),
];

/// Every `[mock:cost=...]` mode, with what it sends.
const COST_MODES: &[(&str, CostMode, &str)] = &[
    (
        "aiml-header",
        CostMode::AimlHeader,
        "the AI/ML API's x-aimlapi-usd-spent header",
    ),
    (
        "aiml-body",
        CostMode::AimlBody,
        "the AI/ML API's meta.usage.usd_spent in the body",
    ),
    (
        "aiml-credits",
        CostMode::AimlCredits,
        "x-aimlapi-credits-used ($1 = 2,000,000 credits)",
    ),
    (
        "openrouter",
        CostMode::OpenRouter,
        "OpenRouter's usage.cost and provider",
    ),
];

/// What a directive sets; `apply` matches on it exhaustively, so a new
/// directive cannot be parsed without a row in [`DIRECTIVES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fail,
    RetryAfterMs,
    Latency,
    ChunkMs,
    NoUsage,
    Cost,
    Model,
    Tools,
    EchoAuth,
    Reply,
}

/// One `[mock:NAME]` or `[mock:NAME=VALUE]` directive.
pub(crate) struct Directive {
    pub name: &'static str,
    /// What follows `=`, for people (None: the directive takes no value).
    pub value: Option<&'static str>,
    pub help: &'static str,
    kind: Kind,
}

/// Every directive the mock understands: the one table parsing, error
/// messages and `mock-server --help` read.
pub(crate) const DIRECTIVES: &[Directive] = &[
    Directive {
        name: "fail",
        value: Some("F1,F2,..."),
        help: "the Nth attempt answers the Nth fault below; later ones succeed",
        kind: Kind::Fail,
    },
    Directive {
        name: "retry-after-ms",
        value: Some("MS"),
        help: "429 faults send retry-after-ms: MS instead of Retry-After: 1",
        kind: Kind::RetryAfterMs,
    },
    Directive {
        name: "latency",
        value: Some("MS"),
        help: "added to the configured latency, before the reply's head",
        kind: Kind::Latency,
    },
    Directive {
        name: "chunk-ms",
        value: Some("MS"),
        help: "pause between the chunks of a stream",
        kind: Kind::ChunkMs,
    },
    Directive {
        name: "no-usage",
        value: None,
        help: "no usage anywhere in the reply, streams included",
        kind: Kind::NoUsage,
    },
    Directive {
        name: "cost",
        value: Some("MODE"),
        help: "report the cost the way a provider does (modes below)",
        kind: Kind::Cost,
    },
    Directive {
        name: "model",
        value: Some("NAME"),
        help: "the reply names this model instead of the one requested",
        kind: Kind::Model,
    },
    Directive {
        name: "tools",
        value: None,
        help: "the reply is a single tool call and no content",
        kind: Kind::Tools,
    },
    Directive {
        name: "echo-auth",
        value: None,
        help: "every string of the reply quotes the credentials it was sent",
        kind: Kind::EchoAuth,
    },
    Directive {
        name: "reply",
        value: Some("B64,B64,..."),
        help: "the Nth attempt replies exactly the Nth text (standard base64, any bytes of UTF-8: JSON, fences...); later ones the last",
        kind: Kind::Reply,
    },
];

/// The directives, faults and cost modes for `mock-server --help`, from the tables above.
pub fn help() -> String {
    let mut out = String::from(
        "Directives: put them in the last user message of a request; the mock removes them\n\
         from the text it echoes, and answers a directive it does not know with a 400.\n",
    );
    let written = |d: &Directive| match d.value {
        Some(value) => format!("[mock:{}={value}]", d.name),
        None => format!("[mock:{}]", d.name),
    };
    let width = DIRECTIVES
        .iter()
        .map(|d| written(d).len())
        .max()
        .unwrap_or(0);
    for d in DIRECTIVES {
        out.push_str(&format!("  {:<width$}  {}\n", written(d), d.help));
    }
    out.push_str("\nFaults (fail=...):\n");
    let width = FAULT_NAMES
        .iter()
        .map(|(n, _, _)| n.len())
        .max()
        .unwrap_or(0);
    for (name, _, help) in FAULT_NAMES {
        out.push_str(&format!("  {name:<width$}  {help}\n"));
    }
    out.push_str("\nCost modes (cost=...):\n");
    let width = COST_MODES
        .iter()
        .map(|(n, _, _)| n.len())
        .max()
        .unwrap_or(0);
    for (name, _, help) in COST_MODES {
        out.push_str(&format!("  {name:<width$}  {help}\n"));
    }
    out.push_str("\nExample prompt: \"What is 2+2? [mock:fail=429,500] [mock:latency=50]\"");
    out
}

const OPEN: &str = "[mock:";

/// Parses every directive in `text` and returns them with the text that
/// remains once they are removed (whitespace runs collapse to one space).
///
/// A malformed directive is an error naming it, answered as a 400: a typo in
/// a fault list should not silently turn into a passing request.
pub(crate) fn parse(text: &str) -> Result<(Directives, String), DirectiveError> {
    let mut directives = Directives::default();
    if !text.contains(OPEN) {
        return Ok((
            directives,
            text.split_whitespace().collect::<Vec<_>>().join(" "),
        ));
    }
    let mut rest = text;
    let mut remaining = String::with_capacity(text.len());
    while let Some(start) = rest.find(OPEN) {
        remaining.push_str(&rest[..start]);
        remaining.push(' ');
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find(']')
            .ok_or_else(|| DirectiveError::Unterminated(rest[start..].to_string()))?;
        apply(&mut directives, after[..end].trim())?;
        rest = &after[end + 1..];
    }
    remaining.push_str(rest);
    let remaining = remaining.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok((directives, remaining))
}

/// A `[mock:...]` directive the mock cannot follow: answered as a 400 naming it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum DirectiveError {
    #[error("unterminated mock directive `{0}`")]
    Unterminated(String),
    #[error("mock directive `[mock:{0}]` needs a value")]
    NeedsValue(String),
    #[error("mock directive `[mock:{key}={value}]`: expected whole milliseconds")]
    NotMillis { key: String, value: String },
    #[error("unknown mock fault `{0}`; known faults: {known}", known = names(FAULT_NAMES))]
    UnknownFault(String),
    #[error("unknown mock cost mode `{0}`; known: {known}", known = names(COST_MODES))]
    UnknownCostMode(String),
    #[error("mock directive `[mock:reply=...]`: {0:?} is not standard base64 of UTF-8 text")]
    NotBase64(String),
    #[error(
        "unknown mock directive `[mock:{0}]`; known: {known}",
        known = DIRECTIVES.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
    )]
    Unknown(String),
}

fn names<T>(table: &[(&str, T, &str)]) -> String {
    let known: Vec<&str> = table.iter().map(|(n, _, _)| *n).collect();
    known.join(", ")
}

fn apply(directives: &mut Directives, directive: &str) -> Result<(), DirectiveError> {
    let (key, value) = match directive.split_once('=') {
        Some((key, value)) => (key.trim(), Some(value.trim())),
        None => (directive, None),
    };
    let need_value = || value.ok_or_else(|| DirectiveError::NeedsValue(key.to_string()));
    let millis = |v: &str| {
        v.parse::<u64>().map_err(|_| DirectiveError::NotMillis {
            key: key.to_string(),
            value: v.to_string(),
        })
    };
    let kind = DIRECTIVES
        .iter()
        .find(|d| d.name == key)
        .map(|d| d.kind)
        .ok_or_else(|| DirectiveError::Unknown(key.to_string()))?;
    match kind {
        Kind::Fail => {
            for name in need_value()?
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
            {
                let fault = FAULT_NAMES
                    .iter()
                    .find(|(known, _, _)| *known == name)
                    .map(|(_, fault, _)| *fault)
                    .ok_or_else(|| DirectiveError::UnknownFault(name.to_string()))?;
                directives.fails.push(fault);
            }
        }
        Kind::RetryAfterMs => directives.retry_after_ms = Some(millis(need_value()?)?),
        Kind::Latency => directives.latency += Duration::from_millis(millis(need_value()?)?),
        Kind::ChunkMs => directives.chunk_gap = Duration::from_millis(millis(need_value()?)?),
        Kind::NoUsage => directives.no_usage = true,
        Kind::Tools => directives.tools = true,
        Kind::EchoAuth => directives.echo_auth = true,
        Kind::Model => directives.model = Some(need_value()?.to_string()),
        Kind::Reply => {
            use base64::Engine;
            for encoded in need_value()?.split(',').map(str::trim) {
                let text = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| DirectiveError::NotBase64(encoded.to_string()))?;
                directives.replies.push(text);
            }
        }
        Kind::Cost => {
            let mode = need_value()?;
            let found = COST_MODES.iter().find(|(name, _, _)| *name == mode);
            directives.cost = Some(
                found
                    .map(|(_, mode, _)| *mode)
                    .ok_or_else(|| DirectiveError::UnknownCostMode(mode.to_string()))?,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
