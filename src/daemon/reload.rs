//! SIGHUP: read the configuration and keys again, work out what changed (a pure diff of the
//! old and new targets, unit-tested), then apply it: start added targets, mint changed ones,
//! keep the rest with their tokens, and retire removed ones (revoke, delete or leave their
//! files, as configured).

use tracing::{error, info, warn};

use std::path::Path;

use super::{Daemon, Orphan, TargetState};
use crate::config::{Config, Target};
use crate::notify;
use crate::refresh::Resources;
use crate::token_file;

impl Daemon {
    pub(super) fn reload(&mut self) {
        info!("SIGHUP: reloading configuration and keys");
        notify::reloading();
        let loaded = (self.loader)().and_then(|f| {
            let res = Resources::load(&f, Some(&self.res))?;
            Ok((f, res))
        });
        let status = match loaded {
            Ok((file, res)) => {
                self.apply(file, res);
                format!("reloaded; {}", self.status_line())
            }
            Err(e) => {
                error!("reload rejected, keeping the previous configuration and key: {e}");
                self.reload_note = Some(format!("last reload rejected: {e}"));
                self.status_line()
            }
        };
        self.last_status = status.clone();
        notify::ready(&status);
        self.ready_sent = true;
    }

    fn apply(&mut self, config: Config, res: Resources) {
        self.delete_removed_outputs = config.delete_removed_outputs;
        if self.metrics.as_ref().map(|m| &m.path) != config.metrics_file.as_ref() {
            self.metrics = config.metrics_file.clone().map(crate::metrics::Writer::new);
        }
        let now = self.clock.now();
        let new: Vec<Target> = config
            .targets
            .into_iter()
            .filter(|t| t.writes_file)
            .collect();
        let old_targets: Vec<&Target> = self.targets.iter().map(|t| &*t.target).collect();
        let d = diff(&old_targets, new);
        let mut old: Vec<Option<TargetState>> = std::mem::take(&mut self.targets)
            .into_iter()
            .map(Some)
            .collect();
        for (target, change) in d.changes {
            let prev = match change {
                Change::Added => None,
                Change::Kept(i) | Change::Changed(i) => old[i].take(),
            };
            let state = match (change, prev) {
                (Change::Kept(_), Some(mut prev)) => {
                    if self.source.reload_mints_every_target() {
                        prev.plan(now, now);
                        prev.mint_again = prev.in_flight;
                    }
                    prev
                }
                (Change::Changed(_), Some(prev)) => {
                    self.epochs += 1;
                    let mut state = TargetState::new(target, self.epochs, now);
                    // the file still holds the previous token until the new one lands
                    state.current = prev.current;
                    state.stats = prev.stats;
                    state
                }
                _ => {
                    self.epochs += 1;
                    TargetState::new(target, self.epochs, now)
                }
            };
            self.targets.push(state);
        }
        for gone in old.into_iter().flatten() {
            self.retire(gone);
        }
        self.res = res;
        self.http_timeout = config.http_timeout;
        self.reload_note = None;
        info!(
            added = d.added,
            changed = d.changed,
            kept = d.kept,
            removed = d.removed,
            "configuration reloaded"
        );
    }

    /// A target the new configuration no longer has: revoke its token (`revoke_on_stop`),
    /// delete its file (`delete_removed_outputs`), or leave the file as it is.
    fn retire(&mut self, mut gone: TargetState) {
        let name = gone.target.name.clone();
        let path = gone.target.output.clone();
        if gone.target.revoke.on_stop {
            let client = self.res.client(&gone.target).clone();
            if gone.in_flight {
                self.orphans.push(Orphan {
                    name: name.clone(),
                    epoch: gone.epoch,
                    target: gone.target.clone(),
                    client: client.clone(),
                });
            }
            match gone.current.take() {
                Some(c) => self.revoke_removed(&name, &path, c.token, client),
                None => info!(target_name = %name, "target removed by reload; it held no token"),
            }
        } else if self.delete_removed_outputs {
            self.delete_removed(&name, &path);
        } else {
            info!(target_name = %name, "target removed by reload; '{}' is left as it is", path.display());
        }
    }

