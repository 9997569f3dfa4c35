#!/usr/bin/env bash
# The client matrix: real client libraries (crates/idlereset-lab/drivers, installed by
# .ci/install-deps) through a conntrack firewall of PATH_S seconds (default 20 s, shorter than
# every measured default keepalive), with their defaults and with `plan`'s settings.
#
# Prints the library table of docs/verify.md (library, version, defaults on the wire, what the
# defaults did on the short path, plan's settings, verified); keeps each real run's application
# log under crates/idlereset-core/tests/fixtures/client-logs/ for `logs`; and prints, from the
# same run, a unified diff of crates/idlereset-core/data/libraries.toml's rows against what the
# real sockets showed, with the `measured` source line for each row.
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
name = "grpcio"
library = "grpcio"
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
python3 - "$work/plan.json" "$work/verify.json" "$fixtures" "$(uname -r)" "$PWD/crates/idlereset-lab/drivers" "$PWD" <<'PY'
import json, re, sys
drivers = sys.argv[5]
plan, ver, fixtures, kernel = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
# Fixtures carry no machine paths: the checkout's path becomes relative to the repository.
checkout = sys.argv[6].rstrip("/") + "/"
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
            log = r["app_log"].replace(drivers, "/srv/idlereset/drivers")
            log = re.sub(r"/\S*?/site-packages", "/usr/local/lib/python3.11/site-packages", log)
            open(f"{fixtures}/{name}-{r['settings']}.log", "w").write(log.replace(checkout, ""))
print(f"\nkernel {kernel}; runs: " + ", ".join(f"{r['client']}/{r['settings']} via {r['via']}" for r in ver["runs"]))
PY
# The data file's rows against this run: for each library that ran for real with its defaults,
# the behaviour row of the version that ran is compared with the socket read back over
# sock_diag (SO_KEEPALIVE, TCP_KEEPIDLE within 2 s) and the outcome on this path; a mismatch
# rewrites the row's field in a copy of the file and the unified diff is printed (review it,
# then `patch -p0` it or edit by hand), with the `measured` source line for the row.
data=crates/idlereset-core/data/libraries.toml
python3 - "$work/verify.json" "$data" "$work/libraries.toml" "$(uname -r)" <<'PY'
import json, re, sys, tomllib
ver, path, out, kernel = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
text = open(path).read()
data = tomllib.loads(text)
def vt(v):
    return tuple(int(x) for x in re.findall(r"\d+", v or "0")) or (0,)
def row(lib, version):
    rows = [b for b in lib["behaviour"]
            if vt(b["from"]) <= vt(version) and ("until" not in b or vt(version) < vt(b["until"]))]
    return max(rows, key=lambda b: vt(b["from"])) if rows else None
lines = text.split("\n")
def block(name, frm):
    """Line range of library `name`'s behaviour row starting at `from = frm`."""
    start = next(i for i, l in enumerate(lines) if l == f'name = "{name}"')
    i = next(j for j in range(start, len(lines)) if lines[j] == f'from = "{frm}"'
             and lines[j - 1] == "[[library.behaviour]]")
    end = next((j for j in range(i, len(lines)) if lines[j].startswith("[[library.behaviour.source]]")), len(lines))
    return i, end
def setfield(rng, key, value):
    i, end = rng
    for j in range(i, end):
        if lines[j].startswith(f"{key} ="):
            lines[j] = f"{key} = {value}"
            return
    lines.insert(i + 1, f"{key} = {value}")
sources = []
t = ver["path_timeout_s"]
for r in ver["runs"]:
    if r["settings"] != "current" or not r["via"].startswith("real:") or not r.get("sockopts"):
        continue
    lib = next((l for l in data["library"] if l["name"] == r["library"]), None)
    v = (r.get("library_version") or "").split(" ")[0]
    b = lib and row(lib, v)
    if not b:
        print(f"{r['library']} {v}: no data row for this version")
        continue
    so = r["sockopts"]
    rng = block(lib["name"], b["from"])
    status = []
    if so["so_keepalive"] is not None and so["so_keepalive"] != b["so_keepalive"]:
        setfield(rng, "so_keepalive", str(so["so_keepalive"]).lower())
        status.append(f"so_keepalive {b['so_keepalive']} -> {so['so_keepalive']}")
    want = b.get("keepidle_s")
    got = so.get("keepidle_s")
    if so["so_keepalive"] and got is not None and (want is None or abs(got - want) > 2):
        setfield(rng, "keepidle_s", f"{round(got):d}")
        status.append(f"keepidle_s {want} -> {round(got)}")
    print(f"{lib['name']} {v} (row from {b['from']}): " + ("; ".join(status) if status else "matches the data file"))
    ka = "SO_KEEPALIVE 1, TCP_KEEPIDLE %.0f s" % got if so["so_keepalive"] and got else \
        ("SO_KEEPALIVE 1" if so["so_keepalive"] else "no SO_KEEPALIVE")
    sources.append(f'  {lib["name"]}: measured = "{lib["name"]} {v}, Linux {kernel}: sock_diag read-back '
                   f'of a connection with the library defaults: {ka}; defaults on a {t:g} s path: {r["outcome"]}'
                   f'{" (hidden by a retry)" if r.get("retried") else ""} (bench/client-matrix.sh {t:g})"')
open(out, "w").write("\n".join(lines))
print("\nsource lines for the rows above:\n" + "\n".join(sources))
PY
diff -u "$data" "$work/libraries.toml" || true
