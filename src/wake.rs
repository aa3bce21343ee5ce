//! The daemon's alarm clock: kernel timers that wake the loop at its next deadline and
//! whenever the wall clock is set, so that an idle daemon sleeps until it has work.
//!
//! Two timerfds, waited on through tokio's [`AsyncFd`]:
//! - the deadline, on `CLOCK_BOOTTIME`, which keeps counting while the host is suspended: a
//!   deadline that passes during a suspend fires as soon as the host resumes (tokio's own
//!   timers run on `CLOCK_MONOTONIC`, which stops during suspend);
//! - a watcher on `CLOCK_REALTIME`, armed with `TFD_TIMER_CANCEL_ON_SET` for a moment that
//!   never comes: the kernel cancels it (its `read` fails with `ECANCELED`) when the wall
//!   clock is set, by an administrator, NTP stepping it, or on resume from suspend.
//!
//! Where timerfds are unavailable (an old kernel, a seccomp filter), [`Alarm`] falls back to
//! tokio's timer with a short [`FALLBACK_NAP`], as the daemon did before, and says so.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, clock_gettime,
    timerfd_create, timerfd_settime,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Without timerfds the loop cannot learn of a suspend or a clock step, so it wakes this
/// often to look at the wall clock.
pub const FALLBACK_NAP: Duration = Duration::from_secs(10);

/// The watcher's expiry: ten years on, re-armed after every clock change.
const WATCH_AHEAD_SECS: i64 = 10 * 365 * 86_400;

/// Why [`Alarm::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The deadline passed (counting any time the host spent suspended).
    Deadline,
    /// The wall clock was set or stepped (or the host resumed): wall-clock deadlines moved.
    ClockSet,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Alarm {
    timers: Option<Timers>,
    fallback_deadline: Option<tokio::time::Instant>,
}

#[derive(Debug)]
struct Timers {
    deadline: AsyncFd<OwnedFd>,
    clock_set: AsyncFd<OwnedFd>,
}

impl Alarm {
    /// The kernel timers, or the fallback with the reason it is used. Must be called inside
    /// a tokio runtime.
    pub fn new() -> (Alarm, Option<io::Error>) {
        match Timers::new() {
            Ok(t) => (
                Alarm {
                    timers: Some(t),
                    fallback_deadline: None,
                },
                None,
            ),
            Err(e) => (
                Alarm {
                    timers: None,
                    fallback_deadline: None,
                },
                Some(e),
            ),
        }
    }

    /// Whether the kernel tells of suspends and clock steps (`false`: periodic naps).
    pub fn is_kernel(&self) -> bool {
        self.timers.is_some()
    }

    /// Wake after `after` (`None`: only when the wall clock is set). Replaces the previous
    /// deadline.
    pub fn arm(&mut self, after: Option<Duration>) -> io::Result<()> {
        match &self.timers {
            Some(t) => {
                let value = match after {
                    // a zero it_value disarms a timerfd: the shortest real wait is 1 ns
                    Some(d) => timespec(d.max(Duration::from_nanos(1))),
                    None => Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                };
                set(&t.deadline, TimerfdTimerFlags::empty(), value)
            }
            None => {
                let nap = after.map_or(FALLBACK_NAP, |d| d.min(FALLBACK_NAP));
                self.fallback_deadline = Some(tokio::time::Instant::now() + nap);
                Ok(())
            }
        }
    }

    /// Wait for the deadline or a change of the wall clock. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<Woken> {
        let Some(t) = &self.timers else {
            let at = self
                .fallback_deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + FALLBACK_NAP);
            tokio::time::sleep_until(at).await;
            // a nap may hide a suspend or a clock step: look at the clocks again
            return Ok(Woken::ClockSet);
        };
        tokio::select! {
            r = expired(&t.deadline) => match r {
                Ok(()) => Ok(Woken::Deadline),
                // only the watcher is armed with CANCEL_ON_SET; treat it alike anyway
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::CANCELED.raw_os_error()) => {
                    Ok(Woken::ClockSet)
                }
                Err(e) => Err(e),
            },
            r = expired(&t.clock_set) => match r {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::CANCELED.raw_os_error()) => {
                    t.arm_watcher()?;
                    Ok(Woken::ClockSet)
                }
                // ten years of uptime: watch again
                Ok(()) => {
                    t.arm_watcher()?;
                    Ok(Woken::ClockSet)
                }
                Err(e) => Err(e),
            },
        }
    }
}

impl Timers {
    fn new() -> io::Result<Timers> {
        let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
        let deadline = timerfd_create(TimerfdClockId::Boottime, flags)?;
        let clock_set = timerfd_create(TimerfdClockId::Realtime, flags)?;
        let t = Timers {
            deadline: watch(deadline)?,
            clock_set: watch(clock_set)?,
        };
        t.arm_watcher()?;
        Ok(t)
    }

    fn arm_watcher(&self) -> io::Result<()> {
        let now = clock_gettime(ClockId::Realtime);
        let at = Timespec {
            tv_sec: now.tv_sec.saturating_add(WATCH_AHEAD_SECS),
            tv_nsec: 0,
        };
        set(
            &self.clock_set,
            TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
            at,
        )
    }
}

/// Tokio 1.54 deprecated the safe constructor in favour of an `unsafe` one (`register`):
/// the unsoundness is a `T` whose descriptor could be closed or replaced behind the
/// `AsyncFd`'s back. Here `T` is an `OwnedFd` the `AsyncFd` owns and never gives out, so
/// the safe call is sound, and this crate forbids `unsafe`.
#[allow(deprecated)]
fn watch(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    AsyncFd::with_interest(fd, Interest::READABLE)
}

fn set(fd: &AsyncFd<OwnedFd>, flags: TimerfdTimerFlags, value: Timespec) -> io::Result<()> {
    let spec = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: value,
    };
    timerfd_settime(fd.get_ref(), flags, &spec)?;
    Ok(())
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: d.subsec_nanos().into(),
    }
}

/// Wait until the timer has expired (its expiration count is read and discarded), or its
/// `read` fails (`ECANCELED`: the wall clock was set).
async fn expired(fd: &AsyncFd<OwnedFd>) -> io::Result<()> {
    loop {
        let mut guard = fd.readable().await?;
        let mut buf = [0u8; 8];
        match guard.try_io(|inner| Ok(rustix::io::read(inner.get_ref(), &mut buf[..])?)) {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_fires_and_a_new_one_replaces_the_old() {
        let (mut a, err) = Alarm::new();
        assert!(err.is_none(), "timerfds unavailable: {err:?}");
        assert!(a.is_kernel());
        a.arm(Some(Duration::from_secs(3600))).unwrap();
        a.arm(Some(Duration::from_millis(30))).unwrap();
        let t0 = std::time::Instant::now();
        assert_eq!(a.wait().await.unwrap(), Woken::Deadline);
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        // a zero wait still fires (a zero it_value would disarm the timer)
        a.arm(Some(Duration::ZERO)).unwrap();
        assert_eq!(a.wait().await.unwrap(), Woken::Deadline);
    }

    #[tokio::test]
    async fn disarmed_it_does_not_fire() {
        let (mut a, _) = Alarm::new();
        a.arm(Some(Duration::from_millis(10))).unwrap();
        a.arm(None).unwrap();
        let r = tokio::time::timeout(Duration::from_millis(200), a.wait()).await;
        assert!(r.is_err(), "woke without a deadline: {r:?}");
    }
}
