#!/usr/bin/env python3
"""Minimal Kafka client (stdlib only) used by the e2e scenarios, locally and in kind.

    kafka_probe.py HOST:PORT [HOST:PORT ...]
        For each address: ApiVersions v0 and Metadata v2; prints one JSON line
        {"addr", "api_keys", "cluster_id", "controller_id", "brokers": [[id, host, port], ...]}.
        Exits non-zero if any address does not answer.
    kafka_probe.py produce HOST:PORT TOPIC BROKER_ID VALUE
        Creates TOPIC (1 partition, replica on BROKER_ID, min.insync.replicas=1; "already exists" is fine), then
        produces VALUE (acks=all) to partition 0 through its leader; prints {"offset": N}.
    kafka_probe.py fetch HOST:PORT TOPIC
        Fetches partition 0 of TOPIC from offset 0 through its leader; prints {"values": [...]}.
    kafka_probe.py create HOST:PORT TOPIC PARTITIONS REPLICATION_FACTOR [BROKER,BROKER,...]
        Creates TOPIC with the controller's placement, or with one partition on the listed brokers
        (then PARTITIONS and REPLICATION_FACTOR are -1); "already exists" is fine; prints {"created": TOPIC}.
    kafka_probe.py send HOST:PORT TOPIC VALUE
        Produces VALUE (acks=all) to partition 0 of an existing TOPIC through its leader; prints
        {"offset": N}.
    kafka_probe.py describe HOST:PORT TOPIC
        Metadata v2 of TOPIC as HOST:PORT sees it; prints {"brokers": [ids], "controller_id",
        "partitions": [{"partition", "error", "leader", "replicas", "isr"}, ...]}.
    kafka_probe.py quorum HOST:PORT
        DescribeQuorum v0 of the metadata quorum (as `kafka-metadata-quorum.sh describe
        --status` asks it); prints {"leader", "epoch", "high_watermark", "voters": [ids],
        "observers": [ids], "log_end_offsets": {id: offset}}.
Kept dependency-free so that the kind path can run it with a stock python image and the local
path with the host's python3.
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


# ---- produce / fetch (CreateTopics v2, Produce v3, Fetch v4: the oldest versions Kafka 4 serves) ----------
def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = _T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n):
    n = (n << 1) ^ (n >> 63)
    out = b""
    while True:
        if n & ~0x7F:
            out += bytes([(n & 0x7F) | 0x80]); n >>= 7
        else:
            return out + bytes([n])


def read_varint(b, o):
    shift = n = 0
    while True:
        x = b[o]; o += 1
        n |= (x & 0x7F) << shift; shift += 7
        if not x & 0x80:
            return (n >> 1) ^ -(n & 1), o


def kstr(s):
    b = s.encode(); return struct.pack(">h", len(b)) + b


def record_batch(value, ts):
    v = value.encode()
    rec = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(len(v)) + v + varint(0)
    rec = varint(len(rec)) + rec
    after_crc = struct.pack(">hiqqqhii", 0, 0, ts, ts, -1, -1, -1, 1) + rec
    body = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(body)) + body


def parse_values(b):
    vals, o = [], 0
    while o + 12 <= len(b):
        _base, blen = struct.unpack_from(">qi", b, o)
        end = o + 12 + blen
        if end > len(b):
            break
        p = o + 12 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4
        (count,) = struct.unpack_from(">i", b, p); p += 4
        for _ in range(count):
            _len, p = read_varint(b, p)
            p += 1
            _, p = read_varint(b, p); _, p = read_varint(b, p)
            kl, p = read_varint(b, p); p += max(kl, 0)
            vl, p = read_varint(b, p)
            vals.append(b[p:p + vl].decode() if vl >= 0 else None); p += max(vl, 0)
            hc, p = read_varint(b, p)
            for _ in range(hc):
                hk, p = read_varint(b, p); p += hk
                hv, p = read_varint(b, p); p += max(hv, 0)
        o = end
    return vals


def metadata(s, topic):
    r = R(req(s, 3, 2, 7, struct.pack(">i", 1) + kstr(topic)))
    brokers = {}
    for _ in range(r.i32()):
        nid, h, p, _rack = r.i32(), r.s(), r.i32(), r.s()
        brokers[nid] = (h, p)
    r.s(); r.i32()
    leader = None
    for _ in range(r.i32()):
        terr, _name, _internal = r.i16(), r.s(), r.b[r.o]; r.o += 1
        for _ in range(r.i32()):
            _perr, part, ldr = r.i16(), r.i32(), r.i32()
            for _ in range(2):
                for _ in range(r.i32()):
                    r.i32()
            if part == 0:
                leader = ldr
        if terr:
            raise IOError(f"metadata for {topic}: error {terr}")
    if leader is None or leader < 0 or leader not in brokers:
        raise IOError(f"no leader for {topic}-0 (brokers {brokers})")
    return brokers[leader]


def connect(addr):
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def leader_conn(addr, topic):
    import time
    for attempt in range(20):
        try:
            with connect(addr) as s:
                h, p = metadata(s, topic)
            return socket.create_connection((h, p), timeout=10)
        except IOError:
            if attempt == 19:
                raise
            time.sleep(0.5)


def create_topics(addr, topic, spec):
    """CreateTopics v2 of one topic; `spec` is its body after the name. TOPIC_ALREADY_EXISTS (36) is fine."""
    with connect(addr) as s:
        body = struct.pack(">i", 1) + kstr(topic) + spec + struct.pack(">ib", 30000, 0)
        r = R(req(s, 19, 2, 5, body))
        r.i32()  # throttle_time_ms
        for _ in range(r.i32()):
            name, err, msg = r.s(), r.i16(), r.s()
            if err not in (0, 36):
                raise IOError(f"CreateTopics {name}: error {err} {msg}")


def create(addr, topic, partitions, replication_factor, replicas=None):
    if replicas:  # one partition on these brokers, in this order (the first is the preferred leader)
        ids = [int(b) for b in replicas.split(",")]
        spec = (struct.pack(">ih", -1, -1) + struct.pack(">i", 1) + struct.pack(">ii", 0, len(ids))
                + b"".join(struct.pack(">i", b) for b in ids) + struct.pack(">i", 0))
    else:  # no assignment: the controller places the replicas
        spec = struct.pack(">ihii", int(partitions), int(replication_factor), 0, 0)
    create_topics(addr, topic, spec)
    return {"created": topic}


def describe(addr, topic):
    with connect(addr) as s:
        r = R(req(s, 3, 2, 9, struct.pack(">i", 1) + kstr(topic)))
        brokers = []
        for _ in range(r.i32()):
            nid, _h, _p, _rack = r.i32(), r.s(), r.i32(), r.s()
            brokers.append(nid)
        r.s()
        controller = r.i32()
        partitions = []
        for _ in range(r.i32()):
            terr, _name, _internal = r.i16(), r.s(), r.b[r.o]; r.o += 1
            if terr:
                raise IOError(f"metadata for {topic}: error {terr}")
            for _ in range(r.i32()):
                perr, part, ldr = r.i16(), r.i32(), r.i32()
                replicas = [r.i32() for _ in range(r.i32())]
                isr = [r.i32() for _ in range(r.i32())]
                partitions.append({"partition": part, "error": perr, "leader": ldr, "replicas": replicas, "isr": isr})
    return {"brokers": sorted(brokers), "controller_id": controller, "partitions": sorted(partitions, key=lambda p: p["partition"])}


def uvarint(b, o):
    v = shift = 0
    while True:
        c = b[o]; o += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, o
        shift += 7


def quorum(addr):
    # DescribeQuorum (key 55) is flexible from v0: request header v2 (tagged fields after the
    # client id), compact arrays and strings, and a response header with tagged fields.
    name = b"__cluster_metadata"
    body = (bytes([2, len(name) + 1]) + name + bytes([2]) + struct.pack(">i", 0) + b"\0\0\0")
    client = b"oxbow-e2e"
    msg = struct.pack(">hhih", 55, 0, 11, len(client)) + client + b"\0" + body
    with connect(addr) as s:
        s.sendall(struct.pack(">i", len(msg)) + msg)
        n = struct.unpack(">i", recvn(s, 4))[0]
        b = recvn(s, n)
    o = 4
    _tags, o = uvarint(b, o)
    (err,) = struct.unpack_from(">h", b, o); o += 2
    if err:
        raise IOError(f"DescribeQuorum: error {err}")
    topics, o = uvarint(b, o)
    for _ in range(topics - 1):
        ln, o = uvarint(b, o); o += ln - 1
        parts, o = uvarint(b, o)
        for _ in range(parts - 1):
            _idx, perr, leader, epoch, hw = struct.unpack_from(">ihiiq", b, o); o += 22
            if perr:
                raise IOError(f"DescribeQuorum partition: error {perr}")
            lists, ends = [], {}
            for _ in range(2):
                count, o = uvarint(b, o)
                ids = []
                for _ in range(count - 1):
                    rid, leo = struct.unpack_from(">iq", b, o); o += 12
                    _t, o = uvarint(b, o)
                    ids.append(rid)
                    ends[str(rid)] = leo
                lists.append(sorted(ids))
            return {"leader": leader, "epoch": epoch, "high_watermark": hw,
                    "voters": lists[0], "observers": lists[1], "log_end_offsets": ends}
    raise IOError("empty DescribeQuorum response")


def produce(addr, topic, broker_id, value):
    # One partition, its only replica on BROKER_ID; min.insync.replicas=1 so that acks=all is
    # served by that one replica whatever the broker's default (the StatefulSet's is 2).
    create_topics(addr, topic, struct.pack(">ih", -1, -1) + struct.pack(">i", 1) + struct.pack(">ii", 0, 1)
                  + struct.pack(">i", int(broker_id)) + struct.pack(">i", 1) + kstr("min.insync.replicas") + kstr("1"))
    return send(addr, topic, value)


def send(addr, topic, value):
    import time
    batch = record_batch(value, int(time.time() * 1000))
    with leader_conn(addr, topic) as s:
        body = (struct.pack(">hhi", -1, -1, 30000) + struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1)
                + struct.pack(">ii", 0, len(batch)) + batch)
        r = R(req(s, 0, 3, 6, body))
        for _ in range(r.i32()):
            r.s()
            for _ in range(r.i32()):
                _p, err = r.i32(), r.i16()
                off = struct.unpack_from(">q", r.b, r.o)[0]; r.o += 16
                if err:
                    raise IOError(f"Produce: error {err}")
                return {"offset": off}
    raise IOError("empty produce response")


def fetch(addr, topic):
    with leader_conn(addr, topic) as s:
        body = (struct.pack(">iiiib", -1, 500, 1, 1 << 20, 0) + struct.pack(">i", 1) + kstr(topic)
                + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20))
        r = R(req(s, 1, 4, 8, body))
        r.i32()
        for _ in range(r.i32()):
            r.s()
            for _ in range(r.i32()):
                _p, err = r.i32(), r.i16()
                r.o += 16
                n = r.i32()
                for _ in range(max(n, 0)):
                    r.o += 16
                ln = r.i32()
                recs = r.b[r.o:r.o + max(ln, 0)]; r.o += max(ln, 0)
                if err:
                    raise IOError(f"Fetch: error {err}")
                return {"values": parse_values(recs)}
    raise IOError("empty fetch response")


def main():
    commands = {"produce": (produce, 4), "fetch": (fetch, 2), "create": (create, 5), "send": (send, 3),
                "describe": (describe, 2), "quorum": (quorum, 1)}
    if len(sys.argv) > 1 and sys.argv[1] in commands:
        command, argc = commands[sys.argv[1]]
        try:
            out = command(*sys.argv[2:2 + argc])
            print(json.dumps(out), flush=True)
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"error": str(e)}), flush=True)
            sys.exit(1)
        return
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
