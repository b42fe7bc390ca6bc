//! Server JSON kept as text: [`RawJson`], and the passes over it that need no tree.
//!
//! What a reply passes through to the record (`tool_calls`) is kept as the
//! server's own JSON text, never as a `serde_json::Value`: a tree costs about
//! 30 times its text (16 MiB of `{}` took 490 MB), text costs once its size.
//! The text is compacted when kept (a record is one line) and redacted string
//! by string ([`map_strings`]), so no pass can break it.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON value kept as compact text.
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Keeps `raw` compacted: whitespace outside strings removed.
    pub fn compacted(raw: &RawValue) -> RawJson {
        let text = compact(raw.get());
        // Removing whitespace between tokens keeps valid JSON valid.
        match RawValue::from_string(text) {
            Ok(value) => RawJson(value),
            Err(_) => RawJson(raw.to_owned()),
        }
    }

    /// A value written straight to compact text, no tree between.
    pub fn of<T: Serialize>(value: &T) -> Result<RawJson, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(RawJson)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Replaces every string token with what `f` returns for its decoded
    /// text (`None`: unchanged). The result is valid JSON whatever `f` returns.
    pub fn map_strings(&self, f: impl FnMut(&str) -> Option<String>) -> RawJson {
        let text = map_strings(self.get(), f);
        match RawValue::from_string(text) {
            Ok(value) => RawJson(value),
            // Cannot happen (only whole string tokens are replaced, each by
            // an encoded string); if it did, the original text might still
            // hold what `f` was removing: nothing is kept rather than that.
            Err(_) => RawJson(RawValue::NULL.to_owned()),
        }
    }

    /// Whether this is a value worth keeping: not null, not an empty list.
    pub fn is_empty_or_null(&self) -> bool {
        let text = self.get().trim();
        text == "null" || (text.starts_with('[') && text[1..].trim() == "]")
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawJson, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(RawJson)
    }
}

