"""A consumer-group member on librdkafka (confluent-kafka), printing one JSON
event per line in the same shape as Kafka's kafka-verifiable-consumer.sh, so
the tests read Java and librdkafka members the same way:

  {"name":"startup_complete"}
  {"name":"partitions_assigned","partitions":[{"topic":..,"partition":..}]}
  {"name":"partitions_revoked","partitions":[...]}
  {"name":"record_data","key":..,"value":..,"topic":..,"partition":..,"offset":..}
  {"name":"offsets_committed","offsets":[{"topic","partition","offset"}],"success":true|false,"error":..}
  {"name":"shutdown_complete"}

Every event carries "timestamp" (ms since the epoch). Offsets are committed
synchronously after each batch. SIGTERM makes the member close() (leave the
group at once) and exit 0.

usage: groups_member.py BOOTSTRAP TOPIC GROUP [key=value librdkafka config ...]
"""

import json
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException


def emit(name, **fields):
    ev = {"timestamp": int(time.time() * 1000), "name": name}
    ev.update(fields)
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


def parts(tps):
    return [{"topic": tp.topic, "partition": tp.partition} for tp in tps]


def main():
    bootstrap, topic, group = sys.argv[1:4]
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "client.id": "rdkafka-member",
    }
    for kv in sys.argv[4:]:
        k, v = kv.split("=", 1)
        conf[k] = v

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    consumer = Consumer(conf)

    def on_assign(c, tps):
        emit("partitions_assigned", partitions=parts(tps))

    def on_revoke(c, tps):
        emit("partitions_revoked", partitions=parts(tps))

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    emit("startup_complete")
    while not stop:
        msgs = consumer.consume(num_messages=500, timeout=0.2)
        batch = {}
        for m in msgs:
            if m.error():
                emit("consumer_error", error=str(m.error()))
                continue
            emit(
                "record_data",
                key=None if m.key() is None else m.key().decode(),
                value=None if m.value() is None else m.value().decode(),
                topic=m.topic(),
                partition=m.partition(),
                offset=m.offset(),
            )
            batch[(m.topic(), m.partition())] = m.offset() + 1
        if batch:
            from confluent_kafka import TopicPartition

            tps = [TopicPartition(t, p, o) for (t, p), o in batch.items()]
            offsets = [{"topic": t, "partition": p, "offset": o} for (t, p), o in batch.items()]
            try:
                res = consumer.commit(offsets=tps, asynchronous=False)
                errs = [str(tp.error) for tp in res if tp.error]
                emit("offsets_committed", offsets=offsets, success=not errs, error=";".join(errs) or None)
            except KafkaException as e:
                emit("offsets_committed", offsets=offsets, success=False, error=str(e))
    consumer.close()
    emit("shutdown_complete")


if __name__ == "__main__":
    main()
