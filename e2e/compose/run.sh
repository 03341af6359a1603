#!/usr/bin/env bash
# Compose end-to-end scenario for Arca's sidecar mode, on a machine with Docker and no
# container registry:
#   1. builds the images from a debootstrap base (cached): arca:dev, PostgreSQL 15, the app;
#   2. starts PostgreSQL (test database `clinic`), an app writing DICOM-like files into a
#      volume (labelled arca.stop-during-backup=e2e) and the arca sidecar running
#      `arca daemon` on a one-minute schedule (app volume read-only, Docker socket, backup
#      volume, secrets as files, read-only root filesystem, uid 10001);
#   3. waits until /api/status reports a successful backup, and checks from Docker's events
#      that the labelled container (and only it) was stopped during the backup and runs again;
#   4. restores the snapshot with a one-off `arca restore` into a fresh PostgreSQL and a
#      fresh volume, and compares: every file by sha256, mode, owner, size and mtime; the
#      database by roles, schema and per-table digests.
# Exit 0 on success; otherwise the last line says what failed. The project is always torn
# down (ARCA_E2E_KEEP=1 keeps it for debugging).
#
# Environment:
#   ARCA_BIN          arca binary for the image (default: cargo build --release)
#   ARCA_IMAGE        sidecar image tag (default arca:dev)
#   ARCA_E2E_CACHE    cache for the base rootfs (default /var/cache/arca-e2e)
#   ARCA_E2E_TIMEOUT  seconds to wait for the daemon's first successful backup (default 240)
#   ARCA_E2E_ONESHOT  1: use one-shot `arca backup` instead of the daemon (only for images
#                     without `arca daemon`; the scenario proper needs the daemon)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034 # read by images/lib.sh
ARCA_SCRIPT="compose e2e"
# shellcheck source=../../images/lib.sh
source "$HERE/../../images/lib.sh"

T0=$SECONDS
# Byte-wise sorting and comparison, the same on the host and in the containers.
export LC_ALL=C
POLICY=e2e
export ARCA_IMAGE=${ARCA_IMAGE:-arca:dev}
TIMEOUT=${ARCA_E2E_TIMEOUT:-240}
P=arca-e2e-$$-$RANDOM
step() { log "[$((SECONDS - T0))s] $*"; }
# The original stderr, for failure lines raised while stderr is redirected (wait_until).
exec 3>&2
# One clear line, last, after the end of the containers' logs for context.
fail() {
  FAILED=1
  if [[ -n ${P_UP:-} ]]; then
    local s
    for s in arca app db; do
      dc logs --no-color --tail 25 "$s" 2>/dev/null | grep -v '^Attaching to' | sed "s/^/  | /" >&3 || true
    done
  fi
  printf 'compose e2e: FAILED: %s\n' "$*" >&3
  exit 1
}

