#!/usr/bin/env bash
# Fuzzes the REST API from its own spec with Schemathesis against a fresh `chat`, so the spec
# cannot drift from what the server answers: every status, content type, header and body must be
# the one openapi.json declares, and no input may get a 5xx.
#
#   scripts/api-fuzz.sh          # CHAT_BIN=path/to/chat to test another binary
#   API_FUZZ_SECONDS=300 scripts/api-fuzz.sh
#
# Uses target/debug/chat (built when missing) and Schemathesis, installed into a virtualenv
# under target/ on first use.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${CHAT_BIN:-$root/target/debug/chat}"
venv="$root/target/schemathesis-venv"
seconds="${API_FUZZ_SECONDS:-60}"
work="$(mktemp -d)"
pid=""

cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf 'api-fuzz: %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/st" ]; then
  log "installing Schemathesis into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'schemathesis==4.32.5' 'hypothesis==6.170.17'
fi
if [ ! -x "$bin" ]; then
  log "building chat"
  cargo build -q -p bootstrap --bin chat
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
# Sign-up and login limits off: the fuzzer signs up and logs in far faster than a person.
CHAT_ADDR="127.0.0.1:$port" CHAT_DATA_DIR="$work/data" CHAT_LOG=warn \
  CHAT_REGISTRATIONS_PER_ADDRESS=0 CHAT_LOGIN_FAILURES_PER_NAME=1000000 CHAT_LOGIN_FAILURES_PER_ADDRESS=1000000 \
  "$bin" >"$work/chat.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  curl -sf "$base/health/ready" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/chat.log" >&2; exit 1; }
  sleep 0.1
done

# One account whose token every request carries; logging out would end its session, so the
# logout operation is fuzzed with a token of its own by the e2e tests instead.
curl -sf -X POST "$base/auth/register" -H 'content-type: application/json' \
  -d '{"username":"fuzzer","password":"correct horse battery staple"}' >/dev/null
token="$(curl -sf -X POST "$base/auth/login" -H 'content-type: application/json' \
  -d '{"username":"fuzzer","password":"correct horse battery staple"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"

# The token for both ways the spec accepts it, so neither is fuzzed into a wrong one.
cat >"$work/schemathesis.toml" <<TOML
# Every check but three: valid-looking data can still break a domain rule (a common password);
# object-level authorization needs a second user's resources to aim at; and a scenario may leave
# or delete a room between creating it and reading it back, which the availability check misreads.
[checks]
positive_data_acceptance.enabled = false
object_level_authorization.enabled = false
ensure_resource_availability.enabled = false

[auth.openapi.BearerAuth]
bearer = "$token"
[auth.openapi.QueryToken]
api_key = "$token"

# Its "negative" multipart bodies for uploads are valid forms (file before a query room_id, say),
# which the server rightly accepts.
[[operations]]
include-path = "/files"
include-method = "POST"
checks.negative_data_rejection.enabled = false
TOML
log "fuzzing $base for ${seconds}s"
status=0
# From the scratch directory, where Schemathesis leaves its cache. One worker: with two, a race in
# Hypothesis's own code ("AST constructor recursion depth mismatch") fails runs now and then.
(cd "$work" && "$venv/bin/st" --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
  --exclude-path /auth/logout \
  --max-time "$seconds" --workers 1 --no-color --suppress-health-check all \
  --continue-on-failure) || status=$?
if [ "$status" != 0 ]; then
  log "FAILED; the server's log:"
  tail -50 "$work/chat.log" >&2
fi
exit "$status"
