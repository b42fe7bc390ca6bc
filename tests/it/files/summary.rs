//! The summary path: refused before anything is sent when it cannot be
//! written or is the output by another name; a pipe is written into.

use super::*;

#[tokio::test]
async fn a_summary_path_that_cannot_be_written_is_refused_before_anything_is_sent() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["hi"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    std::fs::create_dir(sb.path("s.json")).expect("mkdir");
    let out = run_job(&sb).args(&["--summary", "s.json"]).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("s.json") && stderr(&out).contains("--summary"),
        "{}",
        stderr(&out)
    );
    // Nor a device reached through a link, which could be planted to make
    // a run write into /dev/mem: only a device named as itself is written into.
    symlink("/dev/zero", sb.path("dev.json")).expect("link");
    let out = run_job(&sb).args(&["--summary", "dev.json"]).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("dev.json"), "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 0);
    assert!(!sb.path("o.jsonl").exists());
    mock.shutdown().await;
}

#[tokio::test]
async fn a_summary_path_that_is_a_pipe_is_written_into_never_replaced() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["hi"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    // A pipe, as `--summary >(jq .)` gives; /dev/null is the same case (a
    // rename over it would replace the device with a plain file).
    let fifo = sb.path("s.json");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo))
    };
    let out = run_job(&sb).args(&["--summary", "s.json"]).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let still_a_pipe = {
        use std::os::unix::fs::FileTypeExt;
        std::fs::symlink_metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo())
    };
    // Checked before joining: a reader left on a replaced pipe never returns.
    assert!(still_a_pipe, "the pipe was replaced by a plain file");
    let text = reader.join().expect("join").expect("read");
    let summary: Value = serde_json::from_str(&text).expect("summary JSON");
    assert_eq!(summary["requests"]["ok"], 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_summary_path_that_is_the_output_or_its_lock_by_another_name_is_refused() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["hi"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    std::fs::create_dir(sb.path("sub")).expect("mkdir");
    for summary in ["sub/../o.jsonl", "sub/../o.jsonl.lock"] {
        let out = run_job(&sb).args(&["--summary", summary]).output().await;
        assert_eq!(code(&out), 2, "{summary}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("is the output"),
            "{summary}: {}",
            stderr(&out)
        );
    }
    // Once the output exists, a link to it is the output too.
    let out = run_job(&sb).args(&[]).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.read("o.jsonl");
    symlink("o.jsonl", sb.path("alias.json")).expect("link");
    let out = run_job(&sb)
        .args(&["--summary", "alias.json"])
        .output()
        .await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(sb.read("o.jsonl"), records);
    assert_eq!(mock.stats().requests(), 1);
    mock.shutdown().await;
}
