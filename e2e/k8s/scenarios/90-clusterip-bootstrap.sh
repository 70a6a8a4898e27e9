#!/usr/bin/env bash
# needs-cluster
# A client in a pod bootstraps through a ClusterIP Service: `oxbow-bootstrap:9092` resolves
# through the cluster DNS (CoreDNS on the real node; the name is in no hosts file), kube-proxy
# routes the Service IP to a broker, and the metadata it answers lists brokers 0,1,2 at their pod
# DNS names; a record produced before is then fetched from its leader by name, from the pod.
# The probe runs in OXBOW_PYTHON_IMAGE (built by images.sh on the real node). Not on the pod
# runner: it has no Service IPs and runs no foreign images.
. "$(dirname "$0")/lib.sh"
if [[ $OXBOW_K8S_PLATFORM == local ]]; then skip "the pod runner routes no ClusterIP"; fi
: "${OXBOW_PYTHON_IMAGE:=python:3.12-alpine}"
ensure_ns
apply_brokers 3
wait_until 180 "statefulset oxbow 3/3 ready" pods_ready 3
kc -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: oxbow-bootstrap}
spec:
  type: ClusterIP
  selector: {app.kubernetes.io/name: oxbow-broker}
  ports: [{name: kafka, port: 9092, targetPort: 9092}]
YAML
kc -n "$NS" create configmap kafka-probe --from-file=kafka_probe.py="$K8S_DIR/lib/kafka_probe.py" \
  --dry-run=client -o yaml | kc -n "$NS" apply -f - >/dev/null
ip=$(kc -n "$NS" get svc oxbow-bootstrap -o jsonpath='{.spec.clusterIP}')
say "oxbow-bootstrap ClusterIP $ip"
[[ $ip =~ ^[0-9.]+$ ]] || fail "no ClusterIP: $ip"

# probe_pod NAME ARGS... : run the probe in a pod to completion, print its output
probe_pod() {
  local name=$1 args; shift
  args=$(printf '"%s",' "$@"); args=${args%,}
  kc -n "$NS" delete pod "$name" --ignore-not-found --wait=true >/dev/null
  kc -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, runAsUser: 65532}
  containers:
    - name: probe
      image: $OXBOW_PYTHON_IMAGE
      imagePullPolicy: IfNotPresent
      command: ["python3", "/probe/kafka_probe.py", $args]
      volumeMounts: [{name: probe, mountPath: /probe}]
  volumes: [{name: probe, configMap: {name: kafka-probe}}]
YAML
  finished() { [[ $(kc -n "$NS" get pod "$name" -o jsonpath='{.status.phase}') =~ ^(Succeeded|Failed)$ ]]; }
  wait_until 90 "pod $name finished" finished
  kc -n "$NS" logs "$name"
  [[ $(kc -n "$NS" get pod "$name" -o jsonpath='{.status.phase}') == Succeeded ]]
}

out=$(probe_pod bootstrap-metadata oxbow-bootstrap:9092) || fail "metadata through oxbow-bootstrap:9092 from a pod failed: $out"
say "from a pod: $out"
json "$out" "sorted(b[0] for b in d['brokers']) == [0, 1, 2] and all(b[1] == 'oxbow-%d.oxbow.$NS.svc.cluster.local' % b[0] for b in d['brokers'])" |
  grep -qx True || fail "the bootstrap Service's broker does not list brokers 0,1,2 at their pod DNS names: $out"

topic=bootstrap-$RANDOM
kafka_probe create "$(broker_dns 0)" "$topic" 1 3 >/dev/null || fail "cannot create $topic"
sent=$(kafka_probe send "$(broker_dns 0)" "$topic" from-the-host) || fail "cannot produce to $topic: $sent"
out=$(probe_pod bootstrap-fetch fetch oxbow-bootstrap:9092 "$topic") || fail "fetch through oxbow-bootstrap:9092 from a pod failed: $out"
say "from a pod: $out"
json "$out" "'from-the-host' in d['values']" | grep -qx True || fail "the pod did not read the record back: $out"
kc -n "$NS" delete pod bootstrap-metadata bootstrap-fetch --wait=false >/dev/null
say "PASS"
