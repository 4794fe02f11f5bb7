#!/usr/bin/env bash
# Start or stop the local services YADTQ needs: an Apache Kafka broker (KRaft,
# single node) and a Redis server. Idempotent: a service that already answers at
# its address is left alone, and only what this script started is stopped.
#
#   scripts/services.sh up|down|status
#
# Addresses come from YADTQ_KAFKA and YADTQ_REDIS (host:port; the Makefile reads
# them from yadtq.yaml). KAFKA_HOME, when set, names an installed Kafka whose
# libs/ are used instead of the jars fetched from Maven Central.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE="$ROOT/.services"                     # git-ignored: data, logs, pid files
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/yadtq/kafka-$KAFKA_VERSION"
KAFKA_ADDR=${YADTQ_KAFKA:-localhost:9092}
REDIS_ADDR=${YADTQ_REDIS:-localhost:6379}
START_TIMEOUT=${YADTQ_SERVICE_TIMEOUT:-90}

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }
host_of() { echo "${1%:*}"; }
port_of() { echo "${1##*:}"; }
is_local() { case "$1" in localhost|127.*|::1|"") return 0 ;; *) return 1 ;; esac; }
answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() {  # wait_for NAME HOST PORT PIDFILE
  local deadline=$((SECONDS + START_TIMEOUT))
  until answers "$2" "$3"; do
    if [ -f "$4" ] && ! kill -0 "$(cat "$4")" 2>/dev/null; then
      die "$1 exited while starting; see its log under $STATE"
    fi
    [ $SECONDS -lt $deadline ] || die "$1 did not answer on $2:$3 within ${START_TIMEOUT}s; see its log under $STATE"
    sleep 0.5
  done
}

# --- Redis ---------------------------------------------------------------
redis_up() {
  local host port; host=$(host_of "$REDIS_ADDR"); port=$(port_of "$REDIS_ADDR")
  if answers "$host" "$port"; then say "redis already answers on $REDIS_ADDR"; return; fi
  is_local "$host" || die "redis at $REDIS_ADDR does not answer, and it is not local, so it is not started here"
  if ! command -v redis-server >/dev/null; then
    command -v apt-get >/dev/null || die "redis-server is missing and apt-get is not available: install Redis"
    say "installing redis-server (Debian package)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null \
      || die "could not install redis-server with apt-get (are you root?)"
  fi
  mkdir -p "$STATE/redis"
  # appendonly: a Redis restart keeps the scheduler's tables and the results.
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
    --dir "$STATE/redis" --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log" \
    --appendonly yes --appendfsync everysec --save "" >/dev/null
  wait_for redis 127.0.0.1 "$port" "$STATE/redis/redis.pid"
  say "redis started on 127.0.0.1:$port (pid $(cat "$STATE/redis/redis.pid"))"
}

# --- Kafka ---------------------------------------------------------------
kafka_classpath() {
  if [ -n "${KAFKA_HOME:-}" ]; then
    [ -d "$KAFKA_HOME/libs" ] || die "KAFKA_HOME=$KAFKA_HOME has no libs/ folder"
    echo "$KAFKA_HOME/libs/*"; return
  fi
  if [ ! -f "$CACHE/.complete" ]; then
    command -v java >/dev/null || die "java is missing: install a JDK 17 (apt-get install openjdk-17-jre-headless)"
    command -v mvn >/dev/null || die "mvn is missing: install Maven (apt-get install maven), or set KAFKA_HOME"
    say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $CACHE" >&2
    rm -rf "$CACHE"; mkdir -p "$CACHE/libs"
    mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$CACHE/libs" -DincludeScope=runtime >"$CACHE/mvn.log" 2>&1 \
      || die "mvn could not fetch Kafka; see $CACHE/mvn.log"
    touch "$CACHE/.complete"
  fi
  echo "$CACHE/libs/*"
}

kafka_config() {  # writes the broker's server.properties for PORT
  local port=$1 dir=$STATE/kafka
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# A single local node: no reason to delay the first consumer-group rebalance.
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
PROPS
}

kafka_up() {
  local host port cp dir=$STATE/kafka
  host=$(host_of "$KAFKA_ADDR"); port=$(port_of "$KAFKA_ADDR")
  if answers "$host" "$port"; then say "kafka already answers on $KAFKA_ADDR"; return; fi
  is_local "$host" || die "kafka at $KAFKA_ADDR does not answer, and it is not local, so it is not started here"
  command -v java >/dev/null || die "java is missing: install a JDK 17 (apt-get install openjdk-17-jre-headless)"
  cp=$(kafka_classpath)
  mkdir -p "$dir/data"
  kafka_config "$port"
  local java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dkafka.logs.dir=$dir" "-Dlog4j2.configurationFile=$ROOT/scripts/kafka/log4j2.properties")
  if [ ! -f "$dir/data/meta.properties" ]; then
    # A KRaft node's storage is formatted once, as kafka-storage.sh format does.
    local cluster_id
    cluster_id=$(python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
    java "${java_opts[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$dir/server.properties" >"$dir/format.log" 2>&1 || die "formatting Kafka storage failed; see $dir/format.log"
  fi
  nohup java "${java_opts[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
  wait_for kafka 127.0.0.1 "$port" "$dir/kafka.pid"
  say "kafka $KAFKA_VERSION started on 127.0.0.1:$port (pid $(cat "$dir/kafka.pid"))"
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE
  [ -f "$2" ] || { say "$1 was not started here"; return; }
  local pid; pid=$(cat "$2")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    say "$1 stopped (pid $pid)"
  else
    say "$1 was not running"
  fi
  rm -f "$2"
}

status() {
  local name addr
  for name in kafka redis; do
    if [ $name = kafka ]; then addr=$KAFKA_ADDR; else addr=$REDIS_ADDR; fi
    if answers "$(host_of "$addr")" "$(port_of "$addr")"; then say "$name answers on $addr"
    else say "$name does not answer on $addr"; fi
  done
}

case "${1:-}" in
  up) redis_up; kafka_up ;;
  down) stop_pidfile kafka "$STATE/kafka/kafka.pid"; stop_pidfile redis "$STATE/redis/redis.pid" ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
