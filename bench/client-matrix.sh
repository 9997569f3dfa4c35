#!/usr/bin/env bash
# The client matrix: real client libraries (crates/idlereset-lab/drivers, installed by
# .ci/install-deps) through a conntrack firewall of PATH_S seconds (default 20 s, shorter than
# every measured default keepalive), with their defaults and with `plan`'s settings.
#
# Prints the library table of docs/verify.md (library, version, defaults on the wire, what the
# defaults did on the short path, plan's settings, verified) and the measured facts to check
# against the `measured` sources of crates/idlereset-core/data/libraries.toml; keeps each real
# run's application log under crates/idlereset-core/tests/fixtures/client-logs/ for `logs`.
# Needs root (lab namespaces). Usage: bench/client-matrix.sh [PATH_S]
set -euo pipefail
cd "$(dirname "$0")/.."
path_s="${1:-20}"
cargo build -q -p idlereset
bin=target/debug/idlereset
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/matrix.toml" <<TOML
name = "client matrix ${path_s} s"
[[hop]]
name = "fw"
kind = "firewall"
idle_timeout_s = ${path_s}
failure = "reset"
[[client]]
name = "redis-py"
library = "redis-py"
[[client]]
name = "ioredis"
library = "ioredis"
[[client]]
name = "node-pg"
library = "node-pg"
[[client]]
name = "libpq"
library = "libpq"
[[client]]
name = "pgjdbc"
library = "pgjdbc"
[[client]]
name = "hikaricp"
library = "hikaricp"
version = "2.7.9"
[[client]]
name = "lib-pq"
library = "lib-pq"
[[client]]
name = "pgx"
library = "pgx"
version = "4.15.0"
TOML
"$bin" plan --json "$work/matrix.toml" >"$work/plan.json"
"$bin" verify --db postgres --json "$work/matrix.toml" >"$work/verify.json" || true
fixtures=crates/idlereset-core/tests/fixtures/client-logs
mkdir -p "$fixtures"
python3 - "$work/plan.json" "$work/verify.json" "$fixtures" "$(uname -r)" "$PWD" <<'PY'
import json, sys
plan, ver, fixtures, kernel = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
# Fixtures carry no machine paths: the checkout's path becomes relative to the repository.
checkout = sys.argv[5].rstrip("/") + "/"
t = ver["path_timeout_s"]
settings = {c["name"]: c["settings"] for c in plan["clients"]}
print(f"| library | version | defaults on the wire | defaults on a {t:g} s path | plan's settings | verified |")
print("|---|---|---|---|---|---|")
for name in settings:
    runs = {r["settings"]: r for r in ver["runs"] if r["client"] == name}
    cur, pl = runs.get("current"), runs.get("planned")
    m = cur["model"]
    wire = "SO_KEEPALIVE off" if not m["so_keepalive"] else \
        f"idle {m['keepidle_s']:g} s, intvl {m['keepintvl_s']:g} s, cnt {m['keepcnt']}"
    hidden = " (hidden by a retry)" if cur.get("retried") else ""
    what = cur["outcome"] + hidden + (f": `{cur['error']}`" if cur.get("error") else "")
    keys = ", ".join(f"{k}={v}" for k, v in settings[name].items() if not k.startswith(("net.ipv4.", "server:")))
    ok = "yes" if pl["outcome"] == "survived" else "NO"
    print(f"| {name} | {cur.get('library_version') or pl.get('library_version') or '-'} | {wire} | {what} | {keys} | {ok} ({pl['via']}) |")
    for r in runs.values():
        if r.get("app_log"):
            open(f"{fixtures}/{name}-{r['settings']}.log", "w").write(r["app_log"].replace(checkout, ""))
print(f"\nkernel {kernel}; runs: " + ", ".join(f"{r['client']}/{r['settings']} via {r['via']}" for r in ver["runs"]))
PY
