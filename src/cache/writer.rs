//! The store's writer: a thread of its own that takes replies to keep and
//! hits to mark used, writes each burst in one transaction, and keeps the
//! file within `[cache] max_mb` by dropping the least recently used rows.
//!
//! The cache only saves money; it never holds a run back. A burst that
//! finds the queue full is not kept (counted in [`WriterStats::dropped`]),
//! and a write that fails (another process holding the lock past the
//! timeout, a full disk) is said once at the end, never an error of the run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::store::{connect, explain, CacheError};

/// Bursts that may wait for the thread; with the collector's coalescing, a
/// burst is a millisecond of answers.
const QUEUE: usize = 1024;

/// Bytes of replies that may wait for the thread: what a stuck store can
/// cost in memory, whatever the replies' size (one may be 16 MiB).
const QUEUE_BYTES: u64 = 32 * 1024 * 1024;

/// Rows written in one transaction at most, so one burst never holds the
/// write lock long while other processes wait for it.
const MOST_PER_TRANSACTION: usize = 20_000;

/// How often the size is checked while replies keep coming (and once at the end).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Eviction goes down to this share of `max_mb`, so it runs once in a
/// while rather than after every insert.
const EVICT_TO: f64 = 0.9;

/// A reply to keep: the request's hash and the reply part of its line.
#[derive(Debug, Clone)]
pub struct Entry {
    pub sha: String,
    pub reply: String,
}

enum Msg {
    Put(Vec<Entry>),
    /// Row ids of replies answered from the store.
    Touch(Vec<i64>),
}

/// What the writer did, told at the end of the run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriterStats {
    pub stored: u64,
    /// Replies not kept because the queue was full.
    pub dropped: u64,
    pub evicted: u64,
    /// The first write that failed.
    pub failed: Option<String>,
}

pub struct Writer {
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<WriterStats>>,
    dropped: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
}

/// Hands replies and hits to the writer thread from any thread.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    /// Bytes of replies handed over and not yet written.
    queued: Arc<AtomicU64>,
}

impl Handle {
    /// Queues replies to keep; with the queue full they are not kept.
    pub fn put(&self, entries: Vec<Entry>) {
        let n = entries.len() as u64;
        let bytes = size(&entries);
        let full = self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes > QUEUE_BYTES;
        if full
            || matches!(
                self.tx.try_send(Msg::Put(entries)),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_))
            )
        {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Marks replies as used now (least-recently-used eviction).
    pub fn touch(&self, rows: Vec<i64>) {
        // A lost touch only makes a row look older than it is.
        let _ = self.tx.try_send(Msg::Touch(rows));
    }
}

impl Writer {
    /// Connects on the caller's thread (so a store that cannot be opened is
    /// refused before sending), then writes on a thread of its own.
    pub fn spawn(path: &Path, endpoint: String, max_mb: f64) -> Result<Writer, CacheError> {
        let conn = connect(path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let queued = Arc::<AtomicU64>::default();
        let written = queued.clone();
        let max_bytes = (max_mb * 1024.0 * 1024.0) as u64;
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("cache-writer".into())
            .spawn(move || write_loop(conn, &path, &endpoint, max_bytes, rx, &written))
            .map_err(|e| CacheError::Open {
                path: PathBuf::new(),
                source: Box::new(e),
            })?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            dropped: Arc::default(),
            queued,
        })
    }

    pub fn handle(&self) -> Option<Handle> {
        self.tx.as_ref().map(|tx| Handle {
            tx: tx.clone(),
            dropped: self.dropped.clone(),
            queued: self.queued.clone(),
        })
    }

    /// Waits for every queued reply to be written (once every [`Handle`] is
    /// dropped too), and says what was done.
    pub fn finish(mut self) -> WriterStats {
        self.tx = None;
        let mut stats = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(stats)) => stats,
            _ => WriterStats {
                failed: Some("the thread writing the cache panicked".into()),
                ..WriterStats::default()
            },
        };
        stats.dropped += self.dropped.load(Ordering::Relaxed);
        stats
    }
}

