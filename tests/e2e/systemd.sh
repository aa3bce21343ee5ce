#!/usr/bin/env bash
# End-to-end test of the systemd user units and setup.sh on a real systemd (CI runs it as root).
#
#   sudo tests/e2e/systemd.sh
#
# Boots ../shared/systemd-sandbox/sandbox (Debian, systemd as PID 1, user "dev", loopback
# only) with this repository and the two binaries bound in read-only, runs the fake GitHub
# there as dev, installs the service with setup.sh as dev and walks through install, the
# hardening as seen from inside the unit, reload, a configuration error, kill -9, updates
# (good, unchanged, changed unit, broken, with a reader checking the token file all along),
# a second instance, the no-user-namespace fallback, several targets from a TOML file
# (setup.sh --config: refusal, switch, hardening, reload), updates that must prove they mint
# (rolled back when they cannot), a slow first mint under a short TimeoutStartSec, refused
# --output places, --dry-run without a user manager, a purge that leaves unrelated files
# alone, uninstall, and a search of the journal
# and setup.sh's output for secrets. Prints one PASS/FAIL line per check and
# "N passed, M failed"; exits non-zero on any failure. About three minutes once the sandbox's
# root file system exists. The sandbox is always powered off at the end.
#
# Builds nothing. Environment:
#   GTR_BIN   the daemon binary      (default: target/debug/github-token-refresher)
#   FAKE_BIN  the fake GitHub binary (default: target/debug/fake-github)
#   SANDBOX   the sandbox script     (default: ../shared/systemd-sandbox/sandbox)
#   E2E_LOGS  directory for the logs of each step (default: a new temporary directory)
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init systemd

# --- inside the machine -----------------------------------------------------------------------
TOKEN=$RUN/$UNIT/token.json
INSTALLED=$HOME_DEV/.local/bin/$UNIT
NEW=$HOME_DEV/new/$UNIT
BROKEN=$HOME_DEV/broken/$UNIT

# userns_of UNIT: the daemon's user namespace, and the one systemd itself runs in (root reads
# them: the daemon makes itself non-dumpable, so not even its own user may look)
userns_of() { r readlink "/proc/$(prop "$1" MainPID)/ns/user"; }
host_userns() { r readlink /proc/1/ns/user; }
sha_of() { u sha256sum "$1" | cut -d' ' -f1; }
seen_tokens=()
remember_token() {
  local t
  t=$(token_of "${1:-$TOKEN}" 2>/dev/null) && seen_tokens+=("$t")
  return 0
}
# setup.sh as dev, with the environment in setup_env; output in $logs/NAME.log; sets $out and $rc
setup_env=()
run_setup() {
  local name=$1
  shift
  rc=0
  out=$(u env "${setup_env[@]}" "$SETUP" "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" >"$logs/$name.log"
}

# --- checks (each prints why on failure) ------------------------------------------------------
is_active() {
  local s
  s=$(prop "$1" ActiveState)
  [[ $s == active ]] || { echo "$1 is $s"; u systemctl --user status "$1" --no-pager -n 10; return 1; }
}
token_valid() { # FILE: daemon says valid, and the fake GitHub accepts the token
  local file=${1:-$TOKEN} t
  u "$GTR" status --output "$file" || { echo "status exit $?"; return 1; }
  t=$(token_of "$file") || return 1
  u curl -fsS "$API/_fake/tokens/$t/valid" | grep -q '"valid":true' || { echo "fake GitHub rejects the token in $file"; return 1; }
}
mode_is() { # MODE PATH...
  local want=$1 p m
  shift
  for p in "$@"; do
    m=$(u stat -c %a "$p") || return 1
    [[ $m == "$want" ]] || { echo "$p is $m, want $want"; return 1; }
  done
}
start_reader() {
  u rm -f "$HOME_DEV/reader.json"
  u systemd-run --user --quiet --collect --unit=e2e-reader python3 /src/tests/e2e/reader.py "$TOKEN" "$HOME_DEV/reader.json"
  sleep 0.5
}
stop_reader() { # prints the summary
  u systemctl --user stop e2e-reader
  wait_for 5 u test -f "$HOME_DEV/reader.json"
  u cat "$HOME_DEV/reader.json" | tee -a "$logs/reader.log"
}
reader_clean() { # SUMMARY: at least 100 reads, none bad
  python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s["reads"] >= 100 and s["bad"] == 0 else 1)' "$1" ||
    { echo "reader: $1"; return 1; }
}
journal_since() { # CURSOR [UNIT]
  u journalctl --user -u "${2:-$UNIT}" --no-pager -o cat --after-cursor="$1"
}

# --- boot ---------------------------------------------------------------------------------------
e2e_boot
e2e_start_fake

# --- install ------------------------------------------------------------------------------------
run_setup install-missing-flags --binary "$GTR"
t_missing_flags() {
  [[ $rc == 2 ]] || { echo "exit $rc"; return 1; }
  contains "$out" "missing --" || return 1
  absent "$INSTALLED" "$HOME_DEV/.config/systemd/user/$UNIT.service" "$HOME_DEV/.config/$UNIT"
}
expect "install: without a terminal, a missing flag is an error (exit 2) before anything is installed" t_missing_flags

run_setup install-bad-check --instance bad --app-id 1234 --private-key-file "$KEY" \
  --installation-id 999 --api-url "$API" --binary "$GTR"
t_bad_check() {
  [[ $rc != 0 ]] || { echo "setup.sh exited 0"; return 1; }
  contains "$out" "FAIL" && contains "$out" "the service is not enabled" || return 1
  absent "$HOME_DEV/.config/$UNIT/bad.env" || return 1
  if u systemctl --user is-enabled --quiet $UNIT@bad.service || u systemctl --user is-active --quiet $UNIT@bad.service; then
    echo "$UNIT@bad was enabled or started"
    return 1
  fi
}
expect "install: a failing 'check' stops setup.sh before enabling, shows the doctor's output, keeps no env file" t_bad_check
run_setup uninstall-bad --uninstall --instance bad --purge

