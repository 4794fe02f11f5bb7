#!/usr/bin/env bash
# Start or stop the local services YADTQ needs: an Apache Kafka broker (KRaft,
# single node) and a Redis server. Idempotent: a service that already answers at
# its address is left alone, and only what this script started is stopped.
#
#   scripts/services.sh up|down|status            both services (what `make` uses)
#   scripts/services.sh kafka-up|kafka-down       one service; down is graceful
#   scripts/services.sh redis-up|redis-down       (SIGTERM), and up again on the
#                                                 same state dir keeps the data
#   scripts/services.sh cluster-id                the KRaft cluster id a fresh broker
#                                                 gets (YADTQ_KAFKA_CLUSTER_ID, or new)
#
# Addresses come from YADTQ_KAFKA and YADTQ_REDIS (host:port; the Makefile reads
# them from yadtq.yaml); the KRaft controller listens on the Kafka port + 1.
# KAFKA_HOME, when set, names an installed Kafka whose libs/ are used instead of
# the jars fetched from Maven Central. For private instances (tests):
#   YADTQ_SERVICES_DIR       state dir: data, logs, pid files (default .services/)
#   YADTQ_KAFKA_SASL_PORT    also open a SASL_PLAINTEXT listener (mechanism PLAIN)
#   YADTQ_KAFKA_SASL_USERS   on this port, for these users: "name:password,..."
#   YADTQ_REDIS_PASSWORD     Redis requires this password (AUTH)
#   YADTQ_KAFKA_JAVA_OPTS    the broker's JVM heap/GC/JIT flags, replacing the defaults
#   YADTQ_KAFKA_CLUSTER_ID   format a fresh broker's storage with this KRaft cluster id
#                            (brokers of one cluster share it) instead of a new one
#   YADTQ_KAFKA_BROKERS      N > 1: a KRaft cluster of N nodes (each broker and controller)
#                            on the Kafka port and the N-1 after it (9092-9094 for 3),
#                            controllers on those + 100, state under kafka-1..N/;
#                            its internal topics replicated min(N, 3) times
#   YADTQ_KAFKA_SESSION_MS   with N > 1: how long a node may miss heartbeats before it is
#                            fenced and its partitions move (default 4000; Kafka's is 9000)
#   YADTQ_SERVICES_BIND      the address Redis and the Kafka nodes' client listeners bind to
#                            and advertise (default 127.0.0.1; the tests of several hosts use
#                            one on a bridge that only their network namespaces reach)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${YADTQ_SERVICES_DIR:-$ROOT/.services}   # default git-ignored: data, logs, pid files
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/yadtq/kafka-$KAFKA_VERSION"
KAFKA_ADDR=${YADTQ_KAFKA:-localhost:9092}
REDIS_ADDR=${YADTQ_REDIS:-localhost:6379}
START_TIMEOUT=${YADTQ_SERVICE_TIMEOUT:-90}
BROKERS=${YADTQ_KAFKA_BROKERS:-1}
BIND=${YADTQ_SERVICES_BIND:-127.0.0.1}
KDIR=$STATE/kafka   # the Kafka node being worked on: kafka/ alone, or kafka-1..N/

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }
host_of() { echo "${1%:*}"; }
port_of() { echo "${1##*:}"; }
is_local() { case "$1" in localhost|127.*|::1|"") return 0 ;; *) [ "$1" = "$BIND" ] ;; esac; }
answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Running, and not a zombie: a daemon this script started is reparented to
# PID 1, which may take seconds to reap it after it has exited.
running() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat; stat=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 0
  [ "${stat%% *}" != Z ]
}

