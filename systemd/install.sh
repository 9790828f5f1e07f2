#!/usr/bin/env bash
# systemd/install.sh — install task-runner (and optionally a local Kafka broker) as systemd
# services, or only render the unit files.
#
# Usage: bash systemd/install.sh [options]
#   --install-dir DIR   where the code is copied; --prefix is the same    [/opt/task-runner]
#   --user NAME         unprivileged system user (and group) of the runner [task-runner]
#   --deno PATH         deno executable the units run          [the deno on PATH, resolved]
#   --env-file PATH     the runner's EnvironmentFile=                  [/etc/task-runner/env]
#   --with-kafka        also install kafka.service (single-node KRaft broker on 127.0.0.1,
#                       jars fetched with Maven) and order task-runner after it
#   --kafka-user NAME   system user (and group) of the broker                        [kafka]
#   --output DIR        only render the units (and env examples) into DIR; no root needed,
#                       nothing else is touched
#   --dry-run           print what the full install would do, change nothing
#   -h, --help          this text
#
# Full install (root): creates the system user(s); copies this checkout (files git tracks or
# would track; all files when it is not a git work tree) to the install dir, replacing the
# previous copy; copies deno there when it lives under /root or /home (hidden by
# ProtectHome=); caches the npm dependencies into /var/lib/task-runner/deno as the service
# will use them; writes a commented env file if there is none; renders the units into
# /etc/systemd/system; runs `systemctl daemon-reload`; prints the next steps.
set -euo pipefail
# bash 5.2: a "&" in a ${var//pattern/replacement} replacement must stay a "&".
shopt -u patsub_replacement 2>/dev/null || true

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/.." && pwd)"

install_dir=/opt/task-runner
user=task-runner
deno=""
env_file=/etc/task-runner/env
with_kafka=0
kafka_user=kafka
output=""
dry_run=0
unit_dir=/etc/systemd/system
state_dir=/var/lib/task-runner

say() { printf 'install.sh: %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --install-dir | --prefix) need_value "$@"; install_dir="$2"; shift 2 ;;
    --user) need_value "$@"; user="$2"; shift 2 ;;
    --deno) need_value "$@"; deno="$2"; shift 2 ;;
    --env-file) need_value "$@"; env_file="$2"; shift 2 ;;
    --with-kafka) with_kafka=1; shift ;;
    --kafka-user) need_value "$@"; kafka_user="$2"; shift 2 ;;
    --output) need_value "$@"; output="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

if [[ -z "$deno" ]]; then
  deno="$(command -v deno)" || die "deno is not on PATH; pass --deno /path/to/deno"
fi
# The real file: a symlink into /root (npm's deno) would be hidden from the service.
if resolved="$(readlink -f -- "$deno" 2>/dev/null)" && [[ -n "$resolved" ]]; then
  deno="$resolved"
fi
kafka_env_file="$(dirname "$env_file")/kafka.env"

