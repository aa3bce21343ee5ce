//! The tokens one socket target hands out: the target's own token (read from its file when
//! the daemon keeps one, else minted on first request) and narrowed tokens, each cached
//! per scope, refreshed on the target's schedule while it is asked for, and dropped
//! (and revoked) when nobody asked for it over a whole refresh interval or when the
//! bounded cache needs its place.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::config::Target;
use crate::pull::scope::Scope;
use crate::refresh::{self, Ctx, Minted, RefreshError, Verify};
use crate::revoke;
use crate::token_file::{self, TokenFile};

/// Scopes cached per target; a new one beyond this evicts (and revokes) the one asked for
/// least recently.
pub const MAX_SCOPES: usize = 16;
/// Mints per target per minute, background refreshes included: a sandbox cycling through
/// scopes gets 429 instead of spending the App's rate limit.
pub const MAX_MINTS_PER_MINUTE: usize = 30;
/// A cached token is served only with at least this long left.
const MIN_LEFT: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// One answer: the token file's JSON and the token's fingerprint (for the audit line).
#[derive(Clone)]
pub struct Answer {
    pub json: Arc<Zeroizing<Vec<u8>>>,
    pub fingerprint: String,
}

/// Why no token: the HTTP status and a message for the client (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

struct Held {
    file: TokenFile,
    answer: Answer,
    refresh_at: DateTime<Utc>,
    refresh_mono: Instant,
    minted: Instant,
}

impl Held {
    fn due(&self, now: DateTime<Utc>) -> bool {
        self.refresh_at <= now || self.refresh_mono <= Instant::now()
    }

    fn usable(&self, now: DateTime<Utc>) -> bool {
        self.file.expires_at() - now > MIN_LEFT
    }
}

struct Entry {
    /// Held across a mint, so concurrent requests for one scope mint once.
    held: tokio::sync::Mutex<Option<Held>>,
    asked: Mutex<Instant>,
}

pub struct Broker {
    pub target: Arc<Target>,
    ctx: Ctx,
    entries: Mutex<HashMap<Scope, Arc<Entry>>>,
    mints: Mutex<VecDeque<Instant>>,
}

impl Broker {
    pub fn new(target: Arc<Target>, ctx: Ctx) -> Broker {
        Broker {
            target,
            ctx,
            entries: Mutex::new(HashMap::new()),
            mints: Mutex::new(VecDeque::new()),
        }
    }

