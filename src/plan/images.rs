//! `[input] images`: the `image_url` parts a row adds to its user message.
//!
//! Each template renders to a URL or a local path. `http(s)://` and `data:`
//! values are sent as they are (a `data:` URL within `max_image_bytes`);
//! anything else is a file relative to the input file's folder, sent as a
//! base64 `data:` URL of the MIME type its content shows. Its extension must
//! be one of png, jpg/jpeg, gif, webp (another is a row error naming these:
//! a wrong type would be refused by the server after the request was paid
//! for, or worse, misread).
//!
//! The check of a row opens each file and reads its first bytes only (a
//! plain file, no larger than `max_image_bytes`, whose content starts as a
//! PNG, JPEG, GIF or WebP image does); the bytes are read, and encoded as
//! they are read, only when the request's body is built, so a job of a
//! million photos never holds more than the requests about to be sent.
//!
//! Symlinks are followed (datasets often link into a shared store), and a
//! path may leave the input's folder; what keeps a file that is no image
//! from being uploaded (a `cat.png` in an unpacked archive that links to a
//! key or a password file) is the content check: the MIME type sent is the
//! one the content shows, and content of no image type is a row error.
//! Files are opened without waiting (`O_NONBLOCK`), so a FIFO put in a
//! file's place after its check is refused instead of hanging the run.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::write::EncoderStringWriter;
use serde_json::{json, Map, Value};

use super::messages::Problem;
use crate::job::{InputSource, Job};
use crate::template::Template;

/// The extensions of the types vision models take (the content is checked too: [`sniff`]).
const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "webp"];

/// The job's image templates and where their files are.
#[derive(Debug)]
pub(super) struct Images {
    templates: Vec<Template>,
    /// The input file's folder: relative paths start there.
    base: PathBuf,
    max_bytes: u64,
}

/// One image of a row, checked.
#[derive(Debug, Clone)]
pub(super) enum Image {
    /// An `http(s)://` or `data:` URL, sent as it is.
    Url(String),
    /// A local file (plain, readable, an image by its content, within the
    /// size bound when checked).
    File { path: PathBuf },
}

impl Images {
    /// None when the job lists no image.
    pub fn new(job: &Job) -> Option<Images> {
        if job.input.images.is_empty() {
            return None;
        }
        let base = match &job.input.source {
            InputSource::File(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
            InputSource::Stdin => PathBuf::new(),
        };
        Some(Images {
            templates: job.input.images.clone(),
            base,
            max_bytes: job.input.max_image_bytes,
        })
    }

    /// Renders every template over the row and checks each local file;
    /// every problem of the row, not the first.
    pub fn resolve(&self, fields: &Map<String, Value>) -> Result<Vec<Image>, Vec<Problem>> {
        let mut images = Vec::with_capacity(self.templates.len());
        let mut problems = Vec::new();
        for (i, template) in self.templates.iter().enumerate() {
            let field = || {
                template
                    .fields()
                    .next()
                    .map_or_else(|| format!("images[{i}]"), str::to_string)
            };
            let value = match template.render(fields) {
                Ok(value) => value,
                Err(e) => {
                    let what = format!("the image template {:?}: {e}", template.source());
                    problems.push((Some(e.field().to_string()), what));
                    continue;
                }
            };
            match self.image(&value) {
                Ok(image) => images.push(image),
                Err(message) => problems.push((Some(field()), message)),
            }
        }
        match problems.is_empty() {
            true => Ok(images),
            false => Err(problems),
        }
    }

    fn image(&self, value: &str) -> Result<Image, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("the image is empty: give a URL or a file path".into());
        }
        let lower = value.get(..8).unwrap_or(value).to_ascii_lowercase();
        if lower.starts_with("data:") {
            // Bounded like a file: the row brings the bytes itself.
            let (head, payload) = value.split_once(',').unwrap_or((value, ""));
            let bytes = match head.to_ascii_lowercase().ends_with(";base64") {
                true => payload.len() as u64 / 4 * 3,
                false => payload.len() as u64,
            };
            if bytes > self.max_bytes {
                return Err(format!(
                    "the data: URL holds about {bytes} bytes, more than [input] max_image_bytes ({})",
                    self.max_bytes
                ));
            }
            return Ok(Image::Url(value.to_string()));
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Image::Url(value.to_string()));
        }
        let path = self.base.join(value);
        let shown = path.display();
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if !EXTENSIONS.contains(&extension.as_str()) {
            return Err(format!(
                "image {shown}: cannot tell its type from its extension; the types sent are {} (or give an http(s):// or data: URL)",
                EXTENSIONS.join(", ")
            ));
        }
        let (file, len) = open_plain(&path)?;
        if len > self.max_bytes {
            return Err(format!(
                "image {shown} is {len} bytes, more than [input] max_image_bytes ({})",
                self.max_bytes
            ));
        }
        let mut head = Vec::with_capacity(HEAD);
        file.take(HEAD as u64)
            .read_to_end(&mut head)
            .map_err(|e| format!("image {shown} cannot be read: {e}"))?;
        sniff(&head).ok_or_else(|| not_an_image(&path))?;
        Ok(Image::File { path })
    }

    /// The `image_url` parts of checked images; a file's bytes are read
    /// only when `read` (a check with no body to build needs only the count).
    pub fn parts(&self, images: &[Image], read: bool) -> Result<Vec<Value>, Problem> {
        images
            .iter()
            .map(|image| {
                let url = match image {
                    Image::Url(url) => url.clone(),
                    Image::File { path } if !read => path.display().to_string(),
                    Image::File { path } => {
                        data_url(path, self.max_bytes).map_err(|e| (None, e))?
                    }
                };
                Ok(json!({"type": "image_url", "image_url": {"url": url}}))
            })
            .collect()
    }
}

