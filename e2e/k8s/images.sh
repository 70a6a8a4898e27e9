#!/usr/bin/env bash
# Build the images the real e2e node (OXBOW_K8S_NODE=real) runs, with no registry:
#   localhost/oxbow-base-cc:bookworm     runtime base: FROM scratch + Debian's libc6, libgcc-s1,
#                                        netbase, tzdata (mmdebstrap), /etc/passwd with nonroot
#                                        65532 -- what distroless/cc-debian12:nonroot provides
#   localhost/oxbow-pause:e2e            the pods' sandbox: FROM scratch + images/pause (Go, static)
#   localhost/oxbow-python:e2e           python3 (Debian's, no shell) for the Kafka probe in a pod
#   docker.io/library/oxbow-broker:e2e   broker/Dockerfile and operator/Dockerfile themselves,
#   docker.io/library/oxbow-operator:e2e with RUNTIME_IMAGE set to the base above (the files'
#                                        defaults stay the public images)
# Where the project's binaries come from (OXBOW_IMAGE_BINARY):
#   prebuilt (default)  the Dockerfiles' `prebuilt` target packages $OXBOW_BIN_DIR/oxbow-broker and
#                       oxbow-operator (target/debug: the test command has just built them; same
#                       glibc as the base, both Debian 12): seconds instead of a cold release
#                       build inside the container (31.5 min measured on 2 cores), and the image
#                       runs the very binary the rest of the test suite tested.
#   build               the Dockerfiles' default target, their build stage (cargo build --release) on
#   localhost/oxbow-rust-builder:1.95    Debian minbase + gcc/libc6-dev (C parts of lz4/zstd) +
#                                        this machine's rustc 1.95 toolchain: what the users'
#                                        `docker build` does, to check that path.
# Each is saved as an OCI archive under $OXBOW_CACHE/k8s/images/<name>.tar, which up.sh imports
# into the node's containerd. Bases are cached by stamp; the project's images are rebuilt each
# run (podman's layer cache makes an unchanged binary a no-op).
# Prints the archive directory on stdout.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
log() { echo "[images] $*" >&2; }
die() { echo "[images] ERROR: $*" >&2; exit 1; }

OUT=$OXBOW_CACHE/k8s/images
WORK=$OXBOW_CACHE/k8s/images/work
mkdir -p "$OUT" "$WORK"
RUST_VERSION=${OXBOW_RUST_VERSION:-1.95.0}
IMAGE_BINARY=${OXBOW_IMAGE_BINARY:-prebuilt}
[[ $IMAGE_BINARY == prebuilt || $IMAGE_BINARY == build ]] || die "OXBOW_IMAGE_BINARY=$IMAGE_BINARY: prebuilt or build"
BASE_IMAGE=localhost/oxbow-base-cc:bookworm
BUILDER_IMAGE=localhost/oxbow-rust-builder:${RUST_VERSION%.*}
BUILDER_BASE_IMAGE=localhost/oxbow-rust-builder-base:${RUST_VERSION%.*}
PAUSE_IMAGE=$NODE_PAUSE_IMAGE
# crun 1.8 (podman's default) refuses this host's hybrid cgroup v1 layout; runc works. No
# systemd here: podman manages cgroups itself.
pm() { podman --runtime runc --cgroup-manager cgroupfs --events-backend file "$@"; }
have_image() { pm image exists "$1"; }
stamp_ok() { [[ -f $OUT/.stamp-$1 && $(cat "$OUT/.stamp-$1") == "$2" ]] && have_image "$3"; }
# Debian sources for mmdebstrap: the host's own (a mirror or snapshot an admin set stays in use).
sources() {
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then echo /etc/apt/sources.list.d/debian.sources
  else echo /etc/apt/sources.list; fi
}

# Files every base gets: the users of distroless's nonroot variant (root 0, nonroot 65532),
# a sticky /tmp.
base_hook='
  printf "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" > "$1/etc/passwd"
  printf "root:x:0:\nnonroot:x:65532:\n" > "$1/etc/group"
  mkdir -p "$1/home/nonroot" "$1/tmp" && chown 65532:65532 "$1/home/nonroot" && chmod 1777 "$1/tmp"'

