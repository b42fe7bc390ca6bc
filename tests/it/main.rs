//! One integration test binary: the real `promptbatch` binary against the built-in
//! mock on 127.0.0.1:0, a fresh temp dir per test, and every record and summary
//! validated against the contract's JSON Schemas (tests/fixtures).

mod batch;
mod batch_api;
mod batch_liar;
mod budget;
mod by_endpoint;
mod cache;
mod cli;
mod common;
mod compat;
mod connections;
mod conventions;
mod endpoints;
mod estimate;
#[cfg(unix)]
mod files;
mod hostile;
mod html;
mod images;
mod lifecycle;
mod logs;
mod money;
mod outcome;
mod pacing;
mod records;
mod redaction;
mod report;
mod resume;
mod retries;
mod schedule;
mod shards;
mod structured;
