//! The job's scalar settings, the one table of job-file keys that sets them,
//! and the checks behind it, shared by the job file and the flags so a bad
//! value reads the same from either.
//!
//! The job file is written first, then the flags over it: a flag beats the
//! file, the file beats the default. Every value is checked where it is
//! written, so a bad value in the file is reported even when a flag
//! overrides it: the file is still wrong and will bite the next run that
//! lacks the flag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;

use super::placeholder::{self, UnknownPlaceholder, Values};
use super::problem::describe;
use super::{
    EndpointConfig, Format, InputSource, Limits, RetryConfig, SystemMode, DEFAULT_ENDPOINT,
    DEFAULT_KEY_ENV,
};
use super::{EndpointMode, HttpSetting};
use crate::template::Template;

/// Most requests in flight that a job may ask for: beyond this, sockets and
/// memory run out before any endpoint could keep up.
pub(crate) const MAX_CONCURRENCY: i64 = 10_000;
pub(crate) const MAX_ATTEMPTS: i64 = 100;

/// A path that may hold `{name}`, `{date}`, `{datetime}` and `{shard}`, expanded once
/// the name is known.
#[derive(Debug, Clone)]
pub(crate) struct PathSpec {
    pub text: String,
    /// The folder a relative path is relative to.
    pub base: PathBuf,
}

impl PathSpec {
    pub fn resolve(&self, values: &Values) -> Result<PathBuf, UnknownPlaceholder> {
        Ok(self.base.join(placeholder::expand(&self.text, values)?))
    }
}

/// Every setting a job can give, the flags written over the job file's
/// over the defaults; `None` = given nowhere (a default that depends on
/// other settings is filled in later).
#[derive(Debug)]
pub(crate) struct Settings {
    pub name: Option<String>,
    pub endpoint: EndpointConfig,
    pub input: Option<InputSource>,
    pub format: Option<Format>,
    pub id: Option<Template>,
    /// `Some("")` clears a system message set elsewhere (`--system ''`).
    pub system: Option<String>,
    pub system_mode: SystemMode,
    pub template: Option<Template>,
    pub images: Vec<Template>,
    pub max_image_bytes: u64,
    pub json: bool,
    pub output: Option<PathSpec>,
    pub summary: Option<PathSpec>,
    pub batch_output: Option<PathSpec>,
    pub limits: Limits,
    pub retry: RetryConfig,
    /// `[cache] dir` (`--cache`): None = no cache.
    pub cache_dir: Option<PathBuf>,
    /// `[cache] max_mb`.
    pub cache_max_mb: f64,
    /// The keys given, a bad value included: a key given but bad is not also "missing".
    pub given: Vec<&'static str>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            name: None,
            endpoint: EndpointConfig {
                url: DEFAULT_ENDPOINT.into(),
                api_key_env: DEFAULT_KEY_ENV.into(),
                timeout: Duration::from_secs(120),
                headers: Vec::new(),
                max_reply_bytes: 16 * 1024 * 1024,
                max_attempt: Duration::from_secs(1800),
                http: HttpSetting::Auto,
                mode: EndpointMode::Chat,
                batch_wait: None,
            },
            input: None,
            format: None,
            id: None,
            system: None,
            system_mode: SystemMode::Auto,
            template: None,
            images: Vec::new(),
            max_image_bytes: super::DEFAULT_MAX_IMAGE_BYTES,
            json: false,
            output: None,
            summary: None,
            batch_output: None,
            limits: Limits {
                concurrency: 16,
                ..Limits::default()
            },
            retry: RetryConfig {
                max_attempts: 5,
                initial_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_millis(60_000),
                bad_output_attempts: 1,
            },
            cache_dir: None,
            cache_max_mb: super::DEFAULT_CACHE_MAX_MB,
            given: Vec::new(),
        }
    }
}

/// One job-file key (`section.key`, or `key` at the top level) and how it
/// is checked and stored: `set(settings, value, folder relative paths start from)`.
pub(crate) struct Key {
    pub path: &'static str,
    pub set: fn(&mut Settings, &Value, &Path) -> Result<(), String>,
}

