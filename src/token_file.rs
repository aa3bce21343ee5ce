//! The token file: its JSON shape (the token rule itself is `secret::check_token`), reading a
//! file back safely (whatever a sandbox put at the path), checking the output directory,
//! and publishing a new file atomically (temp file with O_EXCL in the same directory,
//! fsync, rename, fsync the directory).

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::sanitize::json_error_without_values;
use crate::secret::{Secret, check_token};

/// What the daemon writes. Consumers in the field read exactly `token`, `expires_at` and
/// `expires_at_unix`; everything else is for people and for `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenFile {
    pub token: Secret,
    /// RFC 3339 UTC, as GitHub returned it.
    pub expires_at: String,
    #[serde(default)]
    pub expires_at_unix: i64,
    #[serde(default)]
    pub generated_at: String,
    #[serde(default)]
    pub generated_at_unix: i64,
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub installation_id: u64,
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    #[serde(default)]
    pub repository_selection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<String>>,
    #[serde(default)]
    pub api_url: String,
    #[serde(default)]
    pub refresh_at: String,
    #[serde(default)]
    pub refresh_at_unix: i64,
    /// Grows by one with every write to this path.
    #[serde(default)]
    pub generation: u64,
    /// The token's [`crate::fingerprint`], to trace a token found elsewhere to this file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
}

/// How fresh a token file is at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// More than `min_remaining` left.
    Valid {
        remaining_secs: i64,
    },
    /// Still valid, but less than `min_remaining` left.
    Expiring {
        remaining_secs: i64,
    },
    Expired {
        ago_secs: i64,
    },
}

impl TokenFile {
    /// The expiry as a time. Every `TokenFile` holds a representable one (`parse` derives
    /// `expires_at_unix` from the RFC 3339 text; the daemon from the minted token's parsed
    /// time); were it not, the file counts as expired long ago, never as valid.
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.expires_at_unix, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    pub fn freshness(&self, now: DateTime<Utc>, min_remaining_secs: i64) -> Freshness {
        let remaining = self.expires_at_unix - now.timestamp();
        if remaining <= 0 {
            Freshness::Expired {
                ago_secs: -remaining,
            }
        } else if remaining < min_remaining_secs {
            Freshness::Expiring {
                remaining_secs: remaining,
            }
        } else {
            Freshness::Valid {
                remaining_secs: remaining,
            }
        }
    }

    /// Parse and check a file's text. Accepts files with only `token` and `expires_at`
    /// (older tools write no more), filling `expires_at_unix` from `expires_at`.
    pub fn parse(text: &str) -> Result<TokenFile, String> {
        let mut file: TokenFile = serde_json::from_str(text)
            .map_err(|e| format!("not a token file: {}", json_error_without_values(&e)))?;
        check_token(file.token.expose()).map_err(|why| format!("not a token file: {why}"))?;
        let parsed = DateTime::parse_from_rfc3339(&file.expires_at)
            .map_err(|_| "not a token file: \"expires_at\" is not an RFC 3339 time".to_string())?;
        // the text is what GitHub sent; a number that disagrees (or would overflow the
        // arithmetic on it) is not believed
        file.expires_at_unix = parsed.timestamp();
        file.clean_text();
        Ok(file)
    }

    /// Anyone who can write the shared directory wrote this file: its text fields reach
    /// `status` output and messages only through [`crate::sanitize::clean`].
    fn clean_text(&mut self) {
        use crate::sanitize::clean;
        for s in [
            &mut self.expires_at,
            &mut self.generated_at,
            &mut self.app_id,
            &mut self.account,
            &mut self.repository_selection,
            &mut self.api_url,
            &mut self.refresh_at,
        ] {
            *s = clean(s);
        }
        self.permissions = std::mem::take(&mut self.permissions)
            .into_iter()
            .map(|(k, v)| (clean(&k), clean(&v)))
            .collect();
        if let Some(repos) = &mut self.repositories {
            for r in repos {
                *r = clean(r);
            }
        }
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("token file '{0}' does not exist")]
    Missing(PathBuf),
    #[error("cannot read token file '{path}': {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("token file '{path}': {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// Not a regular file, or far too large to be one of ours.
    #[error("'{path}' is not a token file: it is {what}")]
    NotAFile { path: PathBuf, what: &'static str },
}

/// A token file is well under 4 KiB; a read never takes more than this.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Whether a read follows a symbolic link at the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The daemon and `status`: the daemon never writes a link, so one at the path was put
    /// there by someone else.
    Never,
    /// Consumers in a container (Kubernetes projected volumes are symbolic links).
    Symlinks,
}

