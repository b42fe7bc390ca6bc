//! promptbatch: run batches of prompts through OpenAI-compatible chat-completions endpoints.
//!
//! The data flows one way, one folder per stage:
//! `job` (job file + flags) -> `input` (rows) -> `plan` (requests) ->
//! `scheduler` (concurrency, limits, retries, budget) -> `client` (HTTP) ->
//! events -> `sink` (output JSONL) + `report` (summary) + `progress`;
//! `run` wires them, and every line for people goes through `printer`.
//! This file declares the modules and the entry point, nothing else.

pub mod batch;
pub mod cache;
pub mod cli;
pub mod client;
pub mod docs;
pub mod exit;
pub mod input;
pub mod job;
pub mod keys;
pub mod mock;
pub mod plan;
pub mod printer;
pub mod progress;
pub mod report;
pub mod run;
pub mod scheduler;
pub mod sink;
pub mod template;

use std::fmt::Display;

use cli::{Cli, Command};
pub use exit::ExitStatus;

/// Runs one command; its messages go through the printer, and the result is
/// the exit status.
pub async fn main(cli: Cli) -> ExitStatus {
    printer::set_color(cli.color);
    match cli.command {
        Command::Run(args) => {
            printer::set_format(args.job.log_format);
            match run::run(&args).await {
                Ok(finished) => finished.exit_status(),
                Err(e) => {
                    // A run that sent requests has said why it stopped (the
                    // table, its error lines, the --quiet line); one that
                    // could not start says it here.
                    if let run::RunError::NotStarted(why) = &e {
                        printer::error(why);
                    }
                    e.exit_status()
                }
            }
        }
        Command::Validate(args) => {
            printer::set_format(args.log_format);
            said(run::validate(&args).await)
        }
        Command::Report(args) => said(report::command(&args)),
        Command::MockServer(args) => said(mock::serve(&args).await),
        Command::Completions(args) => said(docs::completions(args.shell, &mut std::io::stdout())),
        Command::Man => said(docs::man(&mut std::io::stdout())),
    }
}

/// A command that either succeeds or, having sent nothing, fails with exit 2.
fn said(result: Result<(), impl Display>) -> ExitStatus {
    match result {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            printer::error(e);
            ExitStatus::Invalid
        }
    }
}
