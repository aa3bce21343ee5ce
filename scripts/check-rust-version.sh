#!/usr/bin/env bash
# Is the declared minimum Rust true? The machine has one (newer) toolchain, so instead of
# building with the old one this checks that no locked dependency declares a newer
# `rust-version` than Cargo.toml does, that every workspace member declares the same one, and
# that README.md states it.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
cargo metadata --format-version 1 --locked --filter-platform "$host" | python3 -c '
import json, sys

def key(v):
    return tuple(int(x) for x in (v.split(".") + ["0", "0"])[:3])

meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
used = {node["id"] for node in meta["resolve"]["nodes"]}
pkgs = [p for p in meta["packages"] if p["id"] in used]
ours = {p["name"]: p.get("rust_version") for p in pkgs if p["id"] in members}
declared = ours.get("github-token-refresher")
problems = []
if not declared:
    problems.append("Cargo.toml declares no rust-version")
for name, v in sorted(ours.items()):
    if v != declared:
        problems.append(f"workspace member {name} declares rust-version {v}, not {declared}")
newer = sorted(
    (p["rust_version"], p["name"], p["version"])
    for p in pkgs
    if p["id"] not in members and p.get("rust_version") and declared
    and key(p["rust_version"]) > key(declared)
)
for v, name, version in newer:
    problems.append(f"{name} {version} needs Rust {v}, newer than rust-version {declared}")
readme = open("README.md", encoding="utf-8").read()
if declared and f"Rust {declared} or newer" not in readme:
    problems.append(f"README.md does not say \"Rust {declared} or newer\"")
if problems:
    for p in problems:
        print(f"rust-version: {p}", file=sys.stderr)
    print("rust-version: raise rust-version in Cargo.toml (all members) and README.md, or "
          "pin the dependency lower in Cargo.lock", file=sys.stderr)
    sys.exit(1)
highest = max((key(p["rust_version"]), p["rust_version"]) for p in pkgs
              if p["id"] not in members and p.get("rust_version"))
print(f"rust-version: {declared} is true: {len(pkgs)} locked packages, the newest "
      f"requirement is {highest[1]}")
'
