#!/usr/bin/env python3
"""idlereset verify driver: one idle connection of a real Python client library.

usage: driver.py LIBRARY TARGET_JSON IDLE_S SETTINGS_JSON

LIBRARY is `psycopg2` (libpq), `redis` (redis-py) or `grpc` (grpcio, against grpc_server.py). SETTINGS_JSON holds the library's own
keyword arguments ({} = the library's defaults). The driver connects, runs one query, prints
{"event": "connected", ...}, stays idle IDLE_S seconds, runs one more query and prints
{"event": "result", "outcome": "survived" | "error", ...}. The application log (Python logging,
`log.exception` on failure, as applications write it) goes to stderr.
"""
import json
import logging
import sys
import time

logging.basicConfig(
    stream=sys.stderr,
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s %(message)s",
)
log = logging.getLogger("app")


def emit(**kw):
    print(json.dumps(kw), flush=True)


def version(mod):
    return getattr(mod, "__version__", "unknown").split(" ")[0]


def psycopg2_run(target, idle, settings):
    import psycopg2

    conn = psycopg2.connect(target["dsn"], **settings)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("select 'before'")
    cur.fetchone()
    port = conn.info.backend_pid
    emit(event="connected", library="libpq", version=str(psycopg2.__libpq_version__),
         wrapper="psycopg2 " + version(psycopg2), backend_pid=port)
    log.info("connected backend_pid=%s, idle for %.1fs", port, idle)
    time.sleep(idle)
    cur.execute("select 'after'")
    return cur.fetchone()[0] == "after", False


def redis_run(target, idle, settings):
    import redis

    if "socket_keepalive_options" in settings:
        import socket

        names = {"TCP_KEEPIDLE": socket.TCP_KEEPIDLE, "TCP_KEEPINTVL": socket.TCP_KEEPINTVL,
                 "TCP_KEEPCNT": socket.TCP_KEEPCNT}
        settings["socket_keepalive_options"] = {
            names[k]: v for k, v in settings["socket_keepalive_options"].items()}
    r = redis.Redis(host=target["host"], port=target["port"], socket_connect_timeout=5,
                    socket_timeout=5, **settings)
    r.ping()
    conn = r.connection_pool._available_connections[0]
    local = conn._sock.getsockname()[1]
    emit(event="connected", library="redis-py", version=version(redis), local_port=local)
    log.info("connected conn=%s, idle for %.1fs", local, idle)
    time.sleep(idle)
    ok = r.ping()
    # redis-py retries on a new connection: a different socket answering means a reset was hidden.
    now = r.connection_pool._available_connections[0]._sock.getsockname()[1]
    if now != local:
        log.warning("conn=%s was replaced by conn=%s after %.1fs idle (retried)", local, now, idle)
    return bool(ok), now != local


def grpc_run(target, idle, settings):
    import grpc

    # Channel arguments exactly as an application passes them ({} = grpcio's defaults).
    channel = grpc.insecure_channel(f"{target['host']}:{target['port']}",
                                    options=list(settings.items()))
    call = channel.unary_unary("/idlereset.Echo/Peer")
    peer = call(b"before", timeout=5).decode()
    local = int(peer.rsplit(":", 1)[1])
    emit(event="connected", library="grpcio", version=grpc.__version__, local_port=local)
    log.info("connected peer=%s, idle for %.1fs", peer, idle)
    time.sleep(idle)
    now = int(call(b"after", timeout=5).decode().rsplit(":", 1)[1])
    # C-core reconnects a channel whose transport died while idle: a different local port
    # answering means the connection was lost and replaced before the call.
    if now != local:
        log.warning("channel reconnected: conn=%s replaced by conn=%s after %.1fs idle", local, now, idle)
    return True, now != local


def main():
    lib, target, idle, settings = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
    run = {"psycopg2": psycopg2_run, "redis": redis_run, "grpc": grpc_run}[lib]
    try:
        ok, retried = run(target, idle, settings)
        emit(event="result", outcome="survived" if ok else "error", retried=retried, error=None)
    except Exception as e:  # the application's view: whatever the library raised
        log.exception("query failed after %.1fs idle", idle)
        if callable(getattr(e, "code", None)) and callable(getattr(e, "details", None)):
            text = f"{e.code()}: {e.details()}"  # grpc.RpcError: status and details
        else:
            text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        emit(event="result", outcome="error", retried=False, error=text)


if __name__ == "__main__":
    main()
