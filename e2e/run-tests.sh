#!/usr/bin/env bash
# The project's test entry point: installs the external tools, builds the
# workspace and runs every test (unit, integration and end-to-end against real
# Kafka tools). Under CI=true also checks formatting and clippy.
#
# Every phase runs (unless a phase it depends on failed) and is reported at the
# end; the script exits non-zero if any phase failed.
#
# Environment:
#   CI=true                 also run `cargo fmt --check` and clippy; e2e tools must exist
#   OXBOW_E2E_TARGET=kafka  run the e2e suite against a real Apache Kafka 4.1 instead of oxbow
#   OXBOW_E2E_THREADS       parallel e2e tests (default 2: each test runs a broker + JVM tools)
#   (OXBOW_E2E_BROKERS      set by the phases: 1 for the e2e suite, 3 for its cluster phase)
#   OXBOW_CACHE             tool cache (default ~/.cache/oxbow)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

E2E_THREADS="${OXBOW_E2E_THREADS:-2}"
CI_MODE=0
[[ ${CI:-} == true || ${CI:-} == 1 ]] && CI_MODE=1

PHASES=()
RESULTS=()
FAILED=0

# Failed tests by name, printed after the summary: a CI log that keeps only its tail still
# says what failed (cargo's "test … FAILED" lines and panics; the k8s phase's own report).
FAILURE_REPORT="$ROOT/target/failure-report.log"
mkdir -p "$ROOT/target"
: >"$FAILURE_REPORT"
export OXBOW_K8S_FAILURE_REPORT="$ROOT/target/k8s-failure-report.log"
: >"$OXBOW_K8S_FAILURE_REPORT"

phase() { # name command...
  local name=$1
  shift
  echo
  echo "==================== run-tests: $name ===================="
  local start=$SECONDS
  local log rc out tee_pid
  log=$(mktemp)
  # Not a pipeline: the command runs in this shell (`collect` waits for this shell's
  # background jobs, which a pipeline's subshell cannot), its output copied by a tee that is
  # waited for (once its input is closed) before the log is read.
  exec {out}> >(tee "$log")
  tee_pid=${!:-}
  "$@" >&"$out" 2>&1
  rc=$?
  exec {out}>&-
  # Bounded: a process the command left behind may still hold the pipe open.
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -n $tee_pid ]] && kill -0 "$tee_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $rc != 0 ]]; then
    { echo "---- $name: failed tests and panics (first 40):"
      grep -E '^test .* FAILED$|panicked at|^---- .* stdout ----$' "$log" | head -n 40; } >>"$FAILURE_REPORT"
  fi
  rm -f "$log"
  local took=$((SECONDS - start))
  PHASES+=("$name")
  if [[ $rc == 0 ]]; then
    RESULTS+=("ok (${took}s)")
  else
    RESULTS+=("FAILED rc=$rc (${took}s)")
    FAILED=1
  fi
  echo "==================== run-tests: $name: ${RESULTS[-1]} ===================="
  return $rc
}

skip() { # name reason
  PHASES+=("$1")
  RESULTS+=("skipped: $2")
  FAILED=1
}

# 1. External tools (Kafka 4.1 CLI jars, kcat, Python clients). Cached.
phase "install-tools" bash e2e/scripts/install-tools.sh
TOOLS_OK=$?

# 2. Build everything (the e2e tests run target/debug/oxbow-broker).
phase "cargo build --workspace" cargo build --workspace --all-targets
BUILD_OK=$?

# Background jobs run in their own process group (setsid), so that an interrupted run stops
# them with everything they started (go build, podman, the fuzzer), not just their shell.
BG_PIDS=()
BG_PID=
background() { # log-file command... ; sets BG_PID (not a subshell: the job is this shell's child)
  local log=$1
  shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  BG_PID=$!
  BG_PIDS+=("$BG_PID")
}
stop_background() {
  local pid
  for pid in "${BG_PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
}
trap stop_background EXIT
collect() { # pid log start-seconds what: waits for a background job, prints its output
  local rc=0
  wait "$1" || rc=$?
  cat "$2"
  echo "$4 ran $((SECONDS - $3))s in all (in the background)"
  return $rc
}

# 2b. The Kubernetes phase's prerequisites, prepared in the background while the e2e suites
#     run: the control plane's and the real node's binaries from the Go module proxy (about
#     10 CPU-minutes cold), the node's Debian packages, and the images of the project's
#     Dockerfiles (from the binaries just built). The e2e suites mostly wait on JVMs, brokers
#     and the network, so at `nice 19` this soaks up their idle CPU and takes almost nothing
#     from them; whatever is left is waited for just before the Kubernetes phase.
K8S_PREP_PID=
K8S_PREP_LOG="$ROOT/target/k8s-prep.log"
if [[ $BUILD_OK == 0 ]]; then
  mkdir -p "$ROOT/target"
  K8S_PREP_START=$SECONDS
  background "$K8S_PREP_LOG" nice -n 19 bash -c \
    'e2e/k8s/build.sh all node >/dev/null && e2e/k8s/images.sh >/dev/null'
  K8S_PREP_PID=$BG_PID
  echo "run-tests: Kubernetes prerequisites are being prepared in the background (log: $K8S_PREP_LOG)"
