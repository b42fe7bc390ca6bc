//! The resume scan's fast reader of one output line: the few fields of a
//! [`RecordHead`], found by walking the line's top-level object and
//! skipping every other value without decoding it.
//!
//! An output line is about a kilobyte, most of it the reply's text, the
//! row and the parameters; a million of them are a gigabyte that every
//! rerun reads. Skipping a string here is a search for its closing quote
//! (`memchr`), not a character-by-character decode.
//!
//! It is a fast path, never a second opinion: it accepts only what is
//! valid JSON of the record's shape (UTF-8, string escapes, no control
//! character, number grammar, nesting depth, no field given twice), and
//! gives up on anything else, which the caller then hands to serde (the
//! full parse), so an odd line gets exactly the full parse's decision and
//! error message.

use std::borrow::Cow;

use serde::de::IgnoredAny;

use super::record::{Lenient, RecordHead, Status, UsageHead};

/// Deeper nesting than a run writes: serde's to judge.
const MAX_DEPTH: usize = 100;

/// The head of `line`, or None when the fast path does not vouch for it
/// (then the full parse decides).
pub fn read(line: &[u8]) -> Option<RecordHead<'_>> {
    read_each(line, |_, _| {})
}

/// [`read`], handing `each` every field it walks (name as written, quotes
/// included, and raw value): another reader of the line takes its own
/// fields in the same walk. Some fields may have been handed over when it
/// then gives up.
pub fn read_each<'a>(
    line: &'a [u8],
    mut each: impl FnMut(&'a [u8], &'a [u8]),
) -> Option<RecordHead<'a>> {
    let mut head = Fields::default();
    fields(line, |name, value| {
        each(name, value);
        head.take(name, value)
    })?;
    head.finish()
}

/// Writes into `out` the object of `line` cut down to the fields named in
/// `keep` (names with their quotes, e.g. `"\"key\""`), for serde to parse
/// as a small line; None when the fast path does not vouch for the line
/// (then the full line is serde's to parse). A field given twice is kept
/// twice: serde refuses the small line as it would the whole one.
pub fn slim(line: &[u8], keep: &[&[u8]], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    out.push(b'{');
    fields(line, |name, value| {
        if name.contains(&b'\\') {
            return None;
        }
        if keep.contains(&name) {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(name);
            out.push(b':');
            out.extend_from_slice(value);
        }
        Some(())
    })?;
    out.push(b'}');
    Some(())
}

/// Walks the one object `line` holds, handing `each` every field's name
/// (as written, quotes included) and raw value; None when the line is not
/// one plain object or `each` gives up on a field.
fn fields<'a>(
    line: &'a [u8],
    mut each: impl FnMut(&'a [u8], &'a [u8]) -> Option<()>,
) -> Option<()> {
    plain(line)?;
    let mut p = Parser { s: line, at: 0 };
    p.ws();
    p.eat(b'{')?;
    p.ws();
    if p.peek()? == b'}' {
        p.at += 1;
    } else {
        loop {
            p.ws();
            let name = p.string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let start = p.at;
            p.value(1)?;
            each(name, &line[start..p.at])?;
            p.ws();
            match p.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    p.ws();
    (p.at == line.len()).then_some(())
}

/// UTF-8 without a control character: a run writes every one of them
/// escaped and puts no whitespace between tokens, and a raw one inside a
/// string is not JSON (a line with one is serde's to judge). One pass over
/// the whole line, which the compiler vectorizes, instead of a check per string.
fn plain(line: &[u8]) -> Option<()> {
    let control = line.iter().fold(false, |seen, b| seen | (*b < 0x20));
    (!control && std::str::from_utf8(line).is_ok()).then_some(())
}

/// The raw values of the fields a head keeps, each at most once.
#[derive(Default)]
struct Fields<'a> {
    key: Option<&'a [u8]>,
    status: Option<&'a [u8]>,
    request_sha256: Option<&'a [u8]>,
    cost_usd: Option<&'a [u8]>,
    budget_charge_usd: Option<&'a [u8]>,
    prior_charge_usd: Option<&'a [u8]>,
    model: Option<&'a [u8]>,
    usage: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// Notes the value of field `name` (a raw JSON string, quotes included).
    fn take(&mut self, name: &[u8], raw: &'a [u8]) -> Option<()> {
        let slot = match name {
            b"\"key\"" => &mut self.key,
            b"\"status\"" => &mut self.status,
            b"\"request_sha256\"" => &mut self.request_sha256,
            b"\"cost_usd\"" => &mut self.cost_usd,
            b"\"budget_charge_usd\"" => &mut self.budget_charge_usd,
            b"\"prior_charge_usd\"" => &mut self.prior_charge_usd,
            b"\"model\"" => &mut self.model,
            b"\"usage\"" => &mut self.usage,
            // A name with an escape might spell one of the above: serde decides.
            other if other.contains(&b'\\') => return None,
            _ => return Some(()),
        };
        if slot.is_some() {
            // serde refuses a field given twice.
            return None;
        }
        *slot = Some(raw);
        Some(())
    }

    fn finish(self) -> Option<RecordHead<'a>> {
        let status = match self.status? {
            b"\"ok\"" => Status::Ok,
            b"\"error\"" => Status::Error,
            _ => return None,
        };
        Some(RecordHead {
            key: text(self.key?)?,
            status,
            request_sha256: match self.request_sha256 {
                Some(raw) => text(raw)?,
                None => Cow::Borrowed(""),
            },
            cost_usd: figure(self.cost_usd)?,
            budget_charge_usd: figure(self.budget_charge_usd)?,
            prior_charge_usd: figure(self.prior_charge_usd)?,
            model: match self.model {
                None | Some(b"null") => None,
                Some(raw) => Some(text(raw)?),
            },
            usage: match self.usage {
                None | Some(b"null") => None,
                Some(raw) => Some(usage(raw)?),
            },
        })
    }
}

