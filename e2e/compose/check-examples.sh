#!/usr/bin/env bash
# Checks every example under examples/: each arca.yaml is parsed and validated by the real
# `arca` binary, each docker-compose.yml by compose itself (`config -q`).
#
#   e2e/compose/check-examples.sh            uses $ARCA_BIN, else target/release/arca, else target/debug/arca
#
# The examples hold placeholders a person must replace (the age recipient) and name
# secrets under /run/secrets, so each arca.yaml is checked as a copy with: a fresh age
# recipient, dummy secret files, an empty temporary directory for every path destination
# and S3 endpoints on a closed loopback port (nothing leaves the machine). With
# `arca check` (when the binary has it) only the config is checked; otherwise
# `arca snapshots` is run, whose exit status tells a config error (2) from a destination
# that cannot be listed (1, fine here).
# Prints one line per example; exit 1 with one line naming the first broken one.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
EXAMPLES=${ARCA_EXAMPLES_DIR:-$REPO/examples}

fail() { printf 'check-examples: FAILED: %s\n' "$*" >&2; exit 1; }

ARCA=${ARCA_BIN:-}
if [[ -z $ARCA ]]; then
  for c in "$REPO/target/release/arca" "$REPO/target/debug/arca"; do
    [[ -x $c ]] && { ARCA=$c; break; }
  done
fi
[[ -n $ARCA && -x $ARCA ]] || fail "no arca binary: cargo build -p arca, or set ARCA_BIN"

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
else
  fail "neither 'docker compose' nor 'docker-compose' is installed (Debian: apt-get install docker-compose)"
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
RECIPIENT=$("$ARCA" keygen 2>/dev/null | sed -n 's/^# public key: //p')
[[ $RECIPIENT == age1* ]] || fail "$ARCA keygen printed no public key"
HAS_CHECK=
[[ -n ${ARCA_CHECK_WITH_SNAPSHOTS:-} ]] || { "$ARCA" check --help >/dev/null 2>&1 && HAS_CHECK=1; }

# Values the compose files demand from the environment (see each file's header).
export DOCKER_GID=${DOCKER_GID:-999} SANTEDB_DB_PASSWORD=dummy ELEXIS_DB_PASSWORD=dummy

n=0
for dir in "$EXAMPLES"/*/; do
  name=$(basename "$dir")
  [[ -f $dir/arca.yaml ]] || fail "$name: arca.yaml is missing"
  [[ -f $dir/docker-compose.yml ]] || fail "$name: docker-compose.yml is missing"
  head -n1 "$dir/docker-compose.yml" | grep -q '^# ' || fail "$name: docker-compose.yml does not start with its README comment block"

  # compose: the file as a person would use it (missing secret files are fine for `config`).
  out=$(cd "$dir" && "${COMPOSE[@]}" -p "check-$name" config -q 2>&1) ||
    fail "$name/docker-compose.yml is invalid: $(tail -n1 <<<"$out")"

  # arca: a runnable copy of the config.
  work=$TMP/$name
  mkdir -p "$work/secrets" "$work/dest"
  sed -e "s|age1-REPLACE-WITH-YOUR-RECIPIENT|$RECIPIENT|g" \
    -e "s|/run/secrets/|$work/secrets/|g" \
    -e "s|endpoint: *\"https\?://[^\"]*\"|endpoint: \"http://127.0.0.1:9\"|" \
    "$dir/arca.yaml" >"$work/arca.yaml"
  grep -q REPLACE "$work/arca.yaml" && fail "$name/arca.yaml: a placeholder other than the age recipient is left"
  for s in $(grep -o "$work/secrets/[A-Za-z0-9._-]*" "$work/arca.yaml" | sort -u); do
    printf 'dummy' >"$s"
  done
  # Every path destination becomes its own empty directory.
  i=0
  while grep -qE '^ +path: /backup[^ ]*$' "$work/arca.yaml"; do
    i=$((i + 1)) && mkdir -p "$work/dest/$i"
    sed -i -E "0,/^( +)path: \/backup[^ ]*$/s||\\1path: $work/dest/$i|" "$work/arca.yaml"
  done
  if [[ -n $HAS_CHECK ]]; then
    out=$("$ARCA" check --config "$work/arca.yaml" 2>&1) || fail "$name/arca.yaml: $(tail -n1 <<<"$out")"
    printf 'check-examples: %-18s ok (arca check, compose config)\n' "$name"
  else
    rc=0
    out=$("$ARCA" snapshots --config "$work/arca.yaml" 2>&1) || rc=$?
    case $rc in
      0) note="arca snapshots: empty destination" ;;
      1) note="arca snapshots: config ok, destination not listable here" ;;
      *) fail "$name/arca.yaml is not a valid config (arca exit $rc): $(grep -m1 '^arca: ' <<<"$out" || tail -n1 <<<"$out")" ;;
    esac
    printf 'check-examples: %-18s ok (%s; compose config)\n' "$name" "$note"
  fi
  n=$((n + 1))
done
((n > 0)) || fail "no examples under $EXAMPLES"
printf 'check-examples: %d examples ok\n' "$n"
