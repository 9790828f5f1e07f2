#!/usr/bin/env bash
# The whole test suite against a real Kafka broker (`deno task test`).
#
# Unless KAFKA_BROKERS is set, a test broker is started on 127.0.0.1:$TEST_BROKER_PORT
# (default 39092, apart from the development broker on 9092) and stopped afterwards if this
# script started it. The Debian packages the tests use are installed when missing (below).
# Extra arguments go to `deno test` (e.g. `deno task test --filter drain`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages the tests use: kcat (an independent Kafka client), openssl (certificates
# for the secured brokers), php-cli (a PHP worker run through `command`), chromium (the
# console's browser tests). Installed when missing and we may (root + apt-get).
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v php >/dev/null 2>&1 || missing+=(php-cli)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests: installing ${missing[*]} (Debian) ..."
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  else
    echo "tests: these Debian packages are needed: sudo apt-get install ${missing[*]}" >&2
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
