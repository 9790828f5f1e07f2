#!/usr/bin/env bash
# broker/kafka.sh — a real, local, single-node Apache Kafka 4.x broker for dev and tests.
#
# KRaft combined mode (process.roles=broker,controller, node.id=1), listening on
# 127.0.0.1 only. The jars come from Maven Central through broker/pom.xml (Maven +
# the machine's Java 17+); nothing is installed system-wide.
#
# Usage: bash broker/kafka.sh <command>        (works from any cwd)
#   fetch   download the broker jars into $BROKER_HOME/lib (idempotent; skipped
#           when already there for the current broker/pom.xml)
#   start   fetch if needed, format storage once, start the broker in the background
#           and wait (<= $BROKER_START_TIMEOUT s) until it serves; no-op when our
#           broker is already running on $BROKER_PORT; refuses if another process
#           holds the port
#   stop    SIGTERM, wait up to ~20 s, then SIGKILL; idempotent
#   prepare write server.properties and format storage once (as `start` does), without
#           starting anything; refuses like `start` when the broker or its ports are in use
#   run     `prepare`, then exec the broker in the foreground (no pid file, no CDS, log4j
#           to stdout with <N> syslog priority prefixes for journald): for systemd
#           (systemd/kafka.service) and `docker run`-style supervisors
#   status  "running pid=… port=…" (exit 0) or "stopped port=…" (exit 3)
#   env     print KAFKA_BROKERS=127.0.0.1:$BROKER_PORT  (eval "$(bash broker/kafka.sh env)")
#   certs   (secured mode) generate the test CA, certificates and SASL passwords into
#           $BROKER_HOME/tls-$BROKER_PORT/ once; `start` does it too
#
# Modes (BROKER_MODE):
#   single   [default] one PLAINTEXT listener on BROKER_PORT, as described above.
#   secured  for the security tests: one broker whose listeners are
#              BROKER_PORT    SASL_SSL   (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN, OAUTHBEARER with
#                                         Kafka's unsecured JWT validator: tests only)
#              BROKER_PORT+2  SSL, client certificate required (mTLS)
#              BROKER_PORT+3  SSL with an EXPIRED broker certificate (for `doctor`)
#              BROKER_PORT+4  PLAINTEXT (inter-broker; test set-up; wrong-protocol tests)
#              BROKER_PORT+5  SASL_PLAINTEXT (same mechanisms and users as SASL_SSL)
#            (controller BROKER_PORT+1). Certificates come from openssl at first start
#            (`certs`): ca.pem, broker.pem (SAN IP:127.0.0.1, DNS:localhost), client.pem +
#            client.key (encrypted, passphrase in client.key.password), expired-client.*,
#            expired-broker.*, other-ca.pem (a CA nobody uses: the "wrong CA" tests). SCRAM
#            users are created at storage-format time; the passwords are random per folder:
#            users/<name>.password for alice (SCRAM-SHA-512 and -256) and bob (PLAIN).
#            `env` prints the variables a client needs for the SASL_SSL listener.
#   cluster  3 brokers, KRaft combined mode, one JVM each, on loopback: node i (1..3) serves
#            PLAINTEXT on BROKER_PORT+10*(i-1), its controller one above; replication factor
#            3 and min.insync.replicas=2 everywhere (__consumer_offsets included). start,
#            stop and status act on every node, or on node BROKER_NODE (1..3) only, e.g. to
#            restart a node that a test killed. `env` prints the three addresses.
#
# Environment knobs (defaults in brackets):
#   BROKER_PORT             PLAINTEXT listener port                        [9092]
#   BROKER_CONTROLLER_PORT  KRaft CONTROLLER listener port                 [BROKER_PORT+1]
#   BROKER_COMMIT_LINGER_MS group.coordinator.append.linger.ms, when the   [0; Kafka's is 5]
#                             data folder is first made
#   BROKER_HOME             state folder                                   [<repo>/.broker]
#                             jars:   $BROKER_HOME/lib/  (unless BROKER_LIB is set)
#                             data:   $BROKER_HOME/data-$BROKER_PORT/  (server.properties,
#                                     cluster.id, kraft-logs/ = log.dirs)
#                             log:    $BROKER_HOME/kafka-$BROKER_PORT.log  (log4j + JVM
#                                     stdout/stderr; the previous run's is kept as .log.prev)
#                             pid:    $BROKER_HOME/kafka-$BROKER_PORT.pid
#   BROKER_LIB              folder of the broker jars (`fetch` writes it;
#                           systemd points it at the read-only install)   [$BROKER_HOME/lib]
#   BROKER_HEAP             JVM heap flags                                 [-Xmx512m -Xms256m]
#   BROKER_JVM_OPTS         extra JVM flags, appended                      []
#   BROKER_CDS              1: the first broker run records an AppCDS archive
#                           ($BROKER_HOME/lib/kafka-cds.jsa, written when `stop`
#                           ends it cleanly) and later starts use it (~3.3 s ->
#                           ~1.8 s to ready); 0: off                         [1]
#   BROKER_ADVERTISED_HOST  host in advertised.listeners (a test may set it to
#                           something wrong on purpose)                    [127.0.0.1]
#   BROKER_ADVERTISED_PORT  port in advertised.listeners (single mode; a test sets
#                           it wrong on purpose)                           [BROKER_PORT]
#   BROKER_START_TIMEOUT    seconds `start` waits for the broker           [60]
#   BROKER_STOP_TIMEOUT     seconds `stop` waits after SIGTERM             [20]
#   BROKER_KAFKA_VERSION    override org.apache.kafka:kafka_2.13's version [the pom's, 4.1.1]
#   JAVA, MVN               the java / mvn executables                     [java, mvn from PATH]
#   BROKER_MODE             single | secured | cluster (see Modes)         [single]
#   BROKER_NODE             cluster mode: act on this node only (1..3)     [all]
#
# Each BROKER_PORT is an independent broker (own data, log, pid file), so several can
# run side by side, e.g. BROKER_PORT=39092 bash broker/kafka.sh start.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

