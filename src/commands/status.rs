//! `status`: read the token file and say whether it is valid, expiring or expired, for whom
//! and until when. Exit 0 valid, 1 expired or expiring, 2 missing or unreadable. Never
//! prints the token.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::durations::format_duration;
use crate::error::exit;
use crate::token_file::{self, Freshness, ReadError};

/// The status of one token file, as a sentence and as JSON, with its exit code.
pub fn report(
    path: &Path,
    min_remaining: Duration,
    now: DateTime<Utc>,
) -> (String, serde_json::Value, i32) {
    let shown = path.display().to_string();
    let file = match token_file::read(path) {
        Ok(f) => f,
        Err(e) => return unreadable(&shown, &e),
    };
    let freshness = file.freshness(now, min_remaining.as_secs() as i64);
    let (state, code, remaining) = match freshness {
        Freshness::Valid { remaining_secs } => ("valid", exit::OK, remaining_secs),
        Freshness::Expiring { remaining_secs } => ("expiring", exit::FAILURE, remaining_secs),
        Freshness::Expired { ago_secs } => ("expired", exit::FAILURE, -ago_secs),
    };
    let who = if file.account.is_empty() {
        String::new()
    } else {
        format!(
            " for {} (installation {}, app {})",
            file.account, file.installation_id, file.app_id
        )
    };
    let when = match freshness {
        Freshness::Expired { ago_secs } => {
            format!("expired at {} ({} ago)", file.expires_at, dur(ago_secs))
        }
        _ => format!("valid until {} ({} left)", file.expires_at, dur(remaining)),
    };
    // relative as well as absolute: "16:44" next to a clock reading 16:44:20 looks overdue
    let refresh_in = (file.refresh_at_unix > 0).then(|| file.refresh_at_unix - now.timestamp());
    // from the token itself, not the file's field: an older writer leaves that out
    let fingerprint = crate::fingerprint::of(file.token.expose());
    let text = format!(
        "{state}: '{shown}' holds a token{who}, {when}; generation {}, fingerprint {fingerprint}{}",
        file.generation,
        refresh_text(&file, refresh_in)
    );
    let value = json!({
        "path": shown,
        "state": state,
        "expires_at": file.expires_at,
        "expires_at_unix": file.expires_at_unix,
        "remaining_secs": remaining,
        "account": file.account,
        "installation_id": file.installation_id,
        "app_id": file.app_id,
        "repository_selection": file.repository_selection,
        "repositories": file.repositories,
        "permissions": file.permissions,
        "generated_at": file.generated_at,
        "refresh_at": file.refresh_at,
        "refresh_in_secs": refresh_in,
        "generation": file.generation,
        "fingerprint": fingerprint,
    });
    (text, value, code)
}

/// A file `status` cannot read as a token file: missing (is the daemon running?) or not one.
fn unreadable(shown: &str, e: &ReadError) -> (String, serde_json::Value, i32) {
    let (state, hint) = match e {
        ReadError::Missing(_) => (
            "missing",
            "; is the daemon running? (systemctl --user status github-token-refresher)",
        ),
        _ => ("unreadable", ""),
    };
    (
        format!("{e}{hint}"),
        json!({"path": shown, "state": state, "error": e.to_string()}),
        exit::NO_TOKEN_FILE,
    )
}

fn dur(secs: i64) -> String {
    format_duration(Duration::from_secs(secs.unsigned_abs()))
}

/// `, next refresh planned … (in …)`, or overdue, or nothing when the file has no plan.
fn refresh_text(file: &token_file::TokenFile, refresh_in: Option<i64>) -> String {
    match refresh_in {
        _ if file.refresh_at.is_empty() => String::new(),
        Some(secs) if secs >= 0 => format!(
            ", next refresh planned {} (in {})",
            file.refresh_at,
            dur(secs.max(1))
        ),
        Some(secs) => format!(
            ", next refresh planned {} ({} ago: overdue, is the daemon running?)",
            file.refresh_at,
            dur(secs)
        ),
        None => format!(", next refresh planned {}", file.refresh_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::token_file::{FileOptions, TokenFile, rfc3339};

    #[test]
    fn states_and_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let min = Duration::from_secs(600);
        assert_eq!(report(&path, min, now).2, exit::NO_TOKEN_FILE);
        std::fs::write(&path, "{").unwrap();
        let (_, v, code) = report(&path, min, now);
        assert_eq!(
            (v["state"].as_str(), code),
            (Some("unreadable"), exit::NO_TOKEN_FILE)
        );
        let exp = now + chrono::Duration::seconds(3000);
        let file = TokenFile::parse(&format!(
            r#"{{"token":"ghs_topsecret","expires_at":"{}","account":"acme"}}"#,
            rfc3339(exp)
        ))
        .unwrap();
        token_file::publish(&path, file, FileOptions::default(), now).unwrap();
        let (text, v, code) = report(&path, min, now);
        assert_eq!((v["state"].as_str(), code), (Some("valid"), exit::OK));
        assert!(
            text.contains("50m left")
                && text.contains("for acme")
                && text.contains(&format!(
                    "fingerprint {}",
                    crate::fingerprint::of("ghs_topsecret")
                )),
            "{text}"
        );
        assert!(!text.contains("topsecret") && !v.to_string().contains("topsecret"));
        let later = now + chrono::Duration::seconds(2700);
        assert_eq!(report(&path, min, later).1["state"], "expiring");
        let (text, _, code) = report(&path, min, now + chrono::Duration::seconds(3100));
        assert_eq!(code, exit::FAILURE);
        assert!(text.starts_with("expired:"), "{text}");
        let _ = Secret::new("x");
    }
}
