//! `[input] images`: local files sent byte for byte as data: URLs, URLs
//! untouched, bad files stopped before anything is sent, the budget's worst
//! case counting each image, and an edited image resent.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::common::*;

/// An image of type `mime` by its first bytes (what promptbatch checks),
/// then bytes no text encoding would survive: every byte value, twice.
fn image_bytes(mime: &str, seed: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = match mime {
        "image/png" => b"\x89PNG\r\n\x1a\n".to_vec(),
        "image/jpeg" => vec![0xFF, 0xD8, 0xFF, 0xE0],
        "image/webp" => b"RIFF\0\0\0\0WEBP".to_vec(),
        other => panic!("no test image of type {other}"),
    };
    bytes.extend((0..512u32).map(|i| (i as u8).wrapping_mul(seed)));
    bytes
}

/// A job reading `data/rows.jsonl` (so images are relative to `data/`, not
/// to the job file), with one image template per row and `extra` TOML in `[input]`.
fn image_job(url: &str, extra: &str) -> String {
    format!(
        r#"name = "t"
[endpoint]
url = "{url}"
timeout_secs = 5
[input]
path = "data/rows.jsonl"
images = ["{{{{photo}}}}"]
{extra}
[retry]
initial_backoff_ms = 1
max_backoff_ms = 20
[defaults]
model = "m"
"#
    )
}

fn write_bytes(sb: &Sandbox, name: &str, bytes: &[u8]) {
    let path = sb.path(name);
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder made");
    std::fs::write(path, bytes).expect("written");
}

/// The parts of the user message of the request of `id` (first attempt).
fn parts(bodies: &std::collections::HashMap<String, Value>, id: &str) -> Vec<Value> {
    let body = &bodies[&format!("t:{id}:default:1")];
    body["messages"][0]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of parts: {body}"))
        .clone()
}

#[tokio::test]
async fn local_files_arrive_byte_for_byte_and_urls_unchanged() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    write_bytes(&sb, "data/img/a.png", &image_bytes("image/png", 3));
    write_bytes(&sb, "data/img/b.JPG", &image_bytes("image/jpeg", 7));
    let data_url = "data:image/gif;base64,R0lGODlhAQABAAAAACw=";
    let rows = [
        json!({"id": "a", "prompt": "what is in a?", "photo": "img/a.png"}),
        json!({"id": "b", "prompt": "and b?", "photo": "img/b.JPG"}),
        json!({"id": "u", "prompt": "and u?", "photo": "https://example.test/u.webp?size=2"}),
        json!({"id": "d", "prompt": "and d?", "photo": data_url}),
    ]
    .iter()
    .map(|r| format!("{r}\n"))
    .collect::<String>();
    sb.write("data/rows.jsonl", &rows);
    let out = run_job(&sb).job(&image_job(&mock.url(), "")).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let bodies = bodies(&mock);
    for (id, mime, seed) in [("a", "image/png", 3), ("b", "image/jpeg", 7)] {
        let parts = parts(&bodies, id);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(parts[0]["type"], "text", "text first");
        let url = parts[1]["image_url"]["url"].as_str().expect("a url");
        let encoded = url
            .strip_prefix(&format!("data:{mime};base64,"))
            .unwrap_or_else(|| panic!("a {mime} data URL: {url:.60}"));
        assert_eq!(
            STANDARD.decode(encoded).expect("base64"),
            image_bytes(mime, seed)
        );
    }
    assert_eq!(
        parts(&bodies, "u")[1],
        json!({"type": "image_url", "image_url": {"url": "https://example.test/u.webp?size=2"}})
    );
    assert_eq!(parts(&bodies, "d")[1]["image_url"]["url"], data_url);
    assert_eq!(parts(&bodies, "a")[0]["text"], "what is in a?");

    // request_sha256 covers the image: an edited file is resent, nothing else.
    let before = mock.stats().requests();
    write_bytes(&sb, "data/img/a.png", &image_bytes("image/png", 5));
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), before + 1);
    let resent = mock.received().last().expect("a request").body.clone();
    let url = resent["messages"][0]["content"][1]["image_url"]["url"]
        .as_str()
        .expect("a url")
        .to_string();
    assert_eq!(
        STANDARD
            .decode(url.trim_start_matches("data:image/png;base64,"))
            .expect("base64"),
        image_bytes("image/png", 5)
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_oversized_image_is_exit_2_with_file_line_and_field() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    write_bytes(&sb, "data/ok.png", &image_bytes("image/png", 1)[..100]);
    write_bytes(&sb, "data/big.png", &image_bytes("image/png", 2));
    let rows = concat!(
        "{\"id\": \"1\", \"prompt\": \"p\", \"photo\": \"ok.png\"}\n",
        "{\"id\": \"2\", \"prompt\": \"p\", \"photo\": \"gone.png\"}\n",
        "{\"id\": \"3\", \"prompt\": \"p\", \"photo\": \"big.png\"}\n",
        "{\"id\": \"4\", \"prompt\": \"p\", \"photo\": \"notes.txt\"}\n",
    );
    sb.write("data/rows.jsonl", rows);
    let out = run_job(&sb)
        .job(&image_job(&mock.url(), "max_image_bytes = 511"))
        .output()
        .await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("rows.jsonl:2") && err.contains("gone.png"),
        "{err}"
    );
    assert!(err.contains("rows.jsonl:3"), "{err}");
    assert!(
        err.contains("520 bytes, more than [input] max_image_bytes (511)"),
        "{err}"
    );
    assert!(
        err.contains("rows.jsonl:4") && err.contains("png, jpg, jpeg, gif, webp"),
        "{err}"
    );
    assert!(err.contains("photo"), "the field is named: {err}");
    assert!(!err.contains("rows.jsonl:1"), "{err}");
    assert_eq!(mock.stats().requests(), 0, "nothing sent");

    // Rows that bring their own messages cannot take [input] images.
    sb.write(
        "data/rows.jsonl",
        "{\"id\": \"m\", \"photo\": \"ok.png\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
    );
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its own messages"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mock.stats().requests(), 0);
    mock.shutdown().await;
}