RUN_DIR=''
# Always: stop the event watcher and any image build still running, tear the project down.
cleanup() {
  local rc=$? j
  for j in $(jobs -p); do kill "$j" 2>/dev/null || true; done
  if [[ -n ${ARCA_E2E_KEEP:-} && -n ${P_UP:-} ]]; then
    log "kept project $P and $RUN_DIR (ARCA_E2E_KEEP); remove with: E2E_RUN_DIR=$RUN_DIR DOCKER_GID=$DOCKER_GID ${COMPOSE[*]} -p $P -f $HERE/docker-compose.yml --profile restore down -v"
  else
    [[ -n ${P_UP:-} ]] && { dc --profile restore down -v --remove-orphans -t 5 >/dev/null 2>&1 || true; }
    [[ -n $RUN_DIR ]] && rm -rf "$RUN_DIR"
  fi
  if [[ $rc -ne 0 && -z ${FAILED:-} ]]; then
    printf 'compose e2e: FAILED: unexpected error (exit %s) in run.sh; see the output above\n' "$rc" >&3
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- preflight -------------------------------------------------------------------------
command -v docker >/dev/null || fail "docker is not installed (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || fail "the docker engine does not answer at ${DOCKER_HOST:-/var/run/docker.sock}: start it (systemctl start docker)"
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
else
  fail "neither 'docker compose' nor 'docker-compose' is installed (Debian: apt-get install docker-compose)"
fi
for cmd in curl jq; do
  command -v $cmd >/dev/null && continue
  [[ $EUID -eq 0 ]] || fail "$cmd is missing: apt-get install $cmd"
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $cmd >/dev/null ||
    fail "could not install $cmd: apt-get install $cmd"
done
[[ -S /var/run/docker.sock ]] || fail "/var/run/docker.sock is missing: the sidecar needs the local Docker socket for cold backups"
dc() { "${COMPOSE[@]}" -p "$P" -f "$HERE/docker-compose.yml" "$@"; }
# A one-off container of service $2 with args "${@:3}", killed after $1 seconds.
dc_run() { timeout "$1" "${COMPOSE[@]}" -p "$P" -f "$HERE/docker-compose.yml" --profile restore run --rm -T --no-deps "${@:2}"; }

# --- images (cached) --------------------------------------------------------------------
step "images: base, $ARCA_IMAGE, arca-e2e-postgres:15, arca-e2e-app:dev"
"$ARCA_IMAGES_DIR/base.sh" || fail "building the base image $ARCA_BASE_IMAGE failed"
containers_reach_mirror "$ARCA_BASE_IMAGE" || true
# The three builds are independent: run them side by side (apt's unpacking is I/O bound).
"$ARCA_IMAGES_DIR/build.sh" sidecar & b1=$!
build_image arca-e2e-postgres:15 "$HERE/images/postgres" & b2=$!
build_image arca-e2e-app:dev "$HERE/images/app" & b3=$!
wait $b1 || fail "building $ARCA_IMAGE failed"
wait $b2 || fail "building arca-e2e-postgres:15 failed"
wait $b3 || fail "building arca-e2e-app:dev failed"
ONESHOT=${ARCA_E2E_ONESHOT:-}
if [[ -z $ONESHOT ]] && ! timeout 60 docker run --rm "$ARCA_IMAGE" daemon --help >/dev/null 2>&1; then
  fail "$ARCA_IMAGE has no 'arca daemon' command: rebuild with a binary that has it (or ARCA_E2E_ONESHOT=1 for one-shot backups)"
fi

# --- secrets and config -------------------------------------------------------------------
RUN_DIR=$(mktemp -d /var/tmp/arca-e2e.XXXXXX)
export E2E_RUN_DIR=$RUN_DIR
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
export DOCKER_GID


# Secrets as files; world-readable inside a private directory, because the containers read
# them as other uids (postgres, 10001) through bind mounts.
chmod 0711 "$RUN_DIR"
od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$RUN_DIR/pg-password"
timeout 60 docker run --rm "$ARCA_IMAGE" keygen >"$RUN_DIR/age-identity" 2>/dev/null || fail "arca keygen failed in $ARCA_IMAGE"
RECIPIENT=$(sed -n 's/^# public key: //p' "$RUN_DIR/age-identity")
[[ $RECIPIENT == age1* ]] || fail "arca keygen printed no '# public key: age1...' line"
chmod 0444 "$RUN_DIR/pg-password" "$RUN_DIR/age-identity"

write_config() { # $1: PostgreSQL host
  cat <<EOF
daemon:
  stateDir: /var/lib/arca
  listen: "0.0.0.0:9180"
policies:
  - name: $POLICY
    schedule: "* * * * *"
    rpo: 10m
    quiesce: {stopContainers: true, timeout: 2m}
    encryption:
      ageRecipients: ["$RECIPIENT"]
      ageIdentityFile: /run/secrets/age-identity
    components:
      - name: globals
        postgresGlobals: {host: $1, port: 5432, user: postgres, passwordFile: /run/secrets/pg-password}
      - name: clinic
        postgres: {host: $1, port: 5432, user: postgres, passwordFile: /run/secrets/pg-password, database: clinic}
      - name: dicom
        files: {path: /sources/app, exclude: ["*.tmp"]}
    destinations:
      - name: local
        path: /backup
        retention: {keepLast: 5}
EOF
}
write_config db >"$RUN_DIR/arca.yaml"
write_config db-restore >"$RUN_DIR/arca-restore.yaml"
chmod 0444 "$RUN_DIR"/*.yaml

# --- bring up --------------------------------------------------------------------------
# Docker's own record of what happened to the project's containers, from before they start.
docker events --filter "label=com.docker.compose.project=$P" --filter type=container \
  --filter event=start --filter event=die --filter event=stop --filter event=kill \
  --format '{{.TimeNano}} {{.Action}} {{index .Actor.Attributes "com.docker.compose.service"}}' \
  >"$RUN_DIR/events" 2>/dev/null &

step "starting db and app (project $P)"
P_UP=1
dc up -d db app >"$RUN_DIR/up.log" 2>&1 || { cat "$RUN_DIR/up.log" >&2; fail "docker-compose up (db, app) failed"; }

cid() { dc ps -q "$1"; }
# arca's one-line error from a log (compose adds its own lines around it).
arca_error() { grep -m1 '^arca: ' "$1" || tail -n1 "$1"; }
# Poll "$@" once a second for up to $1 seconds.
wait_until() {
  local n=$1; shift
  until "$@" >/dev/null 2>&1; do
    ((n-- > 0)) || return 1
    sleep 1
  done
}
# Healthy; fails the run at once when the container has exited instead.
healthy() {
  local state
  state=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$(cid "$1")") || return 1
  [[ $state == exited* || $state == dead* ]] && fail "the $1 container exited during startup (see its log above)"
  [[ $state == "running healthy" ]]
}
app_ready() { dc logs --no-color app | grep -q 'wrote the first'; }
wait_until 90 healthy db || fail "PostgreSQL (db) did not become healthy within 90 s"
wait_until 60 app_ready || fail "the app did not write its first files within 60 s"
APP_ID=$(cid app)
APP_STARTED0=$(docker inspect -f '{{.State.StartedAt}}' "$APP_ID")

psql_in() { # $1: service, rest: psql args
  local s=$1; shift
  dc exec -T "$s" psql -X -q -At -v ON_ERROR_STOP=1 -h /tmp -U postgres "$@"
}
[[ $(psql_in db -d clinic -c 'select count(*) from attachments') == 150 ]] || fail "test database clinic was not initialised"

# --- the backup --------------------------------------------------------------------------
STATUS=
if [[ -z $ONESHOT ]]; then
  step "starting the arca sidecar (arca daemon, schedule every minute)"
  dc up -d arca >"$RUN_DIR/up.log" 2>&1 || { cat "$RUN_DIR/up.log" >&2; fail "docker-compose up (arca) failed"; }
  ADDR=$(dc port arca 9180 | tail -n1)
  [[ $ADDR == 127.0.0.1:* ]] || fail "the sidecar's port 9180 is not published (got '$ADDR')"
  wait_until 60 curl -fsS "http://$ADDR/healthz" || fail "arca daemon: GET /healthz did not answer 200 within 60 s"
  [[ $(curl -fsS "http://$ADDR/healthz") == ok* ]] || fail "arca daemon: /healthz did not say ok"
  step "waiting (up to ${TIMEOUT}s) for /api/status to report a successful backup of policy $POLICY"
  deadline=$((SECONDS + TIMEOUT))
  while :; do
    STATUS=$(curl -fsS "http://$ADDR/api/status" 2>/dev/null) || STATUS=
    if [[ -n $STATUS ]]; then
      jq -e '.format == "arca-status/1"' <<<"$STATUS" >/dev/null ||
        fail "/api/status: format is not arca-status/1: $(head -c 300 <<<"$STATUS")"
      pol=$(jq -c --arg p "$POLICY" '.policies[] | select(.name == $p)' <<<"$STATUS")
      [[ -n $pol ]] || fail "/api/status lists no policy $POLICY"
      if [[ $(jq -r '.lastRun.result // empty' <<<"$pol") == failure ]]; then
        fail "the daemon's backup failed: $(jq -r '.lastRun.error // "no error given"' <<<"$pol")"
      fi
      SNAP=$(jq -r '.lastSuccess.snapshot // empty' <<<"$pol")
      [[ -n $SNAP ]] && break
    fi
    ((SECONDS < deadline)) || fail "no successful backup reported by /api/status within ${TIMEOUT}s (last status: $(head -c 300 <<<"${pol:-$STATUS}"))"
    sleep 2
  done
  step "daemon reports snapshot $SNAP"
  [[ $(jq -r '.lastRun.result' <<<"$pol") == success ]] || fail "/api/status: lastRun.result is not success beside lastSuccess"
  [[ $(jq -r '.lastRun.snapshot' <<<"$pol") == "$SNAP" ]] || fail "/api/status: lastRun.snapshot differs from lastSuccess.snapshot"
  [[ $(jq -r '.withinRpo' <<<"$pol") == true ]] || fail "/api/status: withinRpo is not true right after a successful backup"
  [[ -n $(jq -r '.nextRun // empty' <<<"$pol") ]] || fail "/api/status: nextRun is missing"
  curl -fsS "http://$ADDR/metrics" | grep -q . || fail "arca daemon: GET /metrics is empty"
  # The daemon runs every minute; stop it before the originals are frozen for comparison.
  dc stop -t 30 arca >/dev/null 2>&1 || fail "stopping the arca sidecar failed"
else
  step "one-shot arca backup (ARCA_E2E_ONESHOT)"
  out=$(dc_run 600 arca backup --config /etc/arca/arca.yaml 2>"$RUN_DIR/backup.err") || {
    cat "$RUN_DIR/backup.err" >&2
    fail "arca backup failed: $(arca_error "$RUN_DIR/backup.err")"
  }
  SNAP=$(tail -n1 <<<"$out")
  step "arca backup made snapshot $SNAP"
fi

# --- the cold backup stopped exactly the labelled container and started it again ----------
app_running() { [[ $(docker inspect -f '{{.State.Running}}' "$APP_ID") == true ]]; }
wait_until 60 app_running ||
  fail "the labelled app container is not running again after the backup"
APP_STARTED1=$(docker inspect -f '{{.State.StartedAt}}' "$APP_ID")
[[ $APP_STARTED1 != "$APP_STARTED0" ]] || fail "the labelled app container was not restarted (StartedAt unchanged: $APP_STARTED0)"
events_of() { awk -v s="$1" '$3 == s { print $1, $2 }' "$RUN_DIR/events"; }
# Docker reports "die" when a container stops (by the API or otherwise) and "start" after.
sequence=$(events_of app | awk '$2 == "die" || $2 == "start" { print $2 }' | tr '\n' ' ')
[[ $sequence == "start die start "* ]] ||
  fail "expected the app container to be started, stopped and started again; Docker events: ${sequence:-none}"
if events_of db | grep -q ' die$'; then fail "the unlabelled db container was stopped during the backup"; fi

# --- freeze the originals and restore into fresh targets -----------------------------------
step "stopping the app so the original files are frozen"
dc stop -t 30 app >/dev/null 2>&1 || fail "stopping the app failed"

snapshots_json() { dc_run 300 restore snapshots --config /etc/arca/arca.yaml --json 2>"$RUN_DIR/snapshots.err"; }
SNAPS=$(snapshots_json) || fail "arca snapshots failed: $(arca_error "$RUN_DIR/snapshots.err")"
jq -e --arg s "$SNAP" '[.. | objects | select(.snapshot? == $s)] | length > 0' <<<"$SNAPS" >/dev/null ||
  fail "arca snapshots --json does not list $SNAP"

# The manifest, read straight from the backup volume.
MANIFEST=$(timeout 120 docker run --rm -u 0 -v "${P}_backup:/backup:ro" --entrypoint cat arca-e2e-app:dev "/backup/$POLICY/$SNAP/manifest.json") ||
  fail "no manifest.json for $SNAP in the backup volume"
jq -e '.format == "arca/1" and .quiesced == true' <<<"$MANIFEST" >/dev/null ||
  fail "manifest of $SNAP: format is not arca/1 or quiesced is not true"
FILES_IN_SNAP=$(jq -r '.components[] | select(.name == "dicom") | .items.files' <<<"$MANIFEST")

step "arca verify --snapshot $SNAP"
dc_run 600 restore verify --config /etc/arca/arca.yaml --policy "$POLICY" \
  --snapshot "$SNAP" >"$RUN_DIR/verify.log" 2>&1 ||
  { tail -n 5 "$RUN_DIR/verify.log" >&2; fail "arca verify of $SNAP failed: $(arca_error "$RUN_DIR/verify.log")"; }

step "starting a fresh PostgreSQL (db-restore)"
dc --profile restore up -d db-restore >"$RUN_DIR/up.log" 2>&1 || { cat "$RUN_DIR/up.log" >&2; fail "docker-compose up db-restore failed"; }
wait_until 90 healthy db-restore || fail "the fresh PostgreSQL (db-restore) did not become healthy within 90 s"

step "arca restore $SNAP into db-restore and the fresh volume files-restore"
dc_run 600 restore restore --config /etc/arca/arca.yaml --policy "$POLICY" \
  --snapshot "$SNAP" --to-path /restore --no-safety-backup >"$RUN_DIR/restore.log" 2>&1 ||
  { tail -n 10 "$RUN_DIR/restore.log" >&2; fail "arca restore of $SNAP failed: $(arca_error "$RUN_DIR/restore.log")"; }

# --- compare files ----------------------------------------------------------------------
step "comparing files (sha256, mode, owner, size, mtime)"
# One line per regular file: path sha256 mode uid:gid size mtime (tar keeps whole seconds).
listing() { # $1: volume
  timeout 300 docker run --rm -u 0 -e LC_ALL=C -v "$1:/v:ro" --entrypoint bash arca-e2e-app:dev -c '
    set -euo pipefail; cd /v
    find . -type f -printf "%P %m %U:%G %s %TY%Tm%Td%TH%TM%TS\n" | sed "s/\.[0-9]*$//" | sort >/tmp/meta
    find . -type f -print0 | xargs -0 -r sha256sum | sed "s|  \./| |" | awk "{print \$2, \$1}" | sort >/tmp/sums
    join /tmp/sums /tmp/meta'
}
listing "${P}_app-data" >"$RUN_DIR/original" || fail "listing the original app-data volume failed"
listing "${P}_files-restore" >"$RUN_DIR/restored" || fail "listing the restored volume failed"
n_restored=$(wc -l <"$RUN_DIR/restored")
n_original=$(wc -l <"$RUN_DIR/original")
((n_restored >= 30)) || fail "only $n_restored files were restored (the app wrote 30 before the first backup)"
[[ -z $FILES_IN_SNAP || $FILES_IN_SNAP == null || $FILES_IN_SNAP == "$n_restored" ]] ||
  fail "the manifest counts $FILES_IN_SNAP files in component dicom, the restore produced $n_restored"
# Every restored file is identical to its original...
if ! missing=$(comm -23 "$RUN_DIR/restored" "$RUN_DIR/original") || [[ -n $missing ]]; then
  fail "$(wc -l <<<"$missing") restored file(s) differ from the originals, first: $(head -n1 <<<"$missing")"
fi
# ...and the snapshot is a consistent cut: instances 0..n-1 without gaps, no temp files; the
# originals it lacks are exactly those the app wrote after it was started again.
expected=$(for ((i = 0; i < n_restored; i++)); do printf 'instance-%06d.dcm\n' "$i"; done)
got=$(awk '{ n = split($1, a, "/"); print a[n] }' "$RUN_DIR/restored" | sort)
[[ $got == "$expected" ]] || fail "the restored files are not instances 0..$((n_restored - 1)) without gaps (a torn, non-quiesced copy?)"
newer=$(comm -13 <(awk '{print $1}' "$RUN_DIR/restored") <(awk '{print $1}' "$RUN_DIR/original") |
  awk -F/ -v n="$n_restored" '{ sub(/instance-/, "", $NF); sub(/\.dcm/, "", $NF); if ($NF + 0 < n) print }')
[[ -z $newer ]] || fail "original files missing from the restore: $(head -n1 <<<"$newer")"

# --- compare the database -----------------------------------------------------------------
step "comparing the database (roles, owner, schema, per-table digests)"
DIGEST_SQL="
SELECT 'patients', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM patients t
UNION ALL SELECT 'studies', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM studies t
UNION ALL SELECT 'attachments', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM attachments t
UNION ALL SELECT 'attachments.content', sum(length(content)), md5(string_agg(md5(content), '' ORDER BY id)) FROM attachments
UNION ALL SELECT 'view', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM patient_study_counts t
UNION ALL SELECT 'studies_id_seq', last_value, is_called::text FROM studies_id_seq;"
ROLES_SQL="SELECT rolname, rolcanlogin, rolconnlimit, rolpassword FROM pg_authid WHERE rolname LIKE 'clinic%' ORDER BY 1"
DB_SQL="SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate FROM pg_database WHERE datname = 'clinic'"
db_state() { # $1: service
  psql_in "$1" -d clinic -c "$DIGEST_SQL" && psql_in "$1" -d postgres -c "$ROLES_SQL" -c "$DB_SQL" &&
    # NB: pg_dump >= 15.14 frames its output with \restrict <random key>: not part of the schema.
    dc exec -T "$1" pg_dump -h /tmp -U postgres --schema-only --no-comments clinic | grep -v -e '^--' -e '^\\restrict' -e '^\\unrestrict'
}
db_state db >"$RUN_DIR/db.original" 2>&1 || fail "reading the original database failed: $(tail -n1 "$RUN_DIR/db.original")"
db_state db-restore >"$RUN_DIR/db.restored" 2>&1 || fail "reading the restored database failed: $(tail -n1 "$RUN_DIR/db.restored")"
if ! d=$(diff "$RUN_DIR/db.original" "$RUN_DIR/db.restored"); then
  fail "the restored database differs from the original: $(grep -m1 '^[<>]' <<<"$d")"
fi
grep -q '^attachments.content|' "$RUN_DIR/db.restored" || fail "the database digest query returned nothing"

digests=$(psql_in db-restore -d clinic -c "$DIGEST_SQL" | wc -l)
step "ok"
printf 'compose e2e: ok: snapshot %s (cold, via %s): %d of %d files and %d query digests, roles and schema identical after restore into fresh volumes (%ds)\n' \
  "$SNAP" "$([[ -n $ONESHOT ]] && echo "one-shot arca backup" || echo "arca daemon")" "$n_restored" "$n_original" "$digests" "$((SECONDS - T0))"