/// The table of keys: `"path" => field = value;`, where `value` is computed
/// from `v` (the value written) and `base` (the folder relative paths start
/// from), `?` returning the problem.
macro_rules! keys {
    (|$v:ident, $base:ident| $($path:literal => $($field:ident).+ = $value:expr;)*) => {
        /// Every scalar key of the job file outside `[defaults]`, `[[params]]` and `[pricing]`.
        pub(crate) const KEYS: &[Key] = &[
            Key { path: "endpoint.headers", set: set_headers },
            $(Key { path: $path, set: |s, $v, $base| {
                let _ = $base;
                s.$($field).+ = $value;
                Ok(())
            } },)*
        ];
    };
}

keys! { |v, base|
    "name" => name = Some(checked(v, check_name)?);
    "endpoint.url" => endpoint.url = checked(v, check_url)?;
    "endpoint.api_key_env" => endpoint.api_key_env = checked(v, check_key_env)?;
    "endpoint.timeout_secs" => endpoint.timeout = check_timeout(number(v)?)?;
    // Whole numbers >= 1: a cap of 0 bytes or a 0 s deadline could never succeed.
    "endpoint.max_reply_bytes" => endpoint.max_reply_bytes = whole(v, 1, i64::MAX)? as u64;
    "endpoint.max_attempt_secs" => endpoint.max_attempt = Duration::from_secs(whole(v, 1, i64::MAX)? as u64);
    "endpoint.http" => endpoint.http = http_version(v)?;
    "endpoint.mode" => endpoint.mode = choose(v, "a mode", &[("chat", EndpointMode::Chat), ("batch", EndpointMode::Batch)])?;
    "endpoint.batch_wait_secs" => endpoint.batch_wait = Some(Duration::from_secs(whole(v, 0, i64::MAX)? as u64));
    "input.path" => input = Some(input_source(&string(v)?, base)?);
    "input.format" => format = Some(choose(v, "a format", &[("jsonl", Format::Jsonl), ("csv", Format::Csv), ("openai-batch", Format::OpenaiBatch)])?);
    "input.id" => id = Some(Template::parse(&string(v)?).map_err(|e| e.to_string())?);
    "input.system" => system = Some(string(v)?);
    "input.system_mode" => system_mode = choose(v, "a system mode", &[
        ("auto", SystemMode::Auto), ("message", SystemMode::Message), ("fold", SystemMode::Fold)])?;
    "input.template" => template = Some(Template::parse(&string(v)?).map_err(|e| e.to_string())?);
    "input.images" => images = templates(v)?;
    "input.max_image_bytes" => max_image_bytes = whole(v, 1, i64::MAX)? as u64;
    "output.json" => json = boolean(v)?;
    "output.path" => output = Some(path_spec(&string(v)?, base)?);
    "output.summary" => summary = Some(path_spec(&string(v)?, base)?);
    "output.batch_output" => batch_output = Some(path_spec(&string(v)?, base)?);
    "limits.concurrency" => limits.concurrency = whole(v, 1, MAX_CONCURRENCY)? as usize;
    "limits.requests_per_minute" => limits.requests_per_minute = whole(v, 0, u32::MAX.into())? as u32;
    "limits.tokens_per_minute" => limits.tokens_per_minute = whole(v, 0, i64::MAX)? as u64;
    "limits.max_cost_usd" => limits.max_cost_usd = usd(v, "a number of USD >= 0 (0 = no budget)")?;
    "limits.per_shard" => limits.per_shard = boolean(v)?;
    "retry.max_attempts" => retry.max_attempts = whole(v, 1, MAX_ATTEMPTS)? as u32;
    "retry.bad_output_attempts" => retry.bad_output_attempts = whole(v, 1, MAX_ATTEMPTS)? as u32;
    "retry.initial_backoff_ms" => retry.initial_backoff = Duration::from_millis(whole(v, 0, i64::MAX)? as u64);
    "retry.max_backoff_ms" => retry.max_backoff = Duration::from_millis(whole(v, 0, i64::MAX)? as u64);
    "cache.dir" => cache_dir = Some(cache_dir(&string(v)?, base)?);
    "cache.max_mb" => cache_max_mb = megabytes(v)?;
}