BROKER_PORT="${BROKER_PORT:-9092}"
BROKER_CONTROLLER_PORT="${BROKER_CONTROLLER_PORT:-$((BROKER_PORT + 1))}"
BROKER_HOME="${BROKER_HOME:-$repo/.broker}"
BROKER_HEAP="${BROKER_HEAP:--Xmx512m -Xms256m}"
BROKER_JVM_OPTS="${BROKER_JVM_OPTS:-}"
BROKER_CDS="${BROKER_CDS:-1}"
BROKER_ADVERTISED_HOST="${BROKER_ADVERTISED_HOST:-127.0.0.1}"
BROKER_START_TIMEOUT="${BROKER_START_TIMEOUT:-60}"
BROKER_STOP_TIMEOUT="${BROKER_STOP_TIMEOUT:-20}"
BROKER_KAFKA_VERSION="${BROKER_KAFKA_VERSION:-}"
JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"
BROKER_MODE="${BROKER_MODE:-single}"
BROKER_NODE="${BROKER_NODE:-}"
# Set by cluster mode for each node it starts (not knobs): node id and the static quorum.
BROKER_NODE_ID="${BROKER_NODE_ID:-1}"
BROKER_QUORUM="${BROKER_QUORUM:-1@127.0.0.1:$BROKER_CONTROLLER_PORT}"

lib="${BROKER_LIB:-$BROKER_HOME/lib}"
marker="$lib/.fetched"
case "$BROKER_MODE" in
  single | cluster) data="$BROKER_HOME/data-$BROKER_PORT" ;;
  secured) data="$BROKER_HOME/secured-$BROKER_PORT" ;;
  cluster-node) data="$BROKER_HOME/cluster-node-$BROKER_PORT" ;;
  *) printf 'kafka.sh: error: BROKER_MODE=%s is not one of single, secured, cluster\n' "$BROKER_MODE" >&2; exit 1 ;;
