//! GitHub's REST API as this daemon uses it: the App (`GET /app`), installation discovery,
//! minting installation tokens, and checking that a token works. Errors are typed by what
//! the caller should do next: retry soon, wait as told, re-sign for clock skew, or give up.

mod client;
mod error;
mod types;

pub use client::{Client, MAX_BODY_BYTES, MAX_TOKEN_LIFETIME};
pub use error::{GithubError, Trouble};
pub use types::{AccessToken, Account, AppInfo, Installation, RepositoryList, TokenRequest};