    /// How many tokens this target holds in memory now (tests, metrics).
    pub fn held(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    /// The token for `scope`.
    pub async fn get(self: &Arc<Self>, scope: &Scope) -> Result<Answer, Refusal> {
        if scope.is_default() && self.target.writes_file {
            return self.read_file();
        }
        let entry = self.entry(scope);
        *entry.asked.lock().unwrap() = Instant::now();
        let mut held = entry.held.lock().await;
        let now = self.ctx.clock.now();
        if let Some(h) = held.as_ref().filter(|h| !h.due(now) && h.usable(now)) {
            return Ok(h.answer.clone());
        }
        match self.mint(scope).await {
            Ok(h) => {
                let answer = h.answer.clone();
                *held = Some(h);
                Ok(answer)
            }
            Err(refusal) => match held.as_ref().filter(|h| h.usable(now)) {
                // GitHub is away: the token we have still works for a while
                Some(h) => Ok(h.answer.clone()),
                None => Err(refusal),
            },
        }
    }

    /// The daemon's file for the target's own scope: one token, one truth.
    fn read_file(&self) -> Result<Answer, Refusal> {
        let file = token_file::read(&self.target.output).map_err(|e| Refusal {
            status: 503,
            message: format!("no token yet ({e}); the daemon is minting one, ask again shortly"),
        })?;
        if file.expires_at() <= self.ctx.clock.now() {
            return Err(Refusal {
                status: 503,
                message: "the token has expired and the daemon has not replaced it yet".into(),
            });
        }
        Ok(answer_of(&file))
    }

    fn entry(self: &Arc<Self>, scope: &Scope) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap();
        if let Some(e) = entries.get(scope) {
            return e.clone();
        }
        if entries.len() >= MAX_SCOPES {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| *e.asked.lock().unwrap())
                .map(|(s, _)| s.clone());
            if let Some(old) = oldest {
                let e = entries.remove(&old).expect("present");
                self.evict(old, e, "evicted from the cache by a new scope");
            }
        }
        let e = Arc::new(Entry {
            held: tokio::sync::Mutex::new(None),
            asked: Mutex::new(Instant::now()),
        });
        entries.insert(scope.clone(), e.clone());
        e
    }

    /// Revoke an entry's token in the background (it may be minting: wait for it).
    fn evict(self: &Arc<Self>, scope: Scope, entry: Arc<Entry>, why: &'static str) {
        let me = self.clone();
        tokio::spawn(async move {
            let held = entry.held.lock().await.take();
            if let Some(h) = held {
                let why = format!("{why}: {}", scope.describe());
                revoke::revoke_logged(
                    &me.ctx.client,
                    &h.file.token,
                    revoke::STOP_EACH,
                    &me.target.name,
                    &why,
                )
                .await;
            }
        });
    }

    fn take_mint_slot(&self) -> bool {
        let mut mints = self.mints.lock().unwrap();
        let now = Instant::now();
        while mints
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            mints.pop_front();
        }
        if mints.len() >= MAX_MINTS_PER_MINUTE {
            return false;
        }
        mints.push_back(now);
        true
    }

    async fn mint(&self, scope: &Scope) -> Result<Held, Refusal> {
        if !self.take_mint_slot() {
            return Err(Refusal {
                status: 429,
                message: format!(
                    "more than {MAX_MINTS_PER_MINUTE} new tokens a minute for this socket; \
                     ask for fewer distinct scopes"
                ),
            });
        }
        let target = scope.apply(&self.target);
        let failed = |e: RefreshError| {
            let status = match &e {
                // GitHub refused the scope itself (repository or permission not granted)
                RefreshError::Github(g) if g.status() == Some(422) => 403,
                _ => 502,
            };
            Refusal {
                status,
                message: format!("cannot mint a token: {}", e.short()),
            }
        };
        let Minted {
            installation: resolved,
            file,
            refresh_at,
            ..
        } = refresh::mint(
            &self.ctx,
            &target,
            Verify::Skip,
            rand::random_range(-1.0..=1.0),
        )
        .await
        .map_err(failed)?;
        let now = self.ctx.clock.now();
        let answer = answer_of(&file);
        info!(
            target = %self.target.name,
            installation_id = resolved.id,
            scope = %scope.describe(),
            expires_at = %file.expires_at,
            fingerprint = %answer.fingerprint,
            next_refresh = %refresh_at.format("%H:%M:%S UTC"),
            "minted a token for the socket"
        );
        Ok(Held {
            file,
            answer,
            refresh_at,
            refresh_mono: Instant::now() + (refresh_at - now).to_std().unwrap_or_default(),
            minted: Instant::now(),
        })
    }

    /// One look at the cache: refresh the due tokens that were asked for since they were
    /// minted, drop (and revoke) the due ones nobody asked for.
    pub fn sweep(self: &Arc<Self>) {
        let now = self.ctx.clock.now();
        let mut entries = self.entries.lock().unwrap();
        let mut drop_list = Vec::new();
        for (scope, entry) in entries.iter() {
            let Ok(held) = entry.held.try_lock() else {
                continue; // minting right now
            };
            let Some(h) = held.as_ref() else {
                // a mint that failed and was never retried
                if entry.asked.lock().unwrap().elapsed() > self.target.policy.interval {
                    drop_list.push(scope.clone());
                }
                continue;
            };
            if !h.due(now) {
                continue;
            }
            if *entry.asked.lock().unwrap() > h.minted {
                let (me, scope, entry) = (self.clone(), scope.clone(), entry.clone());
                tokio::spawn(async move { me.refresh(scope, entry).await });
            } else {
                drop_list.push(scope.clone());
            }
        }
        for scope in drop_list {
            if let Some(e) = entries.remove(&scope) {
                self.evict(scope, e, "not asked for since it was minted");
            }
        }
    }

    async fn refresh(self: Arc<Self>, scope: Scope, entry: Arc<Entry>) {
        let mut held = entry.held.lock().await;
        let now = self.ctx.clock.now();
        if held.as_ref().is_some_and(|h| !h.due(now)) {
            return; // a request refreshed it meanwhile
        }
        match self.mint(&scope).await {
            // the superseded token expires on its own: a client may still be using it
            Ok(h) => *held = Some(h),
            Err(r) => warn!(
                target = %self.target.name,
                scope = %scope.describe(),
                "cannot refresh the socket's token: {}", r.message
            ),
        }
    }

    /// At stop: revoke every token minted for the socket (nobody else knows them).
    pub async fn revoke_all(&self) {
        let entries: Vec<(Scope, Arc<Entry>)> = self.entries.lock().unwrap().drain().collect();
        for (scope, entry) in entries {
            if let Some(h) = entry.held.lock().await.take() {
                revoke::revoke_logged(
                    &self.ctx.client,
                    &h.file.token,
                    revoke::STOP_EACH,
                    &self.target.name,
                    &format!("the daemon is stopping: {}", scope.describe()),
                )
                .await;
            }
        }
    }
}

fn answer_of(file: &TokenFile) -> Answer {
    let mut json = serde_json::to_vec_pretty(file).expect("token file serializes");
    json.push(b'\n');
    Answer {
        json: Arc::new(Zeroizing::new(json)),
        fingerprint: crate::fingerprint::of(file.token.expose()),
    }
}
