//! What went wrong talking to GitHub, and what to do about it.

use std::time::Duration;

/// What an answer says about trying again; `schedule` turns it into a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    /// 5xx, network, timeouts, bad bodies, local write errors.
    Transient,
    /// GitHub said when to come back (Retry-After, x-ratelimit-reset).
    RateLimited(Duration),
    /// Retrying won't help soon.
    Permanent,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GithubError {
    /// No HTTP answer: refused, reset, DNS, TLS, timeout.
    #[error("cannot reach GitHub ({what}): {reason}")]
    Unreachable { what: &'static str, reason: String },
    /// An HTTP error status, with GitHub's `message`.
    #[error("GitHub answered {status} to {what}: {message}")]
    Status {
        what: &'static str,
        status: u16,
        message: String,
        trouble: Trouble,
    },
    /// A 2xx answer we cannot use: not JSON, a field missing, too large, cut short.
    #[error("GitHub sent an unusable answer to {what}: {reason}")]
    BadResponse { what: &'static str, reason: String },
}

/// How to react to an error status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// 5xx and other hiccups: back off and retry.
    Transient,
    /// 429, or 403 with `x-ratelimit-remaining: 0` or a secondary-limit message.
    RateLimited(Duration),
    /// 401 about `iat`/`exp`: our clock differs from GitHub's; re-sign with the offset.
    ClockSkew,
    /// 401 bad credentials, 404, 422, 403 not permitted: retrying won't fix it soon.
    Permanent,
}

impl GithubError {
    pub fn trouble(&self) -> Trouble {
        match self {
            GithubError::Unreachable { .. } | GithubError::BadResponse { .. } => Trouble::Transient,
            GithubError::Status { trouble, .. } => *trouble,
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.trouble() == Trouble::Permanent
    }

    /// For one-shot commands' exit status 69: GitHub could not serve us just now.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.trouble(), Trouble::Transient | Trouble::RateLimited(_))
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short form for STATUS= lines: "GitHub answered 503 Service Unavailable",
    /// "GitHub unreachable (timed out)", "unusable answer from GitHub (…)".
    pub fn short(&self) -> String {
        match self {
            GithubError::Unreachable { reason, .. } => format!("GitHub unreachable ({reason})"),
            GithubError::Status {
                status, message, ..
            } => format!("GitHub answered {status} {message}"),
            GithubError::BadResponse { reason, .. } => {
                format!("unusable answer from GitHub ({reason})")
            }
        }
    }

    pub fn retry_kind(&self) -> RetryKind {
        match self.trouble() {
            Trouble::Transient | Trouble::ClockSkew => RetryKind::Transient,
            Trouble::RateLimited(d) => RetryKind::RateLimited(d),
            Trouble::Permanent => RetryKind::Permanent,
        }
    }

    /// A hint for people: what this usually means and what to do.
    pub fn hint(&self) -> Option<&'static str> {
        let GithubError::Status {
            status, message, ..
        } = self
        else {
            return match self {
                GithubError::Unreachable { reason, .. }
                    if reason.contains("certificate") || reason.contains("Issuer") =>
                {
                    Some(
                        "the server's TLS certificate was not trusted: check --api-url, and \
                         for GitHub Enterprise Server install its CA (or set SSL_CERT_FILE)",
                    )
                }
                GithubError::Unreachable { .. } => {
                    Some("check the network, proxy settings and --api-url")
                }
                _ => None,
            };
        };
        let m = message.to_ascii_lowercase();
        Some(match status {
            401 if m.contains("could not be decoded") => {
                "GitHub could not verify the JWT: check that --app-id matches the App the \
                 private key belongs to, and that the key was not revoked"
            }
            401 if m.contains("claim") => {
                "this host's clock differs from GitHub's; the daemon corrects for it, but check \
                 that NTP is running (timedatectl)"
            }
            401 => "the credentials were refused: check --app-id and --private-key-file",
            404 => {
                "the App is not installed there, or the installation was removed: check the \
                 installation ID / owner / repository, and install the App on that account"
            }
            422 if m.contains("permission") => {
                "a requested permission is not granted to the installation: lower --permissions \
                 or grant it in the App's settings (and accept it on the installation)"
            }
            422 => {
                "a repository in --repositories does not exist or the installation cannot access \
                 it: check the names (without owner) and the installation's repository selection"
            }
            403 if m.contains("rate limit") => "rate limited by GitHub: the daemon waits as told",
            403 => {
                "GitHub refused the request: the App may lack a permission, or the installation \
                 may be suspended"
            }
            429 => "rate limited by GitHub: the daemon waits as told",
            s if *s >= 500 => "GitHub is having trouble; the daemon retries with backoff",
            _ => return None,
        })
    }
}
