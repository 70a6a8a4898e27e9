#!/usr/bin/env bash
# needs-cluster
# Three broker pods of one StatefulSet form ONE cluster through the headless Service's pod DNS
# names (controller.quorum.voters): every broker's Metadata lists all three, with one cluster
# id, and a controller among them (Metadata names a live broker: a random one in Kafka 4.1, itself in oxbow).
. "$(dirname "$0")/lib.sh"
ensure_ns
apply_brokers 3  # idempotent: lets the scenario run on its own
wait_until 180 "statefulset oxbow 3/3 ready" pods_ready 3
wait_until 60 "every broker lists the same 3 brokers and cluster id" cluster_formed 3
{ cluster_formed 3 || true; } | while read -r view; do say "$view"; done
say "PASS"
