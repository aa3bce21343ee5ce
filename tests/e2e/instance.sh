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

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init instance

# --- inside the machine -----------------------------------------------------------------------
NAME=agent1
INST=$UNIT@$NAME.service
SANDBOX_UNIT=sandbox@$NAME.service
TOKEN=$RUN/$UNIT@$NAME/token.json

seen=()

# --- boot ---------------------------------------------------------------------------------------
e2e_boot
e2e_start_fake

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
expect "journal: no token anywhere in the user journal" no_token_in_journal "${seen[@]}"

e2e_summary
