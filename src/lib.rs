//! promptbatch: run batches of prompts through OpenAI-compatible chat-completions endpoints.

pub mod cli;
pub mod client;
pub mod input;
pub mod job;
pub mod mock;
pub mod request;