impl Key {
    /// Checks `value` and stores it, noting the key as given even when it is bad.
    pub fn apply(&self, s: &mut Settings, value: &Value, base: &Path) -> Result<(), String> {
        s.given.push(self.path);
        (self.set)(s, value, base)
    }
}

/// The entry of `path` (`limits.concurrency`), if the job file has such a key.
pub(crate) fn key(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// `{ NAME = "value", ... }`: each header checked, and merged by name,
/// case-insensitively, a later value replacing an earlier one in place.
fn set_headers(s: &mut Settings, value: &Value, _: &Path) -> Result<(), String> {
    let Value::Table(table) = value else {
        return Err(format!("must be a table, got {}", describe(value)));
    };
    for (name, value) in table {
        let Value::String(value) = value else {
            let got = describe(value);
            return Err(format!("a header value must be a string, got {got}"));
        };
        check_header(name, value)?;
        let header = (name.clone(), value.clone());
        let headers = &mut s.endpoint.headers;
        match headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => *slot = header,
            None => headers.push(header),
        }
    }
    Ok(())
}

/// `["{{photo}}", ...]`: a list of templates, each checked.
fn templates(value: &Value) -> Result<Vec<Template>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "must be a list of templates like [\"{{{{photo}}}}\"], got {}",
            describe(value)
        ));
    };
    items
        .iter()
        .map(|item| Template::parse(&string(item)?).map_err(|e| e.to_string()))
        .collect()
}

fn string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("must be a string, got {}", describe(other))),
    }
}

/// A string that passes `check`.
fn checked(value: &Value, check: fn(&str) -> Result<(), String>) -> Result<String, String> {
    let text = string(value)?;
    check(&text).map(|()| text)
}

/// One of a few words, e.g. `"csv"`.
fn choose<T: Copy>(value: &Value, what: &str, choices: &[(&str, T)]) -> Result<T, String> {
    let text = string(value)?;
    if let Some((_, choice)) = choices.iter().find(|(word, _)| *word == text) {
        return Ok(*choice);
    }
    let words: Vec<String> = choices.iter().map(|(w, _)| format!("{w:?}")).collect();
    let (last, rest) = words.split_last().unwrap_or((&text, &[]));
    let rest = rest.join(", ");
    Err(format!("{text:?} is not {what}; use {rest} or {last}"))
}

/// `"auto"`, `"1.1"` or `"2"` (the numbers 1.1 and 2 too: TOML users write
/// them bare), with a hint for the usual other spellings ("http/2", "h2", "1.0").
pub(crate) fn http_version(value: &Value) -> Result<HttpSetting, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Integer(n) => n.to_string(),
        Value::Float(x) => x.to_string(),
        other => {
            return Err(format!(
                "must be \"auto\", \"1.1\" or \"2\", got {}",
                describe(other)
            ))
        }
    };
    match text.as_str() {
        "auto" => return Ok(HttpSetting::Auto),
        "1.1" => return Ok(HttpSetting::Http1),
        "2" => return Ok(HttpSetting::Http2),
        _ => {}
    }
    let lower = text.trim().to_ascii_lowercase();
    let bare = lower
        .trim_start_matches("http")
        .trim_start_matches(['/', 'h']);
    let near = match bare.chars().next() {
        Some('1') => "; did you mean \"1.1\"?".to_string(),
        Some('2') => "; did you mean \"2\"?".to_string(),
        _ => super::did_you_mean(&lower, ["auto", "1.1", "2"]),
    };
    Err(format!(
        "{text:?} is not an HTTP version; use \"auto\", \"1.1\" or \"2\"{near}"
    ))
}

