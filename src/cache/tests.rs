use super::store::connect;
use super::writer::{evict, used_bytes, write};
use super::*;

fn entry(sha: &str, size: usize) -> Entry {
    Entry {
        sha: sha.into(),
        reply: format!(r#"{{"content":"{}"}}"#, "x".repeat(size)),
    }
}

#[test]
fn a_reply_kept_is_found_for_its_endpoint_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = open(&dir.path().join("c")).unwrap();
    let mut conn = connect(&path).unwrap();
    write(&mut conn, "e1", &[entry("s1", 3)], &[], 1).unwrap();
    let mut here = Lookup::new(&path, "e1".into()).unwrap();
    let found = here.find(["s1", "s2"].into_iter()).unwrap();
    assert_eq!(found[0].as_ref().unwrap().1, r#"{"content":"xxx"}"#);
    assert!(found[1].is_none());
    let mut elsewhere = Lookup::new(&path, "e2".into()).unwrap();
    assert!(elsewhere.find(["s1"].into_iter()).unwrap()[0].is_none());
    // Opened again: the same store, still ours.
    assert_eq!(open(&dir.path().join("c")).unwrap(), path);
}

#[cfg(unix)]
#[test]
fn folder_and_file_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = open(&dir.path().join("new/c")).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("new/c")), 0o700);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_file_that_is_not_ours_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(open(&file), Err(CacheError::NotAFolder(_))));

    let garbage = dir.path().join("g");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(garbage.join(DB_FILE), vec![7u8; 8192]).unwrap();
    let e = open(&garbage).unwrap_err();
    assert!(matches!(e, CacheError::NotOurs { .. }), "{e}");
    assert!(e.to_string().contains("delete it"), "{e}");

    let other = dir.path().join("o");
    std::fs::create_dir(&other).unwrap();
    let conn = rusqlite::Connection::open(other.join(DB_FILE)).unwrap();
    conn.execute_batch("CREATE TABLE t (a)").unwrap();
    drop(conn);
    let e = open(&other).unwrap_err();
    assert!(e.to_string().contains("another program"), "{e}");
    // Refused untouched: still in its own journal mode.
    let conn = rusqlite::Connection::open(other.join(DB_FILE)).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

#[test]
fn past_the_bound_the_least_recently_used_rows_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = open(dir.path()).unwrap();
    let mut conn = connect(&path).unwrap();
    // 200 rows of ~2 KB, each used at its own time; then the oldest half
    // used again, latest of all.
    let rows: Vec<Entry> = (0..200).map(|i| entry(&format!("s{i:03}"), 2000)).collect();
    for (i, e) in rows.iter().enumerate() {
        write(&mut conn, "e", std::slice::from_ref(e), &[], i as i64).unwrap();
    }
    let ids: Vec<i64> = {
        let mut stmt = conn
            .prepare("SELECT rowid FROM replies WHERE request_sha256 < 's100'")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    write(&mut conn, "e", &[], &ids, 1000).unwrap();
    let before = used_bytes(&conn).unwrap();
    let max = before * 3 / 4;
    let evicted = evict(&conn, max).unwrap();
    assert!(evicted > 0);
    assert!(used_bytes(&conn).unwrap() <= max, "within the bound");
    let file = std::fs::metadata(&path).unwrap().len();
    assert!(
        file <= max + 64 * 1024,
        "the file shrank too: {file} > {max}"
    );
    let mut lookup = Lookup::new(&path, "e".into()).unwrap();
    let shas: Vec<String> = (0..200).map(|i| format!("s{i:03}")).collect();
    let found = lookup.find(shas.iter().map(String::as_str)).unwrap();
    // The touched rows (s000..s099) were used last: all kept; the rest
    // went oldest first.
    assert!(found[..100].iter().all(Option::is_some));
    let kept: Vec<bool> = found[100..].iter().map(Option::is_some).collect();
    assert!(!kept[0], "the least recently used row went");
    assert!(
        kept.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {kept:?}"
    );
    assert_eq!(evict(&conn, u64::MAX).unwrap(), 0);
}

#[test]
fn runs_started_together_all_open_one_new_store() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (dir, barrier) = (dir.path().join("c"), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    open(&dir).map(drop).map_err(|e| e.to_string())
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), Ok(()));
        }
    }
}

#[test]
fn replies_waiting_on_a_locked_store_are_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = open(dir.path()).unwrap();
    let writer = Writer::spawn(&path, "e".into(), 1024.0).unwrap();
    let handle = writer.handle().unwrap();
    // Another process holds the write lock meanwhile.
    let other = connect(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    for i in 0..48 {
        handle.put(vec![entry(&format!("s{i}"), 1024 * 1024)]);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    other.execute_batch("COMMIT").unwrap();
    drop(handle);
    let stats = writer.finish();
    assert_eq!(stats.failed, None);
    assert!(stats.dropped > 0, "{stats:?}");
    assert!(stats.dropped <= 48 - 30, "about 32 MiB waited: {stats:?}");
    assert_eq!(stats.stored + stats.dropped, 48);
}
