//! `run`: the daemon. One `select!` loop over signals, the watchdog, finished refreshes and
//! the next deadline. Each target has its own schedule, backoff and error state; refreshes
//! run as tasks, so one slow or failing target never delays another.
//!
//! Every deadline is kept on two clocks and falls due when either says so: the wall clock
//! (which a suspend moves on, so a resumed host refreshes at once) and the monotonic clock
//! (which a wall-clock step back does not move, so such a step cannot postpone a refresh
//! past the token's expiry).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, warn};

use crate::clock::Clock;
use crate::config::{Config, ConfigError, InstallationRef, Source, Target, format_duration};
use crate::error::exit;
use crate::fingerprint;
use crate::github::Client;
use crate::notify;
use crate::refresh::{Ctx, RefreshError, Resolved, Resources, token_file_for};
use crate::revoke;
use crate::schedule::{self, RetryBudget};
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
    expires_at_unix: i64,
    /// The same moment on the monotonic clock, when this process minted the token.
    expires_mono: Option<Instant>,
}

#[derive(Debug)]
struct TargetState {
    target: Arc<Target>,
    /// Bumped when the target's configuration changes, to ignore older tasks' results.
    epoch: u64,
    resolved: Option<Resolved>,
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
            resolved: None,
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
    resolved: Option<Resolved>,
    result: Result<Published, RefreshError>,
}

