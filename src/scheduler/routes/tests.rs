//! The choice among several endpoints, on a paused clock (no request is sent).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::client::{Client, Endpoint, HttpVersion};

fn route(name: &str, weight: u32, rpm: u32, models: Option<&[&str]>) -> Route {
    let endpoint = Endpoint {
        url: format!("http://127.0.0.1:9/{name}/v1/chat/completions"),
        api_key_env: String::new(),
        timeout: Duration::from_secs(5),
        headers: Vec::new(),
        max_reply_bytes: 1 << 20,
        max_attempt: Duration::from_secs(60),
        http: HttpVersion::Auto,
    };
    Route {
        name: Some(name.to_string()),
        url: endpoint.url.clone(),
        client: Client::new(&endpoint, None, 4).expect("a client"),
        limiter: Arc::new(Limiter::new(rpm, 0)),
        weight,
        models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
        streaks: Mutex::default(),
    }
}

async fn picks(routes: &Routes, model: &str, n: usize) -> Vec<usize> {
    let mut counts = vec![0; routes.routes.len()];
    for _ in 0..n {
        match routes.pick(model, 1, None).await {
            Picked::Route(i) => {
                counts[i] += 1;
                // Answered at once: nothing stays in flight.
                routes.routes[i].limiter.on_answer(1, None);
            }
            other => panic!("no route: {other:?}"),
        }
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn weights_split_requests_exactly() {
    let routes = Routes::new(vec![
        route("a", 1, 0, None),
        route("b", 1, 0, None),
        route("c", 2, 0, None),
    ]);
    assert_eq!(picks(&routes, "m", 400).await, vec![100, 100, 200]);
    // Evenly interleaved, not in blocks: any 4 picks in a row hold c twice.
    let mut last = Vec::new();
    for _ in 0..8 {
        if let Picked::Route(i) = routes.pick("m", 1, None).await {
            last.push(i);
        }
    }
    for window in last.windows(4) {
        assert_eq!(window.iter().filter(|&&i| i == 2).count(), 2, "{last:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn each_endpoint_limit_holds_over_any_window_and_the_others_take_the_rest() {
    // "slow" may send 60 a minute (one a second), "fast" 600.
    let routes = Routes::new(vec![
        route("slow", 1, 60, None),
        route("fast", 1, 600, None),
    ]);
    let start = Instant::now();
    let mut sent: Vec<(Duration, usize)> = Vec::new();
    while start.elapsed() < Duration::from_secs(30) {
        if let Picked::Route(i) = routes.pick("m", 1, None).await {
            sent.push((start.elapsed(), i));
            routes.routes[i].limiter.on_answer(1, None);
        }
    }
    for (who, per_s) in [(0, 1.0), (1, 10.0)] {
        let times: Vec<Duration> = sent
            .iter()
            .filter(|(_, i)| *i == who)
            .map(|(t, _)| *t)
            .collect();
        // Any window of w seconds holds at most rate x w plus the small burst.
        for (k, from) in times.iter().enumerate() {
            for w in [1.0f64, 5.0, 10.0] {
                let within = times[k..]
                    .iter()
                    .take_while(|t| t.as_secs_f64() - from.as_secs_f64() < w)
                    .count();
                assert!(
                    within as f64 <= per_s * w + 1.0,
                    "route {who}: {within} in {w} s from {from:?}"
                );
            }
        }
        // And the limit is used, not left idle.
        assert!(
            times.len() as f64 >= per_s * 30.0 * 0.9,
            "route {who}: {}",
            times.len()
        );
    }
    // Together faster than the fast one alone.
    assert!(sent.len() > 300, "{}", sent.len());
}

#[tokio::test(start_paused = true)]
async fn models_lists_are_respected_and_an_unserved_model_is_said() {
    let routes = Routes::new(vec![
        route("a", 1, 0, Some(&["m1"])),
        route("b", 1, 0, Some(&["m2"])),
        route("c", 1, 0, None),
    ]);
    assert_eq!(picks(&routes, "m1", 10).await, vec![5, 0, 5]);
    assert_eq!(picks(&routes, "m2", 10).await, vec![0, 5, 5]);
    let only = Routes::new(vec![route("a", 1, 0, Some(&["m1"]))]);
    assert_eq!(only.pick("m9", 1, None).await, Picked::Unserved);
}

#[tokio::test(start_paused = true)]
async fn a_failed_endpoint_is_avoided_and_one_out_of_rotation_is_never_chosen() {
    let routes = Routes::new(vec![route("a", 1, 0, None), route("b", 1, 0, None)]);
    for _ in 0..5 {
        assert_eq!(routes.pick("m", 1, Some(0)).await, Picked::Route(1));
    }
    let note = routes.take_out(
        1,
        StopReason::EndpointRefused,
        Some("HTTP 401: bad key".into()),
    );
    assert!(
        matches!(note, Some(EndpointNote::Out { ref name, .. }) if name == "b"),
        "{note:?}"
    );
    assert_eq!(
        routes.take_out(1, StopReason::EndpointRefused, None),
        None,
        "said once"
    );
    // The only one left is chosen even when it is the one that failed.
    assert_eq!(routes.pick("m", 1, Some(0)).await, Picked::Route(0));
    routes.take_out(
        0,
        StopReason::EndpointUnreachable,
        Some("connection refused".into()),
    );
    match routes.pick("m", 1, None).await {
        Picked::AllOut(reason, detail) => {
            assert_eq!(reason, StopReason::EndpointUnreachable);
            assert!(detail.contains("a: connection refused"), "{detail}");
            assert!(detail.contains("b: HTTP 401: bad key"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_failing_again_and_again_is_tried_only_when_the_others_are_busy() {
    // "b" sends one a second; "a" has failed 20 times in a row.
    let routes = Routes::new(vec![route("a", 1, 0, None), route("b", 1, 60, None)]);
    let mut note = None;
    for _ in 0..FAILING_TO_AVOID {
        note = routes.failed(0).or(note);
    }
    assert!(
        matches!(note, Some(EndpointNote::Failing { .. })),
        "{note:?}"
    );
    // b first while it can send; a only while b waits.
    assert_eq!(routes.pick("m", 1, None).await, Picked::Route(1));
    assert_eq!(routes.pick("m", 1, None).await, Picked::Route(0));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(routes.pick("m", 1, None).await, Picked::Route(1));
    // Every PROBE_EVERY it is tried once anyway, though b could send.
    tokio::time::advance(PROBE_EVERY).await;
    assert_eq!(routes.pick("m", 1, None).await, Picked::Route(0), "a probe");
    assert_eq!(routes.pick("m", 1, None).await, Picked::Route(1));
    // A success puts it back among the healthy: the split is even again.
    routes.succeeded(0);
    tokio::time::advance(Duration::from_secs(1)).await;
    let first = routes.pick("m", 1, None).await;
    let second = routes.pick("m", 1, None).await;
    assert_ne!(first, second, "one each: {first:?} {second:?}");
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_out_of_rotation_is_not_warned_about_as_failing_too() {
    // Requests in flight at an unreachable endpoint when it was taken out
    // keep failing there: its one warning said it is out, and no second one
    // may say it is still tried when the others are busy.
    let routes = Routes::new(vec![route("a", 1, 0, None), route("b", 1, 0, None)]);
    for _ in 0..5 {
        assert_eq!(routes.failed(0), None);
    }
    let out = routes.take_out(0, StopReason::EndpointUnreachable, None);
    assert!(matches!(out, Some(EndpointNote::Out { .. })), "{out:?}");
    for _ in 0..FAILING_TO_AVOID * 2 {
        assert_eq!(routes.failed(0), None, "no failing note once out");
    }
}