run_setup install --app-id 1234 --private-key-file "$KEY" --installation-id 100 \
  --api-url "$API" --binary "$GTR"
install_out=$out
t_install() {
  [[ $rc == 0 ]] || { echo "exit $rc"; tail -n 20 <<<"$out"; return 1; }
  is_active $UNIT && u systemctl --user is-enabled --quiet $UNIT
}
expect "install: setup.sh exits 0, $UNIT is enabled and active" t_install
expect "install: token file valid (status exit 0, the fake GitHub accepts the token)" token_valid
remember_token
t_install_output() {
  contains "$install_out" "token file:  $TOKEN" && contains "$install_out" 'mounting the *directory*' &&
    contains "$install_out" "journalctl --user -u $UNIT"
}
expect "install: setup.sh prints the token path, the directory-mount advice and the journal command" t_install_output
t_modes() {
  mode_is 600 "$HOME_DEV/.config/$UNIT/env" "$HOME_DEV/.config/$UNIT/github-app.pem" "$TOKEN" &&
    mode_is 700 "$HOME_DEV/.config/$UNIT" "$RUN/$UNIT"
}
expect "install: env file, key and token file 0600; config and token directories 0700" t_modes
t_userns() {
  absent "$HOME_DEV/.config/systemd/user/$UNIT.service.d/setup-no-user-namespace.conf" || return 1
  local host theirs
  host=$(host_userns)
  theirs=$(userns_of $UNIT)
  [[ -n $host && -n $theirs && $host != "$theirs" ]] || { echo "the daemon is not in a user namespace of its own ($host, $theirs)"; return 1; }
}
expect "install: user namespaces work here, so no fallback drop-in; the daemon runs in its own user namespace" t_userns
status_text=$(prop $UNIT StatusText)
expect "status: systemd shows the daemon's STATUS line ('$status_text')" test -n "$status_text"
t_journal_mint() {
  u journalctl --user -u $UNIT --no-pager -o cat | grep -qF "minted a token and wrote '$TOKEN'" ||
    { u journalctl --user -u $UNIT --no-pager -o cat | tail -n 15; return 1; }
}
expect "journal: shows the mint" t_journal_mint
run_setup check --check
t_check() { [[ $rc == 0 ]] && contains "$out" "all checks passed"; }
expect "doctor: setup.sh --check runs 'check' with the unit's environment and key, all ok" t_check

pid=$(prop $UNIT MainPID)
run_setup install-again --app-id 1234 --private-key-file "$KEY" --installation-id 100 \
  --api-url "$API" --binary "$GTR"
t_install_again() {
  [[ $rc == 0 ]] && contains "$out" "unchanged" && contains "$out" "exists; left as it is" || return 1
  [[ $(prop $UNIT MainPID) == "$pid" ]] || { echo "the daemon was restarted"; return 1; }
}
expect "install: re-running it changes nothing and keeps the daemon running" t_install_again

# --- hardening, measured from inside a copy of the installed unit ------------------------------
ush "cd ~/.config/systemd/user && cp $UNIT.service e2e-probe.service && mkdir -p e2e-probe.service.d &&
  printf '[Service]\nType=oneshot\nExecStart=\nExecStart=/bin/sh /src/tests/e2e/probe.sh\nExecReload=\nWatchdogSec=0\n' >e2e-probe.service.d/probe.conf &&
  systemctl --user daemon-reload && systemctl --user start e2e-probe.service" >"$logs/probe.log" 2>&1 || true
probe=$(u cat "$RUN/$UNIT/.e2e-probe" 2>&1 || true)
printf '%s\n' "$probe" >>"$logs/probe.log"
t_probe() {
  local want=$'writable /tmp\nwritable /var/tmp\ntoken-dir-writable\ncredential-readable'
  [[ $probe == "$want" ]] || { echo "probe found:"; echo "$probe"; return 1; }
}
expect "hardening: the service can write only its token directory (and its private /tmp, /var/tmp), sees no ~/.config or user bus, has no capabilities" t_probe
ush "rm -f $RUN/$UNIT/.e2e-probe; cd ~/.config/systemd/user && rm -rf e2e-probe.service e2e-probe.service.d && systemctl --user daemon-reload"

# --- reload -------------------------------------------------------------------------------------
gen0=$(token_of "$TOKEN" generation)
tok0=$(token_of "$TOKEN")
pid=$(prop $UNIT MainPID)
c=$(cursor)
u systemctl --user log-level debug
rc=0
u systemctl --user reload $UNIT || rc=$?
newer_generation() { [[ $(token_of "$TOKEN" generation) -gt $gen0 ]]; }
wait_for 20 newer_generation || true
u systemctl --user log-level info
remember_token
t_reload() {
  [[ $rc == 0 ]] || { echo "reload exit $rc"; return 1; }
  [[ $(token_of "$TOKEN") != "$tok0" ]] || { echo "the token did not change"; return 1; }
  token_valid
}
expect "reload: systemctl --user reload succeeds and a new, valid token is written" t_reload
t_reloading() {
  local j
  j=$(journal_since "$c")
  if ! grep -q "Got notification message from PID $pid (RELOADING=1, MONOTONIC_USEC=" <<<"$j" ||
    ! sed -n '/RELOADING=1/,$p' <<<"$j" | grep -q "Got notification message from PID $pid (READY=1"; then
    grep -i "notification\|reload" <<<"$j" | tail
    return 1
  fi
}
expect "reload: systemd got RELOADING=1 with MONOTONIC_USEC= from the main process, then READY=1" t_reloading

