#!/usr/bin/env bash
# End-to-end test of the per-sandbox recipe on a real systemd (CI runs it as root):
# github-token-refresher@NAME, scoped for one sandbox, started with sandbox@NAME.service and
# stopped with it through the drop-ins in systemd/examples/ (sandbox-bound.conf on the
# instance, revoke-with-sandbox.conf on the sandbox; docs/revocation.md).
#
#   sudo tests/e2e/instance.sh
#
# Boots ../shared/systemd-sandbox/sandbox (Debian, systemd 252 as PID 1, user "dev",
# loopback only) with this repository and the two binaries bound in read-only, runs the fake
# GitHub there, installs an instance with setup.sh --instance and the drop-in, then: starting
# the sandbox starts the instance first and the sandbox reads a working, scoped token; a
# restart of the instance keeps that token valid and the file in place; stopping the sandbox
# stops the instance, after which the token answers 401 and the file is gone; the same when
# the sandbox's process dies on its own; a restart of the sandbox gives it a new token and
# revokes the old one; nothing secret in the journal. One PASS/FAIL line
# per check and "N passed, M failed"; exits non-zero on any failure. The sandbox is always
# powered off at the end. Builds nothing. Environment: GTR_BIN, FAKE_BIN, SANDBOX, E2E_LOGS
# as tests/e2e/systemd.sh; SANDBOX_DIR to keep this sandbox apart from another one.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
sandbox=${SANDBOX:-$repo/../shared/systemd-sandbox/sandbox}
gtr_bin=${GTR_BIN:-$repo/target/debug/github-token-refresher}
fake_bin=${FAKE_BIN:-$repo/target/debug/fake-github}
logs=${E2E_LOGS:-$(mktemp -d /tmp/gtr-e2e-instance.XXXXXX)}
mkdir -p "$logs"

