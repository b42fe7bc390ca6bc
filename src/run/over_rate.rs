//! Requests a configured `tokens_per_minute` could never send: one that may
//! use more tokens (prompt bound + token cap, what the limiter reserves)
//! than a minute allows would wait forever, so the check before sending
//! refuses the job instead (exit 2) and says which requests and by how much.

use crate::input::InputError;
use crate::plan::Request;
use crate::printer::count as count_of;

/// How many such requests are named one by one; the rest are counted.
pub const NAMED: usize = 5;

/// The requests to send that are over the rate, as the check pass meets them.
#[derive(Debug, Default)]
pub struct OverRate {
    /// `tokens_per_minute`; 0 = no limit.
    tpm: u64,
    /// Requests to send that were checked.
    checked: u64,
    named: Vec<InputError>,
    count: u64,
    smallest: u64,
    largest: u64,
}

impl OverRate {
    pub fn new(tpm: u64) -> OverRate {
        OverRate {
            tpm,
            smallest: u64::MAX,
            ..OverRate::default()
        }
    }

    /// Checks one request to send; true when the rate could never send it.
    pub fn over(&mut self, req: &Request, display: &str, line: u64) -> bool {
        self.checked += 1;
        let bound = req.token_bound();
        if self.tpm == 0 || bound <= self.tpm {
            return false;
        }
        self.count += 1;
        self.smallest = self.smallest.min(bound);
        self.largest = self.largest.max(bound);
        if self.named.len() < NAMED {
            // Without a cap the prompt alone is over: "token cap 0" and
            // "lower max_tokens" would name a cap the request does not have.
            let (uses, fix) = match req.max_output_tokens {
                Some(cap) => (
                    format!(
                        "(prompt at most {} + token cap {cap})",
                        req.prompt_token_bound()
                    ),
                    "lower max_tokens",
                ),
                None => (
                    "with its prompt alone (it has no token cap)".to_string(),
                    "shorten the prompt",
                ),
            };
            self.named.push(InputError::new(
                display,
                Some(line),
                format!(
                    "request {:?} may use up to {bound} tokens {uses}, more than tokens_per_minute (--tpm) {} allows in a minute: it could never be sent; raise the rate or {fix}",
                    req.key,
                    self.tpm
                ),
            ));
        }
        true
    }

    /// Whether some request checked is over the rate.
    pub fn any(&self) -> bool {
        self.count > 0
    }

    /// The problems to report: every request named when some fit (the first
    /// few, then a count), or one line when none does (the rate is the
    /// problem, not the requests).
    pub fn problems(self, display: &str) -> Vec<InputError> {
        let tpm = self.tpm;
        let (count, largest) = (self.count, self.largest);
        if count > 1 && count == self.checked {
            return vec![InputError::new(
                display,
                None,
                format!(
                    "tokens_per_minute (--tpm) {tpm} is below what every one of the {count} requests to send may use ({} to {largest} tokens: prompt bound + token cap), so none could ever be sent; raise it to at least {largest} or lower max_tokens",
                    self.smallest
                ),
            )];
        }
        let mut problems = self.named;
        let more = count.saturating_sub(problems.len() as u64);
        if more > 0 {
            problems.push(InputError::new(
                display,
                None,
                format!(
                    "... and {} over tokens_per_minute (--tpm) {tpm}: {count} of {} requests to send could never be sent, the largest needs {largest} tokens; raise it to at least {largest} or lower max_tokens",
                    count_of(more, "more request"),
                    self.checked
                ),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A request of `bytes` bytes in one message (bound: bytes + 8) capped at 100.
    fn request(key: &str, bytes: u64) -> Request {
        Request {
            key: key.into(),
            id: key.into(),
            param_set: Arc::from("default"),
            model: "m".into(),
            body: bytes::Bytes::new(),
            stream: false,
            sha256: String::new(),
            params: Default::default(),
            input: Default::default(),
            client_request_id_prefix: "j:k:default".into(),
            prompt_bytes: bytes,
            image_tokens: 0,
            message_count: 1,
            max_output_tokens: Some(100),
            line: 1,
            output: None,
        }
    }

    fn messages(problems: &[InputError]) -> Vec<String> {
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn no_limit_and_requests_that_fit_are_no_problem() {
        let mut none = OverRate::new(0);
        assert!(!none.over(&request("a", 1_000_000), "q.jsonl", 1));
        assert!(none.problems("q.jsonl").is_empty());
        let mut fits = OverRate::new(108);
        assert!(
            !fits.over(&request("a", 0), "q.jsonl", 1),
            "8 + 100 = 108 fits"
        );
        assert!(fits.problems("q.jsonl").is_empty());
    }

    #[test]
    fn when_some_fit_those_over_are_named_then_counted_with_the_rate_they_need() {
        let mut over = OverRate::new(200);
        assert!(!over.over(&request("fits", 10), "q.jsonl", 1));
        for i in 0..8u64 {
            assert!(over.over(&request(&format!("big{i}"), 100 + i), "q.jsonl", i + 2));
        }
        let problems = messages(&over.problems("q.jsonl"));
        assert_eq!(problems.len(), NAMED + 1, "{problems:#?}");
        assert!(problems[0].starts_with("q.jsonl:2: request \"big0\" may use up to 208 tokens (prompt at most 108 + token cap 100)"), "{}", problems[0]);
        assert!(problems[0].contains("(--tpm) 200"), "{}", problems[0]);
        let last = &problems[NAMED];
        assert!(
            last.contains("3 more requests") && last.contains("8 of 9 requests"),
            "{last}"
        );
        assert!(last.contains("at least 215"), "{last}");
    }

    #[test]
    fn when_none_fits_the_rate_is_the_one_problem() {
        let mut over = OverRate::new(50);
        for i in 0..30u64 {
            assert!(over.over(&request(&format!("r{i}"), i), "q.jsonl", i + 1));
        }
        let problems = messages(&over.problems("q.jsonl"));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].contains("every one of the 30 requests")
                && problems[0].contains("108 to 137 tokens")
                && problems[0].contains("at least 137"),
            "{}",
            problems[0]
        );
        // A single request to send that is over is named as itself.
        let mut one = OverRate::new(50);
        assert!(one.over(&request("only", 0), "q.jsonl", 3));
        let problems = messages(&one.problems("q.jsonl"));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("request \"only\" may use up to 108 tokens"),
            "{}",
            problems[0]
        );
    }

    /// Regression: a request with no max_tokens was said to have "token cap
    /// 0", with the advice to lower the max_tokens it does not have.
    #[test]
    fn a_request_without_a_cap_is_over_by_its_prompt_alone() {
        let mut over = OverRate::new(50);
        let uncapped = Request {
            max_output_tokens: None,
            ..request("long", 60)
        };
        assert!(over.over(&uncapped, "q.jsonl", 1));
        let problems = messages(&over.problems("q.jsonl"));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0]
                .contains("may use up to 68 tokens with its prompt alone (it has no token cap)")
                && problems[0].ends_with("raise the rate or shorten the prompt"),
            "{}",
            problems[0]
        );
        assert!(!problems[0].contains("max_tokens"), "{}", problems[0]);
    }
}
