//! Benchmark harness: runs the release daemon against the fake GitHub on loopback, measures
//! what issue 6 asks (memory, idle wakeups, latency, CPU per refresh, 1,000 targets with
//! 10-second tokens, binary size) from `/proc`, and prints a markdown table on stdout
//! (progress on stderr).
//!
//! One command builds the release binaries and runs it: `scripts/bench.sh`. By hand:
//! `cargo build --release --workspace --bins && cargo run --release --example bench`.
//! It is not a test: it takes about five minutes and its numbers depend on the machine.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

type Res<T> = Result<T, String>;

/// Measure github-token-refresher against the fake GitHub and print a markdown table.
#[derive(Debug, Parser)]
// a later option wins, so `scripts/bench.sh --profiles --idle-secs 30` overrides its defaults
#[command(name = "bench", args_override_self = true)]
struct Args {
    /// The daemon binary [default: github-token-refresher next to this harness's directory,
    /// i.e. target/release/].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The fake GitHub binary [default: fake-github in the same place].
    #[arg(long)]
    fake: Option<PathBuf>,
    /// Measurements to run, comma-separated: size, once, ready, idle, cpu, sustain, socket, peer.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "size,once,ready,idle,cpu,sustain,socket,peer"
    )]
    only: Vec<String>,
    /// The closest peer's binary (zinrai/github-app-tokend, built by scripts/bench.sh from
    /// ../shared/peers/); without it the side-by-side comparison is skipped with a message.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Interleaved starts of each program in the side-by-side comparison.
    #[arg(long, default_value_t = 15)]
    peer_runs: usize,
    /// `once` runs (the median is reported).
    #[arg(long, default_value_t = 50)]
    once_runs: usize,
    /// `run` start-to-READY runs (the median is reported).
    #[arg(long, default_value_t = 20)]
    ready_runs: usize,
    /// Seconds of idle to count wakeups over.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Seconds to wait after READY before the idle window (lets the first mints settle and
    /// tokio's blocking threads, kept 10 s, exit).
    #[arg(long, default_value_t = 12)]
    settle_secs: u64,
    /// Configurations to measure idle memory and wakeups with (each this many targets; they
    /// run side by side: neither number depends on the other's CPU use).
    #[arg(long, value_delimiter = ',', default_value = "1,1000")]
    idle_targets: Vec<usize>,
    /// Targets of the sustained run.
    #[arg(long, default_value_t = 1000)]
    many: usize,
    /// Refreshes to divide the CPU time by (accelerated run).
    #[arg(long, default_value_t = 1000)]
    refreshes: u64,
    /// Targets of the accelerated run (each refreshes about every second).
    #[arg(long, default_value_t = 50)]
    cpu_targets: usize,
    /// Length of the sustained run with `--many` targets and short-lived tokens.
    #[arg(long, default_value_t = 120)]
    sustain_secs: u64,
    /// Token lifetime on the fake during the sustained run.
    #[arg(long, default_value = "10s")]
    sustain_lifetime: String,
    /// The sustained run's schedule: production's 45m ± 2m, 10m minimum on a 1-hour token,
    /// scaled to a 10-second token.
    #[arg(long, default_value = "7s")]
    sustain_interval: String,
    #[arg(long, default_value = "500ms")]
    sustain_jitter: String,
    #[arg(long, default_value = "2s")]
    sustain_min_remaining: String,
    /// Once every target is minted, make the fake answer each request of the sustained run
    /// this much later (as a distant GitHub would: a refresh is two requests).
    #[arg(long, default_value_t = 0)]
    sustain_delay_ms: u64,
    /// Where the token files go [default: a temporary directory on /dev/shm (tmpfs, like
    /// $XDG_RUNTIME_DIR), else in the system's temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one markdown row `| LABEL | size | once | idle RSS | CPU per refresh |` instead
    /// of the table (for comparing builds: scripts/bench.sh --profiles).
    #[arg(long, value_name = "LABEL")]
    summary_row: Option<String>,
    /// Keep the working directory (logs, configurations, token files) for a look afterwards.
    #[arg(long)]
    keep: bool,
}

