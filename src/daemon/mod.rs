//! `run`: the daemon. One `select!` loop over signals, the watchdog, finished refreshes and
//! the next deadline. Each target has its own schedule, backoff and error state; refreshes
//! run as tasks, so one slow or failing target never delays another.
//!
//! Every deadline is kept on two clocks and falls due when either says so: the wall clock
//! (which a suspend moves on, so a resumed host refreshes at once) and the monotonic clock
//! (which a wall-clock step back does not move, so such a step cannot postpone a refresh
//! past the token's expiry).

mod reload;
mod state;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, warn};

use crate::clock::Clock;
use crate::config::{Config, ConfigError, Source, Target};
use crate::durations::format_duration;
use crate::error::exit;
use crate::fingerprint;
use crate::github::Client;
use crate::notify;
use crate::refresh::{Ctx, Minted, RefreshError, Resources};
use crate::revoke;
use crate::schedule::RetryBudget;
use crate::secret::Secret;
use crate::token_file::{self, Freshness};
use crate::wake::{Alarm, Woken};

/// Longest single sleep. The kernel wakes the loop at its next deadline counting suspended
/// time, and at once when the wall clock is set ([`crate::wake`]), so an idle daemon wakes
/// once per refresh; this cap is a belt for the braces, under a token's hour. (Without
/// timerfds, [`crate::wake::FALLBACK_NAP`] applies.)
pub const NAP: Duration = Duration::from_secs(3600);

/// At most this many refreshes talk to GitHub at once; with many targets the rest wait
/// their turn, so a start or a reload never fires a burst of hundreds of requests.
pub const MAX_IN_FLIGHT: usize = 16;

/// Re-reads the configuration on SIGHUP.
pub type Loader = Box<dyn Fn() -> Result<Config, ConfigError> + Send>;

/// The token a target's file holds, and when it expires.
#[derive(Debug, Clone)]
struct Current {
    /// Kept to revoke it (`revoke_on_stop`, `revoke_superseded_after`); never logged.
    token: Secret,
    /// By GitHub's clock, as written in the file.
    expires: DateTime<Utc>,
    /// The same moment on the monotonic clock, when this process minted the token.
    expires_mono: Option<Instant>,
}

#[derive(Debug)]
struct TargetState {
    target: Arc<Target>,
    /// Bumped when the target's configuration changes, to ignore older tasks' results.
    epoch: u64,
    current: Option<Current>,
    /// Local wall-clock time of the next attempt.
    next_at: DateTime<Utc>,
    /// The same deadline on the monotonic clock (`None`: the wall clock alone).
    next_mono: Option<Instant>,
    in_flight: bool,
    /// A reload asked for a mint while one was in flight: mint again when it finishes.
    mint_again: bool,
    attempt: u32,
    budget: RetryBudget,
    last_error: Option<(String, bool)>,
    expiry_reported: bool,
    /// For the metrics file.
    stats: Stats,
}

/// A target's counters for the metrics file; they survive a change of its configuration.
#[derive(Debug, Clone, Default)]
struct Stats {
    successes: u64,
    failures: u64,
    last_success_unix: Option<i64>,
    generation: u64,
}

impl TargetState {
    fn new(target: Target, epoch: u64, now: DateTime<Utc>) -> Self {
        TargetState {
            target: Arc::new(target),
            epoch,
            current: None,
            next_at: now,
            next_mono: None,
            in_flight: false,
            mint_again: false,
            attempt: 0,
            budget: RetryBudget::default(),
            last_error: None,
            expiry_reported: false,
            stats: Stats::default(),
        }
    }

    fn name(&self) -> &str {
        &self.target.name
    }

    /// Plan the next attempt at `at` (local wall clock), and as long from now on the
    /// monotonic clock.
    fn plan(&mut self, at: DateTime<Utc>, now: DateTime<Utc>) {
        self.next_at = at;
        self.next_mono = Some(mono_after(now, at));
    }

    fn is_due(&self, now: DateTime<Utc>, mono: Instant) -> bool {
        self.next_at <= now || self.next_mono.is_some_and(|m| m <= mono)
    }

    /// How long until the next attempt is due by either clock.
    fn wait(&self, now: DateTime<Utc>, mono: Instant) -> Duration {
        let wall = (self.next_at - now).to_std().unwrap_or(Duration::ZERO);
        match self.next_mono {
            Some(m) => wall.min(m.saturating_duration_since(mono)),
            None => wall,
        }
    }
}

