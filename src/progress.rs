//! The progress display: consumes events, never called by the core.
//!
//! On a terminal an indicatif bar; otherwise (cron, CI, a pipe), or with
//! `--log-format json`, one timestamped log line every few seconds, so logs
//! stay readable. Lines go through `crate::printer`, which lifts the bar
//! while another message is printed. Redraws are throttled: at
//! tens of thousands of requests per second, formatting every event would
//! cost more than the requests.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use serde_json::json;

use crate::cli::ProgressArg;
use crate::client::is_amount;
use crate::printer::{self, LogFormat};
use crate::report::table;
use crate::sink::{Record, Status};

const LOG_EVERY: Duration = Duration::from_secs(5);
const MESSAGE_EVERY: Duration = Duration::from_millis(200);

enum Display {
    Bar(ProgressBar),
    Log { last: Instant },
    Off,
}

pub struct Progress {
    display: Display,
    total: u64,
    done: u64,
    ok: u64,
    failed: u64,
    retries: u64,
    tokens: u64,
    cost: f64,
    /// Requests with a cost, and successes without one: shown as a count, never as $0.
    priced: u64,
    unpriced: u64,
    start: Instant,
    last_message: Instant,
}

fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    // --color never (or NO_COLOR) on a terminal: a bar without colour.
    let template = if printer::color() {
        "{bar:30.cyan/blue} {pos}/{len} eta {eta} {msg}"
    } else {
        "{bar:30} {pos}/{len} eta {eta} {msg}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("the template is valid")
            .progress_chars("█▉▊▋▌▍▎▏ "),
    );
    printer::bar_drawing(&bar);
    bar
}

/// Whether a bar would show: indicatif draws nothing on a `TERM=dumb`
/// terminal (Emacs' shell, some CI consoles), where `auto` showed no
/// progress at all; log lines work there.
fn bar_can_draw(terminal: bool, term: Option<&str>) -> bool {
    terminal && term != Some("dumb")
}

impl Progress {
    /// `total`: the requests this run will send (resumed ones excluded).
    pub fn new(mode: ProgressArg, quiet: bool, total: u64) -> Progress {
        let terminal = bar_can_draw(
            std::io::stderr().is_terminal(),
            std::env::var("TERM").ok().as_deref(),
        );
        // A bar is not a line: JSON logs get progress events instead.
        let lines = printer::format() == LogFormat::Json;
        let display = match mode {
            _ if quiet => Display::Off,
            ProgressArg::Off => Display::Off,
            ProgressArg::Bar if !lines => Display::Bar(bar(total)),
            ProgressArg::Auto if terminal && !lines => Display::Bar(bar(total)),
            ProgressArg::Auto | ProgressArg::Bar | ProgressArg::Log => Display::Log {
                last: Instant::now(),
            },
        };
        let now = Instant::now();
        Progress {
            display,
            total,
            done: 0,
            ok: 0,
            failed: 0,
            retries: 0,
            tokens: 0,
            cost: 0.0,
            priced: 0,
            unpriced: 0,
            start: now,
            last_message: now,
        }
    }

    pub fn on_retry(&mut self) {
        self.retries += 1;
    }

    pub fn on_record(&mut self, r: &Record) {
        self.done += 1;
        match r.status {
            Status::Ok => self.ok += 1,
            Status::Error => self.failed += 1,
        }
        if let Some(u) = &r.usage {
            self.tokens += u.total_tokens;
        }
        match r.cost_usd.filter(|c| is_amount(*c)) {
            Some(cost) => {
                self.cost += cost;
                self.priced += 1;
            }
            None if r.status == Status::Ok => self.unpriced += 1,
            None => {}
        }
        let now = Instant::now();
        match &self.display {
            Display::Bar(bar) => {
                bar.inc(1);
                if now.duration_since(self.last_message) >= MESSAGE_EVERY {
                    self.last_message = now;
                    bar.set_message(self.counts());
                }
            }
            Display::Log { last } => {
                if now.duration_since(*last) >= LOG_EVERY {
                    self.log();
                    self.display = Display::Log { last: now };
                }
            }
            Display::Off => {}
        }
    }

