//! Secrets out of everything a server can make us write: the [`Redactor`].
//!
//! The secrets are the API key and the value of every configured header whose
//! name says it carries a credential (see `http::is_secret_header`). Servers
//! echo them ("Incorrect API key provided: sk-..."), and a hostile or broken
//! one may put them anywhere in a reply, so every string a reply or a failure
//! carries passes through here when it leaves the client
//! ([`Redactor::reply`], [`Redactor::failure`]).
//!
//! What is removed, replaced by `[redacted]`:
//! - every run of 8 or more characters that also occurs in a secret, so a
//!   server that echoes half a key (or a masked one) leaks no part of it
//!   (counted in bytes: header values, the key included, are ASCII);
//! - every whole occurrence of a secret shorter than that. A short value is
//!   still a secret (an `X-Auth-Mode: on` header redacts every "on" a server
//!   sends): the header's name decides, not its value;
//! - in messages also across whitespace and in any ASCII case (see
//!   [`Redactor::redact_message`]);
//! - each secret also in the forms a reply may carry it: JSON-escaped
//!   (`\/`, `\"`, `\\`), percent-encoded, and with whitespace runs collapsed
//!   (as error messages are). Text is matched after JSON parsing, so other
//!   escapes are already undone.
//!
//! Bytes the client itself reads only up to a cap (an error body) are cut
//! before they can be redacted: [`Redactor::drop_cut_head`] removes what may
//! be the head of a secret at that cut.
//!
//! Redaction must run before any text is cut short, or a key straddling the
//! cut leaves its head behind where no match can find it. The client cuts
//! server text in one place (`error_body::truncate`), deep inside pure
//! parsing functions; rather than thread the redactor through every one of
//! them, [`Redactor::scope`] makes it the attempt's redactor for the
//! duration of the attempt and [`redact_current`] applies it just before a cut.
//!
//! With no secret configured every call returns at once: no cost per request.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde_json::Value;

use super::{Failure, RawJson, Reply};

/// What a secret, or a part of one, is replaced with.
pub const REDACTED: &str = "[redacted]";
/// Parts of a secret this long or longer are removed wherever they appear.
pub const PART: usize = 8;

tokio::task_local! {
    /// The redactor of the attempt being polled, for [`redact_current`].
    static CURRENT: Redactor;
}

/// Removes secrets from text. Cheap to clone; built once per client.
#[derive(Clone, Default)]
pub struct Redactor {
    /// `None` when there is no secret: every call is then a no-op.
    patterns: Option<Arc<Patterns>>,
}

struct Patterns {
    /// Every `PART`-byte window of every form of every long secret.
    windows: HashSet<u64, BuildHasherDefault<WindowHasher>>,
    /// Forms shorter than `PART` bytes, matched whole.
    short: Vec<String>,
    /// Every `PART`-byte window of every long secret with its whitespace
    /// removed and ASCII lowercased, matched in messages against their text
    /// made the same way (a key echoed upper-cased, percent-encoded with
    /// lowercase hex, or wrapped over lines).
    unspaced: HashSet<u64, BuildHasherDefault<WindowHasher>>,
    /// The first `PART` bytes of every form (all of a shorter one): a text
    /// cut in the middle of a secret may end with fewer than `PART` bytes of
    /// it, which no window matches.
    heads: Vec<Vec<u8>>,
}

impl fmt::Debug for Redactor {
    // By hand: the derived one would print the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("active", &self.patterns.is_some())
            .finish()
    }
}

impl Redactor {
    /// A redactor for these secrets; empty (and blank) ones are ignored.
    pub fn new<I, S>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut forms: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.trim().is_empty() {
                continue;
            }
            forms.push(secret.to_string());
            forms.push(json_escaped(secret));
            forms.push(secret.replace('/', "\\/"));
            forms.push(percent_encoded(secret));
            forms.push(secret.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        forms.sort();
        forms.dedup();
        if forms.is_empty() {
            return Redactor::default();
        }
        let mut windows = HashSet::default();
        let mut short = Vec::new();
        let mut heads = Vec::new();
        let mut unspaced = HashSet::default();
        for form in &forms {
            let bare: Vec<u8> = form
                .bytes()
                .filter(|b| !b.is_ascii_whitespace())
                .map(|b| b.to_ascii_lowercase())
                .collect();
            unspaced.extend(bare.windows(PART).map(window_key));
        }
        for form in forms {
            heads.push(form.as_bytes()[..form.len().min(PART)].to_vec());
            if form.len() >= PART {
                windows.extend(form.as_bytes().windows(PART).map(window_key));
            } else {
                short.push(form);
            }
        }
        Redactor {
            patterns: Some(Arc::new(Patterns {
                windows,
                short,
                unspaced,
                heads,
            })),
        }
    }

    /// Whether there is any secret to remove.
    pub fn is_active(&self) -> bool {
        self.patterns.is_some()
    }

