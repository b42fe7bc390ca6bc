//! The state file of learned paces: `$XDG_STATE_HOME/promptbatch/rates.json`
//! (default `~/.local/state/promptbatch/rates.json`).
//!
//! A run that learned a limit from 429s keeps the pace that held, per
//! endpoint origin (scheme, host, port: never a path, a query, a user or any
//! header, so no key can land here) and model, so the next scheduled run
//! starts at it instead of rediscovering the limit with a burst of 429s.
//!
//! The file is a convenience, never a reason to fail: one that is missing,
//! too big, unreadable, or not ours is ignored with a warning. It is written
//! under a lock (concurrent runs merge their entries, none is lost), to a
//! temporary file renamed over it (a crash leaves the old file or the new,
//! never half of one), readable by its owner only. Entries expire after
//! [`EXPIRY_DAYS`]: a limit raised since is found again.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Larger than any file of ours: read no further.
const MAX_BYTES: u64 = 1 << 20;
/// The most entries kept (the oldest go first).
const MAX_ENTRIES: usize = 1000;
/// A pace older than this is not trusted any more.
const EXPIRY_DAYS: i64 = 30;
/// Marks the file as ours, and its layout.
const FORMAT: &str = "promptbatch-rates/1";

/// A pace learned by a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Learned {
    pub requests_per_minute: f64,
    /// How long the provider's window looked.
    pub window_s: f64,
    #[serde(with = "rfc3339")]
    pub learned_at: DateTime<Utc>,
}

/// `learned_at` as RFC 3339 text (chrono is built without its serde feature).
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

impl Learned {
    pub fn per_second(&self) -> f64 {
        self.requests_per_minute / 60.0
    }

    pub fn window(&self) -> Duration {
        Duration::try_from_secs_f64(self.window_s).unwrap_or(Duration::from_secs(1))
    }

    /// A figure a run may start from: positive, finite, not from the future, not expired.
    fn usable(&self, now: DateTime<Utc>) -> bool {
        let rate = self.requests_per_minute;
        rate.is_finite()
            && rate > 0.0
            && rate < 1e9
            && self.window_s.is_finite()
            && self.window_s >= 0.0
            && self.learned_at <= now + chrono::Duration::days(1)
            && now - self.learned_at <= chrono::Duration::days(EXPIRY_DAYS)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RatesFile {
    format: String,
    entries: BTreeMap<String, Learned>,
}

/// Why the state file was ignored or not written (a warning, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum RatesError {
    #[error("could not read the state file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ignored the state file {}: it is larger than {MAX_BYTES} bytes", path.display())]
    TooBig { path: PathBuf },
    #[error("ignored the state file {}: it is not a promptbatch rates file ({detail})", path.display())]
    Foreign { path: PathBuf, detail: String },
    #[error("could not write the state file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the state file is: `$XDG_STATE_HOME` when it is an absolute path
/// (the XDG rule), else `$HOME/.local/state`; None without either.
pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".local").join("state"))
        })?;
    Some(base.join("promptbatch").join("rates.json"))
}

/// The entry's key: the endpoint's origin and the models, e.g.
/// `https://api.openai.com:443 gpt-4o-mini`. None for a URL without a host.
pub fn key(url: &str, models: &[String]) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    let mut models: Vec<&str> = models.iter().map(String::as_str).collect();
    models.sort_unstable();
    models.dedup();
    Some(format!(
        "{}://{host}:{port} {}",
        url.scheme(),
        models.join(",")
    ))
}

/// The entry's key for one of several endpoints (`[[endpoints]]`): several
/// keys of one provider share a url, and each has a limit of its own, so the
/// endpoint's name is part of the key, e.g. `https://api.openai.com:443
/// gpt-4o-mini @key-a`. A job of one endpoint keeps [`key`].
pub fn named_key(url: &str, name: &str, models: &[String]) -> Option<String> {
    key(url, models).map(|key| format!("{key} @{name}"))
}

/// The pace kept for `key`, if one is there and still usable.
pub fn read(path: &Path, key: &str, now: DateTime<Utc>) -> Result<Option<Learned>, RatesError> {
    Ok(load(path)?
        .entries
        .get(key)
        .copied()
        .filter(|l| l.usable(now)))
}

/// The whole file; an absent one is empty.
fn load(path: &Path) -> Result<RatesFile, RatesError> {
    let file = match open_plain(OpenOptions::new().read(true), path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RatesFile::default()),
        Err(source) => {
            return Err(RatesError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut text = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|source| RatesError::Read {
            path: path.to_owned(),
            source,
        })?;
    if text.len() as u64 > MAX_BYTES {
        return Err(RatesError::TooBig {
            path: path.to_owned(),
        });
    }
    let foreign = |detail: String| RatesError::Foreign {
        path: path.to_owned(),
        detail,
    };
    let parsed: RatesFile = serde_json::from_slice(&text).map_err(|e| foreign(e.to_string()))?;
    if parsed.format != FORMAT {
        return Err(foreign(format!("format {:?}", parsed.format)));
    }
    Ok(parsed)
}

/// Keeps `learned` for `key`, merged with what other runs wrote meanwhile.
/// Returns the warning of an old file that had to be replaced, if any.
pub fn write(
    path: &Path,
    key: &str,
    learned: Learned,
    now: DateTime<Utc>,
) -> Result<Option<RatesError>, RatesError> {
    let failed = |source| RatesError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().ok_or_else(|| {
        failed(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no parent folder",
        ))
    })?;
    create_private_dir(dir).map_err(failed)?;
    // Held until the rename: a run writing meanwhile waits, then merges.
    let lock_path = dir.join("rates.json.lock");
    let lock = open_plain(
        OpenOptions::new().create(true).truncate(false).write(true),
        &lock_path,
    )
    .map_err(failed)?;
    lock.lock().map_err(failed)?;
    let (mut file, replaced) = match load(path) {
        Ok(file) => (file, None),
        // Ours to repair: the file the next run reads is a good one.
        Err(e) => (RatesFile::default(), Some(e)),
    };
    file.format = FORMAT.to_string();
    file.entries.retain(|_, l| l.usable(now));
    file.entries.insert(key.to_string(), learned);
    while file.entries.len() > MAX_ENTRIES {
        let oldest = file
            .entries
            .iter()
            .min_by_key(|(_, l)| l.learned_at)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => file.entries.remove(&k),
            None => break,
        };
    }
    let text = serde_json::to_vec_pretty(&file).map_err(|e| failed(e.into()))?;
    // NamedTempFile is created 0600; the rename makes it whole at once.
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    temp.write_all(&text).map_err(failed)?;
    temp.as_file().sync_all().map_err(failed)?;
    temp.persist(path).map_err(|e| failed(e.error))?;
    drop(lock);
    Ok(replaced)
}

/// Opens `path` only if it is a regular file: a FIFO put there would block
/// the open until a writer came (a run hung before its first request), and
/// a device or a folder is not ours to read or lock.
fn open_plain(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests;
