//! The refresh pipeline every mode shares: resolve the installation (once per App and
//! installation, shared by all its targets), sign the App JWT (re-signing once when GitHub
//! says our clock is off), mint a scoped token, check that it works, and publish the token
//! file. `run` and `once` take all of it ([`refresh`]), the socket stops before the file
//! ([`mint`]), `check` walks the same steps one by one to report each.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::config::{AppRef, Config, ConfigError, InstallationRef, Target};
use crate::github::{AccessToken, Client, GithubError, Installation, TokenRequest, Trouble};
use crate::jwt::{self, JwtSigner};
use crate::token_file::{self, TokenFile, WriteError, rfc3339};

/// HTTP clients (one per API URL, so connections are reused), JWT signers (one per App,
/// so one JWT serves every target of that App until it nears expiry) and the installations
/// resolved so far (one lookup per App and installation, shared by all its targets).
#[derive(Debug, Clone, Default)]
pub struct Resources {
    clients: HashMap<String, Client>,
    signers: HashMap<AppRef, Arc<JwtSigner>>,
    installations: Installations,
}

/// Which installation, of which App, on which GitHub.
type InstallationKey = (String, AppRef, InstallationRef);

fn installation_key(target: &Target) -> InstallationKey {
    (
        target.api_url.clone(),
        target.app.clone(),
        target.installation.clone(),
    )
}

/// Installations resolved once per (API, App, installation) and shared across targets and
/// tasks: with 1,000 targets on 2 installations, 2 lookups. Concurrent first lookups of one
/// key wait for the first instead of asking too. Dropped with the `Resources` on reload;
/// an entry is forgotten when GitHub says an owner's or repository's installation is gone.
#[derive(Debug, Clone, Default)]
struct Installations(Arc<std::sync::Mutex<HashMap<InstallationKey, Slot>>>);

type Slot = Arc<tokio::sync::Mutex<Option<Resolved>>>;

impl Installations {
    fn slot(&self, key: &InstallationKey) -> Slot {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.clone()).or_default().clone()
    }

    fn forget(&self, key: &InstallationKey) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

impl Resources {
    /// Load every key the configuration names and set up the clients. Clients from
    /// `previous` are kept (with their connections and learned clock offset); keys are always
    /// read again, so that a SIGHUP picks up a rotated key.
    pub fn load(config: &Config, previous: Option<&Resources>) -> Result<Resources, ConfigError> {
        let mut out = Resources::default();
        for t in &config.targets {
            if !out.clients.contains_key(&t.api_url) {
                let client = match previous.and_then(|p| p.clients.get(&t.api_url)) {
                    Some(c) => c.clone(),
                    None => Client::new(&t.api_url, config.http_timeout).map_err(ConfigError)?,
                };
                out.clients.insert(t.api_url.clone(), client);
            }
            if !out.signers.contains_key(&t.app) {
                let key = jwt::load_key(&t.app.key_file)?;
                out.signers.insert(
                    t.app.clone(),
                    Arc::new(JwtSigner::new(t.app.app_id.clone(), key)),
                );
            }
        }
        Ok(out)
    }

    pub fn client(&self, target: &Target) -> &Client {
        &self.clients[&target.api_url]
    }

    pub fn signer(&self, target: &Target) -> &Arc<JwtSigner> {
        &self.signers[&target.app]
    }
}

/// The installation a target mints for, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub id: u64,
    pub account: String,
    pub account_type: String,
    pub repository_selection: String,
}