# --- configuration error ------------------------------------------------------------------------
ush "cp ~/.config/$UNIT/env ~/env.good && echo GITHUB_TOKEN_PERMISSIONS=contents >>~/.config/$UNIT/env"
c=$(cursor)
rc=0
u systemctl --user restart $UNIT >/dev/null 2>&1 || rc=$?
inv=$(prop $UNIT InvocationID)
restarts=$(prop $UNIT NRestarts)
sleep 8 # RestartSec=5s plus a margin: a restart would have happened by now
t_config_78() {
  local state status
  state=$(prop $UNIT ActiveState)
  status=$(prop $UNIT ExecMainStatus)
  [[ $rc != 0 && $state == failed && $status == 78 ]] || { echo "restart exit $rc, state $state, status $status"; return 1; }
}
expect "config error: the restart fails with exit status 78" t_config_78
t_config_no_restart() {
  [[ $(prop $UNIT InvocationID) == "$inv" && $(prop $UNIT NRestarts) == "$restarts" ]] ||
    { echo "invocation $inv -> $(prop $UNIT InvocationID), NRestarts $restarts -> $(prop $UNIT NRestarts)"; return 1; }
}
expect "config error: systemd does not restart it (same invocation and NRestarts 8 s later)" t_config_no_restart
# named as the env file spells it, where the user will look for it
t_config_journal() { journal_since "$c" | grep -qF "GITHUB_TOKEN_PERMISSIONS='contents'" || { journal_since "$c" | tail; return 1; }; }
expect "config error: the journal says what is wrong, naming the env file's variable" t_config_journal
ush "mv ~/env.good ~/.config/$UNIT/env && systemctl --user reset-failed $UNIT && systemctl --user start $UNIT"
expect "config error: with the configuration fixed, the unit starts again" is_active $UNIT

# --- kill -9 ------------------------------------------------------------------------------------
start_reader
pid=$(prop $UNIT MainPID)
restarts=$(prop $UNIT NRestarts)
u kill -9 "$pid"
restarted() { local p; p=$(prop $UNIT MainPID); [[ $p != 0 && $p != "$pid" && $(prop $UNIT ActiveState) == active ]]; }
wait_for 30 restarted || true
summary=$(stop_reader)
t_killed() {
  restarted || { echo "not restarted: MainPID $(prop $UNIT MainPID), $(prop $UNIT ActiveState)"; return 1; }
  [[ $(prop $UNIT NRestarts) == $((restarts + 1)) ]] || { echo "NRestarts $restarts -> $(prop $UNIT NRestarts)"; return 1; }
}
expect "kill -9: systemd restarts the daemon (new main PID, NRestarts + 1)" t_killed
expect "kill -9: a reader never saw a missing or invalid token file" reader_clean "$summary"
expect "kill -9: token file valid afterwards" token_valid

# --- update -------------------------------------------------------------------------------------
# A "new build": the same binary with a byte appended (a different sha256, still runs).
ush "mkdir -p ~/new && cp $GTR $NEW && printf '\n' >>$NEW && chmod 755 $NEW"
start_reader
pid=$(prop $UNIT MainPID)
run_setup update --update --binary "$NEW"
summary=$(stop_reader)
t_update() {
  [[ $rc == 0 ]] || { echo "exit $rc"; return 1; }
  contains "$out" "binary: replacing" || return 1
  [[ $(sha_of "$INSTALLED") == "$(sha_of "$NEW")" ]] || { echo "the installed binary is not the new one"; return 1; }
  [[ $(prop $UNIT MainPID) != "$pid" ]] || { echo "not restarted"; return 1; }
  is_active $UNIT && token_valid
}
expect "update: setup.sh --update swaps the binary, restarts the running unit, token valid" t_update
expect "update: a reader never saw a missing or invalid token file" reader_clean "$summary"
t_update_config() {
  [[ $(u stat -c %a "$HOME_DEV/.config/$UNIT/env") == 600 ]] &&
    u grep -q "^GITHUB_APP_INSTALLATION_ID=100$" "$HOME_DEV/.config/$UNIT/env" &&
    u cmp -s "$KEY" "$HOME_DEV/.config/$UNIT/github-app.pem"
}
expect "update: env file and key untouched" t_update_config

pid=$(prop $UNIT MainPID)
run_setup update-again --update --binary "$NEW"
t_update_again() {
  [[ $rc == 0 ]] && contains "$out" "nothing to update" || return 1
  [[ $(prop $UNIT MainPID) == "$pid" ]] || { echo "restarted anyway"; return 1; }
}
expect "update: the same binary again is 'nothing to update', no restart" t_update_again

ush "echo '# edited by hand' >>~/.config/systemd/user/$UNIT.service"
pid=$(prop $UNIT MainPID)
run_setup update-unit --update --binary "$NEW"
t_update_unit() {
  [[ $rc == 0 ]] && contains "$out" "unit $UNIT.service: changed" && contains "$out" "-# edited by hand" || return 1
  [[ $(sha_of "$HOME_DEV/.config/systemd/user/$UNIT.service") == "$(sha_of "/src/systemd/$UNIT.service")" ]] ||
    { echo "installed unit differs from the repository's"; return 1; }
  [[ $(prop $UNIT MainPID) != "$pid" ]] || { echo "not restarted"; return 1; }
  is_active $UNIT
}
expect "update: a changed unit file is reported with its diff, replaced, and the unit restarted" t_update_unit

# A build that passes `--help` and `check` but cannot run the daemon.
# shellcheck disable=SC2016 # $1 and $@ belong to the script being written
printf '#!/bin/sh\nif [ "$1" = run ]; then echo "e2e: this build cannot start" >&2; exit 1; fi\nexec %s "$@"\n' "$NEW" |
  "$sandbox" user bash -c "mkdir -p ~/broken && cat >$BROKEN && chmod 755 $BROKEN"