build_base() {
  local want="bookworm libc6 libgcc-s1 netbase tzdata v2"
  if stamp_ok base "$want" "$BASE_IMAGE"; then log "$BASE_IMAGE cached"; return; fi
  log "making $BASE_IMAGE from Debian packages"
  # extract: only the listed packages' files, no dpkg/apt, no shell (like distroless)
  mmdebstrap --quiet --variant=extract --include=libc6,libgcc-s1,netbase,tzdata,base-files \
    --skip=output/dev --extract-hook="$base_hook" \
    --extract-hook='rm -rf "$1"/usr/share/doc "$1"/usr/share/man' \
    bookworm "$WORK/base.tar" "$(sources)" >&2
  pm import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
  rm -f "$WORK/base.tar"
  echo "$want" > "$OUT/.stamp-base"
}

build_builder() {
  local sysroot want
  sysroot=$(rustup run "$RUST_VERSION" rustc --print sysroot 2>/dev/null) ||
    die "rust toolchain $RUST_VERSION not installed (rustup toolchain install $RUST_VERSION)"
  want="bookworm gcc libc6-dev $(rustup run "$RUST_VERSION" rustc --version) v1"
  if stamp_ok builder "$want" "$BUILDER_BASE_IMAGE"; then log "$BUILDER_BASE_IMAGE cached"; builder_trust; return; fi
  log "making $BUILDER_IMAGE from Debian packages and $sysroot"
  # The same layout as the rust image: toolchain on PATH, CARGO_HOME=/usr/local/cargo (the
  # Dockerfile's registry cache mount). Docs and rust-src are left out (1 GiB not needed).
  mmdebstrap --quiet --variant=minbase --include=gcc,libc6-dev,ca-certificates \
    --skip=output/dev --customize-hook="$base_hook" \
    --customize-hook="mkdir -p \"\$1/usr/local/rust\" \"\$1/usr/local/cargo\" && tar -C '$sysroot' --exclude=./share/doc --exclude=./lib/rustlib/src -c . | tar -C \"\$1/usr/local/rust\" -x" \
    bookworm "$WORK/builder.tar" "$(sources)" >&2
  pm import --quiet \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    "$WORK/builder.tar" "$BUILDER_BASE_IMAGE" >/dev/null
  rm -f "$WORK/builder.tar"
  echo "$want" > "$OUT/.stamp-builder"
  builder_trust
}

# The build stage fetches crates over TLS; a machine whose egress re-signs TLS (a proxy with its
# own CA in /usr/local/share/ca-certificates) must pass that trust on, as the host has it.
builder_trust() {
  local ctx=$WORK/builder-ctx
  rm -rf "$ctx"; mkdir -p "$ctx/ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
  printf 'FROM %s\nCOPY ca/ /usr/local/share/ca-certificates/\nRUN update-ca-certificates >/dev/null\n' "$BUILDER_BASE_IMAGE" > "$ctx/Containerfile"
  pm build --quiet --network none -t "$BUILDER_IMAGE" "$ctx" >/dev/null
}

build_python() {
  local want="bookworm python3.11-minimal libpython3.11-stdlib v3"
  if stamp_ok python "$want" "$NODE_PYTHON_IMAGE" && [[ -f $OUT/python.tar ]]; then log "$NODE_PYTHON_IMAGE cached"; return; fi
  log "making $NODE_PYTHON_IMAGE from Debian packages"
  mmdebstrap --quiet --variant=extract \
    --include=python3.11-minimal,libpython3.11-minimal,libpython3.11-stdlib,libc6,zlib1g,libexpat1,libssl3,netbase,base-files \
    --skip=output/dev --extract-hook="$base_hook" \
    --extract-hook='ln -sf python3.11 "$1/usr/bin/python3"; rm -rf "$1"/usr/share/doc "$1"/usr/share/man' \
    bookworm "$WORK/python.tar" "$(sources)" >&2
  pm import --quiet --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change 'USER 65532:65532' \
    "$WORK/python.tar" "$NODE_PYTHON_IMAGE" >/dev/null
  rm -f "$WORK/python.tar"
  save "$NODE_PYTHON_IMAGE" python
  echo "$want" > "$OUT/.stamp-python"
}

