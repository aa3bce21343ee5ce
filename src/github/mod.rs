//! GitHub's REST API as this daemon uses it: the App (`GET /app`), installation discovery,
//! minting installation tokens, and checking that a token works. Errors are typed by what
//! the caller should do next: retry soon, wait as told, re-sign for clock skew, or give up.

mod client;
mod error;
mod types;

pub use client::{Client, MAX_BODY_BYTES, MAX_TOKEN_LIFETIME};
pub use error::{GithubError, RetryKind, Trouble};
pub use types::{AccessToken, Account, AppInfo, Installation, RepositoryList, TokenRequest};

/// The API URL names a loopback host (`127.0.0.0/8`, `::1`, `localhost`).
pub fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| is_loopback(&u))
}

pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}
