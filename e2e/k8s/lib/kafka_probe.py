#!/usr/bin/env python3
"""Minimal Kafka client (stdlib only) used by the e2e scenarios, locally and in kind.

    kafka_probe.py HOST:PORT [HOST:PORT ...]

For each bootstrap address: ApiVersions v0 and Metadata v2, then prints one JSON line
{"addr", "api_keys", "cluster_id", "controller_id", "brokers": [[id, host, port], ...]}.
Exits non-zero if any address does not answer. Kept dependency-free so that the kind path
can run it with a stock python image and the local path with the host's python3.
"""
import json
import socket
import struct
import sys


def req(sock, api_key, version, corr, body=b""):
    client = b"oxbow-e2e"
    hdr = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    msg = hdr + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    n = struct.unpack(">i", recvn(sock, 4))[0]
    data = recvn(sock, n)
    (rcorr,) = struct.unpack(">i", data[:4])
    if rcorr != corr:
        raise IOError(f"correlation id {rcorr} != {corr}")
    return data[4:]


def recvn(sock, n):
    b = b""
    while len(b) < n:
        c = sock.recv(n - len(b))
        if not c:
            raise IOError("connection closed")
        b += c
    return b


class R:
    def __init__(self, b):
        self.b, self.o = b, 0

    def i16(self):
        v = struct.unpack_from(">h", self.b, self.o)[0]; self.o += 2; return v

    def i32(self):
        v = struct.unpack_from(">i", self.b, self.o)[0]; self.o += 4; return v

    def s(self):
        n = self.i16()
        if n < 0:
            return None
        v = self.b[self.o:self.o + n].decode(); self.o += n; return v


def probe(addr, timeout=5.0):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        r = R(req(s, 18, 0, 1))
        err = r.i16()
        if err:
            raise IOError(f"ApiVersions error {err}")
        keys = {}
        for _ in range(r.i32()):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            keys[k] = [lo, hi]
        r = R(req(s, 3, 2, 2, struct.pack(">i", -1)))  # Metadata v2, all topics
        brokers = []
        for _ in range(r.i32()):
            nid, h, p, _rack = r.i32(), r.s(), r.i32(), r.s()
            brokers.append([nid, h, p])
        cluster_id, controller = r.s(), r.i32()
    return {"addr": addr, "api_keys": sorted(keys), "cluster_id": cluster_id, "controller_id": controller,
            "brokers": sorted(brokers)}


def main():
    rc = 0
    for a in sys.argv[1:]:
        try:
            print(json.dumps(probe(a)), flush=True)
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"addr": a, "error": str(e)}), flush=True)
            rc = 1
    sys.exit(rc)


if __name__ == "__main__":
    main()
