//! Redaction of every form of a secret, before any cut.

use serde_json::json;

use super::*;
use crate::client::error_body::{parse_error_body, MESSAGE_CAP};
use crate::client::ErrorKind;

const KEY: &str = "sk-live-0123456789abc";

fn redact(secrets: &[&str], text: &str) -> String {
    Redactor::new(secrets.iter().copied())
        .redact(text)
        .into_owned()
}

#[test]
fn no_secret_no_work() {
    let redactor = Redactor::new(["", "  ", "\t"]);
    assert!(!redactor.is_active(), "blank secrets are ignored");
    assert!(matches!(redactor.redact("anything"), Cow::Borrowed(_)));
    let redactor = Redactor::new([KEY]);
    assert!(matches!(
        redactor.redact("nothing secret here"),
        Cow::Borrowed(_)
    ));
    assert!(!format!("{redactor:?}").contains("sk-"));
}

#[test]
fn every_secret_every_time() {
    assert_eq!(
        redact(
            &[KEY, "hdr-secret-value"],
            &format!("key {KEY}, again {KEY}; header hdr-secret-value.")
        ),
        "key [redacted], again [redacted]; header [redacted]."
    );
    assert_eq!(redact(&[KEY], KEY), REDACTED);
}

#[test]
fn overlapping_and_adjacent_secrets_leave_nothing_behind() {
    let (a, b) = ("abcdefgh1234", "1234WXYZijkl");
    assert_eq!(redact(&[a, b], "<abcdefgh1234WXYZijkl>"), "<[redacted]>");
    assert_eq!(redact(&[a, b], "abcdefgh12341234WXYZijkl"), REDACTED);
    // A secret inside another.
    assert_eq!(
        redact(
            &["sk-outer-inner-9876", "inner-98"],
            "x sk-outer-inner-9876 y inner-98"
        ),
        "x [redacted] y [redacted]"
    );
}

#[test]
fn a_part_of_eight_characters_or_more_is_removed() {
    // A server masking the middle of the key, or echoing half of it.
    assert_eq!(
        redact(&[KEY], "provided: sk-live-01****9abc"),
        "provided: [redacted]****9abc"
    );
    assert_eq!(redact(&[KEY], "tail 3456789abc!"), "tail [redacted]!");
    // Shorter parts are not the key: "sk-live" is what every live key starts with.
    assert_eq!(redact(&[KEY], "an sk-live key"), "an sk-live key");
}

#[test]
fn short_secrets_are_removed_whole_and_overlapping() {
    assert_eq!(
        redact(&["on"], "on and on, done"),
        "[redacted] and [redacted], d[redacted]e"
    );
    assert_eq!(redact(&["aaa"], "baaaab"), "b[redacted]b");
}

#[test]
fn unicode_around_and_inside() {
    assert_eq!(redact(&[KEY], &format!("é{KEY}ü")), "é[redacted]ü");
    assert_eq!(redact(&[KEY], &format!("日本{KEY}語")), "日本[redacted]語");
    // A secret of multi-byte characters: windows inside characters widen to whole ones.
    assert_eq!(redact(&["ééééé"], "xéééééy"), "x[redacted]y");
    assert_eq!(redact(&["ééééé"], "xéééé"), "x[redacted]");
    assert_eq!(redact(&["ñ"], "año"), "a[redacted]o");
}

#[test]
fn escaped_and_encoded_forms() {
    let secret = "tok/en+with=odd\"chars";
    for form in [
        r#"tok\/en+with=odd\"chars"#,
        r#"tok/en+with=odd\"chars"#,
        "tok%2Fen%2Bwith%3Dodd%22chars",
    ] {
        assert_eq!(
            redact(&[secret], &format!("[{form}]")),
            "[[redacted]]",
            "{form}"
        );
    }
    // Whitespace runs inside a secret collapse in error messages.
    assert_eq!(
        redact(&["two  spaced words"], "a two spaced words b"),
        "a [redacted] b"
    );
}

#[test]
fn json_strings_and_keys() {
    let redactor = Redactor::new([KEY]);
    let value = json!([{"id": format!("call_{KEY}"), "function": {"name": "f",
        "arguments": format!("{{\"k\":\"{KEY}\"}}")}, KEY: [KEY, 1, null]}]);
    let value = redactor.redact_json(&raw(&value));
    let value: Value = serde_json::from_str(value.get()).unwrap();
    assert!(!value.to_string().contains("0123456789"), "{value}");
    assert_eq!(value[0]["id"], "call_[redacted]");
    assert_eq!(value[0][REDACTED][0], REDACTED);
    assert_eq!(value[0][REDACTED][1], 1);
}

#[test]
fn every_string_of_a_reply_and_a_failure() {
    let redactor = Redactor::new([KEY]);
    let echo = |what: &str| Some(format!("{what} {KEY}"));
    let reply = redactor.reply(Reply {
        content: echo("content"),
        finish_reason: echo("stop"),
        response_id: echo("id"),
        provider: echo("provider"),
        response_model: echo("model"),
        refusal: echo("refusal"),
        tool_calls: Some(raw(&json!([{"id": KEY}]))),
        ..Reply::default()
    });
    let text = format!("{reply:?}");
    assert!(!text.contains("0123456789"), "{text}");
    assert_eq!(reply.content.as_deref(), Some("content [redacted]"));
    assert_eq!(reply.refusal.as_deref(), Some("refusal [redacted]"));

    let failure = redactor.failure(Failure {
        error_code: echo("bad_key"),
        ..Failure::new(ErrorKind::Auth, Some(401), format!("Incorrect key {KEY}"))
    });
    assert_eq!(failure.message, "Incorrect key [redacted]");
    assert_eq!(failure.error_code.as_deref(), Some("bad_key [redacted]"));
}