esac
tls="$BROKER_HOME/tls-$BROKER_PORT"
props="$data/server.properties"
logfile="$BROKER_HOME/kafka-$BROKER_PORT.log"
pidfile="$BROKER_HOME/kafka-$BROKER_PORT.pid"
jsa="$lib/kafka-cds.jsa"
jsa_tmp="$jsa.$BROKER_PORT.tmp"

say() { printf 'kafka.sh: %s\n' "$*"; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

is_port() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 > 0 && $1 < 65536 )); }
is_port "$BROKER_PORT" || die "BROKER_PORT='$BROKER_PORT' is not a port number"
is_port "$BROKER_CONTROLLER_PORT" || die "BROKER_CONTROLLER_PORT='$BROKER_CONTROLLER_PORT' is not a port number"
[[ "$BROKER_CONTROLLER_PORT" != "$BROKER_PORT" ]] || die "BROKER_CONTROLLER_PORT must differ from BROKER_PORT"

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Pid of OUR broker for this port if it is alive, else nothing. A stale pid file is
# removed; a lost one is re-created if our broker (same server.properties) is found.
# Alive and not a zombie (an exited child of a non-reaping parent still answers kill -0).
alive() {
  local st
  st="$(sed 's/^.*) //' 2>/dev/null <"/proc/$1/stat" | cut -d' ' -f1)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}
is_ours() {
  [[ -r "/proc/$1/cmdline" ]] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF "kafka.Kafka $props "
}
running_pid() {
  local pid=""
  [[ -f "$pidfile" ]] && pid="$(tr -dc '0-9' 2>/dev/null <"$pidfile" || true)"
  if [[ -n "$pid" ]] && alive "$pid" && is_ours "$pid"; then
    echo "$pid"
    return 0
  fi
  rm -f "$pidfile"
  local d
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    if is_ours "$pid"; then
      echo "$pid" >"$pidfile"
      echo "$pid"
      return 0
    fi
  done
}

# Serialise start/stop for one port (parallel test runners may call start at once).
# fd 9 must not leak into the broker JVM (see the launch below), or the lock would
# be held for the broker's lifetime.
take_lock() {
  mkdir -p "$BROKER_HOME"
  exec 9>"$BROKER_HOME/kafka-$BROKER_PORT.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 120 9 || die "could not lock $BROKER_HOME/kafka-$BROKER_PORT.lock within 120 s"
  fi
}

need_java() {
  command -v "$JAVA" >/dev/null 2>&1 \
    || die "java not found (JAVA=$JAVA). Install a JDK/JRE 17+, e.g. apt-get install -y openjdk-17-jre-headless"
  local v
  v="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n1)"
  [[ "$v" =~ ^[0-9]+$ ]] && (( v >= 17 )) \
    || die "Kafka 4 needs Java 17+, but '$JAVA' is Java ${v:-unknown}"
}

pom_stamp() {
  { cat "$here/pom.xml"; echo "kafka.version=$BROKER_KAFKA_VERSION"; } | sha256sum | cut -d' ' -f1
}

cmd_fetch() {
  local stamp
  stamp="$(pom_stamp)"
  if [[ -f "$marker" && "$(cat "$marker")" == "$stamp" ]]; then
    return 0
  fi
  # One fetch at a time per BROKER_HOME (brokers on other ports may start at once).
  mkdir -p "$BROKER_HOME"
  exec 8>"$BROKER_HOME/fetch.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 600 8 || die "could not lock $BROKER_HOME/fetch.lock within 600 s"
  fi
  if [[ -f "$marker" && "$(cat "$marker")" == "$stamp" ]]; then
    exec 8>&-
    return 0
  fi
  _fetch "$stamp"
  exec 8>&-
}

_fetch() {
  local stamp="$1"
  command -v "$MVN" >/dev/null 2>&1 \
    || die "mvn (Apache Maven) not found (MVN=$MVN); it downloads the Kafka jars from Maven Central. Install it, e.g. apt-get install -y maven"
  need_java
  local tmp out
  mkdir -p "$(dirname "$lib")"
  [[ -w "$(dirname "$lib")" ]] \
    || die "the broker jars in $lib are missing or stale and $(dirname "$lib") is not writable here; run 'bash broker/kafka.sh fetch' as a user who may write it (systemd/install.sh --with-kafka does)"
  tmp="$(mktemp -d "$(dirname "$lib")/lib.tmp.XXXXXX")"
  out="$tmp.mvn.log"
  local -a args=(-q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies "-DoutputDirectory=$tmp")
  [[ -n "$BROKER_KAFKA_VERSION" ]] && args+=("-Dkafka.version=$BROKER_KAFKA_VERSION")
  say "fetching Kafka broker jars with Maven into $lib (first time only) ..."
  if ! "$MVN" "${args[@]}" >"$out" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$out" | tail -n 25 >&2
    rm -rf "$tmp" "$out"
    die "Maven could not download the broker jars (org.apache.kafka:kafka_2.13:${BROKER_KAFKA_VERSION:-<pom default>}, log4j-core, log4j-slf4j2-impl, slf4j-api; see broker/pom.xml). Check that Maven Central is reachable (and ~/.m2/settings.xml, if any), that the versions in broker/pom.xml are published, then re-run: bash broker/kafka.sh fetch"
  fi
  rm -f "$out"
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "Maven succeeded but no kafka_2.13 jar was copied; check broker/pom.xml"; }
  chmod 755 "$tmp"
  echo "$stamp" >"$tmp/.fetched"
  rm -rf "$lib"
  mv "$tmp" "$lib"
  say "fetched $(ls "$lib"/*.jar | wc -l) jars ($(basename "$(ls "$lib"/kafka_2.13-*.jar)" .jar))"
}

