#!/usr/bin/env bash
# End-to-end test of pull mode's socket activation on a real systemd (CI runs it as root):
# systemd/examples/github-token-refresher-pull.socket with the drop-in socket-activated.conf
# on github-token-refresher.service (docs/pull-mode.md).
#
#   sudo tests/e2e/socket.sh
#
# Boots ../shared/systemd-sandbox/sandbox (Debian, systemd 252 as PID 1, user "dev",
# loopback only) with this repository and the two binaries bound in read-only, runs the fake
# GitHub there, installs the service with setup.sh, then switches it to the socket: with only
# the .socket enabled the service is not running and nothing is minted; the first
# `curl --unix-socket` starts it and gets a working token; /healthz answers; the daemon says
# it serves systemd's socket and audits the answer; a restart of the service keeps the
# socket working; a stop leaves the socket (systemd holds it), revokes the socket's token,
# and the next request starts the service again; nothing secret in the journal. One
# PASS/FAIL line per check and "N passed, M failed"; exits non-zero on any failure. The
# sandbox is always powered off at the end. Builds nothing. Environment: GTR_BIN, FAKE_BIN,
# SANDBOX, E2E_LOGS as tests/e2e/systemd.sh; SANDBOX_DIR to keep this sandbox apart from
# another one.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
sandbox=${SANDBOX:-$repo/../shared/systemd-sandbox/sandbox}
gtr_bin=${GTR_BIN:-$repo/target/debug/github-token-refresher}
fake_bin=${FAKE_BIN:-$repo/target/debug/fake-github}
logs=${E2E_LOGS:-$(mktemp -d /tmp/gtr-e2e-socket.XXXXXX)}
mkdir -p "$logs"