/// Read and parse the token file at `path` without following a symbolic link there.
pub fn read(path: &Path) -> Result<TokenFile, ReadError> {
    read_with(path, Follow::Never)
}

/// Read and parse the token file at `path`, following a symbolic link there.
pub fn read_following(path: &Path) -> Result<TokenFile, ReadError> {
    read_with(path, Follow::Symlinks)
}

/// The one safe read every reader uses: open without blocking (a FIFO at the path must
/// not hang the reader), `fstat` the open file and accept only a regular file, and read at
/// most [`MAX_FILE_BYTES`] (a link to `/dev/zero` or a huge file must not exhaust memory).
pub fn read_with(path: &Path, follow: Follow) -> Result<TokenFile, ReadError> {
    let text = read_bounded(path, follow)?;
    TokenFile::parse(&text).map_err(|reason| ReadError::Invalid {
        path: path.to_owned(),
        reason,
    })
}

/// Open without blocking on a FIFO, without acquiring a terminal, and (unless `follow`)
/// without following a symbolic link at the path.
fn open_for_reading(path: &Path, follow: Follow) -> Result<File, ReadError> {
    use rustix::fs::OFlags;
    let mut flags = OFlags::NONBLOCK | OFlags::NOCTTY;
    if follow == Follow::Never {
        flags |= OFlags::NOFOLLOW;
    }
    match OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ReadError::Missing(path.to_owned())),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            Err(ReadError::NotAFile {
                path: path.to_owned(),
                what: "a symbolic link",
            })
        }
        Err(source) => Err(ReadError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// What the path holds when it is not a regular file, in the words of an error.
fn not_regular(kind: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        return None;
    }
    Some(if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    })
}

fn read_bounded(path: &Path, follow: Follow) -> Result<zeroize::Zeroizing<String>, ReadError> {
    let not_a_file = |what| ReadError::NotAFile {
        path: path.to_owned(),
        what,
    };
    let mut file = open_for_reading(path, follow)?;
    let meta = file.metadata().map_err(|source| ReadError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    if let Some(what) = not_regular(meta.file_type()) {
        return Err(not_a_file(what));
    }
    let too_large = "larger than 64 KiB";
    if meta.size() > MAX_FILE_BYTES {
        return Err(not_a_file(too_large));
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(meta.size() as usize + 1));
    (&mut file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(not_a_file(too_large));
    }
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(zeroize::Zeroizing::new(text)),
        Err(e) => {
            drop(zeroize::Zeroizing::new(e.into_bytes()));
            Err(ReadError::Invalid {
                path: path.to_owned(),
                reason: "not a token file: not UTF-8 text".into(),
            })
        }
    }
}

/// Mode and group of the published file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    pub mode: u32,
    pub gid: Option<u32>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            mode: 0o600,
            gid: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("refusing to write a token that is already expired (expires_at {0})")]
    AlreadyExpired(String),
    #[error("'{0}' is a directory; remove it or choose another --output")]
    TargetIsDirectory(PathBuf),
    #[error("cannot create directory '{path}': {source} (create it, or choose another --output)")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write token file in '{dir}': {source}")]
    Io { dir: PathBuf, source: io::Error },
    /// The directory lets someone else replace the file: refused like `ssh` refuses a
    /// group-writable `~/.ssh`.
    #[error("{0}")]
    UnsafeDir(String),
}

impl WriteError {
    fn io(dir: &Path, source: io::Error) -> Self {
        WriteError::Io {
            dir: dir.to_owned(),
            source,
        }
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "token.json".into());
    format!(".{name}.tmp-")
}

