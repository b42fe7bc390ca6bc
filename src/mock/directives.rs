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

const FAULT_NAMES: &[(&str, Fault)] = &[
    ("429", Fault::RateLimit),
    ("quota", Fault::Quota),
    ("500", Fault::Server500),
    ("502", Fault::BadGateway),
    ("504", Fault::GatewayTimeout),
    ("503html", Fault::Unavailable503Html),
    ("400", Fault::BadRequest400),
    ("422", Fault::Unprocessable422),
    ("401", Fault::Unauthorized401),
    ("402", Fault::PaymentRequired402),
    ("403", Fault::Forbidden403),
    ("404", Fault::NotFound404),
    ("reset", Fault::Reset),
    ("hang", Fault::Hang),
    ("malformed", Fault::Malformed),
    ("empty", Fault::Empty),
    ("cut", Fault::Cut),
    ("sse-error", Fault::SseError),
    ("echo-401", Fault::Echo401),
    ("echo-502", Fault::Echo502),
    ("echo-200", Fault::Echo200),
    ("echo-sse", Fault::EchoSse),
];

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
    #[error("unknown mock fault `{0}`; known faults: {known}", known = fault_names())]
    UnknownFault(String),
    #[error(
        "unknown mock cost mode `{0}`; known: aiml-header, aiml-body, aiml-credits, openrouter"
    )]
    UnknownCostMode(String),
    #[error(
        "unknown mock directive `[mock:{0}]`; known: fail, retry-after-ms, latency, chunk-ms, \
         no-usage, cost, model, tools, echo-auth"
    )]
    Unknown(String),
}

fn fault_names() -> String {
    let known: Vec<&str> = FAULT_NAMES.iter().map(|(n, _)| *n).collect();
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
    match key {
        "fail" => {
            for name in need_value()?
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
            {
                let fault = FAULT_NAMES
                    .iter()
                    .find(|(known, _)| *known == name)
                    .map(|(_, fault)| *fault)
                    .ok_or_else(|| DirectiveError::UnknownFault(name.to_string()))?;
                directives.fails.push(fault);
            }
        }
        "retry-after-ms" => directives.retry_after_ms = Some(millis(need_value()?)?),
        "latency" => directives.latency += Duration::from_millis(millis(need_value()?)?),
        "chunk-ms" => directives.chunk_gap = Duration::from_millis(millis(need_value()?)?),
        "no-usage" => directives.no_usage = true,
        "tools" => directives.tools = true,
        "echo-auth" => directives.echo_auth = true,
        "model" => directives.model = Some(need_value()?.to_string()),
        "cost" => {
            directives.cost = Some(match need_value()? {
                "aiml-header" => CostMode::AimlHeader,
                "aiml-body" => CostMode::AimlBody,
                "aiml-credits" => CostMode::AimlCredits,
                "openrouter" => CostMode::OpenRouter,
                other => return Err(DirectiveError::UnknownCostMode(other.to_string())),
            })
        }
        other => return Err(DirectiveError::Unknown(other.to_string())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_directives_is_kept_with_whitespace_collapsed() {
        let (d, text) = parse("  hello \n world ").expect("valid");
        assert_eq!(d, Directives::default());
        assert_eq!(text, "hello world");
    }

    #[test]
    fn several_directives_are_parsed_and_removed() {
        let (d, text) = parse(
            "Hi [mock:fail=429, 500,reset] there[mock:latency=20][mock:no-usage] [mock:cost=openrouter][mock:model=x/y][mock:tools] [mock:retry-after-ms=250][mock:chunk-ms=3][mock:echo-auth]",
        )
        .expect("valid");
        assert_eq!(text, "Hi there");
        assert_eq!(
            d.fails,
            vec![Fault::RateLimit, Fault::Server500, Fault::Reset]
        );
        assert_eq!(d.latency, Duration::from_millis(20));
        assert_eq!(d.chunk_gap, Duration::from_millis(3));
        assert!(d.no_usage && d.tools && d.echo_auth);
        assert_eq!(d.cost, Some(CostMode::OpenRouter));
        assert_eq!(d.model.as_deref(), Some("x/y"));
        assert_eq!(d.retry_after_ms, Some(250));
    }

    #[test]
    fn bad_directives_are_errors_that_name_them() {
        for (text, expected) in [
            ("[mock:fail=418]", "unknown mock fault `418`"),
            ("[mock:latency=soon]", "expected whole milliseconds"),
            ("[mock:bogus]", "unknown mock directive `[mock:bogus]`"),
            ("[mock:cost=free]", "unknown mock cost mode `free`"),
            ("[mock:fail]", "needs a value"),
            ("oops [mock:fail=429", "unterminated"),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
