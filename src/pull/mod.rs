//! Pull mode: a Unix socket per target that answers `GET /token` (optionally narrowed with
//! `?repositories=…&permissions=…`) and `GET /healthz` in small HTTP/1.1, logging every
//! answer with the peer's credentials. Owns binding the socket (mode, group, directory
//! rules), the connection limits and the audit line; tokens come from [`broker`].
//!
//! A socket is meant to be mounted into one sandbox, so its limits are per socket: a
//! sandbox that exhausts them only delays itself, never another sandbox or the refresh loop.

pub mod activation;
pub mod broker;
pub mod http;
pub mod reload;
pub mod scope;

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{Config, ConfigError, Target};
use crate::refresh::{Ctx, Resources};
use crate::token_file;
use broker::{Answer, Broker, Refusal};

/// Connections served at once per socket; more are answered 503 at once and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send its whole request head within this long (slowloris).
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// …and take the answer within this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One target's socket being served.
pub struct Served {
    /// The target as configured when serving began (a reload compares against it).
    pub target: Target,
    pub broker: Arc<Broker>,
    /// The path this daemon bound and so removes at stop; None for systemd's socket.
    bound: Option<PathBuf>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// Serve `t` on `listener` (inside the runtime).
    fn start(
        t: &Target,
        listener: UnixListener,
        bound: Option<PathBuf>,
        res: &Resources,
        clock: Arc<dyn Clock>,
    ) -> Served {
        let broker = Arc::new(Broker::new(Arc::new(t.clone()), Ctx::new(res, t, clock)));
        info!(
            target = %t.name,
            "serving tokens on '{}' ({}; {})",
            t.socket.as_deref().unwrap_or(Path::new("")).display(),
            if bound.is_some() { "bound" } else { "socket from systemd" },
            if t.writes_file { "the file's token, narrowed ones on demand" } else { "minted on first request" }
        );
        Served {
            target: t.clone(),
            tasks: vec![
                tokio::spawn(serve(listener, broker.clone())),
                tokio::spawn(sweep(broker.clone())),
            ],
            broker,
            bound,
        }
    }

    /// Whether the socket is systemd's (fixed for the daemon's life).
    pub fn activated(&self) -> bool {
        self.bound.is_none()
    }