/// Create the token file's directory when it is missing: 0700, or 0750 with the file's
/// group when the file is group-readable (a group that can't enter the directory could not
/// read the file). An existing directory is left as it is.
pub fn prepare_dir(path: &Path, opts: FileOptions) -> Result<(), WriteError> {
    prepare_directory(parent_of(path), opts)
}

/// [`prepare_dir`] for the directory itself (the pull socket's directory follows the same rule).
pub fn prepare_directory(dir: &Path, opts: FileOptions) -> Result<(), WriteError> {
    if !dir.is_dir() {
        create_dir(dir, opts)?;
    }
    check_dir(dir)
}

/// Refuse an output directory that another user, or a group, can write (sticky or not: a
/// sticky `/tmp` still lets anyone create the name first), or that belongs to another user
/// (root aside). The error names the directory and the command that fixes it.
pub fn check_dir(dir: &Path) -> Result<(), WriteError> {
    let meta = fs::metadata(dir).map_err(|e| WriteError::io(dir, e))?;
    let me = rustix::process::geteuid().as_raw();
    let shown = dir.display();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(WriteError::UnsafeDir(format!(
            "output directory '{shown}' belongs to uid {}, not to this user (uid {me}): \
             another user could replace the token file; run: chown {me} '{shown}' \
             (or choose another --output)",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, false) => "its group",
            (false, true) => "all users",
            _ => "its group and all users",
        };
        return Err(WriteError::UnsafeDir(format!(
            "output directory '{shown}' is writable by {who} (mode {mode:04o}): they could \
             replace the token file; run: chmod go-w '{shown}' (or choose a directory of \
             your own as --output)"
        )));
    }
    Ok(())
}