/// The monotonic instant as far from now as `at` is from `now`.
fn mono_after(now: DateTime<Utc>, at: DateTime<Utc>) -> Instant {
    Instant::now() + (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// A superseded token to revoke once its grace time is over (by either clock).
struct PendingRevocation {
    target: String,
    token: Secret,
    client: Client,
    at: DateTime<Utc>,
    at_mono: Instant,
    after: Duration,
}

/// A target removed by a reload with `revoke_on_stop` while its refresh was in flight: the
/// token that refresh publishes is revoked and its file removed when it finishes.
struct Orphan {
    name: String,
    epoch: u64,
    target: Arc<Target>,
    client: Client,
}

struct TaskResult {
    name: String,
    epoch: u64,
    result: Result<Published, RefreshError>,
}

struct Published {
    current: Current,
    generation: u64,
    refresh_at: DateTime<Utc>,
}

/// The tokens a `revoke_on_stop` target holds at stop (the one it knows, and a newer one an
/// aborted refresh may have published), its file removed.
fn take_tokens_at_stop(t: &TargetState) -> Vec<Secret> {
    let mut tokens: Vec<Secret> = t.current.iter().map(|c| c.token.clone()).collect();
    if let Ok(file) = token_file::read(&t.target.output)
        && !tokens.contains(&file.token)
    {
        tokens.push(file.token);
    }
    match std::fs::remove_file(&t.target.output) {
        Ok(()) => {
            info!(target_name = %t.target.name, "stopping: removed '{}'", t.target.output.display())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(target_name = %t.target.name, "stopping: cannot remove '{}': {e}", t.target.output.display())
        }
    }
    tokens
}

/// What the loop does after one `select!` arm.
enum Next {
    Continue,
    Stop,
    Exit(i32),
}

fn on_watchdog() -> Next {
    notify::watchdog();
    Next::Continue
}

fn on_woken(woken: std::io::Result<Woken>) -> Next {
    match woken {
        Ok(Woken::Deadline) => Next::Continue,
        Ok(Woken::ClockSet) => {
            tracing::debug!("the wall clock was set, or the host resumed");
            Next::Continue
        }
        Err(e) => {
            error!("cannot wait for the wake-up timer: {e}");
            Next::Exit(exit::FAILURE)
        }
    }
}

pub struct Daemon {
    /// On reload, delete the files of removed targets (config file `delete_removed_outputs`).
    delete_removed_outputs: bool,
    clock: Arc<dyn Clock>,
    loader: Loader,
    /// Flags or file: decides what a reload and a first failure do (`Source`'s methods).
    source: Source,
    res: Resources,
    http_timeout: Duration,
    targets: Vec<TargetState>,
    tasks: JoinSet<TaskResult>,
    ready_sent: bool,
    epochs: u64,
    reload_note: Option<String>,
    last_status: String,
    pending_revocations: Vec<PendingRevocation>,
    revocations: JoinSet<()>,
    orphans: Vec<Orphan>,
    metrics: Option<crate::metrics::Writer>,
}

impl Daemon {
    pub fn new(config: Config, res: Resources, loader: Loader, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        let targets = config
            .targets
            .into_iter()
            // socket-only targets mint on demand (`crate::pull`), not on this schedule
            .filter(|t| t.writes_file)
            .map(|t| TargetState::new(t, 0, now))
            .collect();
        Daemon {
            delete_removed_outputs: config.delete_removed_outputs,
            clock,
            loader,
            source: config.source,
            res,
            http_timeout: config.http_timeout,
            targets,
            tasks: JoinSet::new(),
            ready_sent: false,
            epochs: 0,
            reload_note: None,
            last_status: String::new(),
            pending_revocations: Vec::new(),
            revocations: JoinSet::new(),
            orphans: Vec::new(),
            metrics: config.metrics_file.map(crate::metrics::Writer::new),
        }
    }

    /// Bring the metrics file up to date (written only when something in it changed).
    fn write_metrics(&mut self) {
        if self.metrics.is_none() {
            return;
        }
        let rows: Vec<crate::metrics::TargetMetrics> = self
            .targets
            .iter()
            .map(|t| crate::metrics::TargetMetrics {
                name: t.target.name.clone(),
                expires_at_unix: t.current.as_ref().map(|c| c.expires.timestamp()),
                last_success_unix: t.stats.last_success_unix,
                consecutive_failures: t.attempt,
                successes: t.stats.successes,
                failures: t.stats.failures,
                generation: t.stats.generation,
                clock_offset_secs: self.res.client(&t.target).clock_offset(),
            })
            .collect();
        let text = crate::metrics::render(&rows);
        if let Some(w) = &mut self.metrics {
            w.update(text);
        }
    }

    /// Run until SIGTERM/SIGINT (exit 0) or a configuration error before the first token (78).
    pub async fn run(mut self) -> i32 {
        let (mut hup, mut term, mut int) = match (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(h), Ok(t), Ok(i)) => (h, t, i),
            _ => {
                error!("cannot install signal handlers");
                return exit::FAILURE;
            }
        };
        let watchdog_period = notify::watchdog_interval();
        let mut watchdog =
            tokio::time::interval(watchdog_period.unwrap_or(Duration::from_secs(3600)));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

        self.adopt_existing_files();
        self.log_start(watchdog_period);
        if self.targets.iter().all(|t| self.is_fresh(t)) {
            self.send_ready();
        }
        let (mut alarm, no_timerfd) = Alarm::new();
        if let Some(e) = no_timerfd {
            warn!(
                "no kernel timers ({e}): waking every {} to notice a suspend or a clock step",
                format_duration(crate::wake::FALLBACK_NAP)
            );
        }
        loop {
            self.start_due();
            self.start_due_revocations();
            self.write_metrics();
            self.report_expiries();
            if let Err(e) = alarm.arm(Some(self.time_to_next_deadline())) {
                error!("cannot set the wake-up timer: {e}");
                return exit::FAILURE;
            }
            let next = tokio::select! {
                _ = term.recv() => Next::Stop,
                _ = int.recv() => Next::Stop,
                _ = hup.recv() => self.on_hangup(),
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => self.on_task_done(done),
                Some(_) = self.revocations.join_next(), if !self.revocations.is_empty() => Next::Continue,
                _ = watchdog.tick(), if watchdog_period.is_some() => on_watchdog(),
                woken = alarm.wait() => on_woken(woken),
            };
            match next {
                Next::Continue => {}
                Next::Stop => break,
                Next::Exit(code) => return code,
            }
        }
        self.stop().await
    }

    fn log_start(&self, watchdog_period: Option<Duration>) {
        info!(
            version = env!("CARGO_PKG_VERSION"),
            watchdog = watchdog_period
                .map(format_duration)
                .unwrap_or_else(|| "off".into()),
            "started with {} target(s)",
            self.targets.len()
        );
        for t in &self.targets {
            let p = &t.target.policy;
            info!(
                target_name = %t.target.name,
                app_id = %t.target.app.app_id,
                api_url = %t.target.api_url,
                "{} → '{}', refresh every {}±{}, at the latest {} before expiry",
                t.target.installation,
                t.target.output.display(),
                format_duration(p.interval),
                format_duration(p.jitter),
                format_duration(p.min_remaining)
            );
        }
    }

    fn on_hangup(&mut self) -> Next {
        self.reload();
        Next::Continue
    }

    fn on_task_done(&mut self, done: Result<TaskResult, tokio::task::JoinError>) -> Next {
        match done {
            Ok(result) => self.finish(result).map_or(Next::Continue, Next::Exit),
            Err(e) => {
                error!("a refresh task failed: {e}");
                Next::Continue
            }
        }
    }

    /// SIGTERM/SIGINT: say STOPPING, drop the attempts under way, revoke what must be
    /// revoked (bounded), write the last metrics.
    async fn stop(mut self) -> i32 {
        info!("stopping");
        notify::stopping();
        self.tasks.abort_all();
        self.revoke_at_stop().await;
        // a revoked token has no expiry to alert on
        for t in &mut self.targets {
            if t.target.revoke.on_stop {
                t.current = None;
            }
        }
        self.write_metrics();
        exit::OK
    }

    /// On SIGTERM/SIGINT: remove the files of `revoke_on_stop` targets and revoke their
    /// tokens, and revoke the superseded tokens still in their grace time (the file holds
    /// their successor, and a consumer's grace ends with the daemon that granted it). All of
    /// it together waits at most [`revoke::STOP_BUDGET`] on GitHub; a failure is logged.
    /// `revoke_on_stop`: revoke every token the targets that ask for it hold (and the
    /// superseded ones still waiting), within [`revoke::STOP_BUDGET`] in all.
    async fn revoke_at_stop(&mut self) {
        let mut jobs: Vec<(String, Secret, Client, &'static str)> = Vec::new();
        for t in &self.targets {
            if !t.target.revoke.on_stop {
                continue;
            }
            let client = self.res.client(&t.target).clone();
            for token in take_tokens_at_stop(t) {
                jobs.push((
                    t.target.name.clone(),
                    token,
                    client.clone(),
                    "the daemon is stopping",
                ));
            }
        }
        for p in self.pending_revocations.drain(..) {
            jobs.push((
                p.target,
                p.token,
                p.client,
                "superseded; the daemon is stopping",
            ));
        }
        if jobs.is_empty() && self.revocations.is_empty() {
            return;
        }
        for (name, token, client, why) in jobs {
            self.revocations.spawn(async move {
                revoke::revoke_logged(&client, &token, revoke::STOP_EACH, &name, why).await;
            });
        }
        let all = async { while self.revocations.join_next().await.is_some() {} };
        if tokio::time::timeout(revoke::STOP_BUDGET, all)
            .await
            .is_err()
        {
            warn!(
                "stopping: gave up on {} revocation(s) after {}; those tokens stay valid until they expire",
                self.revocations.len(),
                format_duration(revoke::STOP_BUDGET)
            );
            self.revocations.abort_all();
        }
    }

    /// Revoke the superseded tokens whose grace time is over.
    fn start_due_revocations(&mut self) {
        let now = self.clock.now();
        let mono = Instant::now();
        let budget = self.http_timeout;
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_revocations)
            .into_iter()
            .partition(|p| p.at <= now || p.at_mono <= mono);
        self.pending_revocations = keep;
        for p in due {
            let why = format!(
                "superseded {} ago (revoke_superseded_after)",
                format_duration(p.after)
            );
            self.revocations.spawn(async move {
                revoke::revoke_logged(&p.client, &p.token, budget, &p.target, &why).await;
            });
        }
    }

    /// Target `t` was removed with `revoke_on_stop`: remove its file, revoke its token.
    fn revoke_removed(
        &mut self,
        name: &str,
        output: &std::path::Path,
        token: Secret,
        client: Client,
    ) {
        let fp = fingerprint::of(token.expose());
        match revoke::remove_if_holds(output, &fp) {
            Ok(true) => {
                info!(target_name = %name, fingerprint = %fp, "target removed: deleted '{}'", output.display())
            }
            Ok(false) => {}
            Err(e) => {
                warn!(target_name = %name, "target removed: cannot delete '{}': {e}", output.display())
            }
        }
        let budget = self.http_timeout;
        let name = name.to_owned();
        self.revocations.spawn(async move {
            revoke::revoke_logged(&client, &token, budget, &name, "its target was removed").await;
        });
    }

    /// A still-valid file from before counts: consumers have a token while we mint anew.
    fn adopt_existing_files(&mut self) {
        let now = self.clock.now();
        let keep_plans = self.source.adopts_schedules_of_existing_files();
        for t in &mut self.targets {
            let removed = token_file::remove_stale_temps(&t.target.output);
            if removed > 0 {
                info!(target_name = %t.target.name, removed, "removed temp files left by a crash");
            }
            let read = token_file::read(&t.target.output);
            if let Err(
                e
                @ (token_file::ReadError::NotAFile { .. } | token_file::ReadError::Invalid { .. }),
            ) = &read
            {
                warn!(target_name = %t.target.name, "{e}; the next token replaces it");
            }
            if let Ok(file) = read {
                let max_life = crate::github::MAX_TOKEN_LIFETIME.as_secs() as i64;
                let remaining = file.expires_at_unix - now.timestamp();
                if remaining > max_life {
                    // GitHub's tokens live an hour: a file that says otherwise was not
                    // written by us, and must not postpone the first mint
                    warn!(target_name = %t.target.name, expires_at = %file.expires_at, "the token file from before expires later than a GitHub token can; not adopting it");
                } else if let Freshness::Valid { remaining_secs }
                | Freshness::Expiring { remaining_secs } = file.freshness(now, 0)
                {
                    info!(
                        target_name = %t.target.name,
                        expires_at = %file.expires_at,
                        "the token file from before is still valid for {}",
                        format_duration(Duration::from_secs(remaining_secs as u64))
                    );
                    t.stats.generation = file.generation;
                    t.current = Some(Current {
                        token: file.token.clone(),
                        expires: file.expires_at(),
                        expires_mono: None,
                    });
                    // With a configuration file (many targets), a restart keeps the plan the
                    // file records, rather than minting every target at once; with flags, a
                    // restart mints at once (the flags may have changed the scope).
                    let latest =
                        file.expires_at_unix - t.target.policy.min_remaining.as_secs() as i64;
                    let same_app = file.app_id == t.target.app.app_id;
                    let same_scope =
                        file.repositories.clone().unwrap_or_default() == t.target.repositories;
                    if keep_plans
                        && same_app
                        && same_scope
                        && file.refresh_at_unix > now.timestamp()
                        && file.refresh_at_unix <= latest
                    {
                        let at = DateTime::from_timestamp(file.refresh_at_unix, 0).unwrap_or(now);
                        t.plan(at, now);
                    }
                }
            }
        }
    }

    fn server_offset(&self, t: &TargetState) -> chrono::Duration {
        chrono::Duration::seconds(self.res.client(&t.target).clock_offset())
    }

    /// Seconds the target's current token has left, by GitHub's clock, or by the monotonic
    /// clock when that says less (the wall clock was stepped back since the mint, and the
    /// offset to GitHub's clock is not learned again until GitHub answers).
    fn remaining(&self, t: &TargetState) -> Option<i64> {
        let now = self.clock.now() + self.server_offset(t);
        t.current.as_ref().map(|c| {
            let wall = c.expires.timestamp() - now.timestamp();
            match c.expires_mono {
                Some(m) => wall.min(secs_until(m)),
                None => wall,
            }
        })
    }

    fn is_fresh(&self, t: &TargetState) -> bool {
        self.remaining(t).is_some_and(|r| r > 0)
    }

    /// Start the due refreshes, earliest first, at most [`MAX_IN_FLIGHT`] at a time.
    fn start_due(&mut self) {
        let now = self.clock.now();
        let mono = Instant::now();
        let mut due: Vec<usize> = (0..self.targets.len())
            .filter(|&i| !self.targets[i].in_flight && self.targets[i].is_due(now, mono))
            .collect();
        due.sort_by_key(|&i| self.targets[i].next_at);
        due.truncate(MAX_IN_FLIGHT.saturating_sub(self.tasks.len()));
        if !self.ready_sent && !due.is_empty() {
            // systemd counts TimeoutStartSec until READY: cover this attempt's worst case
            let by = crate::refresh::attempt_worst_case(self.http_timeout);
            notify::extend_timeout(by, &self.status_line());
        }
        for i in due {
            let t = &mut self.targets[i];
            t.in_flight = true;
            let ctx = Ctx::new(&self.res, &t.target, self.clock.clone());
            let span = tracing::info_span!("refresh", target_name = %t.target.name);
            self.tasks
                .spawn(refresh_task(ctx, t.target.clone(), t.epoch).instrument(span));
        }
    }

    /// Log once when a token runs out while we could not replace it.
    fn report_expiries(&mut self) {
        let mut changed = false;
        for i in 0..self.targets.len() {
            let expired = self.remaining(&self.targets[i]).is_some_and(|r| r <= 0);
            let t = &mut self.targets[i];
            if expired && !t.expiry_reported {
                t.expiry_reported = true;
                changed = true;
                let why = t
                    .last_error
                    .as_ref()
                    .map_or("no refresh succeeded", |(e, _)| e.as_str());
                error!(target_name = %t.target.name, "the token in '{}' has EXPIRED: {why}; consumers have no valid token until GitHub answers", t.target.output.display());
            }
        }
        if changed {
            self.update_status();
        }
    }

    fn time_to_next_deadline(&self) -> Duration {
        let now = self.clock.now();
        let mono = Instant::now();
        let mut wait = NAP;
        // when every slot is busy, a finished task (not the clock) wakes the loop
        let slots_free = self.tasks.len() < MAX_IN_FLIGHT;
        for t in &self.targets {
            if !t.in_flight && (slots_free || !t.is_due(now, mono)) {
                wait = wait.min(t.wait(now, mono));
            }
            if let (Some(c), false) = (&t.current, t.expiry_reported) {
                let local_expiry = c.expires - self.server_offset(t);
                wait = wait.min((local_expiry - now).to_std().unwrap_or(Duration::ZERO));
                if let Some(m) = c.expires_mono {
                    wait = wait.min(m.saturating_duration_since(mono));
                }
            }
        }
        for p in &self.pending_revocations {
            wait = wait
                .min((p.at - now).to_std().unwrap_or(Duration::ZERO))
                .min(p.at_mono.saturating_duration_since(mono));
        }
        wait
    }

    /// Handle a finished refresh; returns an exit code when the daemon must stop.
    /// A refresh task ended: apply its result to its target, log it, and tell systemd.
    /// Some(status) when the daemon must exit: no first token can ever be minted.
    fn finish(&mut self, r: TaskResult) -> Option<i32> {
        let Some(idx) = self
            .targets
            .iter()
            .position(|t| t.name() == r.name && t.epoch == r.epoch)
        else {
            self.finish_orphan(r);
            return None;
        };
        let ready_before = self.ready_sent;
        let extend = match r.result {
            Ok(p) => {
                self.on_success(idx, p);
                None
            }
            Err(e) => match self.on_failure(idx, &e, ready_before) {
                Ok(extend) => extend,
                Err(code) => return Some(code),
            },
        };
        self.after_attempt(extend)
    }

    /// The result of a task whose target a reload removed or changed meanwhile: a token it
    /// minted for a target that revokes on removal is revoked.
    fn finish_orphan(&mut self, r: TaskResult) {
        let orphan = self
            .orphans
            .iter()
            .position(|o| o.name == r.name && o.epoch == r.epoch)
            .map(|i| self.orphans.remove(i));
        if let (Some(o), Ok(p)) = (orphan, r.result) {
            self.revoke_removed(&o.name, &o.target.output, p.current.token, o.client);
        }
    }

    fn on_success(&mut self, idx: usize, p: Published) {
        let now = self.clock.now();
        let client = self.res.client(&self.targets[idx].target).clone();
        let t = &mut self.targets[idx];
        if let (Some(prev), Some(after)) = (t.on_success(p, now), t.target.revoke.superseded_after)
        {
            self.pending_revocations.push(PendingRevocation {
                target: t.target.name.clone(),
                token: prev.token,
                client,
                at: now + chrono::Duration::from_std(after).unwrap_or_default(),
                at_mono: Instant::now() + after,
                after,
            });
        }
    }

    /// Log the failure and decide: Ok(how long to ask systemd to wait, before READY), or
    /// Err(78) when a first token can never come.
    fn on_failure(
        &mut self,
        idx: usize,
        e: &RefreshError,
        ready_before: bool,
    ) -> Result<Option<Duration>, i32> {
        let now = self.clock.now();
        let offset = self.server_offset(&self.targets[idx]);
        // the journal's short view shows the message alone: it names the target and the
        // retry itself (the fields say it again for filters and for stderr)
        let who = if self.targets.len() > 1 {
            format!("{}: ", self.targets[idx].name())
        } else {
            String::new()
        };
        let t = &mut self.targets[idx];
        let failed = t.on_failure(e, now, rand::random());
        let has_token = t.has_valid_token(now, offset);
        let wait = format_duration(Duration::from_secs(
            (t.next_at - now).num_seconds().max(0) as u64
        ));
        let hint = failed.hint.map(|h| format!(" ({h})")).unwrap_or_default();
        if failed.permanent {
            error!(target_name = %t.target.name, attempt = t.attempt, retry_in = %wait, "{who}{e}{hint}; retrying in {wait}");
        } else {
            warn!(target_name = %t.target.name, attempt = t.attempt, retry_in = %wait, "{who}{e}; retry {} in {wait}", t.attempt);
        }
        if ready_before || has_token {
            return Ok(None);
        }
        if failed.permanent && self.source.first_permanent_failure_is_fatal() {
            error!("cannot mint a first token and no valid token file exists: {e}{hint}");
            return Err(exit::CONFIG);
        }
        // until the next attempt starts (it extends again for itself)
        let until_next = (t.next_at - now).to_std().unwrap_or(failed.delay);
        Ok(Some(
            until_next + crate::refresh::attempt_worst_case(self.http_timeout),
        ))
    }

    /// After any attempt: READY once every target has settled (or exit 78 when none can
    /// ever hold a token), else the STATUS line, and more start-up time while not READY.
    fn after_attempt(&mut self, extend: Option<Duration>) -> Option<i32> {
        if !self.ready_sent && self.all_settled() {
            if self.targets.iter().all(|t| !self.is_fresh(t)) {
                error!(
                    "no target has a valid token and every one failed with an error retrying won't fix"
                );
                return Some(exit::CONFIG);
            }
            self.send_ready();
        } else {
            self.update_status();
            if let (false, Some(by)) = (self.ready_sent, extend) {
                notify::extend_timeout(by, &self.last_status);
            }
        }
        None
    }

    /// Every target has a valid token or a permanent error.
    fn all_settled(&self) -> bool {
        self.targets
            .iter()
            .all(|t| self.is_fresh(t) || t.last_error.as_ref().is_some_and(|(_, p)| *p))
    }

    fn send_ready(&mut self) {
        self.ready_sent = true;
        let status = self.status_line();
        self.last_status = status.clone();
        info!("ready: {status}");
        notify::ready(&status);
    }

    fn update_status(&mut self) {
        let status = self.status_line();
        if status != self.last_status {
            notify::status(&status);
            self.last_status = status;
        }
    }
}

async fn refresh_task(ctx: Ctx, target: Arc<Target>, epoch: u64) -> TaskResult {
    let result = refresh_once(&ctx, &target).await;
    TaskResult {
        name: target.name.clone(),
        epoch,
        result,
    }
}

async fn refresh_once(ctx: &Ctx, target: &Target) -> Result<Published, RefreshError> {
    let (minted, written) =
        crate::refresh::refresh(ctx, target, rand::random_range(-1.0..=1.0)).await?;
    let Minted {
        installation: inst,
        token,
        refresh_at,
        server_now,
        ..
    } = minted;
    info!(
        installation_id = inst.id,
        account = %inst.account,
        expires_at = %written.expires_at,
        generation = written.generation,
        fingerprint = %written.fingerprint,
        next_refresh = %refresh_at.format("%H:%M:%S UTC"),
        "minted a token and wrote '{}'",
        target.output.display()
    );
    let left = written.expires_at() - server_now;
    Ok(Published {
        generation: written.generation,
        current: Current {
            token: token.token.clone(),
            expires: written.expires_at(),
            expires_mono: Some(Instant::now() + left.to_std().unwrap_or(Duration::ZERO)),
        },
        refresh_at,
    })
}

/// Whole seconds until `m` (rounded up), negative once it has passed.
fn secs_until(m: Instant) -> i64 {
    let now = Instant::now();
    if m >= now {
        (m - now).as_secs_f64().ceil() as i64
    } else {
        -((now - m).as_secs() as i64)
    }
}

#[cfg(test)]
mod tests {
    //! The loop's timing with an injected wall clock ([`ManualClock`]): the monotonic clock
    //! keeps running for real, as it does across a wall-clock step, and stands still while
    //! the wall clock is moved on, as across a suspend. Nothing is sent to GitHub.

    use std::path::Path;

    use super::*;
    use crate::clock::{ManualClock, t0};
    use crate::config::HostEnv;

    fn minutes(m: i64) -> chrono::Duration {
        chrono::Duration::minutes(m)
    }

    /// A daemon over `n` targets of one App (45-minute refreshes, no jitter).
    fn daemon(clock: &Arc<ManualClock>, dir: &Path, n: usize) -> Daemon {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("app.pem");
        std::fs::write(&key, &fake_github::TestKey::shared().pkcs1_pem).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut text = format!(
            "app_id = 1234\nprivate_key_file = \"{}\"\napi_url = \"http://127.0.0.1:9\"\n\
             refresh_interval = \"45m\"\njitter = \"0s\"\n",
            key.display()
        );
        for i in 0..n {
            text += &format!(
                "[[target]]\nname = \"t{i}\"\ninstallation_id = 100\noutput = \"{}\"\n",
                dir.join(format!("t{i}/token.json")).display()
            );
        }
        let file =
            crate::config::file::parse(&text, Path::new("t.toml"), &HostEnv::default()).unwrap();
        let res = Resources::load(&file, None).unwrap();
        let clock: Arc<dyn Clock> = clock.clone();
        Daemon::new(
            file,
            res,
            Box::new(|| Err(ConfigError("no reload in this test".into()))),
            clock,
        )
    }

    /// As if target `i`'s refresh finished at `now`: a token for `lifetime`, the next
    /// refresh `next` later.
    fn minted(d: &mut Daemon, i: usize, lifetime: Duration, next: Duration) {
        let now = d.clock.now();
        d.targets[i].in_flight = true;
        let r = TaskResult {
            name: d.targets[i].name().to_owned(),
            epoch: d.targets[i].epoch,
            result: Ok(Published {
                generation: 1,
                current: Current {
                    token: Secret::new(format!("ghs_test_{i}")),
                    expires: now + chrono::Duration::from_std(lifetime).unwrap(),
                    expires_mono: Some(Instant::now() + lifetime),
                },
                refresh_at: now + chrono::Duration::from_std(next).unwrap(),
            }),
        };
        assert_eq!(d.finish(r), None);
    }

    /// A one-target daemon on a manual clock at `t0`, whose token (`lifetime`) was just
    /// minted with the next refresh `next` from now.
    fn one_minted(
        lifetime: Duration,
        next: Duration,
    ) -> (tempfile::TempDir, Arc<ManualClock>, Daemon) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let mut d = daemon(&clock, dir.path(), 1);
        minted(&mut d, 0, lifetime, next);
        (dir, clock, d)
    }

    fn due(d: &Daemon) -> bool {
        d.targets[0].is_due(d.clock.now(), Instant::now())
    }

    #[test]
    fn an_idle_loop_sleeps_until_the_refresh_is_due() {
        let (_dir, _clock, d) = one_minted(Duration::from_secs(3600), Duration::from_secs(45 * 60));
        assert!(!due(&d));
        // one wakeup per refresh: no periodic nap (the kernel reports suspends and steps)
        let wait = d.time_to_next_deadline();
        assert!(
            wait <= Duration::from_secs(45 * 60) && wait > Duration::from_secs(44 * 60),
            "{wait:?}"
        );
        assert!(d.status_line().starts_with("token valid until"));
    }

    #[test]
    fn after_a_suspend_the_refresh_is_due_at_once_and_an_expired_token_is_reported() {
        let (_dir, clock, mut d) =
            one_minted(Duration::from_secs(3600), Duration::from_secs(45 * 60));
        // 50 minutes of suspend: the wall clock moved on, the monotonic clock did not
        clock.advance(minutes(50));
        assert!(due(&d), "due by the wall clock");
        assert_eq!(d.time_to_next_deadline(), Duration::ZERO);
        assert!(d.remaining(&d.targets[0]).unwrap() <= 600);
        // 70 minutes: the token has expired, although the monotonic clock says otherwise
        clock.advance(minutes(20));
        assert!(d.remaining(&d.targets[0]).unwrap() < 0);
        d.report_expiries();
        assert!(d.targets[0].expiry_reported);
        assert!(
            d.status_line().starts_with("token EXPIRED at"),
            "{}",
            d.status_line()
        );
    }

    #[test]
    fn a_wall_clock_stepped_back_cannot_postpone_the_refresh_or_hide_an_expiry() {
        let (_dir, clock, mut d) =
            one_minted(Duration::from_millis(1500), Duration::from_millis(300));
        clock.set(t0() - minutes(50));
        assert!(!due(&d), "not yet by either clock");
        let nap = d.time_to_next_deadline();
        assert!(
            nap <= Duration::from_millis(300),
            "wakes for the monotonic deadline: {nap:?}"
        );
        std::thread::sleep(Duration::from_millis(350));
        assert!(
            due(&d),
            "due by the monotonic clock, 50 minutes early by the wall clock"
        );
        assert!(
            d.remaining(&d.targets[0]).unwrap() <= 2,
            "the monotonic expiry counts"
        );
        std::thread::sleep(Duration::from_millis(1300));
        assert!(d.remaining(&d.targets[0]).unwrap() <= 0);
        d.report_expiries();
        assert!(
            d.targets[0].expiry_reported,
            "an expiry is reported after a step back too"
        );
    }

    #[tokio::test]
    async fn at_most_max_in_flight_refreshes_start_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let n = MAX_IN_FLIGHT + 4;
        let mut d = daemon(&clock, dir.path(), n);
        d.start_due();
        assert_eq!(d.tasks.len(), MAX_IN_FLIGHT);
        let waiting = d.targets.iter().filter(|t| !t.in_flight).count();
        assert_eq!(waiting, 4);
        // the due ones wait for a slot: a finished task wakes the loop, not a busy clock
        assert_eq!(d.time_to_next_deadline(), NAP);
        d.start_due();
        assert_eq!(d.tasks.len(), MAX_IN_FLIGHT);
        d.tasks.abort_all();
    }
}