    fn delete_removed(&self, name: &str, path: &Path) {
        match self.removable(path) {
            Err(why) => {
                warn!(target_name = %name, "target removed by reload; not deleting '{}': {why}", path.display())
            }
            Ok(()) => match std::fs::remove_file(path) {
                Ok(()) => {
                    info!(target_name = %name, "target removed by reload; deleted '{}'", path.display())
                }
                Err(e) => {
                    warn!(target_name = %name, "target removed by reload; cannot delete '{}': {e}", path.display())
                }
            },
        }
    }
}

/// What a reload does to one target of the new configuration (indices into the old list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Same name, same settings: keeps its state and token.
    Kept(usize),
    /// Same name, other settings: a new state that mints at once, the old token kept until then.
    Changed(usize),
    Added,
}

/// The new targets in order, each with its change, and the counts; old targets named by no
/// new one are removed.
#[derive(Debug, PartialEq, Eq)]
struct Diff {
    changes: Vec<(Target, Change)>,
    added: usize,
    changed: usize,
    kept: usize,
    removed: usize,
}

/// Pure: compare old and new targets by name.
fn diff(old: &[&Target], new: Vec<Target>) -> Diff {
    let mut d = Diff {
        changes: Vec::with_capacity(new.len()),
        added: 0,
        changed: 0,
        kept: 0,
        removed: 0,
    };
    let mut matched = vec![false; old.len()];
    for target in new {
        let change = match old.iter().position(|o| o.name == target.name) {
            Some(i) if *old[i] == target => {
                d.kept += 1;
                Change::Kept(i)
            }
            Some(i) => {
                d.changed += 1;
                Change::Changed(i)
            }
            None => {
                d.added += 1;
                Change::Added
            }
        };
        if let Change::Kept(i) | Change::Changed(i) = change {
            matched[i] = true;
        }
        d.changes.push((target, change));
    }
    d.removed = matched.iter().filter(|m| !**m).count();
    d
}

impl Daemon {
    /// `delete_removed_outputs` deletes only a regular file that is a token file, and never
    /// one that a current target writes (two spellings of one path, a symlinked directory).
    fn removable(&self, path: &std::path::Path) -> Result<(), String> {
        let key = crate::config::file::same_file_key(path);
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| crate::config::file::same_file_key(&t.target.output) == key)
        {
            return Err(format!("target '{}' writes it", t.name()));
        }
        token_file::read(path)
            .map(|_| ())
            .map_err(|e| crate::sanitize::clean(&e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AppRef, InstallationRef};

    fn target(name: &str, installation: u64) -> Target {
        Target {
            name: name.into(),
            app: AppRef {
                app_id: "1".into(),
                key_file: "/k.pem".into(),
            },
            api_url: "http://127.0.0.1:1".into(),
            installation: InstallationRef::Id(installation),
            repositories: Vec::new(),
            permissions: Default::default(),
            output: format!("/run/t/{name}/token.json").into(),
            writes_file: true,
            socket: None,
            file: Default::default(),
            policy: crate::schedule::Policy {
                interval: std::time::Duration::from_secs(2700),
                jitter: std::time::Duration::from_secs(120),
                min_remaining: std::time::Duration::from_secs(600),
            },
            revoke: Default::default(),
        }
    }

    #[test]
    fn a_reload_keeps_same_targets_remints_changed_ones_and_counts_the_rest() {
        let (a, b, c) = (target("a", 1), target("b", 2), target("c", 3));
        let old = [&a, &b, &c];
        let d = diff(&old, vec![target("c", 3), target("b", 20), target("n", 4)]);
        let changes: Vec<(&str, Change)> = d
            .changes
            .iter()
            .map(|(t, ch)| (t.name.as_str(), *ch))
            .collect();
        assert_eq!(
            changes,
            [
                ("c", Change::Kept(2)),
                ("b", Change::Changed(1)),
                ("n", Change::Added)
            ]
        );
        assert_eq!((d.added, d.changed, d.kept, d.removed), (1, 1, 1, 1));
    }

    #[test]
    fn an_empty_reload_removes_everything_and_an_identical_one_nothing() {
        let (a, b) = (target("a", 1), target("b", 2));
        let d = diff(&[&a, &b], Vec::new());
        assert_eq!((d.added, d.changed, d.kept, d.removed), (0, 0, 0, 2));
        let d = diff(&[&a, &b], vec![target("a", 1), target("b", 2)]);
        assert_eq!((d.added, d.changed, d.kept, d.removed), (0, 0, 2, 0));
    }
}
