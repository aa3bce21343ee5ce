#!/usr/bin/env bash
# Install, update or remove github-token-refresher as a systemd user service.
#
#   ./setup.sh [--app-id ID] [--private-key-file PATH]
#              [--installation-id N | --owner NAME | --repo OWNER/NAME]
#              [--repositories LIST] [--permissions LIST] [--api-url URL] [--output PATH]
#              [--instance NAME] [--binary PATH] [--dry-run]
#   ./setup.sh --config FILE [--private-key-file PATH] [--binary PATH] [--dry-run]
#   ./setup.sh --update [--binary PATH] [--dry-run]
#   ./setup.sh --uninstall [--purge] [--instance NAME] [--dry-run]
#   ./setup.sh --check [--instance NAME]
#
# Install builds the daemon (cargo build --release --locked) unless --binary is given, puts
# it in ~/.local/bin, the units in ~/.config/systemd/user, writes
# ~/.config/github-token-refresher/env (or NAME.env) only when it is absent, copies the App
# key next to it (0600), runs `github-token-refresher check`, then enables and starts the
# unit. Asks for a missing setting only when stdin is a terminal.
#
# --config FILE runs many targets in the one github-token-refresher.service instead: FILE
# (TOML, see README) is checked (`github-token-refresher check --config`), copied to
# ~/.config/github-token-refresher/targets/targets.toml (0600), and the drop-in
# systemd/config-file.conf switches the unit to it. Its targets use the App key given with
# --private-key-file (leave private_key_file out) and write below
# $XDG_RUNTIME_DIR/github-token-refresher/ (leave output out); setup.sh refuses other
# places, which the sandboxed service could not reach. Run it again with a changed FILE to
# apply it: the running service reloads and keeps the targets that did not change.
#
# --output must name a file in a directory of its own: the unit gets write access to that
# directory (BindPaths=), so $HOME, /, /tmp, /home, a directory holding ~/.ssh or ~/.config,
# or one that already holds other files is refused.
#
# --update first proves the new binary: its `check` must mint with the installed
# configuration and key before anything is replaced. Then it swaps the binary atomically,
# replaces units whose content changed, leaves configuration and key alone and restarts the
# units that were running; each restarted single-target daemon must write a new token (the
# file's generation moves) within SETUP_PROVE_TIMEOUT seconds (default 120). Otherwise
# binary, units, drop-ins, key and targets file go back, the previous daemons are restarted,
# the failing daemon's journal is printed and the exit status is 1. An install or update that
# fails at any step undoes everything it wrote.
# --uninstall stops and removes the service; --purge also removes what setup.sh created
# (recorded in ~/.config/github-token-refresher/setup-manifest): configuration, key, token
# files and the directories it made, never anything else. --check runs the doctor
# (`github-token-refresher check`) with exactly the unit's environment file and key. Every
# mode can be re-run; --dry-run changes nothing, validates the settings with the binary
# (`check --offline`) and says what it would do, also where no user manager runs.
set -euo pipefail
umask 077

readonly name=github-token-refresher
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly script_dir

usage() { sed -n '2,/^set -euo/{/^set -euo/d;p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
say() { printf 'setup: %s\n' "$*"; }
warn() { printf 'setup: warning: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$1" >&2; exit "${2:-1}"; }

mode=install
dry_run=0
purge=0
app_id="" key_file="" installation_id="" owner="" repo="" repositories="" permissions=""
api_url="" output="" instance="" binary="" config_src=""

while (($#)); do
  arg=$1
  value=""
  case $arg in
    --*=*) value=${arg#*=}; arg=${arg%%=*} ;;
  esac
  case $arg in
    --app-id | --private-key-file | --installation-id | --owner | --repo | --repositories | \
      --permissions | --api-url | --output | --instance | --binary | --config)
      if [[ $1 != *=* ]]; then
        (($# >= 2)) || die "$arg needs a value" 2
        value=$2
        shift
      fi
      case $arg in
        --app-id) app_id=$value ;;
        --private-key-file) key_file=$value ;;
        --installation-id) installation_id=$value ;;
        --owner) owner=$value ;;
        --repo) repo=$value ;;
        --repositories) repositories=$value ;;
        --permissions) permissions=$value ;;
        --api-url) api_url=$value ;;
        --output) output=$value ;;
        --instance) instance=$value ;;
        --binary) binary=$value ;;
        --config) config_src=$value ;;
      esac
      ;;
    --update) mode=update ;;
    --uninstall) mode=uninstall ;;
    --check) mode=check ;;
    --purge) purge=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" 2 ;;
  esac
  shift
done

