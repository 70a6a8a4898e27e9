"""Offsets in transactions with confluent-kafka (librdkafka).

usage: txn_offsets.py BOOTSTRAP send-offsets IN OUT GROUP TXN_ID
         produces in-0..9 to IN (partition 0); a read_committed consumer of GROUP reads
         them; a transactional producer copies 5 to OUT and sends the consumer's position
         (5) with send_offsets_to_transaction, then commits; then copies the next 5, sends
         position 10 and aborts. Prints "committed-while-open=<n>" (seen by a
         read_uncommitted fetch while the first transaction is open), "after-commit=<n>",
         "after-abort=<n>" (the group's committed offset of IN-0; -1001 is none) and "done".
       txn_offsets.py BOOTSTRAP count TOPIC N
         reads every partition of TOPIC from the beginning to its end with read_committed
         and prints "records=<r> distinct=<d> missing=<m> duplicates=<k>" against the
         values 0..N-1.
Exits 1 on anything unexpected.
"""

import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


def committed(bootstrap, group, topic, isolation):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    finally:
        c.close()


def send_offsets(bootstrap, topic_in, topic_out, group, txn_id):
    plain = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        plain.produce(topic_in, value=("in-%d" % i).encode(), partition=0)
    if plain.flush(30) != 0:
        sys.exit("input not produced")
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic_in])
    records = []
    while len(records) < 10:
        m = consumer.poll(30)
        if m is None:
            sys.exit("no input within 30 s (read %d)" % len(records))
        if m.error():
            sys.exit("consumer error %s" % m.error())
        records.append(m)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 60000,
        }
    )
    producer.init_transactions(60)
    meta = consumer.consumer_group_metadata()
    for batch, end in ((records[:5], "commit"), (records[5:], "abort")):
        producer.begin_transaction()
        for m in batch:
            producer.produce(topic_out, value=m.value().upper(), partition=0)
        position = [TopicPartition(topic_in, 0, batch[-1].offset() + 1)]
        producer.send_offsets_to_transaction(position, meta, 30)
        if end == "commit":
            print("committed-while-open=%d" % committed(bootstrap, group, topic_in, "read_uncommitted"))
            producer.commit_transaction(60)
            print("after-commit=%d" % committed(bootstrap, group, topic_in, "read_committed"))
        else:
            producer.abort_transaction(60)
            print("after-abort=%d" % committed(bootstrap, group, topic_in, "read_committed"))
    consumer.close()
    print("done")


def count(bootstrap, topic, n):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "txn-offsets-count",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    parts = c.list_topics(topic, timeout=30).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    at_end = set()
    seen = {}
    while len(at_end) < len(parts):
        m = c.poll(30)
        if m is None:
            sys.exit("nothing within 30 s; at the end of %s" % sorted(at_end))
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(m.partition())
                continue
            sys.exit("consumer error %s" % m.error())
        v = m.value().decode()
        seen[v] = seen.get(v, 0) + 1
    c.close()
    expected = {str(i) for i in range(n)}
    records = sum(seen.values())
    missing = len(expected - set(seen))
    duplicates = sum(k - 1 for k in seen.values())
    print("records=%d distinct=%d missing=%d duplicates=%d" % (records, len(seen), missing, duplicates))


def main():
    bootstrap, mode = sys.argv[1:3]
    if mode == "send-offsets":
        send_offsets(bootstrap, *sys.argv[3:7])
    elif mode == "count":
        count(bootstrap, sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
