#!/usr/bin/env bash
# Installs the real-world tools the end-to-end tests drive against oxbow-broker:
#
#   * Apache Kafka 4.1.0 (jars from Maven Central) with wrapper scripts carrying
#     Kafka's usual names (kafka-topics.sh, kafka-console-producer.sh, ...),
#   * Kafka Streams 4.1.0 and its dependencies (rocksdbjni, ...) from Maven Central in
#     kafka-streams-4.1.0/libs, for the Streams application the e2e tests compile,
#   * kcat (Debian package),
#   * a Python venv with kafka-python and confluent-kafka (PyPI).
#
# Everything goes into ${OXBOW_CACHE:-$HOME/.cache/oxbow}. Idempotent: a stamp
# file records what was installed (one for Kafka and the clients, one in the Streams
# directory), a re-run with the stamps in place only checks them and returns. Versions
# are pinned below.
#
# Usage:
#   e2e/scripts/install-tools.sh              install (or verify) everything
#   e2e/scripts/install-tools.sh --print-bin  print the Kafka bin dir, install first if needed
#   e2e/scripts/install-tools.sh --force      reinstall
#   export PATH=$(e2e/scripts/install-tools.sh --print-bin):$PATH
set -euo pipefail

KAFKA_VERSION=4.1.0
SCALA_VERSION=2.13
LOG4J_VERSION=2.24.3 # the log4j2 version kafka 4.1.0 itself depends on
KAFKA_PYTHON_VERSION=2.3.0
CONFLUENT_KAFKA_VERSION=2.12.1
STAMP_VERSION=3 # bump when the layout of what this script produces changes

CACHE="${OXBOW_CACHE:-$HOME/.cache/oxbow}"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
VENV="$CACHE/venv"
STAMP="$CACHE/.tools-stamp"
STAMP_CONTENT="stamp=$STAMP_VERSION kafka=$KAFKA_VERSION log4j=$LOG4J_VERSION kafka-python=$KAFKA_PYTHON_VERSION confluent-kafka=$CONFLUENT_KAFKA_VERSION"
# Kafka Streams has a directory and stamp of its own, so adding it did not make every
# existing cache reinstall Kafka.
STREAMS_HOME="$CACHE/kafka-streams-$KAFKA_VERSION"
STREAMS_STAMP="$STREAMS_HOME/.stamp"
STREAMS_STAMP_CONTENT="kafka-streams=$KAFKA_VERSION log4j=$LOG4J_VERSION"

PRINT_BIN=0
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --print-bin) PRINT_BIN=1 ;;
    --force) FORCE=1 ;;
    -h | --help)
      sed -n '2,18p' "$0"
      exit 0
      ;;
    *)
      echo "install-tools.sh: unknown argument $arg" >&2
      exit 2
      ;;
  esac
done

# With --print-bin, stdout carries only the path; all chatter goes to stderr.
log() { echo "install-tools: $*" >&2; }

# Kafka's bin/*.sh -> main class, as in Kafka 4.1.0's own bin scripts. Every
# class is checked to exist in the downloaded jars before a wrapper is written.
TOOLS=(
  "kafka-topics.sh org.apache.kafka.tools.TopicCommand"
  "kafka-configs.sh kafka.admin.ConfigCommand"
  "kafka-console-producer.sh org.apache.kafka.tools.ConsoleProducer"
  "kafka-console-consumer.sh org.apache.kafka.tools.consumer.ConsoleConsumer"
  "kafka-console-share-consumer.sh org.apache.kafka.tools.consumer.ConsoleShareConsumer"
  "kafka-delete-records.sh org.apache.kafka.tools.DeleteRecordsCommand"
  "kafka-broker-api-versions.sh org.apache.kafka.tools.BrokerApiVersionsCommand"
  "kafka-verifiable-producer.sh org.apache.kafka.tools.VerifiableProducer"
  "kafka-verifiable-consumer.sh org.apache.kafka.tools.VerifiableConsumer"
  "kafka-consumer-groups.sh org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
  "kafka-share-groups.sh org.apache.kafka.tools.consumer.group.ShareGroupCommand"
  "kafka-producer-perf-test.sh org.apache.kafka.tools.ProducerPerformance"
  "kafka-consumer-perf-test.sh org.apache.kafka.tools.ConsumerPerformance"
  "kafka-reassign-partitions.sh org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
  "kafka-leader-election.sh org.apache.kafka.tools.LeaderElectionCommand"
  "kafka-get-offsets.sh org.apache.kafka.tools.GetOffsetShell"
  "kafka-log-dirs.sh org.apache.kafka.tools.LogDirsCommand"
  "kafka-metadata-quorum.sh org.apache.kafka.tools.MetadataQuorumCommand"
  "kafka-features.sh org.apache.kafka.tools.FeatureCommand"
  "kafka-transactions.sh org.apache.kafka.tools.TransactionsCommand"
  "kafka-cluster.sh org.apache.kafka.tools.ClusterTool"
  "kafka-e2e-latency.sh org.apache.kafka.tools.EndToEndLatency"
  "kafka-acls.sh org.apache.kafka.tools.AclCommand"
  "kafka-groups.sh org.apache.kafka.tools.GroupsCommand"
  "kafka-client-metrics.sh org.apache.kafka.tools.ClientMetricsCommand"
  "kafka-dump-log.sh kafka.tools.DumpLogSegments"
  "kafka-storage.sh kafka.tools.StorageTool"
  "kafka-server-start.sh kafka.Kafka"
)

