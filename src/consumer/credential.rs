//! git's credential-helper protocol (`git help credential`, `git help gitcredentials`),
//! as pure functions: read a request, decide, write an answer.
//!
//! Git runs the helper with one operation argument (`get`, `store`, `erase`, or a future
//! one) and writes `key=value` lines on its stdin, ending with a blank line or EOF. For
//! `get` the helper prints the attributes it knows; printing nothing means "not mine" and
//! git asks the next helper (or the user). Only `get` is answered here: the token file is
//! the daemon's, so `store` and `erase` have nothing to change.

use std::io::{self, BufRead, Write};

use chrono::{DateTime, Utc};

use crate::secret::Secret;
use crate::token_file::{Freshness, TokenFile};

/// The username GitHub expects with an installation token over HTTPS.
pub const USERNAME: &str = "x-access-token";

/// The attributes of a request that decide whether the token fits it. Everything else
/// (`password`, `capability[]`, `wwwauth[]`, …) is read and dropped, as the protocol asks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub username: Option<String>,
}

/// Read attributes until a blank line or EOF. Values may hold any byte but newline and NUL;
/// bytes that aren't UTF-8 are kept lossily (they can only fail to match).
pub fn read_request(input: &mut impl BufRead) -> io::Result<Request> {
    let mut req = Request::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let Some((key, value)) = text.split_once('=') else {
            continue;
        };
        let value = value.to_string();
        match key {
            "protocol" => req.protocol = Some(value),
            "host" => req.host = Some(value),
            "path" => req.path = Some(value),
            "username" => req.username = Some(value),
            "url" => apply_url(&mut req, &value),
            _ => {}
        }
    }
    Ok(req)
}

/// `url=` stands for its parts (git parses it the same way before calling a helper; people
/// testing a helper by hand often type it).
fn apply_url(req: &mut Request, url: &str) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (user, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            (Some(user), host)
        }
        None => (None, authority),
    };
    req.protocol = Some(scheme.to_string());
    req.host = Some(host.to_string());
    if let Some(user) = user {
        req.username = Some(user.to_string());
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        req.path = Some(path.to_string());
    }
}

/// The host git uses for the repositories of the API at `api_url`, as git writes it in
/// `host=` (lowercase, with a port only when it isn't the default):
/// `https://api.github.com` → `github.com`; `https://api.acme.ghe.com` → `acme.ghe.com`;
/// GitHub Enterprise Server `https://ghe.example.com/api/v3` → `ghe.example.com`. An empty
/// `api_url` (a file written by an older tool) means github.com.
pub fn git_host_for_api(api_url: &str) -> Option<String> {
    let api_url = api_url.trim();
    if api_url.is_empty() {
        return Some("github.com".into());
    }
    let (scheme, rest) = api_url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_matches('/')),
        None => (rest, ""),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if authority.is_empty() {
        return None;
    }
    let host = normalize_host(scheme, authority);
    let is_ghes = path == "api/v3" || path.starts_with("api/v3/");
    match host.strip_prefix("api.") {
        Some(web) if !is_ghes && !web.is_empty() => Some(web.to_string()),
        _ => Some(host),
    }
}

/// Lowercase, and drop the scheme's default port so `github.com:443` equals `github.com`.
fn normalize_host(scheme: &str, host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return host,
    };
    match host.strip_suffix(default_port) {
        Some(h) => h.to_string(),
        None => host,
    }
}

/// What to do with a `get`.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Answer with the token. `warning` goes to stderr (the token expires soon).
    Answer {
        password: Secret,
        expiry_unix: i64,
        warning: Option<String>,
    },
    /// Not a request this helper serves: print nothing, say nothing.
    NotOurs,
    /// Ours, but there is nothing usable to give: print nothing, say why on stderr.
    Refuse(String),
}

/// Is this request for the token in `file`? Only `https` to the API's own git host; a
/// token is never offered to any other host. A request that already names a user other
/// than `x-access-token` (`https://someone@github.com/…`) wants that user's credential, so
/// it is left to the next helper.
pub fn is_ours(req: &Request, file: &TokenFile) -> bool {
    let (Some(protocol), Some(host)) = (&req.protocol, &req.host) else {
        return false;
    };
    if !protocol.eq_ignore_ascii_case("https") {
        return false;
    }
    if req.username.as_deref().is_some_and(|u| u != USERNAME) {
        return false;
    }
    git_host_for_api(&file.api_url).is_some_and(|ours| normalize_host("https", host) == ours)
}

