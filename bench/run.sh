#!/usr/bin/env bash
# Arca backup benchmark: `arca backup` against pg_dump, a pg_dump|zstd|age|aws pipeline and
# restic, on one PostgreSQL database and one DICOM-like file tree, all written to the local
# Garage S3 server started by scripts/services.sh.
#
#   bench/run.sh                                                   full scale (~1 GB db, ~2 GB tree)
#   BENCH_PG_SCALE=5 BENCH_FILES=500 BENCH_FILES_MB=100 bench/run.sh   quick run
#
# Environment (all optional):
#   BENCH_DIR         workload and scratch space, outside the repo   (/var/tmp/arca-bench)
#   BENCH_PG_SCALE    pgbench scale of database arca_bench            (50: ~0.75 GB of tables)
#   BENCH_PG_BLOB_MB  MiB of bytea "scanned documents" next to it      (5 x scale)
#   BENCH_FILES       number of DICOM-like files                      (8000)
#   BENCH_FILES_MB    their total size in MiB                         (2048)
#   BENCH_SETTLE      seconds of rest after dropping caches, per run  (3)
#   BENCH_KEEP_S3=1   keep what the runs uploaded (default: removed at the end)
#   BENCH_PREPARE_ONLY=1  generate the workload and stop
#   ARCA_BIN          the arca binary                                 (target/release/arca)
# The workload is generated once and reused while its parameters stay the same. The table
# goes to stdout and to bench/results/latest.md; raw figures stay in $BENCH_DIR/runs/<id>/.
set -euo pipefail

# Where things are: the repository, this folder, the workload and its parameters.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$REPO/bench
BENCH_DIR=${BENCH_DIR:-/var/tmp/arca-bench}
PG_SCALE=${BENCH_PG_SCALE:-50}
PG_BLOB_MB=${BENCH_PG_BLOB_MB:-$((PG_SCALE * 5))}
N_FILES=${BENCH_FILES:-8000}
FILES_MB=${BENCH_FILES_MB:-2048}
SETTLE=${BENCH_SETTLE:-3}
ARCA=${ARCA_BIN:-$REPO/target/release/arca}
AWS=/usr/bin/aws
DB=arca_bench
T_START=$(date +%s)

# One-line failure and progress helpers.
die() { echo "bench: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*" >&2; }

# Start (or reuse) PostgreSQL and Garage; the last line printed is the env file to source.
step "services"
ENV_FILE=$("$REPO/scripts/services.sh" up | tee /dev/stderr | tail -n1)
# shellcheck disable=SC1090
source "$ENV_FILE"
SVC_DIR=$(dirname "$ENV_FILE")

# Check the tools; install the missing ones from Debian's packages (GNU time, restic, the AWS CLI).
missing=()
[[ -x /usr/bin/time ]] || missing+=(time)
[[ -x $AWS ]] || missing+=(awscli)
for t in age zstd restic; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 || die "cannot install ${missing[*]}"
fi
for t in age zstd restic tar python3 "$AWS"; do command -v "$t" >/dev/null || die "$t is not installed"; done
[[ -x $ARCA ]] || die "no arca binary at $ARCA: run cargo build --release -p arca"
# Say so when the binary is older than the sources (the figures would not be those of the checkout).
ARCA_BUILT=$(date -u -r "$ARCA" '+%Y-%m-%d %H:%M UTC')
STALE=$(find "$REPO/api" "$REPO/sidecar" "$REPO/Cargo.lock" -newer "$ARCA" -type f -name '*.rs' -o -newer "$ARCA" -name Cargo.lock | head -n1)
[[ -z $STALE ]] || echo "bench: WARNING: $ARCA is older than $STALE; rebuild with cargo build --release -p arca" >&2

# A run id, its scratch folder and its S3 prefix (every measurement gets a fresh sub-prefix).
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)-$$
RUN=$BENCH_DIR/runs/$RUN_ID
PREFIX=bench/$RUN_ID
BUCKET=$ARCA_TEST_S3_BUCKET
EP=$ARCA_TEST_S3_ENDPOINT
mkdir -p "$RUN"
# Freeze the arca binary for this run, so a rebuild in the middle cannot swap it.
cp "$ARCA" "$RUN/arca" && ARCA=$RUN/arca