    /// Stop accepting (answers under way finish) and remove the socket if we bound it.
    fn halt(&self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(p) = &self.bound {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The sockets of a running daemon.
pub struct Pull {
    served: Arc<Mutex<Vec<Served>>>,
    reloads: Option<tokio::task::JoinHandle<()>>,
}

impl Pull {
    /// Take the sockets systemd passed (socket activation) or bind every target's socket,
    /// and start serving (inside the runtime). A socket that cannot be set up, or an
    /// inherited one that matches no target, is a configuration error.
    pub fn start(
        config: &Config,
        res: &Resources,
        clock: Arc<dyn Clock>,
    ) -> Result<Pull, ConfigError> {
        // before anything else runs: taking them unsets LISTEN_PID and LISTEN_FDS
        let mut inherited = activation::take()
            .and_then(|i| activation::assign(i, &config.targets))
            .map_err(ConfigError)?;
        let mut served = Vec::new();
        for t in config.targets.iter().filter(|t| t.socket.is_some()) {
            let path = t.socket.clone().expect("filtered");
            let served_one = match inherited.remove(&t.name) {
                Some(inh) => Served::start(t, adopt(inh, t)?, None, res, clock.clone()),
                None => {
                    let listener = bind(&path, t).map_err(|e| {
                        ConfigError(format!(
                            "target '{}': socket '{}': {e}",
                            t.name,
                            path.display()
                        ))
                    })?;
                    // only a socket we created is ours to remove; systemd's stays
                    Served::start(t, listener, Some(path), res, clock.clone())
                }
            };
            served.push(served_one);
        }
        Ok(Pull {
            served: Arc::new(Mutex::new(served)),
            reloads: None,
        })
    }

    /// From now on, a SIGHUP re-reads the configuration with `loader` and adds, removes
    /// or re-scopes bound sockets to match it ([`reload`]).
    pub fn follow_reloads(
        &mut self,
        loader: crate::daemon::Loader,
        res: Resources,
        clock: Arc<dyn Clock>,
    ) {
        self.reloads = Some(tokio::spawn(reload::on_sighup(
            self.served.clone(),
            loader,
            res,
            clock,
        )));
    }

    /// Stop serving, remove the sockets it bound (not systemd's) and revoke the tokens
    /// minted for them.
    pub async fn stop(self) {
        if let Some(r) = &self.reloads {
            r.abort();
        }
        let served = std::mem::take(&mut *lock(&self.served));
        for s in &served {
            s.halt();
        }
        revoke(&served, "stopping").await;
    }
}

/// Revoke every token the stopped sockets handed out (only their sandboxes knew them),
/// within the stop budget.
async fn revoke(stopped: &[Served], when: &str) {
    let all = async {
        for s in stopped {
            s.broker.revoke_all().await;
        }
    };
    if tokio::time::timeout(crate::revoke::STOP_BUDGET, all)
        .await
        .is_err()
    {
        warn!("{when}: gave up revoking the sockets' tokens; they stay valid until they expire");
    }
}

/// The served list; a panic elsewhere while it was held leaves it usable.
fn lock(served: &Mutex<Vec<Served>>) -> std::sync::MutexGuard<'_, Vec<Served>> {
    served
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The directory rule shared with the token file: it must be ours and writable by nobody
/// else, or someone else could replace the socket with their own. Missing: created 0700
/// (0750 with the target's group).
pub fn check_dir(dir: &Path, gid: Option<u32>) -> Result<(), String> {
    // the token file's rules, so the socket and the file share one border
    let opts = token_file::FileOptions {
        mode: if gid.is_some() { 0o640 } else { 0o600 },
        gid,
    };
    token_file::prepare_directory(dir, opts).map_err(|e| e.to_string())
}

/// Create the listening socket at `path`: 0600, or 0660 with the target's group. A stale
/// socket is replaced; a live one (another daemon answers) or any other file is an error.
pub fn bind(path: &Path, target: &Target) -> Result<UnixListener, String> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    check_dir(dir, target.file.gid)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(
                    "another process is listening on it; stop it or choose another path".into(),
                );
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove the stale socket: {e}"))?;
        }
        Ok(_) => return Err("exists and is not a socket; remove it or choose another path".into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.to_string()),
    }
    // created 0600 from the start (no window with a wider mode); the daemon binds its
    // sockets before any other thread runs, so the process-wide umask is briefly ours
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(|e| format!("cannot listen: {e}"))?;
    if let Some(gid) = target.file.gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)))
            .map_err(|e| format!("cannot give it to group {gid}: {e}"))?;
    }
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    UnixListener::from_std(listener).map_err(|e| e.to_string())
}

/// Serve target `t` on a socket systemd passed. Its path, mode and directory are the
/// `.socket` unit's business (`SocketMode=`, `DirectoryMode=`): the daemon neither checks
/// nor removes them, so the socket outlives the daemon and starts it again.
fn adopt(inh: activation::Inherited, t: &Target) -> Result<UnixListener, ConfigError> {
    let fail = |e: io::Error| {
        ConfigError(format!(
            "target '{}': socket from systemd '{}': {e}",
            t.name,
            inh.path.as_deref().unwrap_or(Path::new("")).display()
        ))
    };
    if let (Some(p), Some(want)) = (&inh.path, &t.socket)
        && p != want
    {
        warn!(
            target = %t.name,
            "the socket systemd passed for this target listens on '{}', not on its configured '{}'",
            p.display(),
            want.display()
        );
    }
    inh.listener.set_nonblocking(true).map_err(fail)?;
    UnixListener::from_std(inh.listener).map_err(fail)
}

async fn sweep(broker: Arc<Broker>) {
    let every =
        (broker.target.policy.interval / 4).clamp(Duration::from_millis(200), crate::daemon::NAP);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        broker.sweep();
    }
}

async fn serve(listener: UnixListener, broker: Arc<Broker>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off rather than spin
                warn!(target = %broker.target.name, "socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let broker = broker.clone();
                tokio::spawn(async move {
                    handle(stream, &broker).await;
                    drop(slot);
                });
            }
            Err(_) => {
                // never waits: a full socket buffer just loses the courtesy answer
                let _ = stream.try_write(&http::error_response(
                    503,
                    "too many connections on this socket; retry shortly",
                ));
            }
        }
    }
}

