//! No secret, not even part of one, against a server that echoes them everywhere.
//!
//! The mock's `[mock:echo-auth]` and `echo-*` faults put the key and the
//! `x-api-key` value into every string of a reply and into error messages
//! placed so that each cut the client makes falls inside a secret. The
//! harness (common.rs) then fails the test if any 8 characters of either
//! secret reached a file or the terminal; here we also check that the
//! replies really carried them and where the redactions landed.

use serde_json::Value;

use crate::common::*;

fn job(url: &str) -> String {
    format!(
        r#"name = "t"
[endpoint]
url = "{url}"
timeout_secs = 5
headers = {{ "X-Api-Key" = "{SENTINEL_HEADER}", "X-Title" = "redaction" }}
[input]
path = "rows.jsonl"
[defaults]
model = "m"
[retry]
max_attempts = 1
[limits]
concurrency = 1
[[params]]
name = "whole"
[[params]]
name = "stream"
stream = true
"#
    )
}

const ROWS: &str = r#"{"id": "echo", "prompt": "[mock:echo-auth] hello there"}
{"id": "tools", "prompt": "[mock:echo-auth][mock:tools] call it"}
{"id": "e401", "prompt": "[mock:fail=echo-401] a"}
{"id": "e502", "prompt": "[mock:fail=echo-502] b"}
{"id": "e200", "prompt": "[mock:fail=echo-200] c"}
{"id": "esse", "prompt": "[mock:fail=echo-sse] d"}
"#;

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a string: {value}"))
}

#[tokio::test]
async fn echoed_secrets_are_redacted_everywhere_even_across_cuts_and_chunks() {
    let mock = MockServer::start(MockConfig {
        record: true,
        ..MockConfig::default()
    })
    .await
    .expect("mock starts");
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(ROWS)
        .job(&job(&mock.url()))
        .args(&["--progress", "log"])
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    // The secrets were sent, so every echo carried them.
    let received = mock.received();
    assert_eq!(received.len(), 12);
    for r in &received {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {SENTINEL_KEY}").as_str())
        );
        assert_eq!(r.header("x-api-key"), Some(SENTINEL_HEADER));
    }

    let records = by_key(&sb.records("t.jsonl"));
    for set in ["whole", "stream"] {
        let echo = &records[&format!("echo/{set}")];
        assert_eq!(echo["status"], "ok", "{echo}");
        assert!(
            text(&echo["content"]).ends_with("The key is [redacted] and the header [redacted]."),
            "{echo}"
        );
        assert_eq!(echo["response_id"], "chatcmpl-[redacted]");
        assert_eq!(echo["response_model"], "[redacted]/[redacted]");
        assert_eq!(echo["provider"], "provider-[redacted]");
        assert_eq!(echo["refusal"], "I will not repeat [redacted]");

        let tools = &records[&format!("tools/{set}")];
        assert_eq!(tools["tool_calls"][0]["id"], "call_[redacted]", "{tools}");
        assert_eq!(
            tools["tool_calls"][0]["function"]["arguments"],
            r#"{"key":"[redacted]","[redacted]":"[redacted]"}"#
        );

        // Each message is cut inside a secret: nothing of it is left before the cut.
        for (id, quoted) in [
            (
                "e401",
                "Incorrect API key provided: [redacted]. You passed x",
            ),
            (
                "e502",
                "Provider returned error for [redacted] (upstream: upstream said x",
            ),
            (
                "e200",
                r#"the body starts: {"note": "Welcome! Sign in with x"#,
            ),
            ("esse", "sent an error: upstream rejected [redacted] and x"),
        ] {
            let record = &records[&format!("{id}/{set}")];
            let message = text(&record["error"]["message"]);
            assert!(message.contains(quoted), "{id}/{set}: {message}");
            // After the padding comes the redaction (perhaps itself cut), not the secret's head.
            assert!(
                message.contains("x [redacted]") || message.contains("x [reda…"),
                "{id}/{set}: the secret at the cut is redacted: {message}"
            );
        }
    }
    assert_eq!(records["e401/whole"]["error"]["kind"], "auth");
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["requests"]["failed"], 8);
    mock.shutdown().await;
}

#[test]
#[should_panic(expected = "a secret leaked into stderr")]
fn the_harness_sees_any_eight_characters_of_a_secret() {
    let part = &SENTINEL_HEADER[9..17];
    assert_no_secret("stderr", format!("warning: {part}…").as_bytes());
}

/// Regression: the warning about an endpoint whose path is not
/// /chat/completions quoted the URL whole, password and query (`?key=`)
/// included, and fired for a URL whose path is right but has a query
/// (Azure OpenAI's `...?api-version=...`).
#[tokio::test]
async fn an_endpoint_url_is_never_quoted_with_its_password_or_query() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let sb = Sandbox::new();
    sb.write("rows.jsonl", "{\"prompt\": \"hi\"}\n");
    let port = mock.url().split(':').nth(2).expect("a port").to_string();
    let port = port.split('/').next().expect("a port");
    let run = |url: String| {
        sb.command(&[
            "run",
            "--input",
            "rows.jsonl",
            "--model",
            "m",
            "--api-key-env",
            "",
            "--output",
            "o.jsonl",
            "--fresh",
            "--endpoint",
            &url,
        ])
    };
    let azure = format!(
        "http://127.0.0.1:{port}/v1/chat/completions?api-version=2024-06-01&key=QUERYSECRET1"
    );
    let out = output(run(azure)).await;
    let err = stderr(&out);
    assert!(!err.contains("does not end in"), "{err}");
    assert!(!err.contains("QUERYSECRET1"), "{err}");
    let wrong =
        format!("http://user:PASSWORDSECRET@127.0.0.1:{port}/v1/completions?key=QUERYSECRET2");
    let out = output(run(wrong)).await;
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the endpoint http://127.0.0.1:{port}/v1/completions does not end in /chat/completions"
        )),
        "{err}"
    );
    assert!(
        !err.contains("PASSWORDSECRET") && !err.contains("QUERYSECRET2"),
        "{err}"
    );
    mock.shutdown().await;
}