# Kafka cluster id: 16 random bytes, URL-safe base64 without padding (like Uuid.randomUuid()).
new_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && "$id" != "AAAAAAAAAAAAAAAAAAAAAA" && "$id" != "AAAAAAAAAAAAAAAAAAAAAQ" ]] && break
  done
  echo "$id"
}

# Test PKI for the secured mode, made once per $tls folder with openssl (EC P-256 keys: fast
# to make, and Kafka's PEM keystore reads PKCS#8 EC keys).
cmd_certs() {
  [[ -s "$tls/.done" ]] && return 0
  command -v openssl >/dev/null 2>&1 \
    || die "openssl not found; the secured test broker makes its certificates with it. Install it, e.g. apt-get install -y openssl"
  rm -rf "$tls"
  mkdir -p "$tls/users" "$tls/ca-db"
  chmod 700 "$tls"
  (
    cd "$tls"
    local key
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    # Two CAs: ours, and one nobody uses (a client trusting it is the "wrong CA" case).
    for ca in ca other-ca; do
      key "$ca.key"
      openssl req -x509 -new -key "$ca.key" -sha256 -days 3650 -subj "/CN=task-runner test $ca" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -out "$ca.pem" 2>/dev/null
    done
    : >ca-db/index.txt
    cat >ca.cnf <<EOF
[ca]
default_ca = test
[test]
dir = $tls/ca-db
database = \$dir/index.txt
new_certs_dir = \$dir
serial = \$dir/serial
certificate = $tls/ca.pem
private_key = $tls/ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = copy
[any]
commonName = supplied
[server]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
[client]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
EOF
    # sign <name> <server|client> <CN> [startdate enddate]
    sign() {
      key "$1.key"
      openssl req -new -key "$1.key" -subj "/CN=$3" -out "$1.csr" 2>/dev/null
      local -a when=(-days 365)
      [[ $# -ge 5 ]] && when=(-startdate "$4" -enddate "$5")
      openssl rand -hex 16 >ca-db/serial
      openssl ca -batch -config ca.cnf -extensions "$2" "${when[@]}" -notext \
        -in "$1.csr" -out "$1.pem" 2>/dev/null
      rm -f "$1.csr"
    }
    sign broker server "localhost"
    sign expired-broker server "localhost (expired)" 20200101000000Z 20200201000000Z
    sign client client "task-runner-client"
    sign expired-client client "task-runner-client (expired)" 20200101000000Z 20200201000000Z
    # Kafka's PEM keystore: the PKCS#8 key, then the certificate.
    cat broker.key broker.pem >broker-keystore.pem
    cat expired-broker.key expired-broker.pem >expired-broker-keystore.pem
    # The client key encrypted, to exercise KAFKA_SSL_KEY_PASSWORD_FILE.
    openssl rand -hex 12 >client.key.password
    openssl pkcs8 -topk8 -v2 aes-256-cbc -in client.key -passout file:client.key.password \
      -out client.key.enc
    mv -f client.key.enc client.key
    for user in alice bob; do echo "pw-$user-$(openssl rand -hex 12)" >"users/$user.password"; done
    chmod 600 ./*.key users/*
    echo done >.done
  ) || die "making the test certificates in $tls failed"
}

# The listener lines of server.properties for BROKER_MODE.
listener_props() {
  local p=$BROKER_PORT c=$BROKER_CONTROLLER_PORT h=$BROKER_ADVERTISED_HOST
  if [[ "$BROKER_MODE" != secured ]]; then
    cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c
advertised.listeners=PLAINTEXT://$h:${BROKER_ADVERTISED_PORT:-$p}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
EOF
    return 0
  fi
  local alice bob scram plain bearer
  alice="$(cat "$tls/users/alice.password")"
  bob="$(cat "$tls/users/bob.password")"
  scram='org.apache.kafka.common.security.scram.ScramLoginModule required;'
  plain="org.apache.kafka.common.security.plain.PlainLoginModule required user_bob=\"$bob\" user_alice=\"$alice\";"
  bearer='org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;'
  cat <<EOF
listeners=SASL_SSL://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c,MTLS://127.0.0.1:$((p + 2)),EXPIRED://127.0.0.1:$((p + 3)),PLAINTEXT://127.0.0.1:$((p + 4)),SASL_PLAINTEXT://127.0.0.1:$((p + 5))
advertised.listeners=SASL_SSL://$h:$p,MTLS://$h:$((p + 2)),EXPIRED://$h:$((p + 3)),PLAINTEXT://$h:$((p + 4)),SASL_PLAINTEXT://$h:$((p + 5))
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL,EXPIRED:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT
# Test certificates from the certs command (PEM stores: Kafka 4 reads them directly).
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
listener.name.mtls.ssl.client.auth=required
listener.name.expired.ssl.keystore.type=PEM
listener.name.expired.ssl.keystore.location=$tls/expired-broker-keystore.pem
# SASL_SSL offers every mechanism kafkajs has; SASL_PLAINTEXT leaves out SCRAM-SHA-256 and
# OAUTHBEARER, so that a test can ask for a mechanism the broker has not enabled.
# OAUTHBEARER uses Kafka's unsecured JWT validator (alg "none"): for tests only.
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,OAUTHBEARER
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,OAUTHBEARER
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$scram
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$scram
listener.name.sasl_ssl.plain.sasl.jaas.config=$plain
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=$bearer
# KIP-368: OAUTHBEARER sessions end with their token (at most 15 s here), so clients must
# re-authenticate with a fresh one; the token refresh test relies on it.
listener.name.sasl_ssl.oauthbearer.connections.max.reauth.ms=15000
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$scram
listener.name.sasl_plaintext.plain.sasl.jaas.config=$plain
EOF
}

write_props() {
  local rf=1 isr=1
  local note="Static KRaft quorum of one (kraft.version 0): the controller port may change between runs."
  if [[ "$BROKER_MODE" == cluster-node ]]; then
    rf=3 isr=2 note="Static KRaft quorum of the three nodes (kraft.version 0)."
  fi
  (umask 077 && : >"$props") # the secured mode's PLAIN passwords are in it
  cat >"$props" <<EOF
# Written by broker/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=$BROKER_NODE_ID
# $note
controller.quorum.voters=$BROKER_QUORUM
controller.listener.names=CONTROLLER
$(listener_props)
log.dirs=$data/kraft-logs

num.partitions=4
default.replication.factor=$rf
min.insync.replicas=$isr
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
# Offset commits are acknowledged once written. Kafka 4's group coordinator lingers 5 ms by
# default to batch those writes, which the runner pays before every at-most-once start.
group.coordinator.append.linger.ms=${BROKER_COMMIT_LINGER_MS:-0}
# After an unclean stop (SIGKILL) the restarted broker waits for its old registration's
# session to expire (DUPLICATE_BROKER_REGISTRATION); default 9 s, here ~5 s.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=5000

# Small footprint for dev/test.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=16777216
log.retention.hours=24
log.retention.bytes=268435456
log.retention.check.interval.ms=60000
EOF
}

# Refuse when our broker for this port already runs, or another process holds a port.
check_not_running() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    say "already running pid=$pid port=$BROKER_PORT"
    return 1
  fi
  local p
  local -a ports=("$BROKER_PORT" "$BROKER_CONTROLLER_PORT")
  [[ "$BROKER_MODE" == secured ]] && ports+=($((BROKER_PORT + 2)) $((BROKER_PORT + 3)) $((BROKER_PORT + 4)) $((BROKER_PORT + 5)))
  for p in "${ports[@]}"; do
    if port_open "$p"; then
      die "port 127.0.0.1:$p is already in use by another process (not our broker for BROKER_PORT=$BROKER_PORT; pid file $pidfile). Stop it or choose other ports with BROKER_PORT / BROKER_CONTROLLER_PORT."
    fi
  done
}

# Sets cp and jvm (the flags shared by StorageTool and the broker). $1: "file" sends log4j
# output to $logfile, "console" to stdout (see broker/log4j2.xml).
set_jvm() {
  cp="$lib/*"
  local -a heap=() extra=() logto=()
  read -r -a heap <<<"$BROKER_HEAP"
  read -r -a extra <<<"$BROKER_JVM_OPTS"
  [[ "$1" == file ]] && logto=("-Dbroker.log.file=$logfile")
  # Serial GC + C1 only: ~0.8 s faster to ready than Kafka's G1 defaults on 2 cores.
  jvm=(${heap[@]+"${heap[@]}"} -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$here/log4j2.xml" ${logto[@]+"${logto[@]}"}
    "-Dkafka.logs.dir=$BROKER_HOME" ${extra[@]+"${extra[@]}"})
}

# Storage is formatted once; the cluster id is generated once and kept in $data/cluster.id.
needs_format() { [[ ! -f "$data/kraft-logs/meta.properties" ]]; }
cluster_id() {
  [[ -s "$data/cluster.id" || -z "${BROKER_CLUSTER_ID:-}" ]] || echo "$BROKER_CLUSTER_ID" >"$data/cluster.id"
  [[ -s "$data/cluster.id" ]] || new_cluster_id >"$data/cluster.id"
  cat "$data/cluster.id"
}
format_storage() {
  local -a scram=()
  if [[ "$BROKER_MODE" == secured ]]; then
    local alice
    alice="$(cat "$tls/users/alice.password")"
    scram=(--add-scram "SCRAM-SHA-512=[name=\"alice\",password=\"$alice\"]"
      --add-scram "SCRAM-SHA-256=[name=\"alice\",password=\"$alice\"]")
  fi
  "$JAVA" "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format \
    --cluster-id "$1" --config "$props" --ignore-formatted ${scram[@]+"${scram[@]}"}
}

cmd_start() {
  take_lock
  check_not_running || return 0
  need_java
  cmd_fetch
  mkdir -p "$data"
  [[ "$BROKER_MODE" != secured ]] || cmd_certs
  write_props

  # Rotate the log so that the readiness check only sees this run.
  [[ -f "$logfile" ]] && mv -f "$logfile" "$logfile.prev"
  : >"$logfile"

  local cp pid
  local -a jvm=()
  set_jvm file

  if needs_format; then
    local cid
    cid="$(cluster_id)"
    say "formatting storage in $data/kraft-logs (cluster id $cid)"
    if ! format_storage "$cid" >>"$logfile" 2>&1; then
      tail -n 30 "$logfile" >&2
      die "formatting Kafka storage failed (see $logfile)"
    fi
  fi

  # Class-data sharing: use the archive if there is one, else record one at exit.
  local -a cds=()
  if [[ "$BROKER_CDS" != 0 ]]; then
    if [[ -s "$jsa" ]]; then
      cds=("-XX:SharedArchiveFile=$jsa")
    else
      rm -f "$jsa_tmp"
      cds=("-XX:ArchiveClassesAtExit=$jsa_tmp")
    fi
  fi

  local t0 t1
  t0="$(date +%s%N)"
  # Detached: own session, no tty, stdio to the log, so callers capturing our output don't hang.
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" \
    "$JAVA" "${jvm[@]}" ${cds[@]+"${cds[@]}"} -cp "$cp" kafka.Kafka "$props" \
    </dev/null >>"$logfile" 2>&1 8>&- 9>&- &
  local launched=$!

  local deadline=$((SECONDS + BROKER_START_TIMEOUT))
  pid=""
  while (( SECONDS < deadline )); do
    [[ -n "$pid" ]] || pid="$(tr -dc '0-9' 2>/dev/null <"$pidfile" || true)"
    if ! alive "$launched"; then
      wait "$launched" 2>/dev/null || true
      tail -n 40 "$logfile" >&2
      rm -f "$pidfile" "$jsa_tmp"
      die "the broker exited during startup (log: $logfile)"
    fi
    if [[ -n "$pid" ]] && grep -q "Kafka Server started" "$logfile" && port_open "$BROKER_PORT"; then
      t1="$(date +%s%N)"
      say "started pid=$pid port=$BROKER_PORT controller=$BROKER_CONTROLLER_PORT in $(( (t1 - t0) / 1000000 )) ms (log: $logfile)"
      return 0
    fi
    sleep 0.2
  done
  tail -n 40 "$logfile" >&2
  kill -KILL "$launched" 2>/dev/null || true
  wait "$launched" 2>/dev/null || true
  rm -f "$pidfile" "$jsa_tmp"
  die "the broker did not come up within ${BROKER_START_TIMEOUT}s (log: $logfile); killed it"
}

# Config and storage for a foreground broker. Leaves cp and jvm set for cmd_run.
cmd_prepare() {
  take_lock
  check_not_running || die "stop it first (bash broker/kafka.sh stop) or use another BROKER_PORT"
  need_java
  cmd_fetch
  mkdir -p "$data"
  [[ "$BROKER_MODE" != secured ]] || cmd_certs
  write_props
  set_jvm console
  if needs_format; then
    local cid
    cid="$(cluster_id)"
    say "formatting storage in $data/kraft-logs (cluster id $cid)"
    format_storage "$cid" 2>&1 || die "formatting Kafka storage in $data/kraft-logs failed"
  fi
  exec 9>&-
}

# The broker in the foreground, as this very process (exec): its supervisor (systemd) owns
# the pid, the signals and the log. No pid file and no CDS archive (recording one needs the
# clean `stop` of this script).
cmd_run() {
  local cp
  local -a jvm=()
  cmd_prepare
  say "running the broker in the foreground: pid=$$ port=$BROKER_PORT controller=$BROKER_CONTROLLER_PORT data=$data"
  exec "$JAVA" "${jvm[@]}" -cp "$cp" kafka.Kafka "$props"
}

cmd_stop() {
  take_lock
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    say "not running port=$BROKER_PORT"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + BROKER_STOP_TIMEOUT))
  while alive "$pid" && (( SECONDS < deadline )); do
    sleep 0.2
  done
  if alive "$pid"; then
    say "pid=$pid still alive after ${BROKER_STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.1; done
    rm -f "$jsa_tmp"   # possibly half written
  fi
  rm -f "$pidfile"
  if [[ -s "$jsa_tmp" && ! -e "$jsa" ]]; then
    mv -f "$jsa_tmp" "$jsa" && say "recorded class-data archive $jsa (faster next starts)"
  fi
  rm -f "$jsa_tmp"
  say "stopped pid=$pid port=$BROKER_PORT"
}

cmd_status() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    echo "running pid=$pid port=$BROKER_PORT controller=$BROKER_CONTROLLER_PORT"
    return 0
  fi
  echo "stopped port=$BROKER_PORT"
  return 3
}

cmd_env() {
  if [[ "$BROKER_MODE" == secured ]]; then
    echo "KAFKA_BROKERS=127.0.0.1:$BROKER_PORT"
    echo "KAFKA_SECURITY_PROTOCOL=SASL_SSL"
    echo "KAFKA_SSL_CA_FILE=$tls/ca.pem"
    echo "KAFKA_SASL_MECHANISM=scram-sha-512"
    echo "KAFKA_SASL_USERNAME=alice"
    echo "KAFKA_SASL_PASSWORD_FILE=$tls/users/alice.password"
    return 0
  fi
  echo "KAFKA_BROKERS=127.0.0.1:$BROKER_PORT"
}

# Cluster mode: run <command> for each node (or BROKER_NODE only) as a cluster-node broker.
# Nodes start in parallel: none of them serves before a majority of the quorum is up.
cluster() {
  local -a ids=(1 2 3)
  if [[ -n "$BROKER_NODE" ]]; then
    [[ "$BROKER_NODE" =~ ^[123]$ ]] || die "BROKER_NODE='$BROKER_NODE' must be 1, 2 or 3"
    ids=("$BROKER_NODE")
  fi
  local quorum="" i
  for i in 1 2 3; do quorum+="${quorum:+,}$i@127.0.0.1:$((BROKER_PORT + 10 * (i - 1) + 1))"; done
  mkdir -p "$BROKER_HOME"
  local idfile="$BROKER_HOME/cluster-$BROKER_PORT.id"
  [[ -s "$idfile" ]] || new_cluster_id >"$idfile"
  local -a pids=()
  local port
  for i in "${ids[@]}"; do
    port=$((BROKER_PORT + 10 * (i - 1)))
    BROKER_MODE=cluster-node BROKER_PORT=$port BROKER_CONTROLLER_PORT=$((port + 1)) BROKER_NODE_ID=$i \
      BROKER_QUORUM="$quorum" BROKER_CLUSTER_ID="$(cat "$idfile")" \
      BROKER_HEAP="${BROKER_HEAP_NODE:--Xmx320m -Xms128m}" \
      bash "${BASH_SOURCE[0]}" "$1" &
    pids+=($!)
  done
  local failed=0 pid
  for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
  # status: 0 only when every node runs.
  (( failed == 0 )) || { [[ "$1" == status ]] && return 3; die "$1 failed on $failed node(s)"; }
}

if [[ "$BROKER_MODE" == cluster ]]; then
  case "${1:-}" in
    start | stop | status) cluster "$1"; exit $? ;;
    env) echo "KAFKA_BROKERS=127.0.0.1:$BROKER_PORT,127.0.0.1:$((BROKER_PORT + 10)),127.0.0.1:$((BROKER_PORT + 20))"; exit 0 ;;
    fetch) ;;
    *) die "BROKER_MODE=cluster supports fetch, start, stop, status and env" ;;
  esac
fi

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  prepare) cmd_prepare ;;
  run) cmd_run ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  certs) cmd_certs ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
