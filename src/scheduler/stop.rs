//! Stop signals: stop dispatching (budget, refusals, an unreachable
//! endpoint, a failed output, interrupt) and, after a grace period, abandon
//! the requests still in flight; and the streaks of outcomes that say no
//! further request can succeed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::retry::Verdict;
use super::StopReason;
use crate::client::{ErrorKind, Failure};

/// Refusals in a row (bad key, out of credits) after which no request is dispatched.
pub const REFUSALS_TO_STOP: u32 = 3;
/// Attempts in a row that could not reach the endpoint (connection refused,
/// DNS, TLS) after which no request is dispatched or retried.
pub const UNREACHABLE_TO_STOP: u32 = 20;
/// Requests in a row ending in the same error (status and message) after
/// which no request is dispatched: a model the endpoint does not serve, say.
pub const IDENTICAL_TO_STOP: u32 = 50;
/// The longest wait before retrying an attempt that could not reach the
/// endpoint. The stop rule counts such attempts, so the usual exponential
/// backoff (up to a minute) would only delay it: 20 attempts of one request
/// at a time would take minutes before a mistyped host is reported.
pub const UNREACHABLE_MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How much of a server's message the stop reason quotes.
const QUOTED_CHARS: usize = 200;

#[derive(Debug)]
pub struct StopSignal {
    reason: Mutex<Option<(StopReason, Option<String>)>>,
    dispatching: CancellationToken,
    retries: CancellationToken,
    in_flight: CancellationToken,
    grace: Duration,
    /// A second interrupt came before the grace period ended.
    cut_short: AtomicBool,
}

impl StopSignal {
    /// `grace`: how long requests in flight may still finish after an interrupt.
    pub fn new(grace: Duration) -> StopSignal {
        StopSignal {
            reason: Mutex::new(None),
            dispatching: CancellationToken::new(),
            retries: CancellationToken::new(),
            in_flight: CancellationToken::new(),
            grace,
            cut_short: AtomicBool::new(false),
        }
    }

    /// Cancelled when no new request may be dispatched (any stop).
    pub fn dispatching(&self) -> CancellationToken {
        self.dispatching.clone()
    }

    /// Cancelled when requests in flight may not be retried either (an
    /// interrupt); after a budget or refusal stop they still finish.
    pub fn retries(&self) -> CancellationToken {
        self.retries.clone()
    }

    /// Cancelled when requests in flight are abandoned.
    pub fn in_flight(&self) -> CancellationToken {
        self.in_flight.clone()
    }

    /// Stops dispatching. When several reasons apply, the most urgent is kept
    /// (the exit code's order: interrupted, output failed, endpoint, budget).
    pub fn stop(&self, reason: StopReason) {
        self.stop_because(reason, None);
    }

    /// Stops dispatching for `reason`, quoting `detail` (the server's message,
    /// already redacted by the client) when that reason is the one kept.
    pub fn stop_because(&self, reason: StopReason, detail: Option<String>) {
        let mut current = self.reason.lock().expect("stop lock is never poisoned");
        if current
            .as_ref()
            .is_none_or(|(c, _)| reason.rank() > c.rank())
        {
            *current = Some((reason, detail.map(|d| shorten(&d))));
        }
        self.dispatching.cancel();
        if reason == StopReason::EndpointUnreachable {
            // Retrying a request the endpoint cannot even receive only
            // grinds: requests in flight keep their last error.
            self.retries.cancel();
        }
    }

    /// Stops dispatching for `reason`, quoting `detail` whole (already
    /// shortened part by part: one message per endpoint).
    pub fn stop_quoting(&self, reason: StopReason, detail: String) {
        let mut current = self.reason.lock().expect("stop lock is never poisoned");
        if current
            .as_ref()
            .is_none_or(|(c, _)| reason.rank() > c.rank())
        {
            *current = Some((reason, Some(detail)));
        }
        drop(current);
        self.dispatching.cancel();
    }

