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

/// Ask systemd for more start-up time while the first mint is still retrying.
pub fn extend_timeout(by: Duration, status: &str) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    send(&[
        NotifyState::ExtendTimeoutUsec(usec),
        NotifyState::Status(&one_line(status)),
    ]);
}

/// The watchdog period to ping at (half of `WatchdogSec`), when one is set.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
