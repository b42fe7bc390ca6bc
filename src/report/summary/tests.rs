//! Tests of the summary tally: percentiles, totals, and the two scopes.

use super::*;
use crate::client::{ErrorKind, Usage};
use crate::sink::record::{CostSource, RecordError};
use std::sync::Arc;

fn record(status: Status, latency: f64, cost: Option<f64>, usage: Option<Usage>) -> Record {
    Record {
        key: "k".into(),
        job: "j".into(),
        id: "1".into(),
        param_set: "precise".into(),
        status,
        model: "m".into(),
        content: (status == Status::Ok).then(|| "hi".into()),
        finish_reason: (status == Status::Ok).then(|| "stop".into()),
        usage,
        cost_usd: cost,
        cost_source: cost.map(|_| CostSource::Pricing),
        latency_ms: Some(latency),
        ttft_ms: None,
        attempts: 1,
        uncertain_attempts: 0,
        client_request_id: "j:1:precise:1".into(),
        request_sha256: "0".repeat(64),
        error: (status == Status::Error).then(|| RecordError {
            kind: ErrorKind::Server,
            status: Some(500),
            message: "boom".into(),
        }),
        response_id: None,
        provider: None,
        started_at: None,
        finished_at: None,
        params: Default::default(),
        input: Arc::new(Default::default()),
        response_model: None,
        tool_calls: None,
        refusal: None,
        json: None,
        budget_charge_usd: None,
        prior_charge_usd: None,
        cached: None,
        cached_cost_usd: None,
        endpoint: None,
        batch_id: None,
    }
}

fn facts(start: DateTime<Utc>) -> RunFacts {
    RunFacts {
        job: "j".into(),
        started: start,
        finished: start + chrono::Duration::seconds(3),
        busy: std::time::Duration::from_secs(2),
        requests: RequestCounts::default(),
        stopped: None,
        stopped_because: None,
        other_keys_in_output: 0,
    }
}

#[test]
fn the_job_scope_takes_resumed_lines_and_this_run_only_what_it_sent() {
    let usage = Usage {
        prompt_tokens: 1,
        completion_tokens: 2,
        total_tokens: 3,
        ..Usage::default()
    };
    let mut run = Tally::default();
    run.observe(&record(Status::Ok, 10.0, Some(0.25), Some(usage)));
    let mut job = Tally::default();
    job.observe(&record(Status::Ok, 10.0, Some(0.25), Some(usage)));
    let line: LineFigures = serde_json::from_str(
        r#"{"key":"old/default","status":"ok","model":"m","param_set":"default","finish_reason":"length",
            "usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30},"cost_usd":0.5,
            "latency_ms":30.0,"ttft_ms":null,"attempts":2,"uncertain_attempts":1,"content":"skipped","input":{"a":1}}"#,
    )
    .expect("a line");
    job.observe_line(&line);
    let s = job.summary(&run, facts(Utc::now()));
    assert_eq!(s.tokens.total, 33);
    assert_eq!(s.cost_usd.total, 0.75);
    assert_eq!((s.attempts, s.retries, s.uncertain_attempts), (3, 1, 1));
    assert_eq!(s.finish_reasons.get("length"), Some(&1));
    assert_eq!(s.latency_ms.map(|l| l.max), Some(30.0));
    assert_eq!(s.this_run.sent, 1);
    assert_eq!(s.this_run.tokens.total, 3);
    assert_eq!(s.this_run.cost_usd, 0.25);
    assert_eq!(s.this_run.retries, 0);
    assert_eq!(s.this_run.throughput, s.throughput);
}

#[test]
fn percentiles_over_one_to_a_hundred_ms() {
    let mut t = Tally::default();
    for ms in 1..=100 {
        t.observe(&record(Status::Ok, ms as f64, None, None));
    }
    let s = t.latency.spread().expect("latencies");
    assert_eq!((s.min, s.max, s.mean), (1.0, 100.0, 50.5));
    assert_eq!((s.p50, s.p90, s.p95, s.p99), (50.0, 90.0, 95.0, 99.0));
}

#[test]
fn percentiles_never_pass_the_exact_max() {
    let mut t = Tally::default();
    for ms in [4613.1, 4000.0, 3000.0] {
        t.observe(&record(Status::Ok, ms, None, None));
    }
    let s = t.latency.spread().expect("latencies");
    assert_eq!(s.max, 4613.1);
    assert!(s.p99 <= s.max && s.p95 <= s.max && s.p50 >= s.min, "{s:?}");
}

#[test]
fn no_successes_means_no_latency_spread() {
    let mut t = Tally::default();
    t.observe(&record(Status::Error, 5.0, None, None));
    assert_eq!(t.latency.spread(), None);
}

