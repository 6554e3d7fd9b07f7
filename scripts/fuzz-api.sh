#!/usr/bin/env bash
# Fuzzes the HTTP API from its own description: starts the built gateway on a free loopback port with a throwaway
# data directory, runs schemathesis against /openapi.json for a bounded time, and fails on any 5xx, any answer that
# does not match its documented status, content type or schema, or a crash. Stops the gateway (by pid) whatever happens.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-40}
TIME_LIMIT_SECONDS=${FUZZ_TIME_LIMIT_SECONDS:-240}

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${CHATGATE_CACHE_DIR:-$HOME/.cache/chatgate}
venv=$cache/schemathesis-venv

if [[ ! -x $venv/bin/schemathesis ]] || [[ $("$venv/bin/schemathesis" --version 2>/dev/null) != *"$SCHEMATHESIS_VERSION"* ]]; then
  echo "fuzz: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Always from the current sources: a stale build would fuzz yesterday's gateway.
(cd "$root" && npm run --silent build)

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
data_dir=$(mktemp -d "${TMPDIR:-/tmp}/chatgate-fuzz.XXXXXX")
log=$data_dir/gateway.log
gateway_pid=

stop() {
  if [[ -n $gateway_pid ]] && kill -0 "$gateway_pid" 2>/dev/null; then
    kill -TERM "$gateway_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$gateway_pid" 2>/dev/null || true
  fi
  rm -rf "$data_dir"
}
trap stop EXIT INT TERM

# Development settings (console SMS, generated keys), limits high enough not to hide findings behind 429s (429 is
# documented and accepted where it still happens: per-phone resend waits). Both chat channels are on, so their routes
# are fuzzed too, with made-up secrets and provider URLs on a closed loopback port: nothing leaves this machine.
(
  cd "$root"
  exec env NODE_ENV=development HOST=127.0.0.1 PORT="$port" DATA_DIR="$data_dir/data" LOG_LEVEL=warn \
    RATE_LIMIT_MAX=1000000 OTP_RATE_LIMIT_MAX=1000000 OTP_MAX_SENDS_PER_HOUR=1000 API_DOCS=true \
    EMBEDDED_DB_ENGINE="${EMBEDDED_DB_ENGINE:-auto}" \
    TELEGRAM_BOT_TOKEN=7000000000:fuzz-token-not-a-real-bot-0123456 TELEGRAM_BOT_USERNAME=chatgate_fuzz_bot \
    TELEGRAM_WEBHOOK_SECRET=fuzz-webhook-secret-0123456789 TELEGRAM_API_ROOT=http://127.0.0.1:9 \
    WHATSAPP_VERIFY_TOKEN=fuzz-verify-token WHATSAPP_APP_SECRET=fuzz-app-secret-0123456789abcdef \
    WHATSAPP_ACCESS_TOKEN=fuzz-access-token WHATSAPP_PHONE_NUMBER_ID=100000000000000 WHATSAPP_DISPLAY_NUMBER=+15550001234 \
    WHATSAPP_GRAPH_URL=http://127.0.0.1:9 \
    node dist/src/server.js
) >"$log" 2>&1 &
gateway_pid=$!

base=http://127.0.0.1:$port
for _ in $(seq 1 600); do
  if curl -fsS "$base/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$gateway_pid" 2>/dev/null; then
    echo "fuzz: the gateway did not start:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
curl -fsS "$base/ready" >/dev/null || { echo "fuzz: the gateway is not ready after 5 minutes" >&2; tail -n 40 "$log" >&2; exit 1; }
echo "fuzz: gateway up at $base (pid $gateway_pid); schemathesis for at most ${TIME_LIMIT_SECONDS}s"

# schemathesis frames its summary in pytest's banner lines ("===== 4 warnings in 22.34s ====="), which a reader of
# test output takes for a pytest run that executed no test. The report is printed whole but for those frame lines;
# the summary's own lines (operations, phases, "N generated, N passed") stay.
set +e +o pipefail
timeout --signal=TERM --kill-after=10 "$TIME_LIMIT_SECONDS" "$venv/bin/schemathesis" run "$base/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 10 \
  --seed "${FUZZ_SEED:-20260501}" \
  --no-color | grep -v -E '^=+ .* =+$'
status=${PIPESTATUS[0]}
set -e -o pipefail

if ! kill -0 "$gateway_pid" 2>/dev/null; then
  echo "fuzz: the gateway crashed during the run:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
if [[ $status -eq 124 ]]; then
  echo "fuzz: schemathesis did not finish within ${TIME_LIMIT_SECONDS}s" >&2
fi
if grep -q '"level":50\|"level":60' "$log"; then
  echo "fuzz: the gateway logged errors:" >&2
  grep '"level":50\|"level":60' "$log" | tail -n 20 >&2
  status=1
fi
if [[ $status -eq 0 ]]; then echo "fuzz: schemathesis found nothing"; else echo "fuzz: schemathesis failed (exit $status)" >&2; fi
exit "$status"
