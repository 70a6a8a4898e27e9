"""The counts a Kafka Streams word count committed, as a read_committed consumer sees them.

usage: streams_counts.py BOOTSTRAP TOPIC
Reads every partition of TOPIC from the beginning to its end when the script starts (the
last stable offset, with isolation.level=read_committed: what a writer adds meanwhile is
left for the next call) with confluent-kafka (librdkafka), keys as UTF-8 words and
values as Kafka's LongSerializer writes them (8 bytes, big-endian), and prints one JSON line:
{"records": N, "latest": {word: count}, "history": {word: [count, ...]}}.
Exits 1 on a malformed record or when the end is not reached within 60 s.
"""

import json
import struct
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def main():
    bootstrap, topic = sys.argv[1:3]
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "streams-counts-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    partitions = c.list_topics(topic, timeout=30).topics[topic].partitions
    # The end of each partition now (ListOffsets at the consumer's isolation level).
    end = {}
    for p in partitions:
        low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        end[p] = high
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    pending = {p for p in partitions if end[p] > 0}
    history = {}
    records = 0
    deadline = time.time() + 60
    while pending:
        if time.time() > deadline:
            print("no end of partitions %s within 60 s" % sorted(pending), file=sys.stderr)
            sys.exit(1)
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(m.partition())
                continue
            print("error: %s" % m.error(), file=sys.stderr)
            sys.exit(1)
        if m.partition() not in pending:
            continue
        if m.offset() + 1 >= end[m.partition()]:
            pending.discard(m.partition())
        records += 1
        (count,) = struct.unpack(">q", m.value())
        history.setdefault(m.key().decode(), []).append(count)
    c.close()
    latest = {w: h[-1] for w, h in history.items()}
    print(json.dumps({"records": records, "latest": latest, "history": history}))


if __name__ == "__main__":
    main()
