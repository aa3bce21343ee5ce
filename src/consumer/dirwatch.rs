//! Waiting for the token file to change, with inotify on its DIRECTORY.
//!
//! The daemon publishes by renaming a temp file over the target, so a watch on the file
//! itself would follow the old inode and never fire again; the directory sees `IN_MOVED_TO`
//! for every publish (and `IN_CREATE`/`IN_CLOSE_WRITE` from writers that don't rename).
//! When the directory itself is deleted or moved, the watch is dropped and re-added once a
//! directory exists at the path again; only while there is no directory at all does this
//! poll (once a second), because there is nothing to watch.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// How often to look for a directory that doesn't exist (yet).
const MISSING_DIR_POLL: Duration = Duration::from_secs(1);

/// Why [`DirWatcher::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something happened to the file (or its directory): read it again.
    Changed,
    /// The timeout passed without a change.
    Timeout,
}

pub struct DirWatcher {
    inotify: Inotify,
    dir: PathBuf,
    name: OsString,
    wd: Option<WatchDescriptor>,
    buf: Vec<u8>,
}

impl DirWatcher {
    /// Watch the directory holding `file`. A missing directory is not an error: it is
    /// looked for again on every [`wait`](Self::wait).
    pub fn new(file: &Path) -> io::Result<DirWatcher> {
        let name = file
            .file_name()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the token file path has no file name",
                )
            })?
            .to_owned();
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut w = DirWatcher {
            inotify: Inotify::init()?,
            dir,
            name,
            wd: None,
            buf: vec![0; 4096],
        };
        w.try_watch()?;
        Ok(w)
    }

    pub fn is_watching(&self) -> bool {
        self.wd.is_some()
    }

    /// Add the watch if the directory exists. `Ok(true)` if a watch was added just now.
    fn try_watch(&mut self) -> io::Result<bool> {
        if self.wd.is_some() {
            return Ok(false);
        }
        let mask = WatchMask::MOVED_TO
            | WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR;
        match self.inotify.watches().add(&self.dir, mask) {
            Ok(wd) => {
                self.wd = Some(wd);
                Ok(true)
            }
            // not there (yet), or not a directory (yet): keep looking
            Err(e) if matches!(e.raw_os_error(), Some(2) | Some(20)) => Ok(false),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot watch directory '{}': {e}", self.dir.display()),
            )),
        }
    }

    /// Block until the file may have changed, or `timeout` (None: forever) passes.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Wake> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if self.wd.is_none() {
                if self.try_watch()? {
                    return Ok(Wake::Changed);
                }
                let nap = remaining.map_or(MISSING_DIR_POLL, |r| r.min(MISSING_DIR_POLL));
                if nap.is_zero() {
                    return Ok(Wake::Timeout);
                }
                std::thread::sleep(nap);
                continue;
            }
            if remaining.is_some_and(|r| r.is_zero()) {
                return Ok(Wake::Timeout);
            }
            let ts = remaining.map(|r| Timespec {
                tv_sec: r.as_secs() as _,
                tv_nsec: r.subsec_nanos() as _,
            });
            let mut fds = [PollFd::new(&self.inotify, PollFlags::IN)];
            match poll(&mut fds, ts.as_ref()) {
                Ok(0) => return Ok(Wake::Timeout),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if self.drain()? {
                return Ok(Wake::Changed);
            }
        }
    }

    /// Read all queued events; true if any concerns the file or the directory itself.
    fn drain(&mut self) -> io::Result<bool> {
        let mut relevant = false;
        let mut lost_dir = false;
        loop {
            let events = match self.inotify.read_events(&mut self.buf) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut any = false;
            for event in events {
                any = true;
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    relevant = true;
                } else if Some(&event.wd) == self.wd.as_ref() {
                    if event.mask.intersects(
                        EventMask::DELETE_SELF
                            | EventMask::MOVE_SELF
                            | EventMask::IGNORED
                            | EventMask::UNMOUNT,
                    ) {
                        lost_dir = true;
                        relevant = true;
                    } else if event.name == Some(self.name.as_os_str()) {
                        relevant = true;
                    }
                }
            }
            if !any {
                break;
            }
        }
        if lost_dir {
            // a moved directory keeps its watch; drop it so the path is watched again
            if let Some(wd) = self.wd.take() {
                let _ = self.inotify.watches().remove(wd);
            }
            self.try_watch()?;
        }
        Ok(relevant)
    }

    /// After a change, wait until `quiet` passes with no further change (at most `max`),
    /// so a burst of writes is read once.
    pub fn settle(&mut self, quiet: Duration, max: Duration) -> io::Result<()> {
        let until = Instant::now() + max;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.wait(Some(quiet.min(left)))? == Wake::Timeout {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const SHORT: Duration = Duration::from_millis(200);
    const LONG: Duration = Duration::from_secs(5);

    #[test]
    fn a_rename_over_the_file_wakes_and_other_names_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token.json");
        let mut w = DirWatcher::new(&file).unwrap();
        assert!(w.is_watching());
        fs::write(dir.path().join("unrelated"), "x").unwrap();
        assert_eq!(w.wait(Some(SHORT)).unwrap(), Wake::Timeout);
        let temp = dir.path().join(".token.json.tmp-1");
        fs::write(&temp, "{}").unwrap();
        assert_eq!(
            w.wait(Some(SHORT)).unwrap(),
            Wake::Timeout,
            "the temp file is not the file"
        );
        fs::rename(&temp, &file).unwrap();
        assert_eq!(w.wait(Some(LONG)).unwrap(), Wake::Changed);
    }

    #[test]
    fn a_missing_directory_is_found_when_it_appears() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("later");
        let file = dir.join("token.json");
        let mut w = DirWatcher::new(&file).unwrap();
        assert!(!w.is_watching());
        assert_eq!(w.wait(Some(SHORT)).unwrap(), Wake::Timeout);
        fs::create_dir(&dir).unwrap();
        assert_eq!(w.wait(Some(LONG)).unwrap(), Wake::Changed);
        assert!(w.is_watching());
        fs::write(&file, "x").unwrap();
        assert_eq!(w.wait(Some(LONG)).unwrap(), Wake::Changed);
    }

    #[test]
    fn a_recreated_directory_is_watched_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("d");
        fs::create_dir(&dir).unwrap();
        let file = dir.join("token.json");
        let mut w = DirWatcher::new(&file).unwrap();
        fs::remove_dir(&dir).unwrap();
        assert_eq!(w.wait(Some(LONG)).unwrap(), Wake::Changed);
        assert!(!w.is_watching());
        fs::create_dir(&dir).unwrap();
        assert_eq!(w.wait(Some(LONG)).unwrap(), Wake::Changed);
        w.settle(SHORT, LONG).unwrap();
        fs::write(&file, "x").unwrap();
        assert_eq!(w.wait(Some(LONG)).unwrap(), Wake::Changed);
    }

    #[test]
    fn a_moved_directory_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("d");
        fs::create_dir(&dir).unwrap();
        let mut w = DirWatcher::new(&dir.join("token.json")).unwrap();
        fs::rename(&dir, root.path().join("moved")).unwrap();
        assert_eq!(w.wait(Some(LONG)).unwrap(), Wake::Changed);
        fs::write(root.path().join("moved/token.json"), "x").unwrap();
        assert_eq!(
            w.wait(Some(SHORT)).unwrap(),
            Wake::Timeout,
            "events of the old inode are gone"
        );
    }

    #[test]
    fn settle_swallows_a_burst() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token.json");
        let mut w = DirWatcher::new(&file).unwrap();
        for i in 0..5 {
            fs::write(&file, format!("{i}")).unwrap();
        }
        assert_eq!(w.wait(Some(LONG)).unwrap(), Wake::Changed);
        w.settle(SHORT, LONG).unwrap();
        assert_eq!(w.wait(Some(SHORT)).unwrap(), Wake::Timeout);
    }
}