/// A whole number within `min..=max`.
pub(crate) fn whole(value: &Value, min: i64, max: i64) -> Result<i64, String> {
    let range = match max {
        i64::MAX => format!("a whole number >= {min}"),
        _ => format!("a whole number between {min} and {max}"),
    };
    match value {
        Value::Integer(n) if (min..=max).contains(n) => Ok(*n),
        Value::Integer(n) => Err(format!("must be {range}, got {n}")),
        other => Err(format!("must be {range}, got {}", describe(other))),
    }
}

/// `true` or `false`.
pub(crate) fn boolean(value: &Value) -> Result<bool, String> {
    match value {
        Value::Boolean(b) => Ok(*b),
        other => Err(format!("must be true or false, got {}", describe(other))),
    }
}

/// A number, integer or float; the caller checks its range (NaN included).
pub(crate) fn number(value: &Value) -> Result<f64, String> {
    match value {
        Value::Integer(n) => Ok(*n as f64),
        Value::Float(x) => Ok(*x),
        other => Err(format!("must be a finite number, got {}", describe(other))),
    }
}

/// A job name goes into file names (`{name}`) and request ids: non-empty, no path separators.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        Err("must not be empty".into())
    } else if name.contains(['/', '\\']) {
        Err(format!(
            "{name:?} contains a path separator; the name is used in file names, so pick one without / or \\"
        ))
    } else {
        Ok(())
    }
}

/// An http(s) URL with a host, as the client will parse it (`reqwest::Url`),
/// checked here to catch typos before anything runs.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let example = "e.g. https://api.aimlapi.com/v1/chat/completions";
    let lower = url.to_ascii_lowercase();
    let schemes = ["https://", "http://"];
    let Some(rest) = schemes.iter().find_map(|s| lower.strip_prefix(s)) else {
        return Err(format!(
            "{url:?} is not an http:// or https:// URL ({example})"
        ));
    };
    if url.chars().any(char::is_whitespace) {
        return Err(format!("{url:?} contains whitespace"));
    }
    // `url` reads "https:///path" as the host "path"; the user forgot the host.
    if rest.starts_with('/') || rest.is_empty() {
        return Err(format!("{url:?} has no host ({example})"));
    }
    reqwest::Url::parse(url)
        .map(drop)
        .map_err(|e| format!("{url:?} is not a valid URL: {e} ({example})"))
}

/// The warning for an endpoint whose path is not `.../chat/completions`, or
/// None. The path is judged without the query (Azure OpenAI's
/// `.../chat/completions?api-version=...` is right), and the URL is quoted
/// without its user, password, query and fragment: a `?key=` or a password
/// there is a secret, and logs are kept.
pub fn endpoint_warning(url: &str) -> Option<String> {
    let (path, shown) = match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let path = parsed.path().to_string();
            // Only fails for URLs that cannot have a user (not http(s)).
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            (path, parsed.to_string())
        }
        Err(_) => return None,
    };
    if path.trim_end_matches('/').ends_with("/chat/completions") {
        return None;
    }
    Some(format!(
        "the endpoint {shown} does not end in /chat/completions; OpenAI-compatible servers answer at .../v1/chat/completions"
    ))
}

/// An HTTP header name is a token; a value has no line breaks (they would split the request).
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        let example = "letters, digits and -, e.g. X-Title";
        return Err(format!("{name:?} is not a valid header name ({example})"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        let what = "a control character or line break";
        return Err(format!("the value of header {name:?} contains {what}"));
    }
    Ok(())
}

/// The variable the key is read from: "" (no key) or a name `std::env::var` can look up.
pub(crate) fn check_key_env(name: &str) -> Result<(), String> {
    if name.contains(['=', '\0']) || name.chars().any(char::is_whitespace) {
        Err(format!(
            "{name:?} is not an environment variable name (e.g. AIMLAPI_API_KEY; \"\" sends no key)"
        ))
    } else {
        Ok(())
    }
}

