//! Host-side faults against the real binary: wall-clock jumps (libfaketime moves the daemon's
//! realtime clock, not its monotonic one), a full or read-only output file system (a tiny
//! tmpfs), the output directory deleted or replaced, a symlink or a directory at the target,
//! SIGKILL in the middle of rewrites, a reader racing thousands of rewrites, key rotation by
//! SIGHUP, and the process hardening (file modes, non-dumpable). Tests that need libfaketime
//! or `mount` say so and return early when the host lacks them.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use github_token_refresher::token_file::{self, FileOptions, TokenFile};
use rustix::process::Signal;

/// Stop the daemon (SIGTERM, 10 s) and assert no secret is in its output or its notify
/// messages; its exit code.
fn stop_clean(d: Proc, n: &mut Notify, env: &TestEnv) -> Option<i32> {
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_no_secrets(&format!("{log}{}", n.all()), &env.secrets());
    code
}

fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

// ---- wall-clock jumps ----------------------------------------------------------------

/// libfaketime, where distributions put it.
fn libfaketime() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib64/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// The daemon's realtime clock offset, steerable while it runs: libfaketime re-reads this
/// file on every clock call (`FAKETIME_NO_CACHE=1`) and leaves CLOCK_MONOTONIC alone
/// (`FAKETIME_DONT_FAKE_MONOTONIC=1`), which is what a suspend or a clock step does.
struct FakeTime {
    lib: PathBuf,
    file: PathBuf,
}

impl FakeTime {
    /// `None` (with a message) when libfaketime is not installed. Panics if it is installed
    /// but does not move the binary's clock: then these tests would prove nothing.
    fn new(dir: &Path) -> Option<FakeTime> {
        let Some(lib) = libfaketime() else {
            eprintln!("SKIPPED: libfaketime is not installed (apt-get install faketime)");
            return None;
        };
        let ft = FakeTime {
            lib,
            file: dir.join("faketime.offset"),
        };
        // preflight: a token valid for 30 minutes is expired an hour from now
        let probe = dir.join("probe.json");
        let exp = chrono::Utc::now() + chrono::Duration::minutes(30);
        fs::write(
            &probe,
            format!(
                r#"{{"token":"ghs_probe","expires_at":"{}"}}"#,
                token_file::rfc3339(exp)
            ),
        )
        .unwrap();
        ft.set("+1h");
        let mut c = bare_cmd();
        c.arg("status").arg("--output").arg(&probe);
        ft.apply(&mut c);
        let out = run(c);
        assert!(
            out.status.code() == Some(1) && text(&out).starts_with("expired:"),
            "libfaketime did not move the binary's clock: {}",
            text(&out)
        );
        ft.set("+0");
        Some(ft)
    }

    fn apply(&self, c: &mut Command) {
        c.env("LD_PRELOAD", &self.lib)
            .env("FAKETIME_TIMESTAMP_FILE", &self.file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }

    /// [`daemon_ready`] (a `run` with `extra` at trace level that has said READY=1), the
    /// daemon under this clock.
    fn daemon_ready(&self, env: &TestEnv, extra: &[&str]) -> (Notify, Proc) {
        let mut n = Notify::new(env.dir.path());
        let mut c = env.cmd("run");
        c.args(extra)
            .env("NOTIFY_SOCKET", &n.path)
            .env("RUST_LOG", "trace");
        self.apply(&mut c);
        let d = Proc::spawn(c);
        ready(&mut n);
        (n, d)
    }

    /// Move the clock: `+50m`, `-50m`, `+0`. Atomic, so the library never reads half a file.
    fn set(&self, offset: &str) {
        let tmp = self.file.with_extension("tmp");
        fs::write(&tmp, format!("{offset}\n")).unwrap();
        fs::rename(&tmp, &self.file).unwrap();
    }

    /// Move the daemon's clock as a real step or a resume would: libfaketime changes what
    /// the daemon *reads*, but the daemon sleeps on kernel timers (a timerfd on
    /// CLOCK_BOOTTIME, and one on CLOCK_REALTIME armed with TFD_TIMER_CANCEL_ON_SET), which
    /// libfaketime cannot touch. So the kernel is told too: the host's wall clock is set to
    /// its own current value (a step of about a microsecond), which cancels every
    /// CANCEL_ON_SET timer exactly as a step or a resume does. `false` (with a message)
    /// without CAP_SYS_TIME.
    fn set_and_notify(&self, offset: &str) -> bool {
        self.set(offset);
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        match rustix::time::clock_settime(rustix::time::ClockId::Realtime, now) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("SKIPPED: cannot signal a clock change without CAP_SYS_TIME ({e})");
                false
            }
        }
    }
}

