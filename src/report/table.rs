//! The summary as a readable table: a pure function from a [`Summary`] to text.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::summary::{Spread, Summary};
use crate::scheduler::StopReason;

pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let r = &s.requests;
    let _ = writeln!(out, "promptbatch · {} · {:.1} s", s.job, s.wall_s);
    if s.requests.resumed > 0 {
        let _ = writeln!(
            out,
            "  (the job as its output stands: resumed lines included)"
        );
    }
    let _ = writeln!(
        out,
        "  requests     {} total: {} ok, {} failed, {} resumed, {} not sent",
        r.total, r.ok, r.failed, r.resumed, r.not_sent
    );
    let _ = writeln!(
        out,
        "  attempts     {} ({} retries, {} uncertain: may be billed)",
        s.attempts, s.retries, s.uncertain_attempts
    );
    if let Some(stopped) = s.stopped {
        let _ = writeln!(out, "  stopped      {}", stop_reason(stopped));
        if let Some(why) = &s.stopped_because {
            let _ = writeln!(out, "    last error {why}");
        }
    }
    if !s.finish_reasons.is_empty() {
        let _ = writeln!(out, "  finish       {}", counts(&s.finish_reasons));
    }
    if !s.errors.is_empty() {
        let _ = writeln!(out, "  errors       {}", counts(&s.errors));
    }
    let t = &s.tokens;
    let _ = write!(
        out,
        "  tokens       {} prompt + {} completion = {}",
        t.prompt, t.completion, t.total
    );
    if t.unreported > 0 {
        let _ = write!(
            out,
            " ({} {} no usage)",
            t.unreported,
            if t.unreported == 1 {
                "request reported"
            } else {
                "requests reported"
            }
        );
    }
    out.push('\n');
    let c = &s.cost_usd;
    let _ = write!(out, "  cost         {}", usd(c.total));
    if c.unpriced_requests > 0 {
        let _ = write!(
            out,
            " + {} unpriced request(s) (add [pricing] to count them)",
            c.unpriced_requests
        );
    }
    out.push('\n');
    if c.by_model.len() > 1 || c.by_param_set.len() > 1 {
        let _ = writeln!(out, "    by model   {}", amounts(&c.by_model));
        let _ = writeln!(out, "    by set     {}", amounts(&c.by_param_set));
    }
    if let Some(l) = &s.latency_ms {
        let _ = writeln!(out, "  latency ms   {}", spread(l));
    }
    if let Some(l) = &s.ttft_ms {
        let _ = writeln!(out, "  ttft ms      {}", spread(l));
    }
    let run = &s.this_run;
    if run.sent != r.ok + r.failed || r.resumed > 0 {
        // A resumed run: the job's totals above, this run's own part here.
        let _ = writeln!(
            out,
            "  this run     {} sent ({} attempts, {} retries, {} uncertain), {} tokens, {}",
            run.sent,
            run.attempts,
            run.retries,
            run.uncertain_attempts,
            run.tokens.total,
            usd(run.cost_usd)
        );
    }
    let _ = writeln!(
        out,
        "  throughput   {:.1} requests/s, {:.1} completion tokens/s",
        s.throughput.requests_per_s, s.throughput.completion_tokens_per_s
    );
    out
}

/// Why a run stopped early, and what to do about it.
pub fn stop_reason(stopped: StopReason) -> &'static str {
    match stopped {
        StopReason::Budget => "budget reached (max_cost_usd); rerun with a higher budget to resume",
        StopReason::EndpointRefused => {
            "the endpoint refuses every further request (key, credits, quota, or the same error on request after request); fix the account or the job and rerun to resume"
        }
        StopReason::EndpointUnreachable => {
            "the endpoint cannot be reached (connection refused, DNS or TLS failure); check the URL and the network, then rerun to resume"
        }
        StopReason::OutputFailed => {
            "the output could not be written (disk full?); fix the cause and rerun to resume"
        }
        StopReason::Interrupted => "interrupted; rerun to resume",
    }
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    let mut items: Vec<_> = map.iter().collect();
    items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    items
        .iter()
        // A server's word (a finish reason): made printable, or an escape in it
        // would act on the terminal.
        .map(|(k, v)| format!("{} {v}", crate::client::printable(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn amounts(map: &BTreeMap<String, f64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {}", usd(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Dollars with enough digits that a run of tiny requests does not read as $0.00.
pub fn usd(x: f64) -> String {
    if x == 0.0 {
        "$0".into()
    } else if x >= 1e12 {
        // A figure no run spends (a server's claim): 3 digits, not 300.
        format!("${x:.3e}")
    } else if x >= 1.0 {
        format!("${x:.2}")
    } else {
        format!("${x:.6}")
    }
}

fn spread(s: &Spread) -> String {
    format!(
        "min {} · mean {} · p50 {} · p90 {} · p95 {} · p99 {} · max {}",
        s.min, s.mean, s.p50, s.p90, s.p95, s.p99, s.max
    )
}

#[cfg(test)]
mod tests {
    use super::usd;

    #[test]
    fn dollars_read_at_every_scale() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(0.0000123), "$0.000012");
        assert_eq!(usd(12.5), "$12.50");
        // A server's claim of 1e308 is three digits and an exponent, not 300 digits.
        assert_eq!(usd(f64::MAX), "$1.798e308");
    }
}
