//! A file of prices on its own, for `report --pricing FILE`: either a bare
//! table of models (`"google/gemma-3-4b-it" = { input = 0.04, output = 0.08 }`)
//! or any file with a `[pricing]` table (a job file, whose other sections are
//! not read).
//!
//! Read with the job file's own `[pricing]` reader, so a mistake is named
//! the same way, at its file:line:column, with every problem at once.

use std::path::Path;

use serde::Deserialize;
use toml::de::DeTable;

use super::file::{Doc, Prices, PRICE_KEYS};
use super::lenient::Lenient;
use super::problem::{unknown_key, Lines};
use super::{Pricing, Problem};

/// A file with a `[pricing]` table among others.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WithSection {
    pricing: Option<toml::Spanned<Lenient<Prices>>>,
}

/// Past this size a file is not a price table (thousands of models take
/// well under a megabyte): `--pricing /dev/zero` or a data file named by
/// mistake is refused, never read into memory whole.
const MAX_BYTES: u64 = 16 << 20;

/// The prices in the file at `path`, or every problem in it.
pub fn read_pricing(path: &Path) -> Result<Pricing, Vec<Problem>> {
    let label = path.display().to_string();
    let problem = |place: String, message: String| vec![Problem { place, message }];
    let text = read_small(path)
        .map_err(|e| problem(label.clone(), format!("cannot read the prices: {e}")))?;
    let lines = Lines::new(&text);
    let root = DeTable::parse(&text).map_err(|e| {
        let place = match e.span().map(|span| lines.at(span.start)) {
            Some((line, col)) => format!("{label}:{line}:{col}"),
            None => label.clone(),
        };
        problem(
            place,
            format!("TOML syntax error: {}", e.message().trim_end()),
        )
    })?;
    let de = || toml::de::Deserializer::from(root.clone());
    let sectioned = matches!(
        root.get_ref().get("pricing").map(|v| v.get_ref()),
        Some(toml::de::DeValue::Table(_))
    );
    let mut doc = Doc {
        root: root.get_ref(),
        lines,
        label,
        found: Vec::new(),
    };
    let mut unknown: Vec<Vec<&str>> = Vec::new();
    let syntax = |e: toml::de::Error| problem(doc_place(&text, &e, path), e.to_string());
    let pricing = if sectioned {
        let file = WithSection::deserialize(de()).map_err(syntax)?;
        let Some(table) = doc.table("pricing", file.pricing.as_ref()) else {
            return Err(found(doc));
        };
        let pricing = doc.pricing(table, &["pricing"], &mut unknown);
        report_unknown(&mut doc, &unknown);
        pricing
    } else {
        let table = Prices::deserialize(de()).map_err(syntax)?;
        let pricing = doc.pricing(&table, &[], &mut unknown);
        report_unknown(&mut doc, &unknown);
        pricing
    };
    if doc.found.is_empty() {
        Ok(pricing)
    } else {
        Err(found(doc))
    }
}

/// Unknown keys of a price entry (`[.., model, key]`), where they are written.
fn report_unknown(doc: &mut Doc<'_, '_>, unknown: &[Vec<&str>]) {
    for path in unknown {
        let [.., model, key] = path.as_slice() else {
            continue;
        };
        let span = doc.key_span(path).unwrap_or(0..0);
        let what = format!("[pricing] {model:?} {key}");
        doc.push(span, &what, unknown_key(key, &PRICE_KEYS));
    }
}

/// The problems found, in the order of the file.
fn found(mut doc: Doc<'_, '_>) -> Vec<Problem> {
    doc.found.sort_by_key(|(offset, _)| *offset);
    doc.found.into_iter().map(|(_, p)| p).collect()
}

/// `file:line:col` of a deserialisation error, or the file.
fn doc_place(text: &str, e: &toml::de::Error, path: &Path) -> String {
    match e.span().map(|span| Lines::new(text).at(span.start)) {
        Some((line, col)) => format!("{}:{line}:{col}", path.display()),
        None => path.display().to_string(),
    }
}

/// The text of the file at `path`, if it is at most [`MAX_BYTES`].
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB, not a price table",
            MAX_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Pricing, Vec<Problem>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("prices.toml");
        std::fs::write(&path, text).expect("write");
        read_pricing(&path)
    }

    #[test]
    fn a_file_too_large_to_be_prices_is_refused_not_read_whole() {
        let blank = " ".repeat(MAX_BYTES as usize + 1);
        let problems = read(&blank).expect_err("refused");
        assert!(
            problems[0].message.contains("not a price table"),
            "{problems:?}"
        );
        let ok = format!(
            "{}\n\"m/a\" = {{ input = 1.0, output = 2.0 }}\n",
            " ".repeat(1000)
        );
        assert!(read(&ok).is_ok());
    }

    #[test]
    fn a_bare_table_and_a_pricing_section_read_the_same() {
        let bare =
            read("\"m/a\" = { input = 1.0, output = 2.0 }\n[\"m/b\"]\ninput = 0\noutput = 4\n")
                .expect("bare");
        let job = read("name = \"x\"\n[limits]\nconcurrency = 3\n[pricing]\n\"m/a\" = { input = 1.0, output = 2.0 }\n\"m/b\" = { input = 0, output = 4 }\n")
            .expect("section");
        for p in [&bare, &job] {
            let a = p.price("m/a").expect("m/a");
            assert_eq!((a.input, a.output), (1.0, 2.0));
            let b = p.price("m/b").expect("m/b");
            assert_eq!((b.input, b.output), (0.0, 4.0));
        }
    }

    #[test]
    fn a_bad_price_is_named_at_its_line_and_field() {
        let problems =
            read("\"m/a\" = { input = 1.0, output = 2.0 }\n\"m/b\" = { input = -1, output = 2 }\n")
                .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].place.contains("prices.toml:2:"), "{problems:?}");
        assert!(problems[0].place.contains("\"m/b\" input"), "{problems:?}");
        let problems = read("[pricing]\n\"m\" = { input = 1, ouput = 2 }\n").unwrap_err();
        let text = format!("{problems:?}");
        assert!(text.contains("prices.toml:2:"), "{text}");
        assert!(text.contains("did you mean \\\"output\\\""), "{text}");
        let problems = read("\"m\" = { input = 1, ouput = 2 }\n").unwrap_err();
        let text = format!("{problems:?}");
        assert!(text.contains("prices.toml:1:"), "{text}");
        assert!(text.contains("ouput"), "{text}");
        let problems = read("[pricing\n").unwrap_err();
        assert!(problems[0].place.contains("prices.toml:1:"), "{problems:?}");
    }
}