    /// Ctrl-C or SIGTERM: the first stops dispatching and starts the grace
    /// period; a second abandons the requests in flight at once.
    /// Returns true for the second interrupt.
    pub fn interrupt(self: &std::sync::Arc<Self>) -> bool {
        if self.dispatching.is_cancelled() && self.reason() == Some(StopReason::Interrupted) {
            if !self.in_flight.is_cancelled() {
                self.cut_short.store(true, Ordering::Relaxed);
            }
            self.in_flight.cancel();
            return true;
        }
        self.stop(StopReason::Interrupted);
        self.retries.cancel();
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.grace).await;
            this.in_flight.cancel();
        });
        false
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .expect("stop lock is never poisoned")
            .as_ref()
            .map(|(r, _)| *r)
    }

    /// The server's message (shortened) behind the stop reason, when it has one.
    pub fn detail(&self) -> Option<String> {
        self.reason
            .lock()
            .expect("stop lock is never poisoned")
            .as_ref()
            .and_then(|(_, d)| d.clone())
    }

    /// The failure recorded for a request abandoned at the end of the grace period.
    pub fn abandoned(&self) -> Failure {
        let message = if self.cut_short.load(Ordering::Relaxed) {
            "interrupted twice: abandoned without waiting for the answer; the provider may have billed it"
                .to_string()
        } else {
            format!(
                "interrupted: no answer within the {} s grace period; the provider may have billed it",
                self.grace.as_secs_f64()
            )
        };
        let mut f = Failure::new(ErrorKind::Timeout, None, message);
        f.uncertain = true;
        f
    }
}

impl StopReason {
    /// The exit code's order of precedence: 130 > 5 > 4 > 3.
    fn rank(self) -> u8 {
        match self {
            StopReason::Interrupted => 4,
            StopReason::OutputFailed => 3,
            StopReason::EndpointRefused | StopReason::EndpointUnreachable => 2,
            StopReason::Budget => 1,
        }
    }
}

/// `message` cut to a readable length, on a character boundary, on one
/// line, and with control characters shown escaped: it is printed on a
/// terminal, and a server's escape sequences must not drive it.
pub fn shorten(message: &str) -> String {
    let message = message.trim();
    let cut = match message.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_string(),
    };
    let mut shown = String::with_capacity(cut.len());
    for c in cut.chars() {
        match c {
            '\n' | '\r' | '\t' => shown.push(' '),
            c if c.is_control() => shown.extend(c.escape_unicode()),
            c => shown.push(c),
        }
    }
    shown
}

/// A failed attempt that never reached the endpoint: nothing was sent and
/// nothing answered (connection refused, DNS, TLS, a connect timeout).
pub(super) fn unreachable(f: &Failure) -> bool {
    f.status.is_none()
        && !f.uncertain
        && matches!(f.kind, ErrorKind::Connection | ErrorKind::Timeout)
}

/// What makes two errors "the same": status and message, without the request
/// id some servers append (the AI/ML API does), which differs every time, and
/// with every other id or timestamp in it (a long word with a digit:
/// `req_8f3a…`, a UUID, `2026-11-25T23:40:33Z`) made alike, so an error that
/// quotes one still repeats; short numbers (`4096`, `gpt-4o`) stay as they are.
fn signature(f: &Failure) -> (Option<u16>, String) {
    let message = f.message.trim();
    let message = match message.rfind(" (request id ") {
        Some(at) if message.ends_with(')') => &message[..at],
        _ => message,
    };
    let words: Vec<&str> = message
        .split_whitespace()
        .map(|word| {
            let bare = word.trim_matches(|c: char| !c.is_alphanumeric());
            if bare.chars().count() >= ID_CHARS && bare.chars().any(|c| c.is_ascii_digit()) {
                "#"
            } else {
                word
            }
        })
        .collect();
    (f.status, words.join(" "))
}

/// A word this long with a digit in it is an id or a timestamp, not wording.
const ID_CHARS: usize = 8;

/// The runs of outcomes that say no further request can succeed. One per
/// run, shared by every request (behind a lock: a few integer updates per attempt).
#[derive(Debug, Default)]
pub struct Streaks {
    refusals: u32,
    unreachable: u32,
    identical: u32,
    last_error: Option<(Option<u16>, String)>,
}

impl Streaks {
    /// After each attempt; `failure` None is an answer that succeeded.
    pub fn on_attempt(&mut self, failure: Option<(&Failure, Verdict)>) -> Option<StopReason> {
        let Some((failure, verdict)) = failure else {
            self.refusals = 0;
            self.unreachable = 0;
            return None;
        };
        if unreachable(failure) {
            self.unreachable += 1;
            if self.unreachable >= UNREACHABLE_TO_STOP {
                return Some(StopReason::EndpointUnreachable);
            }
        } else {
            // Anything that reached the endpoint breaks the run.
            self.unreachable = 0;
        }
        if verdict == Verdict::Refused {
            self.refusals += 1;
            if self.refusals >= REFUSALS_TO_STOP {
                return Some(StopReason::EndpointRefused);
            }
        } else {
            // "In a row": an attempt answered otherwise (a 500 about to be
            // retried) breaks the run as much as a request that ends otherwise.
            self.refusals = 0;
        }
        None
    }