# PostgreSQL client settings: the password goes through a pgpass file, never argv.
export PGHOST=$ARCA_TEST_PG_HOST PGPORT=$ARCA_TEST_PG_PORT PGUSER=$ARCA_TEST_PG_USER PGPASSFILE=$RUN/pgpass
(umask 077 && printf '%s:%s:*:%s:%s\n' "$PGHOST" "$PGPORT" "$PGUSER" "$(cat "$ARCA_TEST_PG_PASSWORD_FILE")" >"$PGPASSFILE")
PG_MAJOR=$(psql -Atqd postgres -c 'show server_version_num' | awk '{print int($1 / 10000)}')
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
[[ -x $PGBIN/pg_dump ]] || die "no pg_dump for PostgreSQL $PG_MAJOR in $PGBIN"

# S3 client settings for aws and restic: credentials via env, Garage's region, path-style URLs.
AWS_ACCESS_KEY_ID=$(cat "$ARCA_TEST_S3_ACCESS_KEY_ID_FILE")
AWS_SECRET_ACCESS_KEY=$(cat "$ARCA_TEST_S3_SECRET_ACCESS_KEY_FILE")
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=$ARCA_TEST_S3_REGION AWS_CONFIG_FILE=$RUN/aws-config
printf '[default]\ns3 =\n  addressing_style = path\n' >"$AWS_CONFIG_FILE"
s3() { "$AWS" --endpoint-url "$EP" s3 "$@"; }
RESTIC_OPTS=(-o "s3.region=$ARCA_TEST_S3_REGION" -o s3.bucket-lookup=path)

