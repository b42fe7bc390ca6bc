//! The listening side: binds 127.0.0.1, accepts connections, serves each with
//! hyper's HTTP/1 (keep-alive on) or, when the client opens with HTTP/2's
//! preface, cleartext HTTP/2 (h2c) with at most [`H2_STREAMS`] requests at
//! once per connection, and tears everything down on shutdown.
//!
//! hyper directly rather than a framework: a `reset` fault needs the service
//! to fail so that hyper closes the connection without an answer.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::handler::{self, Shared};
use super::{MockConfig, MockStats, ReceivedRequest};

/// Requests at once on one HTTP/2 connection: what many servers allow (nginx
/// 128, many providers 100), so a client must open more connections to go past it.
pub const H2_STREAMS: u32 = 100;

/// A running mock server; dropping it stops the server too.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Binds `127.0.0.1:port` and serves on the current tokio runtime; returns at once.
    ///
    /// Fails when the port is taken or the configuration is unusable
    /// (a rate outside 0..=1, a limit with a zero window).
    pub async fn start(config: MockConfig) -> std::io::Result<MockServer> {
        config
            .check()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), stopped));
        Ok(MockServer {
            addr,
            shared,
            stop,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1/chat/completions`
    pub fn url(&self) -> String {
        format!("http://{}/v1/chat/completions", self.addr)
    }

    pub fn stats(&self) -> &MockStats {
        &self.shared.stats
    }

    /// The Batch API's counters (files uploaded, batches created, results downloaded).
    pub fn batch_stats(&self) -> Arc<super::BatchStats> {
        self.shared.batch.stats.clone()
    }

    /// The counters, to keep after the server is gone.
    pub fn stats_handle(&self) -> Arc<MockStats> {
        self.shared.stats.clone()
    }

    /// Every completions request received so far, in arrival order; empty unless `config.record`.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.shared
            .recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops accepting, drops every connection (hanging requests included) and
    /// waits until all connection tasks have ended.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(accept) = self.accept.take() {
            // The accept task never panics; a JoinError here could only be a cancelled runtime.
            let _ = accept.await;
        }
        // Every connection task holds a receiver; `closed` resolves when the last one has ended.
        self.stop.closed().await;
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = stop_requested(&mut stopped) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait for connections to close instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        // Small replies must not wait for Nagle's algorithm; a failure only costs latency.
        let _ = stream.set_nodelay(true);
        shared.stats.count_connection();
        let shared = shared.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handler::handle(shared.clone(), request));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().keep_alive(true).header_read_timeout(None);
            builder.http2().max_concurrent_streams(H2_STREAMS);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                // Errors here are clients going away or `reset` faults: nothing to report.
                _ = connection => {}
                _ = stop_requested(&mut stopped) => {}
            }
        });
    }
}

/// Resolves once shutdown is asked for (or the server handle is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it at once.
    let _ = stopped.wait_for(|stop| *stop).await;
}