#[test]
fn tokens_cost_and_errors_are_totalled() {
    let usage = Usage {
        prompt_tokens: 10,
        completion_tokens: 20,
        total_tokens: 30,
        ..Usage::default()
    };
    let mut t = Tally::default();
    t.observe(&record(Status::Ok, 10.0, Some(0.5), Some(usage)));
    t.observe(&record(Status::Ok, 10.0, None, None));
    let mut failed = record(Status::Error, 10.0, None, None);
    failed.attempts = 3;
    failed.uncertain_attempts = 1;
    t.observe(&failed);
    let start = Utc::now();
    let s = t.summary(&t, facts(start));
    assert_eq!(s.wall_s, 3.0);
    assert_eq!(s.attempts, 5);
    assert_eq!(s.retries, 2);
    assert_eq!(s.uncertain_attempts, 1);
    assert_eq!(s.tokens.total, 30);
    assert_eq!(s.tokens.unreported, 1);
    assert_eq!(s.cost_usd.total, 0.5);
    assert_eq!(s.cost_usd.unpriced_requests, 1);
    assert_eq!(s.cost_usd.by_param_set.get("precise"), Some(&0.5));
    assert_eq!(s.errors.get("server"), Some(&1));
    assert_eq!(s.finish_reasons.get("stop"), Some(&2));
    assert_eq!(s.throughput.requests_per_s, 1.5);
    assert_eq!(s.throughput.completion_tokens_per_s, 10.0);
}

#[test]
fn sums_saturate_and_skip_costs_that_are_not_amounts() {
    let huge = Usage {
        prompt_tokens: u64::MAX,
        completion_tokens: u64::MAX,
        total_tokens: u64::MAX,
        ..Usage::default()
    };
    let mut t = Tally::default();
    t.observe(&record(Status::Ok, 10.0, Some(f64::MAX), Some(huge)));
    t.observe(&record(Status::Ok, 10.0, Some(f64::MAX), Some(huge)));
    t.observe(&record(Status::Ok, 10.0, Some(f64::NAN), None));
    let mut failed = record(Status::Error, 10.0, Some(-1.0), None);
    failed.attempts = u32::MAX;
    t.observe(&failed);
    assert_eq!(t.tokens.total, u64::MAX, "never wrapped to a small number");
    assert_eq!(t.tokens.prompt, u64::MAX);
    assert_eq!(t.completion_tokens(), u64::MAX);
    assert_eq!(t.cost(), f64::MAX, "never infinite");
    assert_eq!(t.costs.by_model.values().copied().sum::<f64>(), f64::MAX);
    assert_eq!(t.costs.unpriced_requests, 1, "a NaN cost is no cost");
}

#[test]
fn dollar_sums_saturate_rather_than_become_infinite() {
    let mut t = Tally::default();
    t.observe(&record(Status::Ok, 10.0, Some(1.5e308), None));
    t.observe(&record(Status::Ok, 10.0, Some(1.5e308), None));
    let s = t.summary(&t, facts(Utc::now()));
    assert_eq!(s.cost_usd.total, f64::MAX);
    assert_eq!(s.cost_usd.by_model.get("m"), Some(&f64::MAX));
    assert_eq!(s.cost_usd.by_param_set.get("precise"), Some(&f64::MAX));
    assert_eq!(s.this_run.cost_usd, f64::MAX);
}

#[test]
fn figures_kept_without_their_record_tally_as_the_record_does() {
    let usage = Usage {
        prompt_tokens: 10,
        completion_tokens: 20,
        total_tokens: 30,
        cached_tokens: Some(4),
        ..Usage::default()
    };
    let mut ttft = record(Status::Ok, 12.5, Some(0.25), Some(usage));
    ttft.ttft_ms = Some(3.5);
    ttft.model = "other".into();
    let mut failed = record(Status::Error, 7.0, None, None);
    failed.attempts = 4;
    failed.uncertain_attempts = 2;
    let records = [
        record(Status::Ok, 10.0, Some(0.5), Some(usage)),
        record(Status::Ok, 1.0, None, None),
        ttft,
        failed,
    ];
    let (mut whole, mut kept) = (Tally::default(), Tally::default());
    for r in records {
        whole.observe(&r);
        kept.observe_kept(&KeptFigures::of(r));
    }
    let start = Utc::now();
    let json = |t: &Tally| serde_json::to_value(t.summary(t, facts(start))).expect("JSON");
    assert_eq!(json(&kept), json(&whole));
    assert_eq!(json(&kept)["errors"]["server"], 1, "{}", json(&kept));
}
