# The real node (OXBOW_K8S_NODE=real), sourced by up.sh and down.sh after env.sh:
#   containerd (CRI plugin; own config, socket, root and state under $RUN/containerd, so a
#   system containerd is never touched), a CNI bridge network ($NODE_BRIDGE, $POD_CIDR),
#   kubelet registered as Node $NODE_NAME (cgroupfs driver), kube-proxy (iptables mode),
#   kube-scheduler, and CoreDNS serving cluster.local on the node's bridge address behind the
#   kube-dns Service ($CLUSTER_DNS_IP).
# Everything this creates is named after or lives under this run, so node_down removes only it.

NODE_DIR=$RUN/node
CONTAINERD_SOCK=$NODE_DIR/containerd/containerd.sock
# CNI network name per run: the bridge plugin's masquerade rules carry it in their comments.
CNI_NET=oxbow-$NODE_BRIDGE
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

node_write_configs() {
  mkdir -p "$NODE_DIR"/{containerd,cni/net.d,cni/ipam,kubelet,kube-proxy,coredns,pods-logs}
  cat > "$NODE_DIR/containerd/config.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # Pods' network namespaces under our state dir, not /var/run/netns: down removes exactly ours.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # These machines withhold CAP_SYS_RESOURCE even from root: an oom_score_adj below the current
  # one (-998 for sandboxes, -997 for Guaranteed pods) is refused and runc fails to start the
  # container. Restricting it to containerd's own value is what rootless setups do.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # the kubelet's cgroup driver is cgroupfs (no systemd on these machines)
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
    max_conf_num = 1
EOF
  # hairpinMode: a pod reaching itself through a Service IP. ipMasq: pods reaching beyond the node.
  cat > "$NODE_DIR/cni/net.d/10-oxbow.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": "$NODE_DIR/cni/ipam",
               "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
               "routes": [{"dst": "0.0.0.0/0"}]}
    }
  ]
}
EOF
  # The host's resolv.conf may name a resolver only the host reaches; CoreDNS forwards to it.
  cat > "$NODE_DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
# Since v1.35 the kubelet refuses to start on cgroup v1 unless told otherwise; these machines
# mount the hybrid v1 layout (stat -fc %T /sys/fs/cgroup: tmpfs), so say so explicitly.
failCgroupV1: false
containerRuntimeEndpoint: "unix://$CONTAINERD_SOCK"
address: "$NODE_IP"
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
clusterDNS: ["$CLUSTER_DNS_IP"]
clusterDomain: cluster.local
resolvConf: "$NODE_DIR/kubelet/resolv.conf"
podLogsDir: "$NODE_DIR/pods-logs"
failSwapOn: false
rotateCertificates: false
serverTLSBootstrap: false
# A shared developer disk is often more than 85% full: the defaults would put the node under
# DiskPressure and evict the brokers, or garbage-collect the locally built images (which no
# registry can give back).
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 87600h
# Node lifecycle in test time: status every 4 s, so a stopped kubelet shows within the
# controller manager's --node-monitor-grace-period.
nodeStatusUpdateFrequency: 4s
nodeStatusReportFrequency: 4s
syncFrequency: 10s
fileCheckFrequency: 10s
staticPodPath: ""
EOF
  grep -v '^nameserver 127\.' /etc/resolv.conf > "$NODE_DIR/kubelet/resolv.conf" || true
  # what the scenarios' host-side Kafka probe resolves with (scenarios/lib.sh: kafka_probe)
  printf 'nameserver %s\nsearch svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:2\n' "$CLUSTER_DNS_IP" > "$NODE_DIR/probe-resolv.conf"
  printf '127.0.0.1 localhost\n' > "$NODE_DIR/probe-hosts"
  cat > "$NODE_DIR/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: "$RUN/kube-proxy.kubeconfig"}
