#!/usr/bin/env bash
# Runs docs/quickstart.md against a fresh `chat`, so the quick start cannot rot:
#   1. every ```bash block of the page, in order, in one shell (127.0.0.1:8080 becomes the
#      server's port; `curl` fails on any 4xx/5xx answer), then checks what they left behind;
#   2. scripts/quickstart_client.py as alice and bob at once: each must print the other's message.
# Exits non-zero on the first failure, and stops the server it started in every case.
#
#   scripts/quickstart-check.sh      # CHAT_BIN=path/to/chat to test another binary
#   scripts/quickstart-check.sh -v   # also prints what the blocks and the clients printed
#
# Uses target/debug/chat (built when missing), jq (Debian's package is installed when missing)
# and the `websockets` package, installed into a virtualenv under target/ on first use.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
doc=docs/quickstart.md
client=scripts/quickstart_client.py
bin="${CHAT_BIN:-$root/target/debug/chat}"
venv="$root/target/quickstart-venv"
work="$(mktemp -d)"
pids=()
verbose=0
[ "${1:-}" = -v ] && verbose=1

cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf 'quickstart-check: %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

# What the page asks of a reader: curl, jq, python3 with websockets.
if ! command -v jq >/dev/null 2>&1; then
  log "installing jq from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
fi
if ! "$venv/bin/python" -c 'import websockets.asyncio.client' 2>/dev/null; then
  log "installing websockets into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'websockets>=14'
fi
if [ ! -x "$bin" ]; then
  log "building chat"
  cargo build -q -p bootstrap --bin chat
fi

# A fresh server on a free port, with its own data and no other configuration, as a reader's is.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
url="http://127.0.0.1:$port"
unset_chat=()
for name in $(compgen -e | grep '^CHAT_' || true); do unset_chat+=(-u "$name"); done
env "${unset_chat[@]}" CHAT_DATA_DIR="$work/data" CHAT_ADDR="127.0.0.1:$port" "$bin" >"$work/chat.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
  curl -sf "$url/health/ready" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/chat.log" >&2; fail "chat exited at start-up"; }
  sleep 0.1
done
curl -sf "$url/health/ready" >/dev/null || { cat "$work/chat.log" >&2; fail "chat did not become ready on $url"; }
log "chat ready at $url"

# 1. The page's bash blocks, each announced with its line, in one shell.
{
  echo 'set -euo pipefail'
  # Any 4xx/5xx fails the block; the answer is kept to show why.
  echo 'curl() { command curl -S --fail-with-body "$@" | tee "$QUICKSTART_LAST"; }'
  awk -v port="$port" '
    /^```bash[[:space:]]*$/ { inside = 1; printf "echo \"quickstart-check: docs/quickstart.md line %d\" >&2\n", NR; next }
    /^```/ && inside { inside = 0; next }
    inside { gsub(/127\.0\.0\.1:8080/, "127.0.0.1:" port); print }
  ' "$doc"
  # What the blocks must leave behind, for the checks below and the chat after them.
  cat <<'EOF'
echo "quickstart-check: checking what the blocks left: ALICE, BOB, ROOM, bob's message" >&2
auth() { command curl -sSf "$CHAT_URL$1" -H "Authorization: Bearer $2"; }
[ "$(auth /users/me "$ALICE" | jq -r .username)" = alice ] || { echo "ALICE is not alice's token" >&2; exit 1; }
[ "$(auth /users/me "$BOB" | jq -r .username)" = bob ] || { echo "BOB is not bob's token" >&2; exit 1; }
auth "/rooms/$ROOM" "$BOB" | jq -e '[.members[].username] | sort == ["alice", "bob"]' >/dev/null \
  || { echo "bob is not a member of ROOM" >&2; exit 1; }
auth "/rooms/$ROOM/messages" "$ALICE" | jq -e '[.items[] | select(.sender.username == "bob")] | length > 0' >/dev/null \
  || { echo "the history has no message from bob" >&2; exit 1; }
printf '%s\n' "$ALICE" "$BOB" "$ROOM" >"$QUICKSTART_VARS"
EOF
} >"$work/quickstart.sh"
blocks="$(grep -c '^```bash' "$doc")"
[ "$blocks" -gt 0 ] || fail "$doc has no bash block"
log "running the $blocks bash blocks of $doc"
if ! PATH="$venv/bin:$PATH" QUICKSTART_VARS="$work/vars" QUICKSTART_LAST="$work/last-answer" \
  bash "$work/quickstart.sh" >"$work/blocks.out" 2>&1; then
  cat "$work/blocks.out" >&2
  [ ! -s "$work/last-answer" ] || log "the last answer curl got: $(head -c 2000 "$work/last-answer")"
  fail "a bash block of $doc failed (the last 'line' above names it)"
fi
{ read -r alice; read -r bob; read -r room; } <"$work/vars"
[ "$verbose" = 0 ] || cat "$work/blocks.out" >&2

# 2. Two users chatting: both clients connected, then each says one line.
mkfifo "$work/alice.in" "$work/bob.in"
for who in alice bob; do
  token=$alice; [ "$who" = bob ] && token=$bob
  CHAT_URL="$url" CHAT_TOKEN="$token" "$venv/bin/python" "$client" "$room" \
    <"$work/$who.in" >"$work/$who.out" 2>"$work/$who.err" &
  pids+=("$!")
done
client_pids=("${pids[@]:1}")
exec 3>"$work/alice.in" 4>"$work/bob.in"

show_clients() { for f in alice.out alice.err bob.out bob.err; do log "$f:"; cat "$work/$f" >&2; done; }
printed() { # file:text... — whether every client has printed its text
  local pair
  for pair in "$@"; do
    grep -qF -- "${pair#*:}" "$work/${pair%%:*}" || return 1
  done
}
wait_until() { # what-failed file:text...
  local what=$1; shift
  for _ in $(seq 1 100); do
    printed "$@" && return 0
    sleep 0.1
  done
  show_clients; fail "$what"
}

wait_until "the clients did not connect" "alice.out:connected as alice" "bob.out:connected as bob"
trap '' PIPE # a client that died fails the wait below, with its output, not this shell
echo "bob, are you there?" >&3 || true
echo "here, alice" >&4 || true
wait_until "alice and bob did not each receive the other's message" \
  "alice.out:bob: here, alice" "bob.out:alice: bob, are you there?"
exec 3>&- 4>&-
for pid in "${client_pids[@]}"; do
  status=0; wait "$pid" || status=$?
  [ "$status" = 0 ] || { show_clients; fail "a client exited with status $status"; }
done
pids=("${pids[0]}")
[ "$verbose" = 0 ] || show_clients
log "ok: the bash blocks of $doc ran, and alice and bob chatted with $client"
