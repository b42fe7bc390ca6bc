//! Compaction: one line per key, the latest, written to `<output>.compact.tmp`
//! and renamed over the file the output path resolves to.
//!
//! Two streaming passes (find each key's last line, then copy those lines in
//! file order), so a large output is never held in memory. The charges of
//! the lines dropped are folded into the surviving line's `prior_charge_usd`:
//! the budget caps what the file records as charged, and a total that shrank
//! at every compaction would let reruns spend past it.

use std::cmp::Ordering;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::lines::{Line, Lines, Torn};
use super::record::RecordHead;
use super::{io_error, SinkError};
use crate::keys::{estimate_lines, Gather, Keep, KeyId, KeyLine, KeyTable, ShortId};
use crate::scheduler::pricing::add_usd;

/// Rewrites `path` to the latest line of every key, keeping keys the job no
/// longer has. Returns the number of lines dropped.
///
/// Its memory is 16 bytes a line ([`KeyLine`]) while the first pass reads,
/// then two bits a line and 16 bytes a key with lines to drop: a file of a
/// million lines is compacted in about 16 MB.
pub fn compact(path: &Path) -> Result<u64, SinkError> {
    // Through a symlink, the file it points to is replaced, not the link.
    let real = super::resolve(path)?;
    // The output's table of keys was let go just before.
    give_back_freed();
    let mut lines: Vec<KeyLine> = Vec::new();
    let _ = lines.try_reserve_exact(estimate_lines(&real));
    let mut last_line = 0u64;
    // Run under the lock after the scan cut a torn line off, and a run writes
    // whole lines: a torn line here is read like any other.
    if let Some(mut reader) = Lines::open(&real, Torn::Yield).map_err(io_error(&real))? {
        while let Some(line) = reader.next_line().map_err(io_error(&real))? {
            let head = read_head(&line)?;
            let Ok(number) = u32::try_from(line.number) else {
                // Past four billion lines: left as it is, every line kept.
                return Ok(0);
            };
            lines.push(KeyLine::new(KeyId::of(&head.key), number));
            last_line = line.number;
        }
    }
    let records = lines.len() as u64;
    // A key's lines side by side, in file order: its last is its latest.
    lines.sort_unstable();
    let (mut keep, mut fold) = (LineBits::new(last_line), LineBits::new(last_line));
    let (mut keys, mut repeated, mut at) = (0u64, 0usize, 0usize);
    while at < lines.len() {
        let first = lines[at];
        let end = at + lines[at..].iter().take_while(|l| l.same_key(first)).count();
        let latest = lines[end - 1].line();
        keep.set(latest);
        if end - at > 1 {
            // Its latest line takes over the charges of the others. Written
            // over the front of the same vector, never past where it reads.
            fold.set(latest);
            lines[repeated] = first;
            repeated += 1;
        }
        keys += 1;
        at = end;
    }
    let dropped = records - keys;
    if dropped == 0 {
        return Ok(0);
    }
    lines.truncate(repeated);
    lines.shrink_to_fit();
    // In place (16 bytes each way): the charges of each repeated key's
    // dropped lines, summed in the second pass. Two such keys sharing a
    // ShortId share one sum, which the first of their latest lines takes:
    // the file's total charge is kept whatever happens.
    let sums: Vec<(ShortId, f64)> = lines.into_iter().map(|l| (l.short(), 0.0)).collect();
    let (mut sums, _) = KeyTable::build(
        Gather::from(sums),
        Keep::First,
        Some(|_, _| Ordering::Equal),
    );
    let temp_path = super::paths::compact_temp(&real);
    let result = write_compacted(&real, &temp_path, &keep, &fold, &mut sums);
    if result.is_err() {
        // Best effort: the next run removes it too.
        let _ = std::fs::remove_file(&temp_path);
    }
    result.map(|()| dropped)
}