hostnameOverride: "$NODE_NAME"
clusterCIDR: "$POD_CIDR"
bindAddress: 127.0.0.1
metricsBindAddress: "127.0.0.1:$KUBE_PROXY_METRICS_PORT"
healthzBindAddress: "127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT"
# no conntrack sysctls: a shared (and virtual) machine's kernel settings are not ours to change
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, syncPeriod: 10s, minSyncPeriod: 0s}
EOF
  cat > "$NODE_DIR/coredns/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    ready 127.0.0.1:$((KUBELET_PORT + 10))
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $RUN/coredns.kubeconfig oxbow-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    forward . $NODE_DIR/kubelet/resolv.conf
    cache 5
}
EOF
}

node_bridge_up() {
  mkdir -p "$NODE_DIR"
  # Forwarding for pod -> Service IP -> pod on the same bridge; bridged traffic through
  # iptables (br_netfilter) so kube-proxy's DNAT is undone on the way back. Both are host-wide:
  # the previous forwarding value is kept and restored by node_down.
  [[ -f $NODE_DIR/ip_forward.before ]] || cat /proc/sys/net/ipv4/ip_forward > "$NODE_DIR/ip_forward.before"
  echo 1 > /proc/sys/net/ipv4/ip_forward
  [[ $(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null) == 1 ]] ||
    die "net.bridge.bridge-nf-call-iptables is not 1 (br_netfilter): Service traffic between pods would not be un-NATed"
  # One real node per machine: kube-proxy's KUBE-* chains are host-wide (a second kube-proxy
  # would rewrite the first one's Services) and the pod CIDR would be routed twice. Another
  # run's bridge holding the pod CIDR says one is up: refuse rather than break both.
  local other
  other=$(ip -o -4 route show "$POD_CIDR" 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | grep -vxF "$NODE_BRIDGE" | head -n1 || true)
  [[ -z $other ]] || die "another real node is up ($other routes $POD_CIDR): one per machine; stop it (its down.sh) or use OXBOW_K8S_NODE=podrunner"
  # The bridge exists before the API server, CoreDNS and the kubelet start: they bind the node IP.
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$NODE_BRIDGE" type bridge
  ip addr show dev "$NODE_BRIDGE" | grep -qF " $NODE_IP/" || ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
}

