//! The adversarial HTTP server of the hostile suite: raw HTTP/1.1 over a
//! tokio listener on 127.0.0.1:0, one per test. Every behaviour is one
//! variant of [`Behaviour`] and one arm of [`Behaviour::answer`]; every
//! request read is counted and its head kept, so a test can say who was
//! reached and with which headers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with every request it reads.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// A 200 JSON completion of `bytes` in all, chunked (no length announced),
    /// generated while it is written: never held in memory.
    Oversized { bytes: u64 },
    /// A 200 whose body never ends.
    EndlessBody,
    /// SSE data events carrying content and never a finish reason, one every `every`.
    EndlessChunks { every: Duration },
    /// SSE `: ping` comments, one every `every`, and nothing else.
    Pings { every: Duration },
    /// A complete good reply (SSE when `stream`), one byte every `every`.
    Trickle { stream: bool, every: Duration },
    /// SSE content, then `[DONE]` before any choice carried a finish reason.
    DoneBeforeFinish,
    /// A 307 to `location`.
    Redirect { location: String },
    /// A good JSON reply whose content holds a byte that is not UTF-8.
    InvalidUtf8,
    /// A 200 whose body is an error object with this code.
    ErrorIn200 { code: u16 },
    /// A good JSON reply.
    Good,
    /// This response, whole, with its length: `status` line text, extra header lines.
    Fixed {
        status: &'static str,
        headers: String,
        body: String,
    },
    /// SSE: `first`, then `then` every `every` until the client leaves.
    SseForever {
        first: String,
        then: String,
        every: Duration,
    },
}

const JSON_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
const DELTA: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
const GOOD: &str = r#"{"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
const GOOD_SSE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"fine\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// A whole response with a known length.
fn whole(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl Behaviour {
    /// Writes the answer; returns at the first failed write (the client left).
    async fn answer(&self, stream: &mut TcpStream) -> std::io::Result<()> {
        match self {
            Behaviour::Oversized { bytes } => {
                stream.write_all(JSON_HEAD.as_bytes()).await?;
                let prefix = br#"{"choices":[{"index":0,"message":{"content":""#;
                stream.write_all(&chunk(prefix)).await?;
                let block = chunk(&[b'a'; 64 * 1024]);
                let mut sent = prefix.len() as u64;
                while sent < *bytes {
                    stream.write_all(&block).await?;
                    sent += 64 * 1024;
                }
                stream
                    .write_all(&chunk(br#""},"finish_reason":"stop"}]}"#))
                    .await?;
                stream.write_all(b"0\r\n\r\n").await
            }
            Behaviour::EndlessBody => {
                stream.write_all(JSON_HEAD.as_bytes()).await?;
                stream.write_all(&chunk(b"{\"choices\":[")).await?;
                let block = chunk(&[b' '; 64 * 1024]);
                loop {
                    stream.write_all(&block).await?;
                }
            }
            Behaviour::EndlessChunks { every } => {
                stream.write_all(SSE_HEAD.as_bytes()).await?;
                if every.is_zero() {
                    // As fast as the client reads (a timer of 0 still waits a tick).
                    let events = chunk(DELTA.repeat(64).as_bytes());
                    loop {
                        stream.write_all(&events).await?;
                    }
                }
                let event = chunk(DELTA.as_bytes());
                loop {
                    stream.write_all(&event).await?;
                    tokio::time::sleep(*every).await;
                }
            }
            Behaviour::Pings { every } => {
                stream.write_all(SSE_HEAD.as_bytes()).await?;
                let ping = chunk(b": ping\n\n");
                loop {
                    stream.write_all(&ping).await?;
                    tokio::time::sleep(*every).await;
                }
            }
            Behaviour::Trickle { stream: sse, every } => {
                let (head, body) = if *sse {
                    (SSE_HEAD, GOOD_SSE)
                } else {
                    (JSON_HEAD, GOOD)
                };
                stream.write_all(head.as_bytes()).await?;
                for byte in body.as_bytes() {
                    stream.write_all(&chunk(&[*byte])).await?;
                    tokio::time::sleep(*every).await;
                }
                stream.write_all(b"0\r\n\r\n").await
            }
            Behaviour::DoneBeforeFinish => {
                let body = format!("{DELTA}{DELTA}data: [DONE]\n\n");
                stream.write_all(SSE_HEAD.as_bytes()).await?;
                stream.write_all(&chunk(body.as_bytes())).await?;
                stream.write_all(b"0\r\n\r\n").await
            }
            Behaviour::Redirect { location } => {
                let headers = format!("location: {location}\r\n");
                let response = whole("307 Temporary Redirect", &headers, b"");
                stream.write_all(&response).await
            }
            Behaviour::InvalidUtf8 => {
                let body = GOOD.replace("fine", "caf\u{0}").into_bytes();
                // The NUL placeholder becomes a lone 0xFF byte: not UTF-8.
                let body: Vec<u8> = body
                    .into_iter()
                    .map(|b| if b == 0 { 0xFF } else { b })
                    .collect();
                let headers = "content-type: application/json\r\n";
                stream.write_all(&whole("200 OK", headers, &body)).await
            }
            Behaviour::ErrorIn200 { code } => {
                let body = format!(r#"{{"error":{{"message":"bad parameter","code":{code}}}}}"#);
                let headers = "content-type: application/json\r\n";
                stream
                    .write_all(&whole("200 OK", headers, body.as_bytes()))
                    .await
            }
            Behaviour::Fixed {
                status,
                headers,
                body,
            } => {
                stream
                    .write_all(&whole(status, headers, body.as_bytes()))
                    .await
            }
            Behaviour::SseForever { first, then, every } => {
                stream.write_all(SSE_HEAD.as_bytes()).await?;
                stream.write_all(&chunk(first.as_bytes())).await?;
                let then = chunk(then.as_bytes());
                loop {
                    stream.write_all(&then).await?;
                    tokio::time::sleep(*every).await;
                }
            }
            Behaviour::Good => {
                let headers = "content-type: application/json\r\n";
                stream
                    .write_all(&whole("200 OK", headers, GOOD.as_bytes()))
                    .await
            }
        }
    }
}

/// One hostile server on 127.0.0.1:0: what it was asked, and how often.
pub struct Hostile {
    pub url: String,
    requests: Arc<AtomicUsize>,
    /// Request heads, lowercased.
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    pub async fn start(behaviour: Behaviour) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/v1/chat/completions",
            listener.local_addr().expect("addr")
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (requests.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (behaviour, count, seen) = (behaviour.clone(), count.clone(), seen.clone());
                tokio::spawn(async move {
                    let Some(head) = read_request(&mut stream).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    seen.lock().expect("lock").push(head);
                    let _ = behaviour.answer(&mut stream).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Hostile {
            url,
            requests,
            heads,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request (head and body); `None` when the client left first.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        data.extend_from_slice(&buf[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        data.extend_from_slice(&buf[..n]);
    }
    Some(head)
}
