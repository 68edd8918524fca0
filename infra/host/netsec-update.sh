#!/usr/bin/env bash
# netsec-update.sh: updates the netsec service container on a Docker host with no failed
# request. Run as root (`cargo xtask deploy` sends it through SSM Run Command).
#
#   netsec-update.sh deploy IMAGE_REF   pull IMAGE_REF (registry/repo@sha256:…) and make it live
#   netsec-update.sh rollback [IMAGE_REF]
#                                       start the kept previous container again and make it
#                                       live (with IMAGE_REF: deploy that image instead)
#   netsec-update.sh status             one tab-separated line per container:
#                                       ROLE NAME IMAGE_REF IMAGE_ID STATE, then
#                                       `ready HTTP_CODE BODY` of the live one (exit 1 unless 200)
#   netsec-update.sh logs [N]           the live container's last N log lines (default 200)
#
# How an update goes: the candidate starts beside the live container, on the host network,
# sharing the service port through SO_REUSEPORT (`serve --reuse-port`), with a probe port of
# its own (`--probe-addr 127.0.0.1:P`, bound without SO_REUSEPORT: a probe on the shared port
# could reach either process). The server opens the shared port only once it is ready, so a
# candidate that never gets ready takes no traffic. Once the candidate answers /ready 200 on
# its probe port, the live one is stopped gracefully (SIGTERM: it closes its listeners, answers
# with `Connection: close` while clients move over, then finishes what is in flight) and kept,
# stopped, for rollback. If the candidate is not ready within NETSEC_READY_TIMEOUT or exits,
# its log and the last probe answers go to stderr, it is removed, and the live one is left
# untouched; exit 1.
#
# Roles are container names (docker cannot change a container's labels):
#   ${PREFIX}-live       serving
#   ${PREFIX}-previous   the one before, stopped, kept for rollback (its image stays)
#   ${PREFIX}-candidate  being started by a deploy (exists only during one)
#   ${PREFIX}-retiring   the live one being stopped (exists only during a hand-over)
# Labels, set at creation: netsec.managed-by=netsec-update, netsec.prefix=PREFIX,
# netsec.probe-port=P (the candidate gets the one of NETSEC_PROBE_PORTS the live one does not
# use), netsec.image-ref=IMAGE_REF. An interrupted run is repaired by the next one (see repair):
# whatever happens, a container that was serving keeps serving.
#
# Environment (defaults):
#   NETSEC_PORT=8080                 the service port (shared through SO_REUSEPORT)
#   NETSEC_PROBE_PORTS="8181 8182"   the two probe ports (blue/green slots), on 127.0.0.1
#   NETSEC_READY_TIMEOUT=60          seconds the candidate has to answer /ready 200
#   NETSEC_STOP_TIMEOUT=30           seconds `docker stop` gives a container (the server drains
#                                    and finishes requests in flight within them)
#   NETSEC_ENV_FILE=/etc/netsec/service.env   passed as --env-file when it exists (the
#                                    service's settings and secrets; never printed)
#   NETSEC_MODELS_DIR                a host folder mounted at /models (the image's model store)
#   NETSEC_CONTAINER_PREFIX=netsec   container names, and the lock
#   NETSEC_ECR_REGION                when set, log in to the image's registry with
#                                    `aws ecr get-login-password` first (password on stdin)
#   NETSEC_EXTRA_ARGS                more `netsec serve` arguments (split on white space)
#   NETSEC_LOCK_TIMEOUT=600          seconds to wait for another run on this host to end
#
# Exit codes: 0 done; 1 failed, and the host serves as it did before (or, for status, the live
# container is missing or not ready); 2 usage or configuration error; 3 the new container is
# live but the old one could not be stopped (both serve; run the command again, or stop it).
# Output: progress lines `netsec-update: …` on stdout, failures on stderr; the last line of a
# successful deploy or rollback is `netsec-update: live IMAGE_REF (CONTAINER)`.
set -Eeuo pipefail
# A command failing where no check expects it: say where. The next run repairs what this one
# left (see repair).
trap 'printf "netsec-update: unexpected failure at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

