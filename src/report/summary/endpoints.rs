//! The summary's `by_endpoint`: requests, tokens, cost, errors and latency
//! percentiles per endpoint name, over the same lines as the top level.
//!
//! Lines carry `endpoint` only when the job has `[[endpoints]]`; a summary
//! of lines without one has no `by_endpoint` at all. Endpoints are few, but
//! the names come from a file, and a hostile or mangled one may hold a
//! million: at most [`MAX_NAMED`] names are kept, the first in sort order,
//! and the lines of every other name are folded into one [`OTHER`] entry
//! marked `"folded": true`. Sort order, not arrival order, so the live
//! tally (this run's lines first, then the earlier ones read back) and a
//! read-back of the file (in file order) keep the same names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{count_in, Distribution, Figures, Tokens};
use crate::scheduler::pricing::{add_usd, is_amount};

/// Endpoint names kept apart; the lines of the others share one entry.
pub const MAX_NAMED: usize = 64;

/// The entry the lines of endpoints past [`MAX_NAMED`] are folded into.
pub const OTHER: &str = "other";

/// One endpoint's figures in the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointFigures {
    pub requests: EndpointRequests,
    /// As the top level's: `unreported` counts `ok` lines with no usage.
    pub tokens: Tokens,
    /// Sum of the known costs of its lines (unpriced ones add nothing).
    pub cost_usd: f64,
    /// Its successful lines with no cost: counted, never taken as $0.
    pub unpriced_requests: u64,
    /// Failed lines by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Over its `ok` lines with a latency; null when there is none.
    pub latency_ms: Option<Percentiles>,
    /// True on the one entry that holds the lines of every endpoint past
    /// the first [`MAX_NAMED`] names.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub folded: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointRequests {
    pub ok: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// What one endpoint (or the folded rest) has seen so far.
#[derive(Debug)]
struct Endpoint {
    ok: u64,
    failed: u64,
    tokens: Tokens,
    cost: f64,
    unpriced: u64,
    errors: BTreeMap<String, u64>,
    latency: Distribution,
}

impl Default for Endpoint {
    fn default() -> Endpoint {
        Endpoint {
            ok: 0,
            failed: 0,
            tokens: Tokens::default(),
            cost: 0.0,
            unpriced: 0,
            errors: BTreeMap::new(),
            latency: Distribution::new(),
        }
    }
}

impl Endpoint {
    /// A line, counted as the top level counts it.
    fn add(&mut self, r: &Figures<'_>) {
        if r.ok {
            self.ok += 1;
            self.tokens.add(r.usage);
            if !r.cost_usd.is_some_and(is_amount) {
                self.unpriced += 1;
            }
            if let Some(ms) = r.latency_ms {
                self.latency.record(ms);
            }
        } else {
            self.failed += 1;
            count_in(&mut self.errors, r.error_kind.unwrap_or("unknown"));
        }
        if let Some(cost) = r.cost_usd.filter(|c| is_amount(*c)) {
            self.cost = add_usd(self.cost, cost);
        }
    }

    /// Takes in everything `other` saw.
    fn merge(&mut self, other: Endpoint) {
        self.ok += other.ok;
        self.failed += other.failed;
        let (t, o) = (&mut self.tokens, other.tokens);
        t.prompt = t.prompt.saturating_add(o.prompt);
        t.completion = t.completion.saturating_add(o.completion);
        t.total = t.total.saturating_add(o.total);
        t.unreported += o.unreported;
        self.cost = add_usd(self.cost, other.cost);
        self.unpriced += other.unpriced;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.latency.merge(&other.latency);
    }

    fn figures(&self, folded: bool) -> EndpointFigures {
        EndpointFigures {
            requests: EndpointRequests {
                ok: self.ok,
                failed: self.failed,
            },
            tokens: self.tokens.clone(),
            cost_usd: crate::sink::record::significant(self.cost),
            unpriced_requests: self.unpriced,
            errors: self.errors.clone(),
            latency_ms: self.latency.spread().map(|s| Percentiles {
                p50: s.p50,
                p95: s.p95,
                p99: s.p99,
            }),
            folded,
        }
    }
}

/// Per-endpoint tallies: at most [`MAX_NAMED`] names, the rest folded.
#[derive(Debug, Default)]
pub(super) struct ByEndpoint {
    named: BTreeMap<String, Endpoint>,
    /// The lines of every name past the first [`MAX_NAMED`] in sort order.
    rest: Option<Endpoint>,
}

impl ByEndpoint {
    /// A line of endpoint `name`.
    pub(super) fn add(&mut self, name: &str, r: &Figures<'_>) {
        if let Some(endpoint) = self.named.get_mut(name) {
            endpoint.add(r);
            return;
        }
        if self.named.len() >= MAX_NAMED {
            // Full: the name joins the kept ones only if it sorts before
            // the last of them, which then goes to the rest. The kept names
            // are then always the first MAX_NAMED seen, in sort order,
            // whatever order the lines came in.
            let last = self.named.last_key_value().map(|(k, _)| k.as_str());
            if last.is_none_or(|last| name > last) {
                self.rest.get_or_insert_with(Endpoint::default).add(r);
                return;
            }
            if let Some((_, evicted)) = self.named.pop_last() {
                self.rest
                    .get_or_insert_with(Endpoint::default)
                    .merge(evicted);
            }
        }
        let mut endpoint = Endpoint::default();
        endpoint.add(r);
        self.named.insert(name.to_string(), endpoint);
    }

    /// The summary's `by_endpoint`: empty when no line named an endpoint.
    pub(super) fn figures(&self) -> BTreeMap<String, EndpointFigures> {
        let mut out: BTreeMap<String, EndpointFigures> = (self.named.iter())
            .map(|(name, e)| (name.clone(), e.figures(false)))
            .collect();
        if let Some(rest) = &self.rest {
            // An endpoint kept apart may itself be called `other`: never
            // mixed with it, the rest takes `(other)` then.
            let mut name = OTHER.to_string();
            while out.contains_key(&name) {
                name = format!("({name})");
            }
            out.insert(name, rest.figures(true));
        }
        out
    }
}

#[cfg(test)]
mod tests;
