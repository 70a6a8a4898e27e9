#!/usr/bin/env bash
# Stop or start the real node's kubelet of the run in OXBOW_K8S_RUN_DIR (the node-lifecycle
# scenario: a node whose kubelet stops turns NotReady). The containers keep running meanwhile,
# as they do when a kubelet stops on a real node: containerd runs them, not the kubelet.
#   lib/node-kubelet.sh stop|start
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$K8S_DIR/lib/node.sh"
[[ $(cat "$RUN/node-mode" 2>/dev/null) == real ]] || { echo "no real node in $RUN" >&2; exit 2; }
case ${1:-} in
  stop)
    pid=$(cat "$RUN/kubelet.pid")
    tr '\0' '\n' < "/proc/$pid/environ" | grep -qxF "$MARKER_ENV=$RUN" || { echo "kubelet $pid is not this run's" >&2; exit 1; }
    kill -TERM "$pid"
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    echo "kubelet $pid still running 10 s after SIGTERM" >&2; exit 1 ;;
  start) node_kubelet_start ;;
  *) echo "usage: $0 stop|start" >&2; exit 2 ;;
esac
