"""Produce records with keys and headers, then read them back by partition
assignment (no consumer group) and compare byte for byte.

usage: roundtrip.py {kafka-python|confluent-kafka} BOOTSTRAP TOPIC PARTITIONS COUNT

Prints one JSON summary line on stdout; exits 1 on any mismatch.
"""

import json
import sys
import time


def record(i):
    key = b"key-%d" % i
    # Binary values of varying length, including every byte value.
    value = bytes((i + j) % 256 for j in range(i % 300)) + b"|value-%d" % i
    headers = [("idx", str(i).encode()), ("bin", bytes([i % 256, 0, 255]))]
    if i % 7 == 0:
        headers.append(("empty", b""))
    return key, value, headers


def run_kafka_python(bootstrap, topic, partitions, count):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = []
    for i in range(count):
        key, value, headers = record(i)
        futures.append(producer.send(topic, key=key, value=value, headers=headers, partition=i % partitions))
    producer.flush(60)
    acked = [f.get(timeout=60) for f in futures]
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = []
    deadline = time.time() + 60
    while len(got) < count and time.time() < deadline:
        for _tp, msgs in consumer.poll(timeout_ms=500).items():
            for m in msgs:
                got.append((m.partition, m.offset, m.key, m.value, [(k, bytes(v)) for k, v in m.headers]))
    consumer.close()
    return [(m.partition, m.offset) for m in acked], got


def run_confluent(bootstrap, topic, partitions, count):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    acked = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked.append((msg.partition(), msg.offset()))

    for i in range(count):
        key, value, headers = record(i)
        producer.produce(topic, value=value, key=key, headers=headers, partition=i % partitions, on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(60)
    if errors or remaining:
        raise SystemExit("delivery failed: %s (%d not flushed)" % (errors[:5], remaining))

    # librdkafka insists on a group.id, but with assign(), explicit offsets and
    # no commits the consumer never joins the group.
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "e2e-assign-only",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = []
    deadline = time.time() + 60
    while len(got) < count and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error():
            raise SystemExit("consume error: %s" % m.error())
        got.append((m.partition(), m.offset(), m.key(), m.value(), list(m.headers() or [])))
    consumer.close()
    return acked, got


def main():
    client, bootstrap, topic, partitions, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    if client == "kafka-python":
        acked, got = run_kafka_python(bootstrap, topic, partitions, count)
    elif client == "confluent-kafka":
        acked, got = run_confluent(bootstrap, topic, partitions, count)
    else:
        raise SystemExit("unknown client " + client)

    # Expected: record i in partition i % partitions at offset i // partitions.
    mismatches = []
    by_pos = {(p, o): (k, v, h) for p, o, k, v, h in got}
    for i in range(count):
        key, value, headers = record(i)
        pos = (i % partitions, i // partitions)
        if pos not in by_pos:
            mismatches.append("record %d missing at partition %d offset %d" % (i, pos[0], pos[1]))
        elif by_pos[pos] != (key, value, headers):
            mismatches.append("record %d differs at %s: got %r" % (i, pos, by_pos[pos]))
    if sorted(acked) != sorted((i % partitions, i // partitions) for i in range(count)):
        mismatches.append("acked offsets not contiguous from 0: first %s" % sorted(acked)[:5])
    summary = {
        "client": client,
        "produced": count,
        "acked": len(acked),
        "consumed": len(got),
        "mismatches": len(mismatches),
    }
    print(json.dumps(summary, sort_keys=True))
    for m in mismatches[:10]:
        print("MISMATCH " + m)
    sys.exit(1 if mismatches or len(got) != count else 0)


if __name__ == "__main__":
    main()