# Values go into unit files verbatim: absolute, no whitespace (word splitting), no % (systemd
# specifiers), no $ (variable expansion), no @ (placeholders).
check_path() {
  case "$2" in
    /*[[:space:]%\$@\\\"\']* | [!/]* | "")
      die "$1 must be an absolute path without spaces, quotes, %, \$, @ or backslashes, got '$2'" ;;
  esac
}
check_name() {
  [[ "$2" =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] || die "$1 must be a system user name ([a-z_][a-z0-9_-]*), got '$2'"
}
check_path --install-dir "$install_dir"
check_path --deno "$deno"
check_path --env-file "$env_file"
check_name --user "$user"
check_name --kafka-user "$kafka_user"
install_dir="${install_dir%/}"
[[ "$user" != root && "$kafka_user" != root ]] || [[ -n "$output" ]] \
  || die "the services must not run as root (--user/--kafka-user root is accepted with --output only)"

# A deno under /root, /home or /run/user is invisible to the service (ProtectHome=yes) and
# usually not executable by its user: the full install copies it into the install dir.
hidden_by_protect_home() { [[ "$1" == /root/* || "$1" == /home/* || "$1" == /run/user/* ]]; }
unit_deno="$deno"
if hidden_by_protect_home "$deno"; then
  if [[ -n "$output" ]]; then
    warn "$deno is under /root, /home or /run/user, which ProtectHome=yes hides from the service; the full install copies it to $install_dir/bin/deno"
  else
    unit_deno="$install_dir/bin/deno"
  fi
fi

# --- rendering ----------------------------------------------------------------------------

# render TEMPLATE: the unit on stdout, every @PLACEHOLDER@ replaced; fails on a leftover.
render() {
  local text local_kafka
  text="$(cat "$here/$1")"
  if [[ "$with_kafka" == 1 ]]; then
    local_kafka=$'# The local broker of install.sh --with-kafka.\nWants=kafka.service\nAfter=kafka.service'
  else
    local_kafka="# No local broker (install.sh --with-kafka would add Wants=/After=kafka.service)."
  fi
  text="${text//@INSTALL_DIR@/$install_dir}"
  text="${text//@USER@/$user}"
  text="${text//@GROUP@/$user}"
  text="${text//@DENO@/$unit_deno}"
  text="${text//@ENV_FILE@/$env_file}"
  text="${text//@KAFKA_USER@/$kafka_user}"
  text="${text//@KAFKA_GROUP@/$kafka_user}"
  text="${text//@KAFKA_ENV_FILE@/$kafka_env_file}"
  text="${text//@LOCAL_KAFKA@/$local_kafka}"
  if [[ "$text" =~ @[A-Z_]+@ ]]; then
    die "systemd/$1: placeholder ${BASH_REMATCH[0]} is not known to install.sh"
  fi
  printf '%s\n' "$text"
}

env_example() {
  "$deno" run --no-prompt --no-config --no-lock "$here/env_example.ts" \
    --install-dir "$install_dir"
}

kafka_env_example() {
  cat <<EOF
# Local Kafka broker environment (EnvironmentFile= of kafka.service). All knobs:
# bash $install_dir/broker/kafka.sh help. Apply with \`systemctl restart kafka\`.
# The broker listens on 127.0.0.1 only; keep KAFKA_BROKERS in $env_file in step with the port.
#BROKER_PORT=9092
#BROKER_CONTROLLER_PORT=9093
# Raise MemoryMax= of kafka.service (systemctl edit kafka) with the heap.
#BROKER_HEAP=-Xmx512m -Xms256m
#BROKER_JVM_OPTS=
EOF
}

# --- --output: render only ----------------------------------------------------------------

if [[ -n "$output" ]]; then
  mkdir -p "$output"
  render task-runner.service >"$output/task-runner.service"
  rendered=("$output/task-runner.service")
  if [[ "$with_kafka" == 1 ]]; then
    render kafka.service >"$output/kafka.service"
    kafka_env_example >"$output/kafka.env.example"
    rendered+=("$output/kafka.service" "$output/kafka.env.example")
  fi
  if [[ -x "$deno" ]]; then
    env_example >"$output/env.example"
    rendered+=("$output/env.example")
  else
    warn "$deno is not executable here: env.example not written"
  fi
  say "rendered ${rendered[*]}"
  exit 0
fi

# --- full install ---------------------------------------------------------------------------

if [[ "$dry_run" == 0 ]]; then
  [[ "$(id -u)" == 0 ]] || die "the full install needs root (or use --output DIR / --dry-run)"
  command -v systemctl >/dev/null 2>&1 || die "systemctl not found: this installs systemd units"
fi
[[ -x "$deno" ]] || die "$deno is not executable (pass --deno /path/to/deno)"

# act CMD...: run it, or print it with --dry-run.
act() {
  if [[ "$dry_run" == 1 ]]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}
# write_file PATH MODE: stdin into PATH (atomically), or shown with --dry-run.
write_file() {
  if [[ "$dry_run" == 1 ]]; then
    printf '+ write %s (mode %s):\n' "$1" "$2"
    sed 's/^/    | /'
  else
    local tmp
    tmp="$(mktemp "$1.XXXXXX")"
    cat >"$tmp"
    chmod "$2" "$tmp"
    mv -f "$tmp" "$1"
  fi
}
ensure_user() {
  if id -u "$1" >/dev/null 2>&1; then
    say "system user $1 exists"
  else
    act useradd --system --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin --comment "$2" "$1"
  fi
}
# The files to install: what git tracks or would track, else everything but build state.
list_sources() {
  if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$src" ls-files -z --cached --others --exclude-standard \
      | while IFS= read -r -d '' f; do [[ -e "$src/$f" ]] && printf '%s\0' "$f"; done
  else
    (cd "$src" && find . \( -name .git -o -name .broker -o -name node_modules -o -name .tmp \) \
      -prune -o -type f -print0)
  fi
}

say "installing from $src to $install_dir (user $user, deno $deno)$([[ "$dry_run" == 1 ]] && echo ', dry run')"
ensure_user "$user" "task-runner service"
[[ "$with_kafka" == 1 ]] && ensure_user "$kafka_user" "Kafka broker for task-runner"

# Copy into a staging folder, then swap it in: the old copy stays whole until the swap.
same_dir=0
[[ -d "$install_dir" && "$(readlink -f "$install_dir")" == "$(readlink -f "$src")" ]] && same_dir=1
if [[ "$same_dir" == 1 ]]; then
  warn "$src is the install dir itself: files are used in place, nothing is copied"
  stage="$install_dir"
else
  stage="$install_dir.new"
  act rm -rf "$stage"
  act mkdir -p "$stage"
  if [[ "$dry_run" == 1 ]]; then
    printf '+ copy %s files from %s to %s\n' "$(list_sources | tr -cd '\0' | wc -c)" "$src" "$stage"
  else
    list_sources | (cd "$src" && tar --null -T - -cf -) | tar -xf - -C "$stage" --no-same-owner
  fi
fi
if [[ "$unit_deno" != "$deno" ]]; then
  say "copying $deno to $unit_deno (ProtectHome=yes hides ${deno%/*})"
  act install -D -m 0755 "$deno" "$stage/bin/deno"
fi
if [[ "$with_kafka" == 1 ]]; then
  # Reuse this checkout's jars when they are there (the fetch below is then a no-op).
  if [[ -f "$src/.broker/lib/.fetched" && "$same_dir" == 0 ]]; then
    act mkdir -p "$stage/.broker"
    act cp -a "$src/.broker/lib" "$stage/.broker/lib"
    act rm -f "$stage/.broker/lib/kafka-cds.jsa"
  fi
  act env -u BROKER_LIB BROKER_HOME="$stage/.broker" bash "$stage/broker/kafka.sh" fetch
fi
act chown -R root:root "$stage"
act chmod -R u+rwX,go+rX,go-w "$stage"
if [[ "$same_dir" == 0 ]]; then
  if [[ -e "$install_dir" ]]; then
    act rm -rf "$install_dir.old"
    act mv "$install_dir" "$install_dir.old"
  fi
  act mv "$stage" "$install_dir"
  act rm -rf "$install_dir.old"
fi

# npm dependencies into the service's DENO_DIR, checked against deno.lock (--frozen).
act mkdir -p "$state_dir/deno"
act env DENO_DIR="$state_dir/deno" DENO_NO_UPDATE_CHECK=1 "$unit_deno" install --frozen \
  --config "$install_dir/deno.json" --entrypoint "$install_dir/main.ts"
act chown -R "$user:$user" "$state_dir"
act chmod 0700 "$state_dir"

act mkdir -p "$(dirname "$env_file")"
if [[ -e "$env_file" ]]; then
  say "keeping $env_file"
else
  env_example | write_file "$env_file" 0600
fi
if [[ "$with_kafka" == 1 ]]; then
  if [[ -e "$kafka_env_file" ]]; then
    say "keeping $kafka_env_file"
  else
    kafka_env_example | write_file "$kafka_env_file" 0600
  fi
fi

render task-runner.service | write_file "$unit_dir/task-runner.service" 0644
units=(task-runner)
if [[ "$with_kafka" == 1 ]]; then
  render kafka.service | write_file "$unit_dir/kafka.service" 0644
  units=(kafka task-runner)
fi
if [[ -d /run/systemd/system || "$dry_run" == 1 ]]; then
  act systemctl daemon-reload
else
  warn "systemd is not running here (no /run/systemd/system): skipped systemctl daemon-reload"
fi

if [[ "$dry_run" == 1 ]]; then
  say "dry run: nothing was changed"
  exit 0
fi
cat <<EOF

Installed. Next steps:
  1. Review $env_file (KAFKA_BROKERS, FUNCTIONS_DIR, ...)$([[ "$with_kafka" == 1 ]] && echo " and $kafka_env_file").
  2. systemctl enable --now ${units[*]}
  3. journalctl -u task-runner -f
  Upgrade: update this checkout, re-run this command, then systemctl restart task-runner.
  More: $install_dir/systemd/README.md
EOF
