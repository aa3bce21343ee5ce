//! The HTTP client: one connection pool per API base URL, GitHub's required headers,
//! timeouts, a cap on response size, and the server's clock learned from `Date` headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{GithubError, Trouble};
use super::types::{AccessToken, AppInfo, Installation, RepositoryList, TokenRequest};
use crate::secret::Secret;

/// Answers larger than this are refused (GitHub's are a few KiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// GitHub's installation tokens live one hour; an `expires_at` further away than that
/// plus a margin for clock skew is a garbled answer.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600 + 600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A wait GitHub asks for is honoured up to this long.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// A GitHub API client for one base URL (`https://api.github.com` or `https://HOST/api/v3`).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Arc<str>,
    /// GitHub's clock minus ours, in seconds, from the last `Date` header.
    offset: Arc<AtomicI64>,
}

/// An `http://` API URL (a local GitHub double or a loopback proxy): no TLS is ever used.
fn is_plain_http(base: &str) -> bool {
    base.get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

fn user_agent() -> String {
    format!("github-token-refresher/{}", env!("CARGO_PKG_VERSION"))
}

impl Client {
    pub fn new(base: &str, timeout: Duration) -> Result<Client, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "X-GitHub-Api-Version",
            HeaderValue::from_static("2022-11-28"),
        );
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent())
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none());
        if super::is_loopback_url(base) {
            // a local GitHub (tests, a tunnel) is never reached through a proxy, whatever
            // HTTP(S)_PROXY/ALL_PROXY say: the App JWT would travel in clear to the proxy
            builder = builder.no_proxy();
        }
        if is_plain_http(base) {
            // no TLS to verify (redirects are refused): an empty root store instead of
            // parsing the system's CA bundle, ~30 ms of every start (docs/performance.md)
            builder = builder.tls_certs_only(std::iter::empty());
        }
        let http = builder.build().map_err(|e| {
            format!(
                "cannot set up the HTTP client: {} (are CA certificates installed? \
                     SSL_CERT_FILE can name a bundle)",
                describe(&e)
            )
        })?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').into(),
            offset: Arc::new(AtomicI64::new(0)),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// GitHub's clock minus ours, in whole seconds (0 until a `Date` header was seen).
    pub fn clock_offset(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// Now by GitHub's clock, as learned from its last answer.
    pub fn server_now(&self, local_now: DateTime<Utc>) -> DateTime<Utc> {
        local_now + chrono::Duration::seconds(self.clock_offset())
    }

    /// A request to `path` under the API base, authenticated with `bearer` (the App's JWT or
    /// an installation token: GitHub answers nothing this client asks without one).
    fn request(&self, method: Method, path: &str, bearer: &Secret) -> RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(bearer.expose())
    }

    /// `GET path` with `bearer`, its JSON answer; `what` names the call in errors.
    async fn get<T: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        bearer: &Secret,
    ) -> Result<T, GithubError> {
        self.json(what, self.request(Method::GET, path, bearer))
            .await
    }

    /// `GET /app`: who the JWT says we are.
    pub async fn app(&self, jwt: &Secret) -> Result<AppInfo, GithubError> {
        self.get("GET /app", "/app", jwt).await
    }

    /// `GET /app/installations/{id}`.
    pub async fn installation(&self, jwt: &Secret, id: u64) -> Result<Installation, GithubError> {
        let path = format!("/app/installations/{id}");
        self.get("GET /app/installations/{id}", &path, jwt).await
    }

    /// `GET /repos/{owner}/{repo}/installation`.
    pub async fn installation_for_repo(
        &self,
        jwt: &Secret,
        owner: &str,
        repo: &str,
    ) -> Result<Installation, GithubError> {
        let path = format!("/repos/{owner}/{repo}/installation");
        self.get("GET /repos/{owner}/{repo}/installation", &path, jwt)
            .await
    }

    /// `GET /orgs/{owner}/installation`, falling back to `/users/{owner}/installation`.
    pub async fn installation_for_owner(
        &self,
        jwt: &Secret,
        owner: &str,
    ) -> Result<Installation, GithubError> {
        let path = format!("/orgs/{owner}/installation");
        match self.get("GET /orgs/{org}/installation", &path, jwt).await {
            Err(e) if e.status() == Some(404) => {
                let path = format!("/users/{owner}/installation");
                self.get("GET /users/{user}/installation", &path, jwt).await
            }
            other => other,
        }
    }

    /// `POST /app/installations/{id}/access_tokens`: mint a token.
    pub async fn mint(
        &self,
        jwt: &Secret,
        installation_id: u64,
        scope: &TokenRequest,
    ) -> Result<AccessToken, GithubError> {
        const WHAT: &str = "POST /app/installations/{id}/access_tokens";
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let mut req = self.request(Method::POST, &path, jwt);
        if *scope != TokenRequest::default() {
            req = req.json(scope);
        }
        let mut token: AccessToken = self.json(WHAT, req).await?;
        let bad = |reason: &str| GithubError::BadResponse {
            what: WHAT,
            reason: reason.into(),
        };
        // the same rule every reader of the file applies: a token the consumers would
        // refuse is a garbled answer, retried while the old file stays
        crate::secret::check_token(token.token.expose())
            .map_err(|why| bad(&format!("\"token\": {why}")))?;
        let expires = DateTime::parse_from_rfc3339(&token.expires_at)
            .map_err(|_| bad("\"expires_at\" is not an RFC 3339 time"))?;
        token.expires = expires.with_timezone(&Utc);
        // by GitHub's clock, learned from this very answer's Date header
        let left = token.expires.timestamp() - self.server_now(Utc::now()).timestamp();
        if left <= 0 {
            return Err(bad("\"expires_at\" is in the past"));
        }
        if left > MAX_TOKEN_LIFETIME.as_secs() as i64 {
            return Err(bad(
                "\"expires_at\" is further away than GitHub's one-hour token lifetime allows",
            ));
        }
        Ok(token)
    }

    /// `GET /installation/repositories` with the installation token: does it work?
    pub async fn installation_repositories(
        &self,
        token: &Secret,
    ) -> Result<RepositoryList, GithubError> {
        let path = "/installation/repositories?per_page=100";
        self.get("GET /installation/repositories", path, token)
            .await
    }

    /// `DELETE /installation/token` with the installation token itself: GitHub answers 204
    /// and refuses the token from then on (401).
    pub async fn revoke(&self, token: &Secret) -> Result<(), GithubError> {
        let req = self.request(Method::DELETE, "/installation/token", token);
        self.send("DELETE /installation/token", req).await.map(drop)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        what: &'static str,
        req: RequestBuilder,
    ) -> Result<T, GithubError> {
        let body = self.send(what, req).await?;
        serde_json::from_slice(&body).map_err(|e| GithubError::BadResponse {
            what,
            // the field and position, never a value (a misplaced token would be quoted)
            reason: format!(
                "not the expected JSON: {}",
                crate::sanitize::clean(&crate::sanitize::json_error_without_values(&e))
            ),
        })
    }

    /// The answer's body (zeroized on drop: a mint's answer holds the token).
    async fn send(
        &self,
        what: &'static str,
        req: RequestBuilder,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, GithubError> {
        let unreachable = |e: reqwest::Error| GithubError::Unreachable {
            what,
            reason: describe(&e),
        };
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let server_date = headers
            .get(header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        if let Some(date) = server_date {
            let offset = (date - Utc::now()).num_seconds();
            // Date has one-second resolution: ignore the rounding
            let offset = if offset.abs() <= 1 { 0 } else { offset };
            self.offset.store(offset, Ordering::Relaxed);
        }
        let body = read_body(what, &mut resp).await?;
        if status.is_success() {
            return Ok(body);
        }
        let message = error_message(&body, status);
        let trouble = classify(
            status,
            &headers,
            &message,
            server_date.unwrap_or_else(Utc::now),
        );
        Err(GithubError::Status {
            what,
            status: status.as_u16(),
            message,
            trouble,
        })
    }
}

/// The body, at most [`MAX_BODY_BYTES`]. Cut short is an error on a success (the JSON would
/// be incomplete) and ends the read on an error status (the message is best effort).
async fn read_body(
    what: &'static str,
    resp: &mut reqwest::Response,
) -> Result<zeroize::Zeroizing<Vec<u8>>, GithubError> {
    let status = resp.status();
    // sized up front where the length is known, so no reallocation leaves a copy behind
    let expected = resp
        .content_length()
        .unwrap_or(0)
        .min(MAX_BODY_BYTES as u64);
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(expected as usize));
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(GithubError::BadResponse {
                        what,
                        reason: format!("answer larger than {} KiB", MAX_BODY_BYTES / 1024),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if status.is_success() => {
                return Err(GithubError::BadResponse {
                    what,
                    reason: format!("answer cut short: {}", describe(&e)),
                });
            }
            Err(_) => break,
        }
    }
    Ok(body)
}

