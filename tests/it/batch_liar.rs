//! Batch mode against an independent Batch API server that lies about its
//! results: raw HTTP/1.1 on 127.0.0.1:0, one per test. Files upload, batches
//! are created and complete at once; what the output file holds is the test's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// What `GET /files/file-out/content` answers.
#[derive(Clone, Copy)]
enum Output {
    /// A 404: the file is gone.
    Gone,
    /// One good line per request uploaded, then lines of unknown custom_ids forever.
    Endless,
    /// Never reached: every poll answers 429 with a Retry-After of u64::MAX seconds.
    Throttled,
}

struct Liar {
    port: u16,
    /// The custom_ids of the uploaded file.
    ids: Arc<Mutex<Vec<String>>>,
}

async fn liar(output: Output) -> Liar {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ids = Arc::new(Mutex::new(Vec::new()));
    let shared = ids.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let ids = shared.clone();
            tokio::spawn(async move {
                let _ = serve(stream, output, ids).await;
            });
        }
    });
    Liar { port, ids }
}

async fn serve(
    mut stream: TcpStream,
    output: Output,
    ids: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = (head.lines())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    let line = head.lines().next().unwrap_or_default().to_string();
    let json = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let answer = if line.starts_with("POST /v1/files") {
        let mut found = Vec::new();
        for part in body.split("\"custom_id\":\"").skip(1) {
            found.push(part.split('"').next().unwrap_or_default().to_string());
        }
        *ids.lock().unwrap() = found;
        json(r#"{"id":"file-in","object":"file","purpose":"batch"}"#)
    } else if line.starts_with("GET /v1/batches?") {
        json(r#"{"object":"list","data":[]}"#)
    } else if line.starts_with("POST /v1/batches") {
        json(r#"{"id":"batch_1","input_file_id":"file-in","status":"validating"}"#)
    } else if line.starts_with("GET /v1/batches/batch_1") && matches!(output, Output::Throttled) {
        "HTTP/1.1 429 Too Many Requests\r\nretry-after: 18446744073709551615\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
    } else if line.starts_with("GET /v1/batches/batch_1") {
        json(
            r#"{"id":"batch_1","input_file_id":"file-in","status":"completed","output_file_id":"file-out","request_counts":{"total":2,"completed":2,"failed":0}}"#,
        )
    } else if line.starts_with("GET /v1/files/file-out/content") {
        match output {
            Output::Gone | Output::Throttled => "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 36\r\nconnection: close\r\n\r\n{\"error\":{\"message\":\"No such File\"}}".to_string(),
            Output::Endless => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/jsonl\r\nconnection: close\r\n\r\n")
                    .await?;
                let known = ids.lock().unwrap().clone();
                for id in known {
                    let good = format!(
                        "{{\"id\":\"r\",\"custom_id\":\"{id}\",\"response\":{{\"status_code\":200,\"body\":{{\"id\":\"c\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"fine\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}}}}},\"error\":null}}\n"
                    );
                    stream.write_all(good.as_bytes()).await?;
                }
                let junk = "{\"custom_id\":\"nobody\",\"response\":{\"status_code\":200,\"body\":{}}}\n".repeat(100);
                loop {
                    // Ends when the client leaves.
                    stream.write_all(junk.as_bytes()).await?;
                }
            }
        }
    } else {
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            .to_string()
    };
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await
}

fn job(port: u16) -> String {
    prompt_job(
        &format!("http://127.0.0.1:{port}/v1/chat/completions"),
        "max_tokens = 50\n[output]\npath = \"out.jsonl\"\n",
    )
    .replace("timeout_secs = 5\n", "timeout_secs = 5\nmode = \"batch\"\n")
}

/// Runs the job, killed (and the test failed) if it is still running after a minute.
async fn run_bounded(sb: &Sandbox, job: &str, why: &str) -> std::process::Output {
    let mut cmd = run_job(sb).job(job).command();
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("the binary runs");
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{why}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().expect("output");
    assert_printed_no_secret(&out);
    out
}

fn two_rows(sb: &Sandbox) {
    sb.write(
        "rows.jsonl",
        "{\"prompt\": \"question 1\"}\n{\"prompt\": \"question 2\"}\n",
    );
}

#[tokio::test]
async fn a_result_file_that_never_ends_is_read_only_until_every_request_has_its_line() {
    let server = liar(Output::Endless).await;
    let sb = Sandbox::new();
    two_rows(&sb);
    let out = run_bounded(
        &sb,
        &job(server.port),
        "the run ends although the result file never does",
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(server.ids.lock().unwrap().len(), 2);
    let records = sb.records("out.jsonl");
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r["status"] == "ok"), "{records:?}");
}

#[tokio::test]
async fn a_result_file_that_is_gone_stops_the_run_keeping_the_batch() {
    let server = liar(Output::Gone).await;
    let sb = Sandbox::new();
    two_rows(&sb);
    let out = run_bounded(
        &sb,
        &job(server.port),
        "the run ends rather than polling a batch it cannot read forever",
    )
    .await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    let kept = sb.read("out.jsonl.batches.json");
    assert!(kept.contains("batch_1"), "{kept}");
}

#[tokio::test]
async fn a_huge_retry_after_while_polling_is_waited_for_within_reason() {
    let server = liar(Output::Throttled).await;
    let sb = Sandbox::new();
    two_rows(&sb);
    let job = job(server.port).replace(
        "mode = \"batch\"\n",
        "mode = \"batch\"\nbatch_wait_secs = 2\n",
    );
    let out = run_bounded(&sb, &job, "the run ends when its wait does").await;
    // Still in flight when the wait ended: kept for the next run, not a crash.
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(sb.read("out.jsonl.batches.json").contains("batch_1"));
}
