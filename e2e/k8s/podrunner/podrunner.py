#!/usr/bin/env python3
"""Oxbow local pod runner: a stand-in for kubelet + container runtime.

It registers one Node (``oxbow-local``), binds unscheduled pods to it through the
``pods/binding`` subresource (so no kube-scheduler is needed), and runs pods whose
images are ours (``oxbow-broker``, ``oxbow-operator``) as local processes built from the
workspace.  Everything else about a pod is honoured as far as a single host allows:

* command/args/env (incl. ``$(VAR)`` expansion, downward-API ``fieldRef``s, ConfigMap and
  Secret refs, ``envFrom``), ``workingDir``;
* volumes: configMap, secret, downwardAPI (its files follow the pod's labels and annotations
  while it runs, as the kubelet's do), projected (incl. serviceAccountToken through the
  TokenRequest API), emptyDir, and persistentVolumeClaim.  Every PVC gets a directory
  (``$STATE/pv/<ns>/<claim>``) and a matching hostPath PV, so data survives pod restarts and
  deletion, as a real PVC does.  Volumes are bind-mounted at their ``mountPath`` inside a
  private mount namespace per container (``unshare -m``), so the binary sees the same paths
  it would in its image;
* each pod gets its own loopback IP (127.0.1.x, then 127.0.2.x ...) as ``status.podIP``; a
  marked block in /etc/hosts makes pod DNS names (``<hostname>.<subdomain>.<ns>.svc.cluster.local``
  and shorter forms) and Service names (resolving to ready endpoints' pod IPs: there is no
  kube-proxy, so a Service's port must equal its targetPort) resolve.  Writing /etc/hosts and
  bind mounts are why the runner runs as root;
* readiness/liveness/startup probes (tcpSocket, httpGet, exec -- exec runs inside the
  container's mount namespace), restarts per ``restartPolicy`` with backoff, init containers;
* deletion: preStop exec hook, SIGTERM to the process group, grace period, SIGKILL, then the
  final pod delete (as kubelet does).

Pods with any other image are not run: the container waits with reason ``ErrImageNeverPull``
and an Event says that only oxbow images run here.

Why Python (stdlib only) rather than Rust: the platform must come up on a 2-core CI machine
that is already compiling the workspace; a script adds no compile time and no dependency,
and talks to the API server with plain HTTPS + client certificates and watch streams.
"""

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse

