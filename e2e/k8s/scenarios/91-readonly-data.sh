#!/usr/bin/env bash
# A broker pod runs as the non-root user its image names (USER 65532: no runAsUser here) and,
# when its data volume is not writable, fails clearly: the container exits non-zero, the pod
# never turns Ready, and its log names the data directory and the reason. On the real node the
# broker process of the StatefulSet is also checked to run as uid 65532 on the host.
# Not on the pod runner: it runs processes as root and its volumes are plain bind mounts.
. "$(dirname "$0")/lib.sh"
if [[ $OXBOW_K8S_PLATFORM == local ]]; then skip "the pod runner runs pods as root"; fi
ensure_ns
kc -n "$NS" delete pod oxbow-readonly --ignore-not-found --wait=true >/dev/null
kc -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: oxbow-readonly}
spec:
  restartPolicy: Never
  containers:
    - name: broker
      image: $OXBOW_BROKER_IMAGE
      imagePullPolicy: IfNotPresent
      args: ["--override", "log.dirs=/var/lib/oxbow/data"]
      volumeMounts: [{name: data, mountPath: /var/lib/oxbow/data, readOnly: true}]
  volumes: [{name: data, emptyDir: {}}]
YAML
failed() { [[ $(kc -n "$NS" get pod oxbow-readonly -o jsonpath='{.status.phase}') == Failed ]]; }
wait_until 60 "pod oxbow-readonly Failed" failed
code=$(kc -n "$NS" get pod oxbow-readonly -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}')
log=$(kc -n "$NS" logs oxbow-readonly 2>&1 | tail -n 5)
say "exit code $code; log: $log"
[[ $code =~ ^[0-9]+$ && $code != 0 ]] || fail "the broker did not exit non-zero: $code"
[[ $log == */var/lib/oxbow/data* ]] || fail "the log does not name the data directory"
[[ $log == *"Read-only file system"* || $log == *"Permission denied"* ]] || fail "the log does not say why the directory is unusable"
kc -n "$NS" delete pod oxbow-readonly --wait=false >/dev/null

if [[ $OXBOW_K8S_PLATFORM == node ]] && kc -n "$NS" get sts oxbow >/dev/null 2>&1; then
  # the StatefulSet's brokers, seen from the host: every oxbow-broker process in a kubepods cgroup
  uids=()
  for pid in $(pgrep -x oxbow-broker); do
    grep -q kubepods "/proc/$pid/cgroup" 2>/dev/null || continue
    uids+=("$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")")
  done
  say "uids of the node's broker processes: ${uids[*]:-none}"
  ((${#uids[@]})) || fail "no broker process found on the node"
  for u in "${uids[@]}"; do [[ $u == 65532 ]] || fail "a broker runs as uid $u, not 65532"; done
fi
say "PASS"
