//! The process exit codes of the contract, and which wins when several apply.

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
    /// Stopped early because the endpoint refuses every request or cannot be
    /// reached; fix the account or the URL, rerun resumes.
    Refused,
    /// A local failure after requests were sent (disk full, output or summary
    /// not writable); rerun resumes.
    OutputFailed,
    /// Interrupted (Ctrl-C / SIGTERM); rerun resumes.
    Interrupted,
}

impl ExitStatus {
    /// Of two statuses that both apply, the one the contract puts first:
    /// 130, 5, 4, 3, 1, then 0 (2 never meets another: nothing was sent).
    pub fn worst(self, other: ExitStatus) -> ExitStatus {
        if other.precedence() > self.precedence() {
            other
        } else {
            self
        }
    }

    fn precedence(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Budget => 2,
            ExitStatus::Refused => 3,
            ExitStatus::OutputFailed => 4,
            ExitStatus::Interrupted => 5,
            ExitStatus::Invalid => 6,
        }
    }

    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Invalid => 2,
            ExitStatus::Budget => 3,
            ExitStatus::Refused => 4,
            ExitStatus::OutputFailed => 5,
            ExitStatus::Interrupted => 130,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ExitStatus::*;

    #[test]
    fn the_first_of_130_5_4_3_1_wins() {
        assert_eq!(Success.worst(Failed), Failed);
        assert_eq!(Failed.worst(Budget), Budget);
        assert_eq!(Refused.worst(Budget), Refused);
        assert_eq!(Refused.worst(OutputFailed), OutputFailed);
        assert_eq!(Interrupted.worst(OutputFailed), Interrupted);
        assert_eq!(OutputFailed.worst(Failed).code(), 5);
    }
}
