//! The store's file: where it is, how it is made (0700 folder, 0600 file,
//! WAL, incremental auto-vacuum), how a file that is not ours is refused,
//! and lookups.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};
use sha2::{Digest, Sha256};

/// The store's file name inside the cache folder.
pub const DB_FILE: &str = "promptbatch-cache.sqlite3";

/// Marks a SQLite file as ours (`PRAGMA application_id`): "pbCH".
const APPLICATION_ID: i64 = 0x7062_4348;

/// The layout of the tables (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits for another process's write to end before
/// giving up: shards on one machine write in short bursts, so a wait this
/// long means something is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS replies (
        endpoint TEXT NOT NULL,
        request_sha256 TEXT NOT NULL,
        reply TEXT NOT NULL,
        last_used INTEGER NOT NULL,
        PRIMARY KEY (endpoint, request_sha256)
    );
    CREATE INDEX IF NOT EXISTS replies_last_used ON replies (last_used);
";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("--cache {}: it is a file, not a folder; give a folder (it is made if missing)", .0.display())]
    NotAFolder(PathBuf),
    #[error("--cache {}: cannot make the folder: {source}", .path.display())]
    MakeFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--cache {}: cannot open the cache: {source}; check that the folder is writable", .path.display())]
    Open {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "{}: {why}; delete it (the cache is refilled as requests are answered) or give another --cache folder",
        .path.display()
    )]
    NotOurs { path: PathBuf, why: String },
}

/// The key of an endpoint in the store: the SHA-256 (hex) of its URL, so a
/// key in a URL's query string never reaches the file.
pub fn endpoint_key(url: &str) -> String {
    hex(&Sha256::digest(url.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store in `dir`, made if missing and checked to be ours; refused
/// (with what to do) when it cannot be used, before anything is sent.
pub fn open(dir: &Path) -> Result<PathBuf, CacheError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CacheError::NotAFolder(dir.to_path_buf()));
    }
    make_folder(dir).map_err(|source| CacheError::MakeFolder {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(DB_FILE);
    let io = |source: std::io::Error| CacheError::Open {
        path: path.clone(),
        source: Box::new(source),
    };
    if path.exists() && !path.is_file() {
        return Err(CacheError::NotOurs {
            path: path.clone(),
            why: "not a plain file".into(),
        });
    }
    // Made by us first, owner-only: SQLite gives its -wal and -shm files
    // the database file's mode.
    make_file(&path).map_err(io)?;
    let conn = connect(&path)?;
    // Runs started together (shards) all make the store at once: the
    // switch to WAL and the first transaction may find the file locked
    // without SQLite's busy handler being asked, so it is tried again.
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match init(&conn, &path) {
            Err(e) if busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10 + fastrand::u64(0..40)));
            }
            done => return done.map(|()| path),
        }
    }
}

/// Another process holds the lock (for now).
fn busy(e: &CacheError) -> bool {
    let CacheError::Open { source, .. } = e else {
        return false;
    };
    source
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|code| matches!(code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

#[cfg(unix)]
fn make_folder(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn make_folder(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

fn make_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// A connection to the store with the settings every one needs.
pub(super) fn connect(path: &Path) -> Result<Connection, CacheError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| failed(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| failed(path, e))?;
    Ok(conn)
}

/// What an error of SQLite on the store at `path` means for the user: a
/// damaged file (truncated or overwritten by something else) fails every
/// later run the same way until it is deleted, so that is said.
pub fn explain(path: &Path, e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => format!(
            "{}: {e}; the file is damaged: delete it (the cache is refilled as requests are answered)",
            path.display()
        ),
        _ => format!("{}: {e}", path.display()),
    }
}

/// An error of SQLite on `path`: a file that is not a database (or a
/// damaged one) is not ours; anything else is a failure to open.
pub(super) fn failed(path: &Path, e: rusqlite::Error) -> CacheError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => CacheError::NotOurs {
            path: path.to_path_buf(),
            why: format!("not a promptbatch cache, or damaged ({e})"),
        },
        _ => CacheError::Open {
            path: path.to_path_buf(),
            source: Box::new(e),
        },
    }
}

