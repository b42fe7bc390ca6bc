//! Cost from the job's `[pricing]` table: what a reply cost, and the most a request can cost.
//!
//! There is no built-in price table on purpose: prices change, and a stale
//! figure is worse than an honest "unpriced".
//!
//! The job reads the prices; the arithmetic lives here because it weighs a
//! planned [`Request`] and a client's [`Reply`], which come after the job, and
//! the budget is its first user (the sink and the report add up its figures).

use serde::{Deserialize, Serialize};

use crate::client::{Reply, Usage};
use crate::plan::Request;

use crate::job::{Price, Pricing};

const PER: f64 = 1_000_000.0;

/// A sum of dollar amounts that ignores what is not an amount (NaN, infinite,
/// negative) and never becomes infinite.
pub fn add_usd(sum: f64, usd: f64) -> f64 {
    if is_amount(usd) {
        (sum + usd).min(f64::MAX)
    } else {
        sum
    }
}

pub use crate::client::is_amount;

/// Where a record's cost comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The provider's own figure (AI/ML API header or body, OpenRouter `usage.cost`).
    Provider,
    /// The job's `[pricing]` applied to the reported usage.
    Pricing,
}

impl Pricing {
    pub fn price(&self, model: &str) -> Option<Price> {
        self.models.get(model).copied()
    }

    /// The cost of a reply's usage at the requested model's price, when both
    /// are known (and the product is an amount).
    pub fn cost(&self, model: &str, usage: Option<&Usage>) -> Option<f64> {
        let price = self.price(model)?;
        let usage = usage?;
        let cost = usage.prompt_tokens as f64 * price.input / PER
            + usage.completion_tokens as f64 * price.output / PER;
        is_amount(cost).then_some(cost)
    }

    /// A reply's cost: the provider's figure first, else `[pricing]` over its
    /// usage. A provider figure that is no amount (NaN, infinite, negative)
    /// is no figure.
    pub fn reply_cost(&self, model: &str, reply: &Reply) -> Option<(f64, CostSource)> {
        match reply.provider_cost_usd.filter(|c| is_amount(*c)) {
            Some(cost) => Some((cost, CostSource::Provider)),
            None => self
                .cost(model, reply.usage.as_ref())
                .map(|c| (c, CostSource::Pricing)),
        }
    }

    /// What a reply counts against a budget: the larger of the provider's
    /// figure and `[pricing]` over the reported usage. A provider that says
    /// 0 (or too little) for tokens it reports using cannot make a budget
    /// limitless; a model that is really free is priced 0 in `[pricing]`.
    pub fn budget_cost(&self, model: &str, reply: &Reply) -> Option<f64> {
        let provider = reply.provider_cost_usd.filter(|c| is_amount(*c));
        let priced = self.cost(model, reply.usage.as_ref());
        match (provider, priced) {
            (Some(provider), Some(priced)) => Some(provider.max(priced)),
            (provider, priced) => provider.or(priced),
        }
    }

    /// The most one attempt of `req` can cost: an upper bound of its prompt's tokens at the
    /// input price plus its token cap at the output price. None without a price or a cap.
    pub fn worst_case(&self, req: &Request) -> Option<f64> {
        let price = self.price(&req.model)?;
        let cap = req.max_output_tokens?;
        Some(req.prompt_token_bound() as f64 * price.input / PER + cap as f64 * price.output / PER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pricing() -> Pricing {
        let mut p = Pricing::default();
        p.models.insert(
            "google/gemma-3-4b-it".into(),
            Price {
                input: 0.02,
                output: 0.04,
            },
        );
        p
    }

    fn request(model: &str, max: Option<u64>) -> Request {
        Request {
            key: "1/default".into(),
            id: "1".into(),
            param_set: Arc::from("default"),
            model: model.into(),
            body: bytes::Bytes::new(),
            stream: false,
            sha256: String::new(),
            params: Default::default(),
            input: Default::default(),
            client_request_id_prefix: "j:1:default".into(),
            prompt_bytes: 1000,
            image_tokens: 0,
            message_count: 2,
            max_output_tokens: max,
            line: 1,
            output: None,
        }
    }

    #[test]
    fn cost_uses_prompt_and_completion_prices() {
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
            total_tokens: 1_500_000,
            ..Usage::default()
        };
        let cost = pricing()
            .cost("google/gemma-3-4b-it", Some(&usage))
            .expect("priced");
        assert!((cost - (0.02 + 0.02)).abs() < 1e-12, "{cost}");
    }

    #[test]
    fn unknown_model_or_missing_usage_is_unpriced_not_zero() {
        let usage = Usage::default();
        assert_eq!(pricing().cost("other/model", Some(&usage)), None);
        assert_eq!(pricing().cost("google/gemma-3-4b-it", None), None);
    }

    #[test]
    fn provider_figure_beats_pricing_and_a_real_zero_stays_zero() {
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 10,
            total_tokens: 20,
            ..Usage::default()
        };
        let mut reply = Reply {
            usage: Some(usage),
            provider_cost_usd: Some(0.0),
            ..Reply::default()
        };
        let p = pricing();
        assert_eq!(
            p.reply_cost("google/gemma-3-4b-it", &reply),
            Some((0.0, CostSource::Provider))
        );
        reply.provider_cost_usd = None;
        let (cost, source) = p
            .reply_cost("google/gemma-3-4b-it", &reply)
            .expect("priced");
        assert_eq!(source, CostSource::Pricing);
        assert!((cost - (10.0 * 0.02 + 10.0 * 0.04) / 1e6).abs() < 1e-15);
        assert_eq!(p.reply_cost("unpriced/model", &reply), None);
    }