fn main() {
    let args = Args::parse();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"));
    let bin = args
        .bin
        .clone()
        .unwrap_or_else(|| exe_dir.join("github-token-refresher"));
    let fake = args
        .fake
        .clone()
        .unwrap_or_else(|| exe_dir.join("fake-github"));
    for p in [&bin, &fake] {
        if !p.is_file() {
            eprintln!(
                "bench: '{}' not found; build first: cargo build --release --workspace --bins",
                p.display()
            );
            std::process::exit(2);
        }
    }
    let base = args.dir.clone().unwrap_or_else(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.into()
        } else {
            std::env::temp_dir()
        }
    });
    let tmp = tempfile::Builder::new()
        .prefix("gtr-bench-")
        .tempdir_in(&base)
        .unwrap_or_else(|e| {
            eprintln!(
                "bench: cannot create a directory in '{}': {e}",
                base.display()
            );
            std::process::exit(2);
        });
    let b = Bench {
        args,
        bin,
        fake,
        dir: tmp.path().to_path_buf(),
        clk_tck: clk_tck(),
        http: Http::new(),
        rows: Vec::new(),
        summary: Summary::default(),
    };
    let keep = b.args.keep;
    let started = Instant::now();
    let label = b.args.summary_row.clone();
    let (rows, summary) = b.run_all();
    match label {
        Some(label) => println!(
            "| {label} | {} | {} | {} | {} |",
            summary.size, summary.once, summary.rss1, summary.cpu
        ),
        None => println!("{}", table(&rows)),
    }
    eprintln!(
        "bench: done in {:.0} s; token files were in '{}' ({})",
        started.elapsed().as_secs_f64(),
        tmp.path().display(),
        fs_type(&base)
    );
    if keep {
        let kept = tmp.keep();
        eprintln!("bench: kept '{}'", kept.display());
    } else {
        drop(tmp);
    }
    if rows.iter().any(|r| r.verdict == Verdict::Failed) {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// the measurements

struct Bench {
    args: Args,
    bin: PathBuf,
    fake: PathBuf,
    dir: PathBuf,
    clk_tck: u64,
    http: Http,
    rows: Vec<Row>,
    summary: Summary,
}

/// The few numbers that compare builds.
#[derive(Default)]
struct Summary {
    size: String,
    once: String,
    rss1: String,
    cpu: String,
}

impl Bench {
    fn wants(&self, what: &str) -> bool {
        self.args.only.iter().any(|o| o == what)
    }

    fn run_all(mut self) -> (Vec<Row>, Summary) {
        type Step = fn(&mut Bench) -> Res<()>;
        let steps: [(&str, Step); 8] = [
            ("size", Bench::size),
            ("once", Bench::once),
            ("ready", Bench::ready),
            ("idle", Bench::idle),
            ("cpu", Bench::cpu),
            ("sustain", Bench::sustain),
            ("socket", Bench::socket),
            ("peer", Bench::peer),
        ];
        for (name, step) in steps {
            if self.wants(name) {
                eprintln!("bench: {name} …");
                if let Err(e) = step(&mut self) {
                    eprintln!("bench: {name} failed: {e}");
                    self.push(Row::failed(name, &e));
                }
            }
        }
        (self.rows, self.summary)
    }

    fn push(&mut self, row: Row) {
        eprintln!("bench:   {} = {}", row.what, row.value);
        self.rows.push(row);
    }

    fn size(&mut self) -> Res<()> {
        let len = fs::metadata(&self.bin).map_err(|e| e.to_string())?.len();
        self.summary.size = format!("{:.2} MiB", mib(len));
        self.push(Row::info(
            "release binary size",
            format!("{:.2} MiB ({len} bytes)", mib(len)),
        ));
        Ok(())
    }

    /// `once`: spawn → exit (the file is written just before exit), and spawn → the file's
    /// mtime.
    fn once(&mut self) -> Res<()> {
        let dir = self.dir.join("once");
        let fake = Fake::start(&self.fake, &dir, "3600s")?;
        let out = dir.join("out/token.json");
        let mut exits = Vec::new();
        let mut written = Vec::new();
        for _ in 0..self.args.once_runs {
            let _ = fs::remove_file(&out);
            let mut c = self.command();
            c.arg("once")
                .args(fake.single_target_flags())
                .arg("--output")
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(log_file(&dir.join("once.log"))?);
            let wall0 = SystemTime::now();
            let t0 = Instant::now();
            let status = c.status().map_err(|e| format!("cannot run once: {e}"))?;
            exits.push(t0.elapsed());
            if !status.success() {
                return Err(format!("once exited with {status}; see {}", dir.display()));
            }
            let mtime = fs::metadata(&out)
                .and_then(|m| m.modified())
                .map_err(|e| format!("once wrote no file: {e}"))?;
            written.push(mtime.duration_since(wall0).unwrap_or_default());
        }
        let n = exits.len();
        self.summary.once = ms(median(&mut written));
        self.push(Row::info(
            &format!("`once` process start → file written, median of {n}"),
            format!(
                "{} (p90 {}; start → exit {})",
                ms(median(&mut written)),
                ms(percentile(&mut written, 0.9)),
                ms(median(&mut exits))
            ),
        ));
        Ok(())
    }

    /// `run` with one target (flags, as the systemd unit runs it): spawn → READY=1.
    fn ready(&mut self) -> Res<()> {
        let dir = self.dir.join("ready");
        let fake = Fake::start(&self.fake, &dir, "3600s")?;
        let out = dir.join("out/token.json");
        let mut times = Vec::new();
        for i in 0..self.args.ready_runs {
            // no token file from before: READY=1 comes after the first mint
            let _ = fs::remove_file(&out);
            let notify = Notify::bind(&dir.join(format!("notify{i}.sock")))?;
            let mut c = self.command();
            c.arg("run")
                .args(fake.single_target_flags())
                .arg("--output")
                .arg(&out)
                .env("NOTIFY_SOCKET", &notify.path);
            let t0 = Instant::now();
            let mut d = Proc::spawn(c, &dir.join("run.log"))?;
            let at = notify.wait_ready(Duration::from_secs(30))?;
            times.push(at - t0);
            d.stop()?;
        }
        let n = times.len();
        self.push(Row::info(
            &format!("`run` (1 target, no file yet) process start → READY=1, median of {n}"),
            format!(
                "{} (p90 {})",
                ms(median(&mut times)),
                ms(percentile(&mut times, 0.9))
            ),
        ));
        Ok(())
    }

    /// Idle memory and wakeups with each of `--idle-targets` (side by side).
    fn idle(&mut self) -> Res<()> {
        let dir = self.dir.join("idle");
        let fake = Fake::start(&self.fake, &dir, "3600s")?;
        let counts = self.args.idle_targets.clone();
        let results: Vec<Res<IdleResult>> = thread::scope(|s| {
            let runs: Vec<_> = counts
                .iter()
                .map(|&n| {
                    let (me, fake, dir) = (&*self, &fake, &dir);
                    s.spawn(move || me.idle_run(fake, &dir.join(format!("{n}")), n))
                })
                .collect();
            runs.into_iter().map(join).collect()
        });
        let secs = self.args.idle_secs;
        for (&n, r) in counts.iter().zip(results) {
            let r = r?;
            // issue 6: ≤ 8 MiB with one target, ≤ 40 MiB with 1,000
            let limit = if n <= 1 { 8.0 } else { 40.0 };
            if n == 1 {
                self.summary.rss1 = format!("{:.1} MiB", kib_mib(r.rss_kib));
            }
            let settle = self.args.settle_secs;
            self.push(Row::check(
                &format!("idle RSS, {n} target(s), {settle} s after READY"),
                format!(
                    "{:.1} MiB = {:.1} anonymous + {:.1} file-backed (peak {:.1}; {:.1} after \
                     {secs} s idle; {} thread(s))",
                    kib_mib(r.rss_kib),
                    kib_mib(r.anon_kib),
                    kib_mib(r.file_kib),
                    kib_mib(r.hwm_kib),
                    kib_mib(r.rss_end_kib),
                    r.threads
                ),
                &format!("≤ {limit} MiB"),
                kib_mib(r.rss_kib) <= limit,
            ));
            let rate = r.voluntary as f64 / secs as f64;
            self.push(Row::check(
                &format!("idle wakeups, {n} target(s), no watchdog, {secs} s"),
                format!(
                    "{rate:.2}/s ({} voluntary + {} involuntary context switches; {} CPU)",
                    r.voluntary,
                    r.involuntary,
                    ms(r.cpu)
                ),
                "≤ 1/s",
                rate <= 1.0,
            ));
            if n > 1 {
                self.push(Row::info(
                    &format!("`run` ({n} targets) process start → READY=1"),
                    ms(r.ready),
                ));
            }
        }
        Ok(())
    }

    fn idle_run(&self, fake: &Fake, dir: &Path, targets: usize) -> Res<IdleResult> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let config = write_config(
            &dir.join("targets.toml"),
            fake,
            &dir.join("tokens"),
            targets,
            None,
        )?;
        let notify = Notify::bind(&dir.join("notify.sock"))?;
        let mut c = self.command();
        c.arg("run")
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify.path);
        let t0 = Instant::now();
        let mut d = Proc::spawn(c, &dir.join("run.log"))?;
        let ready = notify.wait_ready(Duration::from_secs(300))? - t0;
        thread::sleep(Duration::from_secs(self.args.settle_secs));
        let pid = d.pid();
        let (rss_kib, anon_kib, file_kib) = (
            proc_status(pid, "VmRSS")?,
            proc_status(pid, "RssAnon")?,
            proc_status(pid, "RssFile")?,
        );
        let (before, cpu0) = (ctx_switches(pid)?, cpu_ticks(pid)?);
        thread::sleep(Duration::from_secs(self.args.idle_secs));
        let (after, cpu1) = (ctx_switches(pid)?, cpu_ticks(pid)?);
        let r = IdleResult {
            ready,
            rss_kib,
            anon_kib,
            file_kib,
            rss_end_kib: proc_status(pid, "VmRSS")?,
            hwm_kib: proc_status(pid, "VmHWM")?,
            threads: proc_status(pid, "Threads")?,
            voluntary: after.0.saturating_sub(before.0),
            involuntary: after.1.saturating_sub(before.1),
            cpu: Duration::from_secs_f64(self.ticks_secs(cpu1.saturating_sub(cpu0))),
        };
        d.stop()?;
        Ok(r)
    }

    /// CPU per refresh: `--cpu-targets` targets refreshing about every second (10-s tokens,
    /// 1 s ± 100 ms interval), user+sys over `--refreshes` mints, divided.
    fn cpu(&mut self) -> Res<()> {
        let dir = self.dir.join("cpu");
        let fake = Fake::start(&self.fake, &dir, "10s")?;
        let config = write_config(
            &dir.join("targets.toml"),
            &fake,
            &dir.join("tokens"),
            self.args.cpu_targets,
            Some(("1s", "100ms", "2s")),
        )?;
        let notify = Notify::bind(&dir.join("notify.sock"))?;
        let mut c = self.command();
        c.arg("run")
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify.path);
        let mut d = Proc::spawn(c, &dir.join("run.log"))?;
        notify.wait_ready(Duration::from_secs(60))?;
        thread::sleep(Duration::from_secs(2));
        let pid = d.pid();
        let (m0, c0, f0, t0) = (
            self.http.mints(&fake)?,
            cpu_split(pid)?,
            cpu_ticks(fake.pid())?,
            Instant::now(),
        );
        let deadline = t0 + Duration::from_secs(300);
        let mut m1 = m0;
        while m1 < m0 + self.args.refreshes {
            if Instant::now() > deadline {
                return Err(format!("only {} refreshes in 300 s", m1 - m0));
            }
            thread::sleep(Duration::from_millis(100));
            m1 = self.http.mints(&fake)?;
        }
        let (c1, f1, wall) = (cpu_split(pid)?, cpu_ticks(fake.pid())?, t0.elapsed());
        d.stop()?;
        let n = m1 - m0;
        let user = self.ticks_secs(c1.0 - c0.0) / n as f64;
        let sys = self.ticks_secs(c1.1 - c0.1) / n as f64;
        let per = user + sys;
        let fake_per = self.ticks_secs(f1 - f0) / n as f64;
        self.summary.cpu = format!("{:.2} ms", per * 1e3);
        self.push(Row::info(
            &format!(
                "CPU (user+sys) per refresh ({} targets, {n} refreshes in {:.0} s)",
                self.args.cpu_targets,
                wall.as_secs_f64()
            ),
            format!(
                "{:.2} ms = {:.2} user + {:.2} system (the fake GitHub: {:.2} ms)",
                per * 1e3,
                user * 1e3,
                sys * 1e3,
                fake_per * 1e3
            ),
        ));
        Ok(())
    }

    /// `--many` targets, tokens living `--sustain-lifetime`, for `--sustain-secs`: a checker
    /// reads every file over and over and counts any whose token has expired.
    fn sustain(&mut self) -> Res<()> {
        let dir = self.dir.join("sustain");
        let a = &self.args;
        let fake = Fake::start(&self.fake, &dir, &a.sustain_lifetime)?;
        let n = a.many;
        let tokens = dir.join("tokens");
        let schedule = (
            a.sustain_interval.as_str(),
            a.sustain_jitter.as_str(),
            a.sustain_min_remaining.as_str(),
        );
        let config = write_config(&dir.join("targets.toml"), &fake, &tokens, n, Some(schedule))?;
        let outputs: Vec<PathBuf> = (0..n).map(|i| output_of(&tokens, i)).collect();
        let notify = Notify::bind(&dir.join("notify.sock"))?;
        let mut c = self.command();
        c.arg("run")
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify.path);
        let t_start = Instant::now();
        let log = dir.join("run.log");
        let mut d = Proc::spawn(c, &log)?;
        let ready = notify.wait_ready(Duration::from_secs(300))? - t_start;
        if a.sustain_delay_ms > 0 {
            let fault = format!(
                r#"{{"route":"any","times":1000000000,"kind":{{"type":"delay","ms":{}}}}}"#,
                a.sustain_delay_ms
            );
            self.http.post(&fake, "/_fake/faults", fault)?;
        }
        let pid = d.pid();
        let (m0, c0, f0, t0) = (
            self.http.mints(&fake)?,
            cpu_ticks(pid)?,
            cpu_ticks(fake.pid())?,
            Instant::now(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let checker = {
            let stop = stop.clone();
            thread::spawn(move || check_files(&outputs, &stop))
        };
        let secs = self.args.sustain_secs;
        let mut rss_max = 0;
        let end = t0 + Duration::from_secs(secs);
        while Instant::now() < end {
            thread::sleep(Duration::from_secs(1).min(end - Instant::now().min(end)));
            if d.exited() {
                break;
            }
            rss_max = rss_max.max(proc_status(pid, "VmRSS").unwrap_or(0));
        }
        stop.store(true, Ordering::Relaxed);
        let check = checker.join().map_err(|_| "the checker panicked")?;
        let (m1, c1, f1, wall) = (
            self.http.mints(&fake)?,
            cpu_ticks(pid)?,
            cpu_ticks(fake.pid())?,
            t0.elapsed(),
        );
        let threads = proc_status(pid, "Threads")?;
        let hwm = proc_status(pid, "VmHWM")?;
        let anon = proc_status(pid, "RssAnon")?;
        d.stop()?;
        let logged = fs::read_to_string(&log).unwrap_or_default();
        let logged_expiries = logged.matches("has EXPIRED").count();
        let warnings = logged.matches(" WARN ").count();
        let errors = logged.matches(" ERROR ").count();
        let w = wall.as_secs_f64();
        let cpu = self.ticks_secs(c1 - c0);
        let fake_cpu = self.ticks_secs(f1 - f0);
        let mints = m1 - m0;
        let mut label = format!(
            "{n} targets, {} tokens, {} ± {} (min {}), {secs} s",
            a.sustain_lifetime, a.sustain_interval, a.sustain_jitter, a.sustain_min_remaining
        );
        if a.sustain_delay_ms > 0 {
            let _ = write!(label, ", +{} ms per request", a.sustain_delay_ms);
        }
        self.push(Row::check(
            &format!("{label}: token files seen expired"),
            format!(
                "{} of {} reads ({} targets; {} unreadable); closest margin {:.2} s; \
                 \"has EXPIRED\" logged {logged_expiries}×, {warnings} WARN, {errors} ERROR",
                check.expired_reads,
                check.reads,
                check.expired_targets,
                check.unreadable,
                check.min_margin
            ),
            "0",
            check.expired_reads == 0 && check.unreadable == 0 && logged_expiries == 0,
        ));
        self.push(Row::info(
            &format!("{label}: CPU load"),
            format!(
                "{:.1}% of one core ({cpu:.1} CPU s / {w:.0} s; {mints} refreshes = {:.0}/s, \
                 {:.2} ms each; the fake GitHub {:.1}%)",
                100.0 * cpu / w,
                mints as f64 / w,
                1e3 * cpu / mints.max(1) as f64,
                100.0 * fake_cpu / w
            ),
        ));
        self.push(Row::info(
            &format!("{label}: memory"),
            format!(
                "RSS up to {:.1} MiB during the run (peak {:.1} MiB incl. start-up; {:.1} MiB \
                 anonymous at the end), {threads} threads at the end",
                kib_mib(rss_max),
                kib_mib(hwm),
                kib_mib(anon)
            ),
        ));
        self.push(Row::info(
            &format!("`run` ({n} targets) process start → READY=1 (all minted)"),
            ms(ready),
        ));
        Ok(())
    }

    /// Side by side with the closest peer, against one fake, in one run: start → first
    /// token file for `once`, `run` and the peer (interleaved, the file's appearance polled
    /// the same way for all three), then idle wakeups and RSS of `run` and the peer at once.
    fn peer(&mut self) -> Res<()> {
        let Some(peer) = self.args.peer.clone() else {
            eprintln!("bench: peer skipped: no --peer binary (scripts/bench.sh builds it)");
            return Ok(());
        };
        let dir = self.dir.join("peer");
        let fake = Fake::start(&self.fake, &dir, "3600s")?;
        let out = dir.join("out/token");
        let peer_cmd = |out: &Path| {
            let mut c = Command::new(&peer);
            c.env_clear()
                .args(["-app-id", "1234", "-installation-id", "100", "-api-base"])
                .arg(&fake.url)
                .arg("-private-key")
                .arg(dir.join("app.pkcs1.pem"))
                .arg("-out")
                .arg(out);
            c
        };
        let bin = self.bin.clone();
        let ours = |sub: &str, out: &Path| {
            let mut c = command(&bin);
            c.arg(sub)
                .args(fake.single_target_flags())
                .arg("--output")
                .arg(out);
            c
        };
        let mut times: [Vec<Duration>; 3] = Default::default();
        for _ in 0..self.args.peer_runs {
            for (k, c) in [ours("once", &out), ours("run", &out), peer_cmd(&out)]
                .into_iter()
                .enumerate()
            {
                let _ = fs::remove_file(&out);
                times[k].push(first_file(c, &out, &dir.join(format!("start{k}.log")))?);
            }
        }
        let [mut once, mut run, mut theirs] = times;
        let (once, run, theirs) = (median(&mut once), median(&mut run), median(&mut theirs));
        let n = self.args.peer_runs;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        self.push(Row::check(
            &format!("start → first token file vs the Go peer, median of {n} interleaved"),
            format!(
                "`once` {} ({:.2}×), `run` {} ({:.2}×), peer {}",
                ms(once),
                ratio(once, theirs),
                ms(run),
                ratio(run, theirs),
                ms(theirs)
            ),
            "≤ 1×",
            once <= theirs && run <= theirs,
        ));

        // idle, both at once, 1-hour tokens
        let _ = fs::remove_file(&out);
        let peer_out = dir.join("out/peer-token");
        let us = Proc::spawn(
            ours("run", &dir.join("out/ours.json")),
            &dir.join("idle-ours.log"),
        )?;
        let them = Proc::spawn(peer_cmd(&peer_out), &dir.join("idle-peer.log"))?;
        thread::sleep(Duration::from_secs(self.args.settle_secs));
        let pids = [us.pid(), them.pid()];
        let rss: Vec<u64> = pids
            .iter()
            .map(|&p| proc_status(p, "VmRSS"))
            .collect::<Res<_>>()?;
        let before: Vec<u64> = pids
            .iter()
            .map(|&p| ctx_switches(p).map(|c| c.0))
            .collect::<Res<_>>()?;
        thread::sleep(Duration::from_secs(self.args.idle_secs));
        let after: Vec<u64> = pids
            .iter()
            .map(|&p| ctx_switches(p).map(|c| c.0))
            .collect::<Res<_>>()?;
        let secs = self.args.idle_secs as f64;
        let rate: Vec<f64> = (0..2)
            .map(|i| after[i].saturating_sub(before[i]) as f64 / secs)
            .collect();
        drop((us, them)); // killed: the peer has no clean-exit contract to check
        self.push(Row::check(
            &format!(
                "idle wakeups vs the Go peer, 1 target, {} s",
                self.args.idle_secs
            ),
            format!(
                "ours {:.3}/s, peer {:.3}/s ({:.2}×)",
                rate[0],
                rate[1],
                rate[0] / rate[1].max(1e-9)
            ),
            "≤ 0.01/s",
            rate[0] <= 0.01,
        ));
        self.push(Row::info(
            "idle RSS vs the Go peer, 1 target",
            format!(
                "ours {:.1} MiB, peer {:.1} MiB ({:.2}×)",
                kib_mib(rss[0]),
                kib_mib(rss[1]),
                rss[0] as f64 / rss[1].max(1) as f64
            ),
        ));
        Ok(())
    }

    /// Pull mode (issue 14): idle RSS of a socket-only target nobody asked yet, then a cached
    /// token over the socket: latency (one client, sequential) and throughput (4 clients).
    fn socket(&mut self) -> Res<()> {
        let dir = self.dir.join("socket");
        let fake = Fake::start(&self.fake, &dir, "3600s")?;
        let sock = dir.join("s").join("token.sock");
        let mut c = self.command();
        c.arg("run")
            .args(fake.single_target_flags())
            .arg("--socket")
            .arg(&sock);
        let mut d = Proc::spawn(c, &dir.join("run.log"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            if Instant::now() > deadline || d.exited() {
                return Err("the socket did not appear".into());
            }
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_secs(self.args.settle_secs));
        let pid = d.pid();
        let rss = proc_status(pid, "VmRSS")?;
        self.push(Row::check(
            &format!(
                "idle RSS, 1 socket-only target, {} s after start, no request yet",
                self.args.settle_secs
            ),
            format!(
                "{:.1} MiB ({:.1} anonymous)",
                kib_mib(rss),
                kib_mib(proc_status(pid, "RssAnon")?)
            ),
            "≤ 8 MiB",
            kib_mib(rss) <= 8.0,
        ));
        ask(&sock)?; // mints once; everything after is the cached token
        let n = 20_000;
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            ask(&sock)?;
            lat.push(t.elapsed());
        }
        let p50 = percentile(&mut lat, 0.50);
        let p99 = percentile(&mut lat, 0.99);
        self.push(Row::check(
            &format!("socket: cached `GET /token`, one client, {n} sequential requests"),
            format!(
                "p50 {} p99 {} (connect, request, answer, close; audit line logged)",
                ms(p50),
                ms(p99)
            ),
            "p99 < 1 ms",
            p99 < Duration::from_millis(1),
        ));
        let (clients, each) = (4, 5_000);
        let cpu0 = cpu_ticks(pid)?;
        let t = Instant::now();
        thread::scope(|s| {
            let hs: Vec<_> = (0..clients)
                .map(|_| s.spawn(|| (0..each).try_for_each(|_| ask(&sock))))
                .collect();
            hs.into_iter()
                .try_for_each(|h| h.join().map_err(|_| "client panicked".to_string())?)
        })?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = self.ticks_secs(cpu_ticks(pid)?.saturating_sub(cpu0));
        let total = (clients * each) as f64;
        self.push(Row::check(
            &format!("socket: cached `GET /token`, {clients} clients × {each}"),
            format!(
                "{:.0} requests/s; the daemon used {:.0}% of one core ({:.0} µs CPU each)",
                total / secs,
                100.0 * cpu / secs,
                1e6 * cpu / total
            ),
            "thousands/s on one core",
            total / secs >= 1000.0,
        ));
        d.stop()?;
        Ok(())
    }

    fn command(&self) -> Command {
        command(&self.bin)
    }

    fn ticks_secs(&self, ticks: u64) -> f64 {
        ticks as f64 / self.clk_tck as f64
    }
}