build_pause() {
  local want bin=$WORK/pause
  want="pause $(cat "$K8S_DIR/images/pause/main.go" "$K8S_DIR/images/pause/go.mod" | sha256sum | cut -c1-16)"
  if stamp_ok pause "$want" "$PAUSE_IMAGE" && [[ -f $OUT/pause.tar ]]; then log "$PAUSE_IMAGE cached"; return; fi
  log "building $PAUSE_IMAGE"
  (cd "$K8S_DIR/images/pause" && CGO_ENABLED=0 GOFLAGS=-trimpath go build -ldflags='-s -w' -o "$bin" .)
  mkdir -p "$WORK/pause-ctx"; mv "$bin" "$WORK/pause-ctx/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$WORK/pause-ctx/Containerfile"
  pm build --quiet -t "$PAUSE_IMAGE" "$WORK/pause-ctx" >/dev/null
  save "$PAUSE_IMAGE" pause
  echo "$want" > "$OUT/.stamp-pause"
}

save() { # image archive-name: an OCI archive for `ctr images import` (only when the image changed)
  local id; id=$(pm image inspect --format '{{.Id}}' "$1")
  if [[ -f $OUT/$2.tar && -f $OUT/$2.id && $(cat "$OUT/$2.id") == "$id" ]]; then return; fi
  rm -f "$OUT/$2.tar"
  pm save --quiet --format oci-archive -o "$OUT/$2.tar.tmp" "$1"
  mv "$OUT/$2.tar.tmp" "$OUT/$2.tar"; echo "$id" > "$OUT/$2.id"
}

build_project() { # component image
  local comp=$1 image=$2 t0=$SECONDS ctx=$WORKSPACE args
  args=(--build-arg "RUNTIME_IMAGE=$BASE_IMAGE" -f "$WORKSPACE/$comp/Dockerfile")
  if [[ $IMAGE_BINARY == prebuilt ]]; then
    local bin=$OXBOW_BIN_DIR/oxbow-$comp
    [[ -x $bin ]] || die "$bin missing: cargo build -p oxbow-$comp first (or OXBOW_IMAGE_BINARY=build)"
    # The context: the binary and the empty `data` directory the broker's data volume is made
    # from. Debug info stripped (the debug broker is 170 MB, 37 MB without it, saved
    # and imported on every run); its symbols stay, so backtraces keep their function names.
    ctx=$WORK/$comp-prebuilt
    rm -rf "$ctx"; mkdir -p "$ctx/data"
    objcopy --strip-debug "$bin" "$ctx/oxbow-$comp"
    log "building $image from $comp/Dockerfile (--target prebuilt: $bin)"
    chmod 0755 "$ctx/oxbow-$comp"
    args+=(--network none --target prebuilt)
  else
    log "building $image from $comp/Dockerfile (its build stage: cargo build --release in $BUILDER_IMAGE)"
    # --network host: cargo fetches crates from the registry during the build stage.
    args+=(--network host --ignorefile "$WORKSPACE/$comp/Dockerfile.dockerignore" --build-arg "BUILD_IMAGE=$BUILDER_IMAGE")
  fi
  if ! pm build --quiet "${args[@]}" -t "$image" "$ctx" >"$OUT/$comp-build.log" 2>&1; then
    tail -n 40 "$OUT/$comp-build.log" >&2; die "podman build of $comp/Dockerfile failed (log: $OUT/$comp-build.log)"
  fi
  save "$image" "$comp"
  # each rebuild leaves the previous image (and with OXBOW_IMAGE_BINARY=build its build stage: 1 GiB) untagged
  pm image prune -f >/dev/null
  log "$image ready in $((SECONDS - t0))s"
}

for t in podman mmdebstrap go objcopy; do command -v "$t" >/dev/null || die "$t missing (install-node-packages.sh)"; done
build_base
[[ $IMAGE_BINARY == prebuilt ]] || { command -v rustup >/dev/null || die "rustup missing"; build_builder; }
build_pause
build_python
build_project broker "$NODE_BROKER_IMAGE"
build_project operator "$NODE_OPERATOR_IMAGE"
echo "$OUT"
