#!/usr/bin/env bash
# End-to-end test of what the daemon writes to the journal, on a real systemd (CI runs it as
# root).
#
#   sudo tests/e2e/journal.sh
#
# Boots ../shared/systemd-sandbox/sandbox (Debian, systemd as PID 1, user "dev", loopback
# only) with this repository and the two binaries bound in read-only, runs the fake GitHub
# there as dev, installs the service with setup.sh --config (two targets, agent-1 and
# agent-2, refreshing every few seconds), makes GitHub answer one mint with 503 and then
# reads the journal as the README tells users to:
#   - `journalctl --user -u github-token-refresher -p warning` shows the 503 and its retry and
#     hides the routine mints, which the full journal shows at priority info;
#   - `journalctl --user -u github-token-refresher TARGET_NAME=agent-1 -o json` returns
#     agent-1's entries only, with INSTALLATION_ID, GENERATION and EXPIRES_AT fields;
#   - no token and no key is anywhere in the journal;
# and that setup.sh installs the shell completions and man pages, and --uninstall removes them.
# Prints one PASS/FAIL line per check and "N passed, M failed"; exits non-zero on any failure.
# About a minute once the sandbox's root file system exists. The sandbox is always powered
# off at the end.
#
# Builds nothing. Environment:
#   GTR_BIN   the daemon binary      (default: target/debug/github-token-refresher)
#   FAKE_BIN  the fake GitHub binary (default: target/debug/fake-github)
#   SANDBOX   the sandbox script     (default: ../shared/systemd-sandbox/sandbox)
#   E2E_LOGS  directory for the logs of each step (default: a new temporary directory)
set -euo pipefail

export E2E_JOURNAL_FORMAT=verbose
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init journal

# --- inside the machine -----------------------------------------------------------------------
T1=$RUN/$UNIT/agent-1/token.json
T2=$RUN/$UNIT/agent-2/token.json

