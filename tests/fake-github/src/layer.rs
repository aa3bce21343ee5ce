//! The middleware in front of every API endpoint: records the request, applies queued
//! faults, enforces `User-Agent`, and adds GitHub's common response headers.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, DATE, USER_AGENT};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use crate::fault::{FaultKind, Route};
use crate::state::{RecordedRequest, Shared};

/// `content-type` of every JSON answer, as GitHub sends it.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// GitHub's answer to a request without `User-Agent` (plain text, not JSON).
pub(crate) const NO_USER_AGENT_MESSAGE: &str = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.\n";

/// Largest request body the fake reads (GitHub's own limit is far larger than any App call).
const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;

/// Marks a response that must not be sent: the connection is reset instead.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AbortConnection;

/// Which fault route a request belongs to (`None`: only `Route::Any` faults apply).
pub(crate) fn classify(method: &Method, path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["app"] => Some(Route::App),
        ["app", "installations"]
        | ["app", "installations", _]
        | ["repos", _, _, "installation"]
        | ["orgs", _, "installation"]
        | ["users", _, "installation"] => Some(Route::Installation),
        ["app", "installations", _, "access_tokens"] if method == Method::POST => {
            Some(Route::AccessTokens)
        }
        ["installation", "repositories"] => Some(Route::InstallationRepositories),
        ["installation", "token"] if method == Method::DELETE => Some(Route::RevokeToken),
        _ => None,
    }
}

/// The middleware. Control endpoints (`/_fake/…`) pass straight through, unrecorded.
pub(crate) async fn github_layer(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if path == "/_fake" || path.starts_with("/_fake/") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let mut resp = crate::api::error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large",
                crate::api::DOCS_REST,
            );
            finish_headers(&mut resp, &shared, None);
            return resp;
        }
    };
    shared.record(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        time: SystemTime::now(),
        fake_time: shared.now(),
    });
    let method = parts.method.clone();
    let api_version = parts.headers.get("x-github-api-version").cloned();
    let request = Request::from_parts(parts, Body::from(body));

    let fault = shared.take_fault(classify(&method, &path));
    let mut response = match fault {
        None => serve(request, next).await,
        Some(kind) => faulted(kind, request, next).await,
    };
    finish_headers(&mut response, &shared, api_version);
    if shared.verbose() {
        eprintln!(
            "fake-github: {method} {path} -> {}",
            response.status().as_u16()
        );
    }
    response
}

/// Normal service: GitHub's `User-Agent` rule, then the endpoint.
async fn serve(request: Request, next: Next) -> Response {
    let has_agent = request
        .headers()
        .get(USER_AGENT)
        .is_some_and(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace));
    if !has_agent {
        let mut resp = Response::new(Body::from(NO_USER_AGENT_MESSAGE));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return resp;
    }
    next.run(request).await
}

async fn faulted(kind: FaultKind, request: Request, next: Next) -> Response {
    match kind {
        FaultKind::Status {
            status,
            body,
            headers,
        } => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value.as_str()),
                ) {
                    resp.headers_mut().insert(name, value);
                }
            }
            resp
        }
        FaultKind::Delay(d) => {
            tokio::time::sleep(d).await;
            serve(request, next).await
        }
        FaultKind::Hang => std::future::pending().await,
        FaultKind::DropConnection => {
            let mut resp = Response::new(Body::empty());
            resp.extensions_mut().insert(AbortConnection);
            resp
        }
        FaultKind::TruncatedBody => {
            let prefix = Bytes::from_static(br#"{"token":"ghs_"#);
            let declared = prefix.len() as u64 + 512;
            let mut resp = Response::new(Body::new(TruncatedBody {
                prefix: Some(prefix),
                pause: None,
                declared,
            }));
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(declared));
            resp
        }
        FaultKind::NonJson => Response::new(Body::from("<html>oops</html>")),
        FaultKind::MissingField(field) => {
            edit_object(serve(request, next).await, |map| {
                map.remove(&field);
            })
            .await
        }
        FaultKind::ReplaceField(field, value) => {
            edit_object(serve(request, next).await, |map| {
                map.insert(field, value);
            })
            .await
        }
        FaultKind::Oversized(size) => {
            let (mut parts, body) = serve(request, next).await.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, Body::new(PaddedBody::new(&bytes, size as u64)))
        }
    }
}

