//! `validate`'s estimate of what a job costs before anything is sent: per
//! parameter set and requested model, the requests, their prompt tokens, and
//! the worst-case and expected cost.
//!
//! The check pass folds every planned request in as it goes (sums per set
//! and model, never a figure per row), and the sums are priced once at the
//! end. Within one group every request has the same model, hence the same
//! price, so pricing the sums is pricing each request.
//!
//! The prompt figures come from the planned request itself
//! ([`Request::prompt_token_estimate`] and the bound the budget and the
//! tokens-per-minute limit use), so the estimate cannot drift from what a
//! run reserves. The completion side of the expected cost is what earlier
//! replies of the model used, read from the output a run would resume;
//! without any, half the token cap.

use std::collections::BTreeMap;

use crate::job::{Price, Pricing};
use crate::plan::Request;
use crate::scheduler::pricing::add_usd;
use crate::sink::Completions;

const PER_MILLION: f64 = 1_000_000.0;

/// Sums over the requests of one group (or of all).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sums {
    pub requests: u64,
    /// [`Request::prompt_token_estimate`], summed.
    pub prompt_tokens: u64,
    /// [`Request::prompt_token_bound`], summed.
    pub prompt_bound: u64,
    /// Token caps (`max_tokens`, `max_completion_tokens`, times `n`) of the capped requests.
    pub token_caps: u64,
    /// Requests with no token cap: their worst case has no bound.
    pub uncapped: u64,
}

impl Sums {
    fn add(&mut self, req: &Request) {
        self.requests += 1;
        self.prompt_tokens = self
            .prompt_tokens
            .saturating_add(req.prompt_token_estimate());
        self.prompt_bound = self.prompt_bound.saturating_add(req.prompt_token_bound());
        match req.max_output_tokens {
            Some(cap) => self.token_caps = self.token_caps.saturating_add(cap),
            None => self.uncapped += 1,
        }
    }

    fn merge(&mut self, other: &Sums) {
        self.requests += other.requests;
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.prompt_bound = self.prompt_bound.saturating_add(other.prompt_bound);
        self.token_caps = self.token_caps.saturating_add(other.token_caps);
        self.uncapped += other.uncapped;
    }

    /// The summed token cap; None when some request has none.
    pub fn token_cap(&self) -> Option<u64> {
        (self.uncapped == 0).then_some(self.token_caps)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Group {
    /// Every request of the job in this group.
    all: Sums,
    /// Those a run would send now (not already done in the output).
    to_send: Sums,
}

/// The requests folded in so far, by parameter set, then requested model.
#[derive(Debug, Default)]
pub struct Estimate {
    groups: BTreeMap<String, BTreeMap<String, Group>>,
}

impl Estimate {
    /// Counts one planned request; `to_send`: a run would send it now.
    pub fn add(&mut self, req: &Request, to_send: bool) {
        // Looked up before inserting: no key allocated per request.
        if !self.groups.contains_key(&*req.param_set) {
            self.groups
                .insert(req.param_set.to_string(), BTreeMap::new());
        }
        let models = self
            .groups
            .get_mut(&*req.param_set)
            .expect("inserted just above");
        if !models.contains_key(&req.model) {
            models.insert(req.model.clone(), Group::default());
        }
        let group = models.get_mut(&req.model).expect("inserted just above");
        group.all.add(req);
        if to_send {
            group.to_send.add(req);
        }
    }

    /// Prices every group with the job's `[pricing]` and what earlier
    /// replies of each model used (`earlier`, from the output).
    pub fn price(&self, pricing: &Pricing, earlier: &BTreeMap<String, Completions>) -> Priced {
        let mut priced = Priced::default();
        let groups = self
            .groups
            .iter()
            .flat_map(|(set, models)| models.iter().map(move |(model, g)| (set, model, g)));
        for (set, model, group) in groups {
            let price = pricing.price(model);
            let seen = earlier.get(model).copied().unwrap_or_default();
            let row = Row::new(set, model, group.all, price, seen);
            priced.totals.add(&row);
            priced
                .to_send
                .add(&Row::new(set, model, group.to_send, price, seen));
            priced.sets.push(row);
        }
        // Nothing to price costs $0, which is known: an empty input (with
        // --allow-empty) or nothing left to send is not "unknown" (null in
        // --json), while every request still counts as priced or not.
        for totals in [&mut priced.totals, &mut priced.to_send] {
            if totals.sums.requests == 0 {
                totals.worst_case_usd.get_or_insert(0.0);
                totals.expected_usd.get_or_insert(0.0);
            }
        }
        priced
    }
}

/// What the expected completion tokens rest on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The mean completion tokens of this many earlier `ok` lines of the model.
    EarlierLines(u64),
    /// Half of each request's token cap.
    HalfTokenCap,
    /// Neither: some request has no token cap and the model no earlier line.
    Unknown,
}

/// One parameter set and model, priced.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub param_set: String,
    pub model: String,
    pub sums: Sums,
    /// None: no `[pricing]` entry for the model.
    pub price: Option<Price>,
    /// None without a price or when some request has no token cap (unbounded).
    pub worst_case_usd: Option<f64>,
    /// The completion tokens the expected cost counts; None when unknown.
    pub expected_completion_tokens: Option<u64>,
    /// None without a price or when the completion tokens are unknown.
    pub expected_usd: Option<f64>,
    pub basis: Basis,
}

