#!/usr/bin/env bash
# Stop everything up.sh started (pod processes, pod runner or the real node, controller manager,
# API server, etcd), remove the /etc/hosts block and, for the real node, its containers, mounts,
# bridge and iptables chains, and leave no process behind. Idempotent; safe after a crash.
# Deletes the run directory (cluster state) unless --keep is given.
set -uo pipefail
. "$(dirname "$0")/lib/env.sh"
# The node mode of the run being stopped is the one it was started with.
if [[ -f $RUN/node-mode ]]; then OXBOW_K8S_NODE=$(cat "$RUN/node-mode"); . "$(dirname "$0")/lib/env.sh"; fi
. "$(dirname "$0")/lib/node.sh"
keep=0; [[ ${1:-} == --keep ]] && keep=1

alive() { kill -0 "$1" 2>/dev/null; }
ours() { # pid carries our marker for this run dir
  tr '\0' '\n' 2>/dev/null < "/proc/$1/environ" | grep -qxF "$MARKER_ENV=$RUN"
}
stop_pid() { # pid grace
  local pid=$1 grace=$2 i
  alive "$pid" && ours "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < grace * 10; i++)); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null; sleep 0.1
}

if [[ -d $RUN ]]; then
  # 1. the real node: the controllers first (a StatefulSet would recreate the pods deleted
  # next), then the pods deleted through the kubelet, then its containers and components.
  if [[ $NODE_MODE == real ]]; then
    for c in kube-controller-manager kube-scheduler; do [[ -f $RUN/$c.pid ]] && stop_pid "$(cat "$RUN/$c.pid")" 10; done
    node_stop_pods; node_down
  fi
  # 1. the pod runner stops its pods itself (SIGTERM, grace, SIGKILL) and cleans /etc/hosts.
  [[ -f $RUN/podrunner.pid ]] && stop_pid "$(cat "$RUN/podrunner.pid")" 20
  # 2. control plane, in reverse start order.
  for c in kube-controller-manager kube-apiserver etcd; do
    [[ -f $RUN/$c.pid ]] && stop_pid "$(cat "$RUN/$c.pid")" 10
  done
  # 3. survivors of a crash: pod processes recorded by the runner, then anything with our marker.
  for f in "$RUN"/state/pids/*; do
    [[ -e $f ]] || continue
    pid=$(basename "$f")
    if alive "$pid" && ours "$pid"; then kill -KILL -- "-$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null; fi
  done
  for _ in 1 2 3; do
    left=()
    for e in /proc/[0-9]*/environ; do
      pid=${e#/proc/}; pid=${pid%/environ}
      [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
      ours "$pid" && left+=("$pid")
    done
    ((${#left[@]})) || break
    echo "[down] killing leftover processes: ${left[*]}" >&2
    kill -KILL "${left[@]}" 2>/dev/null; sleep 0.3
  done
fi
# 4. the real node's mounts, bridge, iptables chains, cgroups (after every process is gone)
[[ $NODE_MODE == real && -d $RUN ]] && node_cleanup_host
# 5. hosts block (the runner removes it on a clean stop; this covers a crash).
if grep -qF "# BEGIN oxbow-podrunner $RUN/state" /etc/hosts 2>/dev/null; then
  python3 - "$RUN/state" <<'PY'
import sys
tag, end = "# BEGIN oxbow-podrunner " + sys.argv[1], "# END oxbow-podrunner " + sys.argv[1]
lines, out, skip = open("/etc/hosts").read().splitlines(), [], False
for l in lines:
    if l == tag: skip = True; continue
    if l == end: skip = False; continue
    if not skip: out.append(l)
with open("/etc/hosts", "r+") as f:
    f.seek(0); f.write("\n".join(out) + "\n"); f.truncate()
PY
fi
if ((keep == 0)); then rm -rf "$RUN"; else rm -f "$RUN"/*.pid; fi
echo "[down] local control plane stopped" >&2