# the unit's journal, as a user types it: journal ARGS...
journal() { u journalctl --user -u "$UNIT" --no-pager "$@"; }
generation_of() { u python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"])' "$1"; }
generation_at_least() { local g; g=$(generation_of "$1") && ((g >= $2)); }

# --- boot ---------------------------------------------------------------------------------------
e2e_boot
e2e_start_fake

# --- install: two targets, refreshed every 4 s so that routine mints fill the journal --------
"$sandbox" user bash -c "mkdir -p ~/cfg && cat >~/cfg/targets.toml" <<EOF
app_id = 1234
api_url = "$API"
refresh_interval = "4s"
jitter = "1s"

[[target]]
name = "agent-1"
installation_id = 100

[[target]]
name = "agent-2"
installation_id = 200
EOF
rc=0
u "$SETUP" --config "$HOME_DEV/cfg/targets.toml" --private-key-file "$KEY" --binary "$GTR" \
  >"$logs/setup.log" 2>&1 || rc=$?
t_install() {
  [[ $rc == 0 ]] || { echo "setup.sh exit $rc"; tail -n 20 "$logs/setup.log"; return 1; }
  [[ $(prop $UNIT ActiveState) == active ]] || { echo "$UNIT is $(prop $UNIT ActiveState)"; return 1; }
}
expect "install: setup.sh --config with agent-1 and agent-2 runs $UNIT" t_install
# a few routine refreshes of each
wait_for 40 generation_at_least "$T1" 3
wait_for 20 generation_at_least "$T2" 3

# --- a 503 on the next mint ---------------------------------------------------------------------
u curl -fsS -X POST "$API/_fake/faults" -H 'content-type: application/json' \
  -d '{"route": "access_tokens", "times": 1, "kind": {"type": "status", "status": 503, "body": "{\"message\":\"Service Unavailable\"}"}}' \
  >"$logs/fault.log" 2>&1
fault_used() { u curl -fsS "$API/_fake/stats" | grep -q '"pending_faults":0'; }
wait_for 30 fault_used
# and the refresh after the retry
g1=$(generation_of "$T1")
g2=$(generation_of "$T2")
wait_for 30 generation_at_least "$T1" $((g1 + 1))
wait_for 30 generation_at_least "$T2" $((g2 + 1))
sleep 1

all=$(journal -o cat)
warnings=$(journal -p warning -o cat)
printf '%s\n' "$all" >"$logs/journal-all.log"
printf '%s\n' "$warnings" >"$logs/journal-warning.log"

t_all_has_mints() {
  local n
  n=$(grep -c "minted a token" <<<"$all")
  ((n >= 6)) || { echo "only $n mint lines in the full journal"; tail -n 20 <<<"$all"; return 1; }
}
expect "journal: the full journal shows the routine mints (at least 3 per target)" t_all_has_mints
t_warning_shows_503() {
  # the message alone says which target and that it is retried
  grep -qE "^agent-[12]: GitHub answered 503 .*; retry 1 in [0-9]" <<<"$warnings" ||
    { echo "no 'agent-N: GitHub answered 503 …; retry 1 in …' line:"; printf '%s\n' "$warnings"; return 1; }
  ! grep -q "minted a token" <<<"$warnings" || { echo "-p warning shows routine mints:"; grep "minted a token" <<<"$warnings" | head -n 3; return 1; }
  ! grep -qE "^(started|ready:)" <<<"$warnings" || { echo "-p warning shows start-up lines"; return 1; }
}
expect "journal: journalctl -u $UNIT -p warning shows the 503 (which target, retried) and hides the routine mints" t_warning_shows_503

t_priorities() {
  python3 - "$1" <<'PY'
import json, sys
entries = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
mints = [e for e in entries if "minted a token" in e.get("MESSAGE", "")]
retries = [e for e in entries if "503" in e.get("MESSAGE", "")]
bad = []
if not mints or any(e.get("PRIORITY") != "6" for e in mints):
    bad.append("mints: priorities %s" % sorted({e.get("PRIORITY") for e in mints}))
if not retries or any(e.get("PRIORITY") != "4" for e in retries):
    bad.append("503: priorities %s" % sorted({e.get("PRIORITY") for e in retries}))
if any(e.get("SYSLOG_IDENTIFIER") != "github-token-refresher" for e in mints + retries):
    bad.append("SYSLOG_IDENTIFIER: %s" % sorted({e.get("SYSLOG_IDENTIFIER") for e in mints + retries}))
if any(e.get("MESSAGE", "").startswith("<") for e in entries):
    bad.append("a message carries a raw <N> prefix")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
}
expect "journal: mints at priority 6 (info), the 503 at 4 (warning), SYSLOG_IDENTIFIER github-token-refresher" \
  t_priorities "$(journal -o json)"

t_field_filter() {
  python3 - "$1" <<'PY'
import json, sys
entries = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
bad = []
if not entries:
    bad.append("TARGET_NAME=agent-1 matched nothing")
others = [e for e in entries if e.get("TARGET_NAME") != "agent-1"]
if others:
    bad.append("%d entries of another target, e.g. %s" % (len(others), others[0].get("MESSAGE")))
mints = [e for e in entries if "minted a token" in e.get("MESSAGE", "")]
if len(mints) < 3:
    bad.append("only %d mints of agent-1" % len(mints))
for e in mints:
    if e.get("INSTALLATION_ID") != "100" or not e.get("GENERATION", "").isdigit() or "T" not in e.get("EXPIRES_AT", ""):
        bad.append("a mint without INSTALLATION_ID=100, GENERATION, EXPIRES_AT: %s" %
                   {k: e.get(k) for k in ("INSTALLATION_ID", "GENERATION", "EXPIRES_AT")})
        break
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
}
expect "journal: journalctl -u $UNIT TARGET_NAME=agent-1 -o json returns agent-1's entries only, mints with INSTALLATION_ID, GENERATION, EXPIRES_AT" \
  t_field_filter "$(journal TARGET_NAME=agent-1 -o json)"

t_no_secrets() {
  local everything tok
  everything=$(journal -o verbose)
  for f in "$T1" "$T2"; do
    tok=$(u python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$f") || return 1
    [[ -n $tok ]] || { echo "no token in $f"; return 1; }
    ! grep -qF -- "$tok" <<<"$everything" || { echo "the token of $f is in the journal"; return 1; }
  done
  ! grep -qE 'ghs_|BEGIN [A-Z ]*PRIVATE KEY|eyJ[A-Za-z0-9_-]{10,}\.' <<<"$everything" || { echo "a token, key or JWT is in the journal"; return 1; }
}
expect "journal: no token, key or JWT in any field of any entry (journalctl -o verbose)" t_no_secrets

# --- setup.sh's shell completions and man pages (installed with the service above) ------------
BASH_COMPLETION=$HOME_DEV/.local/share/bash-completion/completions/$UNIT
MAN1=$HOME_DEV/.local/share/man/man1
t_extras_installed() {
  u bash -c "source $BASH_COMPLETION && complete -p $UNIT" | grep -q -- "-F _github__token__refresher" ||
    { echo "bash completion not installed or does not load"; return 1; }
  if ! u test -f "$MAN1/$UNIT.1" || ! u test -f "$MAN1/$UNIT-status.1"; then
    echo "man pages missing: $(u ls "$MAN1" 2>&1)"
    return 1
  fi
  u grep -q '^.SH NAME' "$MAN1/$UNIT.1"
}
expect "setup.sh: bash completion (loads) and man pages installed in ~/.local/share" t_extras_installed

u "$SETUP" --uninstall --purge >"$logs/uninstall.log" 2>&1
t_extras_removed() {
  ! u test -e "$BASH_COMPLETION" || { echo "$BASH_COMPLETION is still there"; return 1; }
  [[ -z $(u find "$MAN1" -name "$UNIT*" 2>/dev/null) ]] || { echo "man pages left: $(u ls "$MAN1")"; return 1; }
}
expect "setup.sh --uninstall removes the completions and the man pages" t_extras_removed
e2e_summary
