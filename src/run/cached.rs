//! The response cache as a run uses it: opened before sending (a store that
//! cannot be used is exit 2), looked up on the planner's thread before a
//! batch goes to the scheduler, written by its own thread, and the warning
//! for parameter sets whose cached replies would repeat one sample.
//!
//! A hit never reaches the scheduler: no limiter, no concurrency slot, no
//! budget, no request at the server. It goes straight to the collector as
//! `Event::Cached`, whose line says `"cached": true`.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::mpsc;

use super::producer;
use super::scan::Scan;
use crate::cache::{self, CacheError, Handle, Hit, Lookup, Writer, WriterStats};
use crate::client::RawJson;
use crate::input::Spooled;
use crate::job::{CacheConfig, Job, ParamLayer};
use crate::plan::structured::OutputCheck;
use crate::plan::Request;
use crate::printer;
use crate::scheduler::Event;

/// The key of the endpoint in the store. `--simulate` starts the mock on a
/// new port every run: its replies are keyed by one name, not the URL, so a
/// simulated run finds what the last one kept. With `[[endpoints]]` the key
/// is the sorted set of the job's urls: a reply from any of them answers
/// the same body (the body names the model), whichever endpoint gave it.
fn endpoint(job: &Job) -> String {
    if job.simulate {
        return cache::endpoint_key("promptbatch:simulate");
    }
    if job.endpoints.is_empty() {
        return cache::endpoint_key(&job.endpoint.url);
    }
    let mut urls: Vec<&str> = job
        .endpoints
        .iter()
        .map(|e| e.config.url.as_str())
        .collect();
    urls.sort_unstable();
    urls.dedup();
    cache::endpoint_key(&format!("endpoints: {}", urls.join(" ")))
}

/// The open store: its writer thread, and a lookup for the planner.
pub(super) struct Opened {
    pub writer: Writer,
    pub lookup: Lookup,
}

pub(super) fn open(job: &Job, config: &CacheConfig) -> Result<Opened, CacheError> {
    let path = cache::open(&config.dir)?;
    let key = endpoint(job);
    Ok(Opened {
        writer: Writer::spawn(&path, key.clone(), config.max_mb)?,
        lookup: Lookup::new(&path, key)?,
    })
}

/// The writer for the collector, and the planner's side, which tells its
/// hits on `events`.
pub(super) fn split(
    opened: Option<Opened>,
    events: &mpsc::Sender<Event>,
) -> (Option<Writer>, Option<Answerer>) {
    let Some(Opened { writer, lookup }) = opened else {
        return (None, None);
    };
    let answerer = writer.handle().map(|handle| Answerer {
        lookup,
        handle: Some(handle),
        events: events.clone(),
    });
    (Some(writer), answerer)
}

/// The planner's side: answers what the store knows, passes on the rest.
pub(super) struct Answerer {
    pub lookup: Lookup,
    /// None for `validate`, which only counts (and marks nothing used).
    pub handle: Option<Handle>,
    pub events: mpsc::Sender<Event>,
}

/// Said once per run: a store that cannot be read now is no reason to stop.
static LOOKUP_FAILED: AtomicBool = AtomicBool::new(false);

impl Answerer {
    /// The requests of `batch` the store cannot answer; the others go to
    /// the collector as hits, marked used. None once the collector is gone
    /// (the run is over).
    pub fn answer(&mut self, batch: Vec<Request>) -> Option<Vec<Request>> {
        let started_at = Utc::now();
        let found = match self.lookup.find(batch.iter().map(|r| r.sha256.as_str())) {
            Ok(found) => found,
            Err(e) => {
                if !LOOKUP_FAILED.swap(true, Ordering::Relaxed) {
                    printer::warning(format_args!(
                        "the cache could not be read ({}); those requests are sent instead",
                        self.lookup.explain(&e)
                    ));
                }
                return Some(batch);
            }
        };
        let finished_at = Utc::now();
        let mut misses = Vec::with_capacity(batch.len());
        let mut used = Vec::new();
        for (request, found) in batch.into_iter().zip(found) {
            let Some((row, reply)) = found else {
                misses.push(request);
                continue;
            };
            // The store keys the body, and `[output] json` is not in it: a
            // reply kept by a run that did not ask for JSON is checked as
            // this request asks, and sent again when it would fail.
            let Some(reply) = fitted(reply, request.output.as_deref()) else {
                misses.push(request);
                continue;
            };
            used.push(row);
            let hit = Hit {
                request,
                reply,
                started_at,
                finished_at,
            };
            if self
                .events
                .blocking_send(Event::Cached(Box::new(hit)))
                .is_err()
            {
                return None;
            }
        }
        if let (Some(handle), false) = (&self.handle, used.is_empty()) {
            handle.touch(used);
        }
        Some(misses)
    }
}