fn command(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    // nothing from the caller's environment (GITHUB_APP_ID and friends count as flags)
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    c
}

/// Spawn `c` and return how long until `out` exists (polled every 200 µs); the process is
/// stopped afterwards (a daemon) or waited for (`once`).
fn first_file(c: Command, out: &Path, log: &Path) -> Res<Duration> {
    let t0 = Instant::now();
    let mut p = Proc::spawn(c, log)?;
    loop {
        if out.exists() {
            return Ok(t0.elapsed()); // dropping `p` kills it (a daemon) or reaps it (`once`)
        }
        if t0.elapsed() > Duration::from_secs(30) || p.exited() && !out.exists() {
            return Err(format!("no token file from a start; see {}", log.display()));
        }
        thread::sleep(Duration::from_micros(200));
    }
}

struct IdleResult {
    ready: Duration,
    /// VmRSS, RssAnon and RssFile at the start of the idle window.
    rss_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    /// VmRSS at its end.
    rss_end_kib: u64,
    hwm_kib: u64,
    threads: u64,
    voluntary: u64,
    involuntary: u64,
    /// CPU time over the idle window.
    cpu: Duration,
}

/// One `GET /token` over the socket; an error unless 200.
fn ask(sock: &Path) -> Res<()> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).map_err(|e| e.to_string())?;
    s.write_all(b"GET /token HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(2048);
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    if out.starts_with(b"HTTP/1.1 200 ") {
        Ok(())
    } else {
        Err(format!(
            "answer: {}",
            String::from_utf8_lossy(&out[..out.len().min(200)])
        ))
    }
}