start_reader
sha_before=$(sha_of "$INSTALLED")
c=$(cursor)
run_setup update-broken --update --binary "$BROKEN"
summary=$(stop_reader)
t_broken() {
  [[ $rc != 0 ]] || { echo "setup.sh exited 0"; return 1; }
  contains "$out" "rolling back" || return 1
  journal_since "$c" | grep -q "e2e: this build cannot start" || { echo "the broken build never ran"; return 1; }
}
expect "broken update: the new binary is started, fails, and setup.sh exits non-zero saying it rolled back" t_broken
t_rolled_back() {
  [[ $(sha_of "$INSTALLED") == "$sha_before" ]] || { echo "the installed binary is not the previous one"; return 1; }
  absent "$HOME_DEV/.local/bin/.$UNIT.prev" && is_active $UNIT && token_valid
}
expect "broken update: the previous binary is back, the unit active, the token valid" t_rolled_back
expect "broken update: a reader never saw a missing or invalid token file" reader_clean "$summary"
remember_token

# A build that passes `check` but whose daemon cannot mint: it starts, adopts the still-valid
# file, says READY, and then every mint fails (its `run` talks to a closed port). READY alone
# would count it a success; setup.sh must see that the file's generation never moves.
NOMINT=$HOME_DEV/nomint/$UNIT
# shellcheck disable=SC2016 # $1 and $@ belong to the script being written
printf '#!/bin/sh\nif [ "$1" = run ]; then shift; exec %s run --api-url http://127.0.0.1:9 "$@"; fi\nexec %s "$@"\n' "$GTR" "$GTR" |
  "$sandbox" user bash -c "mkdir -p ~/nomint && cat >$NOMINT && chmod 755 $NOMINT"
start_reader
sha_before=$(sha_of "$INSTALLED")
units_before=$(u sha256sum "$HOME_DEV/.config/systemd/user/$UNIT.service" "$HOME_DEV/.config/$UNIT/env" "$HOME_DEV/.config/$UNIT/github-app.pem")
gen_before=$(token_of "$TOKEN" generation)
setup_env=(SETUP_PROVE_TIMEOUT=15)
run_setup update-nomint --update --binary "$NOMINT"
setup_env=()
summary=$(stop_reader)
t_nomint() {
  [[ $rc != 0 ]] || { echo "setup.sh exited 0: a daemon that cannot mint stays installed"; return 1; }
  contains "$out" "wrote no new token" && contains "$out" "rolling back" || return 1
  contains "$out" "cannot reach GitHub" || { echo "the failing daemon's journal lines are not printed"; return 1; }
}
expect "update that cannot mint: the new daemon says READY but writes no token; setup.sh exits non-zero, prints its journal, rolls back" t_nomint
t_nomint_back() {
  [[ $(sha_of "$INSTALLED") == "$sha_before" ]] || { echo "the installed binary is not the previous one"; return 1; }
  [[ $(u sha256sum "$HOME_DEV/.config/systemd/user/$UNIT.service" "$HOME_DEV/.config/$UNIT/env" "$HOME_DEV/.config/$UNIT/github-app.pem") == "$units_before" ]] ||
    { echo "unit, env file or key changed"; return 1; }
  is_active $UNIT || return 1
  r grep -q "$INSTALLED" "/proc/$(prop $UNIT MainPID)/cmdline" || true
  wait_for 20 newer_than_before || { echo "the previous daemon did not mint again"; return 1; }
  token_valid
}
newer_than_before() { [[ $(token_of "$TOKEN" generation) -gt $gen_before ]]; }
expect "update that cannot mint: previous binary, unit, env file and key back; the previous daemon runs and mints" t_nomint_back
expect "update that cannot mint: a reader never saw a missing or invalid token file" reader_clean "$summary"
remember_token

# A build whose `check` fails too: refused before anything is replaced or restarted.
NOCHECK=$HOME_DEV/nocheck/$UNIT
# shellcheck disable=SC2016
printf '#!/bin/sh\ncase "$1" in run|check|once) s=$1; shift; exec %s "$s" --api-url http://127.0.0.1:9 "$@";; esac\nexec %s "$@"\n' "$GTR" "$GTR" |
  "$sandbox" user bash -c "mkdir -p ~/nocheck && cat >$NOCHECK && chmod 755 $NOCHECK"
pid=$(prop $UNIT MainPID)
sha_before=$(sha_of "$INSTALLED")
run_setup update-nocheck --update --binary "$NOCHECK"
t_nocheck() {
  [[ $rc != 0 ]] || { echo "setup.sh exited 0"; return 1; }
  contains "$out" "cannot mint with $UNIT.service's configuration" && contains "$out" "nothing was changed" || return 1
  [[ $(sha_of "$INSTALLED") == "$sha_before" ]] || { echo "the binary was replaced"; return 1; }
  [[ $(prop $UNIT MainPID) == "$pid" ]] || { echo "the daemon was restarted"; return 1; }
}
expect "update whose check cannot mint: refused before the swap (binary unchanged, daemon not restarted)" t_nocheck

# --- a slow first mint under a short TimeoutStartSec --------------------------------------------
# The daemon asks for more time (EXTEND_TIMEOUT_USEC) before each attempt until READY.
run_setup install-slow --instance slow --app-id 1234 --private-key-file "$KEY" --installation-id 100 \
  --api-url "$API" --binary "$NEW"
SLOW_TOKEN=$RUN/$UNIT@slow/token.json
ush "systemctl --user stop $UNIT@slow && rm -f $SLOW_TOKEN && mkdir -p ~/.config/systemd/user/$UNIT@slow.service.d &&
  printf '[Service]\nTimeoutStartSec=4s\n' >~/.config/systemd/user/$UNIT@slow.service.d/e2e-timeout.conf &&
  systemctl --user daemon-reload" >"$logs/slow-prepare.log" 2>&1