    /// `text` without any secret or part of one; borrowed when nothing was found.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.redact_with(text, false)
    }

    /// For messages: also a secret broken up by whitespace (a key wrapped
    /// over lines, split over SSE `data:` lines that then collapse to
    /// spaces), in pieces each shorter than a window, or in another ASCII
    /// case. Messages are short; replies are not scanned this way.
    pub fn redact_message<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.redact_with(text, true)
    }

    fn redact_with<'a>(&self, text: &'a str, across_whitespace: bool) -> Cow<'a, str> {
        let Some(patterns) = &self.patterns else {
            return Cow::Borrowed(text);
        };
        let spans = patterns.spans(text, across_whitespace);
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            out.push_str(&text[at..start]);
            out.push_str(REDACTED);
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// For bytes cut short before they could be redacted (a body read up to
    /// a cap): drops an end that may be the head of a secret cut in two, too
    /// short for any window to match once the rest is gone. At worst a few
    /// innocent bytes at the cut go too.
    pub fn drop_cut_head(&self, bytes: &mut Vec<u8>) {
        let Some(patterns) = &self.patterns else {
            return;
        };
        let longest = patterns
            .heads
            .iter()
            .flat_map(|head| (1..head.len()).filter(|k| bytes.ends_with(&head[..*k])))
            .max();
        if let Some(len) = longest {
            bytes.truncate(bytes.len() - len);
        }
    }

    /// Redacts a string in place, allocating only when a secret was found.
    pub fn redact_string(&self, text: &mut String) {
        if let Cow::Owned(redacted) = self.redact(text) {
            *text = redacted;
        }
    }

    /// Redacts every string in JSON text, object keys included: string by
    /// string, each decoded (so escaped forms are matched) and encoded again,
    /// so a secret holding a quote or a backslash cannot break the JSON.
    pub fn redact_json(&self, json: &RawJson) -> RawJson {
        if !self.is_active() {
            return json.clone();
        }
        json.map_strings(|text| match self.redact(text) {
            Cow::Owned(redacted) => Some(redacted),
            Cow::Borrowed(_) => None,
        })
    }

    /// Every string of a reply a server wrote.
    pub fn reply(&self, mut reply: Reply) -> Reply {
        if !self.is_active() {
            return reply;
        }
        let Reply {
            content,
            finish_reason,
            response_id,
            provider,
            response_model,
            tool_calls,
            refusal,
            // Set after redaction, from the content redacted here.
            json: _,
            usage: _,
            provider_cost_usd: _,
            latency_ms: _,
            ttft_ms: _,
            // Numbers only: nothing a key could hide in.
            rate_limits: _,
        } = &mut reply;
        for text in [
            content,
            finish_reason,
            response_id,
            provider,
            response_model,
            refusal,
        ]
        .into_iter()
        .flatten()
        {
            self.redact_string(text);
        }
        if let Some(calls) = tool_calls {
            *calls = self.redact_json(calls);
        }
        reply
    }

    /// Every string of a failure: its message and the server's error code.
    pub fn failure(&self, mut failure: Failure) -> Failure {
        for text in std::iter::once(&mut failure.message).chain(failure.error_code.as_mut()) {
            if let Cow::Owned(redacted) = self.redact_message(text) {
                *text = redacted;
            }
        }
        failure
    }

    /// Runs `future` (one attempt) with this as the redactor [`redact_current`] applies.
    pub async fn scope<F: Future>(&self, future: F) -> F::Output {
        if !self.is_active() {
            return future.await;
        }
        CURRENT.scope(self.clone(), future).await
    }
}

/// Redacts with the redactor of the attempt being run, if any: for code
/// about to cut server text short (see the module comment).
pub fn redact_current(text: &str) -> Cow<'_, str> {
    CURRENT
        .try_with(|redactor| match redactor.redact_message(text) {
            Cow::Borrowed(_) => None,
            Cow::Owned(redacted) => Some(redacted),
        })
        .ok()
        .flatten()
        .map_or(Cow::Borrowed(text), Cow::Owned)
}

impl Patterns {
    /// The byte ranges to replace: sorted, merged, on char boundaries.
    fn spans(&self, text: &str, across_whitespace: bool) -> Vec<(usize, usize)> {
        let mut found: Vec<(usize, usize)> = Vec::new();
        if !self.windows.is_empty() {
            for (start, window) in text.as_bytes().windows(PART).enumerate() {
                if self.windows.contains(&window_key(window)) {
                    found.push((start, start + PART));
                }
            }
        }
        if across_whitespace && !self.unspaced.is_empty() {
            // The text without whitespace, and where each byte left came from:
            // a window matched there spans from its first byte to its last.
            let (bare, at): (Vec<u8>, Vec<usize>) = text
                .bytes()
                .enumerate()
                .filter(|(_, b)| !b.is_ascii_whitespace())
                .map(|(i, b)| (b.to_ascii_lowercase(), i))
                .unzip();
            for (start, window) in bare.windows(PART).enumerate() {
                if self.unspaced.contains(&window_key(window)) {
                    found.push((at[start], at[start + PART - 1] + 1));
                }
            }
            found.sort_unstable();
        }
        if !self.short.is_empty() {
            for form in &self.short {
                // Overlapping occurrences too: "aaa" in "aaaa" leaves no "a" behind.
                let step = form.chars().next().map_or(1, char::len_utf8);
                let mut from = 0;
                while let Some(at) = text.get(from..).and_then(|rest| rest.find(form.as_str())) {
                    found.push((from + at, from + at + form.len()));
                    from += at + step;
                }
            }
            found.sort_unstable();
        }
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(found.len().min(16));
        for (mut start, mut end) in found {
            // A window may begin or end inside a multi-byte character (secrets
            // in headers are ASCII, text is not): widen it to whole characters.
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            while !text.is_char_boundary(end) {
                end += 1;
            }
            match spans.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => spans.push((start, end)),
            }
        }
        spans
    }
}

fn window_key(window: &[u8]) -> u64 {
    let mut key = [0u8; PART];
    key.copy_from_slice(window);
    u64::from_le_bytes(key)
}

/// The windows are already 8 bytes of text: one multiply spreads them well
/// enough, and costs a fraction of SipHash on every byte of every reply.
#[derive(Default)]
struct WindowHasher(u64);

impl Hasher for WindowHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The secret as it appears inside a JSON string.
fn json_escaped(secret: &str) -> String {
    let quoted = Value::String(secret.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// The secret as it appears in a URL.
fn percent_encoded(secret: &str) -> String {
    let mut out = String::with_capacity(secret.len());
    for byte in secret.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
