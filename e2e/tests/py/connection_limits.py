"""Per-address connection limits and idle expiry, seen from raw sockets.

The broker runs with max.connections.per.ip.overrides=127.0.0.2:2 and
connections.max.idle.ms=IDLE_MS. Connections from 127.0.0.2: the first two are served
(ApiVersions v0), the third is closed by the broker. A connection from 127.0.0.1 is still
served. Then one connection sends nothing: how long until the broker closes it.

usage: connection_limits.py BOOTSTRAP IDLE_MS
Prints one JSON line.
"""

import json
import socket
import struct
import sys
import time

API_VERSIONS_V0 = struct.pack(">ihhih", 10, 18, 0, 1, -1)


def connect(host, port, source):
    return socket.create_connection((host, port), timeout=10, source_address=(source, 0))


def served(s):
    try:
        s.sendall(API_VERSIONS_V0)
        size = s.recv(4)
        return len(size) == 4
    except OSError:
        return False


def closed_by_broker(s, within):
    """True if the broker closes `s` within `within` seconds (EOF or reset)."""
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def main():
    bootstrap, idle_ms = sys.argv[1], int(sys.argv[2])
    host, port = bootstrap.rsplit(":", 1)
    port = int(port)
    out = {}
    a = connect(host, port, "127.0.0.2")
    b = connect(host, port, "127.0.0.2")
    out["first_two_served"] = served(a) and served(b)
    c = connect(host, port, "127.0.0.2")
    out["third_closed"] = closed_by_broker(c, 10)
    d = connect(host, port, "127.0.0.1")
    out["other_address_served"] = served(d)
    for s in (a, b, c, d):
        s.close()

    idle = connect(host, port, "127.0.0.1")
    start = time.monotonic()
    out["idle_closed"] = closed_by_broker(idle, idle_ms / 1000 * 3 + 30)
    out["idle_closed_after_ms"] = int((time.monotonic() - start) * 1000)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