/// The end (exclusive) of the string token starting at `start` (a quote).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// `text` with every `\u` escape of a surrogate that is not half of a
/// pair written as `\ufffd`. A lone surrogate is valid JSON text but no
/// string: a reader fails the whole document on one, and a reply thrown away
/// is paid for again (a retry gets the same), while a skipped field would
/// keep the escape into the record, unredacted. Borrowed when there is none.
pub fn repair_lone_surrogates(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let surrogate_at = |i: usize| -> Option<u16> {
        let hex = bytes.get(i..i + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        let unit = u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()?;
        (0xD800..=0xDFFF).contains(&unit).then_some(unit)
    };
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match surrogate_at(i) {
            // A high surrogate followed by a low one: a pair, kept.
            Some(0xD800..=0xDBFF) if surrogate_at(i + 6).is_some_and(|low| low >= 0xDC00) => {
                i += 12
            }
            Some(_) => {
                out.push_str(&text[copied..i]);
                out.push_str("\\ufffd");
                i += 6;
                copied = i;
            }
            // Any other escape, `\\` included: both bytes are skipped.
            None => i += 2,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// `text` made readable by a JSON reader that decodes what it keeps: lone
/// surrogates repaired, then numbers past the range of a double quoted.
pub fn readable(text: &str) -> Cow<'_, str> {
    match repair_lone_surrogates(text) {
        Cow::Borrowed(text) => quote_overflowing_numbers(text),
        Cow::Owned(repaired) => Cow::Owned(quote_overflowing_numbers(&repaired).into_owned()),
    }
}

/// `text` with every number outside strings that no double holds (`1e400`)
/// written as a string. A reader fails the whole document on one where it
/// decodes it (a token count, a cost), so a paid reply was thrown away and
/// paid again; as a string it is one bad figure (bad usage, no cost), as the
/// checks on numbers from servers want. Borrowed when there is none.
pub fn quote_overflowing_numbers(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i),
            b'-' | b'0'..=b'9' => {
                let end = (bytes[i..].iter())
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(bytes.len(), |n| i + n);
                // ASCII only: `i..end` are char boundaries.
                let token = &text[i..end];
                // Only an exponent or more than 308 digits can pass f64::MAX.
                let may_overflow = token.len() > 308 || token.contains(['e', 'E']);
                if may_overflow && token.parse::<f64>().is_ok_and(f64::is_infinite) {
                    out.push_str(&text[copied..i]);
                    out.push('"');
                    out.push_str(token);
                    out.push('"');
                    copied = end;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// JSON text without whitespace outside strings.
pub fn compact(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i);
                out.push_str(&text[i..end]);
                i = end;
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            _ => {
                // Up to the next quote or whitespace: ASCII, so a char boundary.
                let end = bytes[i..]
                    .iter()
                    .position(|b| matches!(b, b'"' | b' ' | b'\t' | b'\n' | b'\r'))
                    .map_or(bytes.len(), |n| i + n);
                out.push_str(&text[i..end]);
                i = end;
            }
        }
    }
    out
}

/// `text` with each string token replaced, re-encoded, by what `f` returns
/// for its decoded value. A token that does not decode is left as it is.
pub fn map_strings(text: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let end = string_end(bytes, i);
        let token = &text[i..end];
        let replaced = serde_json::from_str::<String>(token)
            .ok()
            .and_then(|decoded| f(&decoded));
        if let Some(new) = replaced {
            out.push_str(&text[copied..i]);
            // Encoding a string cannot fail; the fallback keeps the token.
            out.push_str(&serde_json::to_string(&new).unwrap_or_else(|_| token.to_string()));
            copied = end;
        }
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawJson {
        RawJson::compacted(&RawValue::from_string(text.to_string()).unwrap())
    }

    #[test]
    fn compacting_keeps_strings_and_values() {
        let kept = raw("[ {\"id\" :\n \"a b\\\" \\\\\" , \"n\": 1.50e3,\t\"x\":[ ]} ]");
        assert_eq!(kept.get(), r#"[{"id":"a b\" \\","n":1.50e3,"x":[]}]"#);
        let tree: serde_json::Value = serde_json::from_str(kept.get()).unwrap();
        assert_eq!(tree[0]["id"], "a b\" \\");
        assert!(raw("null").is_empty_or_null());
        assert!(raw("[ ]").is_empty_or_null());
        assert!(!raw("[{}]").is_empty_or_null());
    }

    #[test]
    fn mapping_strings_never_breaks_the_json() {
        // Replacements holding quotes, backslashes and control characters
        // are encoded; escaped forms in the text are decoded before `f` sees them.
        let text = r#"{"k\u0065y":"a\"b\\c sk\u002dsecret","n":12,"s":"sk-secret"}"#;
        let out = map_strings(text, |s| {
            s.contains("sk-secret")
                .then(|| s.replace("sk-secret", "\"\\\n[redacted]"))
        });
        let tree: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(tree["key"], "a\"b\\c \"\\\n[redacted]");
        assert_eq!(tree["s"], "\"\\\n[redacted]");
        assert_eq!(tree["n"], 12);
        // Numbers and keywords are never strings: untouched.
        assert_eq!(map_strings("[12,true]", |_| Some("x".into())), "[12,true]");
    }

    #[test]
    fn numbers_past_a_double_become_strings() {
        let text = r#"{"a":1e400,"b":-2E+999,"c":"1e400","d":[1.5e3,12,1e-400],"e":1e308}"#;
        let quoted = quote_overflowing_numbers(text);
        assert_eq!(
            quoted,
            r#"{"a":"1e400","b":"-2E+999","c":"1e400","d":[1.5e3,12,1e-400],"e":1e308}"#
        );
        let long = format!("[{}]", "9".repeat(400));
        assert_eq!(
            quote_overflowing_numbers(&long),
            format!("[\"{}\"]", "9".repeat(400))
        );
        assert!(matches!(
            quote_overflowing_numbers("[1e300,\"1e999\"]"),
            Cow::Borrowed(_)
        ));
        assert_eq!(readable(r#"[1e999,"\ud800"]"#), r#"["1e999","\ufffd"]"#);
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let text =
            r#"["\ud83d\ude00","a\ud800b","\udc00","\\ud800","\ud800\ud800\udc00","\uD800"]"#;
        let repaired = repair_lone_surrogates(text);
        let strings: Vec<String> = serde_json::from_str(&repaired).unwrap();
        assert_eq!(
            strings,
            [
                "\u{1F600}",
                "a\u{FFFD}b",
                "\u{FFFD}",
                "\\ud800",
                "\u{FFFD}\u{10000}",
                "\u{FFFD}"
            ]
        );
        // Nothing to repair: the text itself, not a copy.
        assert!(matches!(
            repair_lone_surrogates(r#"["\ud83d\ude00 \\ud800"]"#),
            Cow::Borrowed(_)
        ));
    }
}
