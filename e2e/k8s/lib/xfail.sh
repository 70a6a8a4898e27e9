# Sourced by test.sh and kind.sh: why a scenario is expected to fail in this run.
#
# scenario_xfail FILE prints the reason, or nothing when FILE must pass:
#  - its `# expected-failure: <reason>` line: it checks something not built yet;
#  - a `# needs-cluster` line while OXBOW_E2E_EXPECT_CLUSTER is not 1: the broker under test
#    is not expected to form one cluster of the StatefulSet's pods (test.sh sets 0 for the
#    fake broker of OXBOW_K8S_FAKE_BROKER=1, which answers as a lone broker; 1 otherwise).
scenario_xfail() {
  local reason
  reason=$(sed -n 's/^# expected-failure: //p' "$1" | head -n 1)
  if [[ -z $reason && ${OXBOW_E2E_EXPECT_CLUSTER:-1} != 1 ]] && grep -q '^# needs-cluster' "$1"; then
    reason="OXBOW_E2E_EXPECT_CLUSTER=${OXBOW_E2E_EXPECT_CLUSTER}: the broker under test is not expected to form one cluster"
  fi
  echo "$reason"
}