    /// After each request ends; the same error on request after request stops the run.
    pub fn on_end(&mut self, failure: Option<(&Failure, Verdict)>) -> Option<StopReason> {
        let Some((failure, verdict)) = failure else {
            self.identical = 0;
            self.last_error = None;
            return None;
        };
        if verdict != Verdict::Refused {
            // "In a row": any other ending breaks a run of refusals.
            self.refusals = 0;
        }
        let sig = signature(failure);
        if self.last_error.as_ref() == Some(&sig) {
            self.identical += 1;
        } else {
            self.identical = 1;
            self.last_error = Some(sig);
        }
        (self.identical >= IDENTICAL_TO_STOP).then_some(StopReason::EndpointRefused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn http(status: u16, message: &str) -> Failure {
        Failure::new(ErrorKind::InvalidRequest, Some(status), message)
    }

    fn refused_connect() -> Failure {
        Failure::new(
            ErrorKind::Connection,
            None,
            "could not connect to 127.0.0.1:9: refused",
        )
    }

    #[test]
    fn twenty_unreachable_attempts_in_a_row_stop_and_an_answer_breaks_the_row() {
        let mut s = Streaks::default();
        let f = refused_connect();
        for _ in 0..19 {
            assert_eq!(s.on_attempt(Some((&f, Verdict::Retry))), None);
        }
        // An answer, even an error, shows the endpoint is there.
        let answered = http(500, "boom");
        assert_eq!(s.on_attempt(Some((&answered, Verdict::Retry))), None);
        for _ in 0..19 {
            assert_eq!(s.on_attempt(Some((&f, Verdict::Retry))), None);
        }
        assert_eq!(
            s.on_attempt(Some((&f, Verdict::Retry))),
            Some(StopReason::EndpointUnreachable)
        );
        // A reset after sending reached the endpoint: not unreachable.
        let mut reset = refused_connect();
        reset.uncertain = true;
        let mut s = Streaks::default();
        for _ in 0..30 {
            assert_eq!(s.on_attempt(Some((&reset, Verdict::Retry))), None);
        }
    }

    #[test]
    fn fifty_identical_errors_in_a_row_stop_and_request_ids_do_not_tell_them_apart() {
        let mut s = Streaks::default();
        for i in 0..49 {
            let f = http(400, &format!("Invalid model (request id r-{i})"));
            assert_eq!(s.on_end(Some((&f, Verdict::Final))), None);
        }
        // Another message starts a new row; so does a success.
        assert_eq!(s.on_end(Some((&http(400, "other"), Verdict::Final))), None);
        assert_eq!(s.on_end(None), None);
        for _ in 0..49 {
            assert_eq!(
                s.on_end(Some((&http(403, "flagged"), Verdict::Final))),
                None
            );
        }
        assert_eq!(
            s.on_end(Some((&http(403, "flagged"), Verdict::Final))),
            Some(StopReason::EndpointRefused)
        );
        // Ids and timestamps a server puts in its message do not tell them apart either.
        let mut s = Streaks::default();
        let mut stopped = None;
        for i in 0..50 {
            let f = http(
                500,
                &format!(
                    "Sorry! (Please include the request ID req_{:032x} in your message.) at 2026-11-25T23:{:02}:{:02}.{i:06}Z",
                    i * 7919,
                    i % 60,
                    i % 60
                ),
            );
            stopped = s.on_end(Some((&f, Verdict::Final)));
        }
        assert_eq!(stopped, Some(StopReason::EndpointRefused));
        let mut s = Streaks::default();
        for i in 0..50 {
            let f = http(
                400,
                &format!("Bad model. Request ID: 9b1de{i:03}-8e2c-4b4e-a1d3-0c2f5a6e7b8c"),
            );
            stopped = s.on_end(Some((&f, Verdict::Final)));
        }
        assert_eq!(stopped, Some(StopReason::EndpointRefused));
        // Short numbers are wording: another context size is another error.
        let mut s = Streaks::default();
        for i in 0..60 {
            let f = http(
                400,
                &format!("prompt too long for a context of {}", 1000 + i),
            );
            assert_eq!(s.on_end(Some((&f, Verdict::Final))), None);
        }
        // Same message, another status: not the same error.
        let mut s = Streaks::default();
        for i in 0..60 {
            let status = if i % 2 == 0 { 500 } else { 502 };
            assert_eq!(s.on_end(Some((&http(status, "x"), Verdict::Final))), None);
        }
    }

    #[test]
    fn three_refusals_in_a_row_stop_and_another_ending_breaks_the_row() {
        let mut s = Streaks::default();
        let refusal = http(401, "bad key");
        assert_eq!(s.on_attempt(Some((&refusal, Verdict::Refused))), None);
        assert_eq!(s.on_end(Some((&refusal, Verdict::Refused))), None);
        assert_eq!(s.on_attempt(Some((&refusal, Verdict::Refused))), None);
        let other = http(400, "bad request");
        assert_eq!(s.on_end(Some((&other, Verdict::Final))), None);
        assert_eq!(s.on_attempt(Some((&refusal, Verdict::Refused))), None);
        assert_eq!(s.on_attempt(Some((&refusal, Verdict::Refused))), None);
        // A 500 between them, to be retried, breaks the row too.
        let server = http(500, "boom");
        assert_eq!(s.on_attempt(Some((&server, Verdict::Retry))), None);
        assert_eq!(s.on_attempt(Some((&refusal, Verdict::Refused))), None);
        assert_eq!(s.on_attempt(Some((&refusal, Verdict::Refused))), None);
        assert_eq!(
            s.on_attempt(Some((&refusal, Verdict::Refused))),
            Some(StopReason::EndpointRefused)
        );
    }

    #[test]
    fn quotes_are_shortened_on_a_character_boundary() {
        let long = "é".repeat(500);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), QUOTED_CHARS + 1);
        assert!(short.ends_with('…'));
        assert_eq!(shorten(" ok "), "ok");
        // A server's escape sequences reach no terminal.
        let quoted = shorten("bad\n\u{1b}[31mred\u{1b}]0;title\u{7}");
        assert!(!quoted.chars().any(char::is_control), "{quoted:?}");
        assert_eq!(quoted, "bad \\u{1b}[31mred\\u{1b}]0;title\\u{7}");
    }