die() { echo "socket.sh: $*" >&2; exit 2; }
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
SERVICE=$UNIT.service
SOCKET_UNIT=$UNIT-pull.socket
SOCK=$RUN/$UNIT/token.sock
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
wait_for() { # SECONDS CMD...: until CMD succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.3
  done
}
api_status() { u curl -s -o /dev/null -w '%{http_code}' -H "Authorization: token $1" "$API/installation/repositories"; }
is_state() { # UNIT STATE
  local s
  s=$(prop "$1" ActiveState)
  [[ $s == "$2" ]] || { echo "$1 is $s, want $2"; u systemctl --user status "$1" --no-pager -n 10; return 1; }
}
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
mints() { u curl -fsS "$API/_fake/stats" | sed -n 's/.*"mints": *\([0-9]*\).*/\1/p'; }
# GET PATH over the socket as a sandbox would; the body in $body, the status in $code
ask() {
  local out
  out=$(u curl -s --max-time 60 -w '\n%{http_code}' --unix-socket "$SOCK" "http://localhost$1") || true
  code=${out##*$'\n'}
  body=${out%$'\n'*}
}
token_in() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$1"; }
socket_there() { # the socket file exists, is a socket, mode 600
  local m
  m=$(u stat -c '%F %a' "$SOCK") || { echo "no $SOCK"; return 1; }
  [[ $m == "socket 600" ]] || { echo "$SOCK: $m"; return 1; }
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

# --- install: the service with setup.sh, then switched to the socket ------------------------------
u "$SETUP" --app-id 1234 --private-key-file "$KEY" --installation-id 100 \
  --api-url "$API" --binary "$GTR" >"$logs/setup.log" 2>&1
setup_rc=$?
expect "install: setup.sh exits 0" test "$setup_rc" == 0
ush "systemctl --user disable --now $SERVICE &&
  mkdir -p $USER_UNITS/$SERVICE.d &&
  cp /src/systemd/examples/$SOCKET_UNIT $USER_UNITS/ &&
  cp /src/systemd/examples/socket-activated.conf $USER_UNITS/$SERVICE.d/ &&
  systemctl --user daemon-reload &&
  systemctl --user enable --now $SOCKET_UNIT" >"$logs/switch.log" 2>&1
switch_rc=$?
before=$(mints)
t_installed() {
  [[ $switch_rc == 0 ]] || { echo "switching to the socket failed:"; cat "$logs/switch.log"; return 1; }
  is_state "$SOCKET_UNIT" active && is_state "$SERVICE" inactive && socket_there || return 1
  [[ $(prop "$SOCKET_UNIT" UnitFileState) == enabled ]] || { echo "$SOCKET_UNIT is not enabled"; return 1; }
  [[ $(prop "$SERVICE" UnitFileState) == disabled ]] || { echo "$SERVICE is $(prop "$SERVICE" UnitFileState)"; return 1; }
}
expect "install: only $SOCKET_UNIT is enabled and listening ($SOCK, 0600); $SERVICE is not running" t_installed
sleep 1
t_idle() {
  is_state "$SERVICE" inactive || return 1
  [[ $(mints) == "$before" ]] || { echo "minted without a request: $before -> $(mints)"; return 1; }
}
expect "idle: nobody asked, so the service stays down and nothing is minted" t_idle

# --- the first request starts the service and is answered -----------------------------------------
ask /token
first_code=$code
first_body=$body
t_first() {
  [[ $first_code == 200 ]] || { echo "answered $first_code: $first_body"; return 1; }
  is_state "$SERVICE" active || return 1
  local t
  t=$(token_in "$first_body") || return 1
  works "$t"
}
expect "first use: curl --unix-socket $SOCK http://localhost/token starts $SERVICE and gets a working token" t_first
first=$(token_in "$first_body" 2>/dev/null)
seen+=("$first")
ask /healthz
t_health() { [[ $code == 200 && $body == *'"ok"'* ]] || { echo "answered $code: $body"; return 1; }; }
expect "first use: GET /healthz answers 200" t_health
t_journal_adopted() {
  local j fp
  j=$(u journalctl --user -u "$SERVICE" --no-pager -o cat)
  grep -qF "serving tokens on '$SOCK' (socket from systemd" <<<"$j" ||
    { echo "no 'socket from systemd' line:"; tail -n 15 <<<"$j"; return 1; }
  fp=$(printf %s "$first" | "$bins/github-token-refresher" fingerprint) || return 1
  # under the journal the audit's values are fields of the entry, not part of the message
  u journalctl --user -u "$SERVICE" --no-pager -o json | python3 -c '
import json, sys
fp = sys.argv[1]
entries = [json.loads(l) for l in sys.stdin if l.strip()]
answers = [e for e in entries if e.get("MESSAGE", "").startswith("socket answer")]
hits = [e for e in answers if e.get("FINGERPRINT") == fp and e.get("STATUS") == "200"
        and e.get("PATH") == "/token" and e.get("UID") == "1000" and e.get("CGROUP")]
if not hits:
    print("no audit entry for %s with PATH=/token STATUS=200 UID=1000 and a CGROUP; got:" % fp)
    for e in answers[-3:]:
        print({k: e.get(k) for k in ("MESSAGE", "PATH", "STATUS", "UID", "CGROUP", "FINGERPRINT")})
    sys.exit(1)
' "$fp"
}
expect "first use: the daemon serves systemd's socket (not one it bound) and audits the answer" t_journal_adopted

# --- restart: the socket keeps working ------------------------------------------------------------
pid_before=$(prop "$SERVICE" MainPID)
u systemctl --user restart "$SERVICE"
t_restart() {
  is_state "$SERVICE" active && is_state "$SOCKET_UNIT" active && socket_there || return 1
  [[ $(prop "$SERVICE" MainPID) != "$pid_before" ]] || { echo "not restarted"; return 1; }
  ask /token
  [[ $code == 200 ]] || { echo "answered $code: $body"; return 1; }
  works "$(token_in "$body")"
}
expect "restart: after systemctl --user restart $SERVICE the same socket path answers with a working token" t_restart
ask /token
last=$(token_in "$body" 2>/dev/null)
seen+=("$last")

# --- stop: systemd keeps the socket, the next request starts the daemon again ---------------------
u systemctl --user stop "$SERVICE" 2>"$logs/stop.log" # "can still be activated by" the socket: as meant
t_stop() {
  is_state "$SERVICE" inactive && is_state "$SOCKET_UNIT" active && socket_there || return 1
  refused "$last" || { echo "(the socket's token, revoked at stop)"; return 1; }
}
expect "stop: $SERVICE stops, $SOCKET_UNIT keeps listening on $SOCK, the socket's token answers 401" t_stop
ask /token
t_again() {
  [[ $code == 200 ]] || { echo "answered $code: $body"; return 1; }
  is_state "$SERVICE" active || return 1
  works "$(token_in "$body")"
}
expect "stop: the next request starts $SERVICE again and gets a working token" t_again
seen+=("$(token_in "$body" 2>/dev/null)")

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