/// A file named like an image whose content is none (an unpacked dataset's
/// `cat.png` linking to a key file) is never uploaded: a row error before
/// sending. A picture under another type's name goes as the type it is, and
/// a data: URL is bounded like a file.
#[cfg(unix)]
#[tokio::test]
async fn only_image_content_is_uploaded_whatever_the_name_says() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write("secret/id_key", "-----BEGIN PRIVATE KEY----- hunter2\n");
    write_bytes(&sb, "data/real.jpg", &image_bytes("image/png", 4));
    std::os::unix::fs::symlink(sb.path("secret/id_key"), sb.path("data/cat.png")).expect("link");
    let big = format!("data:image/png;base64,{}", "A".repeat(1024));
    let rows = [
        json!({"id": "cat", "prompt": "p", "photo": "cat.png"}),
        json!({"id": "big", "prompt": "p", "photo": big}),
    ]
    .iter()
    .map(|r| format!("{r}\n"))
    .collect::<String>();
    sb.write("data/rows.jsonl", &rows);
    let job = image_job(&mock.url(), "max_image_bytes = 700");
    let out = run_job(&sb).job(&job).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("rows.jsonl:1") && err.contains("no PNG, JPEG, GIF or WebP image"),
        "{err}"
    );
    assert!(
        err.contains("rows.jsonl:2")
            && err.contains("768 bytes, more than [input] max_image_bytes (700)"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(mock.stats().requests(), 0, "nothing sent");

    sb.write(
        "data/rows.jsonl",
        "{\"id\": \"r\", \"prompt\": \"p\", \"photo\": \"real.jpg\"}\n",
    );
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let url = parts(&bodies(&mock), "r")[1]["image_url"]["url"]
        .as_str()
        .expect("a url")
        .to_string();
    let encoded = url
        .strip_prefix("data:image/png;base64,")
        .expect("sent as the PNG it is");
    assert_eq!(
        STANDARD.decode(encoded).expect("base64"),
        image_bytes("image/png", 4)
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn the_worst_case_counts_each_image_at_its_token_bound() {
    let sb = Sandbox::new();
    write_bytes(&sb, "data/a.png", &image_bytes("image/png", 1));
    sb.write(
        "data/rows.jsonl",
        "{\"id\": \"a\", \"prompt\": \"abcdefgh\", \"photo\": \"a.png\", \"other\": \"https://x.test/b.png\"}\n",
    );
    let job = image_job("http://127.0.0.1:9/v1/chat/completions", "")
        .replace("images = [\"{{photo}}\"]", "images = [\"{{photo}}\", \"{{other}}\"]")
        + "max_tokens = 100\n[pricing]\nimage_tokens = 1000\n\"m\" = { input = 1.0, output = 2.0 }\n";
    sb.write("job.toml", &job);
    let out = output(sb.command(&["validate", "job.toml", "--json"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let set = &doc["estimate"]["sets"][0];
    // 8 bytes of text + 2 images at 1,000 + 8 for the one message.
    assert_eq!(set["prompt_tokens_bound"], 8 + 2000 + 8, "{set}");
    // Worst: 2016 at $1/M + 100 at $2/M.
    let worst = set["worst_case_usd"].as_f64().expect("a figure");
    assert!((worst - 2216e-6).abs() < 1e-12, "{set}");
}

#[tokio::test]
async fn the_sample_image_job_runs_with_simulate() {
    let sb = Sandbox::new();
    let job = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/images.toml");
    let out = output(sb.command(&["run", job, "--simulate", "--output", "i.jsonl"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("i.jsonl");
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r["status"] == "ok"), "{records:?}");
    // The sample's images are real pictures, small enough to read in a diff.
    let png = include_bytes!("../../samples/images/gradient.png");
    let decoder = png::Decoder::new(std::io::Cursor::new(&png[..]));
    let reader = decoder.read_info().expect("a valid PNG");
    assert_eq!((reader.info().width, reader.info().height), (16, 16));
    let jpeg = include_bytes!("../../samples/images/gray.jpg");
    assert!(jpeg.starts_with(&[0xff, 0xd8]) && jpeg.ends_with(&[0xff, 0xd9]));
    assert!(png.len() < 1024 && jpeg.len() < 1024);
}

#[tokio::test]
async fn csv_rows_take_images_from_a_column_and_a_missing_column_is_said_once() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    write_bytes(&sb, "data/a.webp", &image_bytes("image/webp", 9));
    sb.write(
        "data/rows.csv",
        "id,question,photo\n1,what?,a.webp\n2,and?,a.webp\n",
    );
    let job = image_job(&mock.url(), "template = \"{{question}}\"")
        .replace("data/rows.jsonl", "data/rows.csv");
    let out = run_job(&sb).job(&job).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let bodies = bodies(&mock);
    let url = parts(&bodies, "1")[1]["image_url"]["url"]
        .as_str()
        .expect("a url")
        .to_string();
    assert!(url.starts_with("data:image/webp;base64,"), "{url:.40}");

    sb.write("data/rows.csv", "id,question\n1,what?\n2,and?\n");
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("problem").count(), 1, "said once: {err}");
    assert!(err.contains("needs column \"photo\""), "{err}");
    assert!(err.contains("rows.csv:1"), "{err}");
    mock.shutdown().await;
}