u curl -fsS -X POST "$API/_fake/faults" -d '{"route":"access_tokens","times":1,"kind":{"type":"delay","ms":9000}}' >/dev/null
started=$SECONDS
rc=0
u systemctl --user start $UNIT@slow >"$logs/slow-start.log" 2>&1 || rc=$?
took=$((SECONDS - started))
t_slow() {
  [[ $(prop $UNIT@slow TimeoutStartUSec) == 4s ]] || { echo "TimeoutStartSec is $(prop $UNIT@slow TimeoutStartUSec)"; return 1; }
  [[ $rc == 0 ]] || { echo "start failed (exit $rc) after ${took}s"; u journalctl --user -u $UNIT@slow -n 10 --no-pager; return 1; }
  ((took >= 8)) || { echo "started in ${took}s: the mint was not slow, this proves nothing"; return 1; }
  is_active $UNIT@slow && token_valid "$SLOW_TOKEN"
}
expect "slow first mint: GitHub answers after 9 s, TimeoutStartSec=4s, and the unit still becomes active (EXTEND_TIMEOUT_USEC)" t_slow
remember_token "$SLOW_TOKEN"
run_setup uninstall-slow --uninstall --instance slow --purge
ush "rm -rf ~/.config/systemd/user/$UNIT@slow.service.d && systemctl --user daemon-reload"

# --- where the token may go (--output) -----------------------------------------------------------
for bad_out in "$HOME_DEV/token.json" "/tmp/token.json" "$HOME_DEV/.config/token.json" "/home/token.json"; do
  run_setup "install-output-${bad_out//\//_}" --instance homeout --app-id 1234 --private-key-file "$KEY" \
    --installation-id 100 --api-url "$API" --output "$bad_out" --binary "$NEW"
  t_bad_output() {
    [[ $rc != 0 ]] || { echo "setup.sh exited 0"; return 1; }
    if [[ $(grep -c 'setup: error' <<<"$out") != 1 ]] || ! contains "$out" "Give the token a directory of its own"; then
      echo "$out"
      return 1
    fi
    absent "$HOME_DEV/.config/systemd/user/$UNIT@homeout.service.d" "$HOME_DEV/.config/$UNIT/homeout.env" "$HOME_DEV/.config/$UNIT/homeout.pem"
  }
  expect "output: --output $bad_out is refused with one line, and nothing is installed" t_bad_output
done
# A failing install after the drop-in was written leaves none of it behind.
run_setup install-fail-dropin --instance failout --app-id 1234 --private-key-file "$KEY" \
  --installation-id 999 --api-url "$API" --output "$HOME_DEV/tokens/failout/token.json" --binary "$NEW"
t_fail_dropin() {
  [[ $rc != 0 ]] || { echo "setup.sh exited 0"; return 1; }
  contains "$out" "FAIL" && contains "$out" "undoing" || return 1
  absent "$HOME_DEV/.config/systemd/user/$UNIT@failout.service.d" "$HOME_DEV/tokens/failout" \
    "$HOME_DEV/.config/$UNIT/failout.env" "$HOME_DEV/.config/$UNIT/failout.pem"
}
expect "output: an install whose check fails leaves no drop-in, token directory, env file or key behind" t_fail_dropin

# --- purge removes only what setup.sh made ---------------------------------------------------------
run_setup install-victim --instance victim --app-id 1234 --private-key-file "$KEY" --installation-id 100 \
  --api-url "$API" --binary "$NEW"
ush "mkdir -p ~/.ssh && echo 'ssh-ed25519 AAAA precious' >~/.ssh/authorized_keys &&
  echo GITHUB_TOKEN_FILE=$HOME_DEV/.ssh/authorized_keys >>~/.config/$UNIT/victim.env"
run_setup uninstall-victim --uninstall --instance victim --purge
t_victim() {
  [[ $rc == 0 ]] || { echo "exit $rc"; return 1; }
  u grep -q precious "$HOME_DEV/.ssh/authorized_keys" || { echo "$HOME_DEV/.ssh/authorized_keys was removed"; return 1; }
  contains "$out" "not removing $HOME_DEV/.ssh/authorized_keys" || return 1
  absent "$HOME_DEV/.config/$UNIT/victim.env" "$HOME_DEV/.config/$UNIT/victim.pem" "$RUN/$UNIT@victim"
}
expect "purge: a GITHUB_TOKEN_FILE edited into the env file (~/.ssh/authorized_keys) is not deleted; the instance's own files are" t_victim

# --- a second instance, with its token file in a directory of its own choosing ---------------
pid=$(prop $UNIT MainPID)
OCTO_TOKEN=$HOME_DEV/tokens/octo/token.json
run_setup instance --instance octo --app-id 1234 --private-key-file "$KEY" --owner octocat \
  --api-url "$API" --output "$OCTO_TOKEN" --binary "$NEW"
t_instance() {
  [[ $rc == 0 ]] || { echo "exit $rc"; tail <<<"$out"; return 1; }
  is_active $UNIT@octo && token_valid "$OCTO_TOKEN" || return 1
  [[ $(token_of "$OCTO_TOKEN" account) == octocat ]] || { echo "not octocat's token"; return 1; }
}
expect "instance: setup.sh --instance octo --output ~/tokens/octo/token.json runs $UNIT@octo with a valid octocat token there" t_instance
remember_token "$OCTO_TOKEN"
expect "instance: the default unit was not restarted" test "$pid" == "$(prop $UNIT MainPID)"
run_setup uninstall-instance --uninstall --instance octo --purge
t_uninstall_instance() {
  [[ $rc == 0 ]] || { echo "exit $rc"; return 1; }
  absent "$OCTO_TOKEN" "$HOME_DEV/.config/$UNIT/octo.env" "$HOME_DEV/.config/$UNIT/octo.pem" \
    "$HOME_DEV/.config/systemd/user/$UNIT@octo.service.d" || return 1
  ! u systemctl --user is-active --quiet $UNIT@octo || { echo "$UNIT@octo still active"; return 1; }
  is_active $UNIT && u test -f "$INSTALLED"
}
expect "instance: --uninstall --instance octo --purge removes it and leaves the default unit running" t_uninstall_instance

