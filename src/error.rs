//! Exit statuses, and the one classifier of failures: for any error, how the daemon retries,
//! which status a one-shot command exits with, and the hint a person can act on.

use crate::github::{GithubError, RetryKind};
use crate::refresh::RefreshError;

/// Documented exit statuses (sysexits.h where one fits).
pub mod exit {
    pub const OK: i32 = 0;
    /// Anything else; for `status`: the token is expired or expiring.
    pub const FAILURE: i32 = 1;
    /// `status`: the token file is missing or unreadable.
    pub const NO_TOKEN_FILE: i32 = 2;
    /// EX_UNAVAILABLE: GitHub unreachable (or answering 5xx) in `once`/`check`.
    pub const UNAVAILABLE: i32 = 69;
    /// EX_CONFIG: bad flag, missing/unsafe/unparseable key, or a GitHub answer that
    /// retrying won't fix (401/404/422). systemd units set `RestartPreventExitStatus=78`.
    pub const CONFIG: i32 = 78;
}

/// What to do about a failed refresh: the one place that classifies errors for every
/// command. `retry` is how long the daemon waits (via `schedule::retry_delay`); `exit` the
/// status `once`, `check` and `revoke` end with; `hint` the fix a person can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub retry: RetryKind,
    pub exit: i32,
    pub hint: Option<&'static str>,
}

/// A GitHub answer (or the lack of one).
pub fn of_github(e: &GithubError) -> Verdict {
    let exit = if e.is_permanent() {
        exit::CONFIG
    } else if e.is_unreachable() {
        exit::UNAVAILABLE
    } else {
        exit::FAILURE
    };
    Verdict {
        retry: e.retry_kind(),
        exit,
        hint: e.hint(),
    }
}

/// A refresh: GitHub's answer, a JWT that can't be signed (the key: a person must fix it),
/// or a token file that can't be written (a directory where it belongs needs a person;
/// a full or read-only disk usually passes).
pub fn of_refresh(e: &RefreshError) -> Verdict {
    let permanent = |exit| Verdict {
        retry: RetryKind::Permanent,
        exit,
        hint: None,
    };
    match e {
        RefreshError::Github(g) => of_github(g),
        RefreshError::Sign(_) => permanent(exit::CONFIG),
        RefreshError::Write(_) if e.is_permanent() => permanent(exit::CONFIG),
        RefreshError::Write(_) => Verdict {
            retry: RetryKind::Transient,
            exit: exit::FAILURE,
            hint: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_file::WriteError;

    #[test]
    fn every_error_has_one_verdict() {
        let sign = of_refresh(&RefreshError::Sign("bad key".into()));
        assert_eq!(
            (sign.retry, sign.exit),
            (RetryKind::Permanent, exit::CONFIG)
        );
        let dir = of_refresh(&RefreshError::Write(WriteError::TargetIsDirectory(
            "/x".into(),
        )));
        assert_eq!((dir.retry, dir.exit), (RetryKind::Permanent, exit::CONFIG));
        let full = of_refresh(&RefreshError::Write(WriteError::Io {
            dir: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        }));
        assert_eq!(
            (full.retry, full.exit),
            (RetryKind::Transient, exit::FAILURE)
        );
    }
}
