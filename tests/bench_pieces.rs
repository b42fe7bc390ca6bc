//! The pure pieces of the benchmark (`benches/throughput/`), tested here
//! because a bench target without libtest's harness runs no tests: the
//! targets table and its JSON, the met / NOT met judgement, the nginx
//! configuration, the first-request listener's reading of a request and the
//! reading of a second run's first second.
//! Nothing here starts a server or times anything.

#![allow(dead_code)]

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "../benches/throughput/first.rs"]
mod first;
#[path = "../benches/throughput/nginx.rs"]
mod nginx;
#[path = "../benches/throughput/pace.rs"]
mod pace;
#[path = "../benches/throughput/scale.rs"]
mod scale;
#[path = "../benches/throughput/table.rs"]
mod table;

mod nginx_tests {
    use crate::nginx::*;
    use std::path::Path;

    #[test]
    fn config_keeps_every_file_in_its_folder_and_listens_on_loopback_only() {
        let c = config(Path::new("/tmp/pb-nginx"), 43210);
        assert!(c.contains("listen 127.0.0.1:43210;"), "{c}");
        assert!(c.contains("daemon off;") && c.contains("worker_processes 1;"));
        assert!(c.contains("access_log off;"));
        assert!(c.contains("pid /tmp/pb-nginx/nginx.pid;"));
        assert!(c.contains("error_log /tmp/pb-nginx/error.log"));
        assert!(c.contains("client_body_temp_path /tmp/pb-nginx/client_body_temp;"));
        assert!(c.contains("keepalive_requests 1000000;"));
        // Every path the configuration names is in the folder.
        for word in c
            .split_whitespace()
            .filter(|w| w.starts_with('/') && *w != "/")
        {
            assert!(
                word.starts_with("/tmp/pb-nginx/"),
                "{word} outside the folder"
            );
        }
    }

    #[test]
    fn the_answer_is_a_chat_completion_with_usage_quoted_safely_for_nginx() {
        let c = config(Path::new("/t"), 1);
        assert!(c.contains(&format!("return 200 '{BODY}';")));
        // nginx's single-quoted string ends at the first quote; `$` would be
        // read as a variable.
        assert!(!BODY.contains('\'') && !BODY.contains('$') && !BODY.contains('\\'));
        let v: serde_json::Value = serde_json::from_str(BODY).expect("BODY is JSON");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(v["usage"]["total_tokens"], 30);
    }
}

mod table_tests {
    use crate::table::*;
    use serde_json::{json, Value};

    #[test]
    fn bounds_judge_the_edge_as_the_targets_word_it() {
        assert!(Bound::AtLeast(40_000.0).holds(40_000.0));
        assert!(!Bound::AtLeast(40_000.0).holds(39_999.9));
        assert!(Bound::AtMost(20.0).holds(20.0));
        assert!(!Bound::AtMost(20.0).holds(20.1));
        assert!(!Bound::Below(64.0).holds(64.0));
        assert!(Bound::Below(64.0).holds(63.9));
        for b in [Bound::AtLeast(1.0), Bound::AtMost(1.0), Bound::Below(1.0)] {
            assert!(!b.holds(f64::NAN), "{b:?} holds for NaN");
        }
    }

    #[test]
    fn a_figure_that_is_not_a_number_is_not_met() {
        let r = Row::measured(FRESH, f64::NAN, true, Run::default());
        assert!(!r.met);
    }

    fn sample() -> Vec<Row> {
        let run = Run {
            requests_per_s: Some(41_235.4),
            cpu_us_per_request: Some(18.4),
            peak_mib: Some(29.5),
            bounced_pct: None,
        };
        vec![
            Row::measured(
                NGINX_RPS,
                41_235.4,
                Bound::AtLeast(40_000.0).holds(41_235.4),
                run,
            ),
            Row::measured(NGINX_CPU, 21.0, Bound::AtMost(20.0).holds(21.0), run),
            Row::skipped(FIRST_REQUEST, "nginx not installed"),
        ]
    }

    #[test]
    fn the_text_puts_each_figure_beside_its_target_and_verdict() {
        let text = render(&sample(), 1.0);
        assert!(text.starts_with("Targets\n"), "{text}");
        assert!(render(&sample(), 0.1)
            .starts_with("Targets (PROMPTBATCH_BENCH_SCALE=0.1: counts scaled"));
        assert!(
            text.contains("41,235 requests/s (target >= 40,000): met"),
            "{text}"
        );
        assert!(
            text.contains("21.0 µs (target <= 20 µs): NOT met"),
            "{text}"
        );
        assert!(
            text.contains("skipped: nginx not installed (target <= 5 ms)\n"),
            "{text}"
        );
        assert!(text.contains("run: 41,235 requests/s, 18.4 µs CPU per request, 29.5 MiB peak"));
        assert!(text.contains("1 of 3 met, 1 NOT met, 1 skipped"), "{text}");
    }

