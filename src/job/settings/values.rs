//! The checks of single setting values: each reads one TOML value (or a
//! flag's text) and says what is wrong with it in words a user can act on.
//! The table of keys in `settings.rs` names which check each key uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;

use super::PathSpec;
use crate::job::placeholder;
use crate::job::problem::describe;
use crate::job::{HttpSetting, InputSource};
use crate::template::Template;

/// `["{{photo}}", ...]`: a list of templates, each checked.
pub(super) fn templates(value: &Value) -> Result<Vec<Template>, String> {
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

pub(super) fn string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("must be a string, got {}", describe(other))),
    }
}

/// A string that passes `check`.
pub(super) fn checked(
    value: &Value,
    check: fn(&str) -> Result<(), String>,
) -> Result<String, String> {
    let text = string(value)?;
    check(&text).map(|()| text)
}

/// One of a few words, e.g. `"csv"`.
pub(super) fn choose<T: Copy>(
    value: &Value,
    what: &str,
    choices: &[(&str, T)],
) -> Result<T, String> {
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
        _ => crate::job::did_you_mean(&lower, ["auto", "1.1", "2"]),
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
pub(super) fn cache_dir(text: &str, base: &Path) -> Result<PathBuf, String> {
    match text {
        "" => Err("must not be empty; give a folder (it is made if missing)".into()),
        dir => Ok(base.join(dir)),
    }
}

/// `[cache] max_mb`: a size in MiB above zero (fractions allowed).
pub(super) fn megabytes(value: &Value) -> Result<f64, String> {
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