/// Decide a `get` for `file` at `now`. `path` only names the file in messages.
pub fn decide(
    req: &Request,
    file: &TokenFile,
    path: &std::path::Path,
    now: DateTime<Utc>,
    min_remaining_secs: i64,
) -> Decision {
    if !is_ours(req, file) {
        return Decision::NotOurs;
    }
    if let Err(reason) = super::check_token_text(&file.token) {
        return Decision::Refuse(format!("token file '{}': {reason}", path.display()));
    }
    match file.freshness(now, min_remaining_secs) {
        Freshness::Expired { .. } => Decision::Refuse(super::expired_message(path, file, now)),
        Freshness::Expiring { .. } => Decision::Answer {
            password: file.token.clone(),
            expiry_unix: file.expires_at_unix,
            warning: Some(super::expiring_message(path, file, now)),
        },
        Freshness::Valid { .. } => Decision::Answer {
            password: file.token.clone(),
            expiry_unix: file.expires_at_unix,
            warning: None,
        },
    }
}

/// Write the answer to a `get`. `password_expiry_utc` (git ≥ 2.41) lets git drop the
/// credential itself once it has expired instead of retrying a dead token.
pub fn write_answer(out: &mut impl Write, password: &Secret, expiry_unix: i64) -> io::Result<()> {
    let mut text = zeroize::Zeroizing::new(String::new());
    text.push_str("username=");
    text.push_str(USERNAME);
    text.push_str("\npassword=");
    text.push_str(password.expose());
    text.push_str(&format!("\npassword_expiry_utc={expiry_unix}\n"));
    out.write_all(text.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::t0 as now;
    use std::path::Path;

    fn req(text: &str) -> Request {
        read_request(&mut text.as_bytes()).unwrap()
    }

    fn file(api_url: &str, expires: i64) -> TokenFile {
        let mut f = TokenFile::parse(&format!(
            r#"{{"token":"ghs_abc123","expires_at":"{}","api_url":"{api_url}"}}"#,
            crate::token_file::rfc3339(DateTime::from_timestamp(expires, 0).unwrap())
        ))
        .unwrap();
        f.expires_at_unix = expires;
        f
    }

    const HOUR: i64 = 3600;

    #[test]
    fn reads_until_the_blank_line_and_keeps_only_what_matters() {
        let r = req(
            "protocol=https\r\nhost=github.com\ncapability[]=authtype\nwwwauth[]=Basic realm=\"GitHub\"\npath=acme/repo.git\n\nhost=evil.example\n",
        );
        assert_eq!(r.protocol.as_deref(), Some("https"));
        assert_eq!(r.host.as_deref(), Some("github.com"));
        assert_eq!(r.path.as_deref(), Some("acme/repo.git"));
        assert_eq!(r.username, None);
        // EOF without a blank line ends the request too; a line without '=' is skipped
        let r = req("protocol=https\ngarbage\nhost=github.com");
        assert_eq!(r.host.as_deref(), Some("github.com"));
        // values keep '=' after the first one
        assert_eq!(req("path=a=b\n").path.as_deref(), Some("a=b"));
    }

    #[test]
    fn url_stands_for_its_parts() {
        let r = req("url=https://bob:pw@GitHub.com:443/acme/repo.git\n");
        assert_eq!(r.protocol.as_deref(), Some("https"));
        assert_eq!(r.host.as_deref(), Some("GitHub.com:443"));
        assert_eq!(r.username.as_deref(), Some("bob"));
        assert_eq!(r.path.as_deref(), Some("acme/repo.git"));
        let r = req("url=https://github.com\n");
        assert_eq!((r.host.as_deref(), r.path), (Some("github.com"), None));
    }

    #[test]
    fn git_host_of_each_kind_of_api() {
        assert_eq!(git_host_for_api("").as_deref(), Some("github.com"));
        assert_eq!(
            git_host_for_api("https://api.github.com").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            git_host_for_api("https://API.GitHub.com/").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            git_host_for_api("https://api.acme.ghe.com").as_deref(),
            Some("acme.ghe.com")
        );
        assert_eq!(
            git_host_for_api("https://ghe.example.com/api/v3").as_deref(),
            Some("ghe.example.com")
        );
        assert_eq!(
            git_host_for_api("https://api.corp.example/api/v3/").as_deref(),
            Some("api.corp.example"),
            "a GHES host that happens to start with api. keeps it"
        );
        assert_eq!(
            git_host_for_api("https://ghe.example.com:8443/api/v3").as_deref(),
            Some("ghe.example.com:8443")
        );
        assert_eq!(
            git_host_for_api("https://ghe.example.com:443/api/v3").as_deref(),
            Some("ghe.example.com")
        );
        assert_eq!(
            git_host_for_api("http://127.0.0.1:8080").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(git_host_for_api("not a url"), None);
    }

    #[test]
    fn answers_https_on_the_apis_host_only() {
        let gh = file("https://api.github.com", now().timestamp() + HOUR);
        assert!(is_ours(&req("protocol=https\nhost=github.com\n"), &gh));
        assert!(is_ours(&req("protocol=https\nhost=GITHUB.COM:443\n"), &gh));
        assert!(is_ours(
            &req("protocol=https\nhost=github.com\nusername=x-access-token\n"),
            &gh
        ));
        assert!(
            !is_ours(&req("protocol=http\nhost=github.com\n"), &gh),
            "never over plain http"
        );
        assert!(!is_ours(&req("protocol=https\nhost=gitlab.com\n"), &gh));
        assert!(!is_ours(
            &req("protocol=https\nhost=github.com.evil.example\n"),
            &gh
        ));
        assert!(!is_ours(&req("protocol=https\nhost=api.github.com\n"), &gh));
        assert!(!is_ours(&req("protocol=https\n"), &gh));
        assert!(!is_ours(&req("host=github.com\n"), &gh));
        assert!(
            !is_ours(
                &req("protocol=https\nhost=github.com\nusername=alice\n"),
                &gh
            ),
            "a named user wants their own credential"
        );
        let ghes = file("https://ghe.example.com/api/v3", now().timestamp() + HOUR);
        assert!(is_ours(
            &req("protocol=https\nhost=ghe.example.com\n"),
            &ghes
        ));
        assert!(
            !is_ours(&req("protocol=https\nhost=github.com\n"), &ghes),
            "a GHES token is never sent to github.com"
        );
    }

    #[test]
    fn decisions_by_freshness() {
        let p = Path::new("/s/token.json");
        let r = req("protocol=https\nhost=github.com\n");
        match decide(&r, &file("", now().timestamp() + HOUR), p, now(), 600) {
            Decision::Answer {
                password,
                expiry_unix,
                warning,
            } => {
                assert_eq!(password.expose(), "ghs_abc123");
                assert_eq!(expiry_unix, now().timestamp() + HOUR);
                assert_eq!(warning, None);
            }
            other => panic!("{other:?}"),
        }
        match decide(&r, &file("", now().timestamp() + 120), p, now(), 600) {
            Decision::Answer {
                warning: Some(w), ..
            } => {
                assert!(w.contains("expires in 2m"), "{w}");
                assert!(w.contains("/s/token.json"), "{w}");
            }
            other => panic!("{other:?}"),
        }
        match decide(&r, &file("", now().timestamp() - 90), p, now(), 600) {
            Decision::Refuse(msg) => {
                assert!(msg.contains("expired 1m 30s ago"), "{msg}");
                assert!(!msg.contains("ghs_abc123"));
            }
            other => panic!("{other:?}"),
        }
        let other = req("protocol=https\nhost=example.com\n");
        assert_eq!(
            decide(&other, &file("", now().timestamp() - 90), p, now(), 600),
            Decision::NotOurs
        );
    }

    #[test]
    fn a_token_that_would_break_the_protocol_is_refused() {
        let p = Path::new("/s/token.json");
        let r = req("protocol=https\nhost=github.com\n");
        let mut f = file("", now().timestamp() + HOUR);
        f.token = Secret::new("ghs_a\nhost=evil.example");
        match decide(&r, &f, p, now(), 600) {
            Decision::Refuse(msg) => assert!(!msg.contains("evil"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_answer_is_exactly_three_lines() {
        let mut out = Vec::new();
        write_answer(&mut out, &Secret::new("ghs_abc123"), 1_800_003_600).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "username=x-access-token\npassword=ghs_abc123\npassword_expiry_utc=1800003600\n"
        );
    }
}
