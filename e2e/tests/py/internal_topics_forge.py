"""A client tries to forge a group's committed offset by writing __consumer_offsets itself.

1. confluent-kafka (librdkafka) produces RECORDS records to the __consumer_offsets partition
   that coordinates GROUP: each is a well-formed offset commit (key version 1, value
   version 3) saying GROUP committed offset 999 on TOPIC-0.
2. confluent-kafka's AdminClient asks DeleteRecords to empty that partition.

Prints one JSON summary line: how many records were acknowledged, the delivery errors by
librdkafka name and Kafka code, and DeleteRecords' error.

usage: internal_topics_forge.py BOOTSTRAP GROUP TOPIC RECORDS
"""

import json
import struct
import sys

from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

OFFSETS_TOPIC = "__consumer_offsets"


def java_string_hash(s):
    h = 0
    for c in s:
        h = (31 * h + ord(c)) & 0xFFFFFFFF
    return h


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def main():
    bootstrap, group, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = len(admin.list_topics(OFFSETS_TOPIC, timeout=30).topics[OFFSETS_TOPIC].partitions)
    # Kafka's coordinator partition: Utils.abs(groupId.hashCode()) % partitions.
    partition = (java_string_hash(group) & 0x7FFFFFFF) % partitions

    key = struct.pack(">h", 1) + kstr(group) + kstr(topic) + struct.pack(">i", 0)
    value = struct.pack(">hqi", 3, 999, -1) + kstr("forged") + struct.pack(">q", 0)

    acked = 0
    errors = {}

    def delivered(err, _msg):
        nonlocal acked
        if err is None:
            acked += 1
        else:
            name = f"{err.name()}({err.code()})"
            errors[name] = errors.get(name, 0) + 1

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "message.timeout.ms": 20000,
        "linger.ms": 0,
    })
    for _ in range(count):
        producer.produce(OFFSETS_TOPIC, key=key, value=value, partition=partition, on_delivery=delivered)
    remaining = producer.flush(30)

    futures = admin.delete_records([TopicPartition(OFFSETS_TOPIC, partition, -1)], request_timeout=30)
    delete_error = None
    for fut in futures.values():
        try:
            fut.result()
        except KafkaException as e:
            err = e.args[0]
            delete_error = f"{err.name()}({err.code()})"

    print(json.dumps({
        "partition": partition,
        "acked": acked,
        "undelivered": remaining,
        "errors": errors,
        "delete_records_error": delete_error,
    }))


if __name__ == "__main__":
    main()