/// The regression: a key straddling the 500-character cut of an error message
/// left its head (here 20 of its 21 characters) in `error.message`.
#[tokio::test]
async fn a_key_straddling_the_cut_is_removed_before_the_cut() {
    let redactor = Redactor::new([KEY]);
    for inside in [1, 5, 7, 20] {
        let before = "x".repeat(MESSAGE_CAP - inside);
        let body = json!({"error": {"message": format!("{before}{KEY} tail")}}).to_string();
        let info = redactor
            .scope(async { parse_error_body(body.as_bytes()) })
            .await;
        let message = redactor
            .failure(Failure::new(ErrorKind::Auth, Some(401), info.message))
            .message;
        // Filler, "[redacted]" and "tail" have no 's': any is the key's first character.
        assert!(
            !message.contains('s'),
            "{inside} characters of the key before the cut: {message}"
        );
        assert!(message.contains("x["), "{message}");
    }
    // Outside an attempt's scope nothing is redacted: cutting alone would leak.
    let body = json!({"error": {"message": format!("{}{KEY}", "x".repeat(MESSAGE_CAP - 5))}});
    let message = parse_error_body(body.to_string().as_bytes()).message;
    assert!(message.ends_with("sk-li…"), "{message}");
}

#[test]
fn the_head_of_a_secret_at_a_raw_cut_is_dropped() {
    let redactor = Redactor::new([KEY, "shrt"]);
    for (cut, kept) in [
        (format!("error: {}", &KEY[..5]), "error: "),
        (format!("error: {}", &KEY[..7]), "error: "),
        ("error: sh".to_string(), "error: "),
        // A whole secret is the windows' business; nothing of one here.
        ("error: nothing".to_string(), "error: nothing"),
    ] {
        let mut bytes = cut.clone().into_bytes();
        redactor.drop_cut_head(&mut bytes);
        assert_eq!(String::from_utf8_lossy(&bytes), kept, "{cut}");
    }
    let mut bytes = b"sk".to_vec();
    Redactor::default().drop_cut_head(&mut bytes);
    assert_eq!(bytes, b"sk", "no secret, nothing dropped");
}

#[test]
fn in_messages_a_secret_broken_by_whitespace_is_found() {
    let redactor = Redactor::new([KEY]);
    // In pieces of 7, each shorter than a window (SSE data lines collapsed to spaces).
    let pieces = KEY
        .as_bytes()
        .chunks(7)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let text = format!("the body starts: k={pieces}\"}} and more");
    assert_eq!(redactor.redact(&text), text, "replies are not scanned so");
    assert_eq!(
        redactor.redact_message(&text),
        "the body starts: k=[redacted]\"} and more"
    );
    let failure = redactor.failure(Failure::new(ErrorKind::Auth, Some(401), text));
    assert!(!failure.message.contains("sk-live"), "{}", failure.message);
    // Words that merely sit side by side are left alone.
    assert_eq!(
        redactor.redact_message("sk-live 0123 is not it"),
        "sk-live 0123 is not it"
    );
}

#[test]
fn in_messages_case_does_not_hide_a_secret() {
    let secret = "sk-Mixed/Case+Key=0123abcd";
    let redactor = Redactor::new([secret]);
    for echo in [
        "SK-MIXED/CASE+KEY=0123ABCD",
        // Percent-encoded with lowercase hex.
        "sk-mixed%2fcase%2bkey%3d0123abcd",
    ] {
        let text = format!("bad key {echo}.");
        assert_eq!(
            redactor.redact_message(&text),
            "bad key [redacted].",
            "{echo}"
        );
    }
}

fn raw(value: &Value) -> RawJson {
    RawJson::of(value).unwrap()
}

#[test]
fn json_stays_json_whatever_the_secret_holds() {
    // A secret with a quote and a backslash, as it sits in JSON text
    // (escaped) and in a \u escape: every form is found, and what is left
    // parses, the other strings untouched.
    for secret in [
        r#"ab"cd\ef-123456"#,
        "sk-\"quoted\"-key",
        "\\\\back\\slashes",
    ] {
        let redactor = Redactor::new([secret]);
        let text = serde_json::to_string(&json!([{"id": secret, "k": format!("x {secret} y"),
            "n": 5, "other": "keep \" this \\"}]))
        .unwrap();
        let escaped = text.replace("\"k\"", "\"\\u006b\"");
        for text in [text, escaped] {
            let calls =
                RawJson::of(&serde_json::from_str::<&serde_json::value::RawValue>(&text).unwrap())
                    .unwrap();
            let out = redactor.redact_json(&calls);
            let value: Value = serde_json::from_str(out.get())
                .unwrap_or_else(|_| panic!("not JSON: {}", out.get()));
            assert_eq!(value[0]["id"], REDACTED, "{secret}");
            assert_eq!(value[0]["k"], format!("x {REDACTED} y"), "{secret}");
            assert_eq!(value[0]["n"], 5);
            assert_eq!(value[0]["other"], "keep \" this \\");
        }
    }
}
