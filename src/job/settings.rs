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

mod values;
pub use values::endpoint_warning;
pub(crate) use values::*;

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
