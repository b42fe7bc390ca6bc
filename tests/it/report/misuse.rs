//! `report` as a careless user runs it: `-o` naming one of the outputs
//! read, a symlink, a pipe; a folder that holds its outputs one level down.

use std::path::Path;

use crate::common::{code, stderr, stdout, Sandbox};

const LINE: &str = r#"{"key":"a","job":"j","param_set":"p","status":"ok","model":"m","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7},"cost_usd":0.5,"cost_source":"provider","latency_ms":10.0,"attempts":1,"response_id":"r1","started_at":"2026-11-24T10:00:00Z","finished_at":"2026-11-24T10:00:01Z"}
"#;

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

#[test]
fn an_output_named_as_the_report_file_is_refused_and_kept() {
    let sb = Sandbox::new();
    sb.write("out.jsonl", LINE);
    std::os::unix::fs::symlink("out.jsonl", sb.path("link.jsonl")).expect("symlink");
    std::fs::hard_link(sb.path("out.jsonl"), sb.path("hard.jsonl")).expect("hard link");
    for target in ["out.jsonl", "./out.jsonl", "link.jsonl", "hard.jsonl"] {
        let out = sb
            .command(&["report", "out.jsonl", "-o", target, "--format", "json"])
            .output()
            .expect("the binary runs");
        assert_eq!(code(&out), 2, "-o {target}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("is one of the outputs"),
            "-o {target}: {}",
            stderr(&out)
        );
        assert_eq!(sb.read("out.jsonl"), LINE, "-o {target} left the output");
    }
    assert!(is_symlink(&sb.path("link.jsonl")));
}

#[test]
fn a_report_written_over_a_symlink_goes_to_its_target() {
    let sb = Sandbox::new();
    sb.write("out.jsonl", LINE);
    sb.write("reports/2026-11-24.json", "old");
    std::os::unix::fs::symlink("reports/2026-11-24.json", sb.path("latest.json")).expect("symlink");
    let out = sb
        .command(&["report", "out.jsonl", "-o", "latest.json"])
        .output()
        .expect("the binary runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(is_symlink(&sb.path("latest.json")), "the link was replaced");
    let written: serde_json::Value =
        serde_json::from_str(&sb.read("reports/2026-11-24.json")).expect("json");
    assert_eq!(written["totals"]["requests"]["ok"], 1);
}

#[test]
fn a_report_written_to_a_pipe_or_device_goes_through_it() {
    let sb = Sandbox::new();
    sb.write("out.jsonl", LINE);
    let fifo = sb.path("report.fifo");
    let name = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0, "mkfifo");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo))
    };
    let out = sb
        .command(&[
            "report",
            "out.jsonl",
            "-o",
            "report.fifo",
            "--format",
            "csv",
        ])
        .output()
        .expect("the binary runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::symlink_metadata(&fifo)
        .expect("still there")
        .file_type();
    assert!(kind.is_fifo(), "the pipe was replaced by a file");
    let read = reader.join().expect("reader").expect("read the pipe");
    assert!(read.contains("\ntotal,1,0,3,4,"), "{read}");
    // A device that takes nothing more (disk full) is an error, not a success.
    if Path::new("/dev/full").exists() {
        let out = sb
            .command(&["report", "out.jsonl", "-o", "/dev/full"])
            .output()
            .expect("the binary runs");
        assert_ne!(code(&out), 0, "{}", stdout(&out));
        assert!(stderr(&out).contains("/dev/full"), "{}", stderr(&out));
    }
}

#[test]
fn a_folder_without_outputs_says_so_and_names_its_subfolders() {
    let sb = Sandbox::new();
    sb.write("out/2026-11/a.jsonl", LINE);
    let out = sb
        .command(&["report", "out"])
        .output()
        .expect("the binary runs");
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("every file named is a lock"), "{err}");
    assert!(err.contains("out/2026-11"), "{err}");
}

#[test]
fn the_footer_counts_repeated_lines_and_never_asks_for_the_pricing_given() {
    let sb = Sandbox::new();
    let unpriced = LINE
        .replace(r#""cost_usd":0.5,"cost_source":"provider","#, "")
        .replace(r#""model":"m""#, r#""model":"m/x""#);
    sb.write("a.jsonl", &unpriced);
    sb.write("b.jsonl", &unpriced);
    sb.write("c.jsonl", &unpriced);
    sb.write(
        "prices.toml",
        "\"m/other\" = { input = 1.0, output = 2.0 }\n",
    );
    let out = sb
        .command(&[
            "report",
            "a.jsonl",
            "b.jsonl",
            "c.jsonl",
            "--pricing",
            "prices.toml",
        ])
        .output()
        .expect("the binary runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    // One call in three files: two lines repeat it (not "2 calls seen twice").
    assert!(text.contains("1 request over 3 files"), "{text}");
    assert!(text.contains("2 repeated lines"), "{text}");
    assert!(!text.contains("give --pricing"), "{text}");
    assert!(text.contains("1 request unpriced"), "{text}");
    // The prices that matched nothing are named, not silently ignored.
    let err = stderr(&out);
    assert!(
        err.contains("--pricing has no price for m/x (1 request)"),
        "{err}"
    );
}