fn write_loop(
    mut conn: Connection,
    path: &Path,
    endpoint: &str,
    max_bytes: u64,
    rx: Receiver<Msg>,
    queued: &AtomicU64,
) -> WriterStats {
    let mut stats = WriterStats::default();
    let mut checked = Instant::now();
    let mut unchecked = false;
    let fail = |stats: &mut WriterStats, e: rusqlite::Error| {
        stats.failed.get_or_insert_with(|| explain(path, &e));
    };
    while let Ok(first) = rx.recv() {
        let (mut puts, mut touches) = (Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Put(entries) => puts.extend(entries),
                Msg::Touch(rows) => touches.extend(rows),
            }
            if puts.len() + touches.len() < MOST_PER_TRANSACTION {
                next = rx.try_recv().ok();
            }
        }
        match write(&mut conn, endpoint, &puts, &touches, now_ms()) {
            Ok(()) => stats.stored += puts.len() as u64,
            Err(e) => fail(&mut stats, e),
        }
        queued.fetch_sub(size(&puts), Ordering::Relaxed);
        unchecked |= !puts.is_empty();
        if unchecked && checked.elapsed() >= CHECK_EVERY {
            match evict(&conn, max_bytes) {
                Ok(n) => stats.evicted += n,
                Err(e) => fail(&mut stats, e),
            }
            (checked, unchecked) = (Instant::now(), false);
        }
    }
    if unchecked {
        match evict(&conn, max_bytes) {
            Ok(n) => stats.evicted += n,
            Err(e) => fail(&mut stats, e),
        }
    }
    stats
}

/// The bytes `entries` hold, as the queue counts them.
fn size(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| (e.sha.len() + e.reply.len()) as u64)
        .sum()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Keeps `puts` (a reply stored again replaces the old one) and marks
/// `touches` used at `now`, in one transaction.
pub(super) fn write(
    conn: &mut Connection,
    endpoint: &str,
    puts: &[Entry],
    touches: &[i64],
    now: i64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO replies (endpoint, request_sha256, reply, last_used) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (endpoint, request_sha256) DO UPDATE SET reply = excluded.reply, last_used = excluded.last_used",
        )?;
        for e in puts {
            put.execute((endpoint, &e.sha, &e.reply, now))?;
        }
        let mut touch = tx.prepare_cached("UPDATE replies SET last_used = ?1 WHERE rowid = ?2")?;
        for row in touches {
            touch.execute((now, row))?;
        }
    }
    tx.commit()
}

/// The bytes the store's rows take (pages in use, free pages left out).
pub(super) fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
    let pages = pragma("page_count")? - pragma("freelist_count")?;
    Ok((pages.max(0) as u64).saturating_mul(pragma("page_size")?.max(0) as u64))
}

/// Past `max_bytes`, drops the least recently used rows down to about
/// [`EVICT_TO`] of it and gives the space back to the file system; returns
/// the rows dropped.
pub(super) fn evict(conn: &Connection, max_bytes: u64) -> rusqlite::Result<u64> {
    let mut used = used_bytes(conn)?;
    if used <= max_bytes {
        return Ok(0);
    }
    let target = (max_bytes as f64 * EVICT_TO) as u64;
    let mut evicted = 0u64;
    // Rows are of about one size: the share to drop is the share of bytes
    // over the target; a second round catches an estimate that fell short.
    for _ in 0..8 {
        let rows: i64 = conn.query_row("SELECT count(*) FROM replies", [], |r| r.get(0))?;
        if rows == 0 || used <= target {
            break;
        }
        let share = 1.0 - target as f64 / used as f64;
        let drop = ((rows as f64 * share).ceil() as i64).clamp(1, rows);
        evicted += conn.execute(
            "DELETE FROM replies WHERE rowid IN
             (SELECT rowid FROM replies ORDER BY last_used, rowid LIMIT ?1)",
            [drop],
        )? as u64;
        used = used_bytes(conn)?;
    }
    // Frees one page per step: stepped to the end.
    let mut vacuum = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut freed = vacuum.query([])?;
    while freed.next()?.is_some() {}
    // Gives the freed pages back to the file system now; busy readers in
    // another process only delay it to a later checkpoint.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    Ok(evicted)
}