((purge)) && [[ $mode != uninstall ]] && die "--purge goes with --uninstall" 2
if [[ $mode != install ]]; then
  for pair in "app-id:$app_id" "private-key-file:$key_file" "installation-id:$installation_id" \
    "owner:$owner" "repo:$repo" "repositories:$repositories" "permissions:$permissions" \
    "api-url:$api_url" "output:$output" "config:$config_src"; do
    [[ -z ${pair#*:} ]] || die "--${pair%%:*} only applies to an install; --$mode never touches configuration" 2
  done
fi
if [[ -n $config_src ]]; then
  [[ -z $instance ]] || die "--config sets up $name.service itself; drop --instance (one service runs every target of the file)" 2
  for pair in "app-id:$app_id" "installation-id:$installation_id" "owner:$owner" "repo:$repo" \
    "repositories:$repositories" "permissions:$permissions" "api-url:$api_url" "output:$output"; do
    [[ -z ${pair#*:} ]] || die "--${pair%%:*} cannot go with --config: put every setting in the file (only the App key goes on the command line, as --private-key-file)" 2
  done
fi
[[ $mode == uninstall || $mode == check ]] && [[ -n $binary ]] && die "--binary makes no sense with --$mode" 2
if [[ -n $instance && ! $instance =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]]; then
  die "instance name '$instance' must be letters, digits, '.', '_' or '-'" 2
fi
[[ $mode == update && -n $instance ]] && die "--update updates the binary and units of every instance; drop --instance" 2

[[ $(id -u) != 0 ]] || die "run setup.sh as the user who will own the service, not as root (it installs a systemd --user unit)"

# --- where things go ------------------------------------------------------------------------
# The units refer to %h/.config and %h/.local/bin, so those are fixed; the unit directory is
# wherever this user's systemd looks.
bin_dir=$HOME/.local/bin
bin=$bin_dir/$name
prev_bin=$bin_dir/.$name.prev
conf_dir=$HOME/.config/$name
unit_dir=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
if [[ -z ${XDG_RUNTIME_DIR:-} && -d /run/user/$(id -u) ]]; then
  XDG_RUNTIME_DIR=/run/user/$(id -u)
  export XDG_RUNTIME_DIR
fi
runtime_dir=${XDG_RUNTIME_DIR:-/run/user/$(id -u)}

# --config: the targets file, in a directory of its own that the unit binds in read-only
config_conf=setup-config-file.conf
config_dropin=$unit_dir/$name.service.d/$config_conf
targets_dir=$conf_dir/targets
targets_dest=$targets_dir/targets.toml

# The files of UNIT (the plain unit or an instance), as its unit file names them: u_env (the
# environment file), u_key (the App key), u_default (its default token file), u_targets (the
# targets file it runs, when the --config drop-in is installed).
unit_files() { # UNIT
  local inst=${1#"$name"@}
  inst=${inst%.service}
  u_targets=""
  if [[ $1 == "$name.service" ]]; then
    u_env=$conf_dir/env u_key=$conf_dir/github-app.pem u_default=$runtime_dir/$name/token.json
    [[ ! -f $config_dropin ]] || u_targets=$targets_dest
  else
    u_env=$conf_dir/$inst.env u_key=$conf_dir/$inst.pem u_default=$runtime_dir/$name@$inst/token.json
  fi
}
unit=$name${instance:+@$instance}.service
unit_files "$unit"
env_file=$u_env key_dest=$u_key default_output=$u_default
dropin_dir=$unit_dir/$unit.d
manifest=$conf_dir/setup-manifest
dropin=$dropin_dir/setup-output.conf
userns_conf=setup-no-user-namespace.conf
# the plain unit runs the targets file (now, or after this install)
config_mode() { [[ -z $instance ]] && [[ -n $config_src || -f $config_dropin ]]; }

# Run a command, or under --dry-run say what would run.
act() {
  if ((dry_run)); then
    say "would run: $*"
  else
    "$@"
  fi
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- undo: a failing run puts back everything it changed ----------------------------------------
# Each file setup.sh writes or removes is first saved (a copy in $undo_dir) or noted as new;
# each directory it makes is noted. Until commit_run, any non-zero exit undoes it all, newest
# first: saved files go back, new files go, new directories go when empty again.
# commit_run adds what this run created to the manifest that --purge works from.
undo_dir=""
undo_log=() # "saved N PATH", "new TAG PATH", "dir TAG PATH"
committed=0

save_before() { # PATH: remember PATH as it is now, before it is written or removed
  local dest=$1 n
  ((dry_run)) && return 0
  [[ -n $undo_dir ]] || undo_dir=$(mktemp -d)
  if [[ -f $dest && ! -L $dest ]]; then
    n=${#undo_log[@]}
    cp -p -- "$dest" "$undo_dir/$n"
    undo_log+=("saved $n $dest")
  elif [[ ! -e $dest && ! -L $dest ]]; then
    undo_log+=("new $(tag_for "$dest") $dest")
  fi
}

make_dir() { # DIR MODE: mkdir -p, noting each directory it makes
  local d=$1 missing=()
  ((dry_run)) && return 0
  while [[ ! -d $d ]]; do
    missing=("$d" "${missing[@]}")
    d=$(dirname "$d")
  done
  for d in "${missing[@]}"; do
    mkdir -- "$d"
    undo_log+=("dir $(tag_for "$d") $d")
  done
  [[ -z $2 ]] || chmod "$2" "$1"
}

# Which install a created path belongs to: the binary and the unit templates are shared by
# every instance ("-"), the rest belongs to this unit (an instance's --purge takes only its own).
tag_for() {
  case $1 in
    "$bin" | "$unit_dir/$name.service" | "$unit_dir/$name@.service" | "$bin_dir" | "$unit_dir" | "$conf_dir") echo - ;;
    "$HOME"/.config | "$HOME"/.local | "$(dirname "$unit_dir")") echo - ;;
    *) echo "$unit" ;;
  esac
}

undo_all() {
  local i kind n path
  for ((i = ${#undo_log[@]} - 1; i >= 0; i--)); do
    read -r kind n path <<<"${undo_log[i]}"
    case $kind in
      saved) cp -p -- "$undo_dir/$n" "$path.undo.$$" && mv -f -- "$path.undo.$$" "$path" ;;
      new) rm -f -- "$path" ;;
      dir) rmdir -- "$path" 2>/dev/null || true ;;
    esac
  done
  undo_log=()
}

# Keep what this run created in the manifest (0600, one "TAG KIND PATH" a line).
commit_run() { # [TOKEN_FILE]: also a token file at a place setup.sh chose
  ((dry_run)) && return 0
  committed=1
  local line kind tag path added=()
  for line in "${undo_log[@]}"; do
    read -r kind tag path <<<"$line"
    case $kind in
      new) added+=("$tag file $path") ;;
      dir) added+=("$tag dir $path") ;;
    esac
  done
  [[ -z ${1:-} ]] || added+=("$unit token $1")
  ((${#added[@]})) || return 0
  mkdir -p "$conf_dir"
  { [[ ! -f $manifest ]] || cat "$manifest"; printf '%s\n' "${added[@]}"; } | awk '!seen[$0]++' >"$manifest.tmp.$$"
  chmod 0600 "$manifest.tmp.$$"
  mv -f "$manifest.tmp.$$" "$manifest"
}

# Copy SRC to DEST atomically (temporary file in DEST's directory, then rename) with MODE.
put_file() {
  local src=$1 dest=$2 mode=$3 tmp
  if ((dry_run)); then
    say "would install $dest (mode $mode) from $src"
    return
  fi
  make_dir "$(dirname "$dest")" ""
  save_before "$dest"
  tmp=$(dirname "$dest")/.$(basename "$dest").tmp.$$
  cp "$src" "$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dest"
}

remove_saved() { # PATH: remove a file this run may have to put back
  save_before "$1"
  act rm -f -- "$1"
}

user_manager_ok() {
  systemctl --user show --property=Version >/dev/null 2>&1 && return 0
  if ((dry_run)); then
    say "dry run: no systemd user manager reachable here ('systemctl --user' fails); an install would need one (a login session, or XDG_RUNTIME_DIR=/run/user/$(id -u)). Showing what it would do."
    return 0
  fi
  die "cannot reach your systemd user manager ('systemctl --user' fails). Run this from a login session (ssh or a desktop, not 'su'), or set XDG_RUNTIME_DIR=/run/user/$(id -u)"
}

# Units of ours that systemd knows about, one per line (plain and every instance).
our_units() {
  {
    systemctl --user list-units --all --plain --no-legend --type=service "$name.service" "$name@*.service" 2>/dev/null | awk '{print $1}'
    systemctl --user list-unit-files --plain --no-legend "$name@*.service" 2>/dev/null | awk '{print $1}' | grep -v '@\.service$' || true
    for link in "$unit_dir"/*.wants/"$name"@*.service; do
      [[ -e $link || -L $link ]] && basename "$link"
    done
  } | grep -E "^$name(@[^.].*)?\.service$" | sort -u || true
}

running_units() {
  local u
  for u in $(our_units); do
    case $(systemctl --user show -p ActiveState --value "$u" 2>/dev/null) in
      active | reloading | activating) echo "$u" ;;
    esac
  done
}

# --- binary ---------------------------------------------------------------------------------
new_bin=""
obtain_binary() {
  if [[ -n $binary ]]; then
    [[ -f $binary && -x $binary ]] || die "--binary '$binary' is not an executable file"
    new_bin=$(realpath "$binary")
  else
    command -v cargo >/dev/null || die "cargo not found; install Rust (https://rustup.rs) or pass --binary PATH"
    if ((dry_run)); then
      say "would run: cargo build --release --locked (in $script_dir)"
      new_bin=$script_dir/target/release/$name
      return
    fi
    say "building: cargo build --release --locked"
    (cd "$script_dir" && cargo build --release --locked) || die "cargo build failed"
    new_bin=$script_dir/target/release/$name
  fi
  "$new_bin" --help >/dev/null 2>&1 || die "'$new_bin --help' fails; not a working $name binary"
}

# Install $new_bin as $bin unless identical. Sets binary_changed=1 (put_file keeps the old
# binary for a rollback).
binary_changed=0
install_binary() {
  if [[ -f $bin && -f $new_bin ]] && [[ $(sha "$bin") == "$(sha "$new_bin")" ]]; then
    say "binary: $bin unchanged"
    return
  fi
  if [[ -f $bin ]]; then
    ((!dry_run)) || say "would replace $bin (keeping the old one until the service has proved the new one)"
    say "binary: replacing $bin"
  else
    say "binary: installing $bin"
  fi
  put_file "$new_bin" "$bin" 0755
  binary_changed=1
}

# --- units ----------------------------------------------------------------------------------
changed_units=()
config_changed_units=()
install_units() {
  local src dest base
  for src in "$script_dir"/systemd/*.service; do
    base=$(basename "$src")
    dest=$unit_dir/$base
    if [[ -f $dest ]]; then
      if [[ $(sha "$dest") == "$(sha "$src")" ]]; then
        say "unit $base: unchanged"
        continue
      fi
      say "unit $base: changed (sha256 $(sha "$dest" | cut -c1-12) -> $(sha "$src" | cut -c1-12)):"
      diff -u "$dest" "$src" | tail -n +3 | sed 's/^/    /' || true
    else
      say "unit $base: installing in $unit_dir"
    fi
    put_file "$src" "$dest" 0644
    changed_units+=("$base")
  done
}

# Of the running units given, those that a changed binary, unit file, drop-in or key affects.
affected() {
  local u
  for u in "$@"; do
    if ((binary_changed)) ||
      { [[ $u == "$name.service" ]] && [[ " ${changed_units[*]} " == *" $name.service "* ]]; } ||
      { [[ $u == "$name"@* ]] && [[ " ${changed_units[*]} " == *" $name@.service "* ]]; } ||
      [[ " ${config_changed_units[*]} " == *" $u "* ]]; then
      echo "$u"
    fi
  done
}

cleanup() {
  local rc=$?
  if ((rc != 0 && !committed && ${#undo_log[@]})); then
    warn "undoing what this run changed"
    undo_all
    systemctl --user daemon-reload 2>/dev/null || true
  fi
  [[ -z $undo_dir ]] || rm -rf "$undo_dir"
  [[ -z ${cred_dir:-} ]] || rm -rf "$cred_dir"
  return "$rc"
}
trap cleanup EXIT

# The binary (the one being installed, else the installed one) run as the unit would run it:
# a clean environment with XDG_RUNTIME_DIR, the App key KEY as its systemd credential (none
# when KEY is missing), the VAR=VALUE words given, then its arguments after "--".
cred_dir=$(mktemp -d) # the stand-in for the unit's $CREDENTIALS_DIRECTORY
bin_as_unit() { # KEY [VAR=VALUE...] -- ARG...
  local key=$1 b=$new_bin vars=()
  shift
  while [[ $1 != -- ]]; do vars+=("$1"); shift; done
  shift
  [[ -x $b ]] || b=$bin
  [[ -x $b ]] || die "no $name binary to read the settings with (pass --binary PATH, or build first)"
  rm -f "$cred_dir/github-app.pem"
  [[ ! -f $key ]] || ln -s "$(realpath -- "$key")" "$cred_dir/github-app.pem"
  env -i PATH="$PATH" HOME="$HOME" XDG_RUNTIME_DIR="$runtime_dir" CREDENTIALS_DIRECTORY="$cred_dir" \
    "${vars[@]}" "$b" "$@" </dev/null
}

# The token file a single-target UNIT writes, as the binary reads the unit's environment file
# (`check --paths --env-file`); empty when it runs a targets file or its settings are invalid.
unit_token_file() { # UNIT
  unit_files "$1"
  [[ -z $u_targets ]] || return 0
  [[ -f $u_env ]] || { echo "$u_default"; return; }
  bin_as_unit "$u_key" GITHUB_TOKEN_FILE="$u_default" GITHUB_APP_PRIVATE_KEY_FILE="$u_key" -- \
    check --paths --env-file "$u_env" 2>/dev/null | awk -F'\t' '$2 == "output" { print $3; exit }' || true
}

generation_of() { # FILE: the token file's generation, empty when there is none
  [[ -f $1 && ! -L $1 ]] || return 0
  sed -n 's/.*"generation"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$1" 2>/dev/null | head -n1
}

# A restarted daemon says READY as soon as it adopts the still-valid file; a single-target
# daemon then mints at once. Wait (bounded) for that mint: the file's generation moves.
prove_timeout=${SETUP_PROVE_TIMEOUT:-120}
[[ $prove_timeout =~ ^[0-9]+$ ]] || die "SETUP_PROVE_TIMEOUT='$prove_timeout' is not a number of seconds" 2
minted_since() { # UNIT FILE GENERATION_BEFORE
  local deadline=$((SECONDS + prove_timeout)) g
  while :; do
    g=$(generation_of "$2")
    [[ -n $g ]] && { [[ -z $3 ]] || ((g > $3)); } && return 0
    ((SECONDS < deadline)) || return 1
    systemctl --user is-active --quiet "$1" || return 1
    sleep 1
  done
}

# Restart the given units (each waits for READY, as Type=notify makes it) and make each prove
# it mints; on the first that fails, put back everything this run changed and restart them
# all with the previous version.
restart_or_roll_back() {
  local u failed="" file before invocation=""
  for u in "$@"; do
    file=$(unit_token_file "$u")
    before=""
    [[ -z $file ]] || before=$(generation_of "$file")
    say "restarting $u (waits for READY)"
    act systemctl --user reset-failed "$u" 2>/dev/null || true
    if ! act systemctl --user restart "$u"; then
      failed=$u
      warn "$u did not reach READY"
      break
    fi
    ((dry_run)) && continue
    invocation=$(systemctl --user show -p InvocationID --value "$u")
    if [[ -n $file ]]; then
      say "$u: waiting up to ${prove_timeout}s for the new daemon to write a token (generation ${before:-none} before)"
      if ! minted_since "$u" "$file" "$before"; then
        failed=$u
        warn "$u started but wrote no new token to $file within ${prove_timeout}s"
        break
      fi
      say "$u: minted (generation $(generation_of "$file")); $(systemctl --user show -p StatusText --value "$u")"
    else
      say "$u: $(systemctl --user show -p StatusText --value "$u") (targets file: 'check' minted for every target before the swap)"
    fi
  done
  if [[ -z $failed ]]; then
    return 0
  fi

  warn "the failing daemon's journal:"
  if [[ -n $invocation ]]; then
    journalctl --user -u "$failed" "_SYSTEMD_INVOCATION_ID=$invocation" -n 30 --no-pager -o short-monotonic >&2 || true
  else
    journalctl --user -u "$failed" -n 30 --no-pager -o short-monotonic >&2 || true
  fi
  warn "rolling back"
  undo_all
  say "rolled back: binary, units, drop-ins, key and targets file are the previous ones again"
  systemctl --user daemon-reload
  local bad=0
  for u in "$@"; do
    systemctl --user reset-failed "$u" 2>/dev/null || true
    if systemctl --user restart "$u"; then
      say "$u: running the previous version"
    else
      warn "$u does not start with the previous version either; see: journalctl --user -u $u"
      bad=1
    fi
  done
  ((bad)) && die "update failed and the rollback did not bring everything back"
  die "update failed; rolled back to the previous version, which is running"
}

# --- configuration --------------------------------------------------------------------------
ask() { # VAR PROMPT: fill VAR from the terminal when it is empty
  local -n ref=$1
  [[ -n $ref ]] && return
  [[ -t 0 ]] || return 0
  read -r -p "$2: " ref
}

check_value() { # NAME VALUE: values go unquoted into a systemd EnvironmentFile
  [[ $2 =~ ^[A-Za-z0-9_.,:/@+=-]*$ ]] ||
    die "--$1 '$2' contains a character setup.sh will not write into an environment file (space, quote, \$, backslash...); edit $env_file by hand"
}

# The App key: --private-key-file, or the one installed before.
collect_key() {
  if [[ -z $key_file && ! -f $key_dest ]]; then
    ask key_file "Path to the App's private key (.pem)"
    [[ -n $key_file ]] || die "missing --private-key-file (no key at $key_dest yet, and no terminal to ask on)" 2
  fi
  if [[ -n $key_file ]]; then
    key_file=${key_file/#\~/$HOME}
    [[ -f $key_file && -r $key_file ]] || die "cannot read the key file '$key_file'"
    grep -q 'PRIVATE KEY-----' "$key_file" || die "'$key_file' does not look like a PEM private key"
  fi
}

# Validate the settings (asking for missing ones on a terminal) before anything is written.
env_lines=()
env_written=0
collect_settings() {
  collect_key

  # the environment file
  if [[ -f $env_file ]]; then
    local given="$app_id$installation_id$owner$repo$repositories$permissions$api_url$output"
    [[ -z $given ]] || warn "$env_file exists, so the settings given on the command line are ignored; edit it and run: systemctl --user restart ${unit%.service}"
    return
  fi
  ask app_id "GitHub App ID (the App's settings page, 'App ID')"
  [[ -n $app_id ]] || die "missing --app-id (and no terminal to ask on)" 2
  if [[ -z $installation_id && -z $owner && -z $repo && -t 0 ]]; then
    local sel=""
    read -r -p "Installation: its numeric id, the account it is installed on (org or user), or OWNER/REPO: " sel
    if [[ $sel =~ ^[0-9]+$ ]]; then installation_id=$sel
    elif [[ $sel == */* ]]; then repo=$sel
    else owner=$sel
    fi
  fi
  [[ -n $installation_id$owner$repo ]] || die "missing one of --installation-id, --owner, --repo (and no terminal to ask on)" 2
  if [[ -n $output ]]; then
    output=${output/#\~/$HOME}
    [[ $output == /* ]] || output=$PWD/$output
    [[ $(dirname "$output") == "$(dirname "$default_output")" ]] || refuse_output_dir "$output" "--output"
  fi

  local pair key value
  for pair in GITHUB_APP_ID:app-id:"$app_id" GITHUB_APP_INSTALLATION_ID:installation-id:"$installation_id" \
    GITHUB_APP_OWNER:owner:"$owner" GITHUB_APP_REPO:repo:"$repo" \
    GITHUB_TOKEN_REPOSITORIES:repositories:"$repositories" GITHUB_TOKEN_PERMISSIONS:permissions:"$permissions" \
    GITHUB_API_URL:api-url:"$api_url" GITHUB_TOKEN_FILE:output:"$output"; do
    key=${pair%%:*}
    pair=${pair#*:}
    value=${pair#*:}
    [[ -n $value ]] || continue
    check_value "${pair%%:*}" "$value"
    env_lines+=("$key=$value")
  done
}

write_env_file() {
  if [[ -f $env_file ]]; then
    say "configuration: $env_file exists; left as it is"
    return
  fi
  if ((dry_run)); then
    say "would write $env_file (0600):"
    printf '    %s\n' "${env_lines[@]}"
    return
  fi
  make_dir "$conf_dir" 0700
  save_before "$env_file"
  local tmp
  tmp=$conf_dir/.$(basename "$env_file").tmp.$$
  {
    echo "# github-token-refresher configuration for $unit, written by setup.sh on $(date -u +%F)."
    echo "# Every setting is also a command-line flag; see: $name --help"
    echo "# The App key is not named here: systemd hands $key_dest to the"
    echo "# service as a credential. systemd reads this file and the key when the service"
    echo "# starts, so after editing either: systemctl --user restart ${unit%.service}"
    printf '%s\n' "${env_lines[@]}"
  } >"$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$env_file"
  env_written=1
  say "configuration: wrote $env_file (0600)"
}

install_key() {
  if [[ -z $key_file ]]; then
    say "key: $key_dest in place"
  elif [[ -f $key_dest ]] && [[ $(realpath "$key_file") == "$(realpath "$key_dest")" ]]; then
    ((dry_run)) || chmod 0600 "$key_dest"
    say "key: $key_dest in place"
  elif [[ -f $key_dest ]] && [[ $(sha "$key_file") == "$(sha "$key_dest")" ]]; then
    say "key: $key_dest already holds this key"
  else
    if [[ -f $key_dest ]]; then
      say "key: replacing $key_dest"
      config_changed_units+=("$unit") # systemd hands the key over at start
    else
      say "key: copying to $key_dest (0600)"
    fi
    make_dir "$conf_dir" 0700
    put_file "$key_file" "$key_dest" 0600
  fi
}

# The token file the unit will write: as its environment file says, else --output or the default.
token_file() {
  if [[ -f $env_file ]]; then
    unit_token_file "$unit"
  else
    echo "${output:-$default_output}"
  fi
}

# Why DIR must not be the token file's directory (the service gets write access to it, and a
# container gets all of it to read), or nothing when it may. Symlinks are resolved first.
output_dir_problem() { # DIR TOKEN_FILE_NAME
  local d h p entry others=()
  d=$(realpath -m -- "$1")
  h=$(realpath -m -- "$HOME")
  case $d in
    / | /tmp | /var/tmp | /dev/shm | /home | /root | /run | /run/user) echo "'$d' is a system-wide directory"; return ;;
  esac
  [[ $d == "$h" ]] && { echo "'$d' is your home directory"; return; }
  [[ $h == "$d"/* ]] && { echo "'$d' holds your home directory"; return; }
  [[ $d == "$(realpath -m -- "$runtime_dir")" ]] && { echo "'$d' is your runtime directory (it holds your session's sockets)"; return; }
  for p in "$h/.ssh" "$h/.gnupg" "$h/.config" "$bin_dir" "$conf_dir" "$unit_dir"; do
    p=$(realpath -m -- "$p")
    [[ $p == "$d"/* ]] && { echo "'$d' holds $p"; return; }
  done
  for p in "$h/.ssh" "$h/.gnupg" "$bin_dir" "$conf_dir" "$unit_dir"; do
    p=$(realpath -m -- "$p")
    [[ $d == "$p" || $d == "$p"/* ]] && { echo "'$d' is in $p"; return; }
  done
  if [[ -d $d ]]; then
    for entry in "$d"/* "$d"/.[!.]* "$d"/..?*; do
      [[ -e $entry || -L $entry ]] || continue
      entry=${entry##*/}
      [[ $entry == "$2" || $entry == ".$2".tmp-* || $entry == .check-* ]] || others+=("$entry")
    done
    ((${#others[@]} == 0)) || { echo "'$d' already holds other files (${others[*]:0:3})"; return; }
  fi
}

refuse_output_dir() { # TOKEN_FILE WHERE: die naming the problem and the way out
  local why
  why=$(output_dir_problem "$(dirname "$1")" "$(basename "$1")")
  [[ -z $why ]] || die "$2 '$1': $why; the service would get write access to all of it. Give the token a directory of its own (e.g. ~/github-token/token.json)" 78
}

# An output outside the unit's RuntimeDirectory= must be made writable inside its sandbox.
write_output_dropin() {
  local file dir
  file=$(token_file)
  [[ -n $file ]] || die "the settings in $env_file are not valid; see: $bin check --env-file $env_file" 78
  dir=$(dirname "$file")
  if [[ $dir == "$(dirname "$default_output")" ]]; then
    [[ -f $dropin ]] && remove_saved "$dropin" && say "removed $dropin (output is back in the default place)"
    return 0
  fi
  [[ $dir == /* ]] || die "--output must be an absolute path"
  [[ $dir =~ ^[A-Za-z0-9_./@-]+$ ]] || die "output directory '$dir' has characters the unit file cannot take unquoted"
  if [[ -f $env_file ]]; then
    refuse_output_dir "$file" "GITHUB_TOKEN_FILE in $env_file"
  else
    refuse_output_dir "$file" "--output"
  fi
  dir=$(realpath -m -- "$dir")
  local want
  want=$(printf '# Written by setup.sh: the token file is %s, outside the unit'"'"'s RuntimeDirectory=.\n[Service]\nBindPaths=%s\n' "$file" "$dir")
  if [[ -f $dropin && $(cat "$dropin") == "$want" ]]; then
    say "drop-in $dropin: unchanged"
    return
  fi
  if ((dry_run)); then
    say "would create $dir (0700) and write $dropin granting the service write access to it"
    return
  fi
  [[ -d $dir ]] || make_dir "$dir" 0700
  make_dir "$dropin_dir" ""
  save_before "$dropin"
  printf '%s\n' "$want" >"$dropin.tmp.$$"
  chmod 0644 "$dropin.tmp.$$"
  mv -f "$dropin.tmp.$$" "$dropin"
  say "drop-in $dropin: the service may write $dir"
  config_changed_units+=("$unit")
}

# --- a targets file (--config) ----------------------------------------------------------------
# The service sees none of the home directory and may write only its RuntimeDirectory=, so a
# target must take the App key from the credential (no private_key_file) or from the targets
# directory, which the drop-in binds in read-only, and must write below
# $XDG_RUNTIME_DIR/github-token-refresher/. Everything else in the file is `check`'s business.
tokens_root=$runtime_dir/$name

# Refuse a targets file whose outputs, sockets or keys lie where the service cannot reach.
# The binary reads the file and names each target's paths (`check --paths`, one
# TARGET<TAB>KIND<TAB>PATH line each); a target without a key of its own gets the credential.
check_targets_paths() { # FILE
  local file=$1 key=${key_file:-$key_dest} out rc=0 t kind path real problems=() root keys p
  root=$(realpath -m -- "$tokens_root")
  keys=$(realpath -m -- "$targets_dir")
  out=$(bin_as_unit "$key" -- check --paths --config "$file" 2>&1) || rc=$?
  ((rc == 0)) || { printf '%s\n' "$out" >&2; die "$file: not a valid targets file (exit $rc, see above)" "$rc"; }
  while IFS=$'\t' read -r t kind path; do
    real=$(realpath -m -- "$path")
    case $kind in
      output | socket)
        if [[ $real != "$root"/* ]]; then
          problems+=("target '$t': $kind '$path' is outside $tokens_root/, the only directory the service may write; leave it out (default output: $tokens_root/<name>/token.json)")
        elif [[ $(dirname "$real") == "$root" ]]; then
          warn "target '$t': $kind '$path' sits directly in $tokens_root; a container given its directory would see every target's token. Prefer $tokens_root/<name>/ (the default)"
        fi ;;
      key)
        [[ $path == "$cred_dir/github-app.pem" || $real == "$keys"/* ]] ||
          problems+=("target '$t': private_key_file '$path' is hidden from the service; leave it out to use the key given with --private-key-file (a systemd credential), or put a second App's key in $targets_dir/ (0600) and name it there") ;;
    esac
  done <<<"$out"
  ((${#problems[@]} == 0)) && return
  for p in "${problems[@]}"; do
    printf 'setup: error: %s: %s\n' "$file" "$p" >&2
  done
  [[ $mode == install ]] || die "$file: ${#problems[@]} path(s) the sandboxed service cannot use (see above)"
  die "$file: ${#problems[@]} path(s) the sandboxed service could not use (see above); nothing was installed"
}

collect_config() {
  config_src=${config_src/#\~/$HOME}
  [[ -f $config_src && -r $config_src ]] || die "cannot read the targets file '$config_src'"
  config_src=$(realpath "$config_src")
  collect_key
}

# Copy the (checked) targets file into place; a running service re-reads it on reload.
targets_changed=0
install_targets_file() {
  if [[ $config_src == "$(realpath -m "$targets_dest")" ]]; then
    say "targets: $targets_dest in place"
    targets_changed=1 # edited where it is: the service may not have read it yet
    return
  fi
  if [[ -f $targets_dest ]] && [[ $(sha "$targets_dest") == "$(sha "$config_src")" ]]; then
    say "targets: $targets_dest unchanged"
    return
  fi
  if [[ -f $targets_dest ]]; then
    say "targets: replacing $targets_dest with $config_src"
  else
    say "targets: copying $config_src to $targets_dest (0600)"
  fi
  make_dir "$conf_dir" 0700
  make_dir "$targets_dir" 0700
  put_file "$config_src" "$targets_dest" 0600
  targets_changed=1
}

# The drop-in that switches the unit to the targets file; a single-target --output drop-in
# has nothing left to do.
write_config_dropin() {
  put_dropin "$unit" config-file.conf "$config_conf"
  if [[ -f $dropin ]]; then
    remove_saved "$dropin"
    say "removed $dropin (the targets write below $tokens_root)"
    config_changed_units+=("$unit")
  fi
}

# The single-target variables the drop-in unsets, space-separated.
single_target_vars() {
  sed -n 's/^UnsetEnvironment=//p' "$script_dir/systemd/config-file.conf" | tr '\n' ' '
}

# The units sandbox the service inside a user namespace. Where this user manager cannot make
# one (Ubuntu >= 24.04's AppArmor default, user namespaces switched off), the service would
# not start; install a drop-in that turns the namespace-bound options off instead.
# SETUP_USER_NAMESPACE=yes|no skips the probe.
userns_works() {
  case ${SETUP_USER_NAMESPACE:-auto} in
    yes) return 0 ;;
    no) return 1 ;;
  esac
  if ((dry_run)); then
    say "would probe whether this user manager can give services a user namespace (a drop-in turns the namespace-bound options off if not)"
    return 0
  fi
  systemd-run --user --wait --quiet --collect --unit="$name-setup-userns-$$" \
    -p PrivateUsers=yes -p ProtectSystem=strict -p TemporaryFileSystem=/home:ro \
    -p CapabilityBoundingSet= /bin/true </dev/null >/dev/null 2>&1
}

# put_dropin UNIT SRC NAME: install systemd/SRC for UNIT as NAME unless it is there
put_dropin() {
  local u=$1 src=$script_dir/systemd/$2 dest=$unit_dir/$1.d/$3
  if [[ -f $dest ]] && [[ $(sha "$dest") == "$(sha "$src")" ]]; then
    say "drop-in $dest: unchanged"
    return
  fi
  if [[ -f $dest ]]; then
    say "drop-in $dest: updated"
  else
    say "drop-in $dest: installed"
  fi
  put_file "$src" "$dest" 0644
  config_changed_units+=("$u")
}

write_userns_dropin() {
  if userns_works; then
    if [[ -f $dropin_dir/$userns_conf ]]; then
      remove_saved "$dropin_dir/$userns_conf"
      say "removed $dropin_dir/$userns_conf: user namespaces work here now, full sandboxing is back"
      config_changed_units+=("$unit")
    fi
    return 0
  fi
  warn "this user manager cannot give services a user namespace (on Ubuntu: AppArmor's"
  warn "kernel.apparmor_restrict_unprivileged_userns=1), so the unit's file-system sandboxing"
  warn "cannot work here; installing a drop-in that keeps only the seccomp-based hardening"
  warn "(see systemd/no-user-namespace.conf and the README's troubleshooting section)"
  put_dropin "$unit" no-user-namespace.conf "$userns_conf"
}

# `check`, run by the user manager as BINARY with exactly UNIT's environment and key, so it
# sees what the service will see; TARGETS_FILE: a targets file to check instead of the one the
# unit runs. Prints check's lines, indented; returns its exit status.
unit_check() { # BINARY UNIT [TARGETS_FILE]
  local props=() targets rc=0
  unit_files "$2"
  targets=${3:-$u_targets}
  if [[ -n $targets ]]; then # none of the single-target variables: they conflict with --config
    props=(-p UnsetEnvironment="$(single_target_vars)" -p Environment="GITHUB_TOKEN_REFRESHER_CONFIG=$targets")
  else
    props=(-p EnvironmentFile="-$u_env" -p Environment="GITHUB_TOKEN_FILE=$u_default")
  fi
  systemd-run --user --wait --pipe --quiet --collect --unit="$name-setup-check-$$" \
    "${props[@]}" -p LoadCredential="github-app.pem:$u_key" "$1" check </dev/null 2>&1 |
    sed 's/^/    /' || rc=${PIPESTATUS[0]}
  return "$rc"
}

# The doctor for this unit (TARGETS_FILE: the targets file being installed); on a failure,
# says what was kept and exits with check's status.
run_check() { # [TARGETS_FILE]
  local targets=${1:-} what=configuration rc=0
  [[ -z $targets ]] || what="targets"
  if ((dry_run)); then
    validate_offline "$targets"
    say "would run: $name check${targets:+ --config $targets} (with ${targets:-$env_file} and $key_dest, as the unit does)"
    return
  fi
  say "checking the $what: $name check${targets:+ --config $targets}"
  unit_check "$bin" "$unit" "$targets" || rc=$?
  ((rc != 0)) || return 0
  echo >&2
  if [[ $mode != install ]]; then
    printf 'setup: error: the check failed (exit %s); see the FAIL line above and its hint.\n' "$rc" >&2
  elif [[ -n $targets ]]; then
    printf 'setup: error: the check failed (exit %s); see the FAIL line above and its hint.\n' "$rc" >&2
    printf 'setup: %s is left as it was; fix %s (or the key %s) and run setup.sh again.\n' "$unit" "$targets" "$key_dest" >&2
  elif ((env_written)); then
    rm -f "$env_file"
    printf 'setup: error: the check failed (exit %s); the service is not enabled.\n' "$rc" >&2
    printf 'setup: %s was not kept; run setup.sh again with corrected flags.\n' "$env_file" >&2
  else
    printf 'setup: error: the check failed (exit %s); the service is not enabled.\n' "$rc" >&2
    printf 'setup: fix %s (or the key %s) and run setup.sh again.\n' "$env_file" "$key_dest" >&2
  fi
  exit "$rc"
}

# Before anything is written (and for --dry-run, in place of the doctor): the binary checks
# the settings and the key offline (`check --offline`), with the environment the unit would
# get (its environment file, read by the binary, or the settings given) and the key as its
# credential; no user manager, no network.
validate_offline() { # [TARGETS_FILE]
  local rc=0 vars=() args=(check --offline) who=""
  ((dry_run)) && who="dry run: "
  if [[ -n ${1:-} ]]; then
    vars=("GITHUB_TOKEN_REFRESHER_CONFIG=$1")
  else
    vars=("GITHUB_TOKEN_FILE=$default_output")
    if [[ -f $env_file ]]; then args+=(--env-file "$env_file"); else vars+=("${env_lines[@]}"); fi
  fi
  say "validating the settings: $name check --offline"
  bin_as_unit "${key_file:-$key_dest}" "${vars[@]}" -- "${args[@]}" 2>&1 | sed 's/^/    /' || rc=${PIPESTATUS[0]}
  ((rc == 0)) || die "${who}the settings are not valid (exit $rc, see the FAIL line above)" "$rc"
}

linger_hint() {
  local linger
  linger=$(loginctl show-user "$(id -un)" -p Linger --value 2>/dev/null || true)
  if [[ $linger != yes ]]; then
    echo
    echo "Lingering is off for $(id -un): the service stops when you log out and starts at"
    echo "your next login. To keep it running (and start it at boot):"
    echo "    loginctl enable-linger $(id -un)"
  fi
}

path_hint() {
  case ":$PATH:" in
    *":$bin_dir:"*) ;;
    *) echo; echo "Note: $bin_dir is not on your PATH; the service does not need it, your shell does for '$name status'." ;;
  esac
}

print_summary() {
  local file dir short
  file=$(token_file)
  dir=$(dirname "$file")
  short=${unit%.service}
  cat <<EOF

$unit is $(systemctl --user is-active "$unit" 2>/dev/null || true).
  token file:  $file
  status:      systemctl --user status $short
  logs:        journalctl --user -u $short -f
  token state: $name status${instance:+ --output $file}
  doctor:      $script_dir/setup.sh --check${instance:+ --instance $instance}

Give a container the token by mounting the *directory*, never the file: each refresh
renames a new file into place, and a bind-mounted file keeps pointing at the old one.
    docker run -v $dir:/run/github-token:ro ...      # or: podman run --userns=keep-id -v ...
    then read /run/github-token/$(basename "$file") inside the container.
The directory is 0700 and the file 0600, owned by $(id -un); inside the container read it
as the same uid (podman --userns=keep-id, docker --user $(id -u)).
EOF
  linger_hint
  path_hint
}

print_targets_summary() {
  local short=${unit%.service} state
  state="$name status --config $targets_dest"
  cat <<EOF

$unit is $(systemctl --user is-active "$unit" 2>/dev/null || true), running the targets in
$targets_dest:
$("$bin" status --config "$targets_dest" 2>&1 | sed 's/^/    /')
  status:      systemctl --user status $short
  logs:        journalctl --user -u $short -f
  token state: $state
  change:      edit $targets_dest, then: systemctl --user reload $short
               (or: $script_dir/setup.sh --config FILE, which checks FILE first)
  doctor:      $script_dir/setup.sh --check

Give each container its own target's *directory*, never the file (each refresh renames a new
file into place) and never $tokens_root itself (it holds every target's token):
    docker run -v $tokens_root/NAME:/run/github-token:ro ...      # or: podman run --userns=keep-id -v ...
    then read /run/github-token/token.json inside the container.
The directories are 0700 and the files 0600, owned by $(id -un); inside the container read
them as the same uid (podman --userns=keep-id, docker --user $(id -u)).
EOF
  linger_hint
  path_hint
}

# Before a new binary replaces the installed one, it must mint with the installed
# configuration and key: its `check`, run by the user manager as each running unit would run
# it (its environment file or targets file, its key as the credential).
prove_new_binary() { # RUNNING_UNIT...
  [[ -f $bin && -f $new_bin ]] && [[ $(sha "$bin") == "$(sha "$new_bin")" ]] && return 0
  local u rc
  for u in "$@"; do
    if ((dry_run)); then
      say "would run: $new_bin check (as $u would run it) before replacing $bin"
      continue
    fi
    say "proving the new binary: $new_bin check, with $u's configuration and key"
    rc=0
    unit_check "$new_bin" "$u" || rc=$?
    ((rc == 0)) || die "the new binary cannot mint with $u's configuration (check exit $rc, see above); nothing was changed"
  done
}

# --- shell completions and man pages ------------------------------------------------------------
# Generated by the installed binary, so they match it; removed again by --uninstall. A failure
# only warns: the service does not need them. zsh and fish get theirs when they are installed.
shell_extras() { # install|remove
  local data=${XDG_DATA_HOME:-$HOME/.local/share} sh f
  local bash_f=$data/bash-completion/completions/$name zsh_f=$data/zsh/site-functions/_$name
  local fish_f=${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions/$name.fish man_dir=$data/man/man1
  if [[ $1 == remove ]]; then
    remove "$bash_f" "$zsh_f" "$fish_f" "$man_dir/$name.1" "$man_dir/$name"-*.1
    return
  fi
  if ((dry_run)); then
    say "would install shell completions ($bash_f; zsh, fish if installed) and man pages in $man_dir"
    return
  fi
  for sh in bash zsh fish; do
    f=${sh}_f
    f=${!f}
    [[ $sh == bash ]] || command -v "$sh" >/dev/null || continue
    { mkdir -p "$(dirname "$f")" && "$bin" completions "$sh" >"$f.tmp.$$" && mv -f "$f.tmp.$$" "$f"; } ||
      { rm -f "$f.tmp.$$"; warn "cannot install the $sh completions in $f"; }
  done
  { mkdir -p "$man_dir" && "$bin" manpage --dir "$man_dir"; } || warn "cannot install the man pages in $man_dir"
  f=""
  command -v zsh >/dev/null && f="; zsh: add ${zsh_f%/*} to \$fpath"
  say "shell completions installed ($bash_f$f); man pages: man $name"
}

# --- modes ----------------------------------------------------------------------------------
do_install() {
  user_manager_ok
  ((dry_run)) && say "dry run: nothing will be changed"
  if config_mode && [[ -z $config_src ]]; then
    die "$unit runs the targets in $targets_dest ($config_dropin). Change them with: ./setup.sh --config FILE. Back to a single target: ./setup.sh --uninstall, then ./setup.sh with its flags" 2
  fi
  if config_mode; then
    collect_config
  else
    collect_settings
  fi
  obtain_binary
  # the binary judges the settings before anything is written (a dry run: in run_check)
  if config_mode; then
    check_targets_paths "$config_src"
  elif ((!dry_run)); then
    validate_offline
  fi
  local was_running
  was_running=$(running_units)
  install_binary
  install_units
  install_key
  if config_mode; then
    # check the new file before it replaces the one the service reads
    run_check "$config_src"
    install_targets_file
    write_config_dropin
  else
    write_env_file
    write_output_dropin
  fi
  write_userns_dropin
  if ((${#changed_units[@]} || ${#config_changed_units[@]})); then
    act systemctl --user daemon-reload
  fi
  config_mode || run_check
  # Running units (this one, other instances) that a new binary, unit or drop-in affects
  # pick it up now.
  local restart
  # shellcheck disable=SC2086 # one unit name per word
  restart=$(affected $was_running)
  if [[ -n $restart ]]; then
    # shellcheck disable=SC2086
    restart_or_roll_back $restart
  else
    ((dry_run)) || rm -f "$prev_bin"
  fi
  # A running service that was not restarted re-reads a new targets file on reload: added
  # targets start, changed ones mint, the others keep their tokens and schedules.
  if config_mode && ((targets_changed)) && [[ " ${restart//$'\n'/ } " != *" $unit "* ]] &&
    systemctl --user is-active --quiet "$unit" 2>/dev/null; then
    say "reloading $unit (it re-reads $targets_dest)"
    act systemctl --user reload "$unit"
  fi
  if systemctl --user is-enabled --quiet "$unit" 2>/dev/null && systemctl --user is-active --quiet "$unit"; then
    say "$unit: already enabled and running"
  else
    say "enabling and starting $unit (waits for the first token)"
    act systemctl --user reset-failed "$unit" 2>/dev/null || true
    if ! act systemctl --user enable --now "$unit"; then
      journalctl --user -u "$unit" -n 20 --no-pager >&2 || true
      systemctl --user disable --quiet "$unit" 2>/dev/null || true
      die "$unit did not start; see above, and: systemctl --user status ${unit%.service}"
    fi
  fi
  shell_extras install
  ((dry_run)) && { say "dry run: done, nothing changed"; return; }
  local custom=""
  config_mode || [[ $(dirname "$(token_file)") == "$(dirname "$default_output")" ]] || custom=$(token_file)
  commit_run "$custom"
  if config_mode; then
    print_targets_summary
  else
    print_summary
  fi
}

do_update() {
  user_manager_ok
  [[ -x $bin ]] || die "$name is not installed ($bin is missing); run ./setup.sh first"
  ((dry_run)) && say "dry run: nothing will be changed"
  obtain_binary
  local was_running
  was_running=$(running_units)
  # shellcheck disable=SC2086 # one unit name per word
  prove_new_binary $was_running
  install_binary
  shell_extras install
  install_units
  local d
  for d in "$unit_dir/$name".service.d "$unit_dir/$name"@*.service.d; do
    [[ -f $d/$userns_conf ]] && put_dropin "$(basename "$d" .d)" no-user-namespace.conf "$userns_conf"
  done
  [[ -f $config_dropin ]] && put_dropin "$name.service" config-file.conf "$config_conf"
  if ((!binary_changed && ${#changed_units[@]} == 0 && ${#config_changed_units[@]} == 0)); then
    say "nothing to update: binary, units and drop-ins are the ones installed"
    commit_run
    return
  fi
  if ((${#changed_units[@]} || ${#config_changed_units[@]})); then
    act systemctl --user daemon-reload
  fi
  local restart
  # shellcheck disable=SC2086 # one unit name per word
  restart=$(affected $was_running)
  if [[ -z $restart ]]; then
    say "no $name unit that the update affects is running; nothing restarted"
    commit_run
    return
  fi
  # shellcheck disable=SC2086
  restart_or_roll_back $restart
  commit_run
  say "updated; configuration and key untouched"
}

remove() { # PATH...: remove what exists, say so
  local p
  for p in "$@"; do
    if [[ -e $p || -L $p ]]; then
      act rm -rf -- "$p"
      ((dry_run)) || say "removed $p"
    fi
  done
}

stop_disable() { # UNIT
  local u=$1
  if systemctl --user is-active --quiet "$u" 2>/dev/null || [[ $(systemctl --user show -p ActiveState --value "$u" 2>/dev/null) == activating ]]; then
    act systemctl --user stop "$u"
    ((dry_run)) || say "stopped $u"
  fi
  if systemctl --user is-enabled --quiet "$u" 2>/dev/null; then
    act systemctl --user disable --quiet "$u"
    ((dry_run)) || say "disabled $u"
  fi
  act systemctl --user reset-failed "$u" 2>/dev/null || true
}

# May --purge delete PATH, read from the manifest (a file the user can edit)? A plain absolute
# path; a file only where setup.sh puts files (the binary, our units and drop-ins, the
# configuration directory) or a token file that still looks like one; a directory (removed
# only when empty) below $HOME or the runtime directory, not holding ~/.ssh or the like.
purgeable() { # KIND PATH
  local p=$2 real dir
  [[ $p == /* && $p != *"/../"* && $p != *"/./"* && $p != */.. && $p != */. ]] || return 1
  real=$(realpath -m -- "$p")
  dir=$(dirname "$real")
  case $1 in
    file)
      [[ $real == "$(realpath -m -- "$bin")" || $real == "$(realpath -m -- "$conf_dir")"/* ]] && return 0
      [[ $dir == "$(realpath -m -- "$unit_dir")" && $(basename "$real") == "$name"*.service ]] && return 0
      [[ $(basename "$dir") == "$name"*.service.d && $(dirname "$dir") == "$(realpath -m -- "$unit_dir")" ]]
      ;;
    token)
      [[ -z $(output_dir_problem "$dir" "$(basename "$real")") ]] || return 1
      [[ ! -f $real ]] || { [[ $(stat -c %s -- "$real") -lt 65536 ]] && grep -q '"expires_at"' -- "$real" && grep -q '"token"' -- "$real"; }
      ;;
    dir)
      [[ $real == "$(realpath -m -- "$HOME")"/* || $real == "$(realpath -m -- "$runtime_dir")"/* ]] || return 1
      local h
      h=$(realpath -m -- "$HOME")
      for p in "$h/.ssh" "$h/.gnupg"; do
        [[ $real == "$p" || $real == "$p"/* ]] && return 1
      done
      return 0
      ;;
    *) return 1 ;;
  esac
}

# Remove what the manifest says setup.sh created for UNIT ("*": for every unit): regular
# files (never a symlink or anything else), token files, and directories once empty.
purge_manifest() { # UNIT|*
  [[ -f $manifest && ! -L $manifest ]] || return 0
  local tag kind path lines=() keep=() i
  mapfile -t lines <"$manifest"
  [[ $1 != "*" ]] || ((dry_run)) || rm -f "$manifest"
  for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
    read -r tag kind path <<<"${lines[i]}"
    if [[ $1 != "*" && $tag != "$1" ]]; then
      keep=("${lines[i]}" "${keep[@]}")
      continue
    fi
    if ! purgeable "$kind" "$path"; then
      warn "not removing '$path' (listed in $manifest, but not a place setup.sh creates things)"
      continue
    fi
    case $kind in
      file | token)
        if [[ -f $path && ! -L $path ]]; then
          act rm -f -- "$path"
          ((dry_run)) || say "removed $path"
        elif [[ -e $path || -L $path ]]; then
          warn "not removing '$path': no longer a regular file"
        fi
        if [[ $kind == token ]]; then # the daemon's temp files beside it
          local t
          for t in "$(dirname "$path")/.$(basename "$path").tmp-"*; do
            [[ -f $t && ! -L $t ]] && act rm -f -- "$t"
          done
        fi
        ;;
      dir)
        if [[ -d $path && ! -L $path ]]; then
          if ((dry_run)); then
            say "would remove the directory $path if empty"
          elif rmdir -- "$path" 2>/dev/null; then
            say "removed $path"
          else
            say "kept $path: it holds files setup.sh did not create"
          fi
        fi
        ;;
    esac
  done
  if ((!dry_run)) && [[ $1 != "*" ]]; then
    if ((${#keep[@]})); then
      printf '%s\n' "${keep[@]}" >"$manifest.tmp.$$" && mv -f "$manifest.tmp.$$" "$manifest"
    else
      rm -f "$manifest"
    fi
  fi
}

# Configuration, key and token directory of one unit: the fixed names setup.sh uses (regular
# files only), the token directory systemd made for it, and the manifest's entries. A
# GITHUB_TOKEN_FILE that the manifest does not list is left alone: the env file is
# hand-editable, so it may name anything.
purge_unit() { # UNIT
  local u=$1 env key dir custom="" p
  [[ ! -x $bin ]] || custom=$(unit_token_file "$u")
  unit_files "$u"
  env=$u_env key=$u_key dir=$(dirname "$u_default")
  if [[ -n $custom && $(dirname "$custom") != "$dir" ]] && ! grep -qxF "$u token $custom" "$manifest" 2>/dev/null; then
    warn "not removing $custom (GITHUB_TOKEN_FILE in $env, which setup.sh did not set up); remove it yourself if it is yours"
  fi
  for p in "$env" "$key"; do
    if [[ -f $p && ! -L $p ]]; then
      act rm -f -- "$p"
      ((dry_run)) || say "removed $p"
    fi
  done
  [[ -d $dir && ! -L $dir ]] && remove "$dir"
  purge_manifest "$u"
}

do_uninstall() {
  user_manager_ok
  ((dry_run)) && say "dry run: nothing will be changed"
  local units u d inst changed=0
  if [[ -n $instance ]]; then
    units=$unit
  else
    units=$(our_units)
    grep -qx "$name.service" <<<"$units" || units=$(printf '%s\n%s' "$name.service" "$units")
  fi
  local dirs=()
  for u in $units; do
    stop_disable "$u"
    dirs+=("$unit_dir/$u.d")
  done
  # drop-in directories of instances systemd no longer lists
  [[ -n $instance ]] || dirs+=("$unit_dir/$name"@*.service.d)
  for d in "${dirs[@]}"; do
    [[ -d $d ]] || continue
    remove "$d/setup-output.conf" "$d/$userns_conf" "$d/$config_conf"
    ((dry_run)) || rmdir "$d" 2>/dev/null || true
    changed=1
  done
  if [[ -z $instance ]]; then
    for u in "$name.service" "$name@.service"; do
      [[ -f $unit_dir/$u ]] && changed=1
      remove "$unit_dir/$u"
    done
    shell_extras remove
  fi
  if ((changed)); then
    act systemctl --user daemon-reload
  fi
  if ((purge)); then
    if [[ -n $instance ]]; then
      purge_unit "$unit"
    else
      for u in $units; do
        [[ $u == *@* ]] && purge_unit "$u"
      done
      purge_unit "$name.service"
      # instances that systemd no longer knows about but left files behind
      for inst in "$runtime_dir/$name"@*; do
        [[ -d $inst && ! -L $inst ]] && remove "$inst"
      done
      local t
      [[ -f $targets_dest && ! -L $targets_dest ]] && remove "$targets_dest"
      purge_manifest "*"
      for t in "$targets_dir" "$conf_dir"; do
        if [[ -d $t && ! -L $t ]] && ((!dry_run)); then
          rmdir -- "$t" 2>/dev/null || say "kept $t: it holds files setup.sh did not create"
        fi
      done
    fi
  else
    say "kept configuration in $conf_dir and the token directory (add --purge to remove them)"
  fi
  # last: purging asks the binary where each unit's token file is
  [[ -n $instance ]] || remove "$bin" "$prev_bin"
  ((dry_run)) && { say "dry run: done, nothing changed"; return; }
  say "uninstalled${instance:+ instance $instance}"
}

do_check() {
  user_manager_ok
  [[ -x $bin ]] || die "$name is not installed ($bin is missing); run ./setup.sh first"
  if config_mode; then
    [[ -f $targets_dest ]] || die "$config_dropin is installed but $targets_dest is missing; run ./setup.sh --config FILE"
    check_targets_paths "$targets_dest"
    run_check "$targets_dest"
    return
  fi
  [[ -f $env_file ]] || warn "$env_file does not exist"
  run_check
}

case $mode in
  install) do_install ;;
  check) do_check ;;
  update) do_update ;;
  uninstall) do_uninstall ;;
esac