/// A JSON string's text, borrowed from the line unless it has escapes.
fn text(raw: &[u8]) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.contains(&b'\\') {
        return serde_json::from_slice::<String>(raw).ok().map(Cow::Owned);
    }
    std::str::from_utf8(inner).ok().map(Cow::Borrowed)
}

/// An optional number, read by serde itself (its range and rounding).
fn figure(raw: Option<&[u8]>) -> Option<Option<f64>> {
    match raw {
        None | Some(b"null") => Some(None),
        Some(raw) => serde_json::from_slice::<Option<f64>>(raw).ok(),
    }
}

/// Walks an object of plain counts as a run writes `usage`
/// (`{"prompt_tokens":12,"completion_tokens":3,...}`, no spaces, names
/// without escapes, whole numbers of at most 18 digits), handing `each`
/// every name (quotes included) and count; None for any other object, or
/// when `each` gives up.
pub fn counts<'a>(raw: &'a [u8], mut each: impl FnMut(&'a [u8], u64) -> Option<()>) -> Option<()> {
    let inner = raw.strip_prefix(b"{")?.strip_suffix(b"}")?;
    for pair in inner.split(|b| *b == b',') {
        let colon = memchr::memchr(b':', pair)?;
        let (name, digits) = (&pair[..colon], &pair[colon + 1..]);
        let plain_name = name.len() >= 2
            && name[0] == b'"'
            && name[name.len() - 1] == b'"'
            && !name[1..name.len() - 1]
                .iter()
                .any(|b| *b == b'"' || *b == b'\\');
        if !plain_name
            || digits.is_empty()
            || digits.len() > 18
            || !digits.iter().all(u8::is_ascii_digit)
            || (digits.len() > 1 && digits[0] == b'0')
        {
            return None;
        }
        each(
            name,
            digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')),
        )?;
    }
    Some(())
}

/// `usage`, a small object: its plain counts read here, anything else by
/// serde, leniently as the full parse does.
fn usage(raw: &[u8]) -> Option<Lenient<UsageHead>> {
    // The names met so far (a run writes five at most; more is serde's to read).
    let mut names: [&[u8]; 8] = [b""; 8];
    let mut met = 0;
    let mut completion = None;
    let plain = counts(raw, |name, n| {
        // A name given twice is serde's to judge (it refuses some).
        if met == names.len() || names[..met].contains(&name) {
            return None;
        }
        names[met] = name;
        met += 1;
        if name == b"\"completion_tokens\"" {
            completion = Some(Lenient::Read(n));
        }
        Some(())
    });
    if plain.is_some() {
        return Some(Lenient::Read(UsageHead {
            completion_tokens: completion,
        }));
    }
    match serde_json::from_slice::<Lenient<UsageHead>>(raw) {
        Ok(usage) => Some(usage),
        // Valid JSON of another shape: skipped, as the full parse does.
        Err(_) => serde_json::from_slice::<IgnoredAny>(raw)
            .ok()
            .map(Lenient::Other),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string, quotes included, checked as serde checks it.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        self.eat(b'"')?;
        loop {
            let rest = self.s.get(self.at..)?;
            let stop = memchr::memchr2(b'"', b'\\', rest)?;
            self.at += stop + 1;
            if rest[stop] == b'"' {
                return Some(&self.s[start..self.at]);
            }
            match self.next()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                b'u' => {
                    let hex = self.s.get(self.at..self.at + 4)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    // A lone surrogate is refused by serde: let it decide.
                    let unit = u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                    if (0xD800..0xE000).contains(&unit) {
                        return None;
                    }
                    self.at += 4;
                }
                _ => return None,
            }
        }
    }

    /// Any JSON value, skipped; `depth` is the nesting it starts at.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => self.nested(depth),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn nested(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        let close = match self.next()? {
            b'{' => b'}',
            _ => b']',
        };
        self.ws();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            self.ws();
            if close == b'}' {
                self.string()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
            }
            self.value(depth + 1)?;
            self.ws();
            match self.next()? {
                b',' => continue,
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.s.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, short enough that
    /// serde could not find it out of range (a longer one is serde's to judge).
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        self.number_grammar()?;
        (self.at - start <= 24).then_some(())
    }

    fn number_grammar(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            let digits = self.at;
            self.some_digits()?;
            if self.at - digits > 2 {
                return None;
            }
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

#[cfg(test)]
mod tests;
