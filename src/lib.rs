//! promptbatch: run batches of prompts through OpenAI-compatible chat-completions endpoints.
//!
//! The data flows one way, one folder per stage:
//! `job` (job file + flags) -> `input` (rows) -> `job::plan` (requests) ->
//! `scheduler` (concurrency, limits, retries, budget) -> `client` (HTTP) ->
//! events -> `sink` (output JSONL) + `report` (summary) + `progress`.

pub mod cli;
pub mod client;
pub mod input;
pub mod job;
pub mod keys;
pub mod mock;
pub mod progress;
pub mod report;
pub mod request;
pub mod run;
pub mod scan;
pub mod scheduler;
pub mod sink;

use cli::{Cli, Command};

/// The process exit codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every request succeeded.
    Success,
    /// The run finished but some requests failed (each is a line in the output).
    Failed,
    /// Invalid job, flags or input, an unset key, or a locked output: nothing was sent.
    Invalid,
    /// Stopped early by the budget; rerun resumes.
    Budget,
    /// Stopped early because the endpoint refuses every request; fix the account, rerun resumes.
    Refused,
    /// Interrupted (Ctrl-C / SIGTERM); rerun resumes.
    Interrupted,
}

impl ExitStatus {
    /// `floor` in place of success: a run that ended well can still be marked failed.
    pub fn at_least(self, floor: ExitStatus) -> ExitStatus {
        if self == ExitStatus::Success {
            floor
        } else {
            self
        }
    }

    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Invalid => 2,
            ExitStatus::Budget => 3,
            ExitStatus::Refused => 4,
            ExitStatus::Interrupted => 130,
        }
    }
}

/// Runs one command and reports its errors on stderr.
pub async fn main(cli: Cli) -> ExitStatus {
    let result = match cli.command {
        Command::Run(args) => run::run(&args).await,
        Command::Validate(args) => run::validate(&args).await,
        Command::Report(args) => report_command(&args),
        Command::MockServer(args) => mock::serve(&args).await.map(|()| ExitStatus::Success),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            // Our own messages are complete sentences; others get their context chain.
            if e.downcast_ref::<run::Invalid>().is_some() {
                eprintln!("error: {e}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitStatus::Invalid
        }
    }
}

fn report_command(args: &cli::ReportArgs) -> anyhow::Result<ExitStatus> {
    let summary = report::over_outputs(&args.outputs).map_err(|e| run::Invalid(e.to_string()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", report::table::render(&summary));
    }
    Ok(ExitStatus::Success)
}
