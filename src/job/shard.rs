//! Shards: which slice of a job one process runs, where that is said
//! (`--shard K/N`, `--shards N` with Kubernetes' `JOB_COMPLETION_INDEX`,
//! `PROMPTBATCH_SHARD`, a Slurm job array), and which rows fall in it.
//!
//! A row belongs to shard `first 8 bytes of SHA-256(row id), big-endian, mod
//! N`. That hash is part of the public contract: shards run on different
//! machines, by different versions, must split a job the same way, so it is
//! pinned by a test of fixed ids. Pure code: the environment comes in as a
//! lookup function, so every source and every bad value is tested here.

use sha2::{Digest, Sha256};

/// `JOB_COMPLETION_INDEX`: the pod's index in a Kubernetes Indexed Job.
pub const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";
/// `PROMPTBATCH_SHARD=K/N`: the scheduler-neutral way to say it.
pub const SHARD_VAR: &str = "PROMPTBATCH_SHARD";
pub const SLURM_ID: &str = "SLURM_ARRAY_TASK_ID";
pub const SLURM_MIN: &str = "SLURM_ARRAY_TASK_MIN";
pub const SLURM_STEP: &str = "SLURM_ARRAY_TASK_STEP";
pub const SLURM_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";

/// One shard of a job: `index` (0-based) of `count`. `0/1` is the whole job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// More than one shard: the job is split.
    pub fn is_split(&self) -> bool {
        self.count > 1
    }

    /// Whether the row with this id is this shard's.
    pub fn has(&self, id: &str) -> bool {
        self.count <= 1 || of(id, self.count) == self.index
    }

    /// `{shard}` in a path: `K-of-N` (`0-of-1` unsharded).
    pub fn placeholder(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of the row `id` among `count` (>= 1): the first 8 bytes of
/// SHA-256 of the id's UTF-8, big-endian, mod `count`.
pub fn of(id: &str, count: u64) -> u64 {
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % count.max(1)
}

/// A shard that cannot be used, naming where it was said (`place`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShardError {
    /// The flag or variable at fault (`--shard`, `SLURM_ARRAY_TASK_ID`).
    pub place: String,
    pub message: String,
}

fn bad(place: &str, message: impl Into<String>) -> ShardError {
    ShardError {
        place: place.into(),
        message: message.into(),
    }
}

/// The shard this process runs, from the flags and then the environment
/// (`env` looks a variable up). The order, first that is given wins:
/// `--shard K/N`; `--shards N` with K from `JOB_COMPLETION_INDEX`;
/// `PROMPTBATCH_SHARD=K/N`; a Slurm job array (`SLURM_ARRAY_TASK_ID` set).
/// `JOB_COMPLETION_INDEX` alone has no N (`--shards` gives it): above 0 it
/// is refused (every pod would run the whole job), 0 is the whole job. None
/// of them: the whole job, `0/1`.
pub fn resolve(
    shard: Option<&str>,
    shards: Option<u64>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Shard, ShardError> {
    if let Some(text) = shard {
        return parse(text).map_err(|m| bad("--shard", m));
    }
    if let Some(count) = shards {
        return kubernetes(count, env);
    }
    if let Some(text) = env(SHARD_VAR) {
        return parse(&text).map_err(|m| bad(SHARD_VAR, format!("{SHARD_VAR}={m}")));
    }
    if env(SLURM_ID).is_some() {
        return slurm(env);
    }
    // An index above 0 is a pod among several: without --shards it would run
    // the whole job, as would every other pod, each paying for all of it.
    // (Index 0 alone may be a Job of one completion: the whole job is right.)
    if let Some(index) = env(K8S_INDEX).filter(|i| i.trim().parse::<u64>().is_ok_and(|i| i > 0)) {
        return Err(bad(
            K8S_INDEX,
            format!("{K8S_INDEX}={index} says this is one pod of a Kubernetes Indexed Job, and no --shards says how many: every pod would run the whole job (and pay for it); pass --shards N with N the Job's completions, or --shard 0/1 to run the whole job in this pod"),
        ));
    }
    Ok(Shard::default())
}

/// Where [`resolve`] found the shard, as the start line names it: a shard
/// taken from the environment may be a surprise (a Slurm array whose tasks
/// each run a different job would run a slice of each), so it is said.
pub fn source(
    shard: Option<&str>,
    shards: Option<u64>,
    env: &dyn Fn(&str) -> Option<String>,
) -> &'static str {
    if shard.is_some() {
        "--shard"
    } else if shards.is_some() {
        "--shards and JOB_COMPLETION_INDEX"
    } else if env(SHARD_VAR).is_some() {
        SHARD_VAR
    } else if env(SLURM_ID).is_some() {
        "the Slurm array's variables: --shard 0/1 runs the whole job in each task"
    } else {
        "nothing: the whole job"
    }
}

