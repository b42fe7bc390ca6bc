//! What the binary quotes of a hostile server's words: in part, without the
//! key (whole, in pieces, in capitals) and without terminal escapes.

use super::*;

#[tokio::test]
async fn a_huge_redirect_target_is_quoted_in_part_and_without_the_key() {
    let location = format!("http://elsewhere.invalid/{}?key={KEY}", "a".repeat(100_000));
    let server = Hostile::start(Behaviour::Fixed {
        status: "302 Found",
        headers: format!("location: {location}\r\n"),
        body: String::new(),
    })
    .await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "invalid_request", 1);
    let message = error_message(&record);
    assert!(message.len() < 1000, "{} bytes", message.len());
    assert!(
        message.contains("redirects to http://elsewhere.invalid/aaa"),
        "{message}"
    );
    assert!(finished.stderr.len() < 5000, "{}", finished.stderr);
}

#[tokio::test]
async fn a_login_page_in_a_200_is_quoted_whether_streaming_or_not() {
    for stream in [false, true] {
        let server = Hostile::start(fixed(
            "200 OK",
            "text/html",
            "<html><head><title>Proxy login</title></head><body>sign in</body></html>",
        ))
        .await;
        let scenario = Scenario {
            stream,
            ..Scenario::default()
        };
        let (finished, record) = run(&server.url, scenario).await;
        assert_failed(&finished, &record, "bad_response", 2);
        let message = error_message(&record);
        assert!(
            message.contains("the body starts: <html><head><title>Proxy login"),
            "stream {stream}: {message}"
        );
    }
}

#[tokio::test]
async fn the_head_of_the_key_at_the_error_body_cap_is_not_quoted() {
    // The client reads 64 KiB of an error body; whitespace collapses, so the
    // few characters of the key before that cut would end the message.
    for head in [3, 7] {
        let before = format!("denied{}", " ".repeat(64 * 1024 - 6 - head));
        let server = Hostile::start(fixed(
            "401 Unauthorized",
            "text/plain",
            format!("{before}{KEY} is not a valid key"),
        ))
        .await;
        let (finished, record) = run(&server.url, Scenario::default()).await;
        assert_failed(&finished, &record, "auth", 1);
        let message = error_message(&record);
        assert!(message.starts_with("denied ("), "{message}");
        assert!(!message.contains("sk-"), "{message}");
        assert!(
            !finished.stderr.contains(&KEY[..head]),
            "{}",
            finished.stderr
        );
    }
}

#[tokio::test]
async fn terminal_escapes_from_the_server_never_reach_the_terminal() {
    // Cleared screen, retitled window, a clipboard write (OSC 52), a bell.
    let escapes = r"\u001b[2J\u001b]0;pwned\u0007\u001b]52;c;ZXZpbA==\u0007";
    let error = fixed(
        "401 Unauthorized",
        "application/json",
        format!(r#"{{"error":{{"message":"bad {escapes} key"}}}}"#),
    );
    let finish = json_200(format!(
        r#"{{"choices":[{{"index":0,"message":{{"content":"fine"}},"finish_reason":"stop{escapes}"}}]}}"#
    ));
    for behaviour in [error, finish] {
        let server = Hostile::start(behaviour).await;
        let (finished, record) = run(&server.url, Scenario::default()).await;
        assert!(
            !finished.stderr.chars().any(|c| c.is_control() && c != '\n'),
            "{:?}",
            finished.stderr
        );
        let message = record["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
}

#[tokio::test]
async fn a_key_split_over_sse_data_lines_is_not_quoted_in_pieces() {
    // One event whose data lines cut the key into pieces of 7: the data is
    // not JSON, the message quotes it, its line ends collapse to spaces.
    let pieces: Vec<&str> = KEY
        .as_bytes()
        .chunks(7)
        .map(|piece| std::str::from_utf8(piece).expect("ASCII"))
        .collect();
    let server = Hostile::start(fixed(
        "200 OK",
        "text/event-stream",
        format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"k={}\"}}}}]}}\n\n",
            pieces.join("\ndata: ")
        ),
    ))
    .await;
    let scenario = streaming();
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "bad_response", 2);
    let message = error_message(&record);
    assert!(message.contains("not a JSON chunk"), "{message}");
    for piece in &pieces {
        assert!(!message.contains(piece), "{piece:?} in {message}");
        assert!(!finished.stderr.contains(piece), "{}", finished.stderr);
    }
}

#[tokio::test]
async fn a_key_echoed_in_capitals_is_not_quoted() {
    let shouted = KEY.to_ascii_uppercase();
    let server = Hostile::start(fixed(
        "401 Unauthorized",
        "application/json",
        format!(r#"{{"error":{{"message":"INVALID API KEY {shouted}"}}}}"#),
    ))
    .await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "auth", 1);
    let message = error_message(&record);
    assert!(
        message.starts_with("INVALID API KEY [redacted]"),
        "{message}"
    );
    assert!(!finished.stderr.contains("HOSTILE"), "{}", finished.stderr);
}