# --- where user namespaces are not available (forced here; probed on a real host) ---------------
setup_env=(SETUP_USER_NAMESPACE=no)
run_setup no-userns --instance nons --app-id 1234 --private-key-file "$KEY" --installation-id 100 \
  --api-url "$API" --binary "$NEW"
setup_env=()
NONS_TOKEN=$RUN/$UNIT@nons/token.json
t_no_userns() {
  [[ $rc == 0 ]] || { echo "exit $rc"; tail <<<"$out"; return 1; }
  contains "$out" "cannot give services a user namespace" || return 1
  u cmp -s /src/systemd/no-user-namespace.conf "$HOME_DEV/.config/systemd/user/$UNIT@nons.service.d/setup-no-user-namespace.conf" ||
    { echo "drop-in not installed"; return 1; }
  is_active $UNIT@nons && token_valid "$NONS_TOKEN" || return 1
  local host theirs
  host=$(host_userns)
  theirs=$(userns_of $UNIT@nons)
  [[ -n $host && $host == "$theirs" ]] || { echo "the daemon still runs in a user namespace ($host, $theirs)"; return 1; }
  r grep -q '^Seccomp:[[:space:]]*2$' "/proc/$(prop $UNIT@nons MainPID)/status" || { echo "no seccomp filter"; return 1; }
}
expect "no user namespaces: setup.sh installs the fallback drop-in; the unit starts and mints without one, seccomp still on" t_no_userns
remember_token "$NONS_TOKEN"
run_setup uninstall-nons --uninstall --instance nons --purge
t_uninstall_nons() {
  [[ $rc == 0 ]] && absent "$HOME_DEV/.config/systemd/user/$UNIT@nons.service.d" "$RUN/$UNIT@nons" "$HOME_DEV/.config/$UNIT/nons.env"
}
expect "no user namespaces: --uninstall --instance nons --purge removes the drop-in too" t_uninstall_nons

# --- several targets in one service (setup.sh --config) ----------------------------------------
# The default unit, running one target from its env file, switches to a targets file. The env
# file is left as it is, GITHUB_APP_ID and all: the drop-in must keep every single-target
# variable away from `run --config`, whichever way systemd sets it.
TARGETS=$HOME_DEV/.config/$UNIT/targets/targets.toml
CONFIG_DROPIN=$HOME_DEV/.config/systemd/user/$UNIT.service.d/setup-config-file.conf
T_ACME=$RUN/$UNIT/acme/token.json
T_OCTO=$RUN/$UNIT/octo/token.json
T_GADGETS=$RUN/$UNIT/gadgets/token.json
put_user_file() { # PATH: stdin to PATH as dev, renamed into place as an editor would
  "$sandbox" user bash -c "mkdir -p $(dirname "$1") && cat >$1.e2e-tmp && mv -f $1.e2e-tmp $1"
}
two_targets=$(printf '%s\n' 'app_id = 1234' "api_url = \"$API\"" '' \
  '[[target]]' 'name = "acme"' 'installation_id = 100' 'repositories = ["widgets"]' 'permissions = { contents = "read" }' '' \
  '[[target]]' 'name = "octo"' 'installation_id = 200')
printf '%s\n' "$two_targets" | put_user_file "$HOME_DEV/cfg/targets.toml"
printf '%s\n%s\n' "$two_targets" 'output = "/home/dev/tokens/octo.json"' | put_user_file "$HOME_DEV/cfg/outside.toml"

pid=$(prop $UNIT MainPID)
run_setup config-outside --config "$HOME_DEV/cfg/outside.toml" --binary "$NEW"
t_config_outside() {
  [[ $rc != 0 ]] || { echo "setup.sh exited 0"; return 1; }
  contains "$out" "output '/home/dev/tokens/octo.json' is outside $RUN/$UNIT/" || return 1
  absent "$CONFIG_DROPIN" "$TARGETS" || return 1
  [[ $(prop $UNIT MainPID) == "$pid" ]] || { echo "the daemon was restarted"; return 1; }
}
expect "config: a targets file writing outside the token directory is refused before anything is installed" t_config_outside