PORT=${NETSEC_PORT:-8080}
PROBE_PORTS=${NETSEC_PROBE_PORTS:-8181 8182}
READY_TIMEOUT=${NETSEC_READY_TIMEOUT:-60}
STOP_TIMEOUT=${NETSEC_STOP_TIMEOUT:-30}
ENV_FILE=${NETSEC_ENV_FILE:-/etc/netsec/service.env}
MODELS_DIR=${NETSEC_MODELS_DIR:-}
PREFIX=${NETSEC_CONTAINER_PREFIX:-netsec}
ECR_REGION=${NETSEC_ECR_REGION:-}
EXTRA_ARGS=${NETSEC_EXTRA_ARGS:-}
LOCK_TIMEOUT=${NETSEC_LOCK_TIMEOUT:-600}

LIVE="$PREFIX-live"
PREVIOUS="$PREFIX-previous"
CANDIDATE="$PREFIX-candidate"
RETIRING="$PREFIX-retiring"
# Log lines of a failed candidate shown on stderr.
LOG_LINES=100
# Probe answers kept for the failure report.
PROBES_KEPT=5

say() { printf 'netsec-update: %s\n' "$*"; }
warn() { printf 'netsec-update: warning: %s\n' "$*" >&2; }
fail() {
  printf 'netsec-update: %s\n' "$*" >&2
  exit 1
}
usage() {
  printf 'netsec-update: %s\n' "$*" >&2
  printf 'usage: netsec-update.sh deploy IMAGE_REF | rollback [IMAGE_REF] | status | logs [N]\n' >&2
  exit 2
}

is_count() { [[ $1 =~ ^[0-9]+$ ]]; }

