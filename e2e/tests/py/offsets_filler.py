"""Fills __consumer_offsets with many offset commits through librdkafka
(confluent-kafka), so its partition gets large and mostly superseded: the log
cleaner then has real work to do.

Each round commits, for every group, offsets of all PARTITIONS partitions of
TOPIC with METADATA_BYTES of commit metadata (simple commits: the groups have
no members, as `kafka-consumer-groups.sh --reset-offsets` does). Prints
{"name":"filled","rounds":..,"records":..,"bytes":..} at the end and exits 0;
any failed commit exits 1 with the error.

usage: offsets_filler.py BOOTSTRAP TOPIC PARTITIONS GROUPS ROUNDS METADATA_BYTES
"""

import json
import sys

from confluent_kafka import Consumer, KafkaException, TopicPartition


def main():
    bootstrap, topic = sys.argv[1:3]
    partitions, groups, rounds, metadata_bytes = (int(a) for a in sys.argv[3:7])
    consumers = [
        Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"filler-{g}",
                "enable.auto.commit": False,
                "client.id": "offsets-filler",
            }
        )
        for g in range(groups)
    ]
    records = 0
    for r in range(rounds):
        # The metadata differs per round so no two commits are byte-identical.
        metadata = (f"{r:08d}" * (metadata_bytes // 8 + 1))[:metadata_bytes]
        for c in consumers:
            tps = [TopicPartition(topic, p, r + 1, metadata=metadata) for p in range(partitions)]
            try:
                res = c.commit(offsets=tps, asynchronous=False)
            except KafkaException as e:
                print(json.dumps({"name": "commit_failed", "round": r, "error": str(e)}), flush=True)
                sys.exit(1)
            errs = [str(tp.error) for tp in res if tp.error]
            if errs:
                print(json.dumps({"name": "commit_failed", "round": r, "error": ";".join(errs)}), flush=True)
                sys.exit(1)
            records += partitions
    for c in consumers:
        c.close()
    print(
        json.dumps(
            {"name": "filled", "rounds": rounds, "records": records, "bytes": records * metadata_bytes}
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