    pub fn finish(&mut self) {
        if let Display::Bar(bar) = &self.display {
            bar.set_message(self.counts());
            bar.finish_and_clear();
            printer::bar_done();
        }
    }

    fn rate(&self) -> f64 {
        let elapsed = self.start.elapsed().as_secs_f64();
        if elapsed > 0.0 {
            self.done as f64 / elapsed
        } else {
            0.0
        }
    }

    fn counts(&self) -> String {
        format!(
            "{:.1} req/s · ok {} · failed {} · retries {} · {} · {}",
            self.rate(),
            self.ok,
            self.failed,
            self.retries,
            printer::count(self.tokens, "token"),
            table::cost(self.cost, self.unpriced, self.priced == 0)
        )
    }

    fn log(&self) {
        let rate = self.rate();
        let pct = if self.total > 0 {
            self.done as f64 * 100.0 / self.total as f64
        } else {
            100.0
        };
        let eta = if rate > 0.0 {
            format!("{:.0}s", self.total.saturating_sub(self.done) as f64 / rate)
        } else {
            "?".into()
        };
        let eta_s = (rate > 0.0).then(|| self.total.saturating_sub(self.done) as f64 / rate);
        let fields = json!({
            "done": self.done,
            "total": self.total,
            "ok": self.ok,
            "failed": self.failed,
            "retries": self.retries,
            "tokens": self.tokens,
            // Null, not 0, while nothing is priced (as in a report).
            "cost_usd": (self.priced > 0 || self.unpriced == 0).then_some(self.cost),
            "unpriced_requests": self.unpriced,
            "requests_per_s": rate,
            "eta_s": eta_s,
        });
        let serde_json::Value::Object(fields) = fields else {
            return;
        };
        printer::progress(
            format_args!(
                "{}/{} ({pct:.0}%) · eta {eta} · {}",
                self.done,
                self.total,
                self.counts()
            ),
            fields,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: on a TERM=dumb terminal `--progress auto` chose a bar
    /// that indicatif never draws, so a run showed no progress at all.
    #[test]
    fn a_dumb_terminal_gets_log_lines_not_a_bar() {
        assert!(bar_can_draw(true, Some("xterm-256color")));
        assert!(bar_can_draw(true, None));
        assert!(!bar_can_draw(true, Some("dumb")));
        assert!(!bar_can_draw(false, Some("xterm")));
    }

    fn record(status: &str, cost: &str) -> Record {
        let line = format!(
            r#"{{"key":"a","job":"t","id":"a","param_set":"default","status":"{status}","model":"m","content":null,"finish_reason":"stop","usage":null,"cost_usd":{cost},"cost_source":null,"latency_ms":1.0,"ttft_ms":null,"attempts":1,"uncertain_attempts":0,"client_request_id":"t:a:default:1","request_sha256":"","error":null,"response_id":null,"provider":null,"started_at":null,"finished_at":null,"params":{{}},"input":{{}}}}"#
        );
        serde_json::from_str(&line).expect("a record")
    }

    #[test]
    fn the_bar_and_log_lines_count_unpriced_requests_instead_of_showing_zero_dollars() {
        let mut progress = Progress::new(ProgressArg::Off, false, 3);
        progress.on_record(&record("ok", "null"));
        progress.on_record(&record("error", "null"));
        let text = progress.counts();
        assert!(text.ends_with("· unpriced (1 request)"), "{text}");
        assert!(!text.contains("$0"), "{text}");
        progress.on_record(&record("ok", "0.5"));
        let text = progress.counts();
        assert!(text.ends_with("· $0.500000 + 1 unpriced"), "{text}");
    }
}
