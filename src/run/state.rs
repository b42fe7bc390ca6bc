//! The state file of learned paces as a run uses it: each endpoint's entry,
//! the pace an earlier run kept there, and what this run learned, kept at
//! its end.

use std::time::Duration;

use chrono::Utc;

use super::rates;
use crate::cli::RunArgs;
use crate::job::Job;
use crate::printer;

/// The state file of learned paces, as this run uses it: where it is, each
/// endpoint's entry, and what an earlier run kept there.
pub(super) struct StateFile {
    /// One per endpoint (route), in order.
    pub entries: Vec<StateEntry>,
    /// How many shards share the endpoint's limit: the file keeps the
    /// endpoint's pace (what one shard learned, times this), and each shard
    /// starts at its share of it. So sharded and whole runs of a job, and
    /// shards of different counts, read and write one figure. 1 unsharded,
    /// or with `per_shard = true` (each shard has a limit of its own).
    share: f64,
}

pub(super) struct StateEntry {
    /// None: `--no-state`, a configured rate, `--simulate`, or no home folder.
    place: Option<(std::path::PathBuf, String)>,
    pub seeded: Option<rates::Learned>,
}

impl StateFile {
    pub fn open(job: &Job, args: &RunArgs) -> StateFile {
        let models = job.models();
        // (url, name, configured rate, models) of each endpoint.
        let targets: Vec<(&str, Option<&str>, bool, Vec<String>)> = match job.endpoints.is_empty() {
            true => vec![(
                job.endpoint.url.as_str(),
                None,
                job.limits.requests_per_minute > 0 || job.limits.tokens_per_minute > 0,
                models,
            )],
            false => (job.endpoints.iter())
                .map(|e| {
                    let served = models.iter().filter(|m| e.serves(m)).cloned().collect();
                    let configured = e.requests_per_minute > 0 || e.tokens_per_minute > 0;
                    (
                        e.config.url.as_str(),
                        Some(e.name.as_str()),
                        configured,
                        served,
                    )
                })
                .collect(),
        };
        let share = match job.limits.per_shard {
            true => 1.0,
            false => job.shard.count.max(1) as f64,
        };
        let entries = (targets.into_iter())
            .map(|(url, name, configured, models)| {
                // A simulated endpoint's port changes every run: nothing worth keeping.
                let place = (!args.no_state && !configured && !job.simulate)
                    .then(|| {
                        let key = match name {
                            Some(name) => rates::named_key(url, name, &models)?,
                            None => rates::key(url, &models)?,
                        };
                        Some((rates::path()?, key))
                    })
                    .flatten();
                let seeded = place
                    .as_ref()
                    .and_then(|(path, key)| match rates::read(path, key, Utc::now()) {
                        Ok(seeded) => seeded,
                        Err(e) => {
                            if !args.quiet {
                                printer::warning(e);
                            }
                            None
                        }
                    })
                    .map(|endpoint| rates::Learned {
                        requests_per_minute: endpoint.requests_per_minute / share,
                        ..endpoint
                    });
                StateEntry { place, seeded }
            })
            .collect();
        StateFile { entries, share }
    }

    /// The pace an earlier run kept for the job's one endpoint.
    pub fn seeded(&self) -> Option<&rates::Learned> {
        match self.entries.as_slice() {
            [one] => one.seeded.as_ref(),
            _ => None,
        }
    }

    /// Each endpoint's pace kept by an earlier run (requests per minute).
    pub fn paces(&self) -> Vec<Option<f64>> {
        (self.entries.iter())
            .map(|e| e.seeded.as_ref().map(|l| l.requests_per_minute))
            .collect()
    }

    /// Keeps the pace this run learned at each endpoint (requests per second, window).
    pub fn keep(&self, learned: Vec<Option<(f64, Duration)>>, quiet: bool) {
        for (entry, learned) in self.entries.iter().zip(learned) {
            let (Some((path, key)), Some((per_s, window))) = (&entry.place, learned) else {
                continue;
            };
            let now = Utc::now();
            let learned = rates::Learned {
                requests_per_minute: per_s * 60.0 * self.share,
                window_s: window.as_secs_f64(),
                learned_at: now,
            };
            match rates::write(path, key, learned, now) {
                Ok(None) => {}
                Ok(Some(replaced)) | Err(replaced) => {
                    if !quiet {
                        printer::warning(replaced);
                    }
                }
            }
        }
    }
}