/// Bytes enough to tell the types apart (WebP's mark is at 8..12).
const HEAD: usize = 12;

/// The MIME type the content's first bytes show, of the types sent.
fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= HEAD && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn not_an_image(path: &Path) -> String {
    format!(
        "image {}: its content is no PNG, JPEG, GIF or WebP image, whatever its name says; it is not sent",
        path.display()
    )
}

/// `path` opened for reading, with its size: a plain file, refused from the
/// opened file's own metadata otherwise. Opened without waiting: a FIFO
/// would block an ordinary open until some writer came.
fn open_plain(path: &Path) -> Result<(File, u64), String> {
    let shown = path.display();
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options
        .open(path)
        .map_err(|e| format!("image {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("image {shown} cannot be read: {e}"))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a plain file"
        };
        return Err(format!("image {shown} is {what}"));
    }
    Ok((file, meta.len()))
}

/// `data:<mime>;base64,...` of a file, encoded as it is read, with the MIME
/// type its content shows (checked again: the file may have changed).
fn data_url(path: &Path, max_bytes: u64) -> Result<String, String> {
    let shown = path.display();
    let (file, len) = open_plain(path)?;
    if len > max_bytes {
        return Err(format!(
            "image {shown} grew to {len} bytes since the check, more than [input] max_image_bytes ({max_bytes})"
        ));
    }
    // Bounded: a file that grows while it is read stops at the bound.
    let mut file = file.take(max_bytes.saturating_add(1));
    let mut head = Vec::with_capacity(HEAD);
    (&mut file)
        .take(HEAD as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("image {shown} cannot be read: {e}"))?;
    let mime = sniff(&head).ok_or_else(|| not_an_image(path))?;
    let mut prefix = String::with_capacity(len.div_ceil(3) as usize * 4 + mime.len() + 13);
    prefix.push_str("data:");
    prefix.push_str(mime);
    prefix.push_str(";base64,");
    let mut encoder = EncoderStringWriter::from_consumer(prefix, &STANDARD);
    let copied = encoder
        .write_all(&head)
        .and_then(|()| std::io::copy(&mut file, &mut encoder))
        .and_then(|n| encoder.flush().map(|()| n + head.len() as u64))
        .map_err(|e| format!("image {shown} cannot be read: {e}"))?;
    if copied > max_bytes {
        return Err(format!(
            "image {shown} grew past [input] max_image_bytes ({max_bytes}) since the check"
        ));
    }
    Ok(encoder.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn images(base: &Path, templates: &[&str], max_bytes: u64) -> Images {
        Images {
            templates: templates
                .iter()
                .map(|t| Template::parse(t).expect("a template"))
                .collect(),
            base: base.to_path_buf(),
            max_bytes,
        }
    }

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn files_become_data_urls_byte_for_byte_and_urls_pass_through() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut bytes = PNG.to_vec();
        bytes.extend((0..=255u8).cycle().take(1000));
        std::fs::write(dir.path().join("a.PNG"), &bytes).expect("written");
        let imgs = images(dir.path(), &["{{photo}}", "{{url}}"], 1 << 20);
        let fields = row(json!({"photo": "a.PNG", "url": "https://x.test/b.jpg?q=1"}));
        let resolved = imgs.resolve(&fields).expect("both fine");
        let parts = imgs.parts(&resolved, true).expect("read");
        let url = parts[0]["image_url"]["url"].as_str().expect("a string");
        let data = url.strip_prefix("data:image/png;base64,").expect("png");
        assert_eq!(STANDARD.decode(data).expect("base64"), bytes);
        assert_eq!(parts[1]["image_url"]["url"], "https://x.test/b.jpg?q=1");
        assert_eq!(parts[1]["type"], "image_url");
    }

    #[test]
    fn missing_oversized_unknown_and_directories_are_row_problems() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("big.jpg"), [0u8; 100]).expect("written");
        std::fs::write(dir.path().join("x.tiff"), [0u8; 1]).expect("written");
        std::fs::create_dir(dir.path().join("d.png")).expect("a dir");
        let imgs = images(
            dir.path(),
            &["{{a}}", "{{b}}", "{{c}}", "{{d}}", "{{e}}"],
            99,
        );
        let fields =
            row(json!({"a": "gone.png", "b": "big.jpg", "c": "x.tiff", "d": "d.png", "e": ""}));
        let problems = imgs.resolve(&fields).expect_err("all bad");
        let text: Vec<String> = problems
            .iter()
            .map(|(f, m)| format!("{}: {m}", f.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(text.len(), 5, "{text:#?}");
        assert!(
            text[0].starts_with("a: image ") && text[0].contains("gone.png"),
            "{text:#?}"
        );
        assert!(
            text[1].contains("100 bytes, more than [input] max_image_bytes (99)"),
            "{text:#?}"
        );
        assert!(text[2].contains("png, jpg, jpeg, gif, webp"), "{text:#?}");
        assert!(text[3].contains("is a directory"), "{text:#?}");
        assert!(text[4].contains("empty"), "{text:#?}");
        // A missing field is named like a template's.
        let problems = imgs.resolve(&row(json!({}))).expect_err("no fields");
        assert_eq!(problems[0].0.as_deref(), Some("a"));
    }

    /// A FIFO would block the check pass on an ordinary open: it is opened without waiting and refused.
    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let fifo = dir.path().join("pipe.png");
        let c_path =
            std::ffi::CString::new(fifo.to_str().expect("utf-8").as_bytes()).expect("no NUL");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let imgs = images(dir.path(), &["{{p}}"], 1 << 20);
        let problems = imgs
            .resolve(&row(json!({"p": "pipe.png"})))
            .expect_err("a FIFO");
        assert!(problems[0].1.contains("not a plain file"), "{problems:?}");
    }

    #[test]
    fn the_type_sent_is_the_contents_and_content_of_no_image_is_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("j.png"), [0xFF, 0xD8, 0xFF, 0xE0, 1]).expect("written");
        std::fs::write(dir.path().join("g.jpg"), b"GIF89a..").expect("written");
        std::fs::write(dir.path().join("w.gif"), b"RIFF\x10\0\0\0WEBPVP8 ").expect("written");
        std::fs::write(dir.path().join("t.png"), b"password=hunter2").expect("written");
        std::fs::write(dir.path().join("e.png"), b"").expect("written");
        let imgs = images(dir.path(), &["{{a}}", "{{b}}", "{{c}}"], 1 << 20);
        let fields = row(json!({"a": "j.png", "b": "g.jpg", "c": "w.gif"}));
        let parts = imgs
            .parts(&imgs.resolve(&fields).expect("images"), true)
            .expect("read");
        let mimes: Vec<&str> = parts
            .iter()
            .map(|p| p["image_url"]["url"].as_str().expect("a url"))
            .map(|u| u.split(';').next().expect("a head"))
            .collect();
        assert_eq!(
            mimes,
            ["data:image/jpeg", "data:image/gif", "data:image/webp"]
        );
        let fields = row(json!({"a": "t.png", "b": "e.png", "c": "j.png"}));
        let problems = imgs.resolve(&fields).expect_err("no images");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .all(|(_, m)| m.contains("no PNG, JPEG, GIF or WebP image")));
        assert!(!problems.iter().any(|(_, m)| m.contains("hunter2")));
    }

    /// A file that stopped being an image since its check is not sent either.
    #[test]
    fn content_changed_after_the_check_is_refused_when_read() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("a.png");
        std::fs::write(&path, PNG).expect("written");
        let imgs = images(dir.path(), &["{{p}}"], 1 << 20);
        let checked = imgs.resolve(&row(json!({"p": "a.png"}))).expect("a png");
        std::fs::write(&path, b"secret text").expect("rewritten");
        let (_, message) = imgs.parts(&checked, true).expect_err("no longer an image");
        assert!(message.contains("no PNG"), "{message}");
    }

    /// A FIFO put in a checked file's place would block an ordinary open
    /// until a writer came: the run would hang. Opened without waiting, it
    /// is refused.
    #[cfg(unix)]
    #[test]
    fn a_fifo_swapped_in_after_the_check_is_refused_without_hanging() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("a.png");
        std::fs::write(&path, PNG).expect("written");
        let imgs = images(dir.path(), &["{{p}}"], 1 << 20);
        let checked = imgs.resolve(&row(json!({"p": "a.png"}))).expect("a png");
        std::fs::remove_file(&path).expect("removed");
        let c_path = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("no NUL");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(imgs.parts(&checked, true));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the read returns instead of waiting for a writer");
        let (_, message) = got.expect_err("a FIFO");
        assert!(message.contains("not a plain file"), "{message}");
        // The stuck thread, without the fix, is let go with the test's process.
    }

    #[test]
    fn a_data_url_is_bounded_like_a_file() {
        let imgs = images(Path::new("."), &["{{p}}"], 30);
        let ok = format!("data:image/png;base64,{}", "A".repeat(40));
        assert!(imgs.resolve(&row(json!({"p": ok}))).is_ok());
        let big = format!("data:image/png;base64,{}", "A".repeat(44));
        let problems = imgs.resolve(&row(json!({"p": big}))).expect_err("too big");
        assert!(
            problems[0].1.contains("33 bytes, more than"),
            "{problems:?}"
        );
        let plain = format!("data:text/plain,{}", "a".repeat(31));
        assert!(imgs.resolve(&row(json!({"p": plain}))).is_err());
    }
}