    #[test]
    fn every_json_row_has_the_same_keys_and_a_skipped_one_has_null_figures() {
        let doc = document(&sample(), vec![json!({"name": "x"})], 0.1);
        assert_eq!(doc["schema_version"], 1);
        assert_eq!(doc["scale"], 0.1);
        assert_eq!(doc["scenarios"][0]["name"], "x");
        let rows = doc["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 3);
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        for r in rows {
            assert_eq!(keys(r), keys(&rows[0]));
        }
        assert_eq!(
            keys(&rows[0]),
            [
                "bounced_pct",
                "cpu_us_per_request",
                "figure",
                "met",
                "peak_mib",
                "requests_per_s",
                "skipped",
                "target",
                "unit",
                "value"
            ]
        );
        assert_eq!(rows[0]["met"], true);
        assert_eq!(rows[0]["skipped"], Value::Null);
        assert_eq!(rows[1]["met"], false);
        assert_eq!(rows[2]["value"], Value::Null);
        assert_eq!(rows[2]["met"], false);
        assert_eq!(rows[2]["skipped"], "nginx not installed");
    }

    #[test]
    fn numbers_are_grouped_and_rounded_for_reading() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(999.0), "999.0");
        assert_eq!(number(2.345), "2.35");
        assert_eq!(number(-12_345.0), "-12,345");
    }
}

mod first_tests {
    use crate::first::*;

    #[test]
    fn a_request_is_complete_with_its_head_and_declared_body() {
        assert!(!request_complete(b"POST / HTTP/1.1\r\nHost: x\r\n"));
        assert!(!request_complete(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n{}"
        ));
        assert!(request_complete(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n{}{}"
        ));
        assert!(request_complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
}

mod pace_tests {
    use crate::pace::*;
    use std::time::Duration;

    fn at(ms: u64, requests: u64, limited: u64) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            requests,
            limited,
        }
    }

    #[test]
    fn the_first_second_starts_before_the_first_request_and_lasts_one_second() {
        let samples = [
            at(0, 0, 0),
            at(100, 0, 0),
            at(200, 5, 0),
            at(700, 50, 1),
            at(1100, 95, 2),
            at(1200, 110, 20),
        ];
        // From 100 ms (no request yet) to the last sample at or before 1.1 s.
        assert_eq!(
            first_second(&samples),
            Some(FirstSecond { ok: 93, limited: 2 })
        );
        assert_eq!(first_second(&[at(0, 0, 0), at(10, 0, 0)]), None);
        // Sampling began after the first request: the second starts at zero.
        assert_eq!(
            first_second(&[at(0, 3, 0), at(900, 80, 0), at(1500, 120, 0)]),
            Some(FirstSecond { ok: 80, limited: 0 })
        );
    }

    #[test]
    fn the_learned_pace_is_read_from_the_state_file_per_second() {
        let state = serde_json::json!({
            "format": "promptbatch-rates/1",
            "entries": {"http://127.0.0.1:1 google/gemma-3-4b-it": {
                "requests_per_minute": 5700.0, "window_s": 1.0,
                "learned_at": "2026-11-26T00:00:00Z"}}
        });
        assert_eq!(learned_per_s(&state), Some(95.0));
        assert_eq!(learned_per_s(&serde_json::json!({"entries": {}})), None);
        assert_eq!(learned_per_s(&serde_json::json!([])), None);
    }
}

mod sustained_tests {
    use crate::pace::*;
    use std::time::Duration;

    /// A run paced at `per_s` answered requests a second (none bounced) that
    /// starts at 50 ms, ends with `total` answered, sampled every 10 ms.
    fn paced(per_s: f64, total: u64) -> Vec<Sample> {
        (0..2000)
            .map(|i| {
                let at = Duration::from_millis(i * 10);
                let since = at.as_secs_f64() - 0.05;
                let n = if since < 0.0 {
                    0
                } else {
                    ((since * per_s) as u64 + 1).min(total)
                };
                Sample {
                    at,
                    requests: n,
                    limited: 0,
                }
            })
            .collect()
    }

    #[test]
    fn the_share_counts_whole_seconds_once_under_way() {
        let share = sustained_share(&paced(95.0, 450), 100.0).expect("share");
        assert!((share - 95.0).abs() < 1.5, "{share}");
        // Requests bounced with a 429 are not in the share.
        let mut bounced = paced(100.0, 450);
        for s in bounced.iter_mut() {
            s.limited = s.requests / 10;
            s.requests += s.limited;
        }
        let share = sustained_share(&bounced, 100.0).expect("share");
        assert!((share - 100.0).abs() < 1.5, "{share}");
        // Under two seconds of run: no whole second after the first.
        assert_eq!(sustained_share(&paced(100.0, 150), 100.0), None);
        assert_eq!(sustained_share(&[], 100.0), None);
    }
}
