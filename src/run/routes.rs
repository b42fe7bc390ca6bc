//! The run's endpoints as the scheduler's routes: one client (and
//! connection pool) and one limiter each, the key each one needs checked
//! before anything is sent, simulated endpoints for `--simulate`, and the
//! warnings about endpoints taken out of rotation.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::StartError;
use crate::client::{Client, Endpoint, HttpVersion};
use crate::job::{EndpointConfig, HttpSetting, Job};
use crate::mock::{MockConfig, MockServer};
use crate::printer;
use crate::scheduler::{EndpointNote, Limiter, Route, StopReason};

/// The client's view of an endpoint of the job.
pub fn client_endpoint(c: &EndpointConfig) -> Endpoint {
    Endpoint {
        url: c.url.clone(),
        api_key_env: c.api_key_env.clone(),
        timeout: c.timeout,
        headers: c.headers.clone(),
        max_reply_bytes: c.max_reply_bytes,
        max_attempt: c.max_attempt,
        http: match c.http {
            HttpSetting::Auto => HttpVersion::Auto,
            HttpSetting::Http1 => HttpVersion::Http1,
            HttpSetting::Http2 => HttpVersion::Http2,
        },
    }
}

/// The key in the variable `name`; None for "" or `--simulate`.
fn key_of(job: &Job, name: &str) -> Option<Result<String, ()>> {
    if job.simulate || name.is_empty() {
        return None;
    }
    Some(match std::env::var(name) {
        Ok(key) if !key.trim().is_empty() => Ok(key.trim().to_string()),
        _ => Err(()),
    })
}

/// Every `[[endpoints]]` entry's key, in order; each variable is checked
/// before anything is sent (an unset one names the endpoint and the variable).
pub fn keys(job: &Job) -> Result<Vec<Option<String>>, StartError> {
    (job.endpoints.iter())
        .map(|e| match key_of(job, &e.config.api_key_env) {
            None => Ok(None),
            Some(Ok(key)) => Ok(Some(key)),
            Some(Err(())) => Err(StartError::EndpointKeyUnset {
                endpoint: e.name.clone(),
                name: e.config.api_key_env.clone(),
            }),
        })
        .collect()
}

/// With `[[endpoints]]`: every model the requests to send ask for (a row's
/// own `params` included) is served by some endpoint, checked before
/// anything is sent.
pub fn check_models<'m>(
    job: &Job,
    models: impl IntoIterator<Item = &'m str>,
) -> Result<(), StartError> {
    if job.endpoints.is_empty() {
        return Ok(());
    }
    for model in models {
        if !job.endpoints.iter().any(|e| e.serves(model)) {
            let lists: Vec<String> = (job.endpoints.iter())
                .map(|e| format!("{:?} serves {}", e.name, e.models_text()))
                .collect();
            return Err(StartError::Unserved {
                model: model.to_string(),
                lists: lists.join("; "),
            });
        }
    }
    Ok(())
}

/// The routes of a job of several endpoints, with their keys (from [`keys`]).
pub fn several(job: &Job, keys: &[Option<String>]) -> Result<Vec<Route>, StartError> {
    let pool = job.limits.concurrency;
    (job.endpoints.iter().zip(keys))
        .map(|(e, key)| {
            let client = Client::new(&client_endpoint(&e.config), key.as_deref(), pool)
                .map_err(StartError::from)?;
            Ok(Route {
                name: Some(e.name.clone()),
                url: e.config.url.clone(),
                client,
                limiter: Arc::new(Limiter::new(e.requests_per_minute, e.tokens_per_minute)),
                weight: e.weight,
                models: e.models.clone(),
                streaks: Mutex::default(),
            })
        })
        .collect()
}

/// The one route of a job of one endpoint: its limiter is the job's.
pub fn single(job: &Job, client: Client) -> Vec<Route> {
    let limits = &job.limits;
    vec![Route {
        name: None,
        url: job.endpoint.url.clone(),
        client,
        limiter: Arc::new(Limiter::new(
            limits.requests_per_minute,
            limits.tokens_per_minute,
        )),
        weight: 1,
        models: None,
        streaks: Mutex::default(),
    }]
}