fn create_dir(dir: &Path, opts: FileOptions) -> Result<(), WriteError> {
    let group_reads = opts.mode & 0o040 != 0;
    let mode = if group_reads { 0o750 } else { 0o700 };
    let fail = |source| WriteError::CreateDir {
        path: dir.to_owned(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(fail)?;
    // the umask may have narrowed the mode; the group is the file's
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(fail)?;
    if let (true, Some(gid)) = (group_reads, opts.gid) {
        std::os::unix::fs::chown(dir, None, Some(gid)).map_err(fail)?;
    }
    Ok(())
}

/// Remove temp files a crash left beside `path`. Returns how many were removed.
pub fn remove_stale_temps(path: &Path) -> usize {
    let prefix = temp_prefix(path);
    let Ok(entries) = fs::read_dir(parent_of(path)) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// Publish `file` at `path`: its `generation` becomes one more than the current file's,
/// and a token that has already expired is refused, so a reader only ever sees the old
/// complete file or the new complete file, and never a worse one.
pub fn publish(
    path: &Path,
    mut file: TokenFile,
    opts: FileOptions,
    now: DateTime<Utc>,
) -> Result<TokenFile, WriteError> {
    if file.expires_at_unix <= now.timestamp() {
        return Err(WriteError::AlreadyExpired(file.expires_at));
    }
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(WriteError::TargetIsDirectory(path.to_owned()));
    }
    let previous = read(path).map(|f| f.generation).unwrap_or(0);
    // the previous file may come from the sandbox: u64::MAX must not overflow
    file.generation = file.generation.max(previous).saturating_add(1);
    let mut bytes = serde_json::to_vec_pretty(&file).expect("token file serializes");
    bytes.push(b'\n');
    let bytes = zeroize::Zeroizing::new(bytes);
    write_atomic(path, &bytes, opts)?;
    Ok(file)
}

/// The atomic write itself: O_EXCL temp file (never follows a symlink) in the target's
/// directory, write, fsync, rename over the target (a symlink there is replaced, not
/// followed), fsync the directory. The temp file is removed on any failure.
pub fn write_atomic(path: &Path, bytes: &[u8], opts: FileOptions) -> Result<(), WriteError> {
    let dir = parent_of(path);
    let temp = dir.join(format!(
        "{}{}-{:016x}",
        temp_prefix(path),
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(opts.mode)
            .open(&temp)?;
        if let Some(gid) = opts.gid {
            std::os::unix::fs::fchown(&f, None, Some(gid))?;
        }
        // the umask may have narrowed the mode; set it exactly
        f.set_permissions(fs::Permissions::from_mode(opts.mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        if e.raw_os_error() == Some(21) {
            // EISDIR: something made a directory at the target meanwhile
            WriteError::TargetIsDirectory(path.to_owned())
        } else {
            WriteError::io(dir, e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::t0 as now;

    fn sample(expires: i64) -> TokenFile {
        TokenFile {
            token: Secret::new("ghs_sample"),
            expires_at: rfc3339(DateTime::from_timestamp(expires, 0).unwrap()),
            expires_at_unix: expires,
            generated_at: String::new(),
            generated_at_unix: 0,
            app_id: "1".into(),
            installation_id: 2,
            account: "acme".into(),
            permissions: BTreeMap::new(),
            repository_selection: "all".into(),
            repositories: None,
            api_url: String::new(),
            refresh_at: String::new(),
            refresh_at_unix: 0,
            generation: 0,
            fingerprint: String::new(),
        }
    }

    /// `publish` with the default file options at `now()`, of a sample expiring at `expires`.
    fn publish_sample(path: &Path, expires: i64) -> Result<TokenFile, WriteError> {
        publish(path, sample(expires), FileOptions::default(), now())
    }

    #[test]
    fn publish_writes_0600_and_counts_generations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        let t = now().timestamp() + 3600;
        assert_eq!(publish_sample(&path, t).unwrap().generation, 1);
        assert_eq!(publish_sample(&path, t).unwrap().generation, 2);
        let back = read(&path).unwrap();
        assert_eq!(back.generation, 2);
        assert_eq!(back.token.expose(), "ghs_sample");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temp files left");
    }

    #[test]
    fn an_expired_token_never_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        publish_sample(&path, now().timestamp() + 60).unwrap();
        let err = publish_sample(&path, now().timestamp());
        assert!(matches!(err, Err(WriteError::AlreadyExpired(_))));
        assert_eq!(read(&path).unwrap().expires_at_unix, now().timestamp() + 60);
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me").unwrap();
        let path = dir.path().join("token.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        publish_sample(&path, now().timestamp() + 60).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn directories_are_0700_or_0750_for_a_group_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("a/b/token.json");
        prepare_dir(&private, FileOptions::default()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        let shared = dir.path().join("c/token.json");
        let opts = FileOptions {
            mode: 0o640,
            gid: None,
        };
        prepare_dir(&shared, opts).unwrap();
        assert_eq!(mode(&dir.path().join("c")), 0o750);
        publish(&shared, sample(now().timestamp() + 60), opts, now()).unwrap();
        assert_eq!(mode(&shared), 0o640);
    }

    #[test]
    fn a_directory_at_the_target_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        fs::create_dir(&path).unwrap();
        let err = publish_sample(&path, now().timestamp() + 60);
        assert!(matches!(err, Err(WriteError::TargetIsDirectory(_))));
    }

    #[test]
    fn stale_temps_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        fs::write(dir.path().join(".token.json.tmp-1-abc"), "x").unwrap();
        fs::write(dir.path().join("other"), "x").unwrap();
        assert_eq!(remove_stale_temps(&path), 1);
        assert!(dir.path().join("other").exists());
    }

    #[test]
    fn parse_accepts_the_minimal_field_format_and_rejects_junk() {
        let f =
            TokenFile::parse(r#"{"token":"ghs_a","expires_at":"2027-01-15T10:00:00Z"}"#).unwrap();
        assert_eq!(f.expires_at_unix, 1_800_007_200);
        assert!(TokenFile::parse("").is_err());
        assert!(TokenFile::parse(r#"{"token":"","expires_at":"2027-01-15T10:00:00Z"}"#).is_err());
        let err = TokenFile::parse(r#"{"token":"ghs_secret","expires_at":"soon"}"#).unwrap_err();
        assert!(!err.contains("ghs_secret"));
        // a secret in a field of another type: serde_json would quote it
        let err = TokenFile::parse(
            r#"{"token":"ghs_secret","expires_at":"2027-01-15T10:00:00Z","generation":"ghs_sec\"ret"}"#,
        )
        .unwrap_err();
        assert!(!err.contains("ghs_sec"), "{err}");
        assert!(
            err.contains("invalid type: string \"…\", expected u64"),
            "{err}"
        );
        let err = TokenFile::parse(r#"{"expires_at":"2027-01-15T10:00:00Z"}"#).unwrap_err();
        assert!(err.contains("missing field `token`"), "{err}");
    }

    proptest::proptest! {
        /// Whatever sits in the file (another tool's output, a half-written file from an
        /// older writer), reading it never panics and never echoes a token.
        #[test]
        fn parsing_any_file_never_panics(text in "\\PC{0,400}") {
            let _ = TokenFile::parse(&text);
        }

        #[test]
        fn a_secret_in_any_field_never_reaches_the_error(
            field in proptest::sample::select(vec!["token", "expires_at", "expires_at_unix", "generation", "installation_id", "permissions", "repositories", "generated_at_unix"]),
            secret in "ghs_[A-Za-z0-9\"\\\\]{4,36}",
        ) {
            let quoted = serde_json::to_string(&secret).unwrap();
            let text = format!(r#"{{"token":"x","expires_at":"2027-01-15T10:00:00Z","{field}":{quoted}}}"#);
            if let Err(e) = TokenFile::parse(&text) {
                proptest::prop_assert!(!e.contains("ghs_"), "{}", e);
            }
        }
    }

    #[test]
    fn only_a_bounded_regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        let not_a_file = |r: Result<TokenFile, ReadError>| match r {
            Err(ReadError::NotAFile { what, .. }) => what,
            other => panic!("{other:?}"),
        };
        std::os::unix::fs::symlink("/dev/null", &path).unwrap();
        assert_eq!(not_a_file(read(&path)), "a symbolic link");
        assert_eq!(not_a_file(read_following(&path)), "a device");
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        assert_eq!(not_a_file(read(&path)), "a directory");
        fs::remove_dir(&path).unwrap();
        let big = format!(
            r#"{{"token":"ghs_a","expires_at":"2027-01-15T10:00:00Z","account":"{}"}}"#,
            "a".repeat(MAX_FILE_BYTES as usize)
        );
        fs::write(&path, big).unwrap();
        assert_eq!(not_a_file(read(&path)), "larger than 64 KiB");
        fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(read(&path), Err(ReadError::Invalid { .. })));
        assert!(matches!(
            read(&dir.path().join("none")),
            Err(ReadError::Missing(_))
        ));
    }

    #[test]
    fn an_output_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let set = |m| fs::set_permissions(dir.path(), fs::Permissions::from_mode(m)).unwrap();
        set(0o700);
        assert!(check_dir(dir.path()).is_ok());
        set(0o750);
        assert!(check_dir(dir.path()).is_ok());
        for m in [0o770, 0o702, 0o1777, 0o720] {
            set(m);
            let e = check_dir(dir.path()).unwrap_err().to_string();
            assert!(e.contains("chmod go-w"), "{m:o}: {e}");
        }
        set(0o700);
    }

    #[test]
    fn text_fields_of_a_file_are_cleaned_as_they_are_read() {
        let f = TokenFile::parse(
            r#"{"token":"ghs_a","expires_at":"2027-01-15T10:00:00Z","account":"a\nb\u001b[2J","repositories":["r\r"],"permissions":{"c\u0007":"w"}}"#,
        )
        .unwrap();
        assert_eq!(f.account, "a\\nb\\u{1b}[2J");
        assert_eq!(f.repositories, Some(vec!["r\\r".to_string()]));
        assert!(f.permissions.contains_key("c\\u{7}"));
    }

    #[test]
    fn freshness_bands() {
        let f = sample(now().timestamp() + 300);
        assert_eq!(
            f.freshness(now(), 600),
            Freshness::Expiring {
                remaining_secs: 300
            }
        );
        assert_eq!(
            f.freshness(now(), 60),
            Freshness::Valid {
                remaining_secs: 300
            }
        );
        assert_eq!(
            f.freshness(now() + chrono::Duration::seconds(400), 60),
            Freshness::Expired { ago_secs: 100 }
        );
    }
}
