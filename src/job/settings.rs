//! The job's scalar settings as one source gives them (the job file or the
//! flags), each already checked where it was written, and the checks both
//! sources share so a bad value reads the same from either.
//!
//! Merging is then field by field: a flag beats the file, the file beats the
//! default. Checking at the source means a bad value in the file is reported
//! even when a flag overrides it: the file is still wrong and will bite the
//! next run that lacks the flag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::toml_walk::Problems;
use super::{Format, InputSource, SystemMode};
use crate::template::Template;

/// Most requests in flight that a job may ask for: beyond this, sockets and
/// memory run out before any endpoint could keep up.
pub(crate) const MAX_CONCURRENCY: usize = 10_000;
pub(crate) const MAX_ATTEMPTS: u32 = 100;

pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const DEFAULT_MAX_REPLY_BYTES: u64 = 16 * 1024 * 1024;
pub(crate) const DEFAULT_MAX_ATTEMPT_SECS: u64 = 1800;
pub(crate) const DEFAULT_CONCURRENCY: usize = 16;
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub(crate) const DEFAULT_INITIAL_BACKOFF_MS: u64 = 500;
pub(crate) const DEFAULT_MAX_BACKOFF_MS: u64 = 60_000;

/// A path that may hold `{name}` and `{date}`, expanded once the name is known.
#[derive(Debug, Clone)]
pub(crate) struct PathSpec {
    pub text: String,
    /// The folder a relative path is relative to.
    pub base: PathBuf,
}

impl PathSpec {
    pub fn resolve(&self, name: &str, today: &str) -> PathBuf {
        let expanded = self.text.replace("{name}", name).replace("{date}", today);
        self.base.join(expanded)
    }
}

/// Every setting one source can give; `None` = not given there.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    pub name: Option<String>,
    pub url: Option<String>,
    pub api_key_env: Option<String>,
    pub timeout: Option<Duration>,
    pub headers: Vec<(String, String)>,
    pub max_reply_bytes: Option<u64>,
    pub max_attempt_secs: Option<u64>,
    pub input: Option<InputSource>,
    pub format: Option<Format>,
    pub id: Option<Template>,
    /// `Some("")` clears a system message set elsewhere (`--system ''`).
    pub system: Option<String>,
    pub system_mode: Option<SystemMode>,
    pub template: Option<Template>,
    pub output: Option<PathSpec>,
    pub summary: Option<PathSpec>,
    pub concurrency: Option<usize>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    pub max_cost_usd: Option<f64>,
    pub max_attempts: Option<u32>,
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
}

impl Settings {
    /// `self` (the flags) over `under` (the job file). Headers merge by name,
    /// case-insensitively, the flag's value replacing the file's in place.
    pub fn over(self, under: Settings) -> Settings {
        let mut headers = under.headers;
        for (name, value) in self.headers {
            match headers
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            {
                Some(slot) => *slot = (name, value),
                None => headers.push((name, value)),
            }
        }
        Settings {
            name: self.name.or(under.name),
            url: self.url.or(under.url),
            api_key_env: self.api_key_env.or(under.api_key_env),
            timeout: self.timeout.or(under.timeout),
            headers,
            max_reply_bytes: self.max_reply_bytes.or(under.max_reply_bytes),
            max_attempt_secs: self.max_attempt_secs.or(under.max_attempt_secs),
            input: self.input.or(under.input),
            format: self.format.or(under.format),
            id: self.id.or(under.id),
            system: self.system.or(under.system),
            system_mode: self.system_mode.or(under.system_mode),
            template: self.template.or(under.template),
            output: self.output.or(under.output),
            summary: self.summary.or(under.summary),
            concurrency: self.concurrency.or(under.concurrency),
            requests_per_minute: self.requests_per_minute.or(under.requests_per_minute),
            tokens_per_minute: self.tokens_per_minute.or(under.tokens_per_minute),
            max_cost_usd: self.max_cost_usd.or(under.max_cost_usd),
            max_attempts: self.max_attempts.or(under.max_attempts),
            initial_backoff_ms: self.initial_backoff_ms.or(under.initial_backoff_ms),
            max_backoff_ms: self.max_backoff_ms.or(under.max_backoff_ms),
        }
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

/// An http(s) URL with a host. Checked by hand: the client parses it for real
/// later; this only catches typos before anything runs.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let example = "e.g. https://api.aimlapi.com/v1/chat/completions";
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err(format!(
            "{url:?} is not an http:// or https:// URL ({example})"
        ));
    };
    if url.chars().any(char::is_whitespace) {
        return Err(format!("{url:?} contains whitespace"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return Err(format!("{url:?} has an unclosed [ in its host")),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host ({example})"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(format!("{url:?} has a bad port {port:?}"));
        }
    }
    Ok(())
}

/// An HTTP header name is a token; a value has no line breaks (they would split the request).
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!(
            "{name:?} is not a valid header name (letters, digits and -, e.g. X-Title)"
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "the value of header {name:?} contains a control character or line break"
        ));
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

