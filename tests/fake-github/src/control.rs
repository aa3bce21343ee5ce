//! HTTP control endpoints under `/_fake/` (no auth, not recorded) so shell tests can steer a
//! running `fake-github` binary the way Rust tests steer a [`crate::FakeGithub`] handle.
//!
//! | request | effect / answer |
//! | --- | --- |
//! | `POST /_fake/faults` with a JSON [`crate::Fault`] | queue it; `{"queued": N}` |
//! | `GET /_fake/faults` | the queue, as JSON faults |
//! | `DELETE /_fake/faults` | clear the queue; `{"cleared": N}` |
//! | `POST /_fake/clock-offset` `{"secs": N}` | fake clock = real clock + N s |
//! | `GET /_fake/clock-offset` | `{"secs": N}` |
//! | `POST /_fake/token-lifetime` `{"secs": N}` or `{"ms": N}` | lifetime of new tokens |
//! | `POST /_fake/token-activation-delay` `{"secs": N}` or `{"ms": N}` | replication lag |
//! | `POST /_fake/installations/{id}/gone` `{"gone": bool}` | installation answers 404 |
//! | `GET /_fake/stats` | `{"mints": N, "requests": N, "pending_faults": N, "clock_offset": N}` |
//! | `GET /_fake/tokens/{token}/valid` | `{"valid": bool, "active": bool}` |
//! | `GET /_fake/requests` | recorded requests as JSON |
//! | `DELETE /_fake/requests` | forget recorded requests |

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::{github_time, json_response};
use crate::fault::Fault;
use crate::state::Shared;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/_fake/faults",
            post(push_fault).get(list_faults).delete(clear_faults),
        )
        .route(
            "/_fake/clock-offset",
            post(set_clock_offset).get(get_clock_offset),
        )
        .route("/_fake/token-lifetime", post(set_token_lifetime))
        .route("/_fake/token-activation-delay", post(set_activation_delay))
        .route("/_fake/installations/{id}/gone", post(set_gone))
        .route("/_fake/stats", get(stats))
        .route("/_fake/tokens/{token}/valid", get(token_valid))
        .route("/_fake/requests", get(list_requests).delete(clear_requests))
}

fn ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value)
}

fn bad_request(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "message": message }))
}

#[allow(clippy::result_large_err)]
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(&format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Secs {
    secs: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Span {
    secs: Option<u64>,
    ms: Option<u64>,
}

impl Span {
    fn duration(&self) -> Option<Duration> {
        match (self.secs, self.ms) {
            (Some(s), None) => Some(Duration::from_secs(s)),
            (None, Some(ms)) => Some(Duration::from_millis(ms)),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Gone {
    gone: bool,
}

async fn push_fault(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<Fault>(&body) {
        Ok(fault) => ok(&json!({ "queued": shared.push_fault(fault) })),
        Err(r) => r,
    }
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Response {
    ok(&serde_json::to_value(shared.pending_faults()).unwrap_or(Value::Null))
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    ok(&json!({ "cleared": shared.clear_faults() }))
}

async fn set_clock_offset(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<Secs>(&body) {
        Ok(Secs { secs }) => {
            shared.set_clock_offset(secs);
            ok(&json!({ "secs": secs, "now": github_time(shared.now()) }))
        }
        Err(r) => r,
    }
}

async fn get_clock_offset(State(shared): State<Arc<Shared>>) -> Response {
    ok(&json!({ "secs": shared.clock_offset(), "now": github_time(shared.now()) }))
}

async fn set_token_lifetime(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    set_span(&body, |d| shared.set_token_lifetime(d))
}

async fn set_activation_delay(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    set_span(&body, |d| shared.set_activation_delay(d))
}

/// Reads a `{"secs": …}` or `{"ms": …}` body and hands the duration to `set`; the answer
/// names it in milliseconds.
fn set_span(body: &Bytes, set: impl FnOnce(Duration)) -> Response {
    match parse::<Span>(body).map(|s| s.duration()) {
        Ok(Some(d)) => {
            set(d);
            ok(&json!({ "ms": d.as_millis() as u64 }))
        }
        Ok(None) => bad_request("give exactly one of \"secs\" or \"ms\""),
        Err(r) => r,
    }
}

async fn set_gone(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return bad_request("installation id must be an integer");
    };
    let gone = if body.trim_ascii().is_empty() {
        true
    } else {
        match parse::<Gone>(&body) {
            Ok(g) => g.gone,
            Err(r) => return r,
        }
    };
    shared.set_installation_gone(id, gone);
    ok(&json!({ "id": id, "gone": gone }))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    ok(&json!({
        "mints": shared.mint_count(),
        "requests": shared.request_count(),
        "pending_faults": shared.pending_faults().len(),
        "clock_offset": shared.clock_offset(),
    }))
}

async fn token_valid(State(shared): State<Arc<Shared>>, Path(token): Path<String>) -> Response {
    ok(&json!({
        "valid": shared.check_token(&token, false).is_ok(),
        "active": shared.check_token(&token, true).is_ok(),
    }))
}

async fn list_requests(State(shared): State<Arc<Shared>>) -> Response {
    let items: Vec<Value> = shared
        .requests()
        .into_iter()
        .map(|r| {
            let headers: serde_json::Map<String, Value> = r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({
                "method": r.method,
                "path": r.path,
                "query": r.query,
                "headers": headers,
                "body": r.body,
                "fake_time": github_time(r.fake_time),
            })
        })
        .collect();
    ok(&Value::Array(items))
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> Response {
    shared.clear_requests();
    ok(&json!({ "cleared": true }))
}
