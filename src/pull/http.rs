//! The small HTTP/1.1 the pull socket speaks: a pure, bounded request-head parser (one
//! `GET` per connection, no body) and the few responses the server sends. Written here
//! rather than taken from hyper so that every limit is ours and visible in one screen.

/// The whole request head may be at most this long; a longer one is refused (431).
pub const MAX_HEAD: usize = 8 * 1024;
/// At most this many header lines.
pub const MAX_HEADERS: usize = 32;

/// A parsed request: the path and its query pairs (percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub query: Vec<(String, String)>,
}

/// Why a request head is refused; each maps to one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Not HTTP, or not the HTTP we speak (400).
    Bad(&'static str),
    /// A method other than GET (405).
    Method,
    /// Over [`MAX_HEAD`] or [`MAX_HEADERS`] (431).
    TooLarge,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Bad(_) => 400,
            HttpError::Method => 405,
            HttpError::TooLarge => 431,
        }
    }

    pub fn message(&self) -> String {
        match self {
            HttpError::Bad(why) => format!("bad request: {why}"),
            HttpError::Method => "only GET is served here".into(),
            HttpError::TooLarge => {
                format!("request head over {MAX_HEAD} bytes or {MAX_HEADERS} header lines")
            }
        }
    }
}

/// Parse the request head at the start of `buf`. `Ok(None)`: not complete yet, read more
/// (the caller stops at [`MAX_HEAD`]). A body, if any, is ignored: GET has none.
pub fn parse(buf: &[u8]) -> Result<Option<Request>, HttpError> {
    let Some(head) = head(buf)? else {
        return Ok(None);
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let target = request_line(lines.next().unwrap_or(""))?;
    check_headers(lines)?;
    request(target).map(Some)
}

/// The complete head, within [`MAX_HEAD`] and UTF-8; `None`: not complete yet.
fn head(buf: &[u8]) -> Result<Option<&str>, HttpError> {
    let Some(end) = find_head_end(buf) else {
        return if buf.len() >= MAX_HEAD {
            Err(HttpError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD {
        return Err(HttpError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Bad("head is not UTF-8"))?;
    Ok(Some(head))
}

/// `GET target HTTP/1.x`: the target, not yet checked.
fn request_line(line: &str) -> Result<&str, HttpError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Bad("expected 'GET /path HTTP/1.1'"));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(HttpError::Bad("only HTTP/1.0 and HTTP/1.1"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Bad("malformed method"));
    }
    if method != "GET" {
        return Err(HttpError::Method);
    }
    Ok(target)
}

/// The header lines: at most [`MAX_HEADERS`], each `name: value` with a token name, and
/// none announcing a body. Their values are not used.
fn check_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Result<(), HttpError> {
    let mut headers = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        headers += 1;
        if headers > MAX_HEADERS {
            return Err(HttpError::TooLarge);
        }
        let Some((name, _)) = line.split_once(':') else {
            return Err(HttpError::Bad("header line without ':'"));
        };
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(HttpError::Bad("malformed header name"));
        }
        // a body would be ignored, and with it the framing: refuse it plainly
        if name.eq_ignore_ascii_case("content-length") && line[name.len() + 1..].trim() != "0"
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err(HttpError::Bad("GET takes no body"));
        }
    }
    Ok(())
}

/// The request target as a path and its query pairs.
fn request(target: &str) -> Result<Request, HttpError> {
    // origin form only; curl sends it; an absolute URL is accepted for its path
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or("/"),
        None => target,
    };
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(HttpError::Bad("the request target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(Request {
        path: path.to_owned(),
        query,
    })
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    // "\r\n\r\n", or bare "\n\n" from hand-typed requests (nc)
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A complete response with `body` (JSON), closing the connection.
pub fn response(status: u16, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `{"error": message}` as a response.
pub fn error_response(status: u16, message: &str) -> Vec<u8> {
    let mut body = serde_json::json!({ "error": message }).to_string();
    body.push('\n');
    response(status, body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> Request {
        parse(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn what_curl_sends() {
        let r = ok(
            "GET /token HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(r.path, "/token");
        assert!(r.query.is_empty());
        let r = ok("GET /token?repositories=a%2Cb,c&permissions=contents:read HTTP/1.1\r\n\r\n");
        assert_eq!(
            r.query,
            vec![
                ("repositories".into(), "a,b,c".into()),
                ("permissions".into(), "contents:read".into())
            ]
        );
        assert_eq!(
            ok("GET http://localhost/healthz HTTP/1.0\n\n").path,
            "/healthz"
        );
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"GET /token HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn refusals() {
        let e = |s: &str| parse(s.as_bytes()).unwrap_err().status();
        assert_eq!(e("POST /token HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(e("GET /token\r\n\r\n"), 400);
        assert_eq!(e("GET /token HTTP/2\r\n\r\n"), 400);
        assert_eq!(e("GET token HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(e("GET /token HTTP/1.1\r\nno colon\r\n\r\n"), 400);
        assert_eq!(
            e("GET /token HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
            400
        );
        assert_eq!(
            e("GET /token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(e("\u{16}\u{3}\u{1} binary\r\n\r\n"), 400);
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X-A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(e(&many), 431);
        let long = vec![b'a'; MAX_HEAD];
        assert_eq!(parse(&long), Err(HttpError::TooLarge));
    }

    #[test]
    fn responses_are_framed() {
        let r = String::from_utf8(error_response(403, "no")).unwrap();
        assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{r}");
        assert!(r.contains("Content-Length: 15\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n{\"error\":\"no\"}\n"), "{r}");
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&buf);
        }

        #[test]
        fn never_panics_on_near_requests(
            method in "[A-Z]{0,8}",
            path in "[ -~]{0,64}",
            headers in proptest::collection::vec("[ -~]{0,40}", 0..40),
            cut in 0usize..600,
        ) {
            let text = format!("{method} {path} HTTP/1.1\r\n{}\r\n\r\n", headers.join("\r\n"));
            let bytes = text.as_bytes();
            let r = parse(&bytes[..cut.min(bytes.len())]);
            if let Ok(Some(req)) = r {
                prop_assert!(req.path.starts_with('/'));
                prop_assert_eq!(method, "GET");
            }
        }

        #[test]
        fn a_head_over_the_limit_is_refused(extra in MAX_HEAD..MAX_HEAD + 512) {
            let mut buf = b"GET /token HTTP/1.1\r\nX-Pad: ".to_vec();
            buf.resize(extra, b'a');
            prop_assert_eq!(parse(&buf), Err(HttpError::TooLarge));
        }
    }
}
