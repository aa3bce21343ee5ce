//! The install plan: for each target, the files and directories its service must reach
//! (token file and its directory, socket, private key), built from the parsed configuration
//! without I/O. `check --json` reports it with each check's result; `check --paths` prints it
//! as tab-separated lines for shell scripts, so setup.sh asks the binary instead of parsing
//! TOML, environment files or `check`'s human output.

use std::path::Path;

use serde::Serialize;

use crate::config::Target;

/// The JSON document's schema version; bumped on any incompatible change.
pub const VERSION: u32 = 1;

/// What one target needs from the service's sandbox.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TargetPlan<'a> {
    pub name: &'a str,
    /// The token file the daemon keeps fresh; `None` for a socket-only target.
    pub output: Option<&'a Path>,
    /// The socket it serves tokens on (pull mode).
    pub socket: Option<&'a Path>,
    pub private_key_file: &'a Path,
    /// The token file's (and socket's) mode, in octal: "0600" or "0640"/"0660" with a group.
    pub mode: String,
    pub gid: Option<u32>,
    /// Directories the service creates files in (ReadWritePaths=).
    pub read_write: Vec<&'a Path>,
    /// Files the service only reads (ReadOnlyPaths=, or a credential).
    pub read_only: Vec<&'a Path>,
}

pub fn of(t: &Target) -> TargetPlan<'_> {
    let output = t.writes_file.then_some(t.output.as_path());
    let socket = t.socket.as_deref();
    let mut read_write: Vec<&Path> = output
        .iter()
        .chain(socket.iter())
        .filter_map(|p| p.parent())
        .collect();
    read_write.dedup();
    TargetPlan {
        name: &t.name,
        output,
        socket,
        private_key_file: &t.app.key_file,
        mode: format!("{:04o}", t.file.mode),
        gid: t.file.gid,
        read_write,
        read_only: vec![t.app.key_file.as_path()],
    }
}

/// `check --paths`: one line per path, `TARGET<TAB>KIND<TAB>PATH`, KIND one of `output`,
/// `output-dir`, `socket`, `socket-dir`, `key`. A name or path holding a tab or a line break
/// cannot be told apart in this form: it is an error naming the target.
pub fn paths_lines(targets: &[Target]) -> Result<String, String> {
    let mut out = String::new();
    for t in targets {
        let p = of(t);
        let mut rows: Vec<(&str, &Path)> = Vec::new();
        if let Some(o) = p.output {
            rows.push(("output", o));
            rows.extend(o.parent().map(|d| ("output-dir", d)));
        }
        if let Some(s) = p.socket {
            rows.push(("socket", s));
            rows.extend(s.parent().map(|d| ("socket-dir", d)));
        }
        rows.push(("key", p.private_key_file));
        for (kind, path) in rows {
            let path = path
                .to_str()
                .filter(|s| !s.contains(['\t', '\n', '\r']))
                .ok_or_else(|| {
                    format!(
                        "target '{}': its {kind} path '{}' holds a tab, a line break or bytes that \
                     are not UTF-8; choose a plain path",
                        t.name,
                        path.display()
                    )
                })?;
            out.push_str(&format!("{}\t{kind}\t{path}\n", t.name));
        }
    }
    Ok(out)
}