check_config() {
  local name value
  for name in PORT READY_TIMEOUT STOP_TIMEOUT LOCK_TIMEOUT; do
    value=${!name}
    is_count "$value" || usage "NETSEC_$name is not a number: $value"
  done
  read -r -a SLOTS <<<"$PROBE_PORTS"
  [[ ${#SLOTS[@]} -eq 2 ]] || usage "NETSEC_PROBE_PORTS needs two ports, not: $PROBE_PORTS"
  for value in "${SLOTS[@]}"; do
    is_count "$value" || usage "NETSEC_PROBE_PORTS holds a non-number: $value"
  done
  [[ ${SLOTS[0]} != "${SLOTS[1]}" && ${SLOTS[0]} != "$PORT" && ${SLOTS[1]} != "$PORT" ]] ||
    usage "the probe ports ($PROBE_PORTS) and NETSEC_PORT ($PORT) must all differ"
  [[ $PREFIX =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ ]] || usage "NETSEC_CONTAINER_PREFIX is not a container name: $PREFIX"
  [[ -z $MODELS_DIR || -d $MODELS_DIR ]] || usage "NETSEC_MODELS_DIR is not a folder: $MODELS_DIR"
  command -v docker >/dev/null || usage "docker is not installed"
  command -v curl >/dev/null || usage "curl is not installed"
}

# --- containers ---------------------------------------------------------------------------

exists() { docker container inspect "$1" >/dev/null 2>&1; }
running() { [[ $(docker container inspect -f '{{.State.Running}}' "$1" 2>/dev/null) == true ]]; }
field() { docker container inspect -f "$2" "$1"; }
probe_port_of() { docker container inspect -f '{{index .Config.Labels "netsec.probe-port"}}' "$1" 2>/dev/null || true; }

# Stops a container gracefully: SIGTERM, then SIGKILL after NETSEC_STOP_TIMEOUT (the server
# drains its connections and finishes its requests within that time).
stop() {
  docker stop -t "$STOP_TIMEOUT" "$1" >/dev/null
}

remove() {
  if exists "$1"; then
    docker rm -f "$1" >/dev/null
  fi
}

# Makes an interrupted run's leftovers consistent again, without ever stopping a container
# that serves as live: a retiring container was live until a moment ago, so it takes the live
# name back if there is none, or else becomes the previous one; a candidate never got live.
repair() {
  if ! exists "$LIVE" && running "$RETIRING"; then
    say "repair: $RETIRING was serving; it is live again"
    docker rename "$RETIRING" "$LIVE"
  fi
  if ! exists "$LIVE" && running "$PREVIOUS"; then
    say "repair: $PREVIOUS was serving; it is live again"
    docker rename "$PREVIOUS" "$LIVE"
  fi
  if exists "$RETIRING"; then
    say "repair: stopping $RETIRING, kept as $PREVIOUS"
    stop "$RETIRING"
    remove "$PREVIOUS"
    docker rename "$RETIRING" "$PREVIOUS"
  fi
  if exists "$CANDIDATE"; then
    say "repair: removing the candidate an interrupted run left"
    stop "$CANDIDATE" || true
    remove "$CANDIDATE"
  fi
  if exists "$LIVE" && running "$PREVIOUS"; then
    say "repair: stopping $PREVIOUS (a previous container does not serve)"
    stop "$PREVIOUS"
  fi
}

# --- host set-up ---------------------------------------------------------------------------

# With net.ipv4.tcp_migrate_req=1 (Linux ≥ 5.14), connections still waiting in the accept
# queue of a listener that closes are moved to another listener of the same SO_REUSEPORT
# group instead of being reset: the old container's last accepted-by-the-kernel connections
# reach the new one.
migrate_requests() {
  local knob=/proc/sys/net/ipv4/tcp_migrate_req
  if [[ $(cat "$knob" 2>/dev/null) == 1 ]]; then
    return
  fi
  if ! { echo 1 >"$knob"; } 2>/dev/null; then
    warn "cannot set net.ipv4.tcp_migrate_req=1 (kernel older than 5.14, or no permission): connections queued on the old listener when it closes may be reset"
  fi
}

# One run at a time per service on this host.
lock() {
  local dir=/run/lock
  [[ -d $dir ]] || dir=/tmp
  exec 9>"$dir/$PREFIX-update.lock"
  if ! flock -w "$LOCK_TIMEOUT" 9; then
    fail "another netsec-update run still holds $dir/$PREFIX-update.lock after ${LOCK_TIMEOUT}s; nothing changed"
  fi
}

# The registry host of an image reference (`host[:port]/repo…`), or nothing (Docker Hub).
registry_of() {
  local first=${1%%/*}
  if [[ $1 == */* && ($first == *.* || $first == *:* || $first == localhost) ]]; then
    printf '%s' "$first"
  fi
}

login() {
  local registry
  registry=$(registry_of "$1")
  [[ -n $ECR_REGION && -n $registry ]] || return 0
  command -v aws >/dev/null || fail "NETSEC_ECR_REGION is set but the aws CLI is not installed; nothing changed"
  say "logging in to $registry"
  # The password goes from one process to the other through a pipe, never an argument.
  if ! aws ecr get-login-password --region "$ECR_REGION" |
    docker login --username AWS --password-stdin "$registry" >/dev/null; then
    fail "cannot log in to $registry (region $ECR_REGION); nothing changed"
  fi
}

pull() {
  say "pulling $1"
  if ! docker pull -q "$1" >/dev/null; then
    fail "cannot pull $1; nothing changed"
  fi
}

# Whether something listens on 127.0.0.1:$1.
port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The probe port for a new container: the slot the live one does not use.
free_slot() {
  local used=""
  exists "$LIVE" && used=$(probe_port_of "$LIVE")
  if [[ $used == "${SLOTS[0]}" ]]; then
    printf '%s' "${SLOTS[1]}"
  else
    printf '%s' "${SLOTS[0]}"
  fi
}

# --- the candidate -------------------------------------------------------------------------

# Creates and starts the candidate container from image $1 with probe port $2.
start_candidate() {
  local image=$1 probe=$2 args=()
  args+=(--name "$CANDIDATE" --network host --restart unless-stopped --stop-timeout "$STOP_TIMEOUT")
  args+=(--label netsec.managed-by=netsec-update --label "netsec.prefix=$PREFIX")
  args+=(--label "netsec.probe-port=$probe" --label "netsec.image-ref=$image")
  if [[ -f $ENV_FILE ]]; then
    args+=(--env-file "$ENV_FILE")
  fi
  if [[ -n $MODELS_DIR ]]; then
    args+=(-v "$MODELS_DIR:/models")
  fi
  local serve=(serve --addr "0.0.0.0:$PORT" --reuse-port --probe-addr "127.0.0.1:$probe")
  local extra=()
  read -r -a extra <<<"$EXTRA_ARGS"
  # The server must be done before docker's SIGKILL: give it the stop timeout less a margin,
  # unless the extra arguments set it.
  if [[ " $EXTRA_ARGS " != *" --shutdown-timeout"* ]]; then
    serve+=(--shutdown-timeout "$((STOP_TIMEOUT > 2 ? STOP_TIMEOUT - 2 : 1))")
  fi
  say "starting $CANDIDATE from $image (probe 127.0.0.1:$probe, port $PORT shared)"
  if ! docker run -d "${args[@]}" "$image" "${serve[@]}" "${extra[@]}" >/dev/null; then
    remove "$CANDIDATE"
    fail "cannot start a container from $image; nothing changed"
  fi
}

# Probes are kept here for the failure report: "HTTP_CODE BODY" or "no answer (…)".
PROBES=()

probe_once() {
  local port=$1 body code
  body=$(mktemp)
  if code=$(curl -sS --max-time 2 -o "$body" -w '%{http_code}' "http://127.0.0.1:$port/ready" 2>"$body.err"); then
    PROBES+=("$(date -u +%H:%M:%S) HTTP $code $(head -c 300 "$body")")
  else
    PROBES+=("$(date -u +%H:%M:%S) no answer ($(tr '\n' ' ' <"$body.err" | head -c 200))")
    code=000
  fi
  rm -f "$body" "$body.err"
  if ((${#PROBES[@]} > PROBES_KEPT)); then
    PROBES=("${PROBES[@]:1}")
  fi
  [[ $code == 200 ]]
}

# Waits for container $1 to answer /ready 200 on port $2 within NETSEC_READY_TIMEOUT; fails
# (returns 1, with the reason in WHY) when it exits or restarts, or time runs out.
WHY=""
wait_ready() {
  local name=$1 port=$2 deadline=$((SECONDS + READY_TIMEOUT)) restarts
  restarts=$(field "$name" '{{.RestartCount}}')
  PROBES=()
  while true; do
    if ! running "$name" || [[ $(field "$name" '{{.RestartCount}}') != "$restarts" ]]; then
      WHY="$name exited (code $(field "$name" '{{.State.ExitCode}}'))"
      return 1
    fi
    if probe_once "$port"; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      WHY="$name was not ready within ${READY_TIMEOUT}s"
      return 1
    fi
    sleep 0.5
  done
}

# The failure report of container $1, on stderr.
report() {
  {
    printf 'netsec-update: %s\n' "$WHY"
    printf 'netsec-update: the last %s log lines of %s:\n' "$LOG_LINES" "$1"
    docker logs --tail "$LOG_LINES" "$1" 2>&1 | sed 's/^/  | /' || true
    printf 'netsec-update: the last probe answers (GET http://127.0.0.1:%s/ready):\n' "$2"
    if ((${#PROBES[@]} == 0)); then
      printf '  (none)\n'
    fi
    local answer
    for answer in "${PROBES[@]}"; do
      printf '  %s\n' "$answer"
    done
  } >&2
}

# --- the hand-over -------------------------------------------------------------------------

# Container $1 (the candidate, or the previous one in a rollback) is ready: it becomes live;
# the live one (if any) is stopped gracefully and kept as previous; the previous one before it
# (if $1 was not it) is removed, with its image unless that is used or tagged.
hand_over() {
  local new=$1 dropped=""
  if exists "$LIVE"; then
    docker rename "$LIVE" "$RETIRING"
  fi
  docker rename "$new" "$LIVE"
  if exists "$RETIRING"; then
    say "stopping the old container (up to ${STOP_TIMEOUT}s: it drains its connections)"
    if ! stop "$RETIRING" && running "$RETIRING"; then
      printf 'netsec-update: %s is live, but the old container %s could not be stopped\n' "$LIVE" "$RETIRING" >&2
      exit 3
    fi
    if exists "$PREVIOUS"; then
      dropped=$(field "$PREVIOUS" '{{.Image}}')
      remove "$PREVIOUS"
    fi
    docker rename "$RETIRING" "$PREVIOUS"
    say "kept the old container as $PREVIOUS, stopped"
  fi
  if [[ -n $dropped ]]; then
    remove_unused_image "$dropped"
  fi
}

# Removes image $1 if no container uses it and it has no tag: what a removed container's
# image pulled by digest becomes. Keeps the disk from filling with every release.
remove_unused_image() {
  local image=$1 reference used
  used=$(docker ps -aq --no-trunc | xargs -r docker container inspect -f '{{.Image}}')
  if grep -qx "$image" <<<"$used"; then
    return
  fi
  [[ $(docker image inspect -f '{{len .RepoTags}}' "$image" 2>/dev/null) == 0 ]] || return 0
  for reference in $(docker image inspect -f '{{range .RepoDigests}}{{.}} {{end}}' "$image"); do
    docker image rm "$reference" >/dev/null 2>&1 || true
  done
  docker image rm "$image" >/dev/null 2>&1 || true
  say "removed the unused image $image"
}

# --- commands ------------------------------------------------------------------------------

deploy() {
  local image=$1 slot
  lock
  migrate_requests
  repair
  login "$image"
  pull "$image"
  slot=$(free_slot)
  if port_busy "$slot"; then
    fail "the probe port 127.0.0.1:$slot is in use by another process; nothing changed"
  fi
  start_candidate "$image" "$slot"
  say "waiting up to ${READY_TIMEOUT}s for /ready on 127.0.0.1:$slot"
  if ! wait_ready "$CANDIDATE" "$slot"; then
    report "$CANDIDATE" "$slot"
    # Gracefully: had it got ready at the last moment, it would be serving connections.
    stop "$CANDIDATE" || true
    remove "$CANDIDATE"
    if exists "$LIVE"; then
      fail "removed $CANDIDATE; $LIVE ($(field "$LIVE" '{{.Config.Image}}')) still serves, unchanged"
    fi
    fail "removed $CANDIDATE; nothing serves (there was no live container)"
  fi
  say "$CANDIDATE is ready"
  hand_over "$CANDIDATE"
  say "live $image ($LIVE)"
}

rollback() {
  local slot image
  lock
  migrate_requests
  repair
  exists "$PREVIOUS" || fail "there is no previous container to roll back to; nothing changed"
  image=$(field "$PREVIOUS" '{{.Config.Image}}')
  slot=$(probe_port_of "$PREVIOUS")
  if port_busy "$slot"; then
    fail "the probe port 127.0.0.1:$slot of $PREVIOUS is in use by another process; nothing changed"
  fi
  say "starting $PREVIOUS ($image) again"
  docker start "$PREVIOUS" >/dev/null || fail "cannot start $PREVIOUS; nothing changed"
  say "waiting up to ${READY_TIMEOUT}s for /ready on 127.0.0.1:$slot"
  if ! wait_ready "$PREVIOUS" "$slot"; then
    report "$PREVIOUS" "$slot"
    stop "$PREVIOUS" || true
    fail "stopped $PREVIOUS again (kept); $LIVE still serves, unchanged"
  fi
  say "$PREVIOUS is ready"
  # The previous one takes the live name; the live one is kept as previous in its turn.
  hand_over "$PREVIOUS"
  say "live $image ($LIVE)"
}

status() {
  local name role code=0 body
  for role in live previous candidate retiring; do
    name="$PREFIX-$role"
    if exists "$name"; then
      printf '%s\t%s\t%s\t%s\t%s\n' "$role" "$name" "$(field "$name" '{{.Config.Image}}')" \
        "$(field "$name" '{{.Image}}')" "$(field "$name" '{{.State.Status}}')"
    fi
  done
  exists "$LIVE" || {
    printf 'ready\t000\tno live container\n'
    return 1
  }
  body=$(mktemp)
  code=$(curl -sS --max-time 5 -o "$body" -w '%{http_code}' "http://127.0.0.1:$(probe_port_of "$LIVE")/ready" 2>/dev/null) || code=000
  printf 'ready\t%s\t%s\n' "$code" "$(tr '\t\n' '  ' <"$body")"
  rm -f "$body"
  [[ $code == 200 ]]
}

logs() {
  local lines=${1:-200}
  is_count "$lines" || usage "logs takes a number of lines, not: $lines"
  exists "$LIVE" || fail "there is no live container"
  docker logs --tail "$lines" "$LIVE" 2>&1
}

main() {
  local command=${1:-}
  [[ $# -gt 0 ]] && shift
  check_config
  case $command in
  deploy)
    [[ $# -eq 1 && -n $1 ]] || usage "deploy takes one image reference"
    deploy "$1"
    ;;
  rollback)
    [[ $# -le 1 ]] || usage "rollback takes at most one image reference"
    if [[ $# -eq 1 ]]; then
      deploy "$1"
    else
      rollback
    fi
    ;;
  status)
    [[ $# -eq 0 ]] || usage "status takes no argument"
    status
    ;;
  logs)
    [[ $# -le 1 ]] || usage "logs takes at most a number of lines"
    logs "$@"
    ;;
  *) usage "unknown command: ${command:-(none)}" ;;
  esac
}

main "$@"
