//! One target's state machine, as pure functions: what a finished attempt does to the
//! target's plan (next attempt, backoff, retry budget, error shown), with no clock, I/O or
//! logging of its own, so each rule is unit-tested. The loop (`super`) logs and notifies.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Current, Published, TargetState};
use crate::refresh::RefreshError;
use crate::schedule;

/// What a failed attempt decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Failed {
    /// The backoff drawn for this attempt (before the retry budget).
    pub delay: Duration,
    /// Retrying won't fix it soon.
    pub permanent: bool,
    /// The fix a person can make, when there is one.
    pub hint: Option<&'static str>,
}

impl TargetState {
    /// A token was minted and written: keep it, plan the next refresh (at once when a
    /// reload asked for a mint meanwhile), clear the error and the backoff. Returns the
    /// token it supersedes, when that is another token.
    pub(super) fn on_success(&mut self, p: Published, now: DateTime<Utc>) -> Option<Current> {
        self.in_flight = false;
        self.stats.successes += 1;
        self.stats.last_success_unix = Some(now.timestamp());
        self.stats.generation = p.generation;
        let previous = self.current.replace(p.current);
        let at = if std::mem::take(&mut self.mint_again) {
            now
        } else {
            p.refresh_at
        };
        self.plan(at, now);
        self.attempt = 0;
        self.budget.clear();
        self.last_error = None;
        self.expiry_reported = false;
        previous.filter(|prev| self.current.as_ref().is_some_and(|c| c.token != prev.token))
    }

    /// An attempt failed: count it, back off by the error's kind (`draw` in 0..1 places the
    /// backoff's jitter), within the per-minute retry budget, and remember the error for the
    /// STATUS line.
    pub(super) fn on_failure(&mut self, e: &RefreshError, now: DateTime<Utc>, draw: f64) -> Failed {
        self.in_flight = false;
        self.attempt += 1;
        self.stats.failures += 1;
        let permanent = e.is_permanent();
        let verdict = crate::error::of_refresh(e);
        let delay = schedule::retry_delay(verdict.retry, self.attempt, draw);
        self.budget.record(now);
        let at = self
            .budget
            .earliest(now + chrono::Duration::from_std(delay).unwrap_or_default());
        self.plan(at, now);
        self.last_error = Some((e.short(), permanent));
        Failed {
            delay,
            permanent,
            hint: verdict.hint,
        }
    }

    /// The target holds a token that is still valid by GitHub's clock (`offset` from ours).
    pub(super) fn has_valid_token(&self, now: DateTime<Utc>, offset: chrono::Duration) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.expires.timestamp() > (now + offset).timestamp())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::clock::t0;
    use crate::config::{AppRef, InstallationRef, Target};
    use crate::github::GithubError;
    use crate::secret::Secret;

    fn state() -> TargetState {
        let target = Target {
            name: "t".into(),
            app: AppRef {
                app_id: "1".into(),
                key_file: "/k.pem".into(),
            },
            api_url: "http://127.0.0.1:1".into(),
            installation: InstallationRef::Id(1),
            repositories: Vec::new(),
            permissions: Default::default(),
            output: "/run/t/token.json".into(),
            writes_file: true,
            socket: None,
            file: Default::default(),
            policy: schedule::Policy {
                interval: Duration::from_secs(2700),
                jitter: Duration::from_secs(120),
                min_remaining: Duration::from_secs(600),
            },
            revoke: Default::default(),
        };
        TargetState::new(target, 1, t0())
    }

    fn published(token: &str, refresh_in: i64) -> Published {
        Published {
            current: Current {
                token: Secret::new(token.to_string()),
                expires: t0() + chrono::Duration::hours(1),
                expires_mono: Some(Instant::now() + Duration::from_secs(3600)),
            },
            generation: 7,
            refresh_at: t0() + chrono::Duration::seconds(refresh_in),
        }
    }

    fn unreachable() -> RefreshError {
        RefreshError::Github(GithubError::Unreachable {
            what: "mint",
            reason: "connection refused".into(),
        })
    }

    #[test]
    fn failures_back_off_and_a_success_resets_the_plan() {
        let mut t = state();
        let first = t.on_failure(&unreachable(), t0(), 0.0);
        let second = t.on_failure(&unreachable(), t0(), 0.0);
        assert!(!first.permanent);
        assert!(second.delay > first.delay, "{first:?} then {second:?}");
        assert_eq!(t.attempt, 2);
        assert!(t.last_error.is_some());
        assert!(t.on_success(published("ghs_a", 2400), t0()).is_none());
        assert_eq!((t.attempt, t.last_error.is_none()), (0, true));
        assert_eq!(t.next_at, t0() + chrono::Duration::seconds(2400));
        assert_eq!(t.stats.generation, 7);
    }

    #[test]
    fn a_new_token_hands_back_the_one_it_supersedes_and_a_reload_mints_again_at_once() {
        let mut t = state();
        assert!(t.on_success(published("ghs_a", 2400), t0()).is_none());
        t.mint_again = true;
        let old = t
            .on_success(published("ghs_b", 2400), t0())
            .expect("superseded");
        assert_eq!(old.token.expose(), "ghs_a");
        assert_eq!(
            t.next_at,
            t0(),
            "a reload during the mint asks for another one"
        );
        assert!(t.has_valid_token(t0(), chrono::Duration::zero()));
        assert!(!t.has_valid_token(t0() + chrono::Duration::hours(2), chrono::Duration::zero()));
    }

    #[test]
    fn a_key_that_cannot_sign_is_permanent() {
        let mut t = state();
        let f = t.on_failure(&RefreshError::Sign("bad key".into()), t0(), 0.5);
        assert!(f.permanent);
        assert!(f.delay >= schedule::PERMANENT_RETRY);
    }
}
