//! `[input] images`: the `image_url` parts a row adds to its user message.
//!
//! Each template renders to a URL or a local path. `http(s)://` and `data:`
//! values are sent as they are; anything else is a file relative to the
//! input file's folder, sent as a base64 `data:` URL whose MIME type comes
//! from the file's extension (png, jpg/jpeg, gif, webp; another extension is
//! a row error naming these: a wrong type would be refused by the server
//! after the request was paid for, or worse, misread).
//!
//! The check of a row looks at metadata only (a plain file, readable, no
//! larger than `max_image_bytes`); the bytes are read, and encoded as they
//! are read, only when the request's body is built, so a job of a million
//! photos never holds more than the requests about to be sent.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::write::EncoderStringWriter;
use serde_json::{json, Map, Value};

use super::messages::Problem;
use crate::job::{InputSource, Job};
use crate::template::Template;

/// Extensions and their MIME types: what vision models take.
const TYPES: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
];

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
    /// A local file (plain, readable, within the size bound when checked).
    File { path: PathBuf, mime: &'static str },
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
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("data:")
        {
            return Ok(Image::Url(value.to_string()));
        }
        let path = self.base.join(value);
        let shown = path.display();
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let Some((_, mime)) = TYPES.iter().find(|(ext, _)| *ext == extension) else {
            let known: Vec<&str> = TYPES.iter().map(|(ext, _)| *ext).collect();
            return Err(format!(
                "image {shown}: cannot tell its type from its extension; the types sent are {} (or give an http(s):// or data: URL)",
                known.join(", ")
            ));
        };
        // Metadata first: opening a FIFO would wait for a writer.
        let meta = std::fs::metadata(&path).map_err(|e| format!("image {shown}: {e}"))?;
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "a directory"
            } else {
                "not a plain file"
            };
            return Err(format!("image {shown} is {what}"));
        }
        if meta.len() > self.max_bytes {
            return Err(format!(
                "image {shown} is {} bytes, more than [input] max_image_bytes ({})",
                meta.len(),
                self.max_bytes
            ));
        }
        File::open(&path).map_err(|e| format!("image {shown} cannot be read: {e}"))?;
        Ok(Image::File { path, mime })
    }

    /// The `image_url` parts of checked images; a file's bytes are read
    /// only when `read` (a check with no body to build needs only the count).
    pub fn parts(&self, images: &[Image], read: bool) -> Result<Vec<Value>, Problem> {
        images
            .iter()
            .map(|image| {
                let url = match image {
                    Image::Url(url) => url.clone(),
                    Image::File { path, .. } if !read => path.display().to_string(),
                    Image::File { path, mime } => {
                        data_url(path, mime, self.max_bytes).map_err(|e| (None, e))?
                    }
                };
                Ok(json!({"type": "image_url", "image_url": {"url": url}}))
            })
            .collect()
    }
}

/// `data:<mime>;base64,...` of a file, encoded as it is read.
fn data_url(path: &Path, mime: &str, max_bytes: u64) -> Result<String, String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| format!("image {shown} cannot be read: {e}"))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max_bytes {
        return Err(format!(
            "image {shown} grew to {len} bytes since the check, more than [input] max_image_bytes ({max_bytes})"
        ));
    }
    let mut prefix = String::with_capacity(len.div_ceil(3) as usize * 4 + mime.len() + 13);
    prefix.push_str("data:");
    prefix.push_str(mime);
    prefix.push_str(";base64,");
    let mut encoder = EncoderStringWriter::from_consumer(prefix, &STANDARD);
    // Bounded: a file that grows while it is read stops at the bound.
    let copied = std::io::copy(&mut file.take(max_bytes.saturating_add(1)), &mut encoder)
        .and_then(|n| encoder.flush().map(|()| n))
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

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn files_become_data_urls_byte_for_byte_and_urls_pass_through() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
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

    /// A FIFO would block the check pass on open: it is refused from its metadata.
    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_being_opened() {
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
}
