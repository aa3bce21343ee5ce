//! Injected failures: what goes wrong, on which route, and how many times.
//!
//! JSON shape (for `POST /_fake/faults`):
//!
//! ```json
//! {"route": "access_tokens", "times": 2,
//!  "kind": {"type": "status", "status": 429, "body": "{\"message\":\"slow down\"}",
//!           "headers": {"retry-after": "3"}}}
//! ```
//!
//! `route` is one of `any`, `app`, `installation`, `access_tokens`,
//! `installation_repositories`; `times` defaults to 1. `kind.type` is one of
//! `status` (`status`, optional `body`, optional `headers` as an object or a list of pairs),
//! `delay` (`ms`), `hang`, `drop_connection`, `truncated_body`, `non_json`,
//! `missing_field` (`field`), `replace_field` (`field`, `value`: any JSON, e.g. a login with
//! control characters, a garbled token, an `expires_at` in the past), `oversized` (`bytes`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A failure to inject into the next `times` requests that match `route`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Which requests it applies to.
    pub route: Route,
    /// What happens to them.
    pub kind: FaultKind,
    /// How many matching requests it affects before normal service resumes (0: none).
    #[serde(default = "one")]
    pub times: usize,
}

fn one() -> usize {
    1
}

impl Fault {
    /// A fault for the next `times` requests on `route`.
    #[must_use]
    pub fn new(route: Route, kind: FaultKind, times: usize) -> Fault {
        Fault { route, kind, times }
    }

    /// A fault for the next request on `route`.
    #[must_use]
    pub fn once(route: Route, kind: FaultKind) -> Fault {
        Fault::new(route, kind, 1)
    }
}

/// Request classes a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Every API request (not the `/_fake/` control endpoints).
    Any,
    /// `GET /app`.
    App,
    /// Installation discovery: `/repos/{o}/{r}/installation`, `/orgs/{o}/installation`,
    /// `/users/{u}/installation`, `/app/installations` and `/app/installations/{id}`.
    Installation,
    /// `POST /app/installations/{id}/access_tokens`.
    AccessTokens,
    /// `GET /installation/repositories`.
    InstallationRepositories,
    /// `DELETE /installation/token` (revocation).
    RevokeToken,
}

/// What a faulted request gets instead of (or before) the normal answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FaultKindRepr", from = "FaultKindRepr")]
pub enum FaultKind {
    /// Answer with this status, body and extra headers (e.g. 503; 429 with `retry-after`;
    /// 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset`). The usual `date`,
    /// `content-type` (unless overridden here) and `x-github-request-id` are added.
    Status {
        /// HTTP status code.
        status: u16,
        /// Response body, sent as is.
        body: String,
        /// Extra headers; these replace same-named default headers.
        headers: Vec<(String, String)>,
    },
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Accept the request and never answer (until the client gives up or the fake stops).
    Hang,
    /// Close the connection without a response (TCP reset).
    DropConnection,
    /// 200 whose `content-length` exceeds the bytes sent, then the connection closes.
    TruncatedBody,
    /// 200 with the body `<html>oops</html>`.
    NonJson,
    /// 200 (201 for access tokens) with the normal JSON minus this top-level field,
    /// e.g. `token` or `expires_at`. The request is otherwise served normally.
    MissingField(String),
    /// The normal answer with this top-level field set to this JSON value (hostile data:
    /// `account` with an ESC sequence in its login, a `token` that is not visible ASCII,
    /// an `expires_at` in the past). The request is otherwise served normally.
    ReplaceField(String, serde_json::Value),
    /// 200 with a body of exactly this many bytes (a JSON object padded with `a`s).
    Oversized(usize),
}