streams_ok() {
  [[ $FORCE == 0 && -f $STREAMS_STAMP && "$(cat "$STREAMS_STAMP")" == "$STREAMS_STAMP_CONTENT" ]]
}

stamp_ok() {
  [[ $FORCE == 0 && -f $STAMP && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]] || return 1
  streams_ok || return 1
  [[ -x $KAFKA_HOME/bin/kafka-topics.sh && -x $VENV/bin/python ]] || return 1
  command -v kcat >/dev/null 2>&1 || return 1
  return 0
}

if stamp_ok; then
  if [[ $PRINT_BIN == 1 ]]; then
    echo "$KAFKA_HOME/bin"
  else
    log "cached: $STAMP_CONTENT (in $CACHE; --force to reinstall)"
  fi
  exit 0
fi

need() {
  command -v "$1" >/dev/null 2>&1 || {
    log "ERROR: '$1' is required ($2)"
    exit 1
  }
}
need java "Java 17+ runs the Kafka tools"
need mvn "Maven downloads the Kafka jars from Maven Central"
need unzip "unzip checks main classes inside the jars"

mkdir -p "$CACHE"

# --------------------------------------------------------------------------
# 1. Kafka jars
# --------------------------------------------------------------------------
install_kafka() {
  local build="$CACHE/.kafka-build"
  rm -rf "$build" "$KAFKA_HOME.tmp"
  mkdir -p "$build" "$KAFKA_HOME.tmp/libs" "$KAFKA_HOME.tmp/bin" "$KAFKA_HOME.tmp/config"
  cat >"$build/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.oxbow.e2e</groupId>
  <artifactId>kafka-cli-bundle</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_$SCALA_VERSION</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- slf4j 1.7 -> log4j2 binding and log4j2 itself, as in Kafka's binary distribution -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-1.2-api</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  log "downloading Apache Kafka $KAFKA_VERSION jars from Maven Central (mvn dependency:copy-dependencies)"
  local mvn_flags=(-B -q -Dstyle.color=never)
  [[ ${CI:-} == true ]] && mvn_flags+=(-ntp)
  (cd "$build" && mvn "${mvn_flags[@]}" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME.tmp/libs") >&2

  # Tool wrappers: check each main class really is in a jar.
  local index="$build/classes.txt"
  for jar in "$KAFKA_HOME.tmp"/libs/*.jar; do
    unzip -Z1 "$jar" '*.class' 2>/dev/null || true
  done >"$index"

  # Logging for the tools: WARN and above to stderr, like Kafka's tools-log4j2.yaml.
  cat >"$KAFKA_HOME.tmp/config/tools-log4j2.yaml" <<'EOF'
Configuration:
  Properties:
    Property:
      - name: "logPattern"
        value: "[%d] %p %m (%c)%n"
  Appenders:
    Console:
      name: STDERR
      target: SYSTEM_ERR
      PatternLayout:
        pattern: "${logPattern}"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDERR
EOF
  # Logging for a real Kafka server (KafkaBroker in the e2e harness): INFO to stdout.
  cat >"$KAFKA_HOME.tmp/config/log4j2.yaml" <<'EOF'
Configuration:
  Properties:
    Property:
      - name: "logPattern"
        value: "[%d] %p %m (%c)%n"
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "${logPattern}"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: INFO
      - name: state.change.logger
        level: WARN
EOF

  cat >"$KAFKA_HOME.tmp/bin/kafka-run-class.sh" <<'EOF'
#!/usr/bin/env bash
# Minimal stand-in for Kafka's kafka-run-class.sh: runs a main class from ../libs.
# KAFKA_HEAP_OPTS (default -Xmx256m), KAFKA_OPTS, KAFKA_LOG4J_OPTS and
# KAFKA_JVM_PERFORMANCE_OPTS work as with Kafka's own scripts.
base_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
: "${KAFKA_HEAP_OPTS:=-Xmx256m}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.yaml}"
: "${KAFKA_JVM_PERFORMANCE_OPTS:=-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto -Djava.awt.headless=true}"
# shellcheck disable=SC2086
exec "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_LOG4J_OPTS \
  -Dkafka.logs.dir="${LOG_DIR:-/tmp}" $KAFKA_OPTS -cp "$base_dir/libs/*" "$@"
EOF
  local entry name class path
  for entry in "${TOOLS[@]}"; do
    name="${entry%% *}"
    class="${entry#* }"
    path="${class//.//}.class"
    if ! grep -qxF "$path" "$index"; then
      log "ERROR: main class $class for $name not found in the Kafka $KAFKA_VERSION jars"
      exit 1
    fi
    if [[ $name == kafka-server-start.sh ]]; then
      # Servers get a bigger heap, INFO logging and the JIT fully on.
      cat >"$KAFKA_HOME.tmp/bin/$name" <<EOF
#!/usr/bin/env bash
# Apache Kafka $KAFKA_VERSION: $name -> $class
base_dir="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")/.." && pwd)"
: "\${KAFKA_HEAP_OPTS:=-Xmx1G -Xms1G}"
: "\${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=\$base_dir/config/log4j2.yaml}"
: "\${KAFKA_JVM_PERFORMANCE_OPTS:=-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
export KAFKA_HEAP_OPTS KAFKA_LOG4J_OPTS KAFKA_JVM_PERFORMANCE_OPTS
exec "\$(dirname "\${BASH_SOURCE[0]}")/kafka-run-class.sh" $class "\$@"
EOF
    else
      cat >"$KAFKA_HOME.tmp/bin/$name" <<EOF
#!/usr/bin/env bash
# Apache Kafka $KAFKA_VERSION: $name -> $class
exec "\$(dirname "\${BASH_SOURCE[0]}")/kafka-run-class.sh" $class "\$@"
EOF
    fi
  done
  chmod +x "$KAFKA_HOME.tmp"/bin/*.sh
  rm -rf "$KAFKA_HOME" "$build"
  mv "$KAFKA_HOME.tmp" "$KAFKA_HOME"
  log "installed Apache Kafka $KAFKA_VERSION: $(find "$KAFKA_HOME/libs" -name '*.jar' | wc -l) jars, ${#TOOLS[@]} tool wrappers in $KAFKA_HOME/bin"
  for entry in "${TOOLS[@]}"; do
    log "  ${entry%% *} -> ${entry#* }"
  done
}

# --------------------------------------------------------------------------
# 1b. Kafka Streams (its own directory: the tools' classpath stays Kafka's)
# --------------------------------------------------------------------------
install_streams() {
  local build="$CACHE/.streams-build"
  rm -rf "$build" "$STREAMS_HOME.tmp"
  mkdir -p "$build" "$STREAMS_HOME.tmp/libs" "$STREAMS_HOME.tmp/config"
  # kafka-streams-examples (WordCountDemo) is not published on Maven Central for 4.x,
  # so the tests compile a word count of their own (e2e/tests/java/StreamsWordCount.java).
  cat >"$build/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.oxbow.e2e</groupId>
  <artifactId>kafka-streams-bundle</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-streams</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  log "downloading Kafka Streams $KAFKA_VERSION jars from Maven Central (mvn dependency:copy-dependencies)"
  local mvn_flags=(-B -q -Dstyle.color=never)
  [[ ${CI:-} == true ]] && mvn_flags+=(-ntp)
  (cd "$build" && mvn "${mvn_flags[@]}" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$STREAMS_HOME.tmp/libs") >&2
  if ! unzip -Z1 "$STREAMS_HOME.tmp/libs/kafka-streams-$KAFKA_VERSION.jar" \
    org/apache/kafka/streams/KafkaStreams.class >/dev/null 2>&1; then
    log "ERROR: org.apache.kafka.streams.KafkaStreams not found in kafka-streams-$KAFKA_VERSION.jar"
    exit 1
  fi
  # WARN and above to stderr (a properties file: log4j2's YAML needs Jackson's YAML
  # module); OXBOW_STREAMS_LOG_LEVEL=INFO to see more.
  cat >"$STREAMS_HOME.tmp/config/log4j2.properties" <<'EOF'
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${env:OXBOW_STREAMS_LOG_LEVEL:-WARN}
rootLogger.appenderRef.stderr.ref = STDERR
EOF
  echo "$STREAMS_STAMP_CONTENT" >"$STREAMS_HOME.tmp/.stamp"
  rm -rf "$STREAMS_HOME" "$build"
  mv "$STREAMS_HOME.tmp" "$STREAMS_HOME"
  log "installed Kafka Streams $KAFKA_VERSION: $(find "$STREAMS_HOME/libs" -name '*.jar' | wc -l) jars in $STREAMS_HOME/libs"
}

# --------------------------------------------------------------------------
# 2. kcat
# --------------------------------------------------------------------------
install_kcat() {
  if command -v kcat >/dev/null 2>&1; then
    log "kcat present: $(kcat -V 2>&1 | head -1)"
    return
  fi
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing kcat (apt-get install kcat)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends kcat >&2 ||
      { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends kcat >&2; }
    log "installed $(kcat -V 2>&1 | head -1)"
  else
    log "ERROR: kcat is missing and cannot be installed here (need root + apt-get): install the 'kcat' package"
    exit 1
  fi
}

# --------------------------------------------------------------------------
# 3. Python clients
# --------------------------------------------------------------------------
install_python() {
  local py=""
  for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import venv, ensurepip' 2>/dev/null; then
      py="$cand"
      break
    fi
  done
  if [[ -z $py ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      log "installing python3-venv (apt-get)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >&2 ||
        { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >&2; }
      py=/usr/bin/python3
    else
      log "ERROR: python3 with the venv module is required"
      exit 1
    fi
  fi
  rm -rf "$VENV"
  log "creating Python venv $VENV with $($py --version 2>&1)"
  "$py" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "kafka-python==$KAFKA_PYTHON_VERSION" "confluent-kafka==$CONFLUENT_KAFKA_VERSION" >&2
  "$VENV/bin/python" - >&2 <<'EOF'
import kafka, confluent_kafka
print("install-tools: python clients: kafka-python", kafka.__version__,
      "/ confluent-kafka", confluent_kafka.__version__, "librdkafka", confluent_kafka.libversion()[0])
EOF
}

if [[ $FORCE == 1 || ! -x $KAFKA_HOME/bin/kafka-topics.sh || ! -f $STAMP || "$(cat "$STAMP")" != "$STAMP_CONTENT" ]]; then
  rm -f "$STAMP"
  install_kafka
fi
streams_ok || install_streams
install_kcat
if [[ $FORCE == 1 || ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c "import kafka, confluent_kafka; assert kafka.__version__ == '$KAFKA_PYTHON_VERSION'; assert confluent_kafka.__version__ == '$CONFLUENT_KAFKA_VERSION'" 2>/dev/null; then
  install_python
fi

# Smoke check: a tool starts and prints its version.
ver="$("$KAFKA_HOME/bin/kafka-topics.sh" --version 2>&1 | head -1 || true)"
log "kafka-topics.sh --version: $ver"
[[ $ver == *"$KAFKA_VERSION"* ]] || { log "ERROR: kafka-topics.sh does not run"; exit 1; }

echo "$STAMP_CONTENT" >"$STAMP"
log "ready: kafka bin=$KAFKA_HOME/bin kcat=$(command -v kcat) python=$VENV/bin/python"
if [[ $PRINT_BIN == 1 ]]; then
  echo "$KAFKA_HOME/bin"
fi