#[test]
fn a_suspend_and_resume_refreshes_within_seconds_of_waking() {
    let env = TestEnv::new();
    let Some(ft) = FakeTime::new(env.dir.path()) else {
        return;
    };
    let (mut n, d) = ft.daemon_ready(&env, &["--installation-id", "100", "--jitter", "0s"]);
    let before = env.read_file();
    // a 50-minute suspend: both wall clocks move on, the daemon's monotonic clock does not;
    // the refresh planned for 45 minutes after the mint is now 5 minutes overdue
    std::thread::sleep(Duration::from_millis(500));
    env.fake.set_clock_offset(3000);
    let woke = Instant::now();
    if !ft.set_and_notify("+50m") {
        return;
    }
    wait_until(
        "a refresh after the resume",
        Duration::from_secs(20),
        || generation(&env.output) > before.generation,
    );
    let took = woke.elapsed();
    eprintln!(
        "suspend of 50 min: refreshed {:.1}s after resume",
        took.as_secs_f64()
    );
    // the kernel's notice wakes the daemon at once (there is no periodic nap any more)
    assert!(took <= Duration::from_secs(3), "noticed at once: {took:?}");
    let after = env.read_file();
    assert!(env.fake.is_token_valid(after.token.expose()));
    assert!(after.expires_at_unix >= env.fake.now().timestamp() + 3000);
    assert_eq!(stop_clean(d, &mut n, &env), Some(0));
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn a_wall_clock_stepped_back_does_not_delay_the_refresh() {
    // 30-second tokens refreshed every 20 s; the daemon's clock then steps back 50 minutes
    // (GitHub's does not). Planned by the wall clock alone, the next refresh would come
    // 50 minutes late and the token would expire unnoticed.
    let env = TestEnv::new();
    let Some(ft) = FakeTime::new(env.dir.path()) else {
        return;
    };
    env.fake.set_token_lifetime(Duration::from_secs(30));
    let (mut n, d) = ft.daemon_ready(&env, &schedule("20s", "5s"));
    std::thread::sleep(Duration::from_secs(1));
    if !ft.set_and_notify("-50m") {
        return;
    }
    let seen = watching(
        vec![env.output.clone()],
        Duration::from_millis(5),
        valid_on(&env.fake),
        || {
            std::thread::sleep(Duration::from_secs(45));
        },
    );
    assert_eq!(
        seen.bad, 0,
        "the token expired after the clock step: {:?}",
        seen.problems
    );
    assert!(
        env.fake.mint_count() >= 3,
        "refreshed on time: {} mints",
        env.fake.mint_count()
    );
    stop_clean(d, &mut n, &env);
}

// ---- the output file system ------------------------------------------------------------

/// A tmpfs mounted for one test, unmounted on drop.
struct Mount {
    path: PathBuf,
}

impl Mount {
    fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount {
                path: path.to_owned(),
            }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(st.success(), "remount {opts}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Fill the file system holding `dir` until ENOSPC; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).unwrap();
    let chunk = [0u8; 4096];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    path
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn a_full_or_read_only_output_file_system_keeps_the_old_file_and_recovers() {
    let env = TestEnv::new();
    let Some(mount) = Mount::tmpfs(&env.dir.path().join("small"), "256k") else {
        return;
    };
    let output = mount.path.join("out").join("token.json");
    // a second --output (the last counts) puts the file on the small file system
    let (mut n, d) = daemon_ready(
        &env,
        &[&["--output", output.to_str().unwrap()], FAST].concat(),
    );
    let mut figures = Vec::new();
    let seen = watching(
        vec![output.clone()],
        Duration::from_millis(1),
        valid_on(&env.fake),
        || {
            for (what, errno_text) in [
                ("disk full", "No space left on device"),
                ("read-only", "Read-only file system"),
            ] {
                n.drain();
                let filler = match what {
                    "disk full" => Some(fill(&mount.path)),
                    _ => {
                        mount.remount("ro");
                        None
                    }
                };
                let held = token_file::read(&output).unwrap();
                let status = wait_status(
                    &mut n,
                    &format!("{what}: STATUS with the error"),
                    Duration::from_secs(15),
                    |s| s.contains(errno_text),
                );
                assert!(
                    status.contains("cannot write token file")
                        && status.contains("current token valid"),
                    "{what}: {status}"
                );
                d.wait_log(
                    &format!("{what} in the journal"),
                    Duration::from_secs(5),
                    |l| l.contains(errno_text),
                );
                // a few failed attempts later the old file is still there, intact and valid
                std::thread::sleep(Duration::from_secs(3));
                let still = token_file::read(&output).unwrap();
                assert_eq!(
                    (still.generation, still.token.expose()),
                    (held.generation, held.token.expose()),
                    "{what}: the old file is untouched"
                );
                assert!(
                    temp_files(output.parent().unwrap()).is_empty(),
                    "{what}: no temp file left behind"
                );
                // space (or write access) returns
                let back = Instant::now();
                match filler {
                    Some(f) => fs::remove_file(f).unwrap(),
                    None => mount.remount("rw"),
                }
                wait_until(
                    &format!("{what}: recovery"),
                    Duration::from_secs(20),
                    || generation(&output) > held.generation,
                );
                figures.push(format!(
                    "{what}: recovered {:.1}s after the fix",
                    back.elapsed().as_secs_f64()
                ));
            }
        },
    );
    assert_eq!(seen.bad, 0, "a reader saw: {:?}", seen.problems);
    eprintln!("{}", figures.join("; "));
    stop_clean(d, &mut n, &env);
    drop(mount);
}

#[test]
fn the_output_directory_deleted_or_replaced_while_running() {
    let env = TestEnv::new();
    let (mut n, d) = daemon_ready(&env, FAST);
    let dir = env.output.parent().unwrap().to_owned();
    // deleted: the next refresh creates it again, 0700
    fs::remove_dir_all(&dir).unwrap();
    wait_until("the file again", Duration::from_secs(10), || {
        token_file::read(&env.output).is_ok()
    });
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    assert!(env.fake.is_token_valid(env.read_file().token.expose()));
    // replaced by a directory someone else made: written into, the file still 0600
    fs::remove_dir_all(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    wait_until(
        "the file in the new directory",
        Duration::from_secs(10),
        || token_file::read(&env.output).is_ok(),
    );
    assert_eq!(fs::metadata(&env.output).unwrap().mode() & 0o777, 0o600);
    assert_eq!(stop_clean(d, &mut n, &env), Some(0));
}

#[test]
fn a_symlink_at_the_target_is_replaced_never_followed() {
    let env = TestEnv::new();
    let (mut n, d) = daemon_ready(&env, FAST);
    let victim = env.dir.path().join("victim.txt");
    fs::write(&victim, "precious\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let held = generation(&env.output);
    let swap = env.output.with_file_name("swap");
    std::os::unix::fs::symlink(&victim, &swap).unwrap();
    fs::rename(&swap, &env.output).unwrap();
    wait_until("the symlink replaced", Duration::from_secs(10), || {
        fs::symlink_metadata(&env.output).is_ok_and(|m| m.file_type().is_file())
    });
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o777, 0o644);
    let file = env.read_file();
    assert!(env.fake.is_token_valid(file.token.expose()));
    assert!(file.generation >= 1 && file.generation <= held + 3);
    stop_clean(d, &mut n, &env);
}

#[test]
fn a_directory_at_the_target_is_a_clear_error_until_removed() {
    let env = TestEnv::new();
    let (mut n, d) = daemon_ready(&env, FAST);
    fs::remove_file(&env.output).unwrap();
    fs::create_dir(&env.output).unwrap();
    let status = wait_status(
        &mut n,
        "STATUS naming the directory",
        Duration::from_secs(10),
        |s| s.contains("is a directory"),
    );
    assert!(
        status.contains(&format!("'{}' is a directory", env.output.display()))
            && status.contains("remove it or choose another --output")
            && status.contains("retrying in 5m"),
        "a person must act: no fast retries: {status}"
    );
    d.wait_log("the journal line", Duration::from_secs(5), |l| {
        l.contains("is a directory; remove it")
    });
    // removed, then a reload (or the next try, 5 minutes on) writes the file
    fs::remove_dir(&env.output).unwrap();
    d.signal(Signal::HUP);
    wait_until(
        "the file once the directory is gone",
        Duration::from_secs(10),
        || token_file::read(&env.output).is_ok(),
    );
    stop_clean(d, &mut n, &env);

    // at start, with no token to serve: `run` exits 78 with that line, `once` fails with it
    fs::remove_file(&env.output).unwrap();
    fs::create_dir(&env.output).unwrap();
    let again = env.dir.path().join("again");
    fs::create_dir(&again).unwrap();
    let mut n = Notify::new(&again);
    let d = daemon(&env, &n, FAST);
    let (code, log) = d.finish(Duration::from_secs(20));
    assert_eq!(code, Some(78), "{log}");
    assert!(
        log.contains("is a directory; remove it or choose another --output"),
        "{log}"
    );
    let out = once_trace(&env, &["--installation-id", "100"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out).contains("is a directory; remove it or choose another --output"),
        "{}",
        text(&out)
    );
    assert_no_secrets(&format!("{log}{}{}", n.all(), text(&out)), &env.secrets());
}

// ---- crashes and readers ----------------------------------------------------------------

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn sigkill_at_random_points_leaves_the_old_or_the_new_file_and_a_restart_cleans_up() {
    const RUNS: usize = 120;
    let env = TestEnv::new();
    assert_eq!(
        env.once(&["--installation-id", "100"]).status.code(),
        Some(0)
    );
    let once_cmd = || {
        let mut c = env.cmd("once");
        c.args(["--installation-id", "100"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let dir = env.output.parent().unwrap().to_owned();
    let (mut killed, mut completed, mut temps_seen) = (0, 0, 0);
    let mut durations = Vec::new();
    let seen = watching(
        vec![env.output.clone()],
        Duration::from_micros(100),
        valid_on(&env.fake),
        || {
            // how long one `once` takes here (with the reader running), to aim the kills at the
            // end of a run, where it writes; measured again every tenth run
            let mut full = Duration::ZERO;
            for i in 0..RUNS {
                if i % 10 == 0 {
                    let t = Instant::now();
                    assert!(once_cmd().status().unwrap().success());
                    full = t.elapsed();
                    durations.push(full);
                }
                let temps_before = temp_files(&dir).len();
                let mut child = once_cmd().spawn().unwrap();
                std::thread::sleep(full.mul_f64(rand::random_range(0.5..1.1)));
                let _ = child.kill();
                let st = child.wait().unwrap();
                if st.signal() == Some(9) {
                    killed += 1;
                } else {
                    completed += 1;
                }
                // after every kill: a complete file with a token GitHub handed out
                let f = token_file::read(&env.output).expect("a complete file after SIGKILL");
                assert!(env.fake.is_token_valid(f.token.expose()));
                if temp_files(&dir).len() > temps_before {
                    temps_seen += 1;
                }
            }
        },
    );
    let full = durations.iter().sum::<Duration>() / durations.len() as u32;
    assert_eq!(seen.bad, 0, "a reader saw: {:?}", seen.problems);
    eprintln!(
        "SIGKILL: {RUNS} runs of `once` ({:.0} ms each when left alone): {killed} killed, {completed} finished; \
         {temps_seen} kills left a temp file; {} reads, {} generations seen, none torn",
        full.as_secs_f64() * 1000.0,
        seen.reads,
        seen.generations.len()
    );
    assert!(killed >= RUNS / 4, "many runs were killed mid-way");
    assert!(
        seen.generations.len() > 10,
        "the kills came among the writes"
    );
    // restart: the daemon removes what the crashes left (plus one planted for certain)
    let planted = dir.join(".token.json.tmp-4242-00000000deadbeef");
    fs::write(&planted, "{\"token\":").unwrap();
    let left = temp_files(&dir);
    let (mut n, d) = daemon_ready(&env, FAST);
    assert!(
        temp_files(&dir).is_empty(),
        "temp files left: {:?}",
        temp_files(&dir)
    );
    let (_, log) = d.stop(Duration::from_secs(10));
    assert!(
        log.contains(&format!("removed={}", left.len()))
            && log.contains("removed temp files left by a crash"),
        "{log}"
    );
    assert_no_secrets(&format!("{log}{}", n.all()), &env.secrets());
}

fn sample(generation: u64, expires: i64) -> TokenFile {
    TokenFile {
        token: github_token_refresher::secret::Secret::new(format!("ghs_{generation:036}")),
        expires_at: token_file::rfc3339(chrono::DateTime::from_timestamp(expires, 0).unwrap()),
        expires_at_unix: expires,
        generated_at: String::new(),
        generated_at_unix: 0,
        app_id: "1234".into(),
        installation_id: 100,
        account: "acme".into(),
        // a realistic size, so a torn write would show
        permissions: (0..20)
            .map(|i| (format!("permission_{i}"), "write".to_string()))
            .collect(),
        repository_selection: "selected".into(),
        repositories: Some((0..50).map(|i| format!("repository-{i}")).collect()),
        api_url: "https://api.github.com".into(),
        refresh_at: String::new(),
        refresh_at_unix: 0,
        generation: 0,
        fingerprint: String::new(),
    }
}

#[test]
fn a_reader_racing_two_thousand_rewrites_never_sees_a_torn_file() {
    const REWRITES: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out").join("token.json");
    let now = chrono::Utc::now();
    let expires = now.timestamp() + 3600;
    token_file::prepare_dir(&path, FileOptions::default()).unwrap();
    token_file::publish(&path, sample(0, expires), FileOptions::default(), now).unwrap();
    let started = Instant::now();
    let seen = watching(
        vec![path.clone()],
        Duration::ZERO,
        |_, f: &TokenFile| {
            let expected = format!("ghs_{:036}", f.generation.saturating_sub(1));
            if f.token.expose() == expected
                && f.repositories.as_ref().is_some_and(|r| r.len() == 50)
            {
                Ok(())
            } else {
                Err("the token does not belong to its generation".into())
            }
        },
        || {
            for g in 1..=REWRITES {
                token_file::publish(&path, sample(g, expires), FileOptions::default(), now)
                    .unwrap();
            }
        },
    );
    let written = REWRITES;
    let took = started.elapsed();
    eprintln!(
        "{written} rewrites in {:.1}s ({:.0}/s); the reader made {} reads and saw {} distinct generations, none torn",
        took.as_secs_f64(),
        written as f64 / took.as_secs_f64(),
        seen.reads,
        seen.generations.len()
    );
    assert_eq!(seen.bad, 0, "{:?}", seen.problems);
    assert!(
        seen.reads > written,
        "the reader kept up: {} reads",
        seen.reads
    );
    assert!(seen.generations.len() > 100, "the reader saw the rewrites");
    assert_eq!(token_file::read(&path).unwrap().generation, REWRITES + 1);
    assert!(temp_files(path.parent().unwrap()).is_empty());
}

// ---- keys -------------------------------------------------------------------------------

#[test]
fn key_rotation_by_sighup_uses_the_new_key_and_a_broken_key_is_rejected() {
    let TestEnv {
        fake,
        dir,
        key,
        output,
    } = TestEnv::new();
    let mut n = Notify::new(dir.path());
    let mut c = fast_run_cmd(&fake.url(), &key, &output);
    c.env("NOTIFY_SOCKET", &n.path);
    let d = Proc::spawn(c);
    ready(&mut n);
    let mut secrets: Vec<String> = Vec::new();

    // a broken key: the reload is rejected, the key in memory keeps minting
    fs::write(
        &key,
        "-----BEGIN RSA PRIVATE KEY-----\ngarbage\n-----END RSA PRIVATE KEY-----\n",
    )
    .unwrap();
    d.signal(Signal::HUP);
    let after = n.wait_for("READY=1 after the reload", Duration::from_secs(10), |l| {
        l == "READY=1"
    });
    assert!(
        status_of(&after).contains("last reload rejected")
            && status_of(&after).contains(&format!("private key file '{}'", key.display())),
        "{after}"
    );
    let before = fake.mint_count();
    wait_until("mints with the old key", Duration::from_secs(10), || {
        fake.mint_count() >= before + 2
    });

    // rotation: GitHub now only accepts a new key (the old one was deleted on the App page)
    let port = fake.port();
    secrets.extend(fake.tokens().into_iter().map(|t| t.token));
    let new_key = fake_github::TestKey::generate();
    drop(fake);
    let fake = FakeGithub::start_blocking(
        format!("127.0.0.1:{port}").parse().unwrap(),
        FakeConfig::standard_with_key(new_key.clone()),
    )
    .expect("the second fake takes the port");
    let refused = wait_status(
        &mut n,
        "STATUS with the refused JWT",
        Duration::from_secs(15),
        |s| s.contains("401"),
    );
    assert!(refused.contains("current token valid"), "{refused}");
    assert_eq!(fake.mint_count(), 0);
    write_key(&key, &new_key.pkcs8_pem);
    d.signal(Signal::HUP);
    let after = n.wait_for("READY=1 after the rotation", Duration::from_secs(10), |l| {
        l == "READY=1"
    });
    assert!(!status_of(&after).contains("rejected"), "{after}");
    wait_until("a mint with the new key", Duration::from_secs(10), || {
        fake.mint_count() >= 1 && generation(&output) > 0
    });
    wait_until(
        "the file holds the new App's token",
        Duration::from_secs(10),
        || token_file::read(&output).is_ok_and(|f| fake.is_token_valid(f.token.expose())),
    );
    secrets.extend(fake.tokens().into_iter().map(|t| t.token));
    let (_, log) = d.stop(Duration::from_secs(10));
    assert!(log.contains("reload rejected"), "{log}");
    let old_key = FakeConfig::standard().app().key.clone();
    assert_clean(
        &format!("{log}{}", n.all()),
        &secrets,
        &[
            &old_key.pkcs1_pem,
            &old_key.pkcs8_pem,
            &new_key.pkcs1_pem,
            &new_key.pkcs8_pem,
        ],
    );
    drop(dir);
}

// ---- hardening --------------------------------------------------------------------------

#[test]
fn the_file_is_0600_in_a_0700_directory_and_the_daemon_is_not_dumpable() {
    const NOBODY: u32 = 65534;
    let env = TestEnv::new();
    // as root, ownership of /proc/PID shows PR_SET_DUMPABLE: the kernel makes a
    // non-dumpable process's /proc files root's. Run the daemon as nobody to see it.
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to run the daemon as another user");
        return;
    }
    let base = env.dir.path().join("nobody");
    fs::create_dir(&base).unwrap();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&base, Some(NOBODY), Some(NOBODY)).unwrap();
    let key = base.join("app.pem");
    write_key(&key, &env.fake.app().key.pkcs1_pem);
    std::os::unix::fs::chown(&key, Some(NOBODY), Some(NOBODY)).unwrap();
    let output = base.join("out").join("token.json");
    let mut c = fast_run_cmd(&env.fake.url(), &key, &output);
    c.uid(NOBODY).gid(NOBODY);
    let d = Proc::spawn(c);
    wait_until("the token file", Duration::from_secs(20), || {
        token_file::read(&output).is_ok()
    });
    let pid = d.pid();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains(&NOBODY.to_string()), "{uid_line}");
    let owner = fs::metadata(format!("/proc/{pid}/status")).unwrap().uid();
    // the same check on an ordinary process of that user, to show it tells them apart
    let mut sleeper = Command::new("sleep")
        .arg("10")
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let ordinary = fs::metadata(format!("/proc/{}/status", sleeper.id()))
        .unwrap()
        .uid();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    eprintln!("/proc/PID owner: daemon {owner}, an ordinary process of uid {NOBODY}: {ordinary}");
    assert_eq!(ordinary, NOBODY, "the check can tell a dumpable process");
    assert_eq!(owner, 0, "the daemon made itself non-dumpable");

    let meta = fs::metadata(&output).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), NOBODY);
    assert_eq!(
        fs::metadata(output.parent().unwrap()).unwrap().mode() & 0o777,
        0o700
    );
    let (_, log) = d.stop(Duration::from_secs(10));
    assert_no_secrets(&log, &env.secrets());

    // a configured mode and group: 0640 for that group, and the directory 0750 for it
    let shared = env.dir.path().join("shared").join("token.json");
    let config = write_targets_toml(
        &env,
        &format!(
            "mode = \"0640\"\ngroup = {NOBODY}\n\
             [[target]]\nname = \"shared\"\ninstallation_id = 100\noutput = \"{}\"\n",
            shared.display()
        ),
    );
    let mut c = bare_cmd();
    c.arg("once").arg("--config").arg(&config);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let meta = fs::metadata(&shared).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o640, NOBODY));
    let dir_meta = fs::metadata(shared.parent().unwrap()).unwrap();
    assert_eq!((dir_meta.mode() & 0o777, dir_meta.gid()), (0o750, NOBODY));
}