/// A stored reply as this request wants it: with `json` parsed from its
/// content when the request asks for JSON (None when the content would be
/// `bad_output`), without `json` when it does not.
fn fitted(reply: String, check: Option<&OutputCheck>) -> Option<String> {
    // Fields as text, never as trees: a stored `json` may be megabytes.
    let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&reply).ok()?;
    match check {
        Some(check) => {
            let content: Option<String> = match fields.get("content") {
                Some(raw) => serde_json::from_str(raw.get()).ok()?,
                None => None,
            };
            let json = RawJson::compacted(check.check(content.as_deref()).ok()?);
            fields.insert("json".into(), serde_json::value::to_raw_value(&json).ok()?);
        }
        None if fields.contains_key("json") => {
            fields.remove("json");
        }
        None => return Some(reply),
    }
    serde_json::to_string(&fields).ok()
}

/// `validate`: how many of the requests to send the cache would answer
/// (None without `--cache`), planned again as a run plans them; nothing is
/// made, written or marked used.
pub(super) async fn count_hits(
    job: &Job,
    file: &Spooled,
    scan: &mut Scan,
) -> Result<Option<u64>, CacheError> {
    let Some(config) = &job.cache else {
        return Ok(None);
    };
    let Some(path) = cache::existing(&config.dir)? else {
        return Ok(Some(0));
    };
    if scan.to_send() == 0 {
        return Ok(Some(0));
    }
    let lookup = Lookup::new(&path, endpoint(job))?;
    let (requests, mut planned) = mpsc::channel(producer::QUEUED_BATCHES);
    let (events, mut answered) = mpsc::channel(4096);
    let out = producer::Out {
        requests,
        cache: Some(Answerer {
            lookup,
            handle: None,
            events,
        }),
    };
    let send = std::mem::take(&mut scan.send);
    let checked = producer::stamp(file.file.path());
    let producer = producer::spawn(job, file, checked, scan.rows, send, scan.to_send(), out);
    // What the cache does not answer would be sent: dropped here.
    let misses = tokio::spawn(async move { while planned.recv().await.is_some() {} });
    let mut hits = 0;
    while answered.recv().await.is_some() {
        hits += 1;
    }
    let _ = producer.await;
    let _ = misses.await;
    Ok(Some(hits))
}

/// The parameter sets that sample (`temperature` > 0) with no `seed`, as
/// the job's layers set them (a row's own `params` aside): a cached reply
/// of theirs repeats one sample where a new request would draw another.
pub(super) fn unseeded_sampling(job: &Job) -> Vec<(String, f64)> {
    let get = |name: &str, set: &ParamLayer| -> Option<Value> {
        [&job.overrides, set, &job.defaults]
            .into_iter()
            .find_map(|layer| layer.named.get(name))
            .filter(|v| !v.is_null())
            .cloned()
    };
    job.param_sets
        .iter()
        .filter_map(|set| {
            let temperature = get("temperature", &set.layer)?.as_f64()?;
            (temperature > 0.0 && get("seed", &set.layer).is_none())
                .then(|| (set.name.clone(), temperature))
        })
        .collect()
}

/// The warning for [`unseeded_sampling`], if any set does.
pub(super) fn sampling_warning(job: &Job) -> Option<String> {
    let sets = unseeded_sampling(job);
    if sets.is_empty() {
        return None;
    }
    let named: Vec<String> = sets
        .iter()
        .map(|(name, t)| format!("{name:?} (temperature {t})"))
        .collect();
    Some(format!(
        "--cache: parameter set {} samples with no seed: a cached reply repeats the one sample kept, where a new request would draw another; set a seed to make that explicit, or run without --cache to sample again",
        named.join(", ")
    ))
}

/// Says what went wrong keeping replies (never an error of the run: every
/// line is in the output either way).
pub(super) fn say_end(stats: &WriterStats, quiet: bool) {
    if quiet {
        return;
    }
    if let Some(failed) = &stats.failed {
        printer::warning(format_args!(
            "the cache could not keep this run's replies ({failed}); the output has every line, a later run sends those requests again"
        ));
    }
    if stats.dropped > 0 {
        printer::notice(format_args!(
            "the cache kept up with all but {} of this run's replies (its writer fell behind)",
            printer::count_as(stats.dropped, "reply", "replies")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::fitted;
    use crate::plan::structured::OutputCheck;
    use serde_json::{json, Value};

    fn parsed(text: Option<String>) -> Option<Value> {
        text.map(|t| serde_json::from_str(&t).unwrap())
    }

    #[test]
    fn a_reply_kept_without_json_gains_it_when_the_request_asks_for_json() {
        let kept =
            json!({"content": "```json\n{\"a\": 1}\n```", "finish_reason": "stop"}).to_string();
        let check = OutputCheck::default();
        let got = parsed(fitted(kept, Some(&check))).unwrap();
        assert_eq!(got["json"], json!({"a": 1}));
    }

    #[test]
    fn a_reply_that_would_be_bad_output_is_no_answer() {
        let kept = json!({"content": "not json", "finish_reason": "stop"}).to_string();
        assert_eq!(fitted(kept, Some(&OutputCheck::default())), None);
    }

    #[test]
    fn a_request_not_asking_for_json_gets_no_json_field() {
        let kept = json!({"content": "{}", "json": {}}).to_string();
        let got = parsed(fitted(kept, None)).unwrap();
        assert_eq!(got, json!({"content": "{}"}));
        let plain = json!({"content": "hi"}).to_string();
        assert_eq!(fitted(plain.clone(), None), Some(plain));
    }
}