/// Has the allocator give freed memory back to the system now, before a
/// table is filled: mimalloc (the binary's allocator) does so only some
/// time after a free, and a run that lets one table go and fills the next
/// (the output's keys, then compaction's lines) would have both in its
/// peak for that while (72 MB instead of 57 at a million lines).
fn give_back_freed() {
    // SAFETY: a documented entry point of mimalloc's API, callable from any
    // thread at any time (it only collects and purges memory already free).
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// The head of a line, by the fast path when it vouches for it.
fn read_head<'a>(line: &Line<'a>) -> Result<RecordHead<'a>, SinkError> {
    match super::head::read(line.text) {
        Some(head) => Ok(head),
        None => Ok(line.parse()?),
    }
}

/// One bit per line number.
struct LineBits(Vec<u64>);

impl LineBits {
    fn new(last: u64) -> LineBits {
        LineBits(vec![0; usize::try_from(last / 64 + 1).unwrap_or(0)])
    }

    fn set(&mut self, line: u32) {
        if let Some(word) = self.0.get_mut(line as usize / 64) {
            *word |= 1 << (line % 64);
        }
    }

    fn get(&self, line: u64) -> bool {
        let word = usize::try_from(line / 64).unwrap_or(usize::MAX);
        self.0.get(word).is_some_and(|w| w >> (line % 64) & 1 == 1)
    }
}

fn write_compacted(
    real: &Path,
    temp_path: &Path,
    keep: &LineBits,
    fold: &LineBits,
    sums: &mut KeyTable<f64, ShortId>,
) -> Result<(), SinkError> {
    // Under the lock no live run writes it: anything there is stale, and a
    // link planted there must be replaced, not written through.
    match std::fs::remove_file(temp_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(temp_path)(e)),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o666);
    }
    let temp = options.open(temp_path).map_err(io_error(temp_path))?;
    // The compacted file keeps the permissions the output had.
    let permissions = std::fs::metadata(real)
        .map_err(io_error(real))?
        .permissions();
    std::fs::set_permissions(temp_path, permissions).map_err(io_error(temp_path))?;
    let mut out = BufWriter::with_capacity(256 * 1024, temp);
    let mut lines = Lines::open(real, Torn::Yield)
        .map_err(io_error(real))?
        .ok_or_else(|| io_error(real)(std::io::ErrorKind::NotFound.into()))?;
    while let Some(line) = lines.next_line().map_err(io_error(real))? {
        if !keep.get(line.number) {
            // Dropped: its charge goes to its key's latest line, further on.
            let head = read_head(&line)?;
            if let Some(sum) = sums.get_mut(&ShortId::of(&head.key)) {
                *sum = add_usd(*sum, head.total_charge());
            }
            continue;
        }
        let dropped = match fold.get(line.number) {
            true => {
                let head = read_head(&line)?;
                sums.get_mut(&ShortId::of(&head.key))
                    .map_or(0.0, std::mem::take)
            }
            false => 0.0,
        };
        if dropped > 0.0 {
            let own = line.parse::<RecordHead>()?.prior_charge_usd.unwrap_or(0.0);
            let text = with_prior(line.text, add_usd(own, dropped))
                .map_err(|e| line.bad(e.to_string()))?;
            out.write_all(&text).map_err(io_error(temp_path))?;
        } else {
            out.write_all(line.text).map_err(io_error(temp_path))?;
        }
        out.write_all(b"\n").map_err(io_error(temp_path))?;
    }
    let temp = out
        .into_inner()
        .map_err(|e| io_error(temp_path)(e.into_error()))?;
    temp.sync_all().map_err(io_error(temp_path))?;
    std::fs::rename(temp_path, real).map_err(io_error(real))
}

/// A record's fields in the order they were written, values untouched.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields<'a>, M::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