/// Who is on the other end, for the audit line.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub pid: Option<i32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cgroup: String,
}

impl Peer {
    fn of(stream: &UnixStream) -> Peer {
        let Ok(cred) = stream.peer_cred() else {
            return Peer::default();
        };
        let pid = cred.pid();
        Peer {
            pid,
            uid: Some(cred.uid()),
            gid: Some(cred.gid()),
            cgroup: pid.map(cgroup_of).unwrap_or_default(),
        }
    }
}

/// The cgroup path of `pid` (cgroup v2's `0::/…` line), which names the container or unit;
/// bounded and stripped of anything unprintable, since the peer chooses it.
pub fn cgroup_of(pid: i32) -> String {
    let text = std::fs::read(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[..text.len().min(4096)]);
    let line = text
        .lines()
        .find(|l| l.starts_with("0::"))
        .or_else(|| text.lines().next())
        .unwrap_or("");
    let path = line.splitn(3, ':').nth(2).unwrap_or(line);
    path.chars().filter(|c| !c.is_control()).take(256).collect()
}

async fn handle(mut stream: UnixStream, broker: &Arc<Broker>) {
    let peer = Peer::of(&stream);
    let mut path = String::new();
    let mut scope_text = String::new();
    let outcome: Result<Answer, Refusal> =
        match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
            Err(_) => Err(Refusal {
                status: 408,
                message: format!("no complete request within {}s", READ_TIMEOUT.as_secs()),
            }),
            Ok(Err(e)) => Err(Refusal {
                status: e.status(),
                message: e.message(),
            }),
            Ok(Ok(req)) => {
                path = req.path.clone();
                route(&req, broker, &mut scope_text).await
            }
        };
    let (status, bytes, fingerprint) = match &outcome {
        Ok(a) => (
            200,
            zeroize::Zeroizing::new(http::response(200, &a.json)),
            a.fingerprint.as_str(),
        ),
        Err(r) => (
            r.status,
            zeroize::Zeroizing::new(http::error_response(r.status, &r.message)),
            "",
        ),
    };
    let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    let delivered = matches!(sent, Ok(Ok(())));
    if path == "/healthz" && status == 200 {
        return; // probes would drown the audit trail
    }
    let why = outcome
        .as_ref()
        .err()
        .map(|r| r.message.as_str())
        .unwrap_or("");
    info!(
        target = %broker.target.name,
        pid = peer.pid.unwrap_or(0),
        uid = peer.uid.map(i64::from).unwrap_or(-1),
        gid = peer.gid.map(i64::from).unwrap_or(-1),
        cgroup = %peer.cgroup,
        path = %path.escape_debug(),
        scope = %scope_text,
        status,
        fingerprint = %fingerprint,
        delivered,
        "socket answer{}{why}",
        if why.is_empty() { "" } else { ": " }
    );
}

async fn read_head(stream: &mut UnixStream) -> Result<http::Request, http::HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| http::HttpError::Bad("read failed"))?;
        if n == 0 {
            return Err(http::HttpError::Bad(
                "connection closed before a complete request",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(req) = http::parse(&buf)? {
            return Ok(req);
        }
    }
}

async fn route(
    req: &http::Request,
    broker: &Arc<Broker>,
    scope_text: &mut String,
) -> Result<Answer, Refusal> {
    match req.path.as_str() {
        "/healthz" => Ok(Answer {
            json: Arc::new(zeroize::Zeroizing::new(b"{\"status\":\"ok\"}\n".to_vec())),
            fingerprint: String::new(),
        }),
        "/token" => {
            let scope = scope::from_query(&req.query, &broker.target).map_err(|e| match e {
                scope::ScopeError::Malformed(m) => Refusal {
                    status: 400,
                    message: m,
                },
                scope::ScopeError::Broader(m) => Refusal {
                    status: 403,
                    message: m,
                },
            })?;
            *scope_text = scope.describe();
            broker.get(&scope).await
        }
        _ => Err(Refusal {
            status: 404,
            message: "not found: ask GET /token or GET /healthz".into(),
        }),
    }
}