pub(crate) fn check_max_cost(usd: f64) -> Result<f64, String> {
    if usd.is_finite() && usd >= 0.0 {
        Ok(usd)
    } else {
        Err(format!(
            "must be a number of USD >= 0 (0 = no budget), got {usd}"
        ))
    }
}

pub(crate) fn parse_format(text: &str) -> Result<Format, String> {
    match text {
        "jsonl" => Ok(Format::Jsonl),
        "csv" => Ok(Format::Csv),
        other => Err(format!(
            "{other:?} is not a format; use \"jsonl\" or \"csv\""
        )),
    }
}

pub(crate) fn parse_system_mode(text: &str) -> Result<SystemMode, String> {
    match text {
        "auto" => Ok(SystemMode::Auto),
        "message" => Ok(SystemMode::Message),
        "fold" => Ok(SystemMode::Fold),
        other => Err(format!(
            "{other:?} is not a system mode; use \"auto\", \"message\" or \"fold\""
        )),
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

/// An output or summary path: non-empty, and no placeholder but `{name}` and `{date}`
/// (a typo such as `{data}` would otherwise become a literal file name).
pub(crate) fn path_spec(text: &str, base: &Path) -> Result<PathSpec, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let word = &after[..close];
        let is_word = !word.is_empty() && word.chars().all(|c| c.is_alphanumeric() || c == '_');
        if is_word && word != "name" && word != "date" {
            return Err(format!(
                "unknown placeholder {{{word}}} in {text:?}; the placeholders are {{name}} and {{date}}"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(PathSpec {
        text: text.to_string(),
        base: base.to_path_buf(),
    })
}

/// `x.jsonl` → `x.summary.json`; anything else gets `.summary.json` appended.
pub(crate) fn summary_for(output: &Path) -> PathBuf {
    let text = output.as_os_str().to_string_lossy();
    match text.strip_suffix(".jsonl") {
        Some(stem) if !stem.is_empty() && !stem.ends_with(['/', '\\']) => {
            PathBuf::from(format!("{stem}.summary.json"))
        }
        _ => PathBuf::from(format!("{text}.summary.json")),
    }
}

/// The format a file name implies: `.jsonl`/`.ndjson` or `.csv`, any case.
pub(crate) fn format_from_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "csv" => Some(Format::Csv),
        _ => None,
    }
}

/// Reports `result`'s error at `place` and passes its value on.
pub(crate) fn report<T>(
    result: Result<T, String>,
    place: impl Into<String>,
    problems: &mut Problems,
) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(message) => {
            problems.push(place, message);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn summary_paths_replace_or_append() {
        assert_eq!(
            summary_for(Path::new("out/x.jsonl")),
            PathBuf::from("out/x.summary.json")
        );
        assert_eq!(
            summary_for(Path::new("out/x.out")),
            PathBuf::from("out/x.out.summary.json")
        );
        assert_eq!(
            summary_for(Path::new("out/.jsonl")),
            PathBuf::from("out/.jsonl.summary.json")
        );
    }

    #[test]
    fn unknown_placeholders_are_rejected() {
        let base = Path::new("/tmp");
        assert!(path_spec("out/{name}-{date}.jsonl", base).is_ok());
        assert!(path_spec("out/{}.jsonl", base).is_ok());
        let err = path_spec("out/{data}.jsonl", base).unwrap_err();
        assert!(err.contains("{data}"), "{err}");
        assert!(path_spec("", base).is_err());
    }

    #[test]
    fn timeouts_and_budgets_are_bounded() {
        assert_eq!(check_timeout(1.5), Ok(Duration::from_millis(1500)));
        assert!(check_timeout(0.0).is_err());
        assert!(check_timeout(f64::NAN).is_err());
        assert!(check_timeout(1e300).is_err());
        assert!(check_max_cost(0.0).is_ok());
        assert!(check_max_cost(-1.0).is_err());
        assert!(check_max_cost(f64::INFINITY).is_err());
    }
}