die() { echo "instance.sh: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || die "needs root (the sandbox does)"
[[ -x $sandbox ]] || die "no sandbox script at $sandbox (set SANDBOX=)"
for b in "$gtr_bin" "$fake_bin"; do
  [[ -f $b && -x $b ]] || die "no binary $b; build first (cargo build --bins) or set GTR_BIN / FAKE_BIN"
done
"$sandbox" status | grep -q ': up' && die "the sandbox is already up; run: $sandbox down"
bins=""

# --- inside the machine -----------------------------------------------------------------------
GTR=/opt/e2e/bin/github-token-refresher
FAKE=/opt/e2e/bin/fake-github
SETUP=/src/setup.sh
API=http://127.0.0.1:8080
HOME_DEV=/home/dev
RUN=/run/user/1000
UNIT=github-token-refresher
NAME=agent1
INST=$UNIT@$NAME.service
SANDBOX_UNIT=sandbox@$NAME.service
TOKEN=$RUN/$UNIT@$NAME/token.json
KEY=$HOME_DEV/fake-key/app.pem
USER_UNITS=$HOME_DEV/.config/systemd/user

u() { "$sandbox" user "$@" </dev/null; }
ush() { "$sandbox" user bash -c "$1" </dev/null; }

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
expect() { # NAME CMD...: PASS if CMD succeeds; CMD says why on stdout when it fails
  local name=$1 _out _rc=0
  shift
  _out=$("$@" 2>&1) || _rc=$?
  if ((_rc == 0)); then
    pass "$name"
  else
    fail "$name"
    [[ -z $_out ]] || printf "%s\n" "$_out" | head -n 20 | sed "s/^/     /"
  fi
}

finish() {
  local rc=$?
  if [[ -n ${booted:-} && -z ${summarised:-} ]]; then
    fail "the suite itself stopped early (exit $rc); see above and $logs"
    echo "$passed passed, $failed failed"
    rc=1
  fi
  if [[ -n ${booted:-} ]]; then
    u journalctl --user --no-pager -o short-monotonic >"$logs/journal-user.log" 2>&1 || true
    "$sandbox" down >/dev/null 2>&1 || true
  fi
  [[ -z $bins ]] || rm -rf "$bins"
  echo "logs: $logs"
  exit "$rc"
}
trap finish EXIT

# a snapshot of the binaries: a cargo build meanwhile must not swap one under the suite
bins=$(mktemp -d /tmp/gtr-e2e-bin.XXXXXX)
chmod 0755 "$bins"
cp "$gtr_bin" "$bins/github-token-refresher"
cp "$fake_bin" "$bins/fake-github"

prop() { u systemctl --user show -p "$2" --value "$1"; }
token_of() { u python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "${2:-token}"; }
wait_for() { # SECONDS CMD...: until CMD succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.3
  done
}
# what a consumer holding TOKEN gets from the API: the HTTP status
api_status() { u curl -s -o /dev/null -w '%{http_code}' -H "Authorization: token $1" "$API/installation/repositories"; }
is_state() { # UNIT STATE
  local s
  s=$(prop "$1" ActiveState)
  [[ $s == "$2" ]] || { echo "$1 is $s, want $2"; u systemctl --user status "$1" --no-pager -n 10; return 1; }
}
absent() { ! u test -e "$1" || { echo "$1 still exists"; return 1; }; }
works() { # TOKEN: the API accepts it
  local s
  s=$(api_status "$1")
  [[ $s == 200 ]] || { echo "the API answered $s"; return 1; }
}
refused() { # TOKEN: the API answers 401
  local s
  s=$(api_status "$1")
  [[ $s == 401 ]] || { echo "the API answered $s, want 401"; return 1; }
}
seen=()

# --- boot ---------------------------------------------------------------------------------------
echo "booting the sandbox (logs in $logs)"
"$sandbox" up --bind "$repo:/src" --bind "$bins:/opt/e2e/bin" >"$logs/sandbox-up.log" 2>&1 ||
  { cat "$logs/sandbox-up.log" >&2; die "sandbox up failed"; }
booted=1
set +e
u systemd-run --user --quiet --unit=e2e-fake-github "$FAKE" --listen 127.0.0.1:8080 \
  --token-lifetime 20m --key-out "$HOME_DEV/fake-key"
wait_for 20 u curl -fsS "$API/_fake/stats" || die "the fake GitHub did not come up"
wait_for 5 u test -f "$KEY" || die "the fake GitHub wrote no key"

# --- install: an instance scoped to one repository, bound to its sandbox -------------------------
u "$SETUP" --instance "$NAME" --app-id 1234 --private-key-file "$KEY" --installation-id 100 \
  --repositories widgets --permissions contents=read --api-url "$API" --binary "$GTR" \
  >"$logs/setup.log" 2>&1
setup_rc=$?
expect "install: setup.sh --instance $NAME exits 0" test "$setup_rc" == 0
# the sandbox: stands in for a podman/quadlet container; it reads the token as it starts
cat >"$bins/sandbox@.service" <<EOF
[Unit]
Description=sandbox %i (stands in for a podman/quadlet container)

[Service]
ExecStart=/bin/sh -c 'cat %t/$UNIT@%i/token.json >/dev/null && exec sleep infinity'
EOF
ush "systemctl --user disable --now $INST &&
  mkdir -p $USER_UNITS/$INST.d $USER_UNITS/$SANDBOX_UNIT.d &&
  cp /src/systemd/examples/sandbox-bound.conf $USER_UNITS/$INST.d/ &&
  cp /src/systemd/examples/revoke-with-sandbox.conf $USER_UNITS/$SANDBOX_UNIT.d/ &&
  cp /opt/e2e/bin/sandbox@.service $USER_UNITS/ &&
  systemctl --user daemon-reload" >"$logs/bind.log" 2>&1
t_verify() {
  u systemctl --user show -p BindsTo --value "$INST" | grep -qF "$SANDBOX_UNIT" || { echo "no BindsTo=$SANDBOX_UNIT"; cat "$logs/bind.log"; return 1; }
  u systemctl --user show -p ExecStopPost --value "$SANDBOX_UNIT" | grep -qF "revoke --remove" || { echo "no ExecStopPost on $SANDBOX_UNIT"; return 1; }
}
expect "install: the drop-in is in place and systemd reads it" t_verify
expect "install: the instance is not running before its sandbox" is_state "$INST" inactive

# --- start with the sandbox ---------------------------------------------------------------------
u systemctl --user start "$SANDBOX_UNIT"
t_started() {
  is_state "$SANDBOX_UNIT" active && is_state "$INST" active || return 1
  local t
  t=$(token_of "$TOKEN") || return 1
  works "$t" || return 1
  [[ $(token_of "$TOKEN" repositories) == "['widgets']" ]] || { echo "scope: $(token_of "$TOKEN" repositories)"; return 1; }
}
expect "start: starting $SANDBOX_UNIT starts $INST first; the sandbox read a working token scoped to widgets" t_started
first=$(token_of "$TOKEN")
seen+=("$first")
sandbox_pid=$(prop "$SANDBOX_UNIT" MainPID)

# --- a restart of the instance keeps the token ----------------------------------------------------
u systemctl --user restart "$INST"
t_restart() {
  is_state "$INST" active && is_state "$SANDBOX_UNIT" active || return 1
  [[ $(prop "$SANDBOX_UNIT" MainPID) == "$sandbox_pid" ]] || { echo "the sandbox was restarted"; return 1; }
  works "$first" || { echo "(the token from before the restart)"; return 1; }
  u test -f "$TOKEN" || { echo "no token file"; return 1; }
  works "$(token_of "$TOKEN")"
}
expect "restart: systemctl --user restart $INST leaves the sandbox running, the earlier token valid and the file in place" t_restart
seen+=("$(token_of "$TOKEN")")

# --- stopping the sandbox revokes -----------------------------------------------------------------
last=$(token_of "$TOKEN")
stop_started=$SECONDS
u systemctl --user stop "$SANDBOX_UNIT"
stop_took=$((SECONDS - stop_started))
t_stopped() {
  is_state "$SANDBOX_UNIT" inactive && is_state "$INST" inactive || return 1
  absent "$TOKEN" || return 1
  local t
  for t in "${seen[@]}"; do refused "$t" || return 1; done
}
expect "stop: stopping $SANDBOX_UNIT stops $INST; every token it had answers 401 and the file is gone (took ${stop_took}s)" t_stopped
t_journal_revoked() {
  local fp j
  fp=$(printf %s "$last" | "$bins/github-token-refresher" fingerprint) || return 1
  j=$(u journalctl --user -u "$SANDBOX_UNIT" --no-pager -o cat)
  grep -qF "revoked the token in '$TOKEN' (fingerprint $fp)" <<<"$j" ||
    { echo "no revocation of $fp in the journal"; tail -n 15 <<<"$j"; return 1; }
}
expect "stop: the journal names the revoked token by its fingerprint" t_journal_revoked

# --- the sandbox's process dies on its own ---------------------------------------------------------
u systemctl --user start "$SANDBOX_UNIT"
wait_for 20 u test -f "$TOKEN"
crash_token=$(token_of "$TOKEN")
seen+=("$crash_token")
u systemctl --user kill --signal=KILL "$SANDBOX_UNIT"
t_died() {
  wait_for 20 is_state "$INST" inactive || { echo "$INST is $(prop "$INST" ActiveState)"; return 1; }
  wait_for 10 absent "$TOKEN" || { echo "$TOKEN still exists"; return 1; }
  refused "$crash_token"
}
expect "sandbox died: BindsTo= stops $INST, the token answers 401 and the file is gone" t_died

# --- a restart of the sandbox: a new token for the new sandbox, the old one revoked ------------
u systemctl --user start "$SANDBOX_UNIT"
wait_for 20 u test -f "$TOKEN"
before=$(token_of "$TOKEN")
seen+=("$before")
u systemctl --user restart "$SANDBOX_UNIT"
t_sandbox_restart() {
  is_state "$SANDBOX_UNIT" active && is_state "$INST" active || return 1
  local now
  now=$(token_of "$TOKEN") || return 1
  [[ $now != "$before" ]] || { echo "the same token after the sandbox restarted"; return 1; }
  works "$now" && refused "$before"
}
expect "sandbox restart: the restarted sandbox reads a new working token; the one before answers 401" t_sandbox_restart
seen+=("$(token_of "$TOKEN")")
u systemctl --user stop "$SANDBOX_UNIT"
expect "sandbox restart: and a stop afterwards leaves nothing valid" refused "$(token_of "$TOKEN" 2>/dev/null || echo "${seen[-1]}")"

# --- secrets ---------------------------------------------------------------------------------------
t_no_secrets() {
  local j t
  j=$(u journalctl --user --no-pager -o cat)
  for t in "${seen[@]}"; do
    [[ -n $t ]] || continue
    ! grep -qF "$t" <<<"$j" || { echo "a token is in the journal"; return 1; }
  done
}
expect "journal: no token anywhere in the user journal" t_no_secrets

summarised=1
echo "$passed passed, $failed failed"
((failed == 0))
