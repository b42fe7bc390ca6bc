//! A server-sent events parser, fed arbitrary byte chunks.
//!
//! Pure and incremental: network chunks split lines anywhere, even inside a
//! UTF-8 character, so bytes are buffered until a line ends (a line end is
//! never inside a character). Follows the WHATWG event-stream rules the
//! providers rely on: LF, CRLF or CR line ends; `data:` with or without the
//! space; multi-line `data` joined with "\n"; `:` comments; `event`/`id`;
//! dispatch on a blank line. `retry` is read and ignored: a failed stream is
//! retried by the scheduler as a whole request, never resumed.

use std::sync::Arc;

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` for the default "message".
    pub event: Option<String>,
    pub data: String,
    /// The last `id` seen; shared, not copied, by every event that follows
    /// it (a server's one id line of megabytes, then thousands of events in
    /// one read, would otherwise be copied into each of them at once).
    pub id: Option<Arc<str>>,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Past this many pending bytes, a line is no longer collected (0 = no
    /// cap): it is dropped and [`SseParser::overflowed`] set, so the caller
    /// fails the stream, and the parser never holds more than the cap.
    cap: usize,
    /// Bytes of a line not yet ended.
    partial: Vec<u8>,
    /// The previous chunk ended in CR: a LF opening the next one belongs to it.
    after_cr: bool,
    /// Whether a line was read (a BOM is only skipped before the first one).
    past_first_line: bool,
    data: String,
    has_data: bool,
    /// A line or event passed the cap (it was dropped, not kept).
    overflowed: bool,
    event: Option<String>,
    id: Option<Arc<str>>,
}

impl SseParser {
    /// A parser that stops collecting a line or event past `cap` bytes.
    pub fn with_cap(cap: usize) -> SseParser {
        SseParser {
            cap,
            ..SseParser::default()
        }
    }

    /// Bytes held for the line and the event not yet complete.
    fn pending_bytes(&self) -> usize {
        self.partial.len().saturating_add(self.data.len())
    }

    /// Whether more bytes may be kept: past the cap, the line is dropped
    /// (the caller fails the stream on it, and memory stays bounded).
    fn has_room(&self, more: usize) -> bool {
        self.cap == 0 || self.pending_bytes().saturating_add(more) <= self.cap
    }

    /// Feeds one chunk; complete events are appended to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            chunk = chunk.strip_prefix(b"\n".as_slice()).unwrap_or(chunk);
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, rest) = chunk.split_at(end);
            if !self.has_room(line.len()) {
                // Counted, not kept: pending_bytes says the cap was passed.
                self.partial.clear();
                self.data.clear();
                self.overflowed = true;
            } else if self.partial.is_empty() {
                self.line(line, out);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                self.line(&whole, out);
                // Keep the allocation for the next split line.
                self.partial = whole;
                self.partial.clear();
            }
            chunk = match rest {
                [b'\r', b'\n', tail @ ..] => tail,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, tail @ ..] => tail,
                [] => &[],
            };
        }
        if self.has_room(chunk.len()) {
            self.partial.extend_from_slice(chunk);
        } else {
            self.partial.clear();
            self.overflowed = true;
        }
    }

    /// A line or an event outgrew the cap: the stream must be failed.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The end of the stream: an event whose lines all ended but that lacks the
    /// closing blank line is still dispatched (some servers omit it); a line
    /// cut mid-way is dropped, since it is most likely a truncated JSON chunk.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        self.partial.clear();
        self.dispatch(out);
    }

    fn line(&mut self, mut line: &[u8], out: &mut Vec<SseEvent>) {
        if !self.past_first_line {
            self.past_first_line = true;
            line = line
                .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                .unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch(out);
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (
                    &line[..colon],
                    value.strip_prefix(b" ".as_slice()).unwrap_or(value),
                )
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.id = Some(Arc::from(value.as_ref())),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        out.push(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out);
        }
        parser.finish(&mut out);
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    const STREAM: &str = ": OPENROUTER PROCESSING\n\n\
        data: {\"a\":\"h\u{e9}llo \u{1F600}\"}\n\n\
        data:{\"b\":2}\r\n\r\n\
        event: error\ndata: first\ndata: second\nid: 7\nretry: 1000\n\n\
        data: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                data: "{\"a\":\"h\u{e9}llo \u{1F600}\"}".into(),
                ..SseEvent::default()
            },
            SseEvent {
                data: "{\"b\":2}".into(),
                ..SseEvent::default()
            },
            SseEvent {
                event: Some("error".into()),
                data: "first\nsecond".into(),
                id: Some("7".into()),
            },
            SseEvent {
                data: "[DONE]".into(),
                id: Some("7".into()),
                ..SseEvent::default()
            },
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(parse_in(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn byte_by_byte() {
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(parse_in(&chunks), expected());
    }

    #[test]
    fn random_splits() {
        // A small deterministic generator: the splits differ per round, the test does not.
        let bytes = STREAM.as_bytes();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..500 {
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let len = 1 + (state % 9) as usize;
                let end = (at + len).min(bytes.len());
                chunks.push(&bytes[at..end]);
                at = end;
            }
            assert_eq!(parse_in(&chunks), expected());
        }
    }

    #[test]
    fn line_ends_of_every_kind() {
        let events = parse_in(&[b"data: a\r", b"\ndata: b\r", b"\r", b"data: c\rdata: d\n\n"]);
        assert_eq!(data(&events), ["a\nb", "c\nd"]);
        assert_eq!(data(&parse_in(&[b"data: x\r\n\r\n"])), ["x"]);
    }

    #[test]
    fn edge_fields() {
        // No colon: the whole line is the field name, with an empty value.
        assert_eq!(data(&parse_in(&[b"data\n\n"])), [""]);
        // Only one leading space is stripped.
        assert_eq!(data(&parse_in(&[b"data:  two\n\n"])), [" two"]);
        // Comments and unknown fields change nothing; an event without data is not dispatched.
        assert!(parse_in(&[b": keep-alive\nfoo: bar\nevent: ping\n\n"]).is_empty());
        // The event name does not leak into the next event.
        let events = parse_in(&[b"event: x\ndata: 1\n\ndata: 2\n\n"]);
        assert_eq!(
            (events[0].event.as_deref(), events[1].event.as_deref()),
            (Some("x"), None)
        );
        // A leading BOM is skipped.
        assert_eq!(data(&parse_in(&[b"\xEF\xBB", b"\xBFdata: 1\n\n"])), ["1"]);
    }

    #[test]
    fn a_line_or_event_past_the_cap_is_dropped_and_flagged() {
        // One line without an end, fed in pieces: never more than the cap kept.
        let mut parser = SseParser::with_cap(64);
        let mut out = Vec::new();
        for _ in 0..100 {
            parser.feed(&[b'a'; 10], &mut out);
            assert!(parser.pending_bytes() <= 64);
        }
        assert!(parser.overflowed());
        // Many data lines of one event count together.
        let mut parser = SseParser::with_cap(64);
        for _ in 0..100 {
            parser.feed(b"data: 0123456789\n", &mut out);
            assert!(parser.pending_bytes() <= 64);
        }
        assert!(parser.overflowed() && out.is_empty());
        // Within the cap: nothing flagged.
        let mut parser = SseParser::with_cap(64);
        parser.feed(b"data: 0123456789\n\n: ping\n\n", &mut out);
        assert!(!parser.overflowed());
        assert_eq!(data(&out), ["0123456789"]);
    }

    #[test]
    fn one_long_id_is_shared_by_the_events_after_it_not_copied() {
        let mut parser = SseParser::with_cap(1 << 20);
        let mut out = Vec::new();
        let mut stream = format!("id: {}\n", "i".repeat(100_000)).into_bytes();
        stream.extend(b"data: {}\n\n".repeat(1000));
        parser.feed(&stream, &mut out);
        assert_eq!(out.len(), 1000);
        let first = out[0].id.as_ref().expect("id");
        assert_eq!(first.len(), 100_000);
        assert!(out
            .iter()
            .all(|e| e.id.as_ref().is_some_and(|id| Arc::ptr_eq(id, first))));
    }

    #[test]
    fn invalid_utf8_in_a_line_is_replaced() {
        assert_eq!(data(&parse_in(&[b"data: a\xffb\n\n"])), ["a\u{FFFD}b"]);
    }

    #[test]
    fn end_of_stream() {
        // All lines ended, blank line missing: dispatched.
        assert_eq!(data(&parse_in(&[b"data: {}\n"])), ["{}"]);
        // A line cut mid-way: dropped.
        assert!(parse_in(&[b"data: {\"cho"]).is_empty());
        assert_eq!(data(&parse_in(&[b"data: 1\n\ndata: {\"cho"])), ["1"]);
    }
}