# Databases made by the restore runs (dropped at the end).
R_DBS=()
# Remove what this run uploaded and its scratch files on any exit; the workload stays.
cleanup() {
  local d; for d in "${R_DBS[@]}"; do psql -qd postgres -c "drop database if exists $d" >/dev/null 2>&1 || true; done
  rm -f "$RUN"/*.pgdump; rm -rf "$RUN"/restic-cache-* "$RUN/restore"
  rm -f "$PGPASSFILE"
  [[ ${BENCH_KEEP_S3:-0} == 1 ]] || s3 rm --recursive --quiet "s3://$BUCKET/$PREFIX/" >/dev/null 2>&1 ||
    echo "bench: could not remove s3://$BUCKET/$PREFIX/" >&2
}
trap cleanup EXIT

# One age identity and one restic password for every run, kept next to the workload.
KEYS=$BENCH_DIR/keys
install -d -m 0700 "$KEYS"
[[ -s $KEYS/age-identity ]] || "$ARCA" keygen --output "$KEYS/age-identity" 2>/dev/null >"$KEYS/age-recipient"
RECIPIENT=$(tail -n1 "$KEYS/age-recipient")
[[ $RECIPIENT == age1* ]] || die "no age recipient in $KEYS/age-recipient"
[[ -s $KEYS/restic-password ]] || (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$KEYS/restic-password")
export RESTIC_PASSWORD_FILE=$KEYS/restic-password
# arca restore reads the identity from here (the configs hold only the recipient).
export ARCA_AGE_IDENTITY_FILE=$KEYS/age-identity

# Workload 1 (once): pgbench tables at the chosen scale plus a bytea table of "scanned documents"
# (1/3 repetitive, 2/3 random, 24 KiB each); a marker table records the parameters so a change regenerates.
step "workload: database $DB"
WANT_PG="v1 scale=$PG_SCALE blob_mb=$PG_BLOB_MB"
HAVE_PG=$(psql -Atqd "$DB" -c 'select params from arca_bench_meta' 2>/dev/null || true)
if [[ $HAVE_PG != "$WANT_PG" ]]; then
  N_DOCS=$((PG_BLOB_MB * 1024 / 24))
  psql -qd postgres -v ON_ERROR_STOP=1 -c "drop database if exists $DB" -c "create database $DB"
  "$PGBIN/pgbench" -i -q -I dtGvp -s "$PG_SCALE" "$DB" >&2
  psql -qd "$DB" -v ON_ERROR_STOP=1 >&2 <<SQL
create table clinical_document (
  id bigint primary key, patient_id int not null, created_at timestamptz not null,
  kind text not null, title text not null, body bytea not null);
insert into clinical_document
select i, 1 + (i * 7919) % 100000, now() - i * interval '37 min',
       (array['letter','report','lab','scan'])[1 + i % 4],
       'Document ' || i || ' for patient ' || (1 + (i * 7919) % 100000),
       decode(repeat(md5(i::text), 512)
              || (select string_agg(md5(i::text || g || random()::text), '') from generate_series(1, 1024) g), 'hex')
from generate_series(1, $N_DOCS) i;
vacuum analyze;
checkpoint;
create table arca_bench_meta (params text);
insert into arca_bench_meta values ('$WANT_PG');
SQL
fi
DB_BYTES=$(psql -Atqd "$DB" -c 'select pg_database_size(current_database())')
echo "database $DB: $((DB_BYTES / 1048576)) MiB" >&2

# Workload 2 (once): the DICOM-like tree, one folder per parameter set.
step "workload: file tree"
TREE=$BENCH_DIR/tree-$N_FILES-$FILES_MB
[[ -d $TREE ]] || python3 "$BENCH/gen_dicom.py" "$TREE" "$N_FILES" "$FILES_MB" >&2
TREE_BYTES=$(du -sb "$TREE" | cut -f1)
echo "tree $TREE: $N_FILES files, $((TREE_BYTES / 1048576)) MiB" >&2
# With BENCH_PREPARE_ONLY=1, stop here: the workload is ready for a later run on an idle machine.
[[ ${BENCH_PREPARE_ONLY:-0} != 1 ]] || { echo "workload ready; no measurements (BENCH_PREPARE_ONLY=1)" >&2; exit 0; }

# Arca config for one component written to its own prefix: arca_config NAME COMPONENT_YAML.
arca_config() {
  cat >"$RUN/$1.yaml" <<EOF
policies:
  - name: bench
    encryption: {ageRecipients: ["$RECIPIENT"]}
    components:
      - $2
    destinations:
      - name: s3
        s3: {endpoint: "$EP", region: $ARCA_TEST_S3_REGION, bucket: $BUCKET, prefix: $PREFIX/$1, pathStyle: true,
             accessKeyIdFile: $ARCA_TEST_S3_ACCESS_KEY_ID_FILE, secretAccessKeyFile: $ARCA_TEST_S3_SECRET_ACCESS_KEY_FILE}
EOF
}

# CPU ticks (own + reaped children) of a server process, from its pid file; 0 when unknown.
PG_PIDFILE=$SVC_DIR/postgres/postmaster.pid
GARAGE_PIDFILE=$SVC_DIR/garage.pid
server_ticks() {
  local pid; pid=$(head -n1 "$1" 2>/dev/null) || { echo 0; return; }
  awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0
}
HZ=$(getconf CLK_TCK)
# Busy CPU ticks of the whole machine (all cores; idle and iowait excluded), from /proc/stat.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# Flush and drop the page cache (ignored where not allowed), then let the servers go idle.
DROPPED=no
settle() {
  sync
  if echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then DROPPED=yes; else DROPPED=no; fi
  sleep "$SETTLE"
}

# measure ID WORKLOAD LABEL CMD...: settle, run CMD under GNU time, keep stdout/stderr in $RUN.
# Sets M_RC M_WALL M_USER M_SYS M_RSS (KiB, largest single process) M_PGCPU M_GCPU (server seconds)
# and M_OTHER: CPU seconds the machine spent on anything else (other users' load disturbs the run).
measure() {
  local id=$1; shift 3
  step "run $id"
  settle
  local pg0 g0 m0
  pg0=$(server_ticks "$PG_PIDFILE"); g0=$(server_ticks "$GARAGE_PIDFILE"); m0=$(machine_ticks)
  M_RC=0
  /usr/bin/time -f '%e %U %S %M' -o "$RUN/$id.time" "$@" >"$RUN/$id.out" 2>"$RUN/$id.err" || M_RC=$?
  local m1; m1=$(machine_ticks)
  sleep 1 # postgres reaps the dump's backend, so its CPU shows in the postmaster's children time
  read -r M_WALL M_USER M_SYS M_RSS < <(tail -n1 "$RUN/$id.time")
  M_PGCPU=$(awk -v a="$pg0" -v b="$(server_ticks "$PG_PIDFILE")" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
  M_GCPU=$(awk -v a="$g0" -v b="$(server_ticks "$GARAGE_PIDFILE")" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
  M_OTHER=$(awk -v a="$m0" -v b="$m1" -v hz="$HZ" -v u="$M_USER" -v s="$M_SYS" -v p="$M_PGCPU" -v g="$M_GCPU" \
    'BEGIN { o = (b - a) / hz - u - s - p - g; printf "%.2f", o < 0 ? 0 : o }')
  if ((M_RC != 0)); then
    echo "bench: $id failed with status $M_RC; last lines of $RUN/$id.err:" >&2
    tail -n 5 "$RUN/$id.err" >&2
  fi
  echo "$id: wall ${M_WALL}s cpu $(awk -v u="$M_USER" -v s="$M_SYS" 'BEGIN { print u + s }')s rss $((M_RSS / 1024)) MiB" >&2
}

# row ID WORKLOAD LABEL STORED_BYTES INPUT_BYTES: one line of results.tsv from the last measure.
RESULTS=$RUN/results.tsv
printf 'id\tworkload\tlabel\trc\twall_s\tuser_s\tsys_s\tmaxrss_kib\tpg_cpu_s\tgarage_cpu_s\tother_cpu_s\tstored_bytes\tinput_bytes\n' >"$RESULTS"
row() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$M_RC" "$M_WALL" "$M_USER" "$M_SYS" \
    "$M_RSS" "$M_PGCPU" "$M_GCPU" "$M_OTHER" "$4" "$5" >>"$RESULTS"
}

# Bytes stored under an S3 prefix (objects' total from the listing; 0 when empty).
s3_size() { s3 ls --recursive --summarize "s3://$BUCKET/$PREFIX/$1/" | awk '/Total Size:/ { print $3 } END { if (!NR) print 0 }'; }

# plainSize of the single component in the manifest of arca run ID (snapshot id = last stdout line).
arca_plain() {
  local snap; snap=$(tail -n1 "$RUN/$1.out")
  s3 cp "s3://$BUCKET/$PREFIX/$1/bench/$snap/manifest.json" - 2>/dev/null |
    python3 -c 'import json,sys; print(sum(c["plainSize"] for c in json.load(sys.stdin)["components"]))' || echo 0
}

# A fresh restic repository under the run's prefix: restic_init NAME (prints the repo URL).
restic_init() {
  local repo="s3:$EP/$BUCKET/$PREFIX/$1"
  restic -r "$repo" "${RESTIC_OPTS[@]}" init >"$RUN/$1.init" 2>&1 || { cat "$RUN/$1.init" >&2; die "restic init failed"; }
  echo "$repo"
}

# Quoted pieces for the pipelines run under bash -c.
printf -v Q_DUMP '%q -Fc -Z0 %q' "$PGBIN/pg_dump" "$DB"
printf -v Q_SEAL 'zstd -3 -T0 -q | age -r %q' "$RECIPIENT"
printf -v Q_PUT '%q --endpoint-url %q s3 cp --only-show-errors -' "$AWS" "$EP"

# --- PostgreSQL ------------------------------------------------------------------------------
# a. arca backup of the postgres component to S3.
arca_config pg-arca "{name: db, postgres: {host: $PGHOST, port: $PGPORT, user: $PGUSER, passwordFile: $ARCA_TEST_PG_PASSWORD_FILE, database: $DB}}"
measure pg-arca pg "arca backup" "$ARCA" backup --config "$RUN/pg-arca.yaml"
PG_PLAIN=$(arca_plain pg-arca)
row pg-arca pg "arca backup (postgres → S3)" "$(s3_size pg-arca)" "$PG_PLAIN"

# b. Baseline: pg_dump -Fc with its default compression to a local file.
measure pg-dump pg "pg_dump" "$PGBIN/pg_dump" -Fc -f "$RUN/dump.pgdump" "$DB"
row pg-dump pg "pg_dump -Fc → local file (baseline)" "$(stat -c %s "$RUN/dump.pgdump" 2>/dev/null || echo 0)" "$PG_PLAIN"
rm -f "$RUN/dump.pgdump"

# c. The shell pipeline pg_dump -Z0 | zstd | age | aws s3 cp.
measure pg-pipe pg "pipeline" bash -c "set -o pipefail; $Q_DUMP | $Q_SEAL | $Q_PUT s3://$BUCKET/$PREFIX/pg-pipe/$DB.pgdump.zst.age"
row pg-pipe pg "pg_dump -Z0 | zstd -3 | age | aws s3 cp" "$(s3_size pg-pipe)" "$PG_PLAIN"

# d. restic backup --stdin of pg_dump -Z0 into a fresh repository (init not timed).
REPO_PG=$(restic_init pg-restic)
printf -v Q_RESTIC 'restic -r %q %s--cache-dir %q backup --stdin --stdin-filename %q' \
  "$REPO_PG" "$(printf '%q ' "${RESTIC_OPTS[@]}")" "$RUN/restic-cache-pg" "$DB.pgdump"
measure pg-restic pg "restic" bash -c "set -o pipefail; $Q_DUMP | $Q_RESTIC"
row pg-restic pg "pg_dump -Z0 | restic backup --stdin" "$(s3_size pg-restic)" "$PG_PLAIN"

# --- File tree -------------------------------------------------------------------------------
# e. arca backup of the files component to S3.
arca_config tree-arca "{name: tree, files: {path: $TREE}}"
measure tree-arca tree "arca backup" "$ARCA" backup --config "$RUN/tree-arca.yaml"
TREE_PLAIN=$(arca_plain tree-arca)
row tree-arca tree "arca backup (files → S3)" "$(s3_size tree-arca)" "$TREE_PLAIN"

# f. The shell pipeline tar | zstd | age | aws s3 cp.
printf -v Q_TAR 'tar -C %q -cf - .' "$TREE"
measure tree-pipe tree "pipeline" bash -c "set -o pipefail; $Q_TAR | $Q_SEAL | $Q_PUT s3://$BUCKET/$PREFIX/tree-pipe/tree.tar.zst.age"
row tree-pipe tree "tar | zstd -3 | age | aws s3 cp" "$(s3_size tree-pipe)" "$TREE_PLAIN"

# g. restic backup (first backup) of the same tree into a fresh repository (init not timed).
REPO_TREE=$(restic_init tree-restic)
measure tree-restic tree "restic" restic -r "$REPO_TREE" "${RESTIC_OPTS[@]}" --cache-dir "$RUN/restic-cache-tree" backup "$TREE"
row tree-restic tree "restic backup (first)" "$(s3_size tree-restic)" "$TREE_PLAIN"

# --- Restore ---------------------------------------------------------------------------------
# Each restore goes into a fresh database / folder, from the snapshots made above; the restored
# row and file counts are compared with the source, so a fast but wrong restore cannot pass.
fresh_db() { psql -qd postgres -v ON_ERROR_STOP=1 -c "drop database if exists $1" >/dev/null; R_DBS+=("$1"); }
# Rows of the two big tables: "accounts documents".
pg_rows() { psql -Atqd "$1" -c 'select (select count(*) from pgbench_accounts) || $$ $$ || (select count(*) from clinical_document)' 2>/dev/null || echo "missing"; }
tree_count() { find "$1" -type f 2>/dev/null | wc -l; }
SRC_ROWS=$(pg_rows "$DB")
check_pg() { local got; got=$(pg_rows "$1"); [[ $got == "$SRC_ROWS" ]] || { echo "bench: $1 restored rows '$got', source '$SRC_ROWS'" >&2; M_RC=99; }; }
check_tree() { local got; got=$(tree_count "$1"); [[ $got == "$N_FILES" ]] || { echo "bench: $1 holds $got files, the source $N_FILES" >&2; M_RC=99; }; }

# h. Baseline: pg_restore -j2 from a local uncompressed custom-format dump (dumped untimed).
"$PGBIN/pg_dump" -Fc -Z0 -f "$RUN/plain.pgdump" "$DB"
PLAIN_BYTES=$(stat -c %s "$RUN/plain.pgdump")
fresh_db r_local && psql -qd postgres -c "create database r_local" >/dev/null
measure pgr-local pg "pg_restore" "$PGBIN/pg_restore" -j2 --exit-on-error -d r_local "$RUN/plain.pgdump"
check_pg r_local
row pgr-local pg "pg_restore -j2 ← local uncompressed dump (baseline)" "$PLAIN_BYTES" "$PLAIN_BYTES"
rm -f "$RUN/plain.pgdump"

# i. arca restore of the postgres snapshot from S3 into a new database (arca creates it).
fresh_db r_arca
measure pgr-arca pg "arca restore" "$ARCA" restore --config "$RUN/pg-arca.yaml" --snapshot latest --to-database r_arca
check_pg r_arca
row pgr-arca pg "arca restore (S3 → postgres, new database)" "$(s3_size pg-arca)" "$PG_PLAIN"

# j. The shell pipeline aws s3 cp | age -d | zstd -d | pg_restore (a stream: one job).
fresh_db r_pipe && psql -qd postgres -c "create database r_pipe" >/dev/null
printf -v Q_GET '%q --endpoint-url %q s3 cp --only-show-errors' "$AWS" "$EP"
printf -v Q_OPEN 'age -d -i %q | zstd -d -q' "$KEYS/age-identity"
measure pgr-pipe pg "pipeline" bash -c "set -o pipefail; $Q_GET s3://$BUCKET/$PREFIX/pg-pipe/$DB.pgdump.zst.age - | $Q_OPEN | $(printf '%q' "$PGBIN/pg_restore") --exit-on-error -d r_pipe"
check_pg r_pipe
row pgr-pipe pg "aws s3 cp | age -d | zstd -d | pg_restore" "$(s3_size pg-pipe)" "$PG_PLAIN"

# k. restic dump | pg_restore (a stream: one job).
fresh_db r_restic && psql -qd postgres -c "create database r_restic" >/dev/null
printf -v Q_RDUMP 'restic -r %q %s--cache-dir %q dump latest %q' \
  "$REPO_PG" "$(printf '%q ' "${RESTIC_OPTS[@]}")" "$RUN/restic-cache-pg" "/$DB.pgdump"
measure pgr-restic pg "restic" bash -c "set -o pipefail; $Q_RDUMP | $(printf '%q' "$PGBIN/pg_restore") --exit-on-error -d r_restic"
check_pg r_restic
row pgr-restic pg "restic dump | pg_restore" "$(s3_size pg-restic)" "$PG_PLAIN"

# l. arca restore of the tree snapshot into a new folder.
RT=$RUN/restore
rm -rf "$RT" && mkdir -p "$RT"
measure treer-arca tree "arca restore" "$ARCA" restore --config "$RUN/tree-arca.yaml" --snapshot latest --to-path "$RT/arca"
check_tree "$RT/arca"
row treer-arca tree "arca restore (S3 → folder)" "$(s3_size tree-arca)" "$TREE_PLAIN"
rm -rf "$RT/arca"

# m. aws s3 cp | age -d | zstd -d | tar -x.
mkdir -p "$RT/pipe"
measure treer-pipe tree "pipeline" bash -c "set -o pipefail; $Q_GET s3://$BUCKET/$PREFIX/tree-pipe/tree.tar.zst.age - | $Q_OPEN | tar -x -p -C $(printf '%q' "$RT/pipe")"
check_tree "$RT/pipe"
row treer-pipe tree "aws s3 cp | age -d | zstd -d | tar -x" "$(s3_size tree-pipe)" "$TREE_PLAIN"
rm -rf "$RT/pipe"

# n. restic restore.
measure treer-restic tree "restic" restic -r "$REPO_TREE" "${RESTIC_OPTS[@]}" --cache-dir "$RUN/restic-cache-tree" restore latest --target "$RT/restic"
check_tree "$RT/restic"
row treer-restic tree "restic restore" "$(s3_size tree-restic)" "$TREE_PLAIN"
rm -rf "$RT"

# Machine, versions and parameters for the report.
step "report"
cat >"$RUN/meta.env" <<EOF
cores=$(nproc)
date=$(date -u '+%Y-%m-%d %H:%M UTC')
machine=$(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)
arca=$("$ARCA" --version 2>&1 | head -n1), binary built $ARCA_BUILT, checkout $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" status --porcelain -- api sidecar Cargo.toml Cargo.lock | grep -q . && echo ' + uncommitted changes' || true)${STALE:+ (WARNING: binary older than the sources)}
pg_dump=$("$PGBIN/pg_dump" --version)
server=PostgreSQL $(psql -Atqd postgres -c 'show server_version')
zstd=$(zstd --version | sed 's/^\*\** *//; s/ *\**$//')
age=age $(age --version)
restic=$(restic version | head -n1)
aws=$("$AWS" --version 2>&1 | cut -d' ' -f1)
s3=Garage ($(garage --version 2>/dev/null || "$HOME/.cargo/bin/garage" --version 2>/dev/null || echo '?')) on $EP, same machine
database=$DB: pgbench scale $PG_SCALE + $PG_BLOB_MB MiB bytea, $((DB_BYTES / 1048576)) MiB on disk
tree=$N_FILES DICOM-like files, $((TREE_BYTES / 1048576)) MiB
caches=page cache dropped before each run: $DROPPED; ${SETTLE}s rest before each run
duration=$(($(date +%s) - T_START))
EOF
mkdir -p "$BENCH/results"
python3 "$BENCH/report.py" "$RESULTS" "$RUN/meta.env" "$BENCH/results/latest.md"
echo "raw figures: $RUN" >&2