/// `K/N`, 0-based K below N.
pub fn parse(text: &str) -> Result<Shard, String> {
    let usage =
        "must be K/N: this shard's 0-based index K below the number of shards N, e.g. 0/4 … 3/4";
    let Some((k, n)) = text.trim().split_once('/') else {
        return Err(format!("{text:?} {usage}"));
    };
    let (Ok(index), Ok(count)) = (k.trim().parse::<u64>(), n.trim().parse::<u64>()) else {
        return Err(format!("{text:?} {usage}"));
    };
    checked(index, count).map_err(|m| format!("{text:?}: {m}"))
}

fn checked(index: u64, count: u64) -> Result<Shard, String> {
    if count == 0 {
        return Err("the number of shards must be at least 1".into());
    }
    if index >= count {
        return Err(format!(
            "shard {index} does not exist among {count} (they are 0 to {}, 0-based)",
            count - 1
        ));
    }
    Ok(Shard { index, count })
}

/// `--shards N`: K is the pod's `JOB_COMPLETION_INDEX`.
fn kubernetes(count: u64, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
    if count == 0 {
        return Err(bad("--shards", "must be at least 1 (the number of shards)"));
    }
    let Some(text) = env(K8S_INDEX) else {
        return Err(bad(
            "--shards",
            format!("--shards {count} takes this shard's index from {K8S_INDEX}, which is not set: run it in a Kubernetes Indexed Job (completionMode: Indexed), or say the shard with --shard K/{count}"),
        ));
    };
    let index = text.trim().parse::<u64>().map_err(|_| {
        bad(
            K8S_INDEX,
            format!("{K8S_INDEX}={text:?} is not a whole number >= 0"),
        )
    })?;
    checked(index, count).map_err(|m| {
        bad(
            K8S_INDEX,
            format!("{K8S_INDEX}={index} with --shards {count}: {m}; set completions to {count}, or --shards to the Job's completions"),
        )
    })
}

/// A Slurm job array: K = (TASK_ID − TASK_MIN) / TASK_STEP (step 1 when
/// unset), N = TASK_COUNT; so `--array=1-4` and `--array=0-15:4` both work.
fn slurm(env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
    let number = |name: &str, default: Option<u64>| -> Result<u64, ShardError> {
        match (env(name), default) {
            (Some(text), _) => text.trim().parse::<u64>().map_err(|_| {
                bad(
                    name,
                    format!("{name}={text:?} is not a whole number >= 0; promptbatch takes its shard from the Slurm array variables"),
                )
            }),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(bad(
                name,
                format!("{SLURM_ID} is set but {name} is not: run under sbatch --array (Slurm sets both), or say the shard with --shard K/N"),
            )),
        }
    };
    let id = number(SLURM_ID, None)?;
    let min = number(SLURM_MIN, None)?;
    let step = number(SLURM_STEP, Some(1))?;
    let count = number(SLURM_COUNT, None)?;
    if step == 0 {
        return Err(bad(
            SLURM_STEP,
            format!("{SLURM_STEP}=0: the step of an array is at least 1"),
        ));
    }
    if id < min || (id - min) % step != 0 {
        return Err(bad(
            SLURM_ID,
            format!("{SLURM_ID}={id} is not on the array's grid ({SLURM_MIN}={min}, {SLURM_STEP}={step}): use an array of evenly spaced ids such as --array=0-3 or --array=0-15:4, or say the shard with --shard K/N"),
        ));
    }
    checked((id - min) / step, count).map_err(|m| {
        bad(
            SLURM_ID,
            format!("{SLURM_ID}={id} ({SLURM_MIN}={min}, {SLURM_STEP}={step}, {SLURM_COUNT}={count}): {m}; use an array of evenly spaced ids such as --array=0-3 or --array=0-15:4"),
        )
    })
}

#[cfg(test)]
mod tests;