/// The innermost cause, which says what actually happened (refused, reset, timed out).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = crate::sanitize::clean(&cause.to_string());
    if e.is_connect() && !text.contains("connect") {
        format!("connection failed: {text}")
    } else {
        text
    }
}

fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// GitHub's `message`, or a short clean excerpt of a non-JSON body.
fn error_message(body: &[u8], status: StatusCode) -> String {
    #[derive(serde::Deserialize)]
    struct GithubMessage {
        message: String,
    }
    let text = match serde_json::from_slice::<GithubMessage>(body) {
        Ok(m) => m.message,
        Err(_) => status.canonical_reason().unwrap_or("error").to_string(),
    };
    crate::sanitize::clean(text.trim())
}

fn header_secs(headers: &HeaderMap, name: &str) -> Option<i64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// What an error status means for the caller.
pub(super) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    server_now: DateTime<Utc>,
) -> Trouble {
    let lower = message.to_ascii_lowercase();
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
                .or_else(|| {
                    let at = parse_http_date(v)?;
                    (at - server_now).to_std().ok()
                })
        });
    let exhausted = header_secs(headers, "x-ratelimit-remaining") == Some(0);
    // x-ratelimit-reset is when the *primary* limit resets: it says how long to wait only
    // when that limit is used up. A secondary limit without Retry-After waits a minute
    // (GitHub's documented rule), not until the primary reset, which may be an hour away.
    let reset_wait = header_secs(headers, "x-ratelimit-reset")
        .filter(|_| exhausted)
        .and_then(|reset| reset.checked_sub(server_now.timestamp()))
        .and_then(|secs| u64::try_from(secs).ok())
        .map(Duration::from_secs);
    let limited = |wait: Option<Duration>| {
        Trouble::RateLimited(
            wait.unwrap_or(DEFAULT_RATE_LIMIT_WAIT)
                .clamp(Duration::from_secs(1), MAX_RATE_LIMIT_WAIT),
        )
    };
    match status.as_u16() {
        429 => limited(retry_after.or(reset_wait)),
        403 if exhausted => limited(retry_after.or(reset_wait)),
        403 if lower.contains("rate limit") => limited(retry_after.or(reset_wait)),
        401 if lower.contains("'issued at' claim") || lower.contains("'expiration time' claim") => {
            Trouble::ClockSkew
        }
        400..=499 if matches!(status.as_u16(), 408 | 425) => Trouble::Transient,
        400..=499 => Trouble::Permanent,
        _ => Trouble::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::t0 as now;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn class(status: u16, h: &[(&'static str, &str)], msg: &str) -> Trouble {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &headers(h),
            msg,
            now(),
        )
    }

    #[test]
    fn statuses_map_to_what_to_do() {
        assert_eq!(class(503, &[], ""), Trouble::Transient);
        assert_eq!(class(500, &[], ""), Trouble::Transient);
        assert_eq!(class(404, &[], "Not Found"), Trouble::Permanent);
        assert_eq!(
            class(422, &[], "There is at least one repository"),
            Trouble::Permanent
        );
        assert_eq!(
            class(401, &[], "A JSON web token could not be decoded"),
            Trouble::Permanent
        );
        assert_eq!(
            class(403, &[], "Resource not accessible by integration"),
            Trouble::Permanent
        );
        assert_eq!(
            class(
                401,
                &[],
                "'Issued at' claim ('iat') must be an Integer representing a time in the past"
            ),
            Trouble::ClockSkew
        );
        assert_eq!(
            class(
                401,
                &[],
                "'Expiration time' claim ('exp') is too far in the future"
            ),
            Trouble::ClockSkew
        );
    }

    #[test]
    fn rate_limits_say_how_long() {
        assert_eq!(
            class(429, &[("retry-after", "30")], ""),
            Trouble::RateLimited(Duration::from_secs(30))
        );
        let reset = (now().timestamp() + 120).to_string();
        assert_eq!(
            class(
                403,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset)
                ],
                "API rate limit exceeded"
            ),
            Trouble::RateLimited(Duration::from_secs(120))
        );
        assert_eq!(
            class(403, &[], "You have exceeded a secondary rate limit"),
            Trouble::RateLimited(DEFAULT_RATE_LIMIT_WAIT)
        );
        // GitHub sends the primary limit's headers with a secondary limit too: a reset an
        // hour away must not turn a one-minute wait into an hour
        let later = (now().timestamp() + 3600).to_string();
        let primary_headers = [
            ("x-ratelimit-remaining", "4999"),
            ("x-ratelimit-reset", later.as_str()),
        ];
        assert_eq!(
            class(
                403,
                &primary_headers,
                "You have exceeded a secondary rate limit"
            ),
            Trouble::RateLimited(DEFAULT_RATE_LIMIT_WAIT)
        );
        assert_eq!(
            class(429, &primary_headers, ""),
            Trouble::RateLimited(DEFAULT_RATE_LIMIT_WAIT)
        );
        // a reset in the past or absurd: at least a second, never a panic
        for reset in ["-9223372036854775808", "0", "9223372036854775807"] {
            let h = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", reset)];
            assert!(
                matches!(class(403, &h, "API rate limit exceeded"), Trouble::RateLimited(d) if d >= Duration::from_secs(1) && d <= MAX_RATE_LIMIT_WAIT)
            );
        }
        assert_eq!(
            class(429, &[("retry-after", "Fri, 15 Jan 2027 08:01:00 GMT")], ""),
            Trouble::RateLimited(Duration::from_secs(60))
        );
        assert_eq!(
            class(429, &[("retry-after", "999999")], ""),
            Trouble::RateLimited(MAX_RATE_LIMIT_WAIT)
        );
    }

    #[test]
    fn error_messages_are_githubs_and_clean() {
        let body = br#"{"message":"Not Found","documentation_url":"x"}"#;
        assert_eq!(error_message(body, StatusCode::NOT_FOUND), "Not Found");
        assert_eq!(
            error_message(b"<html>\n oops", StatusCode::BAD_GATEWAY),
            "Bad Gateway"
        );
        let long = format!(r#"{{"message":"{}"}}"#, "a\\n".repeat(400));
        assert!(error_message(long.as_bytes(), StatusCode::IM_A_TEAPOT).len() <= 300);
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")
                .unwrap()
                .timestamp(),
            784111777
        );
        assert!(parse_http_date("yesterday").is_none());
    }

    proptest::proptest! {
        #[test]
        fn parsing_githubs_answers_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), status in 400u16..600) {
            let status = StatusCode::from_u16(status).unwrap();
            let msg = error_message(&body, status);
            let _ = classify(status, &HeaderMap::new(), &msg, now());
            let _ = serde_json::from_slice::<AccessToken>(&body);
            let _ = serde_json::from_slice::<Installation>(&body);
        }

        #[test]
        fn rate_limit_headers_never_panic_and_waits_stay_bounded(
            status in 400u16..600,
            retry_after in "\\PC{0,40}",
            reset in proptest::prop_oneof![
                proptest::strategy::Just(i64::MIN),
                proptest::strategy::Just(i64::MAX),
                -10_000i64..10_000_000_000,
                proptest::num::i64::ANY,
            ],
            remaining in proptest::prop_oneof![proptest::strategy::Just(0i64), proptest::num::i64::ANY],
            message in "\\PC{0,80}",
        ) {
            let mut h = HeaderMap::new();
            for (name, value) in [
                ("retry-after", retry_after),
                ("x-ratelimit-reset", reset.to_string()),
                ("x-ratelimit-remaining", remaining.to_string()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    h.insert(name, v);
                }
            }
            let status = StatusCode::from_u16(status).unwrap();
            if let Trouble::RateLimited(d) = classify(status, &h, &message, now()) {
                proptest::prop_assert!(d >= Duration::from_secs(1) && d <= MAX_RATE_LIMIT_WAIT);
            }
        }
    }
}
