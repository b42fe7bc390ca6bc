//! The state file: keys without secrets, written atomically and privately,
//! read back per origin and model, merged across concurrent runs, and
//! ignored (with a reason) when corrupt, huge, foreign or expired.

use super::*;

fn learned(rpm: f64, at: DateTime<Utc>) -> Learned {
    Learned {
        requests_per_minute: rpm,
        window_s: 1.0,
        learned_at: at,
    }
}

fn models(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn keys_name_the_origin_and_models_only() {
    let m = models(&["b", "a", "b"]);
    for (url, expected) in [
        (
            "https://api.openai.com/v1/chat/completions",
            Some("https://api.openai.com:443 a,b"),
        ),
        (
            "http://user:SECRET@127.0.0.1:8089/v1/chat/completions?key=SECRET#x",
            Some("http://127.0.0.1:8089 a,b"),
        ),
        ("http://LOCALHOST/v1", Some("http://localhost:80 a,b")),
        ("not a url", None),
    ] {
        assert_eq!(key(url, &m).as_deref(), expected, "{url}");
    }
}

#[test]
fn a_pace_is_read_back_per_origin_and_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("promptbatch").join("rates.json");
    let now = Utc::now();
    assert_eq!(read(&path, "k", now).unwrap(), None, "no file yet");
    write(&path, "http://a:1 m", learned(120.0, now), now).unwrap();
    write(&path, "http://a:1 n", learned(60.0, now), now).unwrap();
    write(&path, "http://b:1 m", learned(30.0, now), now).unwrap();
    let rpm = |k: &str| read(&path, k, now).unwrap().map(|l| l.requests_per_minute);
    assert_eq!(rpm("http://a:1 m"), Some(120.0));
    assert_eq!(rpm("http://a:1 n"), Some(60.0));
    assert_eq!(rpm("http://b:1 m"), Some(30.0));
    assert_eq!(rpm("http://b:1 n"), None);
    // A later run's pace replaces the earlier one.
    write(&path, "http://a:1 m", learned(90.0, now), now).unwrap();
    assert_eq!(rpm("http://a:1 m"), Some(90.0));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // Only the file and its lock: no temporary file left behind.
    let mut names: Vec<String> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["rates.json", "rates.json.lock"]);
}

#[test]
fn old_and_absurd_entries_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rates.json");
    let now = Utc::now();
    let old = now - chrono::Duration::days(EXPIRY_DAYS + 1);
    write(&path, "old", learned(60.0, old), old).unwrap();
    assert_eq!(read(&path, "old", now).unwrap(), None);
    for (k, rpm) in [("zero", 0.0), ("negative", -5.0), ("huge", 1e12)] {
        write(&path, k, learned(rpm, now), now).unwrap();
        assert_eq!(read(&path, k, now).unwrap(), None, "{k}");
    }
    let future = now + chrono::Duration::days(3);
    write(&path, "future", learned(60.0, future), now).unwrap();
    assert_eq!(read(&path, "future", now).unwrap(), None);
}

#[test]
fn corrupt_huge_and_foreign_files_are_ignored_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rates.json");
    let now = Utc::now();
    let cases: [(&[u8], &str); 4] = [
        (b"{not json", "not a promptbatch rates file"),
        (b"\xff\xfe\x00garbage", "not a promptbatch rates file"),
        (
            br#"{"format":"something-else/9","entries":{}}"#,
            "not a promptbatch rates file",
        ),
        (br#"[1,2,3]"#, "not a promptbatch rates file"),
    ];
    for (content, says) in cases {
        fs::write(&path, content).unwrap();
        let err = read(&path, "k", now).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
        // The next write repairs it, and says what it replaced.
        let replaced = write(&path, "k", learned(60.0, now), now).unwrap();
        assert!(replaced.is_some());
        assert!(read(&path, "k", now).unwrap().is_some());
    }
    // Huge: refused without being read whole.
    let big = vec![b' '; (MAX_BYTES + 10) as usize];
    fs::write(&path, big).unwrap();
    let err = read(&path, "k", now).unwrap_err();
    assert!(matches!(err, RatesError::TooBig { .. }), "{err}");
}

#[test]
fn concurrent_runs_lose_no_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("rates.json");
    let now = Utc::now();
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                for round in 0..5 {
                    let k = format!("http://h:{i} m");
                    write(&path, &k, learned(f64::from(10 + round), now), now).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for i in 0..8 {
        let got = read(&path, &format!("http://h:{i} m"), now).unwrap();
        assert_eq!(got.map(|l| l.requests_per_minute), Some(14.0), "entry {i}");
    }
}

#[test]
fn the_path_follows_xdg_state_home() {
    // Read only: the variables are the process's own, and other tests may run
    // meanwhile, so this checks the rule on what is set rather than setting it.
    let got = path();
    match std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        Some(base) if base.is_absolute() => {
            assert_eq!(got, Some(base.join("promptbatch/rates.json")))
        }
        _ => match std::env::var_os("HOME").map(PathBuf::from) {
            Some(home) if home.is_absolute() => {
                assert_eq!(got, Some(home.join(".local/state/promptbatch/rates.json")))
            }
            _ => assert_eq!(got, None),
        },
    }
}

/// A FIFO (or any special file) where the state file or its lock should be:
/// opening one blocks until a writer comes, so a run that opened it as a
/// plain file would hang before its first request. Ignored with a reason.
#[cfg(unix)]
#[test]
fn a_fifo_in_place_of_the_file_or_its_lock_does_not_hang_a_run() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("promptbatch");
    fs::create_dir_all(&folder).unwrap();
    let path = folder.join("rates.json");
    let fifo = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    };
    let now = Utc::now();
    // Each step on a thread of its own: a hang fails the test instead of stalling it.
    let within = |what: &str, step: Box<dyn FnOnce() -> bool + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(step()));
        let ok = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{what}: hung on a FIFO"));
        assert!(ok, "{what}");
    };
    fifo(&path);
    let p = path.clone();
    within(
        "read",
        Box::new(move || matches!(read(&p, "k", now), Err(RatesError::Read { .. }))),
    );
    let p = path.clone();
    within(
        "write over a FIFO",
        Box::new(move || write(&p, "k", learned(60.0, now), now).is_ok()),
    );
    let p = path.clone();
    within(
        "read back",
        Box::new(move || read(&p, "k", now).ok().flatten().is_some()),
    );
    let lock = folder.join("rates.json.lock");
    fs::remove_file(&lock).unwrap();
    fifo(&lock);
    let p = path.clone();
    within(
        "write beside a FIFO lock",
        Box::new(move || write(&p, "k", learned(60.0, now), now).is_err()),
    );
}