/// The answer with its top-level JSON object changed by `edit` (a body that is not an
/// object is passed on as it is).
async fn edit_object(
    resp: Response,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let new_body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut map)) => {
            edit(&mut map);
            serde_json::to_vec(&map).unwrap_or_else(|_| bytes.to_vec())
        }
        _ => bytes.to_vec(),
    };
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(new_body))
}

/// Adds `date` (fake clock), `content-type`, `x-github-request-id`, API version and rate-limit
/// headers unless the response already has them.
pub(crate) fn finish_headers(
    resp: &mut Response,
    shared: &Shared,
    api_version: Option<HeaderValue>,
) {
    let now = shared.now();
    let status = resp.status();
    let h: &mut HeaderMap = resp.headers_mut();
    let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(v) = HeaderValue::try_from(date) {
        h.entry(DATE).or_insert(v);
    }
    if status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED {
        h.entry(CONTENT_TYPE)
            .or_insert(HeaderValue::from_static(JSON_CONTENT_TYPE));
    }
    let seq = shared.next_request_seq();
    let mut rnd = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut rnd);
    let request_id = format!(
        "{:04X}:{:06X}:{:07X}:{:07X}:{:08X}",
        u16::from_be_bytes([rnd[0], rnd[1]]),
        seq & 0xFF_FFFF,
        u32::from_be_bytes([0, rnd[2], rnd[3], rnd[4]]),
        u32::from_be_bytes([0, rnd[5], rnd[6], rnd[7]]),
        now.timestamp() & 0xFFFF_FFFF,
    );
    insert_default(h, "x-github-request-id", &request_id);
    let version = api_version
        .filter(|v| !v.is_empty())
        .unwrap_or(HeaderValue::from_static("2022-11-28"));
    h.entry("x-github-api-version-selected").or_insert(version);
    insert_default(h, "x-ratelimit-limit", "5000");
    insert_default(h, "x-ratelimit-remaining", "4999");
    insert_default(h, "x-ratelimit-used", "1");
    insert_default(
        h,
        "x-ratelimit-reset",
        &(now.timestamp() + 3600).to_string(),
    );
    insert_default(h, "x-ratelimit-resource", "core");
    insert_default(h, "server", "github.com");
}

fn insert_default(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::try_from(value) {
        h.entry(name).or_insert(v);
    }
}

/// A body that promises `declared` bytes, sends `prefix`, pauses so the bytes reach the
/// wire, then fails — hyper then closes the connection mid-body.
struct TruncatedBody {
    prefix: Option<Bytes>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    declared: u64,
}

impl http_body::Body for TruncatedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let pause = this
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(50))));
        match pause.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "fake-github fault: truncated body",
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.declared)
    }
}

/// Exactly `size` bytes derived from the normal `original` body, streamed in chunks:
/// a JSON object gets a leading `"padding":"aaa…"` member (so it stays valid JSON with all
/// its fields); other bodies get trailing spaces; if `size` is below the original length,
/// `size` bytes of `a`.
struct PaddedBody {
    segments: std::collections::VecDeque<Segment>,
    remaining: u64,
}

enum Segment {
    Bytes(Bytes),
    Repeat(u8, u64),
}

impl PaddedBody {
    const CHUNK: u64 = 64 * 1024;

    fn new(original: &[u8], size: u64) -> PaddedBody {
        let len = original.len() as u64;
        let mut segments = std::collections::VecDeque::new();
        let trimmed = original.trim_ascii();
        let is_object = trimmed.first() == Some(&b'{') && trimmed.last() == Some(&b'}');
        let is_empty_object = is_object && trimmed[1..trimmed.len() - 1].trim_ascii().is_empty();
        const OPEN: &[u8] = br#"{"padding":""#;
        if is_empty_object && size >= OPEN.len() as u64 + 2 {
            segments.push_back(Segment::Bytes(Bytes::from_static(OPEN)));
            segments.push_back(Segment::Repeat(b'a', size - OPEN.len() as u64 - 2));
            segments.push_back(Segment::Bytes(Bytes::from_static(b"\"}")));
        } else if is_object && !is_empty_object && size > len + OPEN.len() as u64 {
            let start = original.iter().position(|&b| b == b'{').unwrap_or(0);
            segments.push_back(Segment::Bytes(Bytes::copy_from_slice(&original[..start])));
            segments.push_back(Segment::Bytes(Bytes::from_static(OPEN)));
            segments.push_back(Segment::Repeat(b'a', size - len - OPEN.len() as u64 - 1));
            segments.push_back(Segment::Bytes(Bytes::from_static(b"\",")));
            segments.push_back(Segment::Bytes(Bytes::copy_from_slice(
                &original[start + 1..],
            )));
        } else if size >= len {
            segments.push_back(Segment::Bytes(Bytes::copy_from_slice(original)));
            segments.push_back(Segment::Repeat(b' ', size - len));
        } else {
            segments.push_back(Segment::Repeat(b'a', size));
        }
        PaddedBody {
            segments,
            remaining: size,
        }
    }
}

