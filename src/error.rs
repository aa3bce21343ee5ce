//! Exit statuses and the top-level error that maps onto them.

use crate::github::GithubError;

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

/// An error that ends a command, with the exit status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::Github(e) if e.is_permanent() => exit::CONFIG,
            Error::Github(e) if e.is_unreachable() => exit::UNAVAILABLE,
            Error::Github(_) | Error::Other(_) => exit::FAILURE,
        }
    }
}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Self {
        Error::Config(e.to_string())
    }
}
