#!/usr/bin/env bash
# Install the Debian packages the real Kubernetes node (OXBOW_K8S_NODE=real) runs on, so a fresh
# machine needs no hand steps: containerd (CRI runtime), runc, the CNI plugins (bridge,
# host-local, loopback, portmap), podman (builds the images), mmdebstrap (their bases), conntrack
# and iptables (kube-proxy).
# Pinned to the upstream versions of Debian 12 (bookworm) that this platform was built and
# measured with; Debian's own security revisions (+debNuN) are accepted. Idempotent: when every
# package is installed at its pinned upstream version this does nothing (no apt-get update).
set -euo pipefail
log() { echo "[node-packages] $*" >&2; }

# package=upstream version (the part of Debian's version before its revision)
PINS=(
  containerd=1.6.20
  runc=1.1.5
  containernetworking-plugins=1.1.1
  podman=4.3.1
  conntrack=1:1.4.7
  iptables=1.8.9
  mmdebstrap=1.3.5   # makes the images' base root filesystems from Debian packages (no registry)
)

upstream() { local v=$1; v=${v%%[-+~]*}; echo "$v"; }  # 1.6.20~ds1-1+deb12u3 -> 1.6.20
installed_ok() { # pkg want
  local v
  v=$(dpkg-query -W -f '${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null) || return 1
  [[ $v == "ii "* ]] || return 1
  [[ $(upstream "${v#ii  }") == "$2" || $(upstream "${v#ii }") == "$2" ]]
}

missing=()
for p in "${PINS[@]}"; do installed_ok "${p%%=*}" "${p#*=}" || missing+=("$p"); done
((${#missing[@]})) || { log "all installed"; exit 0; }
[[ $(id -u) == 0 ]] || { log "need root to install: ${missing[*]}"; exit 1; }

log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
args=()
for p in "${missing[@]}"; do
  pkg=${p%%=*} want=${p#*=}
  # the candidate's full Debian version, refused if its upstream part is not the pinned one
  cand=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
  [[ -n $cand && $cand != "(none)" ]] || { log "$pkg: no candidate in the apt sources"; exit 1; }
  [[ $(upstream "$cand") == "$want" ]] || { log "$pkg: candidate $cand is not the pinned $want"; exit 1; }
  args+=("$pkg=$cand")
done
# No recommends: podman's pull in crun (refuses this platform's hybrid cgroups; runc is used),
# slirp4netns and fuse-overlayfs (rootless only).
apt-get install -y -qq --no-install-recommends "${args[@]}" >&2
# Debian starts containerd's own service where systemd runs; the node never uses it (it runs its
# own containerd with its own socket and state under the run dir), so leave the system one alone.
for p in "${PINS[@]}"; do installed_ok "${p%%=*}" "${p#*=}" || { log "${p%%=*} not at ${p#*=} after install"; exit 1; }; done
log "installed"
