//! systemd socket activation: the listening Unix sockets a `.socket` unit hands the daemon
//! (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, sd_listen_fds(3)) and which target each
//! one serves. Owns the matching rule; binding is [`super::bind`]'s, serving is the same.
//!
//! Rule: an inherited socket whose name (`FileDescriptorName=`) is a socket target's name
//! serves that target; otherwise the one whose `socket` path is the socket's own path
//! (`ListenStream=`). A socket that matches no target, or a target matched twice, is a
//! configuration error: serving a socket nobody configured, or silently dropping one,
//! would hand tokens to a sandbox the configuration does not name.

use std::collections::HashMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::config::Target;

/// One descriptor systemd passed, with what identifies it.
pub struct Inherited {
    /// Its `FileDescriptorName=` (systemd's default is the socket unit's name).
    pub name: Option<String>,
    /// The path it listens on (`ListenStream=`), when it has one.
    pub path: Option<PathBuf>,
    pub listener: UnixListener,
}

impl Inherited {
    fn describe(&self, index: usize) -> String {
        format!(
            "socket #{index} from systemd (name '{}', path '{}')",
            self.name.as_deref().unwrap_or(""),
            self.path.as_deref().unwrap_or(Path::new("")).display()
        )
    }
}

/// Whether systemd passed descriptors to this very process (not to a parent that forgot to
/// unset the variables): `LISTEN_PID` is our pid and `LISTEN_FDS` is set.
fn activated(listen_pid: Option<&str>, listen_fds: Option<&str>, pid: u32) -> bool {
    listen_fds.is_some() && listen_pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(pid)
}

/// `LISTEN_FDNAMES` split into one name per descriptor (`:`-separated, possibly shorter
/// than the count, empty names meaning none).
fn names(listen_fdnames: Option<&str>, count: usize) -> Vec<Option<String>> {
    let mut given = listen_fdnames.map(|n| n.split(':')).into_iter().flatten();
    (0..count)
        .map(|_| given.next().filter(|n| !n.is_empty()).map(str::to_owned))
        .collect()
}

/// Take the sockets systemd passed to this process, if any. `LISTEN_PID` and `LISTEN_FDS`
/// are unset as they are taken (by `listenfd`), so nothing started later sees them;
/// `LISTEN_FDNAMES` stays, inert without the other two (the daemon starts no processes).
/// Call before any other thread runs: unsetting a variable is not thread-safe.
pub fn take() -> Result<Vec<Inherited>, String> {
    let var = |k: &str| std::env::var(k).ok();
    if !activated(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        std::process::id(),
    ) {
        return Ok(Vec::new());
    }
    let fdnames = var("LISTEN_FDNAMES");
    let mut fds = listenfd::ListenFd::from_env();
    let names = names(fdnames.as_deref(), fds.len());
    let mut out = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let listener = fds
            .take_unix_listener(i)
            .map_err(|e| {
                format!(
                    "socket #{i} from systemd (name '{}'): {e}; the .socket unit must use \
                     ListenStream= with a path",
                    name.as_deref().unwrap_or("")
                )
            })?
            .ok_or_else(|| format!("socket #{i} from systemd: already taken"))?;
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_owned));
        out.push(Inherited {
            name,
            path,
            listener,
        });
    }
    Ok(out)
}

/// Which target each inherited socket serves: target name → its socket.
pub fn assign(
    inherited: Vec<Inherited>,
    targets: &[Target],
) -> Result<HashMap<String, Inherited>, String> {
    let socket_targets: Vec<(&str, &Path)> = targets
        .iter()
        .filter_map(|t| Some((t.name.as_str(), t.socket.as_deref()?)))
        .collect();
    let mut out: HashMap<String, Inherited> = HashMap::new();
    for (i, inh) in inherited.into_iter().enumerate() {
        let Some(target) = match_one(inh.name.as_deref(), inh.path.as_deref(), &socket_targets)
        else {
            return Err(format!(
                "{} matches no target with a socket: set FileDescriptorName= to the target's \
                 name or ListenStream= to its socket path, or remove it from the .socket unit",
                inh.describe(i)
            ));
        };
        if out.contains_key(target) {
            return Err(format!(
                "target '{target}': systemd passed two sockets for it ({} is the second); \
                 give each target one socket",
                inh.describe(i)
            ));
        }
        out.insert(target.to_owned(), inh);
    }
    Ok(out)
}

/// The target a socket named `name` listening on `path` serves: by name first, then by path.
fn match_one<'a>(
    name: Option<&str>,
    path: Option<&Path>,
    targets: &[(&'a str, &Path)],
) -> Option<&'a str> {
    let by_name = name.and_then(|n| targets.iter().find(|(t, _)| *t == n));
    let by_path = || path.and_then(|p| targets.iter().find(|(_, s)| *s == p));
    by_name.or_else(by_path).map(|(t, _)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_descriptors_passed_to_this_very_process_count() {
        assert!(activated(Some("42"), Some("1"), 42));
        assert!(activated(Some(" 42\n"), Some("2"), 42));
        assert!(!activated(Some("41"), Some("1"), 42), "a parent's");
        assert!(
            !activated(None, Some("1"), 42),
            "no LISTEN_PID: not from systemd"
        );
        assert!(!activated(Some("42"), None, 42));
        assert!(!activated(Some("x"), Some("1"), 42));
    }

    #[test]
    fn names_are_one_per_descriptor() {
        assert_eq!(names(None, 2), [None, None]);
        assert_eq!(
            names(Some("a:b"), 2),
            [Some("a".to_owned()), Some("b".to_owned())]
        );
        assert_eq!(names(Some("a"), 2), [Some("a".to_owned()), None]);
        assert_eq!(names(Some(":b:c"), 2), [None, Some("b".to_owned())]);
    }

    #[test]
    fn a_socket_serves_the_target_it_is_named_after_else_the_one_at_its_path() {
        let t = [
            ("agent-1", Path::new("/run/a/token.sock")),
            ("agent-2", Path::new("/run/b/token.sock")),
        ];
        let p = |s: &'static str| Some(Path::new(s));
        assert_eq!(match_one(Some("agent-2"), p("/x"), &t), Some("agent-2"));
        assert_eq!(
            match_one(Some("agent-2"), p("/run/a/token.sock"), &t),
            Some("agent-2"),
            "the name wins"
        );
        assert_eq!(
            match_one(Some("pull.socket"), p("/run/a/token.sock"), &t),
            Some("agent-1"),
            "systemd's default name (the unit's) falls back to the path"
        );
        assert_eq!(match_one(None, p("/run/b/token.sock"), &t), Some("agent-2"));
        assert_eq!(match_one(Some("other"), p("/run/c/token.sock"), &t), None);
        assert_eq!(match_one(None, None, &t), None);
    }
}