/// Checks the file is ours (or empty, then makes it ours), in WAL mode.
fn init(conn: &Connection, path: &Path) -> Result<(), CacheError> {
    let fail = |e| failed(path, e);
    let not_ours = |why: String| CacheError::NotOurs {
        path: path.to_path_buf(),
        why,
    };
    // Read before anything is written: another program's database is
    // refused untouched (a switch to WAL would change it).
    let (id, tables) = ids(conn).map_err(fail)?;
    if id != APPLICATION_ID && tables > 0 {
        return Err(not_ours(
            "not a promptbatch cache (another program's SQLite database)".into(),
        ));
    }
    if id != APPLICATION_ID {
        // Must come before the switch to WAL, which writes the file's first
        // page, and before the first table: the only time it can be set.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(fail)?;
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(CacheError::Open {
            path: path.to_path_buf(),
            source: format!("SQLite would not use WAL mode here (got {mode}): is the folder on a network file system?").into(),
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    if id == APPLICATION_ID {
        return check_version(conn, path);
    }
    // Made by whichever process takes the write lock first; the others see
    // it made. auto_vacuum must be set before the first table exists.
    conn.execute_batch("BEGIN IMMEDIATE;").map_err(fail)?;
    let made = (|| {
        let (id, tables) = ids(conn)?;
        if id == APPLICATION_ID || tables > 0 {
            return Ok(id);
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        conn.execute_batch(SCHEMA)?;
        Ok(APPLICATION_ID)
    })();
    let end = match made {
        Ok(_) => conn.execute_batch("COMMIT"),
        Err(_) => conn.execute_batch("ROLLBACK"),
    };
    let id = made.map_err(fail)?;
    end.map_err(fail)?;
    if id != APPLICATION_ID {
        return Err(not_ours(
            "not a promptbatch cache (another program's SQLite database)".into(),
        ));
    }
    check_version(conn, path)
}

/// The file's application id and how many schema entries it has, read in
/// one statement (one snapshot): read apart, another process making the
/// store between the two reads would make it look like someone else's.
fn ids(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(
        "SELECT application_id, (SELECT count(*) FROM sqlite_master) FROM pragma_application_id()",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

fn check_version(conn: &Connection, path: &Path) -> Result<(), CacheError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| failed(path, e))?;
    if version != SCHEMA_VERSION {
        return Err(CacheError::NotOurs {
            path: path.to_path_buf(),
            why: format!(
                "a promptbatch cache of another layout (version {version}, this promptbatch reads {SCHEMA_VERSION})"
            ),
        });
    }
    Ok(())
}

/// The store in `dir` as it stands, for a look that changes nothing
/// (`validate`): None when there is none yet; refused as [`open`] refuses.
pub fn existing(dir: &Path) -> Result<Option<PathBuf>, CacheError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CacheError::NotAFolder(dir.to_path_buf()));
    }
    let path = dir.join(DB_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let conn = connect(&path)?;
    let (id, tables) = ids(&conn).map_err(|e| failed(&path, e))?;
    if id != APPLICATION_ID && (tables > 0 || std::fs::metadata(&path).is_ok_and(|m| m.len() > 0)) {
        return Err(CacheError::NotOurs {
            path,
            why: "not a promptbatch cache (another program's SQLite database)".into(),
        });
    }
    if id != APPLICATION_ID {
        // An empty file a run made and left before making it ours.
        return Ok(None);
    }
    check_version(&conn, &path)?;
    Ok(Some(path))
}

/// Looks replies up for one endpoint, on the thread that plans requests.
pub struct Lookup {
    conn: Connection,
    endpoint: String,
    path: PathBuf,
}

impl Lookup {
    pub fn new(path: &Path, endpoint: String) -> Result<Lookup, CacheError> {
        Ok(Lookup {
            conn: connect(path)?,
            endpoint,
            path: path.to_path_buf(),
        })
    }

    /// A lookup's error, said with what to do about it.
    pub fn explain(&self, e: &rusqlite::Error) -> String {
        explain(&self.path, e)
    }

    /// The stored reply (and its row id, to mark it used) of each of
    /// `shas`, in order; one read transaction for all of them. A store that
    /// cannot be read now (locked past the timeout, a disk error) answers
    /// nothing: the requests are sent, as without a cache.
    pub fn find<'a>(
        &mut self,
        shas: impl Iterator<Item = &'a str>,
    ) -> rusqlite::Result<Vec<Option<(i64, String)>>> {
        let tx = self.conn.transaction()?;
        let mut found = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT rowid, reply FROM replies WHERE endpoint = ?1 AND request_sha256 = ?2",
            )?;
            for sha in shas {
                let mut rows = stmt.query((&self.endpoint, sha))?;
                found.push(match rows.next()? {
                    Some(row) => Some((row.get(0)?, row.get(1)?)),
                    None => None,
                });
            }
        }
        tx.finish()?;
        Ok(found)
    }
}