impl FaultKind {
    /// `Status` with no extra headers.
    #[must_use]
    pub fn status(status: u16, body: impl Into<String>) -> FaultKind {
        FaultKind::Status {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// `Status` with extra headers.
    #[must_use]
    pub fn status_with_headers(
        status: u16,
        body: impl Into<String>,
        headers: &[(&str, &str)],
    ) -> FaultKind {
        FaultKind::Status {
            status,
            body: body.into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// `ReplaceField(field, value)`.
    #[must_use]
    pub fn replace_field(field: impl Into<String>, value: serde_json::Value) -> FaultKind {
        FaultKind::ReplaceField(field.into(), value)
    }

    /// `MissingField(field)`.
    #[must_use]
    pub fn missing_field(field: impl Into<String>) -> FaultKind {
        FaultKind::MissingField(field.into())
    }
}

/// Headers in JSON: either `{"name": "value"}` or `[["name", "value"]]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum HeadersRepr {
    Pairs(Vec<(String, String)>),
    Map(std::collections::BTreeMap<String, String>),
}

impl Default for HeadersRepr {
    fn default() -> Self {
        HeadersRepr::Pairs(Vec::new())
    }
}

impl From<HeadersRepr> for Vec<(String, String)> {
    fn from(h: HeadersRepr) -> Self {
        match h {
            HeadersRepr::Pairs(p) => p,
            HeadersRepr::Map(m) => m.into_iter().collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum FaultKindRepr {
    Status {
        status: u16,
        #[serde(default)]
        body: String,
        #[serde(default)]
        headers: HeadersRepr,
    },
    Delay {
        ms: u64,
    },
    Hang,
    DropConnection,
    TruncatedBody,
    NonJson,
    MissingField {
        field: String,
    },
    ReplaceField {
        field: String,
        value: serde_json::Value,
    },
    Oversized {
        bytes: usize,
    },
}

impl From<FaultKind> for FaultKindRepr {
    fn from(k: FaultKind) -> Self {
        match k {
            FaultKind::Status {
                status,
                body,
                headers,
            } => FaultKindRepr::Status {
                status,
                body,
                headers: HeadersRepr::Pairs(headers),
            },
            FaultKind::Delay(d) => FaultKindRepr::Delay {
                ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            },
            FaultKind::Hang => FaultKindRepr::Hang,
            FaultKind::DropConnection => FaultKindRepr::DropConnection,
            FaultKind::TruncatedBody => FaultKindRepr::TruncatedBody,
            FaultKind::NonJson => FaultKindRepr::NonJson,
            FaultKind::MissingField(field) => FaultKindRepr::MissingField { field },
            FaultKind::ReplaceField(field, value) => FaultKindRepr::ReplaceField { field, value },
            FaultKind::Oversized(bytes) => FaultKindRepr::Oversized { bytes },
        }
    }
}

impl From<FaultKindRepr> for FaultKind {
    fn from(k: FaultKindRepr) -> Self {
        match k {
            FaultKindRepr::Status {
                status,
                body,
                headers,
            } => FaultKind::Status {
                status,
                body,
                headers: headers.into(),
            },
            FaultKindRepr::Delay { ms } => FaultKind::Delay(Duration::from_millis(ms)),
            FaultKindRepr::Hang => FaultKind::Hang,
            FaultKindRepr::DropConnection => FaultKind::DropConnection,
            FaultKindRepr::TruncatedBody => FaultKind::TruncatedBody,
            FaultKindRepr::NonJson => FaultKind::NonJson,
            FaultKindRepr::MissingField { field } => FaultKind::MissingField(field),
            FaultKindRepr::ReplaceField { field, value } => FaultKind::ReplaceField(field, value),
            FaultKindRepr::Oversized { bytes } => FaultKind::Oversized(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_defaults() {
        let f: Fault = serde_json::from_str(
            r#"{"route":"access_tokens","kind":{"type":"status","status":429,
                "headers":{"retry-after":"3"}}}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            Fault::once(
                Route::AccessTokens,
                FaultKind::status_with_headers(429, "", &[("retry-after", "3")])
            )
        );
        let f: Fault =
            serde_json::from_str(r#"{"route":"any","times":3,"kind":{"type":"delay","ms":1500}}"#)
                .unwrap();
        assert_eq!(
            f,
            Fault::new(Route::Any, FaultKind::Delay(Duration::from_millis(1500)), 3)
        );
        for kind in [
            FaultKind::Hang,
            FaultKind::DropConnection,
            FaultKind::TruncatedBody,
            FaultKind::NonJson,
            FaultKind::missing_field("token"),
            FaultKind::replace_field("token", serde_json::json!("ghs_\u{1b}[2J")),
            FaultKind::Oversized(10),
            FaultKind::status_with_headers(503, "x", &[("a", "b")]),
        ] {
            let f = Fault::new(Route::InstallationRepositories, kind, 2);
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(serde_json::from_str::<Fault>(&json).unwrap(), f, "{json}");
        }
        assert_eq!(
            serde_json::to_value(FaultKind::missing_field("expires_at")).unwrap(),
            serde_json::json!({"type": "missing_field", "field": "expires_at"})
        );
        assert!(
            serde_json::from_str::<Fault>(r#"{"route":"nope","kind":{"type":"hang"}}"#).is_err()
        );
    }
}