impl Row {
    fn new(set: &str, model: &str, sums: Sums, price: Option<Price>, seen: Completions) -> Row {
        let (completion, basis) = match (seen.mean(), sums.token_cap()) {
            // No more than the caps allow, whatever earlier replies used.
            (Some(mean), cap) => {
                let tokens = (mean * sums.requests as f64).round() as u64;
                (
                    Some(cap.map_or(tokens, |cap| tokens.min(cap))),
                    Basis::EarlierLines(seen.lines),
                )
            }
            (None, Some(cap)) => (Some(cap.div_ceil(2)), Basis::HalfTokenCap),
            (None, None) => (None, Basis::Unknown),
        };
        let usd = |prompt: u64, completion: u64| {
            price.map(|p| {
                prompt as f64 * p.input / PER_MILLION + completion as f64 * p.output / PER_MILLION
            })
        };
        Row {
            param_set: set.to_string(),
            model: model.to_string(),
            sums,
            price,
            worst_case_usd: sums.token_cap().and_then(|cap| usd(sums.prompt_bound, cap)),
            expected_completion_tokens: completion,
            expected_usd: completion.and_then(|c| usd(sums.prompt_tokens, c)),
            basis,
        }
    }
}

/// Sums of the rows: the known costs added up, and what they leave out.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    pub sums: Sums,
    /// The sum of the known worst cases; None when none is known.
    pub worst_case_usd: Option<f64>,
    /// The sum of the known expected costs; None when none is known.
    pub expected_usd: Option<f64>,
    /// Requests whose model has no `[pricing]` entry: left out of both sums.
    pub unpriced_requests: u64,
    /// Priced requests with no token cap: left out of the worst case (it
    /// has no bound), and of the expected cost unless earlier lines say
    /// what their model uses.
    pub uncapped_requests: u64,
}

impl Totals {
    fn add(&mut self, row: &Row) {
        self.sums.merge(&row.sums);
        if row.price.is_none() {
            self.unpriced_requests += row.sums.requests;
        } else {
            self.uncapped_requests += row.sums.uncapped;
        }
        let sum = |total: Option<f64>, usd: Option<f64>| match (total, usd) {
            (total, None) => total,
            (total, Some(usd)) => Some(add_usd(total.unwrap_or(0.0), usd)),
        };
        self.worst_case_usd = sum(self.worst_case_usd, row.worst_case_usd);
        self.expected_usd = sum(self.expected_usd, row.expected_usd);
    }
}

/// The estimate, priced.
#[derive(Debug, Default)]
pub struct Priced {
    /// One row per (parameter set, model), in that order.
    pub sets: Vec<Row>,
    pub totals: Totals,
    /// The same for the requests a run would send now.
    pub to_send: Totals,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn request(set: &str, model: &str, prompt_bytes: u64, cap: Option<u64>) -> Request {
        Request {
            key: "k".into(),
            id: "k".into(),
            param_set: Arc::from(set),
            model: model.into(),
            body: bytes::Bytes::new(),
            stream: false,
            sha256: String::new(),
            params: Default::default(),
            input: Default::default(),
            client_request_id_prefix: "j:k:s".into(),
            prompt_bytes,
            image_tokens: 0,
            message_count: 1,
            max_output_tokens: cap,
            line: 1,
            output: None,
        }
    }

