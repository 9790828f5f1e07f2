#!/usr/bin/env bash
# The whole test suite against a real Kafka broker (`deno task test`).
#
# Unless KAFKA_BROKERS is set, a test broker is started on 127.0.0.1:$TEST_BROKER_PORT
# (default 39092, apart from the development broker on 9092) and stopped afterwards if this
# script started it. kcat (Debian) is installed when missing and we may (root + apt-get).
# Extra arguments go to `deno test` (e.g. `deno task test --filter drain`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v kcat >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests: installing kcat (Debian) ..."
    apt-get install -y -qq kcat >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq kcat >/dev/null; }
  else
    echo "tests: kcat is needed (an independent Kafka client): sudo apt-get install kcat" >&2
    exit 1
  fi
fi

# php-cli runs the PHP workers of the `command` migration tests (tests/integration/handlers_test.ts).
if ! command -v php >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "tests: installing php-cli (Debian) ..."
  apt-get install -y -qq php-cli >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq php-cli >/dev/null; }
fi

port="${TEST_BROKER_PORT:-39092}"
started=0
if [ -z "${KAFKA_BROKERS:-}" ]; then
  if ! BROKER_PORT="$port" bash broker/kafka.sh status >/dev/null 2>&1; then
    BROKER_PORT="$port" bash broker/kafka.sh start
    started=1
  fi
  export KAFKA_BROKERS="127.0.0.1:$port"
fi
stop_broker() { if [ "$started" = 1 ]; then BROKER_PORT="$port" bash broker/kafka.sh stop >/dev/null; fi; }
trap stop_broker EXIT

echo "tests: broker ${KAFKA_BROKERS}, deno $(deno --version | head -1 | cut -d' ' -f2)"
deno test --allow-all "$@" tests/