    #[test]
    fn a_budget_counts_the_larger_of_the_provider_figure_and_the_priced_usage() {
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 0,
            total_tokens: 1_000_000,
            ..Usage::default()
        };
        let p = pricing();
        let model = "google/gemma-3-4b-it";
        let reply = |cost: Option<f64>, usage: Option<Usage>| Reply {
            usage,
            provider_cost_usd: cost,
            ..Reply::default()
        };
        // A provider saying 0 for a million prompt tokens priced at $0.02.
        assert_eq!(
            p.budget_cost(model, &reply(Some(0.0), Some(usage))),
            Some(0.02)
        );
        assert_eq!(
            p.budget_cost(model, &reply(Some(0.5), Some(usage))),
            Some(0.5)
        );
        assert_eq!(p.budget_cost(model, &reply(Some(0.0), None)), Some(0.0));
        assert_eq!(p.budget_cost(model, &reply(None, Some(usage))), Some(0.02));
        assert_eq!(p.budget_cost(model, &reply(None, None)), None);
        // The record still keeps the provider's own figure.
        assert_eq!(
            p.reply_cost(model, &reply(Some(0.0), Some(usage))),
            Some((0.0, CostSource::Provider))
        );
    }

    #[test]
    fn provider_figures_that_are_not_amounts_are_no_figures() {
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 10,
            total_tokens: 20,
            ..Usage::default()
        };
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5] {
            let reply = Reply {
                usage: Some(usage),
                provider_cost_usd: Some(bad),
                ..Reply::default()
            };
            let (cost, source) = pricing()
                .reply_cost("google/gemma-3-4b-it", &reply)
                .expect("priced from usage");
            assert_eq!(source, CostSource::Pricing, "{bad}");
            assert!(is_amount(cost));
            assert_eq!(pricing().reply_cost("unpriced", &reply), None, "{bad}");
        }
    }

    #[test]
    fn dollar_sums_skip_what_is_not_an_amount_and_saturate() {
        assert_eq!(add_usd(1.0, f64::NAN), 1.0);
        assert_eq!(add_usd(1.0, f64::INFINITY), 1.0);
        assert_eq!(add_usd(1.0, -2.0), 1.0);
        assert_eq!(add_usd(f64::MAX, f64::MAX), f64::MAX);
        assert_eq!(add_usd(0.5, 0.25), 0.75);
    }

    #[test]
    fn worst_case_bounds_prompt_bytes_and_token_cap() {
        let req = request("google/gemma-3-4b-it", Some(512));
        let worst = pricing().worst_case(&req).expect("priced and capped");
        let expected = (1000.0 + 16.0) * 0.02 / 1e6 + 512.0 * 0.04 / 1e6;
        assert!((worst - expected).abs() < 1e-15, "{worst} vs {expected}");
        assert_eq!(
            pricing().worst_case(&request("google/gemma-3-4b-it", None)),
            None
        );
        assert_eq!(pricing().worst_case(&request("x", Some(5))), None);
    }
}
