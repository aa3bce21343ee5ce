//! The consumers' side of pull mode: one `GET /token` over the daemon's Unix socket
//! (blocking, bounded), answered with the token file's JSON.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::token_file::{ReadError, TokenFile};

/// A first request may wait for GitHub to mint (the daemon's HTTP timeout is 30 s).
const TIMEOUT: Duration = Duration::from_secs(40);
/// An answer is a token file: a few hundred bytes.
const MAX_ANSWER: u64 = 64 * 1024;

/// Whether `path` is a socket (rather than a token file).
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Ask the daemon on `sock` for a token, narrowed to `repositories` when given.
pub fn fetch(sock: &Path, repositories: Option<&str>) -> Result<TokenFile, ReadError> {
    let unreadable = |source: io::Error| ReadError::Unreadable {
        path: sock.to_owned(),
        source,
    };
    let mut s = UnixStream::connect(sock).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ReadError::Missing(sock.to_owned()),
        _ => unreadable(e),
    })?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(unreadable)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(unreadable)?;
    let query = match repositories {
        Some(r) => format!(
            "?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("repositories", r)
                .finish()
        ),
        None => String::new(),
    };
    s.write_all(
        format!("GET /token{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .map_err(unreadable)?;
    let mut raw = zeroize::Zeroizing::new(Vec::new());
    s.take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .map_err(unreadable)?;
    let invalid = |reason: String| ReadError::Invalid {
        path: sock.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(&raw).map_err(|_| invalid("the answer is not UTF-8".into()))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("not an HTTP answer".into()))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid("not an HTTP answer".into()))?;
    if status != 200 {
        let why = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(invalid(format!("the daemon answered {status}: {why}")));
    }
    TokenFile::parse(body).map_err(invalid)
}
