//! Revocation: `DELETE /installation/token` (authenticated with the token itself) for a
//! token that must stop working before its hour is up — a target removed or stopped with
//! `revoke_on_stop`, a predecessor past `revoke_superseded_after` — and the `revoke --file`
//! command. Every revocation is bounded in time and logged with the token's fingerprint;
//! a failure is reported, never fatal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tracing::{info, warn};

use crate::config::{ConfigError, Spelling, parse_api_url};
use crate::durations::{format_duration, parse_duration};
use crate::error::exit;
use crate::fingerprint;
use crate::github::Client;
use crate::secret::Secret;
use crate::token_file::{self, ReadError};

/// Stopping never waits longer than this on GitHub for all revocations together.
pub const STOP_BUDGET: Duration = Duration::from_secs(5);
/// Each revocation at stop gives up a little earlier, so that it can say which token.
pub const STOP_EACH: Duration = Duration::from_secs(4);

/// Per target: when its tokens are revoked. Both off by default (see docs/revocation.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revocation {
    /// Revoke the current token and remove the file when the target is removed by a reload
    /// or the daemon stops (SIGTERM/SIGINT).
    pub on_stop: bool,
    /// Revoke the previous token this long after its successor was published.
    pub superseded_after: Option<Duration>,
}

/// Tokens live one hour: a later revocation would never happen before the expiry.
pub const MAX_SUPERSEDED_AFTER: Duration = Duration::from_secs(3600);

/// `revoke_superseded_after` / `--revoke-superseded-after`, named in messages as `sp` says.
pub fn parse_superseded_after(sp: Spelling, s: &str) -> Result<Duration, ConfigError> {
    let d = crate::config::parse_duration_of(sp, "revoke_superseded_after", s)?;
    if d < Duration::from_secs(1) || d >= MAX_SUPERSEDED_AFTER {
        return Err(ConfigError(format!(
            "{}: choose between 1s and 59m (a consumer that read the old token keeps it this \
             long; tokens expire after 1h anyway), e.g. 5m",
            sp.quoted("revoke_superseded_after", s.escape_debug())
        )));
    }
    Ok(d)
}

/// What became of a revocation.
#[derive(Debug)]
pub enum Outcome {
    Revoked,
    /// GitHub answered 401: the token had already expired or been revoked.
    AlreadyInvalid,
    Failed(String),
}

impl Outcome {
    /// The token no longer works.
    pub fn is_done(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }
}

/// Revoke `token`, giving up after `budget`.
pub async fn revoke(client: &Client, token: &Secret, budget: Duration) -> Outcome {
    match tokio::time::timeout(budget, client.revoke(token)).await {
        Ok(Ok(())) => Outcome::Revoked,
        Ok(Err(e)) if e.status() == Some(401) => Outcome::AlreadyInvalid,
        Ok(Err(e)) => Outcome::Failed(e.short()),
        Err(_) => Outcome::Failed(format!(
            "GitHub did not answer within {}",
            format_duration(budget)
        )),
    }
}

/// Revoke `token` of target `name` and log the outcome; `why` says what asked for it.
pub async fn revoke_logged(
    client: &Client,
    token: &Secret,
    budget: Duration,
    name: &str,
    why: &str,
) -> Outcome {
    let fp = fingerprint::of(token.expose());
    let outcome = revoke(client, token, budget).await;
    match &outcome {
        Outcome::Revoked => info!(target = %name, fingerprint = %fp, "revoked the token ({why})"),
        Outcome::AlreadyInvalid => info!(
            target = %name,
            fingerprint = %fp,
            "the token was already invalid ({why}): nothing to revoke"
        ),
        Outcome::Failed(e) => warn!(
            target = %name,
            fingerprint = %fp,
            "cannot revoke the token ({why}): {e}; it stays valid until it expires"
        ),
    }
    outcome
}

/// Remove the token file at `path` if it still holds the token with fingerprint `fp`
/// (a successor written meanwhile is left alone). Returns whether it was removed.
pub fn remove_if_holds(path: &Path, fp: &str) -> std::io::Result<bool> {
    match token_file::read(path) {
        Ok(f) if fingerprint::of(f.token.expose()) == fp => {
            std::fs::remove_file(path).map(|_| true)
        }
        Ok(_) | Err(ReadError::Missing(_)) => Ok(false),
        // not a token file (any more): not ours to judge, leave it
        Err(_) => Ok(false),
    }
}

#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The token file whose token to revoke
    #[arg(long, env = "GITHUB_TOKEN_FILE", value_name = "PATH")]
    pub file: PathBuf,
    /// Remove the file once its token no longer works (left alone if it meanwhile holds
    /// another token)
    #[arg(long)]
    pub remove: bool,
    /// REST API base URL [default: the file's `api_url`, else https://api.github.com]
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// Give up on GitHub after this long
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub timeout: String,
}

