//! Sockets on SIGHUP: the daemon's reload re-reads the configuration for the token files
//! (`crate::daemon`); this follows the same signal for the sockets. A socket target that is
//! new gets its socket bound, one that is gone has its socket removed and its tokens
//! revoked, one whose settings changed is served afresh (same socket path, new scope, new
//! tokens); unchanged ones keep their socket, cache and connections. Sockets systemd
//! passed stay as they are until a restart: systemd holds them, not the daemon.

use std::sync::{Arc, Mutex};

use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use super::{Served, bind, lock, revoke};
use crate::clock::Clock;
use crate::config::{Config, Target};
use crate::daemon::Loader;
use crate::refresh::Resources;

/// Apply every SIGHUP until aborted.
pub async fn on_sighup(
    served: Arc<Mutex<Vec<Served>>>,
    loader: Loader,
    mut res: Resources,
    clock: Arc<dyn Clock>,
) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot follow SIGHUP for the sockets; a change to them needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        let loaded = loader().and_then(|f| {
            let r = Resources::load(&f, Some(&res))?;
            Ok((f, r))
        });
        match loaded {
            Ok((config, new_res)) => {
                res = new_res;
                let retired = apply(&served, &config, &res, &clock);
                revoke(&retired, "SIGHUP").await;
            }
            // the daemon's own reload reports the problem, once
            Err(_) if !lock(&served).is_empty() => {
                warn!("SIGHUP: the configuration did not load; the sockets stay as they were")
            }
            Err(_) => {}
        }
    }
}

/// What a reload does to one served socket.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Keep,
    /// Its target is gone or changed: stop it (a changed one is then served afresh).
    Retire,
    /// systemd's socket whose target is gone or changed: kept until a restart.
    KeepActivated,
}

fn fate(prev: &Target, activated: bool, config: &Config) -> Fate {
    let now = config
        .targets
        .iter()
        .find(|t| t.name == prev.name && t.socket.is_some());
    match now {
        Some(t) if t == prev => Fate::Keep,
        _ if activated => Fate::KeepActivated,
        _ => Fate::Retire,
    }
}

/// Bring the served sockets in line with `config`; the retired ones, for revocation.
fn apply(
    served: &Mutex<Vec<Served>>,
    config: &Config,
    res: &Resources,
    clock: &Arc<dyn Clock>,
) -> Vec<Served> {
    let mut list = lock(served);
    let mut retired = Vec::new();
    for prev in std::mem::take(&mut *list) {
        match fate(&prev.target, prev.activated(), config) {
            Fate::Keep => list.push(prev),
            Fate::KeepActivated => {
                warn!(
                    target = %prev.target.name,
                    "SIGHUP: this target's socket is systemd's; it is served as before until a restart"
                );
                list.push(prev);
            }
            Fate::Retire => {
                prev.halt();
                retired.push(prev);
            }
        }
    }
    let (mut added, removed) = (0, retired.len());
    for t in config.targets.iter().filter(|t| t.socket.is_some()) {
        if list.iter().any(|s| s.target.name == t.name) {
            continue;
        }
        let path = t.socket.clone().expect("filtered");
        // binding sets the process umask for a moment; the only other threads are
        // tokio's blocking pool (name lookups), which create no files
        match bind(&path, t) {
            Ok(l) => {
                list.push(Served::start(t, l, Some(path), res, clock.clone()));
                added += 1;
            }
            Err(e) => warn!(
                target = %t.name,
                "SIGHUP: socket '{}': {e}; this target is not served",
                path.display()
            ),
        }
    }
    if added + removed + list.len() > 0 {
        info!(
            "SIGHUP: sockets: {added} started, {removed} stopped, {} served",
            list.len()
        );
    }
    retired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(targets: &str) -> Config {
        let text = format!("app_id = 1\nprivate_key_file = \"/k.pem\"\n{targets}");
        crate::config::file::parse(&text, std::path::Path::new("t.toml"), &Default::default())
            .unwrap()
    }

    fn socket_target(name: &str, repos: &str) -> String {
        format!(
            "[[target]]\nname = \"{name}\"\ninstallation_id = 1\nrepositories = [{repos}]\n\
             socket = \"/run/s/{name}/token.sock\"\n"
        )
    }

    #[test]
    fn a_reload_keeps_unchanged_sockets_retires_the_rest_except_systemds() {
        let before = config(&socket_target("a", "\"x\""));
        let prev = &before.targets[0];
        let same = config(&socket_target("a", "\"x\""));
        let rescoped = config(&socket_target("a", "\"x\", \"y\""));
        let gone = config(&socket_target("b", "\"x\""));
        let file_only = config(
            "[[target]]\nname = \"a\"\ninstallation_id = 1\nrepositories = [\"x\"]\n\
             output = \"/o/a.json\"\n",
        );
        assert_eq!(fate(prev, false, &same), Fate::Keep);
        assert_eq!(fate(prev, true, &same), Fate::Keep);
        assert_eq!(fate(prev, false, &rescoped), Fate::Retire);
        assert_eq!(fate(prev, false, &gone), Fate::Retire);
        assert_eq!(
            fate(prev, false, &file_only),
            Fate::Retire,
            "no longer a socket target"
        );
        for c in [&rescoped, &gone, &file_only] {
            assert_eq!(fate(prev, true, c), Fate::KeepActivated);
        }
    }
}
