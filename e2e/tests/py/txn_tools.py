"""Transactions for kafka-transactions.sh to look at (e2e/tests/transactions.rs).

usage: txn_tools.py BOOTSTRAP open TOPIC TXN_ID
         a confluent-kafka (librdkafka) transactional producer writes open-0..2 to TOPIC-0
         in a transaction that it leaves open; prints "open" and waits to be killed.
       txn_tools.py BOOTSTRAP hanging TOPIC
         writes hanging-0..2 to TOPIC-0 (partition leader: node 0) in a transactional
         batch of a producer id that no transactional id owns (InitProducerId without
         one), without AddPartitionsToTxn: no coordinator knows the transaction, so it
         stays open until a marker is written for it (what Kafka calls a hanging
         transaction). kafka-python's protocol classes, as a misbehaving client would.
         Prints "producer-id=<id> epoch=<epoch> base-offset=<offset>".
Exits 1 on anything unexpected.
"""

import sys
import time

from confluent_kafka import Producer


def open_transaction(bootstrap, topic, txn_id):
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 600000,
        }
    )
    p.init_transactions(60)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, key=b"k%d" % i, value=b"open-%d" % i, partition=0)
    p.flush(30)
    print("open", flush=True)
    # Left open: the test kills this process.
    time.sleep(3600)


def hanging_transaction(bootstrap, topic):
    from kafka.client_async import KafkaClient
    from kafka.protocol.init_producer_id import InitProducerIdRequest
    from kafka.protocol.produce import ProduceRequest
    from kafka.record.default_records import DefaultRecordBatchBuilder

    client = KafkaClient(bootstrap_servers=bootstrap, client_id="txn-tools-hanging")
    node = 0
    deadline = time.time() + 30
    while not client.ready(node):
        client.poll(timeout_ms=100)
        if time.time() > deadline:
            sys.exit("cannot connect to node 0")
    init = client.send_and_receive(
        node, InitProducerIdRequest[0](transactional_id=None, transaction_timeout_ms=60000)
    )
    if init.error_code != 0:
        sys.exit("InitProducerId: error %d" % init.error_code)
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=1,
        producer_id=init.producer_id,
        producer_epoch=init.producer_epoch,
        base_sequence=0,
        batch_size=1 << 20,
    )
    now = int(time.time() * 1000)
    for i in range(3):
        builder.append(i, now, b"k%d" % i, b"hanging-%d" % i, [])
    records = bytes(builder.build())
    # The transactional id only satisfies the broker's authorization check of
    # transactional records: no coordinator is asked.
    produce = ProduceRequest[7](
        transactional_id="txn-tools-hanging",
        required_acks=-1,
        timeout=30000,
        topics=[(topic, [(0, records)])],
    )
    response = client.send_and_receive(node, produce)
    partition = response.topics[0][1][0]
    error_code, base_offset = partition[1], partition[2]
    if error_code != 0:
        sys.exit("Produce: error %d" % error_code)
    print(
        "producer-id=%d epoch=%d base-offset=%d"
        % (init.producer_id, init.producer_epoch, base_offset),
        flush=True,
    )
    client.close()


def main():
    bootstrap, mode = sys.argv[1], sys.argv[2]
    if mode == "open":
        open_transaction(bootstrap, sys.argv[3], sys.argv[4])
    elif mode == "hanging":
        hanging_transaction(bootstrap, sys.argv[3])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
