//! The opt-in response cache (`--cache DIR`, `[cache] dir`): one SQLite file
//! of `ok` replies keyed by (endpoint, request_sha256), so a request whose
//! exact body was answered before at the same endpoint is answered again
//! without sending.
//!
//! What is stored is the reply part of the record as it was written (after
//! redaction: no key is ever in the store), as a JSON object, so any field a
//! record's reply grows (`json`, ...) rides along without a new column. The
//! endpoint is stored as the SHA-256 of its URL: a URL may carry a key in its
//! query string, and the store needs only equality.
//!
//! Several processes (shards on one machine) may share one store: WAL mode,
//! a busy timeout, and every write batched into one transaction per burst on
//! a thread of its own ([`writer`]). Lookups run on the planner's thread,
//! one read transaction per batch of requests ([`Lookup`]).

mod hit;
mod store;
mod writer;

pub use hit::{reply_part, Hit};
pub use store::{endpoint_key, existing, open, CacheError, Lookup, DB_FILE};
pub use writer::{Entry, Handle, Writer, WriterStats};

#[cfg(test)]
mod tests;
