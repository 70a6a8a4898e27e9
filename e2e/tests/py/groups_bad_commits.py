"""Bad offset commits, as real clients send them, and the errors Kafka returns.

1. kafka-python joins GROUP (subscribe to TOPIC) and, using its own network
   client, sends OffsetCommit requests for the group it is a member of:
   an unknown topic, an unknown partition, a stale generation, an unknown
   member id, and finally a good one.
2. confluent-kafka (librdkafka) commits an offset for an unknown topic.
3. The kafka-python member keeps going: consumes records produced after the
   bad commits (RECORDS_AFTER of them, produced by this script) and commits
   them with the ordinary high-level commit().

Prints one JSON summary line. Error codes are Kafka's numeric codes, names are
kafka-python's / librdkafka's names.

usage: groups_bad_commits.py BOOTSTRAP TOPIC GROUP
"""

import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.protocol.commit import OffsetCommitRequest
import kafka.errors as Errors


def commit_raw(consumer, group, generation, member_id, topic, partition, offset):
    client = consumer._client
    node = consumer._coordinator.coordinator_id
    v = client.api_version(OffsetCommitRequest, max_version=7)
    if v >= 7:
        req = OffsetCommitRequest[v](group, generation, member_id, None, [(topic, [(partition, offset, -1, "")])])
    elif v == 6:
        req = OffsetCommitRequest[v](group, generation, member_id, [(topic, [(partition, offset, -1, "")])])
    elif v == 5:
        req = OffsetCommitRequest[v](group, generation, member_id, [(topic, [(partition, offset, "")])])
    else:
        req = OffsetCommitRequest[v](group, generation, member_id, -1, [(topic, [(partition, offset, "")])])
    fut = client.send(node, req)
    client.poll(future=fut, timeout_ms=30000)
    if not fut.is_done:
        raise RuntimeError("no OffsetCommit response within 30 s")
    if fut.failed():
        raise fut.exception
    resp = fut.value
    code = resp.topics[0][1][0][1]
    return {"version": v, "code": code, "error": Errors.for_code(code).__name__}


def main():
    bootstrap, topic, group = sys.argv[1:4]
    out = {}
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="kafka-python-bad-commits",
    )
    consumer.subscribe([topic])
    deadline = time.time() + 60
    consumed = 0
    while not consumer.assignment() and time.time() < deadline:
        for _tp, msgs in consumer.poll(timeout_ms=500).items():
            consumed += len(msgs)
    assignment = sorted(tp.partition for tp in consumer.assignment())
    out["assignment"] = assignment
    gen = consumer._coordinator._generation
    out["generation"] = gen.generation_id
    member = gen.member_id
    out["unknown_topic"] = commit_raw(consumer, group, gen.generation_id, member, "no-such-topic", 0, 1)
    out["unknown_partition"] = commit_raw(consumer, group, gen.generation_id, member, topic, 99, 1)
    out["stale_generation"] = commit_raw(consumer, group, gen.generation_id - 1, member, topic, 0, 1)
    out["unknown_member"] = commit_raw(consumer, group, gen.generation_id, "no-such-member", topic, 0, 1)
    out["good"] = commit_raw(consumer, group, gen.generation_id, member, topic, 0, 1)

    # librdkafka: an unknown topic in a commit.
    from confluent_kafka import Consumer, KafkaException
    from confluent_kafka import TopicPartition as CTP

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group + "-rdkafka", "enable.auto.commit": False})
    try:
        res = c.commit(offsets=[CTP("no-such-topic", 0, 5)], asynchronous=False)
        errs = [tp.error.name() for tp in res if tp.error]
        out["rdkafka_unknown_topic"] = errs[0] if errs else "NO_ERROR"
    except KafkaException as e:
        err = e.args[0]
        out["rdkafka_unknown_topic"] = err.name() if hasattr(err, "name") else str(err)
    c.close()

    # The member is still fine: new records arrive and commit normally.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(10):
        producer.send(topic, value=b"after-%d" % i, partition=0)
    producer.flush(60)
    producer.close()
    values = []
    deadline = time.time() + 60
    while len([v for v in values if v.startswith("after-")]) < 10 and time.time() < deadline:
        for _tp, msgs in consumer.poll(timeout_ms=500).items():
            values.extend(m.value.decode() for m in msgs)
    consumer.commit()
    out["after_values"] = sorted(v for v in values if v.startswith("after-"))
    out["generation_after"] = consumer._coordinator._generation.generation_id
    committed = consumer.committed(TopicPartition(topic, 0))
    out["committed_p0"] = committed
    consumer.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
