"""Transactions across the brokers of a cluster with confluent-kafka (librdkafka).

usage: txn_cluster.py BOOTSTRAP produce TOPIC PARTITIONS TXN_ID N
         N transactions; transaction i writes "t<i>-p<p>" to every partition p. Every third
         (i % 3 == 2) is aborted, the others committed. Prints "committed <i>" or
         "aborted <i>" once each ends, then "done". A commit or abort that fails with a
         retriable error is called again (librdkafka's contract); a transaction that needs
         an abort (a record not delivered) is aborted and printed as aborted.
       txn_cluster.py BOOTSTRAP hold TXN_ID DIR
         initialises TXN_ID and prints "ready"; waits for DIR/partitions (lines of
         TOPIC:PARTITION), opens a transaction writing "held-TOPIC-PARTITION" to each and
         prints "produced" once all are delivered; waits for DIR/go, commits and prints
         "committed".
       txn_cluster.py BOOTSTRAP consume TOPIC PARTITIONS ISOLATION
         (PARTITIONS: a count, or =P,Q,... for those partitions only) reads each partition from the beginning to its end (the last stable offset with
         read_committed) and prints each value, then "end".
Exits 1 on anything unexpected.
"""

import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


def end(p, commit):
    """Commits or aborts the open transaction; returns "committed" or "aborted"."""
    while True:
        try:
            if commit:
                p.commit_transaction(60)
                return "committed"
            p.abort_transaction(60)
            return "aborted"
        except KafkaException as e:
            err = e.args[0]
            if err.retriable():
                print("retrying end: %s" % err.name(), file=sys.stderr, flush=True)
                continue
            if commit and err.txn_requires_abort():
                print("aborting: %s" % err.name(), file=sys.stderr, flush=True)
                commit = False
                continue
            raise


def produce(bootstrap, topic, partitions, txn_id, n):
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 60000,
            "linger.ms": 5,
        }
    )
    p.init_transactions(60)
    for i in range(n):
        p.begin_transaction()
        for part in range(partitions):
            p.produce(topic, value=("t%d-p%d" % (i, part)).encode(), partition=part)
        p.flush(60)
        print("%s %d" % (end(p, i % 3 != 2), i), flush=True)
        time.sleep(0.1)
    print("done", flush=True)


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.1)


def hold(bootstrap, txn_id, directory):
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            # Longer than the test holds it open: the coordinator must not abort it.
            "transaction.timeout.ms": 300000,
        }
    )
    p.init_transactions(60)
    print("ready", flush=True)
    wait_for(os.path.join(directory, "partitions"))
    with open(os.path.join(directory, "partitions")) as f:
        tps = [line.strip().rsplit(":", 1) for line in f if line.strip()]
    p.begin_transaction()
    for topic, part in tps:
        p.produce(topic, value=("held-%s-%s" % (topic, part)).encode(), partition=int(part))
    if p.flush(60) != 0:
        sys.exit("records not delivered")
    print("produced", flush=True)
    wait_for(os.path.join(directory, "go"))
    print(end(p, True), flush=True)


def consume(bootstrap, topic, partitions, isolation):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "txn-cluster-" + uuid.uuid4().hex,
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    at_end = set()
    deadline = time.time() + 60
    while len(at_end) < len(partitions):
        if time.time() > deadline:
            sys.exit("not at the end of every partition within 60 s: %s" % sorted(at_end))
        m = c.poll(1)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(m.partition())
                continue
            sys.exit("consumer error %s" % m.error())
        at_end.discard(m.partition())
        print(m.value().decode(), flush=True)
    c.close()
    print("end", flush=True)


def main():
    bootstrap, mode = sys.argv[1:3]
    if mode == "produce":
        topic, partitions, txn_id, n = sys.argv[3:7]
        produce(bootstrap, topic, int(partitions), txn_id, int(n))
    elif mode == "hold":
        hold(bootstrap, sys.argv[3], sys.argv[4])
    elif mode == "consume":
        topic, partitions, isolation = sys.argv[3:6]
        if partitions.startswith("="):
            parts = [int(p) for p in partitions[1:].split(",")]
        else:
            parts = list(range(int(partitions)))
        consume(bootstrap, topic, parts, isolation)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
