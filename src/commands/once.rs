//! `once`: mint and write one token per target, then exit. Transient errors are retried a
//! few times (an init container should not fail on one 502); the rest exit at once.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::{Config, Target};
use crate::error::exit;
use crate::github::GithubError;
use crate::refresh::{Ctx, RefreshError, Resources};
use crate::schedule;

/// Attempts for transient errors before `once` gives up with 69.
pub const ATTEMPTS: u32 = 3;

pub async fn run(config: Config, res: Resources, clock: Arc<dyn Clock>) -> i32 {
    let mut code = exit::OK;
    for target in &config.targets {
        let ctx = Ctx::new(&res, target, clock.clone());
        match mint_and_write(&ctx, target).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                let verdict = crate::error::of_refresh(&e);
                let hint = verdict
                    .hint
                    .map(|h| format!("\n  hint: {h}"))
                    .unwrap_or_default();
                // the target's name only when the user gave it (a configuration file)
                let name = if config.targets.len() > 1
                    || target.name != crate::config::SINGLE_TARGET_NAME
                {
                    format!("{}: ", target.name)
                } else {
                    String::new()
                };
                eprintln!("github-token-refresher: {name}{e}{hint}");
                let c = verdict.exit;
                if code == exit::OK || c == exit::CONFIG {
                    code = c;
                }
            }
        }
    }
    code
}

async fn mint_and_write(ctx: &Ctx, target: &Target) -> Result<String, RefreshError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_once(ctx, target).await {
            Err(RefreshError::Github(e)) if attempt < ATTEMPTS && retryable(&e) => {
                let wait = match e.retry_kind() {
                    crate::github::RetryKind::RateLimited(d) if d <= Duration::from_secs(60) => d,
                    crate::github::RetryKind::RateLimited(_) => return Err(e.into()),
                    _ => schedule::backoff(attempt, rand::random()),
                };
                tracing::warn!(
                    "{e}; retrying in {}",
                    crate::durations::format_duration(wait)
                );
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

fn retryable(e: &GithubError) -> bool {
    e.is_unreachable()
}

async fn try_once(ctx: &Ctx, target: &Target) -> Result<String, RefreshError> {
    let (minted, written) = crate::refresh::refresh(ctx, target, 0.0).await?;
    let inst = minted.installation;
    Ok(format!(
        "wrote '{}': token for {} (installation {}) valid until {}, generation {}, fingerprint {}",
        target.output.display(),
        inst.account,
        inst.id,
        written.expires_at,
        written.generation,
        written.fingerprint
    ))
}
