//! Start to first request: the time from just before the client is spawned on
//! a one-row job to the first bytes of its request arriving at a loopback
//! listener this benchmark owns (a plain thread on a std `TcpListener`, so
//! no server runtime sits between the bytes and the clock).
//!
//! One untimed run first (the page cache holds the binary after it), then
//! the median, min and max of the timed runs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{timeval, wait4};

/// One timed start.
pub struct Start {
    pub to_first: Duration,
    pub cpu: Duration,
    pub peak_mib: f64,
    pub exit: i32,
}

/// The runs, sorted by their time to the first request.
pub struct Starts(pub Vec<Start>);

impl Starts {
    pub fn median(&self) -> &Start {
        &self.0[self.0.len() / 2]
    }
    pub fn min(&self) -> &Start {
        &self.0[0]
    }
    pub fn max(&self) -> &Start {
        &self.0[self.0.len() - 1]
    }
}

/// `runs` timed starts (at least one), after one untimed.
pub fn measure(runs: usize) -> Result<Starts, String> {
    once()?;
    let mut starts = (0..runs.max(1))
        .map(|_| once())
        .collect::<Result<Vec<_>, _>>()?;
    starts.sort_by_key(|s| s.to_first);
    Ok(Starts(starts))
}

fn once() -> Result<Start, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let input = dir.path().join("rows.jsonl");
    crate::scale::write_rows(&input, 1);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let accepted = Arc::new(AtomicBool::new(false));
    let server = serve_one(listener, accepted.clone());
    let mut cmd = command(dir.path(), &input, &format!("http://{addr}/v1"));
    let start = Instant::now();
    // Reaped by wait4 below (std's wait would not give the child's rusage).
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .spawn()
        .map_err(|e| format!("the binary does not run: {e}"))?;
    let (exit, usage) = wait4(child.id() as libc::pid_t);
    if !accepted.load(Ordering::SeqCst) {
        // The client never connected: wake the accept so the thread ends.
        let _ = TcpStream::connect(addr);
    }
    let arrived = server
        .join()
        .map_err(|_| "the listener thread panicked".to_string())?
        .ok_or_else(|| format!("the client (exit {exit}) sent no request"))?;
    Ok(Start {
        to_first: arrived.saturating_duration_since(start),
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        peak_mib: usage.ru_maxrss as f64 / 1024.0,
        exit,
    })
}

/// Accepts one connection, notes when its first bytes arrive, reads the
/// request to its end and answers it with a chat completion so the client
/// ends as after any good request.
fn serve_one(listener: TcpListener, accepted: Arc<AtomicBool>) -> JoinHandle<Option<Instant>> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().ok()?;
        accepted.store(true, Ordering::SeqCst);
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk).ok().filter(|&n| n > 0)?;
        let arrived = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        while !request_complete(&buf) {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return Some(arrived),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = crate::nginx::BODY;
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        Some(arrived)
    })
}

/// Whether `buf` holds a whole request: its head and `content-length` bytes
/// of body.
pub fn request_complete(buf: &[u8]) -> bool {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= head_end + 4 + length
}

fn command(dir: &Path, input: &Path, url: &str) -> Command {
    let mut cmd = crate::scale::client_command(input, url, &dir.join("out.jsonl"));
    cmd.env("XDG_STATE_HOME", dir.join("state"))
        .args(["--max-attempts", "1"]);
    cmd
}

/// Prints the median, min and max.
pub fn print(s: &Starts) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "start to first request sent (one-row job), {} runs",
        s.0.len()
    );
    println!(
        "  median {:.2} ms, min {:.2} ms, max {:.2} ms; client CPU {:.2} ms, peak memory {:.1} MiB (median run), exit {}\n",
        ms(s.median().to_first),
        ms(s.min().to_first),
        ms(s.max().to_first),
        ms(s.median().cpu),
        s.median().peak_mib,
        s.median().exit
    );
}
