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

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init socket

# --- inside the machine -----------------------------------------------------------------------
SERVICE=$UNIT.service
SOCKET_UNIT=$UNIT-pull.socket
SOCK=$RUN/$UNIT/token.sock

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
e2e_boot
e2e_start_fake

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
expect "journal: no token anywhere in the user journal" no_token_in_journal "${seen[@]}"

e2e_summary