pub const REVOKE_EXIT_HELP: &str = "\
Exit status:
  0   the token is revoked, or was already invalid (expired, revoked)
  1   other error (e.g. --remove could not remove the file)
  2   the file is missing or not a token file
  69  GitHub unreachable or answering 5xx: the token may still be valid
  78  bad --api-url or --timeout, or GitHub refused the request otherwise";

/// `github-token-refresher revoke --file PATH`.
pub async fn main(args: RevokeArgs) -> i32 {
    let fail = |code: i32, msg: String| {
        eprintln!("github-token-refresher revoke: {msg}");
        code
    };
    let budget = match parse_duration(&args.timeout) {
        Ok(d) if d >= Duration::from_secs(1) => d,
        _ => {
            return fail(
                exit::CONFIG,
                format!(
                    "--timeout '{}': expected a duration of at least 1s, e.g. 10s",
                    args.timeout.escape_debug()
                ),
            );
        }
    };
    let file = match token_file::read(&args.file) {
        Ok(f) => f,
        Err(e) => return fail(exit::NO_TOKEN_FILE, e.to_string()),
    };
    let client = match client_for(&args, &file, budget) {
        Ok(c) => c,
        Err((code, msg)) => return fail(code, msg),
    };
    let fp = fingerprint::of(file.token.expose());
    let shown = args.file.display();
    if let Err((code, msg)) = revoke_within(&client, &file, &args.file, budget).await {
        return fail(
            code,
            format!("cannot revoke the token in '{shown}' (fingerprint {fp}): {msg}"),
        );
    }
    if args.remove {
        match remove_if_holds(&args.file, &fp) {
            Ok(true) => println!("removed '{shown}'"),
            Ok(false) => println!("'{shown}' now holds another token; left in place"),
            Err(e) => return fail(exit::FAILURE, format!("cannot remove '{shown}': {e}")),
        }
    }
    exit::OK
}

/// The API client: `--api-url`, else the URL the file names, else GitHub's.
fn client_for(
    args: &RevokeArgs,
    file: &token_file::TokenFile,
    budget: Duration,
) -> Result<Client, (i32, String)> {
    let url = match (&args.api_url, file.api_url.trim()) {
        (Some(u), _) => u.clone(),
        (None, "") => crate::config::DEFAULT_API_URL.to_owned(),
        (None, u) => u.to_owned(),
    };
    let url = parse_api_url(Spelling::FLAGS, &url).map_err(|e| {
        let from = if args.api_url.is_some() {
            ""
        } else {
            " (from the file's api_url; pass --api-url to override)"
        };
        (exit::CONFIG, format!("{e}{from}"))
    })?;
    Client::new(&url, budget).map_err(|e| (exit::FAILURE, e))
}

/// Revoke the file's token within `budget`, saying so; a token GitHub already refuses
/// (401) counts as revoked.
async fn revoke_within(
    client: &Client,
    file: &token_file::TokenFile,
    path: &Path,
    budget: Duration,
) -> Result<(), (i32, String)> {
    let fp = fingerprint::of(file.token.expose());
    let shown = path.display();
    match tokio::time::timeout(budget, client.revoke(&file.token)).await {
        Ok(Ok(())) => {
            println!("revoked the token in '{shown}' (fingerprint {fp})");
            Ok(())
        }
        Ok(Err(e)) if e.status() == Some(401) => {
            println!("the token in '{shown}' (fingerprint {fp}) was already invalid");
            Ok(())
        }
        Ok(Err(e)) => Err((crate::error::of_github(&e).exit, e.short())),
        Err(_) => Err((
            exit::UNAVAILABLE,
            format!("GitHub did not answer within {}", format_duration(budget)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superseded_after_is_a_duration_below_an_hour() {
        let key = "revoke_superseded_after";
        assert_eq!(
            parse_superseded_after(Spelling::Key, "5m").unwrap(),
            Duration::from_secs(300)
        );
        for bad in ["0s", "1h", "2h", "5", "soon"] {
            let e = parse_superseded_after(Spelling::Key, bad).unwrap_err().0;
            assert!(e.starts_with(&format!("{key} '{bad}'")), "{e}");
        }
    }

    #[test]
    fn the_file_is_removed_only_while_it_holds_that_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        std::fs::write(
            &path,
            r#"{"token":"ghs_new","expires_at":"2027-01-15T10:00:00Z"}"#,
        )
        .unwrap();
        assert!(!remove_if_holds(&path, &fingerprint::of("ghs_old")).unwrap());
        assert!(path.exists());
        assert!(remove_if_holds(&path, &fingerprint::of("ghs_new")).unwrap());
        assert!(!path.exists());
        assert!(!remove_if_holds(&path, &fingerprint::of("ghs_new")).unwrap());
    }
}
