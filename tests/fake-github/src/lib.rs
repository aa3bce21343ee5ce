//! A fake GitHub REST API for testing GitHub App token refreshers on 127.0.0.1.
//!
//! It verifies App JWTs for real (RS256 against the App's public key, GitHub's `iat`/`exp`
//! rules and messages), serves installation discovery, mints `ghs_…` installation tokens
//! with repository/permission scoping and expiry by a shiftable clock, accepts those tokens
//! on `/installation/repositories`, records every request, and injects faults (error
//! statuses, delays, hangs, resets, truncated/non-JSON/incomplete/oversized bodies).
//!
//! ```no_run
//! # async fn demo() {
//! use fake_github::{FakeConfig, FakeGithub, Fault, FaultKind, Route};
//!
//! let github = FakeGithub::start(FakeConfig::standard()).await;
//! github.push_fault(Fault::once(Route::AccessTokens, FaultKind::status(503, "{}")));
//! // point the client at github.url() with FakeConfig::standard().app().key.pkcs1_pem …
//! assert_eq!(github.mint_count(), 0);
//! # }
//! ```
//!
//! The server runs on its own thread and Tokio runtime, so it keeps answering even while a
//! test blocks its own runtime (for example waiting on a child process). Dropping the
//! [`FakeGithub`] stops it and closes every connection.
//!
//! The same server runs as the `fake-github` binary, steerable over HTTP through the
//! `/_fake/` endpoints described in [`control`].
#![forbid(unsafe_code)]

mod api;
mod config;
pub mod control;
mod fault;
mod jwt;
mod key;
mod layer;
mod server;
mod state;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

pub use config::{AccountType, App, FakeConfig, Installation};
pub use fault::{Fault, FaultKind, Route};
pub use key::{TestKey, pem_encode, pkcs1_from_pkcs8};
pub use state::{MintedToken, RecordedRequest};

use state::Shared;

/// A running fake GitHub API on a loopback port. Dropping it shuts the server down.
#[derive(Debug)]
pub struct FakeGithub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGithub {
    /// Starts the fake on `127.0.0.1:0` (a free port).
    ///
    /// # Panics
    /// If the port cannot be bound or the server thread cannot be started.
    pub async fn start(config: FakeConfig) -> FakeGithub {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        FakeGithub::start_on(addr, config)
            .await
            .expect("start fake GitHub on 127.0.0.1")
    }

    /// Starts the fake on `addr`, which must be a loopback address (port 0: any free port).
    ///
    /// # Errors
    /// `InvalidInput` for a non-loopback address; the bind error if `addr` is unavailable.
    pub async fn start_on(addr: SocketAddr, config: FakeConfig) -> io::Result<FakeGithub> {
        FakeGithub::start_blocking(addr, config)
    }

    /// Like [`FakeGithub::start_on`], for callers without an async context.
    ///
    /// # Errors
    /// As [`FakeGithub::start_on`].
    pub fn start_blocking(addr: SocketAddr, config: FakeConfig) -> io::Result<FakeGithub> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fake-github only listens on loopback addresses, not {addr}"),
            ));
        }
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        shared.set_base_url(format!("http://{addr}"));
        let router = api::router(shared.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("fake-github-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => server::run(listener, router, shutdown_rx).await,
                        Err(e) => eprintln!("fake-github: cannot register listener: {e}"),
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(FakeGithub {
            shared,
            addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The API base URL, `http://127.0.0.1:PORT` (clients call `{url}/app` etc.).
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The first App of the configuration (the standard config's only one).
    ///
    /// # Panics
    /// If the configuration had no App.
    #[must_use]
    pub fn app(&self) -> &App {
        &self
            .shared
            .apps()
            .first()
            .expect("FakeConfig has at least one App")
            .0
    }

    /// A JWT for the first App, valid by the fake's clock (`iat` = fake now − 60 s,
    /// `exp` = fake now + 540 s, `iss` = the App id), so it works under any clock offset.
    #[must_use]
    pub fn app_jwt(&self) -> String {
        let now = self.now().timestamp();
        let app = self.app();
        app.jwt_with(serde_json::json!({
            "iat": now - 60,
            "exp": now + 540,
            "iss": app.id.to_string(),
        }))
    }

    /// All Apps with their installations, as configured.
    #[must_use]
    pub fn apps(&self) -> &[(App, Vec<Installation>)] {
        self.shared.apps()
    }

    /// Lifetime of tokens minted from now on.
    pub fn set_token_lifetime(&self, d: Duration) {
        self.shared.set_token_lifetime(d);
    }

    /// Current lifetime of new tokens.
    #[must_use]
    pub fn token_lifetime(&self) -> Duration {
        self.shared.token_lifetime()
    }

    /// Shifts the fake's clock: fake time = real time + `secs`. It drives JWT `iat`/`exp`
    /// checks, the `Date` header, `expires_at` and token expiry.
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.set_clock_offset(secs);
    }

    /// The current clock offset in seconds.
    #[must_use]
    pub fn clock_offset(&self) -> i64 {
        self.shared.clock_offset()
    }

    /// The fake's current time (real clock + offset).
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.now()
    }

    /// Queues a fault. Faults are consumed in queue order: each request takes one use of the
    /// first queued fault whose route matches it. A fault with `times == 0` is ignored.
    pub fn push_fault(&self, f: Fault) {
        self.shared.push_fault(f);
    }

    /// Removes every queued fault.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Faults still queued (with their remaining `times`).
    #[must_use]
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.shared.pending_faults()
    }

    /// Every API request received so far, oldest first (control endpoints excluded).
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Recorded requests with this method and path (path without query string).
    #[must_use]
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// How many `POST …/access_tokens` succeeded (a token was minted). Requests answered by a
    /// fault do not count, except `MissingField`/`ReplaceField`/`Oversized`/`Delay`, which serve the request
    /// normally and then alter or delay the answer.
    #[must_use]
    pub fn mint_count(&self) -> usize {
        self.shared.mint_count()
    }

    /// Every token minted so far, oldest first.
    #[must_use]
    pub fn tokens(&self) -> Vec<MintedToken> {
        self.shared.tokens()
    }

    /// The most recently minted token.
    #[must_use]
    pub fn last_token(&self) -> Option<MintedToken> {
        self.shared.tokens().pop()
    }

    /// Whether `token` was minted here and is neither expired (fake clock), revoked, nor of
    /// a gone installation. Ignores the activation delay; see [`FakeGithub::is_token_active`].
    #[must_use]
    pub fn is_token_valid(&self, token: &str) -> bool {
        self.shared.check_token(token, false).is_ok()
    }

    /// Whether the API would accept `token` right now: valid and past the activation delay.
    #[must_use]
    pub fn is_token_active(&self, token: &str) -> bool {
        self.shared.check_token(token, true).is_ok()
    }

    /// Makes installation `id` answer 404 (discovery, `/app/installations/{id}`, token
    /// minting) and its tokens 401, as after the App is uninstalled; `false` restores it.
    pub fn set_installation_gone(&self, id: u64, gone: bool) {
        self.shared.set_installation_gone(id, gone);
    }

    /// New tokens answer 401 "Bad credentials" for this long after minting (GitHub's
    /// replication lag). Default zero.
    pub fn set_token_activation_delay(&self, d: Duration) {
        self.shared.set_activation_delay(d);
    }

    /// Logs each API request (`METHOD path -> status`) on stderr.
    pub fn set_verbose(&self, on: bool) {
        self.shared.set_verbose(on);
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
