//! Pure scheduling: when to refresh next (interval ± jitter, clamped to the token's expiry),
//! how long to back off after an error, and the per-minute retry cap. No clock, no sleep:
//! callers pass `now` and the random draws, so every rule is unit-tested.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::github::RetryKind;

/// How often to refresh and how much to keep in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub interval: Duration,
    /// Uniform ± around the interval, so that many refreshers don't mint in step.
    pub jitter: Duration,
    /// Never plan a refresh later than `expires_at − min_remaining`.
    pub min_remaining: Duration,
}

/// First retry delay after a transient error; doubles per attempt.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Backoff never waits longer than this for a transient error.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// How often to try again after an error that retrying won't fix soon (401, 404, 422, 403):
/// the App may be reinstalled or the key fixed.
pub const PERMANENT_RETRY: Duration = Duration::from_secs(300);
/// At most this many attempts per target in any 60 s window.
pub const MAX_ATTEMPTS_PER_MINUTE: usize = 10;

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// When to mint the next token after one that expires at `expires_at` was written at `now`.
/// `draw` is uniform in [-1, 1]: the jitter's share. The result is
/// `now + interval ± jitter`, but no later than `expires_at − min_remaining`, and (for
/// short-lived tokens, as on a test server) no earlier than half the remaining lifetime,
/// so a lifetime shorter than `min_remaining` cannot turn into a tight loop.
pub fn next_refresh(
    policy: &Policy,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    draw: f64,
) -> DateTime<Utc> {
    let draw = draw.clamp(-1.0, 1.0);
    let jitter_ms = (policy.jitter.as_millis() as f64 * draw) as i64;
    let planned = now + chrono(policy.interval) + chrono::Duration::milliseconds(jitter_ms);
    let latest = expires_at - chrono(policy.min_remaining);
    let remaining = expires_at - now;
    let floor = now + (remaining / 2).max(chrono::Duration::seconds(1));
    planned.min(latest).max(floor.min(planned))
}

/// Exponential backoff with "equal jitter": attempt 1 waits 1–2 s, attempt 2 2–4 s, … up to
/// [`BACKOFF_CAP`]. `draw` is uniform in [0, 1].
pub fn backoff(attempt: u32, draw: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let full = BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP);
    full.mul_f64(0.5 + 0.5 * draw.clamp(0.0, 1.0))
}

pub fn retry_delay(kind: RetryKind, attempt: u32, draw: f64) -> Duration {
    match kind {
        RetryKind::Transient => backoff(attempt, draw),
        // as told, plus up to 10% (at least 1 s) so that many clients don't return at once
        RetryKind::RateLimited(wait) => {
            let spread = (wait / 10).max(Duration::from_secs(1));
            wait + spread.mul_f64(draw.clamp(0.0, 1.0))
        }
        RetryKind::Permanent => {
            PERMANENT_RETRY + Duration::from_secs(30).mul_f64(draw.clamp(0.0, 1.0))
        }
    }
}

/// Caps attempts per minute: a sliding window of recent attempt times.
#[derive(Debug, Default, Clone)]
pub struct RetryBudget {
    recent: VecDeque<DateTime<Utc>>,
}

impl RetryBudget {
    pub fn record(&mut self, at: DateTime<Utc>) {
        self.recent.push_back(at);
        while self.recent.len() > MAX_ATTEMPTS_PER_MINUTE {
            self.recent.pop_front();
        }
    }

    /// The earliest moment at or after `wanted` that keeps within the cap.
    pub fn earliest(&self, wanted: DateTime<Utc>) -> DateTime<Utc> {
        if self.recent.len() < MAX_ATTEMPTS_PER_MINUTE {
            return wanted;
        }
        let oldest = self.recent[self.recent.len() - MAX_ATTEMPTS_PER_MINUTE];
        wanted.max(oldest + chrono::Duration::seconds(60))
    }

    pub fn clear(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::t0;

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    fn default_policy() -> Policy {
        Policy {
            interval: Duration::from_secs(45 * 60),
            jitter: Duration::from_secs(120),
            min_remaining: Duration::from_secs(600),
        }
    }

    #[test]
    fn one_hour_token_refreshes_at_45m_plus_minus_2m() {
        let p = default_policy();
        let exp = t0() + secs(3600);
        assert_eq!(next_refresh(&p, t0(), exp, 0.0), t0() + secs(45 * 60));
        assert_eq!(next_refresh(&p, t0(), exp, -1.0), t0() + secs(43 * 60));
        assert_eq!(next_refresh(&p, t0(), exp, 1.0), t0() + secs(47 * 60));
    }

    #[test]
    fn clamped_to_expiry_minus_min_remaining() {
        let p = default_policy();
        // a token that came back with only 40 minutes left (e.g. a reused one)
        let exp = t0() + secs(40 * 60);
        assert_eq!(next_refresh(&p, t0(), exp, 1.0), t0() + secs(30 * 60));
    }

    #[test]
    fn short_lived_tokens_do_not_spin() {
        let p = default_policy();
        let exp = t0() + secs(10);
        assert_eq!(next_refresh(&p, t0(), exp, 0.0), t0() + secs(5));
        // already expired: at least a second from now
        assert_eq!(next_refresh(&p, t0(), t0() - secs(5), 0.0), t0() + secs(1));
    }

    #[test]
    fn short_intervals_win_over_the_floor() {
        let p = Policy {
            interval: Duration::from_secs(2),
            jitter: Duration::ZERO,
            min_remaining: Duration::from_secs(1),
        };
        assert_eq!(
            next_refresh(&p, t0(), t0() + secs(3600), 0.7),
            t0() + secs(2)
        );
    }

    #[test]
    fn jitter_spreads_uniformly() {
        let p = default_policy();
        let exp = t0() + secs(3600);
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        for i in 0..=100 {
            let draw = -1.0 + i as f64 / 50.0;
            let at = (next_refresh(&p, t0(), exp, draw) - t0()).num_seconds();
            lo = lo.min(at);
            hi = hi.max(at);
        }
        assert_eq!((lo, hi), (43 * 60, 47 * 60));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(1, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(30, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX, 0.0), BACKOFF_CAP / 2);
        for a in 1..12 {
            assert!(backoff(a, 1.0) <= backoff(a + 1, 1.0));
        }
    }

    #[test]
    fn rate_limits_wait_at_least_as_told() {
        let w = Duration::from_secs(60);
        assert_eq!(retry_delay(RetryKind::RateLimited(w), 1, 0.0), w);
        assert_eq!(
            retry_delay(RetryKind::RateLimited(w), 1, 1.0),
            Duration::from_secs(66)
        );
        assert!(retry_delay(RetryKind::Permanent, 1, 0.0) >= PERMANENT_RETRY);
    }

    #[test]
    fn budget_caps_attempts_per_minute() {
        let mut b = RetryBudget::default();
        for i in 0..MAX_ATTEMPTS_PER_MINUTE as i64 {
            assert_eq!(b.earliest(t0() + secs(i)), t0() + secs(i));
            b.record(t0() + secs(i));
        }
        // the 11th attempt waits until the first leaves the window
        assert_eq!(b.earliest(t0() + secs(10)), t0() + secs(60));
        assert_eq!(b.earliest(t0() + secs(90)), t0() + secs(90));
    }
}