fn join<T>(h: thread::ScopedJoinHandle<'_, Res<T>>) -> Res<T> {
    h.join()
        .unwrap_or_else(|_| Err("a measurement panicked".into()))
}

/// The file paths of a configuration's targets.
fn output_of(tokens: &Path, i: usize) -> PathBuf {
    tokens.join(format!("t{i:04}.json"))
}

/// `targets` `[[target]]` tables alternating between the fake's installations: even ones on
/// 100 (acme) scoped to one repository and one permission, odd ones on 200 (octocat) with
/// everything. `schedule` is (interval, jitter, min_remaining); `None` keeps the defaults.
fn write_config(
    path: &Path,
    fake: &Fake,
    tokens: &Path,
    targets: usize,
    schedule: Option<(&str, &str, &str)>,
) -> Res<PathBuf> {
    let mut s = format!(
        "app_id = 1234\nprivate_key_file = \"{}\"\napi_url = \"{}\"\n",
        fake.key.display(),
        fake.url
    );
    if let Some((interval, jitter, min)) = schedule {
        let _ = write!(
            s,
            "refresh_interval = \"{interval}\"\njitter = \"{jitter}\"\nmin_remaining = \"{min}\"\n"
        );
    }
    for i in 0..targets {
        let how = if i % 2 == 0 {
            "installation_id = 100\nrepositories = [\"widgets\"]\npermissions = { contents = \"read\" }"
        } else {
            "installation_id = 200"
        };
        let _ = write!(
            s,
            "\n[[target]]\nname = \"t{i:04}\"\n{how}\noutput = \"{}\"\n",
            output_of(tokens, i).display()
        );
    }
    fs::write(path, s).map_err(|e| format!("cannot write '{}': {e}", path.display()))?;
    Ok(path.to_path_buf())
}