run_setup config --config "$HOME_DEV/cfg/targets.toml" --binary "$NEW"
t_config() {
  [[ $rc == 0 ]] || { echo "exit $rc"; tail -n 20 <<<"$out"; return 1; }
  contains "$out" "all checks passed" || return 1
  u cmp -s /src/systemd/config-file.conf "$CONFIG_DROPIN" || { echo "drop-in not installed"; return 1; }
  mode_is 600 "$TARGETS" && mode_is 700 "$(dirname "$TARGETS")" || return 1
  [[ $(prop $UNIT MainPID) != "$pid" ]] || { echo "not restarted"; return 1; }
  is_active $UNIT
}
expect "config: setup.sh --config checks the file, copies it (0600), installs the drop-in, restarts the unit" t_config
t_config_tokens() {
  token_valid "$T_ACME" && token_valid "$T_OCTO" || return 1
  [[ $(token_of "$T_ACME" account) == acme && $(token_of "$T_OCTO" account) == octocat ]] ||
    { echo "accounts: $(token_of "$T_ACME" account), $(token_of "$T_OCTO" account)"; return 1; }
}
expect "config: both targets' token files valid (installation 100 for acme, 200 for octocat)" t_config_tokens
remember_token "$T_ACME"
remember_token "$T_OCTO"
status_is() { [[ $(prop $UNIT StatusText) == "$1" ]] || { echo "STATUS: $(prop $UNIT StatusText)"; return 1; }; }
wait_for 10 status_is "2 targets: 2 fresh"
expect "config: STATUS says '2 targets: 2 fresh'" status_is "2 targets: 2 fresh"
t_config_env() {
  local env
  env=$(r cat "/proc/$(prop $UNIT MainPID)/environ" | tr '\0' '\n')
  grep -qx "GITHUB_TOKEN_REFRESHER_CONFIG=$TARGETS" <<<"$env" || { echo "no GITHUB_TOKEN_REFRESHER_CONFIG=$TARGETS"; return 1; }
  ! grep -E '^GITHUB_(APP_|TOKEN_FILE|API_URL|TOKEN_REPOSITORIES|TOKEN_PERMISSIONS|TOKEN_REFRESH_|TOKEN_MIN_|HTTP_)' <<<"$env" || return 1
  u grep -q '^GITHUB_APP_ID=' "$HOME_DEV/.config/$UNIT/env" || { echo "the env file sets no GITHUB_APP_ID: this proves nothing"; return 1; }
}
expect "config: UnsetEnvironment= strips the env file's and the unit's single-target variables (systemd 252)" t_config_env

ush "cd ~/.config/systemd/user && cp $UNIT.service e2e-probe.service && mkdir -p e2e-probe.service.d &&
  cp $CONFIG_DROPIN e2e-probe.service.d/ &&
  printf '[Service]\nType=oneshot\nExecStart=\nExecStart=/bin/sh /src/tests/e2e/probe.sh\nExecReload=\nWatchdogSec=0\n' >e2e-probe.service.d/probe.conf &&
  systemctl --user daemon-reload && systemctl --user start e2e-probe.service" >"$logs/probe-config.log" 2>&1 || true
probe=$(u cat "$RUN/$UNIT/.e2e-probe" 2>&1 || true)
printf '%s\n' "$probe" >>"$logs/probe-config.log"
t_probe_config() {
  local want=$'writable /tmp\nwritable /var/tmp\ntoken-dir-writable\ntargets-readable\ncredential-readable'
  [[ $probe == "$want" ]] || { echo "probe found:"; echo "$probe"; return 1; }
}
expect "config: hardening unchanged; of ~/.config the service sees the targets file alone, read-only" t_probe_config
ush "rm -f $RUN/$UNIT/.e2e-probe; cd ~/.config/systemd/user && rm -rf e2e-probe.service e2e-probe.service.d && systemctl --user daemon-reload"

# Edited in place the way editors save (a new file renamed over the old one), then reloaded.
pid=$(prop $UNIT MainPID)
gen_acme=$(token_of "$T_ACME" generation)
printf '%s\n%s\n' "$two_targets" $'\n[[target]]\nname = "gadgets"\ninstallation_id = 100\nrepositories = ["gadgets"]' |
  put_user_file "$TARGETS"
rc=0
u systemctl --user reload $UNIT || rc=$?
wait_for 20 status_is "3 targets: 3 fresh" || true
t_config_reload() {
  [[ $rc == 0 ]] || { echo "reload exit $rc"; return 1; }
  status_is "3 targets: 3 fresh" && token_valid "$T_GADGETS" || return 1
  [[ $(prop $UNIT MainPID) == "$pid" ]] || { echo "restarted instead of reloaded"; return 1; }
  [[ $(token_of "$T_ACME" generation) == "$gen_acme" ]] || { echo "acme was minted again"; return 1; }
}
expect "config: a target added to the file (renamed into place) starts on reload: '3 targets: 3 fresh'; the others keep their tokens" t_config_reload
remember_token "$T_GADGETS"

run_setup config-check --check
t_config_check() { [[ $rc == 0 ]] && contains "$out" "[gadgets]" && contains "$out" "all checks passed"; }
expect "config: setup.sh --check runs 'check --config' on the installed targets file" t_config_check
run_setup config-update --update --binary "$NEW"
t_config_update() {
  [[ $rc == 0 ]] && contains "$out" "nothing to update" || return 1
  u cmp -s /src/systemd/config-file.conf "$CONFIG_DROPIN" && [[ $(prop $UNIT MainPID) == "$pid" ]]
}
expect "config: --update keeps the drop-in" t_config_update
run_setup config-single --app-id 1234 --installation-id 100 --api-url "$API" --binary "$NEW"
t_config_single() { [[ $rc == 2 ]] && contains "$out" "--config FILE" && [[ $(prop $UNIT MainPID) == "$pid" ]]; }
expect "config: a single-target install over it is refused (exit 2), naming the way back" t_config_single

# --- --dry-run validates through the binary, also without a user manager -------------------------
# As root with no user manager (`systemctl --user` fails), for a user "nomgr" made for it.
r useradd -m nomgr >/dev/null 2>&1
r install -o nomgr -m 600 "$KEY" /home/nomgr/app.pem
dry() { rc=0; out=$(r runuser -u nomgr -- env -u XDG_RUNTIME_DIR -u DBUS_SESSION_BUS_ADDRESS "$SETUP" --dry-run --private-key-file /home/nomgr/app.pem --binary "$GTR" "$@" 2>&1) || rc=$?; printf '%s\n' "$out" >>"$logs/dry-run-nomgr.log"; }
dry --app-id 1234 --installation-id 100
t_dry_ok() {
  [[ $rc == 0 ]] || { echo "exit $rc"; tail <<<"$out"; return 1; }
  contains "$out" "no systemd user manager" && contains "$out" "settings and key valid" && contains "$out" "would run: systemctl --user enable --now" || return 1
  if r test -e /home/nomgr/.config || r test -e /home/nomgr/.local; then echo "it wrote something"; return 1; fi
}
expect "dry run without a user manager: says so, validates with 'check --offline', says what it would do, writes nothing" t_dry_ok
dry --app-id 12x --installation-id 100
t_dry_bad() {
  [[ $rc == 78 ]] || { echo "exit $rc"; tail <<<"$out"; return 1; }
  contains "$out" "FAIL  configuration" || return 1
}
expect "dry run: a bad value is reported by the binary (FAIL line, exit 78)" t_dry_bad