/// `--simulate` with `[[endpoints]]`: one simulated endpoint per entry, so
/// the run shows how requests split between them.
pub async fn simulate(job: &mut Job, config: &MockConfig) -> Result<Vec<MockServer>, StartError> {
    let mut mocks = Vec::new();
    for e in &mut job.endpoints {
        let mock = MockServer::start(config.clone())
            .await
            .map_err(StartError::Simulate)?;
        e.config.url = mock.url();
        mocks.push(mock);
    }
    if let Some(first) = job.endpoints.first() {
        job.endpoint = first.config.clone();
    }
    Ok(mocks)
}

/// Says what changed about an endpoint, as a warning (text, or a JSON
/// event `endpoint_out` / `endpoint_failing` naming it).
pub fn warn(note: &EndpointNote) {
    let (event, message, fields) = match note {
        EndpointNote::Out {
            name,
            reason,
            detail,
        } => {
            let why = match reason {
                StopReason::EndpointUnreachable => "cannot be reached",
                _ => "refuses every request",
            };
            let quoted = detail.as_deref().map_or(String::new(), |d| format!(" (last error: {d})"));
            (
                "endpoint_out",
                format!("endpoint {name:?} {why}{quoted}: taken out of rotation; its requests go to the other endpoints"),
                json!({"endpoint": name, "reason": reason, "last_error": detail}),
            )
        }
        EndpointNote::Failing { name, in_a_row } => (
            "endpoint_failing",
            format!("endpoint {name:?} failed {in_a_row} attempts in a row with retryable errors: it is tried only when the other endpoints are busy (and once every 30 s, until it answers again)"),
            json!({"endpoint": name, "in_a_row": in_a_row}),
        ),
    };
    let fields = match fields {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    printer::event(printer::Level::Warn, event, message, fields);
}

/// The endpoints for the `start` event and the start line: name, host,
/// weight, limits and models (null for a job of one endpoint).
pub fn start_list(job: &Job, paces: &[Option<f64>]) -> Value {
    if job.endpoints.is_empty() {
        return Value::Null;
    }
    let list: Vec<Value> = (job.endpoints.iter().enumerate())
        .map(|(i, e)| {
            let limit = |n: u64| (n > 0).then_some(n);
            let learned = paces.get(i).copied().flatten();
            let source = match (
                e.requests_per_minute > 0 || e.tokens_per_minute > 0,
                learned,
            ) {
                (true, _) => "configured",
                (false, Some(_)) => "state_file",
                (false, None) => "none",
            };
            json!({
                "name": e.name,
                "host": host(&e.config.url),
                "weight": e.weight,
                "requests_per_minute": limit(u64::from(e.requests_per_minute)),
                "tokens_per_minute": limit(e.tokens_per_minute),
                "models": e.models,
                "pace": {"source": source, "requests_per_minute": learned},
            })
        })
        .collect();
    Value::Array(list)
}

/// The words of the start line about several endpoints ("" for one).
pub fn start_words(job: &Job) -> String {
    if job.endpoints.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = (job.endpoints.iter())
        .map(|e| {
            let mut part = format!("{} ({}, weight {}", e.name, host(&e.config.url), e.weight);
            if e.requests_per_minute > 0 {
                part.push_str(&format!(", {} rpm", e.requests_per_minute));
            }
            if e.tokens_per_minute > 0 {
                part.push_str(&format!(", {} tpm", e.tokens_per_minute));
            }
            if let Some(models) = &e.models {
                part.push_str(&format!(", {}", models.join(" ")));
            }
            part.push(')');
            part
        })
        .collect();
    format!("; endpoints: {}", parts.join(", "))
}

/// The host (and port) of a url, never its user, password or query.
fn host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_default()
}