#[derive(Default)]
struct CheckResult {
    reads: u64,
    expired_reads: u64,
    expired_targets: usize,
    unreadable: u64,
    min_margin: f64,
}

/// Read every file, compare `expires_at_unix` with now, pause 200 ms, again, until `stop`.
fn check_files(outputs: &[PathBuf], stop: &AtomicBool) -> CheckResult {
    #[derive(serde::Deserialize)]
    struct File {
        expires_at_unix: i64,
    }
    let mut r = CheckResult {
        min_margin: f64::MAX,
        ..CheckResult::default()
    };
    let mut expired = vec![false; outputs.len()];
    while !stop.load(Ordering::Relaxed) {
        for (i, path) in outputs.iter().enumerate() {
            r.reads += 1;
            let parsed = fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<File>(&b).ok());
            let Some(f) = parsed else {
                r.unreadable += 1;
                continue;
            };
            let margin = f.expires_at_unix as f64 - unix_now();
            r.min_margin = r.min_margin.min(margin);
            if margin <= 0.0 {
                r.expired_reads += 1;
                expired[i] = true;
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    r.expired_targets = expired.iter().filter(|e| **e).count();
    r
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// processes

/// The fake GitHub, killed on drop.
struct Fake {
    child: Child,
    url: String,
    key: PathBuf,
}

impl Fake {
    fn start(bin: &Path, dir: &Path, lifetime: &str) -> Res<Fake> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let port_file = dir.join("url");
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--token-lifetime", lifetime])
            .arg("--key-out")
            .arg(dir)
            .arg("--port-file")
            .arg(&port_file)
            .stdout(Stdio::null())
            .stderr(log_file(&dir.join("fake.log"))?)
            .spawn()
            .map_err(|e| format!("cannot start '{}': {e}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(url) = fs::read_to_string(&port_file)
                && !url.trim().is_empty()
            {
                return Ok(Fake {
                    child,
                    url: url.trim().to_string(),
                    key: dir.join("app.pem"),
                });
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the fake GitHub did not start; see {}",
                    dir.display()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn single_target_flags(&self) -> Vec<String> {
        [
            "--app-id",
            "1234",
            "--private-key-file",
            &self.key.display().to_string(),
            "--installation-id",
            "100",
            "--api-url",
            &self.url,
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon, killed on drop unless stopped.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(mut c: Command, log: &Path) -> Res<Proc> {
        c.stdout(Stdio::null()).stderr(log_file(log)?);
        let child = c
            .spawn()
            .map_err(|e| format!("cannot start the daemon: {e}"))?;
        Ok(Proc { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// SIGTERM, and expect a clean exit within 10 s.
    fn stop(&mut self) -> Res<ExitStatus> {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(status),
                Ok(Some(status)) => return Err(format!("the daemon exited with {status}")),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err("the daemon did not stop within 10 s of SIGTERM".into());
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn log_file(path: &Path) -> Res<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open '{}': {e}", path.display()))
}

/// A `NOTIFY_SOCKET` listener that timestamps each datagram as it arrives.
struct Notify {
    path: PathBuf,
    rx: mpsc::Receiver<(Instant, String)>,
}

impl Notify {
    fn bind(path: &Path) -> Res<Notify> {
        let _ = fs::remove_file(path);
        let sock = UnixDatagram::bind(path)
            .map_err(|e| format!("cannot bind '{}': {e}", path.display()))?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if tx.send((Instant::now(), msg)).is_err() {
                            break;
                        }
                    }
                    // a timeout: stop once nobody listens
                    Err(_) => {
                        if tx.send((Instant::now(), String::new())).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Notify {
            path: path.to_path_buf(),
            rx,
        })
    }

    /// When the first `READY=1` arrived.
    fn wait_ready(&self, timeout: Duration) -> Res<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((at, msg)) if msg.lines().any(|l| l == "READY=1") => return Ok(at),
                Ok(_) => {}
                Err(_) => return Err(format!("no READY=1 within {timeout:?}")),
            }
        }
    }
}

/// Talks to the fake's control API.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = rt.block_on(async { reqwest::Client::new() });
        Http { rt, client }
    }

    fn post(&self, fake: &Fake, path: &str, body: String) -> Res<()> {
        let url = format!("{}{path}", fake.url);
        self.rt
            .block_on(async {
                self.client
                    .post(&url)
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()
            })
            .map(drop)
            .map_err(|e| format!("POST {url}: {e}"))
    }

    fn mints(&self, fake: &Fake) -> Res<u64> {
        let url = format!("{}/_fake/stats", fake.url);
        let v: serde_json::Value = self
            .rt
            .block_on(async { self.client.get(&url).send().await?.json().await })
            .map_err(|e| format!("GET {url}: {e}"))?;
        v["mints"]
            .as_u64()
            .ok_or_else(|| format!("GET {url}: no mints in {v}"))
    }
}

// ---------------------------------------------------------------------------------------
// /proc

fn proc_file(pid: u32, name: &str) -> Res<String> {
    let path = format!("/proc/{pid}/{name}");
    fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// A `Key: value [kB]` field of /proc/PID/status (kB for the memory ones).
fn proc_status(pid: u32, key: &str) -> Res<u64> {
    status_field(&proc_file(pid, "status")?, key)
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// (voluntary, involuntary) context switches summed over the process's threads.
fn ctx_switches(pid: u32) -> Res<(u64, u64)> {
    let dir = format!("/proc/{pid}/task");
    let mut sum = (0, 0);
    for entry in fs::read_dir(&dir).map_err(|e| format!("cannot list {dir}: {e}"))? {
        let Ok(text) = fs::read_to_string(entry.map_err(|e| e.to_string())?.path().join("status"))
        else {
            continue; // the thread just exited
        };
        sum.0 += status_field(&text, "voluntary_ctxt_switches").unwrap_or(0);
        sum.1 += status_field(&text, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Ok(sum)
}

/// utime + stime of the whole process (all threads, including exited ones), in clock ticks.
fn cpu_ticks(pid: u32) -> Res<u64> {
    cpu_split(pid).map(|(u, s)| u + s)
}

/// (utime, stime) in clock ticks.
fn cpu_split(pid: u32) -> Res<(u64, u64)> {
    let stat = proc_file(pid, "stat")?;
    // fields after "(comm)": state is the first, utime the 12th, stime the 13th
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    match (get(11), get(12)) {
        (Some(u), Some(s)) => Ok((u, s)),
        _ => Err(format!("cannot parse /proc/{pid}/stat")),
    }
}

fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}

fn fs_type(path: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown file system".into())
}

// ---------------------------------------------------------------------------------------
// numbers and the table

fn median(v: &mut [Duration]) -> Duration {
    percentile(v, 0.5)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn kib_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Info,
    Met,
    Missed,
    Failed,
}

struct Row {
    what: String,
    value: String,
    target: String,
    verdict: Verdict,
}

impl Row {
    fn info(what: &str, value: String) -> Row {
        Row {
            what: what.into(),
            value,
            target: "—".into(),
            verdict: Verdict::Info,
        }
    }

    fn check(what: &str, value: String, target: &str, met: bool) -> Row {
        Row {
            what: what.into(),
            value,
            target: target.into(),
            verdict: if met { Verdict::Met } else { Verdict::Missed },
        }
    }

    fn failed(what: &str, why: &str) -> Row {
        Row {
            what: what.into(),
            value: format!("measurement failed: {why}"),
            target: "—".into(),
            verdict: Verdict::Failed,
        }
    }
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from("| measurement | result | target | |\n|---|---|---|---|\n");
    for r in rows {
        let verdict = match r.verdict {
            Verdict::Info => "",
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Failed => "**failed**",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {verdict} |",
            r.what.replace('|', "\\|"),
            r.value.replace('|', "\\|"),
            r.target
        );
    }
    s
}
