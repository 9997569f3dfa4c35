#!/usr/bin/env python3
"""idlereset lab gRPC server: a real grpcio server in the `db` namespace for `verify`'s grpcio runs.

usage: grpc_server.py HOST PORT MIN_PING_MS

One unary method, /idlereset.Echo/Peer, served through a generic handler (no protoc, no
generated code): it answers with the caller's address as the server sees it (`ipv4:IP:PORT`),
which tells the driver its connection's local port. Requests and replies are raw bytes.

Server side as `plan` asks it to be for clients that ping (its `server:` settings): pings are
permitted without calls and down to MIN_PING_MS, or the server answers them with GOAWAY
too_many_pings. The server sends no keepalive of its own (its default, 2 h, never fires in a
run), so only the client library under test keeps a flow alive.
"""
import sys
from concurrent import futures

import grpc


def peer(request, context):
    return context.peer().encode()


def main():
    host, port, min_ping_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    handler = grpc.method_handlers_generic_handler(
        "idlereset.Echo", {"Peer": grpc.unary_unary_rpc_method_handler(peer)})
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        handlers=[handler],
        options=[
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", min_ping_ms),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