impl From<&Installation> for Resolved {
    fn from(i: &Installation) -> Self {
        Resolved {
            id: i.id,
            account: i.account_login().to_owned(),
            account_type: i
                .account
                .as_ref()
                .map(|a| a.kind.clone())
                .unwrap_or_default(),
            repository_selection: i.repository_selection.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error("{0}")]
    Sign(String),
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl RefreshError {
    pub fn short(&self) -> String {
        match self {
            RefreshError::Github(e) => e.short(),
            other => other.to_string(),
        }
    }

    /// Retrying won't fix it soon. A directory where the token file belongs needs a person
    /// (and, before a first token, exits 78 rather than retrying forever); other write
    /// errors (disk full, read-only) usually pass.
    pub fn is_permanent(&self) -> bool {
        match self {
            RefreshError::Github(e) => e.is_permanent(),
            RefreshError::Sign(_) => true,
            RefreshError::Write(WriteError::TargetIsDirectory(_) | WriteError::UnsafeDir(_)) => {
                true
            }
            RefreshError::Write(_) => false,
        }
    }
}

/// Everything one refresh needs, cheap to clone into a task.
#[derive(Clone)]
pub struct Ctx {
    pub client: Client,
    pub signer: Arc<JwtSigner>,
    pub clock: Arc<dyn Clock>,
    installations: Installations,
}

impl Ctx {
    pub fn new(res: &Resources, target: &Target, clock: Arc<dyn Clock>) -> Ctx {
        Ctx {
            client: res.client(target).clone(),
            signer: res.signer(target).clone(),
            clock,
            installations: res.installations.clone(),
        }
    }

    /// The target's installation: looked up once per (API, App, installation), then shared.
    /// `fresh` is true when this call asked GitHub. A 404 for an installation found by owner
    /// or repository forgets it, so the next attempt looks again (it may have been
    /// reinstalled under a new id).
    pub async fn installation(&self, target: &Target) -> Result<(Resolved, bool), RefreshError> {
        let slot = self.installations.slot(&installation_key(target));
        let mut cached = slot.lock().await;
        if let Some(r) = cached.as_ref() {
            return Ok((r.clone(), false));
        }
        let r = self.resolve(&target.installation).await?;
        *cached = Some(r.clone());
        Ok((r, true))
    }

    /// After a failed mint: forget an owner's or repository's installation GitHub no longer
    /// knows (404), so that the next attempt resolves it again.
    pub fn forget_installation_after(&self, target: &Target, e: &RefreshError) {
        if let RefreshError::Github(g) = e
            && g.status() == Some(404)
            && !matches!(target.installation, InstallationRef::Id(_))
        {
            self.installations.forget(&installation_key(target));
        }
    }

    /// Now by GitHub's clock.
    pub fn server_now(&self) -> DateTime<Utc> {
        self.client.server_now(self.clock.now())
    }

    /// Call GitHub with the App JWT. When GitHub says `iat`/`exp` are off, the answer's
    /// `Date` header has taught the client GitHub's clock: sign again and retry once.
    pub async fn with_jwt<T, F, Fut>(&self, call: F) -> Result<T, RefreshError>
    where
        F: Fn(crate::secret::Secret) -> Fut,
        Fut: Future<Output = Result<T, GithubError>>,
    {
        let mut skew_retried = false;
        loop {
            let jwt = self
                .signer
                .jwt(self.server_now().timestamp())
                .map_err(RefreshError::Sign)?;
            match call(jwt).await {
                Err(e) if e.trouble() == Trouble::ClockSkew && !skew_retried => {
                    tracing::warn!(
                        clock_offset_secs = self.client.clock_offset(),
                        "GitHub refused the JWT's times ({e}); signing again with GitHub's clock"
                    );
                    self.signer.invalidate();
                    skew_retried = true;
                }
                other => return other.map_err(RefreshError::from),
            }
        }
    }

    pub async fn resolve(&self, installation: &InstallationRef) -> Result<Resolved, RefreshError> {
        let c = &self.client;
        let inst = match installation {
            InstallationRef::Id(id) => {
                self.with_jwt(|jwt| async move { c.installation(&jwt, *id).await })
                    .await?
            }
            InstallationRef::Owner(owner) => {
                self.with_jwt(|jwt| async move { c.installation_for_owner(&jwt, owner).await })
                    .await?
            }
            InstallationRef::Repo { owner, name } => {
                self.with_jwt(|jwt| async move { c.installation_for_repo(&jwt, owner, name).await })
                    .await?
            }
        };
        Ok(Resolved::from(&inst))
    }

    pub async fn mint(
        &self,
        target: &Target,
        installation_id: u64,
    ) -> Result<AccessToken, RefreshError> {
        let scope = TokenRequest {
            repositories: target.repositories.clone(),
            permissions: target.permissions.clone(),
        };
        let c = &self.client;
        let scope = &scope;
        self.with_jwt(|jwt| async move { c.mint(&jwt, installation_id, scope).await })
            .await
    }

    /// When to refresh `token` (local wall clock), with GitHub's clock now: the target's
    /// schedule from the token's expiry by GitHub's clock, with a random jitter.
    pub fn refresh_at(
        &self,
        target: &Target,
        token: &AccessToken,
        jitter_draw: f64,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        let server_now = self.server_now();
        let offset = server_now - self.clock.now();
        let at =
            crate::schedule::next_refresh(&target.policy, server_now, token.expires, jitter_draw)
                - offset;
        (server_now, at)
    }

    /// Check a new token against `GET /installation/repositories`. A token GitHub has just
    /// minted can answer 401 for a few seconds while it replicates: retry 401/403 and
    /// transient errors a few times (≈ 3.5 s in all) before giving up.
    pub async fn verify(&self, token: &AccessToken) -> Result<u64, GithubError> {
        let mut delay = VERIFY_FIRST_PAUSE;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.client.installation_repositories(&token.token).await {
                Ok(list) => return Ok(list.total_count),
                Err(e)
                    if tries < VERIFY_TRIES
                        && (matches!(e.status(), Some(401 | 403))
                            || e.trouble() == Trouble::Transient) =>
                {
                    tracing::debug!(try_number = tries, "new token not accepted yet: {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

pub const VERIFY_TRIES: u32 = 4;

/// The longest one refresh can take when every request runs into the HTTP timeout: resolve
/// and mint (each signed once more after a clock-skew answer), every verification try with
/// its pauses, and a few seconds for the fsyncs of the publish. Before READY the daemon asks
/// systemd for this much time ahead of each attempt, so that `TimeoutStartSec` never kills a
/// first mint that is slow but still progressing.
pub fn attempt_worst_case(http_timeout: Duration) -> Duration {
    const SIGNED_REQUESTS: u32 = 2 * 2;
    let verify_pauses: Duration = (0..VERIFY_TRIES - 1)
        .map(|i| VERIFY_FIRST_PAUSE * 2u32.pow(i))
        .sum();
    http_timeout * (SIGNED_REQUESTS + VERIFY_TRIES) + verify_pauses + PUBLISH_ALLOWANCE
}

const VERIFY_FIRST_PAUSE: Duration = Duration::from_millis(500);
const PUBLISH_ALLOWANCE: Duration = Duration::from_secs(5);

/// Whether the pipeline checks a new token against the API before handing it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The file modes: a token that does not work yet is written anyway, with a warning.
    Warn,
    /// The socket answers at once; its client finds out soon enough.
    Skip,
}

/// A token minted for a target, with the file contents that describe it.
pub struct Minted {
    pub installation: Resolved,
    pub token: AccessToken,
    pub file: TokenFile,
    /// Local wall-clock time to refresh it.
    pub refresh_at: DateTime<Utc>,
    /// GitHub's clock when it was minted.
    pub server_now: DateTime<Utc>,
}

/// The pipeline's first steps, shared by `run`, `once` and the socket: resolve the
/// installation (once per App and installation, shared), sign the JWT and mint, verify.
/// `jitter_draw` in -1..=1 places the next refresh within the jitter (0: the middle).
pub async fn mint(
    ctx: &Ctx,
    target: &Target,
    verify: Verify,
    jitter_draw: f64,
) -> Result<Minted, RefreshError> {
    let minted = mint_steps(ctx, target, verify, jitter_draw).await;
    if let Err(e) = &minted {
        ctx.forget_installation_after(target, e);
    }
    minted
}

async fn mint_steps(
    ctx: &Ctx,
    target: &Target,
    verify: Verify,
    jitter_draw: f64,
) -> Result<Minted, RefreshError> {
    let (installation, fresh) = ctx.installation(target).await?;
    if fresh {
        tracing::info!(installation_id = installation.id, account = %installation.account, "resolved {}", target.installation);
    }
    let token = ctx.mint(target, installation.id).await?;
    if verify == Verify::Warn
        && let Err(e) = ctx.verify(&token).await
    {
        tracing::warn!(
            "the new token was not accepted by GET /installation/repositories ({e}); publishing it anyway"
        );
    }
    let (server_now, refresh_at) = ctx.refresh_at(target, &token, jitter_draw);
    let file = token_file_for(target, &installation, &token, ctx.clock.now(), refresh_at);
    Ok(Minted {
        installation,
        token,
        file,
        refresh_at,
        server_now,
    })
}

/// The whole pipeline for a file target: [`mint`], then publish. Returns what was minted
/// and the file as written (with its generation).
pub async fn refresh(
    ctx: &Ctx,
    target: &Target,
    jitter_draw: f64,
) -> Result<(Minted, TokenFile), RefreshError> {
    let minted = mint(ctx, target, Verify::Warn, jitter_draw).await?;
    let written = publish(target, minted.file.clone(), minted.server_now).await?;
    Ok((minted, written))
}

/// The file contents for a fresh token.
pub fn token_file_for(
    target: &Target,
    resolved: &Resolved,
    token: &AccessToken,
    now: DateTime<Utc>,
    refresh_at: DateTime<Utc>,
) -> TokenFile {
    let repositories = token
        .repositories
        .as_ref()
        .map(|rs| rs.iter().map(|r| r.name.clone()).collect());
    TokenFile {
        token: token.token.clone(),
        expires_at: token.expires_at.clone(),
        expires_at_unix: token.expires.timestamp(),
        generated_at: rfc3339(now),
        generated_at_unix: now.timestamp(),
        app_id: target.app.app_id.clone(),
        installation_id: resolved.id,
        account: resolved.account.clone(),
        permissions: token.permission_levels(),
        repository_selection: if token.repository_selection.is_empty() {
            resolved.repository_selection.clone()
        } else {
            token.repository_selection.clone()
        },
        repositories,
        api_url: target.api_url.clone(),
        refresh_at: rfc3339(refresh_at),
        refresh_at_unix: refresh_at.timestamp(),
        generation: 0,
        fingerprint: crate::fingerprint::of(token.token.expose()),
    }
}

/// Publish on a blocking thread (fsyncs block).
pub async fn publish(
    target: &Target,
    file: TokenFile,
    now: DateTime<Utc>,
) -> Result<TokenFile, RefreshError> {
    let path = target.output.clone();
    let opts = target.file;
    let written = tokio::task::spawn_blocking(move || {
        token_file::prepare_dir(&path, opts)?;
        token_file::publish(&path, file, opts, now)
    })
    .await
    .map_err(|e| RefreshError::Sign(format!("writer task failed: {e}")))??;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_case_of_an_attempt_counts_every_request_at_its_timeout() {
        // resolve ×2, mint ×2, verify ×4 at 30 s, pauses 0.5 + 1 + 2 s, 5 s to publish
        assert_eq!(
            attempt_worst_case(Duration::from_secs(30)),
            Duration::from_millis(8 * 30_000 + 3_500 + 5_000)
        );
        assert!(attempt_worst_case(Duration::from_secs(1)) > Duration::from_secs(8));
    }
}
