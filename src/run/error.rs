//! How a run ends, typed: the variant picks the exit status.
//!
//! A run that judged every request ends in [`Finished`] (0 or 1); anything
//! else is a [`RunError`]: nothing sent (2), the budget (3), a refusing
//! endpoint (4), a local failure after sending (5), an interrupt (130). When
//! several apply, the contract's order decides (see [`ExitStatus::worst`]).

use std::path::PathBuf;

use crate::client::ClientError;
use crate::exit::ExitStatus;
use crate::input::InputError;
use crate::job::JobError;
use crate::sink::SinkError;

/// A run that sent what it had to and judged every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Every request of the job succeeded (0).
    AllOk,
    /// Some failed or were not sent; each failure is a line in the output (1).
    SomeFailed,
}

impl Finished {
    pub fn exit_status(self) -> ExitStatus {
        match self {
            Finished::AllOk => ExitStatus::Success,
            Finished::SomeFailed => ExitStatus::Failed,
        }
    }
}

/// Why a run did not end judged.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Nothing was sent: the job, input, key, output or lock refused (2).
    #[error(transparent)]
    NotStarted(#[from] StartError),
    /// Stopped before the recorded cost could pass `max_cost_usd` (3).
    #[error("stopped by the budget")]
    Budget,
    /// The endpoint refuses every request or cannot be reached (4).
    #[error("stopped: the endpoint refuses every request or cannot be reached")]
    Refused,
    /// The output, its compaction or the summary failed after requests were sent (5).
    #[error("a local failure after requests were sent")]
    OutputFailed,
    /// Ctrl-C or SIGTERM (130).
    #[error("interrupted")]
    Interrupted,
}

impl RunError {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            RunError::NotStarted(_) => ExitStatus::Invalid,
            RunError::Budget => ExitStatus::Budget,
            RunError::Refused => ExitStatus::Refused,
            RunError::OutputFailed => ExitStatus::OutputFailed,
            RunError::Interrupted => ExitStatus::Interrupted,
        }
    }

    /// Of two reasons that both apply, the one the contract puts first.
    pub fn worst(self, other: RunError) -> RunError {
        if self.exit_status().worst(other.exit_status()) == self.exit_status() {
            self
        } else {
            other
        }
    }
}

/// Why a run (or `validate`) could not start. Nothing was sent; each message
/// is a complete sentence saying what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the working directory: {0}")]
    WorkingDir(std::io::Error),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("the simulated endpoint could not start: {0}")]
    Simulate(std::io::Error),
    #[error(
        "the API key variable {name} is not set (or empty): export {name}=... (or set [endpoint] api_key_env / --api-key-env, \
         \"\" for servers without a key, or try the job with --simulate)"
    )]
    KeyUnset { name: String },
    #[error(
        "endpoint {endpoint:?}: the API key variable {name} is not set (or empty): export {name}=... (or set its api_key_env in [[endpoints]], \
         \"\" for servers without a key, or try the job with --simulate)"
    )]
    EndpointKeyUnset { endpoint: String, name: String },
    /// Rows ask (in their own `params`) for a model no `[[endpoints]]` entry serves.
    #[error(
        "no endpoint serves the model {model:?} that rows of the input ask for ({lists}); add it to an endpoint's models, or leave models out to serve every model"
    )]
    Unserved { model: String, lists: String },
    #[error(transparent)]
    Input(#[from] InputError),
    /// Rows that cannot be sent: the first few, and how many in all.
    #[error("{}", super::scan::problem_report(.shown, *.count).trim_end())]
    InputProblems { shown: Vec<InputError>, count: u64 },
    #[error(
        "{input} has no rows; nothing was sent (pass --allow-empty to accept an empty input and exit 0)"
    )]
    EmptyInput { input: String },
    #[error(transparent)]
    Output(#[from] SinkError),
    /// The output is another run's, and its path has no `{shard}`: the
    /// shards of one job are queueing on one file.
    #[error(
        "{source}; shard {shard} writes an output whose path has no {{shard}}, so the job's shards wait on one file: put {{shard}} in it (e.g. --output 'out-{{shard}}.jsonl') to give each shard its own, then `report` them together"
    )]
    ShardsShareOutput { source: SinkError, shard: String },
    #[error(transparent)]
    Endpoint(#[from] ClientError),
    /// Batch mode could not start: its batches file, its client.
    #[error("batch mode: {0}")]
    Batches(String),
    #[error("the summary cannot be written to {}: {source}; choose another --summary", .path.display())]
    SummaryPath {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the batch output cannot be written to {}: {source}; choose another [output] batch_output", .path.display())]
    BatchPath {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("internal error: the input check stopped: {0}")]
    Check(tokio::task::JoinError),
    #[error("cannot write to standard output: {0}")]
    Stdout(std::io::Error),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_picks_its_exit_code() {
        let not_started = RunError::NotStarted(StartError::EmptyInput { input: "x".into() });
        let codes: Vec<i32> = [
            not_started,
            RunError::Budget,
            RunError::Refused,
            RunError::OutputFailed,
            RunError::Interrupted,
        ]
        .iter()
        .map(|e| e.exit_status().code())
        .collect();
        assert_eq!(codes, [2, 3, 4, 5, 130]);
        assert_eq!(Finished::AllOk.exit_status().code(), 0);
        assert_eq!(Finished::SomeFailed.exit_status().code(), 1);
    }

    #[test]
    fn the_first_of_130_5_4_3_wins() {
        let worst = RunError::Budget
            .worst(RunError::Refused)
            .worst(RunError::OutputFailed);
        assert!(matches!(worst, RunError::OutputFailed));
        assert!(matches!(
            RunError::Interrupted.worst(RunError::OutputFailed),
            RunError::Interrupted
        ));
        assert!(matches!(
            RunError::Budget.worst(RunError::Refused),
            RunError::Refused
        ));
    }
}