struct Published {
    current: Current,
    generation: u64,
    refresh_at: DateTime<Utc>,
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
                expires_at_unix: t.current.as_ref().map(|c| c.expires_at_unix),
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
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => self.reload(),
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    match done {
                        Ok(result) => {
                            if let Some(code) = self.finish(result) {
                                return code;
                            }
                        }
                        Err(e) => error!("a refresh task failed: {e}"),
                    }
                }
                Some(_) = self.revocations.join_next(), if !self.revocations.is_empty() => {}
                _ = watchdog.tick(), if watchdog_period.is_some() => notify::watchdog(),
                woken = alarm.wait() => match woken {
                    Ok(Woken::Deadline) => {}
                    Ok(Woken::ClockSet) => {
                        tracing::debug!("the wall clock was set, or the host resumed")
                    }
                    Err(e) => {
                        error!("cannot wait for the wake-up timer: {e}");
                        return exit::FAILURE;
                    }
                },
            }
        }
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
    async fn revoke_at_stop(&mut self) {
        let mut jobs: Vec<(String, Secret, Client, &'static str)> = Vec::new();
        for t in &self.targets {
            if !t.target.revoke.on_stop {
                continue;
            }
            let client = self.res.client(&t.target).clone();
            let mut tokens: Vec<Secret> = t.current.iter().map(|c| c.token.clone()).collect();
            // an aborted refresh may have published a newer token than the one we know
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
            for token in tokens {
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
                        expires_at_unix: file.expires_at_unix,
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
            let wall = c.expires_at_unix - now.timestamp();
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
            self.tasks.spawn(
                refresh_task(ctx, t.target.clone(), t.epoch, t.resolved.clone()).instrument(span),
            );
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
                let local_expiry = DateTime::from_timestamp(c.expires_at_unix, 0)
                    .unwrap_or_default()
                    - self.server_offset(t);
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
    fn finish(&mut self, r: TaskResult) -> Option<i32> {
        let now = self.clock.now();
        let ready_before = self.ready_sent;
        let Some(idx) = self
            .targets
            .iter()
            .position(|t| t.name() == r.name && t.epoch == r.epoch)
        else {
            // removed or changed by a reload meanwhile
            let orphan = self
                .orphans
                .iter()
                .position(|o| o.name == r.name && o.epoch == r.epoch)
                .map(|i| self.orphans.remove(i));
            if let (Some(o), Ok(p)) = (orphan, r.result) {
                self.revoke_removed(&o.name, &o.target.output, p.current.token, o.client);
            }
            return None;
        };
        let http_timeout = self.http_timeout;
        let offset = self.server_offset(&self.targets[idx]);
        // the journal's short view shows the message alone: it names the target and the
        // retry itself (the fields say it again for filters and for stderr)
        let who = if self.targets.len() > 1 {
            format!("{}: ", self.targets[idx].name())
        } else {
            String::new()
        };
        let client = self.res.client(&self.targets[idx].target).clone();
        let t = &mut self.targets[idx];
        t.in_flight = false;
        t.resolved = r.resolved;
        let mut extend = None;
        match r.result {
            Ok(p) => {
                t.stats.successes += 1;
                t.stats.last_success_unix = Some(now.timestamp());
                t.stats.generation = p.generation;
                let previous = t.current.replace(p.current);
                if let (Some(prev), Some(after)) = (previous, t.target.revoke.superseded_after)
                    && t.current.as_ref().is_some_and(|c| c.token != prev.token)
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
                let at = if std::mem::take(&mut t.mint_again) {
                    now
                } else {
                    p.refresh_at
                };
                t.plan(at, now);
                t.attempt = 0;
                t.budget.clear();
                t.last_error = None;
                t.expiry_reported = false;
            }
            Err(e) => {
                t.attempt += 1;
                t.stats.failures += 1;
                let permanent = e.is_permanent();
                let kind = match &e {
                    RefreshError::Github(g) => g.retry_kind(),
                    RefreshError::Sign(_) => schedule::RetryKind::Permanent,
                    RefreshError::Write(_) if permanent => schedule::RetryKind::Permanent,
                    RefreshError::Write(_) => schedule::RetryKind::Transient,
                };
                let delay = schedule::retry_delay(kind, t.attempt, rand::random());
                t.budget.record(now);
                let at = t
                    .budget
                    .earliest(now + chrono::Duration::from_std(delay).unwrap_or_default());
                t.plan(at, now);
                let has_token = t
                    .current
                    .as_ref()
                    .is_some_and(|c| c.expires_at_unix > (now + offset).timestamp());
                let wait = format_duration(Duration::from_secs(
                    (t.next_at - now).num_seconds().max(0) as u64,
                ));
                let hint = match &e {
                    RefreshError::Github(g) => {
                        g.hint().map(|h| format!(" ({h})")).unwrap_or_default()
                    }
                    _ => String::new(),
                };
                if permanent {
                    error!(target_name = %t.target.name, attempt = t.attempt, retry_in = %wait, "{who}{e}{hint}; retrying in {wait}");
                } else {
                    warn!(target_name = %t.target.name, attempt = t.attempt, retry_in = %wait, "{who}{e}; retry {} in {wait}", t.attempt);
                }
                t.last_error = Some((e.short(), permanent));
                if !ready_before && !has_token {
                    if permanent && self.source.first_permanent_failure_is_fatal() {
                        error!(
                            "cannot mint a first token and no valid token file exists: {e}{hint}"
                        );
                        return Some(exit::CONFIG);
                    }
                    // until the next attempt starts (it extends again for itself)
                    let wait = (t.next_at - now).to_std().unwrap_or(delay);
                    extend = Some(wait + crate::refresh::attempt_worst_case(http_timeout));
                }
            }
        }
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

    fn status_line(&self) -> String {
        let now = self.clock.now();
        let line = if let [t] = self.targets.as_slice() {
            self.describe(t, now)
        } else {
            let fresh = self
                .targets
                .iter()
                .filter(|t| self.is_fresh(t) && t.last_error.is_none())
                .count();
            let failing: Vec<_> = self
                .targets
                .iter()
                .filter(|t| t.last_error.is_some())
                .map(|t| {
                    format!(
                        "{}: {}",
                        t.name(),
                        t.last_error.as_ref().map_or("", |e| e.0.as_str())
                    )
                })
                .collect();
            let mut s = format!("{} targets: {fresh} fresh", self.targets.len());
            if !failing.is_empty() {
                s += &format!(", {} failing ({})", failing.len(), failing.join("; "));
            }
            let pending = self.targets.len() - fresh - failing.len();
            if pending > 0 {
                s += &format!(", {pending} minting");
            }
            s
        };
        match &self.reload_note {
            Some(note) => format!("{line}; {note}"),
            None => line,
        }
    }

    fn describe(&self, t: &TargetState, now: DateTime<Utc>) -> String {
        let remaining = self.remaining(t);
        let expires = t.current.as_ref().map(|c| {
            clock_time(DateTime::from_timestamp(c.expires_at_unix, 0).unwrap_or_default())
        });
        let token = match (remaining, &expires) {
            (Some(r), Some(_)) if r > 0 => format!(
                "current token valid {}",
                format_duration(Duration::from_secs(r as u64))
            ),
            (Some(r), Some(at)) => format!(
                "token EXPIRED at {at} ({} ago)",
                format_duration(Duration::from_secs((-r) as u64))
            ),
            _ => "no valid token yet".to_string(),
        };
        match &t.last_error {
            None => match (remaining, expires) {
                (Some(r), Some(at)) if r > 0 => format!(
                    "token valid until {at}, next refresh {}",
                    clock_time(t.next_at)
                ),
                (Some(_), Some(at)) => format!("token EXPIRED at {at}, minting a new one"),
                _ => "minting the first token".into(),
            },
            Some((err, permanent)) => {
                let wait =
                    format_duration(Duration::from_secs(t.wait(now, Instant::now()).as_secs()));
                if *permanent {
                    format!("{err}; retrying in {wait}; {token}")
                } else {
                    format!("{err}, retry {} in {wait}; {token}", t.attempt)
                }
            }
        }
    }

    fn reload(&mut self) {
        info!("SIGHUP: reloading configuration and keys");
        notify::reloading();
        let loaded = (self.loader)().and_then(|f| {
            let res = Resources::load(&f, Some(&self.res))?;
            Ok((f, res))
        });
        match loaded {
            Ok((config, res)) => {
                self.delete_removed_outputs = config.delete_removed_outputs;
                if self.metrics.as_ref().map(|m| &m.path) != config.metrics_file.as_ref() {
                    self.metrics = config.metrics_file.clone().map(crate::metrics::Writer::new);
                }
                let now = self.clock.now();
                let mut old: Vec<TargetState> = std::mem::take(&mut self.targets);
                let (mut added, mut changed, mut kept) = (0, 0, 0);
                for target in config.targets.into_iter().filter(|t| t.writes_file) {
                    let pos = old.iter().position(|o| o.target.name == target.name);
                    match pos.map(|p| old.remove(p)) {
                        Some(mut prev) if *prev.target == target => {
                            if self.source.reload_mints_every_target() {
                                prev.plan(now, now);
                                prev.mint_again = prev.in_flight;
                            }
                            kept += 1;
                            self.targets.push(prev);
                        }
                        Some(prev) => {
                            self.epochs += 1;
                            let mut state = TargetState::new(target, self.epochs, now);
                            // the file still holds the previous token until the new one lands
                            state.current = prev.current;
                            state.stats = prev.stats;
                            changed += 1;
                            self.targets.push(state);
                        }
                        None => {
                            self.epochs += 1;
                            self.targets
                                .push(TargetState::new(target, self.epochs, now));
                            added += 1;
                        }
                    }
                }
                for gone in &mut old {
                    let path = gone.target.output.clone();
                    let path = &path;
                    if gone.target.revoke.on_stop {
                        let client = self.res.client(&gone.target).clone();
                        if gone.in_flight {
                            self.orphans.push(Orphan {
                                name: gone.target.name.clone(),
                                epoch: gone.epoch,
                                target: gone.target.clone(),
                                client: client.clone(),
                            });
                        }
                        match gone.current.take() {
                            Some(c) => self.revoke_removed(
                                &gone.target.name.clone(),
                                path,
                                c.token,
                                client,
                            ),
                            None => {
                                info!(target_name = %gone.target.name, "target removed by reload; it held no token")
                            }
                        }
                    } else if self.delete_removed_outputs {
                        match self.removable(path) {
                            Err(why) => {
                                warn!(target_name = %gone.target.name, "target removed by reload; not deleting '{}': {why}", path.display())
                            }
                            Ok(()) => match std::fs::remove_file(path) {
                                Ok(()) => {
                                    info!(target_name = %gone.target.name, "target removed by reload; deleted '{}'", path.display())
                                }
                                Err(e) => {
                                    warn!(target_name = %gone.target.name, "target removed by reload; cannot delete '{}': {e}", path.display())
                                }
                            },
                        }
                    } else {
                        info!(target_name = %gone.target.name, "target removed by reload; '{}' is left as it is", path.display());
                    }
                }
                self.res = res;
                self.http_timeout = config.http_timeout;
                self.reload_note = None;
                info!(
                    added,
                    changed,
                    kept,
                    removed = old.len(),
                    "configuration reloaded"
                );
                let status = format!("reloaded; {}", self.status_line());
                self.last_status = status.clone();
                notify::ready(&status);
            }
            Err(e) => {
                error!("reload rejected, keeping the previous configuration and key: {e}");
                self.reload_note = Some(format!("last reload rejected: {e}"));
                let status = self.status_line();
                self.last_status = status.clone();
                notify::ready(&status);
            }
        }
        self.ready_sent = true;
    }
}

impl Daemon {
    /// `delete_removed_outputs` deletes only a regular file that is a token file, and never
    /// one that a current target writes (two spellings of one path, a symlinked directory).
    fn removable(&self, path: &std::path::Path) -> Result<(), String> {
        let key = crate::config_file::same_file_key(path);
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| crate::config_file::same_file_key(&t.target.output) == key)
        {
            return Err(format!("target '{}' writes it", t.name()));
        }
        token_file::read(path)
            .map(|_| ())
            .map_err(|e| crate::sanitize::clean(&e.to_string()))
    }
}

/// `14:05 UTC`
fn clock_time(t: DateTime<Utc>) -> String {
    // seconds: a refresh planned for 16:44:50 must not read "16:44" at 16:44:20
    t.format("%H:%M:%S UTC").to_string()
}

async fn refresh_task(
    ctx: Ctx,
    target: Arc<Target>,
    epoch: u64,
    resolved: Option<Resolved>,
) -> TaskResult {
    let mut resolved = resolved;
    let result = refresh_once(&ctx, &target, &mut resolved).await;
    if let Err(RefreshError::Github(e)) = &result {
        // an installation found by owner/repo may have been reinstalled under a new id
        if e.status() == Some(404) && !matches!(target.installation, InstallationRef::Id(_)) {
            resolved = None;
        }
    }
    TaskResult {
        name: target.name.clone(),
        epoch,
        resolved,
        result,
    }
}

async fn refresh_once(
    ctx: &Ctx,
    target: &Target,
    resolved: &mut Option<Resolved>,
) -> Result<Published, RefreshError> {
    let inst = match resolved {
        Some(r) => r.clone(),
        None => {
            let r = ctx.resolve(&target.installation).await?;
            info!(installation_id = r.id, account = %r.account, "resolved {}", target.installation);
            *resolved = Some(r.clone());
            r
        }
    };
    let token = ctx.mint(target, inst.id).await?;
    if let Err(e) = ctx.verify(&token).await {
        warn!(
            "the new token was not accepted by GET /installation/repositories ({e}); publishing it anyway"
        );
    }
    let (server_now, refresh_at) = ctx.refresh_at(target, &token);
    let file = token_file_for(target, &inst, &token, ctx.clock.now(), refresh_at);
    let written = crate::refresh::publish(target, file, server_now).await?;
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
    let left =
        DateTime::from_timestamp(written.expires_at_unix, 0).unwrap_or_default() - server_now;
    Ok(Published {
        generation: written.generation,
        current: Current {
            token: token.token.clone(),
            expires_at_unix: written.expires_at_unix,
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
    use crate::clock::ManualClock;
    use crate::config::HostEnv;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

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
            crate::config_file::parse(&text, Path::new("t.toml"), &HostEnv::default()).unwrap();
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
            resolved: None,
            result: Ok(Published {
                generation: 1,
                current: Current {
                    token: Secret::new(format!("ghs_test_{i}")),
                    expires_at_unix: (now + chrono::Duration::from_std(lifetime).unwrap())
                        .timestamp(),
                    expires_mono: Some(Instant::now() + lifetime),
                },
                refresh_at: now + chrono::Duration::from_std(next).unwrap(),
            }),
        };
        assert_eq!(d.finish(r), None);
    }

    fn due(d: &Daemon) -> bool {
        d.targets[0].is_due(d.clock.now(), Instant::now())
    }

    #[test]
    fn an_idle_loop_sleeps_until_the_refresh_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let mut d = daemon(&clock, dir.path(), 1);
        minted(
            &mut d,
            0,
            Duration::from_secs(3600),
            Duration::from_secs(45 * 60),
        );
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
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let mut d = daemon(&clock, dir.path(), 1);
        minted(
            &mut d,
            0,
            Duration::from_secs(3600),
            Duration::from_secs(45 * 60),
        );
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
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let mut d = daemon(&clock, dir.path(), 1);
        minted(
            &mut d,
            0,
            Duration::from_millis(1500),
            Duration::from_millis(300),
        );
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