    fn pricing() -> Pricing {
        let mut p = Pricing::default();
        p.models.insert(
            "m".into(),
            Price {
                input: 1.0,
                output: 2.0,
            },
        );
        p
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn a_priced_capped_group_by_hand() {
        let mut e = Estimate::default();
        // 40 bytes, 1 message: estimate 10 + 4 = 14, bound 40 + 8 = 48.
        e.add(&request("s", "m", 40, Some(100)), true);
        e.add(&request("s", "m", 40, Some(100)), false);
        let p = e.price(&pricing(), &BTreeMap::new());
        let row = &p.sets[0];
        assert_eq!((row.sums.requests, row.sums.prompt_tokens), (2, 28));
        assert_eq!(
            (row.sums.prompt_bound, row.sums.token_cap()),
            (96, Some(200))
        );
        // Worst: 96 prompt at $1/M + 200 completion at $2/M.
        assert!(close(row.worst_case_usd, (96.0 + 400.0) / 1e6));
        // Expected: 28 prompt at $1/M + half of 200 at $2/M.
        assert_eq!(row.basis, Basis::HalfTokenCap);
        assert!(close(row.expected_usd, (28.0 + 200.0) / 1e6));
        assert_eq!(p.totals.sums.requests, 2);
        assert!(close(p.totals.expected_usd, (28.0 + 200.0) / 1e6));
        // Only one of the two is still to send.
        assert_eq!(p.to_send.sums.requests, 1);
        assert!(close(p.to_send.worst_case_usd, (48.0 + 200.0) / 1e6));
    }

    #[test]
    fn earlier_lines_of_the_model_set_the_expected_completion_within_the_cap() {
        let mut e = Estimate::default();
        e.add(&request("s", "m", 40, Some(100)), true);
        e.add(&request("s", "m", 40, Some(100)), true);
        let earlier = BTreeMap::from([(
            "m".to_string(),
            Completions {
                lines: 3,
                tokens: 63,
            },
        )]);
        let row = &e.price(&pricing(), &earlier).sets[0];
        assert_eq!(row.basis, Basis::EarlierLines(3));
        assert_eq!(row.expected_completion_tokens, Some(42));
        assert!(close(row.expected_usd, (28.0 + 84.0) / 1e6));
        // Earlier replies longer than today's cap: the cap bounds them.
        let long = BTreeMap::from([(
            "m".to_string(),
            Completions {
                lines: 1,
                tokens: 5000,
            },
        )]);
        let row = &e.price(&pricing(), &long).sets[0];
        assert_eq!(row.expected_completion_tokens, Some(200));
    }

    /// Regression: an empty input's estimate was "unknown" (null in
    /// --json), where nothing left to send of a priced job was $0.
    #[test]
    fn no_requests_cost_zero_not_unknown() {
        let p = Estimate::default().price(&pricing(), &BTreeMap::new());
        assert!(p.sets.is_empty());
        for totals in [&p.totals, &p.to_send] {
            assert_eq!(totals.worst_case_usd, Some(0.0));
            assert_eq!(totals.expected_usd, Some(0.0));
            assert_eq!(totals.unpriced_requests, 0);
        }
    }

    #[test]
    fn no_price_is_unknown_never_zero() {
        let mut e = Estimate::default();
        e.add(&request("s", "unpriced", 40, Some(100)), true);
        let p = e.price(&pricing(), &BTreeMap::new());
        assert_eq!(p.sets[0].price, None);
        assert_eq!(p.sets[0].worst_case_usd, None);
        assert_eq!(p.sets[0].expected_usd, None);
        assert_eq!(p.totals.worst_case_usd, None, "nothing priced: no total");
        assert_eq!(p.totals.expected_usd, None);
        assert_eq!(p.totals.unpriced_requests, 1);
    }

    #[test]
    fn no_token_cap_leaves_the_worst_case_unbounded() {
        let mut e = Estimate::default();
        e.add(&request("s", "m", 40, None), true);
        e.add(&request("t", "m", 40, Some(10)), true);
        let p = e.price(&pricing(), &BTreeMap::new());
        let uncapped = &p.sets[0];
        assert_eq!(
            (uncapped.worst_case_usd, uncapped.expected_usd),
            (None, None)
        );
        assert_eq!(uncapped.basis, Basis::Unknown);
        assert_eq!(uncapped.sums.token_cap(), None);
        // The totals add up what is known and count what they leave out.
        assert!(close(p.totals.worst_case_usd, (48.0 + 20.0) / 1e6));
        assert_eq!(p.totals.uncapped_requests, 1);
        assert_eq!(p.totals.sums.token_cap(), None);
        // Earlier lines make the expected cost known even without a cap.
        let earlier = BTreeMap::from([(
            "m".to_string(),
            Completions {
                lines: 2,
                tokens: 10,
            },
        )]);
        let p = e.price(&pricing(), &earlier);
        assert!(close(p.sets[0].expected_usd, (14.0 + 10.0) / 1e6));
        assert_eq!(p.sets[0].worst_case_usd, None);
    }

    #[test]
    fn groups_are_by_set_and_the_model_each_request_asks_for() {
        let mut e = Estimate::default();
        e.add(&request("s", "m", 4, Some(1)), true);
        e.add(&request("s", "other", 4, Some(1)), true);
        e.add(&request("s", "m", 4, Some(1)), true);
        e.add(&request("t", "m", 4, Some(1)), true);
        let p = e.price(&pricing(), &BTreeMap::new());
        let groups: Vec<(&str, &str, u64)> = p
            .sets
            .iter()
            .map(|r| (r.param_set.as_str(), r.model.as_str(), r.sums.requests))
            .collect();
        assert_eq!(groups, [("s", "m", 2), ("s", "other", 1), ("t", "m", 1)]);
        assert_eq!(p.totals.sums.requests, 4);
    }
}
