#!/usr/bin/env bash
# Shared by the benchmark scripts (sourced, not run): free ports, starting and stopping an
# oxbow-broker or a single-node Apache Kafka (KRaft) on loopback, and ratio arithmetic.
# Callers set ROOT, OXBOW_BIN (or call oxbow_release_bin), KAFKA_BIN, KAFKA_HEAP, define say(), and may set BROKER_EXTRA_PROPS
# (lines appended to both brokers' server.properties).

# Sets OXBOW_BIN: $OXBOW_BROKER_BIN if given, else a fresh release build of oxbow-broker.
oxbow_release_bin() {
  if [[ -n ${OXBOW_BROKER_BIN:-} ]]; then
    OXBOW_BIN="$OXBOW_BROKER_BIN"
    return
  fi
  say "building oxbow-broker (release)"
  (cd "$ROOT" && cargo build --release -q -p oxbow-broker) || {
    say "cargo build --release -p oxbow-broker failed"
    return 1
  }
  OXBOW_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/oxbow-broker"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port pid seconds [logfile pattern]
  local port=$1 pid=$2 secs=$3 log=${4:-} pat=${5:-}
  local deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      if [[ -z $pat ]] || grep -q "$pat" "$log" 2>/dev/null; then
        return 0
      fi
    fi
    sleep 0.1
  done
  return 1
}

start_broker() { # name dir port -> sets BROKER_PID
  local name=$1 dir=$2 port=$3
  mkdir -p "$dir/data"
  case $name in
    oxbow)
      cat >"$dir/server.properties" <<EOF
node.id=0
log.dirs=$dir/data
# Same as the Kafka broker below: no initial rebalance delay for either.
group.initial.rebalance.delay.ms=0
${BROKER_EXTRA_PROPS:-}
EOF
      NO_COLOR=1 RUST_LOG="${RUST_LOG:-warn}" "$OXBOW_BIN" "$dir/server.properties" \
        --override "listeners=PLAINTEXT://127.0.0.1:$port" \
        --override "advertised.listeners=PLAINTEXT://127.0.0.1:$port" >"$dir/broker.log" 2>&1 &
      BROKER_PID=$!
      wait_port "$port" "$BROKER_PID" 60
      ;;
    kafka)
      local cport
      cport=$(free_port)
      cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=0
controller.quorum.voters=0@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
${BROKER_EXTRA_PROPS:-}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
      "$KAFKA_BIN/kafka-storage.sh" format -t b3hib3ctYmVuY2gtY2x1c3Q -c "$dir/server.properties" >"$dir/format.log" 2>&1 || return 1
      KAFKA_HEAP_OPTS="$KAFKA_HEAP" LOG_DIR="$dir" "$KAFKA_BIN/kafka-server-start.sh" "$dir/server.properties" >"$dir/broker.log" 2>&1 &
      BROKER_PID=$!
      wait_port "$port" "$BROKER_PID" 180 "$dir/broker.log" "Kafka Server started"
      ;;
  esac
}

stop_broker() {
  [[ -n ${SAMPLER_PID:-} ]] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null
  SAMPLER_PID=""
  if [[ -n $BROKER_PID ]]; then
    kill -TERM "$BROKER_PID" 2>/dev/null
    for _ in $(seq 1 600); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
  fi
  BROKER_PID=""
}

num() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
ratio() { # oxbow kafka
  if num "${1:-}" && num "${2:-}" && awk -v b="$2" 'BEGIN {exit !(b > 0)}'; then
    awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a/b}'
  else
    echo "–"
  fi
}

# Per-round results live in the caller's associative array R as R[<broker>.<key>.<round>], for
# rounds 1..$ROUNDS. stats and round_row turn them into "median (min–max)" cells.

stats() { # values... -> "median (min–max)" of the numeric ones, or the first failure
  local nums=() v
  for v in "$@"; do num "$v" && nums+=("$v"); done
  if ((${#nums[@]} == 0)); then
    for v in "$@"; do [[ -n $v ]] && echo "$v" && return; done
    echo "–"
    return
  fi
  printf '%s\n' "${nums[@]}" | sort -g | awk -v rounds="$ROUNDS" '{a[NR] = $1} END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    if (NR == 1) printf "%g", m; else printf "%g (%g–%g)", m, a[1], a[NR]
    if (NR < rounds) printf " [%d of %d rounds]", NR, rounds
  }'
}

round_row() { # label key: a Markdown row with oxbow, kafka and the per-round ratios
  local label=$1 key=$2 o=() k=() q=() r x
  for ((r = 1; r <= ROUNDS; r++)); do
    o+=("${R[oxbow.$key.$r]:-}")
    k+=("${R[kafka.$key.$r]:-}")
    x=$(ratio "${R[oxbow.$key.$r]:-}" "${R[kafka.$key.$r]:-}")
    q+=("${x%x}")
  done
  local qs
  qs=$(stats "${q[@]}")
  [[ $qs != "–" ]] && qs="${qs/ /x }" && [[ $qs != *x* ]] && qs="${qs}x"
  printf '| %s | %s | %s | %s |\n' "$label" "$(stats "${o[@]}")" "$(stats "${k[@]}")" "$qs"
}
