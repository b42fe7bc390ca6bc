//! The body bytes of a request and the hash that identifies it across runs.
//!
//! Resume compares `request_sha256` to tell an unchanged request from an
//! edited one, so the hash must not depend on the order keys were written in,
//! nor on streaming (how the answer arrives, not what was asked).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Resolved;

/// The body bytes and the SHA-256 of its canonical form (without `stream`
/// and `stream_options`). Keys are sorted at every level because the top
/// level is a `BTreeMap` and serde_json's `Map` is one too (the crate is
/// built without `preserve_order`), and serde_json writes no spaces: so the
/// bytes are canonical and hashing them needs no second encoder.
pub(super) fn encode(r: &Resolved, messages: &Value, include_usage: &Value) -> (Bytes, String) {
    let mut body: BTreeMap<&str, &Value> = BTreeMap::new();
    for (key, value) in r.params.named.iter().chain(&r.params.extra) {
        body.insert(key, value);
    }
    body.insert("messages", messages);
    let stream = body.remove("stream");
    let stream_options = body.remove("stream_options");
    let canonical = serde_json::to_vec(&body).expect("JSON values always serialize");
    let sha256 = hex(&Sha256::digest(&canonical));
    if stream.is_none() && stream_options.is_none() {
        return (Bytes::from(canonical), sha256);
    }
    if let Some(stream) = stream {
        body.insert("stream", stream);
    }
    match stream_options {
        Some(options) => {
            body.insert("stream_options", options);
        }
        None if r.stream => {
            body.insert("stream_options", include_usage);
        }
        None => {}
    }
    let bytes = serde_json::to_vec(&body).expect("JSON values always serialize");
    (Bytes::from(bytes), sha256)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}