node_start() {
  local k
  for k in kubelet kube-proxy kube-scheduler coredns; do write_kubeconfig "$RUN/$k.kubeconfig" "$k"; done
  node_write_configs
  start containerd containerd --config "$NODE_DIR/containerd/config.toml"
  wait_for containerd 30 ctr_ version
  check_alive containerd
  local img
  for img in pause broker operator python; do
    [[ -f $OXBOW_CACHE/k8s/images/$img.tar ]] || continue
    ctr_ images import --no-unpack "$OXBOW_CACHE/k8s/images/$img.tar" >/dev/null || die "importing $img.tar into containerd failed"
  done
  # The operator's default broker image (KafkaCluster without spec.image) is this release's
  # `oxbow-broker:<version>`: the image built here goes by that name too, as it would on a
  # user's node, so examples/kafka-cluster.yaml runs unchanged.
  if [[ -f $OXBOW_CACHE/k8s/images/broker.tar ]]; then
    ctr_ images tag --force "$NODE_BROKER_IMAGE" "docker.io/library/oxbow-broker:$(workspace_version)" >/dev/null ||
      die "tagging $NODE_BROKER_IMAGE as oxbow-broker:$(workspace_version) failed"
  fi
  ctr_ images check | awk 'NR>1 {print "[up] image", $1}' >&2

  start kube-scheduler kube-scheduler --kubeconfig "$RUN/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$RUN/kube-scheduler.kubeconfig" --authorization-kubeconfig "$RUN/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false --profiling=false --v=1
  node_kubelet_start
  start kube-proxy kube-proxy --config "$NODE_DIR/kube-proxy/config.yaml" --v=1
  kc_admin apply -f "$K8S_DIR/lib/node-addons.yaml" >/dev/null
  # kube-dns has no selector: its endpoint is CoreDNS on this host, at the node's address.
  sed -e "s|CLUSTER_DNS_IP|$CLUSTER_DNS_IP|; s|NODE_IP|$NODE_IP|" "$K8S_DIR/lib/node-dns.yaml" | kc_admin apply -f - >/dev/null
  start coredns coredns -conf "$NODE_DIR/coredns/Corefile" -dns.port 53
  wait_for "node $NODE_NAME Ready (kubelet)" 90 kc_admin wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  check_alive kubelet; check_alive kube-proxy; check_alive kube-scheduler; check_alive coredns
  # CoreDNS is ready once its kubernetes plugin has listed Services and EndpointSlices from
  # the API server; on a loaded machine (the fuzz build starts beside this phase) that once
  # took more than 30 s in CI, and once more than 90 s with builds beside it: 180 s.
  local ready_url="http://127.0.0.1:$((KUBELET_PORT + 10))/ready"
  if ! wait_for_quietly 180 curl -sf --max-time 5 "$ready_url"; then
    # Say why: what answers on the port (CoreDNS, or another process that took it first).
    curl -sv --max-time 5 "$ready_url" >&2 || true
    ss -ltnp "sport = :$((KUBELET_PORT + 10))" >&2 || true
    die "CoreDNS ready not ready after 180s; see $RUN/logs/"
  fi
  # PersistentVolumes for the StatefulSets' claims: hostPath under the run dir, world-writable
  # as a local-path provisioner makes them (hostPath volumes ignore fsGroup).
  local i manifest=""
  # Retained PVs are not bound again once their claim is deleted, so every claim the
  # scenarios make in one run needs its own: 10-statefulset 3, 30-scale 1, 86-kafkacluster-rack
  # 3, 87-kafkacluster-roll 3 (10 today), with room for more.
  for ((i = 0; i < ${OXBOW_NODE_PVS:-16}; i++)); do
    mkdir -p "$NODE_DIR/pvs/pv-$i"; chmod 0777 "$NODE_DIR/pvs/pv-$i"
    manifest+="apiVersion: v1
kind: PersistentVolume
metadata: {name: oxbow-pv-$i, labels: {oxbow.dev/e2e-node: \"$NODE_NAME\"}}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: \"\"
  hostPath: {path: \"$NODE_DIR/pvs/pv-$i\", type: Directory}
---
"
  done
  kc_admin apply -f - <<<"$manifest" >/dev/null
}

# Start the kubelet (also after `node-kubelet.sh stop`: the node-lifecycle scenario restarts it).
node_kubelet_start() {
  env "$MARKER_ENV=$RUN" setsid kubelet --config "$NODE_DIR/kubelet/config.yaml" --kubeconfig "$RUN/kubelet.kubeconfig" \
    --root-dir "$NODE_DIR/kubelet/root" --cert-dir "$NODE_DIR/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1 </dev/null >>"$RUN/logs/kubelet.log" 2>&1 &
  echo $! > "$RUN/kubelet.pid"
}

node_healthy() {
  local c; for c in containerd kubelet kube-proxy kube-scheduler coredns; do
    [[ -f $RUN/$c.pid ]] && kill -0 "$(cat "$RUN/$c.pid")" 2>/dev/null || return 1
  done
}

# Stop the node's pods through the kubelet while it still runs (graceful, CNI teardown by
# containerd), then the components. Only what carries this run's marker is signalled.
node_stop_pods() {
  [[ -f $RUN/kubelet.pid && -f $KUBECONFIG_PATH ]] || return 0
  alive "$(cat "$RUN/kubelet.pid")" || return 0
  kubectl --kubeconfig "$KUBECONFIG_PATH" delete pods --all -A --grace-period=5 --wait=false --request-timeout=10s >/dev/null 2>&1 || return 0
  local i; for ((i = 0; i < 300; i++)); do
    [[ -z $(kubectl --kubeconfig "$KUBECONFIG_PATH" get pods -A -o name --request-timeout=5s 2>/dev/null) ]] && break
    sleep 0.1
  done
  # the kubelet removes a deleted pod's sandbox shortly after the API object is gone
  for ((i = 0; i < 100; i++)); do
    [[ -z $(ctr_ containers ls -q 2>/dev/null) ]] && return 0
    sleep 0.1
  done
}

# What a crash may leave behind, removed by what only this run owns: its containers (through
# its own containerd), mounts under $RUN, its bridge, its CNI masquerade chains, kube-proxy's
# and the kubelet's KUBE-* chains, and the forwarding sysctl it turned on.
node_down() {
  local c t started=0
  if [[ -f $NODE_DIR/containerd/config.toml ]] && ! { [[ -f $RUN/containerd.pid ]] && alive "$(cat "$RUN/containerd.pid")"; }; then
    # containerd died (a crash): its shims and containers may still run; a containerd on the
    # same state finds them again, so start one just to stop them.
    env "$MARKER_ENV=$RUN" setsid containerd --config "$NODE_DIR/containerd/config.toml" </dev/null >>"$RUN/logs/containerd.log" 2>&1 &
    echo $! > "$RUN/containerd.pid"; started=1
    for ((t = 0; t < 100; t++)); do ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  if [[ -S $CONTAINERD_SOCK ]]; then
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do
      ctr_ tasks delete -f "$c" >/dev/null 2>&1; ctr_ containers delete "$c" >/dev/null 2>&1
    done
  fi
  for c in coredns kube-proxy kubelet kube-scheduler containerd; do
    [[ -f $RUN/$c.pid ]] && stop_pid "$(cat "$RUN/$c.pid")" 10
  done
  # containerd's shims outlive it (reparented to init); they inherited our marker and go with
  # the other survivors in down.sh.
  ((started == 0)) || true
}

node_cleanup_host() {
  # mounts (pod volumes, rootfs overlays, shm, netns) under this run, deepest first
  local m
  while read -r m; do umount -l "$m" 2>/dev/null; done < <(
    awk -v run="$RUN/" '{ p = $5; gsub(/\\040/, " ", p); if (index(p, run) == 1) print length(p) "\t" p }' /proc/self/mountinfo |
      sort -rn | cut -f2-)
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && ip link del "$NODE_BRIDGE"
  # veths of pods whose netns was unmounted go with it; CNI masquerade chains named in comments
  local chain
  for chain in $(iptables -t nat -S POSTROUTING 2>/dev/null | grep -F "\"$CNI_NET\"" | grep -o -- '-j CNI-[0-9a-f]*' | cut -c4-); do
    iptables -t nat -S POSTROUTING | grep -F -- "-j $chain " | sed 's/^-A /-D /' | while read -r rule; do eval iptables -t nat "$rule"; done
    iptables -t nat -F "$chain" 2>/dev/null; iptables -t nat -X "$chain" 2>/dev/null
  done
  # kube-proxy's and the kubelet's chains (KUBE-*): kube-proxy removes its own with --cleanup;
  # the kubelet's canaries and firewall chains are flushed here.
  [[ -x $K8S_BIN/kube-proxy ]] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1
  local table
  for table in filter nat mangle; do
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A .* -j KUBE-' | sed 's/^-A /-D /' | while read -r rule; do eval iptables -t "$table" "$rule" 2>/dev/null; done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do iptables -t "$table" -F "$chain" 2>/dev/null; done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do iptables -t "$table" -X "$chain" 2>/dev/null; done
  done
  if [[ -f $NODE_DIR/ip_forward.before ]]; then cat "$NODE_DIR/ip_forward.before" > /proc/sys/net/ipv4/ip_forward; fi
  # the kubelet's cgroups (cgroupfs driver: kubepods/... under every v1 controller), if empty now
  find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods -depth -type d -exec rmdir {} + 2>/dev/null
  # the kubelet links every container's log into /var/log/containers (a fixed path)
  find /var/log/containers -maxdepth 1 -lname "$NODE_DIR/*" -delete 2>/dev/null
  return 0
}