impl http_body::Body for PaddedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            let Some(segment) = this.segments.front_mut() else {
                return Poll::Ready(None);
            };
            let chunk = match segment {
                Segment::Bytes(b) => {
                    let b = std::mem::take(b);
                    this.segments.pop_front();
                    b
                }
                Segment::Repeat(byte, count) => {
                    let n = (*count).min(Self::CHUNK);
                    let chunk = Bytes::from(vec![*byte; usize::try_from(n).unwrap_or(0)]);
                    *count -= n;
                    if *count == 0 {
                        this.segments.pop_front();
                    }
                    chunk
                }
            };
            if !chunk.is_empty() {
                this.remaining -= chunk.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util_lite::collect;

    use super::*;

    /// Minimal body collector (avoids a dependency just for tests).
    mod http_body_util_lite {
        use std::pin::Pin;

        use http_body::Body;

        pub(super) fn collect<B: Body<Data = bytes::Bytes> + Unpin>(mut body: B) -> Vec<u8> {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut out = Vec::new();
            loop {
                match Pin::new(&mut body).poll_frame(&mut cx) {
                    std::task::Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            out.extend_from_slice(&data);
                        }
                    }
                    std::task::Poll::Ready(None) => return out,
                    _ => panic!("body did not finish synchronously"),
                }
            }
        }
    }

    #[test]
    fn padded_body_has_exact_size_and_stays_json() {
        let original = br#"{"token":"ghs_x","expires_at":"2026-01-01T00:00:00Z"}"#;
        let body = collect(PaddedBody::new(original, 200_000));
        assert_eq!(body.len(), 200_000);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["token"], "ghs_x");
        assert_eq!(
            v["padding"].as_str().unwrap().len(),
            200_000 - original.len() - 13
        );

        let body = collect(PaddedBody::new(b"{}", 20));
        assert_eq!(body.len(), 20);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap();

        let body = collect(PaddedBody::new(b"[1]", 10));
        assert_eq!(body, b"[1]       ");
        assert_eq!(collect(PaddedBody::new(original, 5)), b"aaaaa");
        // Exactly at the boundary where padding fits with zero `a`s.
        let exact = original.len() as u64 + 13;
        let body = collect(PaddedBody::new(original, exact));
        assert_eq!(body.len() as u64, exact);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap();
    }

    #[test]
    fn routes_are_classified() {
        assert_eq!(classify(&Method::GET, "/app"), Some(Route::App));
        assert_eq!(
            classify(&Method::GET, "/app/installations/100"),
            Some(Route::Installation)
        );
        assert_eq!(
            classify(&Method::GET, "/repos/acme/widgets/installation"),
            Some(Route::Installation)
        );
        assert_eq!(
            classify(&Method::GET, "/orgs/acme/installation"),
            Some(Route::Installation)
        );
        assert_eq!(
            classify(&Method::GET, "/users/octocat/installation"),
            Some(Route::Installation)
        );
        assert_eq!(
            classify(&Method::POST, "/app/installations/100/access_tokens"),
            Some(Route::AccessTokens)
        );
        assert_eq!(
            classify(&Method::GET, "/installation/repositories"),
            Some(Route::InstallationRepositories)
        );
        assert_eq!(classify(&Method::GET, "/user"), None);
        assert_eq!(
            classify(&Method::DELETE, "/installation/token"),
            Some(Route::RevokeToken)
        );
    }
}