NODE_NAME = "oxbow-local"
OUR_IMAGES = ("oxbow-broker", "oxbow-operator")
HOSTS_BEGIN = "# BEGIN oxbow-podrunner"
# First two octets of the pods' loopback addresses: a second local control plane on the same
# machine (other ports and run dir, see lib/env.sh) sets another one so their pods' addresses
# never collide.
POD_IP_PREFIX = os.environ.get("OXBOW_POD_IP_PREFIX", "127.0")
HOSTS_END = "# END oxbow-podrunner"
MARKER_ENV = "OXBOW_K8S_RUN"  # every process we start carries it (see down.sh)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------- API client
class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class Api:
    def __init__(self, server, ca, cert, key):
        u = urllib.parse.urlparse(server)
        self.host, self.port = u.hostname, u.port or 443
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)

    def _conn(self, timeout=30):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def req(self, method, path, body=None, ctype="application/json", ok404=False):
        c = self._conn()
        try:
            data = json.dumps(body).encode() if body is not None else None
            hdrs = {"Accept": "application/json"}
            if data is not None:
                hdrs["Content-Type"] = ctype
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            raw = r.read().decode()
            if r.status == 404 and ok404:
                return None
            if r.status >= 300:
                raise ApiError(r.status, raw)
            return json.loads(raw) if raw else None
        finally:
            c.close()

    def get(self, path, ok404=False):
        return self.req("GET", path, ok404=ok404)

    def watch(self, path, rv):
        """Yields watch events until the stream ends."""
        sep = "&" if "?" in path else "?"
        c = self._conn(timeout=None)
        try:
            c.request("GET", f"{path}{sep}watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion={rv}",
                      headers={"Accept": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                raise ApiError(r.status, r.read().decode())
            while True:
                line = r.readline()
                if not line:
                    return
                yield json.loads(line)
        finally:
            c.close()


def informer(api, path, on_event, on_sync, stop):
    """list+watch loop: on_sync(items) after every (re)list, on_event(type, obj) per change."""
    while not stop.is_set():
        try:
            lst = api.get(path)
            rv = lst["metadata"]["resourceVersion"]
            on_sync(lst.get("items", []))
            for ev in api.watch(path, rv):
                if stop.is_set():
                    return
                t = ev.get("type")
                if t == "ERROR":
                    break  # e.g. 410 Gone: relist
                if t == "BOOKMARK":
                    continue
                on_event(t, ev["object"])
        except Exception as e:  # noqa: BLE001 - keep the loop alive, the API server may restart
            if not stop.is_set():
                log(f"informer {path}: {e}; relisting")
                time.sleep(1)


# --------------------------------------------------------------------------- helpers
def image_component(image):
    """'registry/x/oxbow-broker:tag' -> 'oxbow-broker'."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def expand(s, env):
    """Kubernetes $(VAR) expansion; $$ escapes; unknown references stay verbatim."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "$" and i + 1 < len(s):
            if s[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            if s[i + 1] == "(":
                j = s.find(")", i + 2)
                if j > 0:
                    name = s[i + 2:j]
                    if name in env:
                        out.append(env[name])
                    else:
                        out.append(s[i:j + 1])
                    i = j + 1
                    continue
        out.append(s[i])
        i += 1
    return "".join(out)


def go_quote(s):
    """Go's strconv.Quote, with which the kubelet writes label and annotation values into
    downward-API files (fieldpath.FormatMap: key="value" lines, sorted, no final newline)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v"}[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def field_ref(pod, path):
    md, spec, st = pod["metadata"], pod["spec"], pod.get("status", {})
    simple = {
        "metadata.name": md.get("name"), "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"), "spec.nodeName": spec.get("nodeName") or NODE_NAME,
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": st.get("podIP"), "status.hostIP": "127.0.0.1", "status.hostIPs": "127.0.0.1",
        "status.podIPs": st.get("podIP"),
    }
    if path in simple:
        return simple[path] or ""
    for kind in ("labels", "annotations"):
        pre = f"metadata.{kind}['"
        if path.startswith(pre) and path.endswith("']"):
            return (md.get(kind) or {}).get(path[len(pre):-2], "")
        if path == f"metadata.{kind}":
            return "\n".join(f"{k}={go_quote(v)}" for k, v in sorted((md.get(kind) or {}).items()))
    raise ValueError(f"unsupported fieldRef {path}")


def parse_quantity(q):
    q = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "m": 1e-3}
    for u, m in units.items():
        if q.endswith(u):
            return float(q[:-len(u)]) * m
    return float(q)


def resource_ref(container, ref):
    res = ref.get("resource", "")
    kind, _, what = res.partition(".")
    val = (container.get("resources", {}).get(kind) or {}).get(what)
    if val is None:
        val = {"cpu": "2", "memory": "24Gi", "ephemeral-storage": "100Gi"}.get(what, "0")
    div = parse_quantity(ref.get("divisor", "1"))
    import math
    return str(int(math.ceil(parse_quantity(val) / div)))


# --------------------------------------------------------------------------- the runner
class Runner:
    def __init__(self, args):
        self.args = args
        self.api = Api(args.server, args.ca, args.cert, args.key)
        self.state = os.path.abspath(args.state_dir)
        self.stop = threading.Event()
        self.lock = threading.RLock()
        self.workers = {}  # uid -> PodWorker
        self.pods = {}  # uid -> latest pod object (all namespaces)
        self.services = {}  # ns/name -> svc
        self.ip_next = 2
        self.ips_in_use = set()
        self.hosts_dirty = threading.Event()
        self.api_port = urllib.parse.urlparse(args.server).port
        with open(args.ca) as f:
            self.ca_pem = f.read()

    # ---- IPs ---------------------------------------------------------------
    def alloc_ip(self):
        with self.lock:
            for _ in range(254 * 250):
                n = self.ip_next
                self.ip_next = self.ip_next + 1 if self.ip_next < 254 * 250 else 2
                a, b = 1 + n // 254, n % 254
                if b == 0 or b == 255:
                    continue
                ip = f"{POD_IP_PREFIX}.{a}.{b}" if a < 255 else None
                if ip and ip not in self.ips_in_use:
                    self.ips_in_use.add(ip)
                    return ip
            raise RuntimeError("out of loopback addresses")

    def free_ip(self, ip):
        with self.lock:
            self.ips_in_use.discard(ip)

    # ---- node --------------------------------------------------------------
    def node_status(self):
        cond = lambda t, s, r: {"type": t, "status": s, "reason": r, "lastHeartbeatTime": now(),  # noqa: E731
                                "lastTransitionTime": now(), "message": "oxbow pod runner"}
        cap = {"cpu": "2", "memory": "24Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        return {
            "capacity": cap, "allocatable": cap,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
            "conditions": [cond("Ready", "True", "KubeletReady"), cond("MemoryPressure", "False", "OK"),
                           cond("DiskPressure", "False", "OK"), cond("PIDPressure", "False", "OK")],
            "nodeInfo": {"kubeletVersion": "v0.0.0-oxbow", "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "oxbow-podrunner://1", "osImage": "local",
                         "kernelVersion": os.uname().release, "machineID": "", "systemUUID": "", "bootID": ""},
        }

    def register_node(self):
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                                                            "kubernetes.io/arch": "amd64"}},
                "spec": {}}
        try:
            self.api.req("POST", "/api/v1/nodes", node)
        except ApiError as e:
            if e.status != 409:
                raise
        self.api.req("PATCH", f"/api/v1/nodes/{NODE_NAME}/status", {"status": self.node_status()},
                     "application/merge-patch+json")

    def heartbeat(self):
        while not self.stop.wait(10):
            try:
                self.api.req("PATCH", f"/api/v1/nodes/{NODE_NAME}/status", {"status": self.node_status()},
                             "application/merge-patch+json")
            except Exception as e:  # noqa: BLE001
                log("heartbeat:", e)

    # ---- events ------------------------------------------------------------
    def event(self, pod, etype, reason, msg):
        md = pod["metadata"]
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"generateName": md["name"] + ".", "namespace": md["namespace"]},
              "involvedObject": {"kind": "Pod", "name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
                                 "apiVersion": "v1"},
              "type": etype, "reason": reason, "message": msg, "source": {"component": "oxbow-podrunner", "host": NODE_NAME},
              "firstTimestamp": now(), "lastTimestamp": now(), "count": 1}
        try:
            self.api.req("POST", f"/api/v1/namespaces/{md['namespace']}/events", ev)
        except Exception as e:  # noqa: BLE001
            log("event:", e)

    # ---- PVC provisioning --------------------------------------------------
    def pvc_dir(self, ns, claim):
        d = os.path.join(self.state, "pv", ns, claim)
        os.makedirs(d, exist_ok=True)
        return d

    def on_pvc(self, typ, pvc):
        if typ == "DELETED":
            return
        spec, md = pvc["spec"], pvc["metadata"]
        if spec.get("volumeName") or pvc.get("status", {}).get("phase") == "Bound":
            return
        d = self.pvc_dir(md["namespace"], md["name"])
        pv = {"apiVersion": "v1", "kind": "PersistentVolume",
              "metadata": {"name": f"oxbow-{md['uid']}", "labels": {"oxbow.io/local-pv": "true"},
                           "annotations": {"pv.kubernetes.io/provisioned-by": "oxbow-podrunner"}},
              "spec": {"capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")},
                       "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                       "persistentVolumeReclaimPolicy": "Retain",
                       "storageClassName": spec.get("storageClassName") or "",
                       "volumeMode": spec.get("volumeMode", "Filesystem"),
                       "hostPath": {"path": d, "type": "DirectoryOrCreate"},
                       "claimRef": {"namespace": md["namespace"], "name": md["name"], "uid": md["uid"],
                                    "apiVersion": "v1", "kind": "PersistentVolumeClaim"}}}
        try:
            self.api.req("POST", "/api/v1/persistentvolumes", pv)
            log(f"provisioned PV for pvc {md['namespace']}/{md['name']} at {d}")
        except ApiError as e:
            if e.status != 409:
                log("pv create:", e)

    # ---- services & /etc/hosts ----------------------------------------------
    def on_svc(self, typ, svc):
        key = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
        with self.lock:
            if typ == "DELETED":
                self.services.pop(key, None)
            else:
                self.services[key] = svc
        self.hosts_dirty.set()

    def sync_svcs(self, items):
        with self.lock:
            self.services = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s for s in items}
        self.hosts_dirty.set()

    def hosts_lines(self):
        lines = []
        with self.lock:
            workers = list(self.workers.values())
            services = list(self.services.values())
        running = [w for w in workers if w.ip and not w.terminated]
        for w in sorted(running, key=lambda w: w.ip):
            md, spec = w.pod["metadata"], w.pod["spec"]
            ns, hn, sub = md["namespace"], spec.get("hostname") or md["name"], spec.get("subdomain")
            names = [f"{w.ip.replace('.', '-')}.{ns}.pod.cluster.local"]
            if sub:
                names = [f"{hn}.{sub}.{ns}.svc.cluster.local", f"{hn}.{sub}.{ns}.svc", f"{hn}.{sub}.{ns}",
                         f"{hn}.{sub}"] + names
            lines.append(f"{w.ip} {' '.join(names)}")
        for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
            md, spec = svc["metadata"], svc["spec"]
            sel = spec.get("selector")
            if not sel:
                continue
            ns, name = md["namespace"], md["name"]
            pub = spec.get("publishNotReadyAddresses", False)
            for w in sorted(running, key=lambda w: w.ip):
                pmd = w.pod["metadata"]
                labels = pmd.get("labels") or {}
                if pmd["namespace"] != ns or any(labels.get(k) != v for k, v in sel.items()):
                    continue
                if pub or w.ready:
                    lines.append(f"{w.ip} {name}.{ns}.svc.cluster.local {name}.{ns}.svc {name}.{ns} {name}")
        return lines

    def hosts_loop(self):
        last = None
        while not self.stop.is_set():
            self.hosts_dirty.wait(2)
            self.hosts_dirty.clear()
            if self.stop.is_set():
                break
            lines = self.hosts_lines()
            if lines != last:
                write_hosts(self.args.hosts_file, self.state, lines)
                last = lines

    # ---- pods ----------------------------------------------------------------
    def sync_pods(self, items):
        seen = set()
        for p in items:
            seen.add(p["metadata"]["uid"])
            self.on_pod("MODIFIED", p)
        with self.lock:
            gone = [uid for uid in self.workers if uid not in seen]
        for uid in gone:
            self.on_pod("DELETED", self.workers[uid].pod)

    def on_pod(self, typ, pod):
        md, spec = pod["metadata"], pod["spec"]
        uid = md["uid"]
        if typ == "DELETED":
            with self.lock:
                w = self.workers.get(uid)
            if w:
                w.deleted_from_api()
            return
        node = spec.get("nodeName")
        if not node:
            if md.get("deletionTimestamp") or spec.get("schedulerName", "default-scheduler") != "default-scheduler":
                return
            self.bind(pod)
            return
        if node != NODE_NAME:
            return
        with self.lock:
            w = self.workers.get(uid)
            if w is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") and not md.get("deletionTimestamp"):
                    return  # finished before we (re)started; nothing to run
                w = PodWorker(self, pod)
                self.workers[uid] = w
                w.start()
                return
        w.update(pod)

    def bind(self, pod):
        md = pod["metadata"]
        b = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": md["name"], "namespace": md["namespace"]},
             "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}}
        try:
            self.api.req("POST", f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}/binding", b)
            log(f"bound {md['namespace']}/{md['name']} to {NODE_NAME}")
        except ApiError as e:
            if e.status not in (404, 409):
                log("bind:", e)

    def worker_done(self, w):
        with self.lock:
            if self.workers.get(w.uid) is w:
                del self.workers[w.uid]
        self.hosts_dirty.set()

    # ---- main ----------------------------------------------------------------
    def run(self):
        os.makedirs(self.state, exist_ok=True)
        self.register_node()
        threads = [
            threading.Thread(target=self.heartbeat, daemon=True),
            threading.Thread(target=self.hosts_loop, daemon=True),
            threading.Thread(target=informer, daemon=True,
                             args=(self.api, "/api/v1/persistentvolumeclaims",
                                   self.on_pvc, lambda items: [self.on_pvc("ADDED", i) for i in items], self.stop)),
            threading.Thread(target=informer, daemon=True,
                             args=(self.api, "/api/v1/services", self.on_svc, self.sync_svcs, self.stop)),
            threading.Thread(target=informer, daemon=True,
                             args=(self.api, "/api/v1/pods", self.on_pod, self.sync_pods, self.stop)),
        ]
        for t in threads:
            t.start()
        log(f"pod runner up: node {NODE_NAME}, state {self.state}, binaries from {self.args.bin_dir}")
        with open(os.path.join(self.state, "podrunner.ready"), "w") as f:
            f.write(str(os.getpid()))
        self.stop.wait()
        log("shutting down: stopping all pods")
        with self.lock:
            ws = list(self.workers.values())
        for w in ws:
            w.shutdown(grace=float(self.args.shutdown_grace))
        for w in ws:
            w.join(timeout=float(self.args.shutdown_grace) + 5)
        write_hosts(self.args.hosts_file, self.state, None)
        log("pod runner stopped")


def write_hosts(path, state, lines):
    """Replace our marked block in the hosts file (in place: it may be a bind mount)."""
    tag = f"{HOSTS_BEGIN} {state}"
    endtag = f"{HOSTS_END} {state}"
    try:
        with open(path) as f:
            cur = f.read().splitlines()
    except FileNotFoundError:
        cur = []
    out, skip = [], False
    for line in cur:
        if line == tag:
            skip = True
            continue
        if line == endtag:
            skip = False
            continue
        if not skip:
            out.append(line)
    if lines:
        out += [tag] + lines + [endtag]
    with open(path, "r+" if os.path.exists(path) else "w") as f:
        f.seek(0)
        f.write("\n".join(out) + "\n")
        f.truncate()


# --------------------------------------------------------------------------- per-pod worker
class ContainerProc:
    def __init__(self, spec):
        self.spec = spec
        self.name = spec["name"]
        self.proc = None
        self.restarts = 0
        self.started_at = None
        self.ready = False
        self.started = False  # startup probe passed
        self.last_term = None  # dict for lastState.terminated
        self.term = None  # current terminated state (not restarting)
        self.waiting = ("ContainerCreating", "")
        self.next_start = 0.0
        self.backoff = 1.0
        self.probe_state = {}


class PodWorker(threading.Thread):
    def __init__(self, runner, pod):
        super().__init__(daemon=True)
        self.r = runner
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.ip = None
        self.ready = False
        self.terminated = False
        self.gone = False
        self.shutting = None  # grace seconds when shutting down runner
        self.wake = threading.Event()
        self.dir = os.path.join(runner.state, "pods", f"{self.ns}_{self.name}_{self.uid}")
        self.init = [ContainerProc(c) for c in pod["spec"].get("initContainers") or []]
        self.main = [ContainerProc(c) for c in pod["spec"]["containers"]]
        self.init_done = not self.init
        self.phase = "Pending"
        self.start_time = now()
        self.mounts = {}  # volume name -> host dir
        self.failed_reason = None
        self.last_status = None
        self.downward_seen = None  # labels and annotations the downward-API files show

    def update(self, pod):
        self.pod = pod
        self.wake.set()

    def deleted_from_api(self):
        self.gone = True
        self.wake.set()

    def shutdown(self, grace):
        self.shutting = grace
        self.wake.set()

    # ---- setup -------------------------------------------------------------
    def binary_for(self, c):
        comp = image_component(c.get("image", ""))
        if comp not in OUR_IMAGES:
            return None, ("ErrImageNeverPull",
                          f"image {c.get('image')!r} is not an oxbow image: the oxbow local pod runner only runs "
                          f"{', '.join(OUR_IMAGES)} (as workspace binaries)")
        b = os.path.join(self.r.args.bin_dir, comp)
        if not os.access(b, os.X_OK):
            return None, ("ErrImageNeverPull", f"binary for image {c.get('image')} not found at {b} (build it: cargo build -p {comp})")
        return b, None

    def env_for(self, c, pod):
        # A watch event may carry a version of the pod older than our status patch: the pod IP
        # (and hence status.podIP for the downward API) is ours, whatever the object says.
        pod = {**pod, "status": {**(pod.get("status") or {}), "podIP": self.ip}}
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": pod["spec"].get("hostname") or self.name,
               "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.r.api_port),
               "KUBERNETES_SERVICE_PORT_HTTPS": str(self.r.api_port),
               "KUBERNETES_PORT": f"tcp://127.0.0.1:{self.r.api_port}", MARKER_ENV: os.environ.get(MARKER_ENV, self.r.state),
               "HOME": "/root"}
        for ef in c.get("envFrom") or []:
            pre = ef.get("prefix", "")
            if "configMapRef" in ef:
                data = self.get_obj("configmaps", ef["configMapRef"]["name"], ef["configMapRef"].get("optional"))
                for k, v in ((data or {}).get("data") or {}).items():
                    env[pre + k] = v
            if "secretRef" in ef:
                data = self.get_obj("secrets", ef["secretRef"]["name"], ef["secretRef"].get("optional"))
                for k, v in ((data or {}).get("data") or {}).items():
                    env[pre + k] = base64.b64decode(v).decode()
        for e in c.get("env") or []:
            if "value" in e or "valueFrom" not in e:
                env[e["name"]] = expand(e.get("value", ""), env)
                continue
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                env[e["name"]] = field_ref(pod, vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                env[e["name"]] = resource_ref(c, vf["resourceFieldRef"])
            elif "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                obj = self.get_obj("configmaps", ref["name"], ref.get("optional"))
                if obj and ref["key"] in (obj.get("data") or {}):
                    env[e["name"]] = obj["data"][ref["key"]]
                elif not ref.get("optional"):
                    raise RuntimeError(f"configmap {ref['name']} key {ref['key']} not found")
            elif "secretKeyRef" in vf:
                ref = vf["secretKeyRef"]
                obj = self.get_obj("secrets", ref["name"], ref.get("optional"))
                if obj and ref["key"] in (obj.get("data") or {}):
                    env[e["name"]] = base64.b64decode(obj["data"][ref["key"]]).decode()
                elif not ref.get("optional"):
                    raise RuntimeError(f"secret {ref['name']} key {ref['key']} not found")
        return env

    def get_obj(self, kind, name, optional=False):
        o = self.r.api.get(f"/api/v1/namespaces/{self.ns}/{kind}/{name}", ok404=True)
        if o is None and not optional:
            raise RuntimeError(f"{kind[:-1]} {self.ns}/{name} not found")
        return o

    def write_items(self, d, data, items, mode, decode):
        os.makedirs(d, exist_ok=True)
        keys = [(i["key"], i["path"], i.get("mode")) for i in items] if items else [(k, k, None) for k in data]
        for k, p, m in keys:
            if k not in data:
                continue
            fp = os.path.join(d, p)
            os.makedirs(os.path.dirname(fp), exist_ok=True)
            with open(fp, "wb") as f:
                v = data[k]
                f.write(base64.b64decode(v) if decode else v.encode())
            os.chmod(fp, m if m is not None else mode)

    def materialise(self, v, d, pod):
        if "configMap" in v:
            cm = self.get_obj("configmaps", v["configMap"]["name"], v["configMap"].get("optional")) or {}
            data = dict(cm.get("data") or {})
            data.update({k: base64.b64decode(b).decode("latin-1") for k, b in (cm.get("binaryData") or {}).items()})
            self.write_items(d, data, v["configMap"].get("items"), v["configMap"].get("defaultMode", 0o644), False)
        elif "secret" in v:
            s = self.get_obj("secrets", v["secret"]["secretName"], v["secret"].get("optional")) or {}
            self.write_items(d, s.get("data") or {}, v["secret"].get("items"), v["secret"].get("defaultMode", 0o644), True)
        elif "downwardAPI" in v:
            self.write_downward(d, v["downwardAPI"].get("items") or [], pod, v["downwardAPI"].get("defaultMode", 0o644))
        elif "projected" in v:
            mode = v["projected"].get("defaultMode", 0o644)
            os.makedirs(d, exist_ok=True)
            for src in v["projected"].get("sources") or []:
                if "configMap" in src:
                    self.materialise({"configMap": {**src["configMap"], "defaultMode": mode}}, d, pod)
                elif "secret" in src:
                    self.materialise({"secret": {**src["secret"], "secretName": src["secret"]["name"], "defaultMode": mode}}, d, pod)
                elif "downwardAPI" in src:
                    self.write_downward(d, src["downwardAPI"].get("items") or [], pod, mode)
                elif "serviceAccountToken" in src:
                    sat = src["serviceAccountToken"]
                    sa = pod["spec"].get("serviceAccountName", "default")
                    tr = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                          "spec": {"audiences": [sat["audience"]] if sat.get("audience") else None,
                                   "expirationSeconds": max(int(sat.get("expirationSeconds", 3607)), 86400),
                                   "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.name, "uid": self.uid}}}
                    out = self.r.api.req("POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", tr)
                    with open(os.path.join(d, sat["path"]), "w") as f:
                        f.write(out["status"]["token"])
                elif "clusterTrustBundle" in src:
                    raise RuntimeError("clusterTrustBundle projections are not supported")
        elif "emptyDir" in v:
            os.makedirs(d, exist_ok=True)
        elif "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]["claimName"]
            return self.r.pvc_dir(self.ns, claim)
        elif "hostPath" in v:
            return v["hostPath"]["path"]
        else:
            raise RuntimeError(f"unsupported volume type in {sorted(v)}")
        return d

    def write_downward(self, d, items, pod, mode):
        os.makedirs(d, exist_ok=True)
        for it in items:
            if "fieldRef" in it:
                val = field_ref(pod, it["fieldRef"]["fieldPath"])
            else:
                cname = it["resourceFieldRef"].get("containerName")
                c = next((c for c in pod["spec"]["containers"] if c["name"] == cname), pod["spec"]["containers"][0])
                val = resource_ref(c, it["resourceFieldRef"])
            fp = os.path.join(d, it["path"])
            os.makedirs(os.path.dirname(fp), exist_ok=True)
            # Replaced, not rewritten in place: a container reading it while it is refreshed
            # sees the old or the new content, never half of one (the kubelet swaps a symlink).
            tmp = fp + ".oxbow-tmp"
            with open(tmp, "w") as f:
                f.write(val)
            os.chmod(tmp, it.get("mode", mode))
            os.replace(tmp, fp)

    def setup_volumes(self, pod):
        for v in pod["spec"].get("volumes") or []:
            d = os.path.join(self.dir, "volumes", v["name"])
            self.mounts[v["name"]] = self.materialise(v, d, pod)
        self.downward_seen = self.downward_key(pod)

    @staticmethod
    def downward_key(pod):
        md = pod["metadata"]
        return json.dumps([md.get("labels"), md.get("annotations")], sort_keys=True)

    def refresh_downward(self):
        """As the kubelet does: downward-API volume files follow the pod's labels and annotations
        while it runs (environment variables do not). oxbow-operator annotates a broker pod with
        its rack after the pod has started, and the broker waits for that in such a file."""
        pod = self.pod
        key = self.downward_key(pod)
        if key == self.downward_seen:
            return
        self.downward_seen = key
        for v in pod["spec"].get("volumes") or []:
            d = self.mounts.get(v["name"])
            if d is None:
                continue
            if "downwardAPI" in v:
                self.write_downward(d, v["downwardAPI"].get("items") or [], pod, v["downwardAPI"].get("defaultMode", 0o644))
            elif "projected" in v:
                mode = v["projected"].get("defaultMode", 0o644)
                for src in v["projected"].get("sources") or []:
                    if "downwardAPI" in src:
                        self.write_downward(d, src["downwardAPI"].get("items") or [], pod, mode)

    # ---- processes -----------------------------------------------------------
    def wrapper(self, c, argv):
        """unshare a private mount namespace, bind-mount the volumes, exec argv."""
        script = ["set -e"]
        mounts = []
        for m in c.get("volumeMounts") or []:
            src = self.mounts.get(m["name"])
            if src is None:
                raise RuntimeError(f"volumeMount {m['name']} has no volume")
            if m.get("subPath"):
                src = os.path.join(src, m["subPath"])
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
            mounts.append((src, m["mountPath"], m.get("readOnly", False)))
        for i, (src, dst, ro) in enumerate(mounts):
            script.append(f'if [ -d "$M{i}S" ]; then mkdir -p "$M{i}D"; else mkdir -p "$(dirname "$M{i}D")"; '
                          f'[ -e "$M{i}D" ] || : > "$M{i}D"; fi')
            script.append(f'mount --bind "$M{i}S" "$M{i}D"')
            if ro:
                script.append(f'mount -o remount,bind,ro "$M{i}D"')
        wd = c.get("workingDir")
        if wd:
            script.append('mkdir -p "$OXBOW_WD" && cd "$OXBOW_WD"')
        script.append('exec "$@"')
        menv = {"OXBOW_WD": wd} if wd else {}
        for i, (src, dst, _) in enumerate(mounts):
            menv[f"M{i}S"], menv[f"M{i}D"] = src, dst
        if not mounts and not wd:
            return argv, menv
        if not mounts:
            return ["/bin/sh", "-c", "\n".join(script), "sh"] + argv, menv
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "\n".join(script), "sh"] + argv, menv

    def argv_for(self, c, binary, env):
        cmd = [expand(a, env) for a in c.get("command") or []]
        args = [expand(a, env) for a in c.get("args") or []]
        if cmd:
            if os.path.basename(cmd[0]) != image_component(c["image"]):
                raise RuntimeError(f"command {cmd[0]!r} does not exist in image {c['image']} (its only executable is "
                                   f"{image_component(c['image'])})")
            return [binary] + cmd[1:] + args
        return [binary] + args

    def start_container(self, cp, pod):
        binary, err = self.binary_for(cp.spec)
        if err:
            raise ImageError(*err)
        env = self.env_for(cp.spec, pod)
        argv = self.argv_for(cp.spec, binary, env)
        full, menv = self.wrapper(cp.spec, argv)
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        logf = open(os.path.join(self.dir, "logs", f"{cp.name}.log"), "ab")
        logf.write(f"--- {now()} start #{cp.restarts}: {argv}\n".encode())
        logf.flush()
        cp.proc = subprocess.Popen(full, env={**env, **menv}, cwd=self.dir,
                                   stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        logf.close()
        with open(os.path.join(self.r.state, "pids", str(cp.proc.pid)), "w") as f:
            f.write(f"{self.ns}/{self.name}/{cp.name}\n")
        cp.started_at = now()
        cp.started_mono = time.monotonic()
        cp.ready = False
        cp.started = "startupProbe" not in cp.spec
        cp.waiting = None
        cp.term = None
        cp.probe_state = {}
        log(f"{self.ns}/{self.name}/{cp.name}: started pid {cp.proc.pid} on {self.ip}: {' '.join(argv)}")

    def kill(self, cp, grace):
        p = cp.proc
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=max(grace, 0))
        except subprocess.TimeoutExpired:
            log(f"{self.ns}/{self.name}/{cp.name}: grace period over, SIGKILL")
        try:
            os.killpg(p.pid, signal.SIGKILL)  # also reaps stragglers in the group
        except ProcessLookupError:
            pass
        p.wait()
        self.forget_pid(p.pid)

    def forget_pid(self, pid):
        try:
            os.unlink(os.path.join(self.r.state, "pids", str(pid)))
        except FileNotFoundError:
            pass

    # ---- probes --------------------------------------------------------------
    def run_probe(self, cp, probe):
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "tcpSocket" in probe:
                port = self.port_of(cp, probe["tcpSocket"]["port"])
                with socket.create_connection((probe["tcpSocket"].get("host") or self.ip, port), timeout=timeout):
                    return True
            if "httpGet" in probe:
                h = probe["httpGet"]
                port = self.port_of(cp, h["port"])
                conn = (http.client.HTTPSConnection if h.get("scheme") == "HTTPS" else http.client.HTTPConnection)(
                    h.get("host") or self.ip, port, timeout=timeout,
                    **({"context": ssl._create_unverified_context()} if h.get("scheme") == "HTTPS" else {}))
                conn.request("GET", h.get("path", "/"), headers={x["name"]: x["value"] for x in h.get("httpHeaders") or []})
                st = conn.getresponse().status
                conn.close()
                return 200 <= st < 400
            if "exec" in probe:
                return self.exec_in(cp, probe["exec"]["command"], timeout) == 0
            if "grpc" in probe:
                return False
        except (OSError, subprocess.TimeoutExpired, http.client.HTTPException):
            return False
        return False

    def exec_in(self, cp, command, timeout):
        """Run a command 'in the container': inside its mount namespace, with its env."""
        env = self.env_for(cp.spec, self.pod)
        cmd = list(command)
        binary, _ = self.binary_for(cp.spec)
        if binary and os.path.basename(cmd[0]) == image_component(cp.spec["image"]):
            cmd[0] = binary
        if cp.spec.get("volumeMounts") and cp.proc and cp.proc.poll() is None:
            cmd = ["nsenter", "--target", str(cp.proc.pid), "--mount", "--"] + cmd
        return subprocess.run(cmd, env=env, timeout=timeout, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=self.dir).returncode

    def port_of(self, cp, port):
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in cp.spec.get("ports") or []:
            if p.get("name") == port:
                return p["containerPort"]
        raise OSError(f"named port {port} not found")

    def probe(self, cp, kind):
        """Returns the probe's current verdict, honouring delays, periods and thresholds."""
        pr = cp.spec.get(kind)
        st = cp.probe_state.setdefault(kind, {"next": 0.0, "ok": 0, "fail": 0, "result": None})
        if pr is None:
            return True
        t = time.monotonic()
        if t - cp.started_mono < pr.get("initialDelaySeconds", 0):
            return st["result"] if st["result"] is not None else (kind == "livenessProbe")
        if t >= st["next"]:
            st["next"] = t + pr.get("periodSeconds", 10)
            if self.run_probe(cp, pr):
                st["ok"] += 1
                st["fail"] = 0
                if st["ok"] >= pr.get("successThreshold", 1):
                    st["result"] = True
            else:
                st["fail"] += 1
                st["ok"] = 0
                if st["fail"] >= pr.get("failureThreshold", 3):
                    st["result"] = False
        if st["result"] is None:
            return kind == "livenessProbe"
        return st["result"]

    # ---- status ----------------------------------------------------------------
    def cstatus(self, cp, is_init):
        s = {"name": cp.name, "image": cp.spec.get("image", ""), "imageID": "", "restartCount": cp.restarts,
             "ready": bool(cp.ready), "started": bool(cp.proc and cp.proc.poll() is None and cp.started)}
        running = cp.proc is not None and cp.proc.poll() is None
        if running:
            s["state"] = {"running": {"startedAt": cp.started_at}}
            s["containerID"] = f"oxbow://{cp.proc.pid}"
        elif cp.term:
            s["state"] = {"terminated": cp.term}
        else:
            reason, msg = cp.waiting or ("ContainerCreating", "")
            s["state"] = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
        if cp.last_term:
            s["lastState"] = {"terminated": cp.last_term}
        return s

    def push_status(self, force=False):
        pod = self.pod
        ready_all = self.init_done and all(c.ready for c in self.main) and self.phase == "Running"
        self.ready = ready_all
        conds = []

        def cond(t, ok, reason=None):
            c = {"type": t, "status": "True" if ok else "False", "lastProbeTime": None}
            old = next((x for x in (pod.get("status", {}).get("conditions") or []) if x["type"] == t), None)
            c["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == c["status"] and old.get("lastTransitionTime") else now()
            if reason and not ok:
                c["reason"] = reason
            conds.append(c)
        cond("PodReadyToStartContainers", self.ip is not None)
        cond("Initialized", self.init_done, "ContainersNotInitialized")
        cond("Ready", ready_all, "ContainersNotReady")
        cond("ContainersReady", ready_all, "ContainersNotReady")
        cond("PodScheduled", True)
        status = {"phase": self.phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
                  "startTime": self.start_time, "conditions": conds, "qosClass": pod.get("status", {}).get("qosClass", "BestEffort"),
                  "containerStatuses": [self.cstatus(c, False) for c in self.main]}
        if self.init:
            status["initContainerStatuses"] = [self.cstatus(c, True) for c in self.init]
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        if self.failed_reason:
            status["reason"], status["message"] = self.failed_reason
        key = json.dumps({k: v for k, v in status.items() if k != "conditions"}, sort_keys=True) + json.dumps(
            [(c["type"], c["status"]) for c in conds])
        if key == self.last_status and not force:
            return
        try:
            out = self.r.api.req("PATCH", f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status",
                                 {"metadata": {"uid": self.uid}, "status": status}, "application/merge-patch+json")
            self.last_status = key
            if out:
                self.pod = out if out["metadata"]["uid"] == self.uid else self.pod
        except ApiError as e:
            if e.status == 404:
                self.gone = True
            else:
                log(f"{self.ns}/{self.name}: status update: {e}")
        self.r.hosts_dirty.set()

    # ---- lifecycle ----------------------------------------------------------
    def run(self):
        try:
            self._run()
        except Exception:  # noqa: BLE001
            log(f"{self.ns}/{self.name}: worker crashed:\n{traceback.format_exc()}")
            for c in self.init + self.main:
                self.kill(c, 0)
        finally:
            self.cleanup()

    def _run(self):
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(os.path.join(self.r.state, "pids"), exist_ok=True)
        self.ip = self.r.alloc_ip()
        self.pod.setdefault("status", {})["podIP"] = self.ip
        try:
            self.setup_volumes(self.pod)
        except Exception as e:  # noqa: BLE001
            msg = f"volume setup failed: {e}"
            log(f"{self.ns}/{self.name}: {msg}")
            for c in self.init + self.main:
                c.waiting = ("CreateContainerConfigError", msg)
            self.r.event(self.pod, "Warning", "FailedMount", msg)
            self.push_status()
            self.wait_for_deletion()
            return
        policy = self.pod["spec"].get("restartPolicy", "Always")
        self.push_status()
        while True:
            if self.gone or self.shutting is not None:
                break
            if self.pod["metadata"].get("deletionTimestamp"):
                break
            self.refresh_downward()
            self.step(policy)
            self.push_status()
            if self.phase in ("Succeeded", "Failed"):
                self.wait_for_deletion()
                return
            self.wake.wait(0.5)
            self.wake.clear()
        self.terminate()

    def wait_for_deletion(self):
        while not (self.gone or self.shutting is not None or self.pod["metadata"].get("deletionTimestamp")):
            self.wake.wait(1)
            self.wake.clear()
        self.terminate()

    def try_start(self, cp):
        if time.monotonic() < cp.next_start:
            return
        try:
            self.start_container(cp, self.pod)
        except ImageError as e:
            if cp.waiting is None or cp.waiting[0] != e.reason:
                log(f"{self.ns}/{self.name}/{cp.name}: {e.reason}: {e.msg}")
                self.r.event(self.pod, "Warning", e.reason, e.msg)
            cp.waiting = (e.reason, e.msg)
            cp.next_start = time.monotonic() + 10
        except Exception as e:  # noqa: BLE001
            msg = str(e)
            if cp.waiting is None or cp.waiting[1] != msg:
                log(f"{self.ns}/{self.name}/{cp.name}: CreateContainerError: {msg}")
                self.r.event(self.pod, "Warning", "Failed", msg)
            cp.waiting = ("CreateContainerConfigError", msg)
            cp.next_start = time.monotonic() + 5

    def reap(self, cp, policy, is_init):
        """Handle an exited process. Returns True if it finished for good."""
        rc = cp.proc.returncode
        self.forget_pid(cp.proc.pid)
        term = {"exitCode": rc if rc >= 0 else 128 - rc, "reason": "Completed" if rc == 0 else "Error",
                "startedAt": cp.started_at, "finishedAt": now(), "containerID": f"oxbow://{cp.proc.pid}"}
        if rc < 0:
            term["signal"] = -rc
        cp.proc = None
        cp.ready = False
        restart = policy == "Always" or (policy == "OnFailure" and rc != 0)
        if is_init and rc == 0:
            restart = False
        if is_init and rc != 0 and policy == "Always":
            restart = True
        log(f"{self.ns}/{self.name}/{cp.name}: exited {rc}; {'restarting' if restart else 'done'}")
        if restart:
            cp.last_term = term
            cp.restarts += 1
            ran = time.monotonic() - cp.started_mono
            cp.backoff = 1.0 if ran > 60 else min(cp.backoff * 2, 30.0)
            cp.next_start = time.monotonic() + cp.backoff
            cp.waiting = ("CrashLoopBackOff", f"back-off {cp.backoff:.0f}s restarting failed container") if rc != 0 else ("ContainerCreating", "")
            return False
        cp.term = term
        return True

    def step(self, policy):
        if not self.init_done:
            for cp in self.init:
                if cp.term and cp.term["exitCode"] == 0:
                    continue
                if cp.term:  # failed, no restart
                    self.phase = "Failed"
                    return
                if cp.proc is None:
                    self.try_start(cp)
                    return
                if cp.proc.poll() is not None:
                    self.reap(cp, policy, True)
                return
            self.init_done = True
        self.phase = "Running" if any(c.proc for c in self.main) or any(c.restarts or c.last_term for c in self.main) else "Pending"
        for cp in self.main:
            if cp.proc is None:
                if cp.term is None:
                    self.try_start(cp)
                continue
            if cp.proc.poll() is not None:
                self.reap(cp, policy, False)
                continue
            if not cp.started:
                cp.started = self.probe(cp, "startupProbe") is True and cp.probe_state.get("startupProbe", {}).get("result") is True
                if not cp.started and cp.probe_state.get("startupProbe", {}).get("result") is False:
                    log(f"{self.ns}/{self.name}/{cp.name}: startup probe failed, killing")
                    self.kill(cp, self.pod["spec"].get("terminationGracePeriodSeconds", 30))
                continue
            if not self.probe(cp, "livenessProbe"):
                log(f"{self.ns}/{self.name}/{cp.name}: liveness probe failed, killing")
                self.r.event(self.pod, "Warning", "Unhealthy", f"container {cp.name} failed liveness probe")
                self.kill(cp, self.pod["spec"].get("terminationGracePeriodSeconds", 30))
                continue
            cp.ready = self.probe(cp, "readinessProbe")
        if any(c.proc for c in self.main):
            self.phase = "Running"
        elif all(c.term for c in self.main):
            self.phase = "Succeeded" if all(c.term["exitCode"] == 0 for c in self.main) else "Failed"

    def terminate(self):
        md = self.pod["metadata"]
        if self.shutting is not None:
            grace = self.shutting
        elif self.gone:
            grace = 2
        else:
            grace = md.get("deletionGracePeriodSeconds", self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        live = [c for c in self.init + self.main if c.proc and c.proc.poll() is None]
        if live:
            log(f"{self.ns}/{self.name}: stopping ({len(live)} containers, grace {grace}s)")
        deadline = time.monotonic() + grace
        for cp in live:
            pre = ((cp.spec.get("lifecycle") or {}).get("preStop") or {}).get("exec")
            if pre and self.shutting is None:
                try:
                    self.exec_in(cp, pre["command"], max(1, deadline - time.monotonic()))
                except Exception as e:  # noqa: BLE001
                    log(f"{self.ns}/{self.name}/{cp.name}: preStop: {e}")
        threads = [threading.Thread(target=self.kill, args=(cp, max(0, deadline - time.monotonic()))) for cp in live]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.terminated = True
        self.r.hosts_dirty.set()
        if self.shutting is None and not self.gone:
            try:
                self.r.api.req("DELETE", f"/api/v1/namespaces/{self.ns}/pods/{self.name}",
                               {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                "preconditions": {"uid": self.uid}})
                log(f"{self.ns}/{self.name}: deleted")
            except ApiError as e:
                if e.status not in (404, 409):
                    log(f"{self.ns}/{self.name}: final delete: {e}")

    def cleanup(self):
        self.terminated = True
        if self.ip:
            self.r.free_ip(self.ip)
        if self.shutting is None:
            # emptyDir and materialised volumes go with the pod; PVC data lives under $STATE/pv.
            shutil.rmtree(self.dir, ignore_errors=True)
        self.r.worker_done(self)


class ImageError(Exception):
    def __init__(self, reason, msg):
        super().__init__(msg)
        self.reason, self.msg = reason, msg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--hosts-file", default="/etc/hosts")
    ap.add_argument("--shutdown-grace", default="5")
    args = ap.parse_args()
    r = Runner(args)

    def on_signal(*_):
        r.stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    r.run()


if __name__ == "__main__":
    main()