fi

# 3. Tests: unit + integration of all crates, then the end-to-end suite.
if [[ $BUILD_OK == 0 ]]; then
  phase "cargo test (unit + integration)" cargo test --workspace --exclude oxbow-e2e --no-fail-fast
  if [[ $TOOLS_OK == 0 || $CI_MODE == 0 ]]; then
    XFAIL_LOG="$ROOT/target/e2e-expected-failures.log"
    rm -f "$XFAIL_LOG"
    phase "cargo test -p oxbow-e2e (real tools vs ${OXBOW_E2E_TARGET:-oxbow})" \
      env OXBOW_E2E_BROKERS=1 cargo test -p oxbow-e2e --no-fail-fast -- --test-threads="$E2E_THREADS"
    # The CLI and group suites again, against a cluster of three combined nodes (replication
    # factor 3, min.insync.replicas 2; e2e/src/target.rs): the same tests, the tools given all
    # three addresses.
    phase "cli_tools + groups on 3 brokers (OXBOW_E2E_BROKERS=3)" \
      env OXBOW_E2E_BROKERS=3 cargo test -p oxbow-e2e --test cli_tools --test groups \
      --no-fail-fast -- --test-threads="$E2E_THREADS"
    # Tests marked expected_failure_on_oxbow (e2e/src/lib.rs) failed as expected; cargo
    # lists them as ok, so name them here and in the summary (an XPASS fails its test).
    if [[ -s $XFAIL_LOG ]]; then
      echo "e2e expected failures (XFAIL, not passes):"
      cat "$XFAIL_LOG"
      PHASES+=("e2e expected failures (XFAIL)")
      RESULTS+=("$(wc -l <"$XFAIL_LOG") test(s), listed above")
    fi
  else
    skip "cargo test -p oxbow-e2e" "install-tools failed"
  fi
else
  skip "cargo test" "build failed"
fi

# 3b. Fuzzing smoke run: each cargo-fuzz target of broker/fuzz for 25 s from the seed corpus
#     of real client requests; any crash fails the phase (e2e/scripts/fuzz.sh, longer runs).
#     It runs beside the Kubernetes phase: that phase mostly waits on pods and the API server,
#     the fuzzer keeps one core busy (at `nice 19`: each target runs for a fixed time, so it
#     yields to the node's processes at no cost to the run's length), and side by side they
#     save the fuzz phase's ~7 minutes of wall time. Its output is kept in a file and printed
#     when it is collected.
FUZZ_PID=
FUZZ_LOG="$ROOT/target/fuzz-smoke.log"
if [[ $BUILD_OK == 0 ]]; then
  if [[ -n $K8S_PREP_PID ]]; then
    phase "k8s prerequisites (prepared in the background; collected)" \
      collect "$K8S_PREP_PID" "$K8S_PREP_LOG" "$K8S_PREP_START" "preparing the Kubernetes prerequisites"
  fi
  echo
  echo "==================== run-tests: fuzz smoke started in the background ===================="
  FUZZ_START=$SECONDS
  background "$FUZZ_LOG" nice -n 19 bash e2e/scripts/fuzz.sh 25
  FUZZ_PID=$BG_PID
fi

# 4. Kubernetes: a real kube-apiserver, etcd and kube-controller-manager on loopback and a real
#    node (containerd, kubelet, kube-proxy, kube-scheduler, CoreDNS; all from the Go module
#    proxy and Debian packages, cached) running the images of broker/Dockerfile and
#    operator/Dockerfile, with kubectl and helm. Needs root (containerd, the CNI bridge,
#    iptables) and target/debug's binaries (the images package them).
if [[ $BUILD_OK == 0 ]]; then
  phase "k8s (local control plane, real node)" bash e2e/k8s/test.sh
else
  skip "k8s" "build failed"
fi

if [[ -n $FUZZ_PID ]]; then
  phase "fuzz smoke (cargo-fuzz, 25 s per target; collected)" \
    collect "$FUZZ_PID" "$FUZZ_LOG" "$FUZZ_START" "fuzz smoke (beside the k8s phase)"
else
  skip "fuzz smoke" "build failed"
fi

# 5. Static checks, last so test failures show first.
if [[ $CI_MODE == 1 ]]; then
  phase "cargo fmt --check" cargo fmt --all --check
  phase "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
fi

echo
echo "==================== run-tests: summary ===================="
for i in "${!PHASES[@]}"; do
  printf '  %-55s %s\n' "${PHASES[$i]}" "${RESULTS[$i]}"
done
if [[ -s $FAILURE_REPORT || -s $OXBOW_K8S_FAILURE_REPORT ]]; then
  echo
  echo "==================== run-tests: what failed ===================="
  cat "$FAILURE_REPORT" "$OXBOW_K8S_FAILURE_REPORT"
fi
if [[ $FAILED == 0 ]]; then
  echo "run-tests: all phases passed"
else
  echo "run-tests: FAILED"
fi
exit $FAILED
