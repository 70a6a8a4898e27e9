"""Holds IDLE idle connections and STALLED connections that each declare a 100 MB request
and send only its first bytes, then checks that a normal client is still served and reads
the broker's memory.

usage: connection_flood.py BOOTSTRAP BROKER_PID IDLE STALLED

Prints one JSON line: connections opened, whether any was closed by the broker before the
normal client finished, the normal client's round trip, and the broker's VmRSS / VmHWM in
KiB (from /proc/BROKER_PID/status) with all connections open.
"""

import json
import socket
import struct
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer


def rss(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def main():
    bootstrap, pid, idle, stalled = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    host, port = bootstrap.rsplit(":", 1)
    conns = []
    for _ in range(idle):
        conns.append(socket.create_connection((host, int(port)), timeout=30))
    for _ in range(stalled):
        s = socket.create_connection((host, int(port)), timeout=30)
        # ApiVersions header start of a request declared to be 100 MB long.
        s.sendall(struct.pack(">i", 100_000_000) + struct.pack(">hhi", 18, 3, 1) + b"x" * 64)
        conns.append(s)
    before = rss(pid)

    topic = "flood-" + uuid.uuid4().hex[:8]
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 30000})
    values = [f"v{i}" for i in range(10)]
    for v in values:
        p.produce(topic, value=v.encode())
    undelivered = p.flush(30)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "flood-" + topic,
        "auto.offset.reset": "earliest",
    })
    c.subscribe([topic])
    got = []
    deadline = time.time() + 60
    while len(got) < len(values) and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            got.append(m.value().decode())
    c.close()
    during = rss(pid)

    # A connection the broker closed reads EOF at once; open ones time out.
    closed = 0
    for s in conns:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for s in conns:
        s.close()
    print(json.dumps({
        "opened": len(conns),
        "closed_by_broker": closed,
        "undelivered": undelivered,
        "consumed": got == values,
        "rss_kib_before_client": before,
        "rss_kib": during,
    }))


if __name__ == "__main__":
    main()