# --- the binary reads an environment file exactly as systemd does ---------------------------------
# setup.sh asks `check --paths --env-file` where a unit writes instead of parsing the file; the
# same file, handed to a real unit as EnvironmentFile=, must give the same values.
# shellcheck disable=SC2016 # written as it is, for systemd to read
tricky='# quotes, escapes, a continuation line, a repeated assignment
GITHUB_APP_ID=1234
GITHUB_APP_INSTALLATION_ID=100
GITHUB_APP_PRIVATE_KEY_FILE=  /home/dev/a\ b/k\\ey.pem  
GITHUB_TOKEN_FILE=/home/dev/not-this-one.json
GITHUB_TOKEN_FILE="/home/dev/q \"x\" \$y \z/\
token.json"
'
printf -v tricky_q %q "$tricky"
ush "printf '%s' $tricky_q >~/tricky.env"
t_env_file_as_systemd() {
  local ours theirs
  ours=$(u env -i PATH=/usr/bin:/bin "$GTR" check --paths --env-file "$HOME_DEV/tricky.env" |
    awk -F'\t' '$2 == "output" || $2 == "key" { print $3 }') || { echo "check --paths failed"; return 1; }
  # shellcheck disable=SC2016 # the unit's shell expands them
  theirs=$(u systemd-run --user --wait --pipe --quiet --collect -p EnvironmentFile="$HOME_DEV/tricky.env" \
    sh -c 'printf "%s\n%s\n" "$GITHUB_TOKEN_FILE" "$GITHUB_APP_PRIVATE_KEY_FILE"')
  [[ -n $ours && $ours == "$theirs" ]] || { printf 'ours:\n%s\nsystemd:\n%s\n' "$ours" "$theirs"; return 1; }
}
expect "check --env-file reads quotes, escapes, continuations and repeats as systemd's EnvironmentFile= does" t_env_file_as_systemd

# --- uninstall ----------------------------------------------------------------------------------
run_setup uninstall-dry --uninstall --purge --dry-run
t_dry() { [[ $rc == 0 ]] && contains "$out" "would run" && is_active $UNIT && u test -f "$TOKEN" && u test -f "$INSTALLED"; }
expect "uninstall --dry-run: says what it would do and changes nothing" t_dry
ush "echo mine >~/.config/$UNIT/my-notes.txt && mkdir -p ~/tokens/keep && echo mine >~/tokens/keep/file"
run_setup uninstall --uninstall --purge
t_purge_unrelated() {
  [[ $(u ls -A "$HOME_DEV/.config/$UNIT") == my-notes.txt ]] || { echo "left in the configuration directory: $(u ls -A "$HOME_DEV/.config/$UNIT")"; return 1; }
  u test -f "$HOME_DEV/tokens/keep/file" && u test -f "$HOME_DEV/.ssh/authorized_keys"
}
expect "uninstall --purge: a file of the user's in the configuration directory, ~/tokens/keep and ~/.ssh are left alone" t_purge_unrelated
ush "rm -f ~/.config/$UNIT/my-notes.txt && rmdir ~/.config/$UNIT"
t_uninstall() {
  [[ $rc == 0 ]] || { echo "exit $rc"; return 1; }
  absent "$INSTALLED" "$HOME_DEV/.local/bin/.$UNIT.prev" "$HOME_DEV/.config/$UNIT" \
    "$HOME_DEV/.config/systemd/user/$UNIT.service" "$HOME_DEV/.config/systemd/user/$UNIT@.service" \
    "$HOME_DEV/.config/systemd/user/default.target.wants/$UNIT.service" "$RUN/$UNIT" || return 1
  local left
  left=$(
    u systemctl --user list-units --all --plain --no-legend "$UNIT*"
    u systemctl --user list-unit-files --plain --no-legend "$UNIT*"
    u pgrep -u dev -a -f "$UNIT run" || true
  )
  [[ -z $left ]] || { echo "still there: $left"; return 1; }
}
expect "uninstall --purge: nothing left (binary, units, config, key, token directory, processes)" t_uninstall
expect "uninstall: the --config drop-in and the targets file are gone" \
  absent "$CONFIG_DROPIN" "$(dirname "$CONFIG_DROPIN")" "$TARGETS"
run_setup uninstall-again --uninstall --purge
expect "uninstall: running it again is fine (exit 0)" test "$rc" == 0

# --- secrets --------------------------------------------------------------------------------------
journal=$(u journalctl --user -u "$UNIT*" --no-pager -o verbose)
setup_logs=$(cat "$logs"/*.log)
t_secrets() {
  local leak="" t needle
  ((${#seen_tokens[@]} >= 3)) || leak+=" (only ${#seen_tokens[@]} tokens were collected)"
  for t in "${seen_tokens[@]}"; do
    grep -qF "$t" <<<"$journal$setup_logs" && leak+=" the token ${t:0:8}…"
  done
  for needle in ghs_ eyJ "PRIVATE KEY"; do
    grep -qF "$needle" <<<"$journal" && leak+=" '$needle' in the journal"
    grep -qF "$needle" <<<"$setup_logs" && leak+=" '$needle' in setup.sh's output"
  done
  [[ -z $leak ]] || { echo "found:$leak"; return 1; }
}
expect "secrets: no token, JWT or key in the journal (debug level during reload included) or in setup.sh's output" t_secrets

e2e_summary
