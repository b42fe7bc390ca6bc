//! The connection pools of one endpoint: how many clients, each speaking which HTTP.
//!
//! HTTP/2 multiplexes requests over one connection, but a server caps the
//! requests at once per connection (commonly 100 to 250), and hyper's pool
//! shares a single HTTP/2 connection per host, queueing past the cap rather
//! than opening another connection. So wherever HTTP/2 may be spoken there
//! is one client (one connection) per [`H2_STREAMS_PER_CONNECTION`] requests
//! of the concurrency, and the requests go round-robin over them.

use reqwest::header::HeaderMap;
use reqwest::redirect;

use super::MAX_CONNECT_TIMEOUT;
use crate::client::{ClientError, Endpoint, HttpVersion};

/// Requests in flight one HTTP/2 connection is given: at or below what servers allow at once.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// The clients for `endpoint`: with HTTP/1.1 one pool sized to the
/// concurrency (`pool_size`), so no connection is closed after its request
/// and reopened for the next; where HTTP/2 may be spoken, one client per
/// [`H2_STREAMS_PER_CONNECTION`] requests of the concurrency.
pub(super) fn http_clients(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    pool_size: usize,
    user_agent: &str,
    redirects: fn() -> redirect::Policy,
) -> Result<Box<[reqwest::Client]>, ClientError> {
    let pool_size = pool_size.max(1);
    let count = match endpoint.http {
        HttpVersion::Http1 => 1,
        HttpVersion::Auto | HttpVersion::Http2 => pool_size.div_ceil(H2_STREAMS_PER_CONNECTION),
    };
    (0..count)
        .map(|_| {
            let builder = reqwest::Client::builder()
                .user_agent(user_agent)
                .default_headers(headers.clone())
                .pool_max_idle_per_host(pool_size.div_ceil(count))
                .tcp_nodelay(true)
                .connect_timeout(endpoint.timeout.min(MAX_CONNECT_TIMEOUT))
                .redirect(redirects());
            let builder = match endpoint.http {
                // ALPN offers h2 and http/1.1 on https://; http:// is HTTP/1.1.
                HttpVersion::Auto => builder,
                HttpVersion::Http1 => builder.http1_only(),
                // h2c by prior knowledge on http://, ALPN "h2" only on https://.
                HttpVersion::Http2 => builder.http2_prior_knowledge(),
            };
            builder
                .build()
                .map_err(|err| ClientError::Build(err.to_string()))
        })
        .collect()
}
