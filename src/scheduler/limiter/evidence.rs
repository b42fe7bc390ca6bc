//! Whether 429s show a limit: the answers the limiter weighs, and its rule.
//!
//! A window limit and stray 429s look alike one answer at a time; they differ
//! in how the 429s come. Past a window's budget *every* answer is a 429 until
//! the window opens: they come in a row, as many as the requests in flight.
//! Stray 429s (an overloaded upstream) come among successes, and a long run of
//! them is as unlikely as the share of 429s makes it. So a limit shows when:
//!
//! - a crowd: at least 24 of the last 32 answers are 429s (a big burst sent
//!   into a spent window, whatever came between); or
//! - a run: 429s in a row, with no success between them, at least as many as
//!   stray 429s at the share the run saw before (its last 128 answers that no
//!   limit explained) would make less than once in 10^9 runs — 6 or 7 when
//!   none bounced before, 8 at 5 % stray 429s, 20 at a third, never more than
//!   24. A short run (8 or 16 requests at once against a limit of 20 a
//!   second) thus shows its limit in its first window, while stray 429s, even
//!   a third of the answers, show one no more often than the crowd rule
//!   lets them (about once in a million answers at a third).
//!
//! The 429s that showed a limit are explained: they leave the history, so the
//! next window's run is weighed against the stray 429s alone.

/// Crowd: this many of the last 32 answers.
pub(super) const LIMIT_EVIDENCE: u32 = 24;
/// Run: never fewer in a row than this...
const RUN_MIN: u32 = 6;
/// ...nor more are asked for than the crowd's count.
const RUN_MAX: u32 = LIMIT_EVIDENCE;
/// How unlikely stray 429s must be to make the run: once in this many runs.
const RUN_ODDS: f64 = 1e-9;
/// Answers kept to estimate the share of stray 429s.
const HISTORY: u32 = 128;

/// What showed a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sign {
    /// This many of the last 32 answers were 429s.
    Crowd(u32),
    /// This many 429s in a row: more than stray ones make.
    Run(u32),
}

#[derive(Debug, Default)]
pub(super) struct Evidence {
    /// The last 32 answers, newest in the lowest bit: 1 for a 429.
    recent: u32,
    /// 429s in a row.
    run: u32,
    /// The last [`HISTORY`] answers no limit explained, newest lowest.
    history: u128,
    /// How many answers `history` holds.
    seen: u32,
}

impl Evidence {
    pub fn success(&mut self) {
        self.push(false);
        self.run = 0;
    }

    pub fn rate_limited(&mut self) {
        self.push(true);
        self.run = self.run.saturating_add(1);
    }

    fn push(&mut self, limited: bool) {
        self.recent = (self.recent << 1) | u32::from(limited);
        self.history = (self.history << 1) | u128::from(limited);
        self.seen = (self.seen + 1).min(HISTORY);
    }

    /// 429s in a row.
    pub fn run(&self) -> u32 {
        self.run
    }

    /// The run that shows a limit, given the 429s seen before it.
    pub fn run_needed(&self) -> u32 {
        let in_run = self.run.min(self.seen);
        let before = self.seen - in_run;
        let limited_before = self.history.checked_shr(in_run).unwrap_or(0).count_ones();
        // A 429 and a success added to what was seen: few answers say little.
        let share = f64::from(limited_before + 1) / f64::from(before + 2);
        let needed = (RUN_ODDS.ln() / share.ln()).ceil();
        // share < 1 always; a NaN (never) would ask for the most.
        if needed.is_finite() {
            (needed as u32).clamp(RUN_MIN, RUN_MAX)
        } else {
            RUN_MAX
        }
    }

    /// Whether the answers so far show a limit.
    pub fn shows(&self) -> Option<Sign> {
        let crowd = self.recent.count_ones();
        if crowd >= LIMIT_EVIDENCE {
            Some(Sign::Crowd(crowd))
        } else if self.run >= self.run_needed() {
            Some(Sign::Run(self.run))
        } else {
            None
        }
    }

    /// A limit showed (or the pace was lowered for it): the 429s that showed
    /// it are explained and leave the history; the next window starts afresh.
    pub fn explained(&mut self) {
        let drop = if self.recent.count_ones() >= LIMIT_EVIDENCE {
            32
        } else {
            self.run
        }
        .min(self.seen);
        self.history = self.history.checked_shr(drop).unwrap_or(0);
        self.seen -= drop;
        self.recent = 0;
        self.run = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(e: &mut Evidence, ok: usize, limited: usize) {
        for _ in 0..ok {
            e.success();
        }
        for _ in 0..limited {
            e.rate_limited();
        }
    }

    #[test]
    fn a_run_after_successes_shows_a_limit() {
        // A limit of 20 a window, 8 requests at once: 20 pass, 8 bounce.
        let mut e = Evidence::default();
        answers(&mut e, 20, 6);
        assert_eq!(e.shows(), None);
        e.rate_limited();
        assert_eq!(e.shows(), Some(Sign::Run(7)));
        // After more successes, 6 is enough.
        let mut e = Evidence::default();
        answers(&mut e, 40, 6);
        assert_eq!(e.shows(), Some(Sign::Run(6)));
    }

    #[test]
    fn the_run_needed_grows_with_the_share_of_stray_429s() {
        // 5 % stray: 8 in a row.
        let mut e = Evidence::default();
        for _ in 0..6 {
            answers(&mut e, 19, 1);
        }
        answers(&mut e, 8, 0);
        assert_eq!(e.run_needed(), 8);
        // A third: 20.
        let mut e = Evidence::default();
        for _ in 0..43 {
            answers(&mut e, 2, 1);
        }
        assert!((19..=21).contains(&e.run_needed()), "{}", e.run_needed());
        // Nothing seen: the crowd's count.
        assert_eq!(Evidence::default().run_needed(), RUN_MAX);
    }

    #[test]
    fn explained_429s_leave_the_history() {
        let mut e = Evidence::default();
        answers(&mut e, 20, 16);
        assert!(e.shows().is_some());
        e.explained();
        // The next window's run weighs against the successes alone.
        answers(&mut e, 20, 6);
        assert_eq!(e.shows(), Some(Sign::Run(6)));
        // Unexplained, those 16 would have asked for 17 in a row.
        let mut e = Evidence::default();
        answers(&mut e, 20, 16);
        answers(&mut e, 20, 0);
        assert_eq!(e.run_needed(), 17);
    }

    #[test]
    fn a_crowd_shows_a_limit_whatever_came_between() {
        let mut e = Evidence::default();
        for _ in 0..8 {
            answers(&mut e, 1, 3);
        }
        assert_eq!(e.shows(), Some(Sign::Crowd(24)));
        e.explained();
        assert_eq!(e.shows(), None);
    }
}
