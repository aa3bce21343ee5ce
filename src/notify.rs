//! sd_notify wrappers: READY, STATUS, WATCHDOG, RELOADING, STOPPING, EXTEND_TIMEOUT.
//! All are no-ops without `NOTIFY_SOCKET`, and a failure is logged, never fatal.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// One line: the protocol has no escaping, so newlines would end the message.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(&one_line(status))]);
}

/// `RELOADING=1` with `MONOTONIC_USEC` (required from systemd 253 on).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading configuration"),
        ]),
        Err(e) => tracing::debug!(error = %e, "cannot read CLOCK_MONOTONIC"),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Ask systemd for `by` more start-up time from now (it never shortens a timeout).
/// Written by hand: sd-notify's `ExtendTimeoutUsec` takes a `u32`, which caps at 71 minutes
/// and would cut short a rate-limit wait that GitHub asks for.
pub fn extend_timeout(by: Duration, status: &str) {
    let extend = extend_timeout_line(by);
    send(&[
        NotifyState::Custom(&extend),
        NotifyState::Status(&one_line(status)),
    ]);
}

fn extend_timeout_line(by: Duration) -> String {
    format!(
        "EXTEND_TIMEOUT_USEC={}",
        by.as_micros().min(u128::from(u64::MAX))
    )
}

/// The watchdog period to ping at (half of `WatchdogSec`), when one is set.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_beyond_u32_microseconds_is_not_capped() {
        let two_hours = Duration::from_secs(7200);
        assert_eq!(
            extend_timeout_line(two_hours),
            "EXTEND_TIMEOUT_USEC=7200000000"
        );
        assert_eq!(
            extend_timeout_line(Duration::from_millis(1500)),
            "EXTEND_TIMEOUT_USEC=1500000"
        );
    }
}