/// A timeout in seconds: positive and small enough to be a `Duration`.
pub(crate) fn check_timeout(secs: f64) -> Result<Duration, String> {
    if secs.is_nan() || secs <= 0.0 {
        return Err(format!("must be more than 0 seconds, got {secs}"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{secs} seconds is too long"))
}

/// A sum of money: a finite number >= 0, described as `what` (`USD per 1M tokens >= 0`).
pub(crate) fn usd(value: &Value, what: &str) -> Result<f64, String> {
    match number(value)? {
        usd if usd.is_finite() && usd >= 0.0 => Ok(usd),
        usd => Err(format!("must be {what}, got {usd}")),
    }
}

/// The most a price may say, in USD per 1M tokens: $1 a token, over a thousand
/// times any price list. Past it a price is a typo, and a very large one
/// (1e308) overflowed every cost it entered: the estimate's `$inf`, a total of
/// `$0`, a run's costs recorded as unpriced.
pub(crate) const MAX_PRICE_PER_MILLION: f64 = 1_000_000.0;

/// A price in USD per 1M tokens: a finite number from 0 to [`MAX_PRICE_PER_MILLION`].
pub(crate) fn price(value: &Value) -> Result<f64, String> {
    match number(value)? {
        // -0.0 is in range, and would be written as a cost of -0.0.
        usd if (0.0..=MAX_PRICE_PER_MILLION).contains(&usd) => Ok(usd.abs()),
        usd => {
            // 1e308 as 1 followed by 308 digits says nothing more.
            let got = if usd.abs() < 1e15 {
                usd.to_string()
            } else {
                format!("{usd:e}")
            };
            Err(format!(
                "must be USD per 1M tokens >= 0 and at most {MAX_PRICE_PER_MILLION} ($1 a token), got {got}"
            ))
        }
    }
}

/// `-` is standard input; anything else a file relative to `base`.
pub(crate) fn input_source(text: &str, base: &Path) -> Result<InputSource, String> {
    match text {
        "-" => Ok(InputSource::Stdin),
        "" => Err("must not be empty; give a file, or - for standard input".into()),
        path => Ok(InputSource::File(base.join(path))),
    }
}

/// `[cache] dir`: a folder, relative to the job file's (or, as `--cache`, the working directory).
fn cache_dir(text: &str, base: &Path) -> Result<PathBuf, String> {
    match text {
        "" => Err("must not be empty; give a folder (it is made if missing)".into()),
        dir => Ok(base.join(dir)),
    }
}

/// `[cache] max_mb`: a size in MiB above zero (fractions allowed).
fn megabytes(value: &Value) -> Result<f64, String> {
    match number(value)? {
        mb if mb.is_finite() && mb > 0.0 && mb <= 1e9 => Ok(mb),
        mb => Err(format!(
            "must be a size in MiB above 0, e.g. 1024; got {mb}"
        )),
    }
}

/// An output or summary path: non-empty, and no placeholder but `{name}`,
/// `{date}`, `{datetime}` and `{shard}` (a typo such as `{data}` would otherwise become
/// a literal file name).
pub(crate) fn path_spec(text: &str, base: &Path) -> Result<PathSpec, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    // `--input -` is standard input, so `-` reads as standard output here;
    // it was a file named "-" in the working directory instead.
    if text == "-" {
        return Err("cannot be - (standard output): the output is a file a rerun resumes, and the summary a file beside it; --json prints the summary on standard output".into());
    }
    placeholder::check(text, &["name", "date", "datetime", "shard"]).map_err(|e| e.to_string())?;
    Ok(PathSpec {
        text: text.to_string(),
        base: base.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_warning_judges_the_path_and_quotes_no_secret() {
        for right in [
            "https://api.aimlapi.com/v1/chat/completions",
            "https://api.aimlapi.com/v1/chat/completions/",
            "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01",
        ] {
            assert_eq!(endpoint_warning(right), None, "{right}");
        }
        let warning =
            endpoint_warning("https://u:pw-secret@h.example/v1/completions?key=k-secret#f")
                .expect("a warning");
        assert!(
            warning.starts_with("the endpoint https://h.example/v1/completions does not end in"),
            "{warning}"
        );
        assert!(!warning.contains("secret"), "{warning}");
    }

    #[test]
    fn urls_need_http_scheme_and_host() {
        for ok in [
            "https://api.aimlapi.com/v1/chat/completions",
            "http://127.0.0.1:8000/v1/chat/completions",
            "HTTP://localhost",
            "http://[::1]:11434/v1/chat/completions",
            "https://user:pw@example.com/x?y#z",
        ] {
            assert!(check_url(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "api.aimlapi.com/v1",
            "ftp://example.com",
            "https://",
            "https:///path",
            "http://host:99999/",
            "http://exa mple.com",
            "http://[::1/x",
        ] {
            assert!(check_url(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn headers_must_be_tokens_without_line_breaks() {
        assert!(check_header("X-Title", "faq").is_ok());
        assert!(check_header("X Title", "faq").is_err());
        assert!(check_header("", "faq").is_err());
        assert!(check_header("X-Title", "a\r\nInjected: 1").is_err());
    }

    #[test]
    fn unknown_placeholders_are_rejected() {
        let base = Path::new("/tmp");
        assert!(path_spec("out/{name}-{date}.jsonl", base).is_ok());
        assert!(path_spec("out/{name}-{datetime}.jsonl", base).is_ok());
        assert!(path_spec("out/{}.jsonl", base).is_ok());
        let err = path_spec("out/{data}.jsonl", base).unwrap_err();
        assert!(err.contains("{data}"), "{err}");
        assert!(
            err.contains("{name}, {date}, {datetime} and {shard}"),
            "{err}"
        );
        assert!(path_spec("", base).is_err());
    }

    /// Regression: `--output -` wrote a file named "-".
    #[test]
    fn a_dash_is_not_taken_as_a_file_name() {
        let err = path_spec("-", Path::new("/tmp")).unwrap_err();
        assert!(
            err.contains("standard output") && err.contains("--json"),
            "{err}"
        );
        assert!(
            path_spec("./-", Path::new("/tmp")).is_ok(),
            "spelled as a path, it is one"
        );
    }

    #[test]
    fn http_versions_are_three_words_and_near_misses_get_a_hint() {
        let read = |v: Value| http_version(&v);
        assert_eq!(read(Value::String("auto".into())), Ok(HttpSetting::Auto));
        assert_eq!(read(Value::String("1.1".into())), Ok(HttpSetting::Http1));
        assert_eq!(read(Value::String("2".into())), Ok(HttpSetting::Http2));
        assert_eq!(read(Value::Integer(2)), Ok(HttpSetting::Http2));
        assert_eq!(read(Value::Float(1.1)), Ok(HttpSetting::Http1));
        for (bad, hint) in [
            ("HTTP/2", "did you mean \"2\"?"),
            ("h2c", "did you mean \"2\"?"),
            ("2.0", "did you mean \"2\"?"),
            ("http1", "did you mean \"1.1\"?"),
            ("1.0", "did you mean \"1.1\"?"),
            ("atuo", "did you mean \"auto\"?"),
        ] {
            let err = read(Value::String(bad.into())).unwrap_err();
            assert!(
                err.contains(hint) && err.contains("use \"auto\", \"1.1\" or \"2\""),
                "{bad}: {err}"
            );
        }
        assert!(read(Value::Integer(3))
            .unwrap_err()
            .contains("not an HTTP version"));
        assert!(read(Value::Boolean(true)).is_err());
    }

    #[test]
    fn timeouts_and_budgets_are_bounded() {
        assert_eq!(check_timeout(1.5), Ok(Duration::from_millis(1500)));
        assert!(check_timeout(0.0).is_err());
        assert!(check_timeout(f64::NAN).is_err());
        assert!(check_timeout(1e300).is_err());
        let budget = |x: f64| usd(&Value::Float(x), "USD");
        assert!(budget(0.0).is_ok());
        assert!(budget(-1.0).is_err());
        assert!(budget(f64::INFINITY).is_err());
    }
}
