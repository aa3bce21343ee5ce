//! The fake's mutable state: clock offset, faults, recorded requests and minted tokens.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{App, FakeConfig, Installation};
use crate::fault::{Fault, FaultKind, Route};

/// One request as the fake received it (control endpoints under `/_fake/` excluded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path without the query string, e.g. `/app/installations/100/access_tokens`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// All headers in arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8; empty when none was sent).
    pub body: String,
    /// When it arrived, by the real clock.
    pub time: SystemTime,
    /// When it arrived, by the fake's clock (real clock + offset).
    pub fake_time: DateTime<Utc>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    #[must_use]
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// An installation access token the fake has minted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintedToken {
    /// `ghs_` followed by 36 alphanumerics.
    pub token: String,
    /// The App that minted it.
    pub app_id: u64,
    /// The installation it acts as.
    pub installation_id: u64,
    /// Expiry by the fake's clock (whole seconds, as sent in `expires_at`).
    pub expires_at: DateTime<Utc>,
    /// The token's permissions.
    pub permissions: BTreeMap<String, String>,
    /// `Some(names)` when the token was scoped to repositories, `None` for the installation's set.
    pub repositories: Option<Vec<String>>,
    /// Real-clock instant of minting (for the activation delay).
    pub minted_at: Instant,
    /// Revoked through `DELETE /installation/token`.
    pub revoked: bool,
}

/// Why an installation token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenRefusal {
    Unknown,
    Revoked,
    Expired,
    NotYetActive,
    InstallationGone,
}

#[derive(Debug)]
struct Inner {
    token_lifetime: Duration,
    activation_delay: Duration,
    faults: VecDeque<Fault>,
    requests: Vec<RecordedRequest>,
    tokens: HashMap<String, MintedToken>,
    mints: usize,
    gone: HashSet<u64>,
}