    #[test]
    fn output_failure_outranks_the_endpoint_and_an_interrupt_outranks_both() {
        let s = StopSignal::new(Duration::from_secs(1));
        s.stop_because(StopReason::EndpointRefused, Some("nope".into()));
        s.stop(StopReason::OutputFailed);
        assert_eq!(s.reason(), Some(StopReason::OutputFailed));
        assert_eq!(s.detail(), None);
        s.stop(StopReason::Budget);
        assert_eq!(s.reason(), Some(StopReason::OutputFailed));
        let s = StopSignal::new(Duration::from_secs(1));
        s.stop_because(StopReason::EndpointUnreachable, Some("refused".into()));
        assert!(
            s.retries().is_cancelled(),
            "an unreachable endpoint is not retried"
        );
        assert_eq!(s.detail().as_deref(), Some("refused"));
    }

    #[test]
    fn the_most_urgent_reason_wins() {
        let s = StopSignal::new(Duration::from_secs(1));
        s.stop(StopReason::Budget);
        s.stop(StopReason::EndpointRefused);
        s.stop(StopReason::Budget);
        assert_eq!(s.reason(), Some(StopReason::EndpointRefused));
        assert!(s.dispatching().is_cancelled());
        assert!(!s.in_flight().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn interrupt_abandons_in_flight_after_the_grace_period_or_a_second_signal() {
        let s = Arc::new(StopSignal::new(Duration::from_secs(5)));
        s.interrupt();
        assert_eq!(s.reason(), Some(StopReason::Interrupted));
        assert!(!s.in_flight().is_cancelled());
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(s.in_flight().is_cancelled());

        assert!(s.abandoned().message.contains("grace period"));

        let s = Arc::new(StopSignal::new(Duration::from_secs(5)));
        assert!(!s.interrupt());
        assert!(s.interrupt());
        assert!(s.in_flight().is_cancelled());
        assert!(s.abandoned().message.contains("interrupted twice"));
    }
}