/// `line` with its `prior_charge_usd` set to `prior` (added at its end when
/// absent, as a run would write it); every other field kept as it was, in order.
fn with_prior(line: &[u8], prior: f64) -> Result<Vec<u8>, serde_json::Error> {
    const FIELD: &str = "prior_charge_usd";
    let Fields(fields) = serde_json::from_slice(line)?;
    let prior = serde_json::to_string(&prior)?;
    let mut out = Vec::with_capacity(line.len() + 32);
    out.push(b'{');
    let mut seen = false;
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name)?;
        out.push(b':');
        if name == FIELD {
            seen = true;
            out.extend_from_slice(prior.as_bytes());
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    if !seen {
        if !fields.is_empty() {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, FIELD)?;
        out.push(b':');
        out.extend_from_slice(prior.as_bytes());
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::resume::tests::record;

    fn charged(key: &str, charge: &str) -> String {
        record(
            key,
            "error",
            "a1",
            &format!(r#","cost_usd":null,"budget_charge_usd":{charge}"#),
        )
    }

    #[test]
    fn keeps_the_latest_line_of_every_key_in_file_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let lines = [
            record("a/default", "error", "a1", ""),
            record("old/default", "ok", "b2", ""),
            record("b/default", "ok", "c3", ""),
            record("a/default", "ok", "a1", ""),
        ];
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        assert_eq!(compact(&path).expect("compact"), 1);
        let left = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            left,
            [&lines[1], &lines[2], &lines[3]]
                .map(|l| l.as_str())
                .join("\n")
                + "\n"
        );
        // Already compact: nothing changes.
        assert_eq!(compact(&path).expect("compact"), 0);
        assert!(!dir.path().join("out.jsonl.compact.tmp").exists());
    }

    /// Thousands of lines over hundreds of keys, some given many times:
    /// what survives, in what order and with what folded charge, against
    /// the plain rule computed here line by line.
    #[test]
    fn a_large_file_keeps_each_key_s_latest_line_with_the_charges_of_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let mut rng = fastrand::Rng::with_seed(7);
        let mut lines = Vec::new();
        for i in 0..5000 {
            let key = format!("r{}/default", rng.u32(0..1500));
            let charge = format!("{}", rng.u32(0..1000) as f64 / 64.0);
            let mut line = charged(&key, &charge);
            line = line.replacen("\"attempts\":1", &format!("\"attempts\":{}", i + 1), 1);
            lines.push((key, charge.parse::<f64>().expect("number"), line));
        }
        let text: String = lines.iter().map(|(_, _, l)| format!("{l}\n")).collect();
        std::fs::write(&path, text).expect("write");
        let before = crate::sink::scan(&path).expect("scan").recorded_cost_usd;
        // The rule: each key's last line, with the sum of its earlier ones.
        let mut expected: Vec<String> = Vec::new();
        for (i, (key, _, line)) in lines.iter().enumerate() {
            if lines[i + 1..].iter().any(|(k, _, _)| k == key) {
                continue;
            }
            let earlier = lines[..i]
                .iter()
                .filter(|(k, _, _)| k == key)
                .fold(0.0, |sum, (_, c, _)| add_usd(sum, *c));
            expected.push(match earlier > 0.0 {
                true => with_prior(line.as_bytes(), earlier)
                    .map(|t| String::from_utf8(t).expect("utf8"))
                    .expect("rewrites"),
                false => line.clone(),
            });
        }
        let dropped = compact(&path).expect("compact");
        assert_eq!(dropped, (lines.len() - expected.len()) as u64);
        let left = std::fs::read_to_string(&path).expect("read");
        assert_eq!(left, expected.join("\n") + "\n");
        let after = crate::sink::scan(&path).expect("scan").recorded_cost_usd;
        assert!(
            (before - after).abs() < 1e-9 * before,
            "{before} -> {after}"
        );
    }

    #[test]
    fn the_charges_of_dropped_lines_move_to_the_surviving_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let lines = [
            charged("a/default", "0.25"),
            charged("b/default", "0.125"),
            charged("a/default", "0.5"),
            charged("a/default", "1.0"),
        ];
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let before = crate::sink::scan(&path).expect("scan").recorded_cost_usd;
        assert_eq!(compact(&path).expect("compact"), 2);
        let left = std::fs::read_to_string(&path).expect("read");
        let last: Vec<&str> = left.lines().collect();
        assert_eq!(last[0], lines[1]);
        assert_eq!(
            last[1],
            lines[3].trim_end_matches('}').to_string() + r#","prior_charge_usd":0.75}"#
        );
        let after = crate::sink::scan(&path).expect("scan").recorded_cost_usd;
        assert!((before - after).abs() < 1e-12, "{before} -> {after}");
        // A later line of the same key folds the carried charge again.
        std::fs::write(&path, format!("{left}{}\n", charged("a/default", "2.0"))).expect("write");
        assert_eq!(compact(&path).expect("compact"), 1);
        let again = crate::sink::scan(&path).expect("scan").recorded_cost_usd;
        assert!((again - (after + 2.0)).abs() < 1e-12, "{again}");
        let line: serde_json::Value = serde_json::from_str(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .last()
                .expect("line"),
        )
        .expect("json");
        assert_eq!(line["prior_charge_usd"], 1.75);
        assert_eq!(line["budget_charge_usd"], 2.0);
    }

    #[test]
    fn folded_charges_saturate_instead_of_vanishing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let huge = charged("a/default", "1e308");
        std::fs::write(
            &path,
            [&huge, &huge, &huge, &huge]
                .map(|l| format!("{l}\n"))
                .concat(),
        )
        .expect("write");
        assert_eq!(compact(&path).expect("compact"), 3);
        let left = std::fs::read_to_string(&path).expect("read");
        let line: serde_json::Value = serde_json::from_str(left.trim_end()).expect("json");
        assert_eq!(line["prior_charge_usd"].as_f64(), Some(f64::MAX), "{left}");
        assert!(crate::sink::scan(&path).expect("scan").recorded_cost_usd >= f64::MAX);
    }

    #[test]
    fn huge_charges_fold_into_a_saturated_figure_never_into_null() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        // Three lines a server claimed cost 1e308 each: their sum is no f64.
        let lines = [1, 2, 3].map(|_| charged("a/default", "1e308"));
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        assert_eq!(compact(&path).expect("compact"), 2);
        let left = std::fs::read_to_string(&path).expect("read");
        let line: serde_json::Value = serde_json::from_str(left.trim_end()).expect("json");
        assert_eq!(line["prior_charge_usd"], f64::MAX, "{left}");
        // The carried charge still counts, at its largest: no budget has room.
        let after = crate::sink::scan(&path).expect("scan").recorded_cost_usd;
        assert_eq!(after, f64::MAX);
        std::fs::write(&path, format!("{left}{}\n", charged("a/default", "1e308"))).expect("write");
        assert_eq!(compact(&path).expect("compact"), 1);
        assert_eq!(
            crate::sink::scan(&path).expect("scan").recorded_cost_usd,
            f64::MAX
        );
    }

    #[test]
    fn a_line_that_does_not_parse_is_named_by_its_number_in_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let a = record("a/default", "ok", "a1", "");
        std::fs::write(&path, format!("{a}\n\n\r\n{a}\nnot json\n")).expect("write");
        let err = compact(&path).unwrap_err();
        assert!(err.to_string().contains("out.jsonl:5:"), "{err}");
        assert!(std::fs::read_to_string(&path)
            .expect("read")
            .contains("not json"));
    }

    #[test]
    fn an_existing_prior_charge_is_replaced_in_place() {
        let line = br#"{"key":"a","prior_charge_usd":1.5,"input":{"x":[1,2]}}"#;
        let out = with_prior(line, 2.5).expect("rewrites");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"key":"a","prior_charge_usd":2.5,"input":{"x":[1,2]}}"#
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_output_stays_a_symlink_and_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("data")).expect("mkdir");
        let real = dir.path().join("data/out.jsonl");
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink("data/out.jsonl", &link).expect("link");
        let a = record("a/default", "ok", "a1", "");
        std::fs::write(&real, format!("{a}\n{a}\n")).expect("write");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        // A stale temp file (here even a link to somewhere else) is replaced, never written through.
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "precious").expect("write");
        std::os::unix::fs::symlink(&victim, dir.path().join("data/out.jsonl.compact.tmp"))
            .expect("link");
        assert_eq!(compact(&link).expect("compact"), 1);
        assert!(std::fs::symlink_metadata(&link)
            .expect("meta")
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_to_string(&real).expect("read"),
            format!("{a}\n")
        );
        let mode = std::fs::metadata(&real).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        assert!(!dir.path().join("data/out.jsonl.compact.tmp").exists());
    }
}