/// State shared by the server tasks and the [`crate::FakeGithub`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    apps: Vec<(App, Vec<Installation>)>,
    clock_offset: AtomicI64,
    request_seq: AtomicU64,
    verbose: AtomicBool,
    base_url: OnceLock<String>,
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn new(config: FakeConfig) -> Shared {
        Shared {
            apps: config.apps,
            clock_offset: AtomicI64::new(0),
            request_seq: AtomicU64::new(0),
            verbose: AtomicBool::new(false),
            base_url: OnceLock::new(),
            inner: Mutex::new(Inner {
                token_lifetime: config.token_lifetime,
                activation_delay: Duration::ZERO,
                faults: VecDeque::new(),
                requests: Vec::new(),
                tokens: HashMap::new(),
                mints: 0,
                gone: HashSet::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_base_url(&self, url: String) {
        let _ = self.base_url.set(url);
    }

    /// `http://127.0.0.1:PORT`, the fake's own API base (used in `*_url` fields).
    pub(crate) fn base_url(&self) -> &str {
        self.base_url
            .get()
            .map_or("http://127.0.0.1", String::as_str)
    }

    pub(crate) fn set_verbose(&self, on: bool) {
        self.verbose.store(on, Ordering::Relaxed);
    }

    pub(crate) fn verbose(&self) -> bool {
        self.verbose.load(Ordering::Relaxed)
    }

    pub(crate) fn apps(&self) -> &[(App, Vec<Installation>)] {
        &self.apps
    }

    // ---- clock ----

    pub(crate) fn set_clock_offset(&self, secs: i64) {
        self.clock_offset.store(secs, Ordering::SeqCst);
    }

    pub(crate) fn clock_offset(&self) -> i64 {
        self.clock_offset.load(Ordering::SeqCst)
    }

    /// The fake's clock: the real clock plus the offset.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::seconds(self.clock_offset())
    }

    pub(crate) fn next_request_seq(&self) -> u64 {
        self.request_seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    // ---- settings ----

    pub(crate) fn set_token_lifetime(&self, d: Duration) {
        self.lock().token_lifetime = d;
    }

    pub(crate) fn token_lifetime(&self) -> Duration {
        self.lock().token_lifetime
    }

    pub(crate) fn set_activation_delay(&self, d: Duration) {
        self.lock().activation_delay = d;
    }

    pub(crate) fn set_installation_gone(&self, id: u64, gone: bool) {
        let mut inner = self.lock();
        if gone {
            inner.gone.insert(id);
        } else {
            inner.gone.remove(&id);
        }
    }

    pub(crate) fn is_installation_gone(&self, id: u64) -> bool {
        self.lock().gone.contains(&id)
    }

    // ---- faults ----

    /// Queues `fault`; returns the queue length. A fault with `times == 0` is dropped.
    pub(crate) fn push_fault(&self, fault: Fault) -> usize {
        let mut inner = self.lock();
        if fault.times > 0 {
            inner.faults.push_back(fault);
        }
        inner.faults.len()
    }

    /// Empties the fault queue; returns how many faults it held.
    pub(crate) fn clear_faults(&self) -> usize {
        let mut inner = self.lock();
        let n = inner.faults.len();
        inner.faults.clear();
        n
    }

    pub(crate) fn pending_faults(&self) -> Vec<Fault> {
        self.lock().faults.iter().cloned().collect()
    }

    /// Consumes one use of the first queued fault that matches a request on `route`.
    pub(crate) fn take_fault(&self, route: Option<Route>) -> Option<FaultKind> {
        let mut inner = self.lock();
        let index = inner
            .faults
            .iter()
            .position(|f| f.route == Route::Any || Some(f.route) == route)?;
        let fault = &mut inner.faults[index];
        let kind = fault.kind.clone();
        fault.times -= 1;
        if fault.times == 0 {
            inner.faults.remove(index);
        }
        Some(kind)
    }

    // ---- requests ----

    pub(crate) fn record(&self, request: RecordedRequest) {
        self.lock().requests.push(request);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    pub(crate) fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    pub(crate) fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    // ---- tokens ----

    /// Stores a new token for `installation`, expiring `token_lifetime` from now (fake clock),
    /// rounded up to a whole second.
    pub(crate) fn mint(
        &self,
        app_id: u64,
        installation_id: u64,
        permissions: BTreeMap<String, String>,
        repositories: Option<Vec<String>>,
    ) -> MintedToken {
        let now = self.now();
        let mut inner = self.lock();
        let lifetime = TimeDelta::from_std(inner.token_lifetime).unwrap_or(TimeDelta::MAX);
        let exact = now
            .checked_add_signed(lifetime)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut expires_at = DateTime::from_timestamp(exact.timestamp(), 0).unwrap_or(exact);
        if expires_at < exact {
            expires_at += TimeDelta::seconds(1);
        }
        let token = loop {
            let candidate = new_token();
            if !inner.tokens.contains_key(&candidate) {
                break candidate;
            }
        };
        let minted = MintedToken {
            token: token.clone(),
            app_id,
            installation_id,
            expires_at,
            permissions,
            repositories,
            minted_at: Instant::now(),
            revoked: false,
        };
        inner.tokens.insert(token, minted.clone());
        inner.mints += 1;
        minted
    }

    pub(crate) fn mint_count(&self) -> usize {
        self.lock().mints
    }

    pub(crate) fn tokens(&self) -> Vec<MintedToken> {
        let mut all: Vec<MintedToken> = self.lock().tokens.values().cloned().collect();
        all.sort_by_key(|t| t.minted_at);
        all
    }

    /// Checks `token` as GitHub would right now; `include_activation` also applies the
    /// replication lag (a fresh token is refused for `activation_delay`).
    pub(crate) fn check_token(
        &self,
        token: &str,
        include_activation: bool,
    ) -> Result<MintedToken, TokenRefusal> {
        let now = self.now();
        let inner = self.lock();
        let t = inner.tokens.get(token).ok_or(TokenRefusal::Unknown)?;
        if t.revoked {
            return Err(TokenRefusal::Revoked);
        }
        if inner.gone.contains(&t.installation_id) {
            return Err(TokenRefusal::InstallationGone);
        }
        if now >= t.expires_at {
            return Err(TokenRefusal::Expired);
        }
        if include_activation && t.minted_at.elapsed() < inner.activation_delay {
            return Err(TokenRefusal::NotYetActive);
        }
        Ok(t.clone())
    }

    pub(crate) fn revoke(&self, token: &str) {
        if let Some(t) = self.lock().tokens.get_mut(token) {
            t.revoked = true;
        }
    }
}

/// `ghs_` + 36 random alphanumerics, like GitHub's installation tokens.
fn new_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::from("ghs_");
    while out.len() < 40 {
        let mut buf = [0u8; 64];
        aws_lc_rs::rand::fill(&mut buf).expect("system randomness");
        // Rejection sampling keeps the distribution uniform: 248 = 4 * 62.
        for b in buf {
            if out.len() == 40 {
                break;
            }
            if b < 248 {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_look_like_github_installation_tokens() {
        let t = new_token();
        assert_eq!(t.len(), 40);
        assert!(t.starts_with("ghs_"));
        assert!(t[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(t, new_token());
    }

    #[test]
    fn faults_are_consumed_in_order_per_route() {
        let shared = Shared::new(FakeConfig::standard());
        shared.push_fault(Fault::new(Route::AccessTokens, FaultKind::NonJson, 2));
        shared.push_fault(Fault::once(Route::Any, FaultKind::Hang));
        assert_eq!(
            shared.push_fault(Fault::new(Route::App, FaultKind::Hang, 0)),
            2
        );
        assert_eq!(shared.take_fault(Some(Route::App)), Some(FaultKind::Hang));
        assert_eq!(shared.take_fault(Some(Route::App)), None);
        assert_eq!(
            shared.take_fault(Some(Route::AccessTokens)),
            Some(FaultKind::NonJson)
        );
        assert_eq!(
            shared.take_fault(Some(Route::AccessTokens)),
            Some(FaultKind::NonJson)
        );
        assert_eq!(shared.take_fault(Some(Route::AccessTokens)), None);
        assert!(shared.pending_faults().is_empty());
    }

    #[test]
    fn expiry_is_rounded_up_to_whole_seconds() {
        let shared = Shared::new(FakeConfig::standard());
        shared.set_token_lifetime(Duration::from_millis(1500));
        let before = shared.now();
        let t = shared.mint(1234, 100, BTreeMap::new(), None);
        assert_eq!(t.expires_at.timestamp_subsec_nanos(), 0);
        assert!(t.expires_at >= before + TimeDelta::milliseconds(1500));
        assert!(t.expires_at <= before + TimeDelta::milliseconds(2600));
        assert!(shared.check_token(&t.token, true).is_ok());
        shared.set_clock_offset(3);
        assert_eq!(
            shared.check_token(&t.token, true),
            Err(TokenRefusal::Expired)
        );
    }
}