wait_for() {  # wait_for NAME HOST PORT PIDFILE
  local deadline=$((SECONDS + START_TIMEOUT))
  until answers "$2" "$3"; do
    if [ -f "$4" ] && ! running "$(cat "$4")"; then
      die "$1 exited while starting; see its log under $STATE"
    fi
    [ $SECONDS -lt $deadline ] || die "$1 did not answer on $2:$3 within ${START_TIMEOUT}s; see its log under $STATE"
    sleep 0.1
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
  # The password goes in a file only its owner can read, not on the command
  # line, where `ps` would show it to every user of the machine.
  local conf=$STATE/redis/redis.conf
  (umask 077; : >"$conf")
  if [ -n "${YADTQ_REDIS_PASSWORD:-}" ]; then
    case "$YADTQ_REDIS_PASSWORD" in *[[:space:]\"\\]*) die "YADTQ_REDIS_PASSWORD must not hold spaces, quotes or backslashes" ;; esac
    echo "requirepass \"$YADTQ_REDIS_PASSWORD\"" >>"$conf"
  fi
  # A pid file left by a Redis that was killed could make wait_for take the
  # new one for dead before it has written its own.
  rm -f "$STATE/redis/redis.pid"
  # appendonly: a Redis restart keeps the scheduler's tables and the results.
  redis-server "$conf" --port "$port" --bind "$BIND" --daemonize yes \
    --dir "$STATE/redis" --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log" \
    --appendonly yes --appendfsync everysec --save "" >/dev/null 9>&-
  wait_for redis "$BIND" "$port" "$STATE/redis/redis.pid"
  say "redis started on $BIND:$port (pid $(cat "$STATE/redis/redis.pid"))"
}

# --- Kafka ---------------------------------------------------------------
kafka_classpath() {
  if [ -n "${KAFKA_HOME:-}" ]; then
    [ -d "$KAFKA_HOME/libs" ] || die "KAFKA_HOME=$KAFKA_HOME has no libs/ folder"
    echo "$KAFKA_HOME/libs/*"; return
  fi
  if [ ! -f "$CACHE/.complete" ]; then
    # Private instances (tests) start in parallel: one fetch at a time, and a
    # second one finds the first one's jars instead of deleting them.
    mkdir -p "$(dirname "$CACHE")"
    exec 8>"$CACHE.lock"
    flock -w 900 8 || die "another scripts/services.sh is still fetching Kafka into $CACHE"
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

sasl_jaas() {  # the PLAIN login module line for YADTQ_KAFKA_SASL_USERS ("name:password,...")
  local entry name pw users=""
  local IFS=,
  for entry in $YADTQ_KAFKA_SASL_USERS; do
    name=${entry%%:*}; pw=${entry#*:}
    [ -n "$name" ] && [ "$name" != "$entry" ] || die "YADTQ_KAFKA_SASL_USERS: expected name:password,... (got an entry without ':')"
    case "$name$pw" in *[[:space:]\"\\\;=]*) die "YADTQ_KAFKA_SASL_USERS: names and passwords must not hold spaces, quotes, backslashes, ';' or '='" ;; esac
    users+=" user_$name=\"$pw\""
  done
  echo "org.apache.kafka.common.security.plain.PlainLoginModule required$users;"
}

kafka_config() {  # kafka_config PORT [NODE CONTROLLER_PORT VOTERS REPLICAS]: writes $KDIR/server.properties
  local port=$1 node=${2:-1} ctrl=${3:-$(($1 + 1))} voters=${4:-1@127.0.0.1:$(($1 + 1))} copies=${5:-1}
  local dir=$KDIR sasl=${YADTQ_KAFKA_SASL_PORT:-} isr=$(( ${5:-1} < 2 ? ${5:-1} : 2 ))
  local listeners="PLAINTEXT://$BIND:$port,CONTROLLER://127.0.0.1:$ctrl"
  local advertised="PLAINTEXT://$BIND:$port" map="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [ -n "$sasl" ]; then
    [ -n "${YADTQ_KAFKA_SASL_USERS:-}" ] || die "YADTQ_KAFKA_SASL_PORT is set but YADTQ_KAFKA_SASL_USERS is not"
    listeners+=",SASL_PLAINTEXT://$BIND:$sasl"
    advertised+=",SASL_PLAINTEXT://$BIND:$sasl"
    map+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  # The file may hold the SASL users' passwords: only its owner reads it.
  (umask 077; : >"$dir/server.properties")
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=$map
# The plain listener stays the inter-broker one; only clients use SASL.
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
# Kafka's own topics: one copy on a single node, min(N, 3) on N nodes (YADTQ sizes its own).
offsets.topic.replication.factor=$copies
transaction.state.log.replication.factor=$copies
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$copies
share.coordinator.state.topic.min.isr=$isr
# Local nodes: no reason to delay the first consumer-group rebalance.
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
PROPS
  if [ "$copies" -gt 1 ]; then
    # Several nodes: one that died is fenced, and its partitions led elsewhere, after
    # this long without its heartbeats. Kafka's 9 s default is most of a failover
    # (600 tasks in flight ended 20-28 s after their leader was killed, 5 s with 3 s).
    local session=${YADTQ_KAFKA_SESSION_MS:-4000}
    cat >>"$dir/server.properties" <<PROPS
broker.session.timeout.ms=$session
broker.heartbeat.interval.ms=$(( session / 6 ))
PROPS
  fi
  if [ -n "$sasl" ]; then
    cat >>"$dir/server.properties" <<PROPS
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=$(sasl_jaas)
PROPS
  fi
}

# Class-data sharing (YADTQ_KAFKA_CDS=1): the broker's classes, parsed once and
# mapped from a file on later starts, save about a second per start. A broker
# started without the archive writes it when it stops (kafka-down moves it into
# the cache); the JVM ignores an archive that does not match, so a stale one
# only costs that second. Keyed by JVM and classpath.
kafka_cds_file() {  # kafka_cds_file CLASSPATH
  echo "$CACHE/broker-$( { java -version 2>&1; echo "$1"; } | sha1sum | cut -c1-12).jsa"
}
kafka_cds() {  # kafka_cds CLASSPATH DIR: prints the JVM flag to use
  local jsa; jsa=$(kafka_cds_file "$1")
  if [ -f "$jsa" ]; then echo "-XX:SharedArchiveFile=$jsa"
  else echo "$jsa" >"$2/cds.target"; echo "-XX:ArchiveClassesAtExit=$2/broker.jsa"; fi
}
kafka_cds_keep() {  # after the broker stopped: publish the archive it wrote, atomically
  local dir=$KDIR target
  [ -f "$dir/cds.target" ] || return 0
  target=$(cat "$dir/cds.target"); rm -f "$dir/cds.target"
  if [ -s "$dir/broker.jsa" ] && [ ! -f "$target" ]; then
    mv "$dir/broker.jsa" "$target.$$" && mv -f "$target.$$" "$target"
  fi
  rm -f "$dir/broker.jsa"
}

# --- KRaft cluster id and storage ----------------------------------------
# Kafka's form of an id (Uuid.toString): 16 bytes in URL-safe base64 without
# padding, so 22 characters, the last of which carries 2 bits (A, Q, g or w).
# The all-zero id and 1 are reserved (Uuid.ZERO_UUID, METADATA_TOPIC_ID).
valid_cluster_id() {
  [[ $1 =~ ^[A-Za-z0-9_-]{21}[AQgw]$ ]] && [[ $1 != AAAAAAAAAAAAAAAAAAAAA[AQ] ]]
}

# A new id as Kafka's Uuid.randomUuid makes one: never reserved, and never one
# that begins with '-', which a command line takes for an option.
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
    if [[ $id != -* ]] && valid_cluster_id "$id"; then echo "$id"; return; fi
  done
}

cluster_id() {  # the id a fresh broker's storage gets: YADTQ_KAFKA_CLUSTER_ID, checked, or a new one
  local id=${YADTQ_KAFKA_CLUSTER_ID:-}
  if [ -z "$id" ]; then new_cluster_id; return; fi
  valid_cluster_id "$id" || die "YADTQ_KAFKA_CLUSTER_ID=$id is not a Kafka cluster id: expected 22 characters of URL-safe base64 (A-Z a-z 0-9 - _) of 16 bytes, the last one A, Q, g or w, and not the reserved 0 or 1; \`scripts/services.sh cluster-id\` makes one"
  echo "$id"
}

# data/ without meta.properties is a format that was interrupted (before this
# script formatted aside and renamed): it holds at most format's bootstrap.checkpoint.
kafka_clear_half_format() {
  local data=$KDIR/data
  [ -d "$data" ] || return 0
  [ -z "$(ls -A "$data" | grep -vx bootstrap.checkpoint)" ] \
    || die "$data holds files but no meta.properties: it is not a broker's storage made here; move it away"
  rm -rf "$data"
}

# A KRaft node's storage is formatted once, as kafka-storage.sh format does:
# into a folder of its own, renamed into place once whole, so that data/ either
# has its meta.properties or does not exist, whatever interrupts the format.
kafka_format() {  # kafka_format CLASSPATH JAVA_OPTS...
  local cp=$1 dir=$KDIR id rc=0 share=(); shift
  id=$(cluster_id)
  kafka_clear_half_format
  local tmp=$dir/data.format
  rm -rf "$tmp"
  (umask 077; grep -v '^log\.dirs=' "$dir/server.properties" >"$dir/format.properties"; echo "log.dirs=$tmp" >>"$dir/format.properties")
  [ "${YADTQ_KAFKA_CDS:-}" = 1 ] && [ -f "$(kafka_cds_file "$cp")" ] && share=("-XX:SharedArchiveFile=$(kafka_cds_file "$cp")")
  # --cluster-id=ID, one word: the tool takes a separate word that begins with '-' for an option.
  timeout "$START_TIMEOUT" java "$@" "${share[@]}" -cp "$cp" kafka.tools.StorageTool format \
    --cluster-id="$id" -c "$dir/format.properties" >"$dir/format.log" 2>&1 9>&- || rc=$?
  rm -f "$dir/format.properties"  # it may hold the SASL users' passwords
  [ $rc = 0 ] && [ -f "$tmp/meta.properties" ] || die "formatting Kafka storage failed (exit $rc); see $dir/format.log"
  mv "$tmp" "$dir/data"
  say "kafka storage formatted under $dir/data (cluster id $id)"
}

kafka_check_cluster_id() {  # storage made for another cluster cannot join the one asked for
  local want=${YADTQ_KAFKA_CLUSTER_ID:-} have
  [ -n "$want" ] || return 0
  have=$(sed -n 's/^cluster\.id=//p' "$KDIR/data/meta.properties")
  [ "$have" = "$want" ] || die "the storage under $KDIR/data belongs to cluster $have, not YADTQ_KAFKA_CLUSTER_ID=$want: unset it, or use another YADTQ_SERVICES_DIR"
}

kafka_java_opts() {  # prints nothing; sets JAVA_OPTS for the node in $KDIR
  local tuning
  read -r -a tuning <<<"${YADTQ_KAFKA_JAVA_OPTS:--Xms256m -Xmx768m -XX:+UseG1GC}"
  JAVA_OPTS=("${tuning[@]}" -Djava.awt.headless=true
    "-Dkafka.logs.dir=$KDIR" "-Dlog4j2.configurationFile=$ROOT/scripts/kafka/log4j2.properties")
}

# --- a KRaft cluster of N nodes on this machine (YADTQ_KAFKA_BROKERS=N) ----
# All nodes start before any is waited for: a node's broker port opens only once a
# majority of the controllers answer. Storage is formatted with one cluster id.
kafka_up_many() {
  local host base cp i port voters="" id missing=()
  host=$(host_of "$KAFKA_ADDR"); base=$(port_of "$KAFKA_ADDR")
  is_local "$host" || die "a Kafka cluster of $BROKERS nodes is only started on this machine; $KAFKA_ADDR is not local"
  [[ $BROKERS =~ ^[2-9]$ ]] || die "YADTQ_KAFKA_BROKERS=$BROKERS: expected 1 to 9 nodes"
  command -v java >/dev/null || die "java is missing: install a JDK 17 (apt-get install openjdk-17-jre-headless)"
  for i in $(seq 1 "$BROKERS"); do voters+="${voters:+,}$i@127.0.0.1:$((base + i - 1 + 100))"; done
  for i in $(seq 1 "$BROKERS"); do
    port=$((base + i - 1)); KDIR=$STATE/kafka-$i
    if answers "$BIND" "$port"; then
      [ -f "$KDIR/kafka.pid" ] && running "$(cat "$KDIR/kafka.pid")" \
        || die "port $port answers, but not a node of this $BROKERS-node cluster (a single broker started by \`make services\`? \`make services-down\` stops it)"
      continue
    fi
    missing+=("$i")
  done
  [ ${#missing[@]} -gt 0 ] || { say "kafka: all $BROKERS nodes already answer on $host:$base-$((base + BROKERS - 1))"; return; }
  cp=$(kafka_classpath)
  id=$( { cat "$STATE"/kafka-*/data/meta.properties 2>/dev/null || true; } | sed -n 's/^cluster\.id=//p' | head -1)
  export YADTQ_KAFKA_CLUSTER_ID=${id:-${YADTQ_KAFKA_CLUSTER_ID:-$(new_cluster_id)}}
  for i in "${missing[@]}"; do
    port=$((base + i - 1)); KDIR=$STATE/kafka-$i
    mkdir -p "$KDIR"
    kafka_config "$port" "$i" $((port + 100)) "$voters" $(( BROKERS < 3 ? BROKERS : 3 ))
    kafka_java_opts
    [ -f "$KDIR/data/meta.properties" ] || kafka_format "$cp" "${JAVA_OPTS[@]}"
    kafka_check_cluster_id
    nohup java "${JAVA_OPTS[@]}" -cp "$cp" kafka.Kafka "$KDIR/server.properties" >"$KDIR/stdout.log" 2>&1 9>&- &
    echo $! >"$KDIR/kafka.pid"
  done
  for i in "${missing[@]}"; do
    port=$((base + i - 1)); KDIR=$STATE/kafka-$i
    wait_for "kafka node $i" "$BIND" "$port" "$KDIR/kafka.pid"
    say "kafka $KAFKA_VERSION node $i of $BROKERS started on $BIND:$port (pid $(cat "$KDIR/kafka.pid"))"
  done
}

kafka_up() {
  if [ "$BROKERS" != 1 ]; then kafka_up_many; return; fi
  local host port cp dir=$KDIR
  host=$(host_of "$KAFKA_ADDR"); port=$(port_of "$KAFKA_ADDR")
  if answers "$host" "$port"; then say "kafka already answers on $KAFKA_ADDR"; return; fi
  is_local "$host" || die "kafka at $KAFKA_ADDR does not answer, and it is not local, so it is not started here"
  if answers 127.0.0.1 $((port + 1)); then
    die "port $((port + 1)) is in use: a broker on $port takes it for its KRaft controller"
  fi
  command -v java >/dev/null || die "java is missing: install a JDK 17 (apt-get install openjdk-17-jre-headless)"
  cluster_id >/dev/null  # a bad YADTQ_KAFKA_CLUSTER_ID stops here, before anything is written
  cp=$(kafka_classpath)
  mkdir -p "$dir"
  kafka_config "$port"
  kafka_java_opts
  local java_opts=("${JAVA_OPTS[@]}")
  [ -f "$dir/data/meta.properties" ] || kafka_format "$cp" "${java_opts[@]}"
  kafka_check_cluster_id
  local cds=()
  [ "${YADTQ_KAFKA_CDS:-}" = 1 ] && cds=("$(kafka_cds "$cp" "$dir")")
  nohup java "${java_opts[@]}" "${cds[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 9>&- &
  echo $! >"$dir/kafka.pid"
  wait_for kafka "$BIND" "$port" "$dir/kafka.pid"
  say "kafka $KAFKA_VERSION started on $BIND:$port (pid $(cat "$dir/kafka.pid"))"
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE
  [ -f "$2" ] || { say "$1 was not started here"; return; }
  local pid; pid=$(cat "$2")
  if running "$pid"; then
    kill "$pid"  # SIGTERM: both Kafka and Redis shut down cleanly on it
    for _ in $(seq 1 300); do running "$pid" || break; sleep 0.1; done
    running "$pid" && kill -9 "$pid"
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

kafka_down() {  # the single broker, and every node of a cluster started here
  stop_pidfile kafka "$STATE/kafka/kafka.pid"; kafka_cds_keep
  local node
  for node in "$STATE"/kafka-[0-9]*; do
    [ -f "$node/kafka.pid" ] && stop_pidfile "kafka node ${node##*-}" "$node/kafka.pid"
  done
  return 0
}
# SIGTERM is Redis's graceful shutdown: it writes and fsyncs the AOF before it exits.
redis_down() { stop_pidfile redis "$STATE/redis/redis.pid"; }

# One services.sh at a time on a state dir: two at once would both format the
# storage and start two brokers on it. The daemons do not inherit the lock (9>&-).
lock_state() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 600 9 || die "another scripts/services.sh has held $STATE/.lock for 10 minutes"
}

case "${1:-}" in
  up) lock_state; redis_up; kafka_up ;;
  down) lock_state; kafka_down; redis_down ;;
  status) status ;;
  kafka-up) lock_state; kafka_up ;;
  kafka-down) lock_state; kafka_down ;;
  redis-up) lock_state; redis_up ;;
  redis-down) lock_state; redis_down ;;
  cluster-id) cluster_id ;;
  *) echo "usage: $0 up|down|status|kafka-up|kafka-down|redis-up|redis-down|cluster-id" >&2; exit 2 ;;
esac
