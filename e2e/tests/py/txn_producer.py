"""Transactional producing with confluent-kafka (librdkafka).

usage: txn_producer.py BOOTSTRAP TOPIC TXN_ID abort-then-commit
         one transaction of aborted-0..4 that is aborted, then one of committed-0..4
         that is committed; prints "done".
       txn_producer.py BOOTSTRAP TOPIC TXN_ID zombie
         producer A opens a transaction (zombie-0..4), producer B with the same
         transactional.id initialises (fencing A), A's commit must fail; B commits
         fresh-0..4. Prints "A: <error name> fatal=<bool>" and "done".
       txn_producer.py BOOTSTRAP TOPIC TXN_ID hold-open
         opens a transaction of open-0..4 (transaction.timeout.ms 10 minutes), prints
         "open" and keeps it open (sleeps) until killed.
Exits 1 on anything unexpected.
"""

import sys
import time

from confluent_kafka import KafkaException, Producer


def producer(bootstrap, txn_id, timeout_ms=60000):
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "transaction.timeout.ms": timeout_ms,
            "linger.ms": 5,
        }
    )


def produce(p, topic, prefix):
    for i in range(5):
        p.produce(topic, key=b"k%d" % i, value=("%s-%d" % (prefix, i)).encode(), partition=0)
    p.flush(30)


def main():
    bootstrap, topic, txn_id, mode = sys.argv[1:5]
    if mode == "abort-then-commit":
        p = producer(bootstrap, txn_id)
        p.init_transactions(60)
        p.begin_transaction()
        produce(p, topic, "aborted")
        p.abort_transaction(60)
        p.begin_transaction()
        produce(p, topic, "committed")
        p.commit_transaction(60)
    elif mode == "zombie":
        a = producer(bootstrap, txn_id)
        a.init_transactions(60)
        a.begin_transaction()
        produce(a, topic, "zombie")
        b = producer(bootstrap, txn_id)
        b.init_transactions(60)
        try:
            a.commit_transaction(30)
            print("A: committed")
            sys.exit(1)
        except KafkaException as e:
            err = e.args[0]
            print("A: %s fatal=%s" % (err.name(), err.fatal()))
        b.begin_transaction()
        produce(b, topic, "fresh")
        b.commit_transaction(60)
    elif mode == "hold-open":
        p = producer(bootstrap, txn_id, 600000)
        p.init_transactions(60)
        p.begin_transaction()
        produce(p, topic, "open")
        print("open", flush=True)
        time.sleep(600)
        sys.exit("still open after 10 minutes")
    else:
        sys.exit("unknown mode " + mode)
    print("done")


if __name__ == "__main__":
    main()
