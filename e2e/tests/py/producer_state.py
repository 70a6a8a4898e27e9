"""Idempotent produce at the protocol level with kafka-python, so a test can send the very
same batch (producer id, epoch, sequence) before and after a broker restart, as a
producer retrying an unacknowledged request does.

usage: producer_state.py BOOTSTRAP init
         InitProducerId without a transactional id; prints "pid=<id> epoch=<epoch>".
       producer_state.py BOOTSTRAP produce TOPIC PID EPOCH SEQ COUNT PREFIX
         one batch of COUNT records PREFIX-0.. with base sequence SEQ to partition 0,
         acks=all; prints "error=<code> base_offset=<offset>". Retries while the broker
         is not reachable or the partition has no leader yet (after a restart).
       producer_state.py BOOTSTRAP offsets TOPIC
         prints "start=<log start> hw=<high watermark> lso=<last stable offset>" of
         partition 0 (ListOffsets earliest, latest read_uncommitted, latest read_committed).
Exits 1 on anything unexpected.
"""

import sys
import time

from kafka.client_async import KafkaClient
from kafka.protocol.init_producer_id import InitProducerIdRequest_v0
from kafka.protocol.list_offsets import ListOffsetsRequest_v2
from kafka.protocol.produce import ProduceRequest_v3
from kafka.record.default_records import DefaultRecordBatchBuilder

# Errors a client retries: the leader (or the producer id manager) is not known or not
# ready yet after a start.
RETRIABLE = {3, 5, 6, 7, 14, 15, 51}


def call(client, request, deadline):
    while time.time() < deadline:
        node = client.least_loaded_node()
        if node is None or not client.ready(node):
            client.poll(timeout_ms=100)
            continue
        future = client.send(node, request)
        client.poll(future=future, timeout_ms=30000)
        if future.succeeded():
            return future.value
        time.sleep(0.2)
    sys.exit("no answer to %s" % type(request).__name__)


def with_retries(what, deadline):
    while True:
        error, value = what()
        if error not in RETRIABLE or time.time() >= deadline:
            return error, value
        time.sleep(0.2)


def main():
    bootstrap, command = sys.argv[1:3]
    client = KafkaClient(bootstrap_servers=bootstrap, api_version=(2, 5))
    deadline = time.time() + 60
    if command == "init":
        def init():
            r = call(client, InitProducerIdRequest_v0(
                transactional_id=None, transaction_timeout_ms=60000), deadline)
            return r.error_code, r

        error, r = with_retries(init, deadline)
        if error != 0:
            sys.exit("InitProducerId: error %d" % error)
        print("pid=%d epoch=%d" % (r.producer_id, r.producer_epoch))
    elif command == "produce":
        topic, pid, epoch, seq, count, prefix = sys.argv[3:9]
        builder = DefaultRecordBatchBuilder(
            magic=2, compression_type=0, is_transactional=False, producer_id=int(pid),
            producer_epoch=int(epoch), base_sequence=int(seq), batch_size=1 << 20)
        now = int(time.time() * 1000)
        for i in range(int(count)):
            builder.append(i, timestamp=now, key=None, value=("%s-%d" % (prefix, i)).encode(), headers=[])
        records = bytes(builder.build())

        def produce():
            r = call(client, ProduceRequest_v3(
                transactional_id=None, required_acks=-1, timeout=30000,
                topics=[(topic, [(0, records)])]), deadline)
            (_, partitions), = r.topics
            (_, error, offset, _), = partitions
            return error, offset

        error, offset = with_retries(produce, deadline)
        print("error=%d base_offset=%d" % (error, offset))
    elif command == "offsets":
        topic = sys.argv[3]

        def list_offset(isolation, timestamp):
            def attempt():
                r = call(client, ListOffsetsRequest_v2(
                    replica_id=-1, isolation_level=isolation,
                    topics=[(topic, [(0, timestamp)])]), deadline)
                (_, partitions), = r.topics
                (_, error, _, offset), = partitions
                return error, offset
            error, offset = with_retries(attempt, deadline)
            if error != 0:
                sys.exit("ListOffsets: error %d" % error)
            return offset

        print("start=%d hw=%d lso=%d" % (list_offset(0, -2), list_offset(0, -1), list_offset(1, -1)))
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main()
