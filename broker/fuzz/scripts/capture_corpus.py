#!/usr/bin/env python3
"""Records real client requests as seed corpus for the fuzz targets.

Starts oxbow-broker advertising a recording proxy's port, so every request of kcat,
Apache Kafka's CLI tools (the Java client) and kafka-python goes through the proxy,
which writes each request frame (without its length prefix) to corpus/request/.
Then derives seeds for the other targets from what the broker stored: record batches
(corpus/log/) and __consumer_offsets keys and values (corpus/offsets_codec/).

Usage: capture_corpus.py <oxbow-broker binary> <kafka bin dir> <python with kafka-python>
Run from broker/fuzz; rewrites the three corpus directories.
"""
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def save(directory, data):
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def proxy(listen_port, broker_port, stop):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(64)
    server.settimeout(0.2)

    def pump_requests(client, upstream):
        try:
            pump(client, upstream)
        except OSError:
            pass  # the other side closed
        upstream.close()

    def pump(client, upstream):
        while True:
            size = read_exact(client, 4)
            if size is None:
                break
            frame = read_exact(client, struct.unpack(">i", size)[0])
            if frame is None:
                break
            save("corpus/request", frame)
            upstream.sendall(size + frame)

    def pump_responses(upstream, client):
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass  # the other side closed
        client.close()

    while not stop.is_set():
        try:
            client, _ = server.accept()
        except socket.timeout:
            continue
        upstream = socket.create_connection(("127.0.0.1", broker_port))
        threading.Thread(target=pump_requests, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump_responses, args=(upstream, client), daemon=True).start()


def varint(buf, pos):
    shift, value = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7


def stored_batches(log_file):
    data = open(log_file, "rb").read()
    pos = 0
    while pos + 61 <= len(data):
        length = struct.unpack(">i", data[pos + 8:pos + 12])[0]
        yield data[pos:pos + 12 + length]
        pos += 12 + length


def main():
    binary, kafka_bin, python = sys.argv[1:4]
    for d in ("corpus/request", "corpus/log", "corpus/offsets_codec"):
        shutil.rmtree(d, ignore_errors=True)
    data_dir = tempfile.mkdtemp(prefix="oxbow-capture-")
    broker_port, proxy_port = free_port(), free_port()
    stop = threading.Event()
    threading.Thread(target=proxy, args=(proxy_port, broker_port, stop), daemon=True).start()
    broker = subprocess.Popen(
        [binary,
         "--override", f"listeners=PLAINTEXT://127.0.0.1:{broker_port}",
         "--override", f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy_port}",
         "--override", f"log.dirs={data_dir}",
         "--override", "offsets.topic.num.partitions=1",
         "--override", "group.initial.rebalance.delay.ms=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", broker_port)).close()
            break
        except OSError:
            time.sleep(0.1)
    bs = f"127.0.0.1:{proxy_port}"
    run = lambda *cmd, stdin=None: subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=120)
    tool = lambda name: os.path.join(kafka_bin, name)
    try:
        run(tool("kafka-topics.sh"), "--bootstrap-server", bs, "--create", "--topic", "fuzz", "--partitions", "2")
        run(tool("kafka-topics.sh"), "--bootstrap-server", bs, "--create", "--topic", "fuzz-compact",
            "--partitions", "2", "--config", "cleanup.policy=compact")
        lines = "".join(f"k{i}:value {i}\n" for i in range(20))
        for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
            run("kcat", "-b", bs, "-P", "-t", "fuzz", "-K:", "-z", codec, stdin=lines)
            run(tool("kafka-console-producer.sh"), "--bootstrap-server", bs, "--topic", "fuzz-compact",
                "--compression-codec", codec, "--property", "parse.key=true",
                "--property", "key.separator=:", stdin=lines)
        run("kcat", "-b", bs, "-C", "-t", "fuzz", "-e", "-q")
        run("kcat", "-b", bs, "-L")
        run(tool("kafka-console-consumer.sh"), "--bootstrap-server", bs, "--topic", "fuzz-compact",
            "--group", "fuzz-group", "--from-beginning", "--max-messages", "10", "--timeout-ms", "15000")
        run(tool("kafka-consumer-groups.sh"), "--bootstrap-server", bs, "--describe", "--group", "fuzz-group")
        run(tool("kafka-get-offsets.sh"), "--bootstrap-server", bs, "--topic", "fuzz", "--time", "-1")
        run(tool("kafka-topics.sh"), "--bootstrap-server", bs, "--alter", "--topic", "fuzz", "--partitions", "3")
        run(tool("kafka-configs.sh"), "--bootstrap-server", bs, "--entity-type", "topics",
            "--entity-name", "fuzz", "--alter", "--add-config", "retention.ms=60000")
        run(tool("kafka-configs.sh"), "--bootstrap-server", bs, "--broker", "0", "--all", "--describe")
        run(tool("kafka-delete-records.sh"), "--bootstrap-server", bs, "--offset-json-file", "/dev/null")
        run(python, "-c", f"""
from kafka import KafkaProducer, KafkaConsumer
p = KafkaProducer(bootstrap_servers='{bs}', compression_type='gzip', enable_idempotence=False)
for i in range(5):
    p.send('fuzz', key=b'k%d' % i, value=b'v%d' % i)
p.flush()
c = KafkaConsumer('fuzz', bootstrap_servers='{bs}', group_id='py-group',
                  auto_offset_reset='earliest', consumer_timeout_ms=5000)
for _ in c:
    pass
c.commit()
c.close()
""")
    finally:
        stop.set()
        broker.terminate()
        broker.wait(timeout=30)
    # Log seeds: one append op (0, u16 length, batch) per stored batch, selector 0/1/5.
    for root, _, files in os.walk(data_dir):
        for f in files:
            if not f.endswith(".log"):
                continue
            path = os.path.join(root, f)
            for batch in stored_batches(path):
                if len(batch) > 4000:
                    continue
                append = bytes([0]) + struct.pack(">H", len(batch)) + batch
                selector = 1 if "compact" in root or "__consumer_offsets" in root else 0
                save("corpus/log", bytes([selector]) + append + bytes([4, 0, 0, 6, 0, 0, 9, 0, 0]))
                if "__consumer_offsets" in root and batch[21:23] == b"\x00\x00":
                    body, pos = batch[61:], 0
                    while pos < len(body):
                        length, pos = varint(body, pos)
                        record, pos = body[pos:pos + length], pos + length
                        p = 1
                        _, p = varint(record, p)  # timestamp delta
                        _, p = varint(record, p)  # offset delta
                        klen, p = varint(record, p)
                        key, p = record[p:p + klen], p + klen
                        vlen, p = varint(record, p)
                        save("corpus/offsets_codec", bytes([0]) + key)
                        if vlen >= 0:
                            value = record[p:p + vlen]
                            kind = 1 if struct.unpack(">h", key[:2])[0] <= 1 else 2
                            save("corpus/offsets_codec", bytes([kind]) + value)
    shutil.rmtree(data_dir, ignore_errors=True)
    for d in ("corpus/request", "corpus/log", "corpus/offsets_codec"):
        print(d, len(os.listdir(d)) if os.path.isdir(d) else 0)


if __name__ == "__main__":
    main()
