#!/usr/bin/env bash
# Local platform only: pod-runner features the broker scenarios do not reach — env from
# Secret/ConfigMap and $(VAR) expansion, Secret volumes, exec readiness probes run inside the
# container's mount namespace with its env, restartPolicy Always (CrashLoopBackOff, restart
# count) and Never (phase Failed), and in-cluster API access with the auto-mounted
# service-account token (what the operator will use). The probe uses the host's sh and curl.
. "$(dirname "$0")/lib.sh"
if [[ $OXBOW_K8S_PLATFORM != local ]]; then skip "local pod runner only"; fi
ensure_ns
kc -n "$NS" create rolebinding features-view --clusterrole=view --serviceaccount="$NS:default" >/dev/null 2>&1 || true
sed "s|OXBOW_BROKER_IMAGE|$OXBOW_BROKER_IMAGE|" <<'YAML' | kc -n "$NS" apply -f - >/dev/null
apiVersion: v1
kind: Secret
metadata: {name: features}
stringData: {token: s3cret}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: features}
data: {greeting: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: features}
spec:
  containers:
    - name: broker
      image: OXBOW_BROKER_IMAGE
      env:
        - {name: TOKEN, valueFrom: {secretKeyRef: {name: features, key: token}}}
        - {name: GREETING, valueFrom: {configMapKeyRef: {name: features, key: greeting}}}
        - {name: BOTH, value: "$(GREETING)-$(TOKEN)-$$(LITERAL)"}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: SA, value: /var/run/secrets/kubernetes.io/serviceaccount}
      args: ["--override", "node.id=9", "--override", "listeners=PLAINTEXT://$(POD_IP):9092", "--override", "log.dirs=/var/lib/oxbow-e2e/scratch"]
      readinessProbe:
        exec:
          command: ["/bin/sh", "-c", "[ \"$BOTH\" = 'hello-s3cret-$(LITERAL)' ] && [ \"$(cat /var/lib/oxbow-e2e/features/token)\" = s3cret ] && [ -d /var/lib/oxbow-e2e/scratch ] && curl -sf --cacert $SA/ca.crt -H \"Authorization: Bearer $(cat $SA/token)\" https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat $SA/namespace)/pods/features >/dev/null"]
        periodSeconds: 1
      volumeMounts:
        - {name: secret, mountPath: /var/lib/oxbow-e2e/features, readOnly: true}
        - {name: scratch, mountPath: /var/lib/oxbow-e2e/scratch}
  volumes:
    - {name: secret, secret: {secretName: features}}
    - {name: scratch, emptyDir: {}}
---
apiVersion: v1
kind: Pod
metadata: {name: crashloop}
spec:
  containers: [{name: broker, image: OXBOW_BROKER_IMAGE, args: ["--override", "node.id=not-a-number"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  restartPolicy: Never
  containers: [{name: broker, image: OXBOW_BROKER_IMAGE, args: ["--override", "node.id=not-a-number"]}]
YAML
jp() { kc -n "$NS" get pod "$1" -o "jsonpath=$2"; }
ready() { [[ $(jp features '{.status.conditions[?(@.type=="Ready")].status}') == True ]]; }
wait_until 30 "exec readiness probe sees env, secret volume, emptyDir and reaches the API with its token" ready
crashing() { (($(jp crashloop '{.status.containerStatuses[0].restartCount}') >= 2)) &&
  [[ $(jp crashloop '{.status.containerStatuses[0].lastState.terminated.exitCode}') != 0 ]]; }
wait_until 30 "crashloop pod restarted twice" crashing
failed() { [[ $(jp once '{.status.phase}') == Failed ]]; }
wait_until 30 "restartPolicy Never pod Failed" failed
[[ $(jp once '{.status.containerStatuses[0].restartCount}') == 0 ]] || fail "restartPolicy Never pod was restarted"
kc -n "$NS" get pods features crashloop once >&2
kc -n "$NS" delete pod features crashloop once --wait=false >/dev/null
kc -n "$NS" delete secret/features configmap/features >/dev/null
gone() { [[ -z $(kc -n "$NS" get pods features crashloop once -o name 2>/dev/null) ]]; }
wait_until 60 "pods deleted" gone
say "PASS"
