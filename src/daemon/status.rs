//! The STATUS= text systemd shows (`systemctl --user status`): one line for a single
//! target (its token's validity, the next refresh, the last error and its retry), a count of
//! fresh, failing and minting targets for many, and a note after a rejected reload.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Daemon, TargetState};
use crate::durations::format_duration;

impl Daemon {
    pub(super) fn status_line(&self) -> String {
        let now = self.clock.now();
        let line = if let [t] = self.targets.as_slice() {
            self.describe(t, now)
        } else {
            let fresh = self
                .targets
                .iter()
                .filter(|t| self.is_fresh(t) && t.last_error.is_none())
                .count();
            let failing: Vec<_> = self
                .targets
                .iter()
                .filter(|t| t.last_error.is_some())
                .map(|t| {
                    format!(
                        "{}: {}",
                        t.name(),
                        t.last_error.as_ref().map_or("", |e| e.0.as_str())
                    )
                })
                .collect();
            let mut s = format!("{} targets: {fresh} fresh", self.targets.len());
            if !failing.is_empty() {
                s += &format!(", {} failing ({})", failing.len(), failing.join("; "));
            }
            let pending = self.targets.len() - fresh - failing.len();
            if pending > 0 {
                s += &format!(", {pending} minting");
            }
            s
        };
        match &self.reload_note {
            Some(note) => format!("{line}; {note}"),
            None => line,
        }
    }

    fn describe(&self, t: &TargetState, now: DateTime<Utc>) -> String {
        let remaining = self.remaining(t);
        let expires = t.current.as_ref().map(|c| clock_time(c.expires));
        let token = match (remaining, &expires) {
            (Some(r), Some(_)) if r > 0 => format!(
                "current token valid {}",
                format_duration(Duration::from_secs(r as u64))
            ),
            (Some(r), Some(at)) => format!(
                "token EXPIRED at {at} ({} ago)",
                format_duration(Duration::from_secs((-r) as u64))
            ),
            _ => "no valid token yet".to_string(),
        };
        match &t.last_error {
            None => match (remaining, expires) {
                (Some(r), Some(at)) if r > 0 => format!(
                    "token valid until {at}, next refresh {}",
                    clock_time(t.next_at)
                ),
                (Some(_), Some(at)) => format!("token EXPIRED at {at}, minting a new one"),
                _ => "minting the first token".into(),
            },
            Some((err, permanent)) => {
                let wait =
                    format_duration(Duration::from_secs(t.wait(now, Instant::now()).as_secs()));
                if *permanent {
                    format!("{err}; retrying in {wait}; {token}")
                } else {
                    format!("{err}, retry {} in {wait}; {token}", t.attempt)
                }
            }
        }
    }
}

/// `14:05 UTC`
pub(super) fn clock_time(t: DateTime<Utc>) -> String {
    // seconds: a refresh planned for 16:44:50 must not read "16:44" at 16:44:20
    t.format("%H:%M:%S UTC").to_string()
}
