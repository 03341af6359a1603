#!/usr/bin/env bash
# Local test services for Arca's integration tests: PostgreSQL, MariaDB and Garage (S3),
# all on 127.0.0.1 with data, logs, secrets and pid files under one directory.
#   scripts/services.sh up     install what is missing, start (or reuse) all three, write $DIR/env
#   scripts/services.sh down   stop the three services, keep their data
# Needs root (apt-get, and running postgres/mariadbd as their own system users).
set -euo pipefail

DIR="${ARCA_SERVICES_DIR:-/tmp/arca-services}"
PG_PORT=55432 MY_PORT=53306 S3_PORT=53900 RPC_PORT=53901 ADMIN_PORT=53903
BUCKET=arca-test

die() { echo "services.sh: $*" >&2; exit 1; }
# A service failed: show the end of its log, then one clear line.
fail() { echo "----- tail of $2 -----" >&2; tail -n 30 "$2" >&2 || true; die "$1 (log: $2)"; }
# Random secret as hex: safe inside SQL, TOML and URLs without quoting.
rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
# Secrets are written 0600 with no trailing newline.
write_secret() { (umask 077 && printf '%s' "$2" >"$1"); }
# Poll a readiness command once a second, up to $1 seconds.
wait_for() { local n=$1; shift; until "$@" >/dev/null 2>&1; do ((n-- > 0)) || return 1; sleep 1; done; }
# True when the pid in the first line of file $1 is a live process named $2 (guards against reused pids).
alive() { [[ -s $1 ]] && [[ $(cat "/proc/$(head -n1 "$1")/comm" 2>/dev/null) == "$2" ]]; }

GARAGE_CONF="$DIR/garage.toml"
garage_cli() { "$GARAGE" -c "$GARAGE_CONF" "$@"; }

install_missing() {
  # Map each needed command to the Debian package that ships it; install only the missing ones.
  local -A pkg=([psql]=postgresql [mariadbd]=mariadb-server [mariadb]=mariadb-client
    [sqlite3]=sqlite3 [age]=age [zstd]=zstd [curl]=curl)
  # Compose e2e (e2e/compose/run.sh): debootstrap builds the base image, jq reads /api/status.
  pkg[debootstrap]=debootstrap pkg[jq]=jq
  local missing=() cmd
  for cmd in "${!pkg[@]}"; do
    command -v "$cmd" >/dev/null || [[ -x /usr/sbin/$cmd ]] || missing+=("${pkg[$cmd]}")
  done
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
  # Orthanc end-to-end test: the DICOM server (the test starts its own instance, never this
  # script) and dcmtk's dump2dcm to make DICOM files; curl is in the map above.
  [[ -x /usr/sbin/Orthanc ]] || missing+=(orthanc)
  command -v dump2dcm >/dev/null || missing+=(dcmtk)
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
  # Garage is not in Debian: build it from crates.io once, reuse any binary found afterwards.
  GARAGE=$(command -v garage || true)
  [[ -n $GARAGE ]] || { [[ -x $HOME/.cargo/bin/garage ]] && GARAGE=$HOME/.cargo/bin/garage; } || true
  if [[ -z $GARAGE ]]; then
    command -v cargo >/dev/null || die "garage is missing and there is no cargo to build it"
    echo "building garage with cargo install (takes ~15 minutes)"
    cargo install --locked garage
    GARAGE=$HOME/.cargo/bin/garage
  fi
}

postgres_up() {
  local bin data=$DIR/postgres log=$DIR/postgres.log major
  # Newest installed PostgreSQL major.
  bin=$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  major=$(basename "$(dirname "$bin")")
  pg_ready() { PGPASSWORD=$(cat "$DIR/pg-password") "$bin/psql" -h 127.0.0.1 -p $PG_PORT -U postgres -Atqc 'select 1' postgres; }
  # Reuse a running instance that answers with our password and has TLS on.
  if alive "$data/postmaster.pid" postgres && [[ -s $DIR/pg-password ]] && pg_ready >/dev/null 2>&1 &&
    [[ $(PGPASSWORD=$(cat "$DIR/pg-password") "$bin/psql" -h 127.0.0.1 -p $PG_PORT -U postgres -Atqc 'show ssl' postgres 2>/dev/null) == on ]]; then
    echo "postgres: reusing running instance"; return
  fi
  # Stop a leftover that does not answer properly before touching its data dir.
  alive "$data/postmaster.pid" postgres && stop_pid postgres postgres "$data/postmaster.pid" INT
  # (Re)initialise unless a complete data dir of this major and its password are there.
  if [[ $(cat "$data/PG_VERSION" 2>/dev/null) != "$major" || ! -s $DIR/pg-password ]]; then
    echo "postgres: initdb ($major)"
    rm -rf "$data" "$DIR/pg-password"
    install -d -m 0700 -o postgres -g postgres "$data"
    local pw; pw=$(rand_hex 16)
    # initdb runs as postgres, so it reads the password from a file that user owns, removed right after.
    (umask 077 && printf '%s' "$pw" >"$DIR/.pg-pwfile") && chown postgres "$DIR/.pg-pwfile"
    runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres --pwfile="$DIR/.pg-pwfile" \
      --auth-local=peer --auth-host=scram-sha-256 >"$log" 2>&1 || { rm -f "$DIR/.pg-pwfile"; fail "postgres: initdb failed" "$log"; }
    rm -f "$DIR/.pg-pwfile"
    write_secret "$DIR/pg-password" "$pw"
  fi
  postgres_tls "$data"
  # Start on loopback only, with TLS and the unix socket inside the data dir; pg_ctl -w waits for startup.
  touch "$log" && chown postgres "$log"
  runuser -u postgres -- setsid "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $data -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key" \
    start >/dev/null || fail "postgres: failed to start" "$log"
  wait_for 30 "$bin/pg_isready" -h 127.0.0.1 -p $PG_PORT || fail "postgres: not answering on 127.0.0.1:$PG_PORT" "$log"
  pg_ready >/dev/null 2>&1 || fail "postgres: password login over TCP failed" "$log"
  echo "postgres: up on 127.0.0.1:$PG_PORT"
}

# TLS for the PostgreSQL TLS tests (made once per data dir): a test CA ($DIR/pg-ca.crt) signs
# the server's certificate for 127.0.0.1 and localhost, and the role arca_tls may only log in
# over TLS (the tests create the role).
postgres_tls() {
  local data=$1 t=$DIR/tls
  if [[ ! -s $data/server.crt || ! -s $DIR/pg-ca.crt ]]; then
    command -v openssl >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl; }
    rm -rf "$t" && mkdir -p "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=arca test CA" \
      -keyout "$t/ca.key" -out "$t/ca.crt" 2>/dev/null || die "postgres: cannot make the test CA"
    openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$t/ext"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial -days 3650 \
      -extfile "$t/ext" -out "$t/server.crt" 2>/dev/null || die "postgres: cannot sign the test server certificate"
    install -m 0600 -o postgres -g postgres "$t/server.key" "$data/server.key"
    install -m 0644 -o postgres -g postgres "$t/server.crt" "$data/server.crt"
    install -m 0644 "$t/ca.crt" "$DIR/pg-ca.crt"
    rm -rf "$t"
  fi
  grep -q 'arca_tls' "$data/pg_hba.conf" || sed -i '1i hostnossl all arca_tls 0.0.0.0/0 reject' "$data/pg_hba.conf"
}

mariadb_up() {
  local data=$DIR/mariadb log=$DIR/mariadb.log sock=$DIR/mariadb/mariadb.sock pid=$DIR/mariadb/mariadb.pid
  my_ready() { MYSQL_PWD=$(cat "$DIR/my-password") mariadb -h 127.0.0.1 -P $MY_PORT -u root -Ne 'select 1'; }
  # Reuse a running instance that answers with our password.
  if alive "$pid" mariadbd && [[ -s $DIR/my-password ]] && my_ready >/dev/null 2>&1; then
    echo "mariadb: reusing running instance"; return
  fi
  # Stop a leftover that does not answer properly before touching its data dir.
  alive "$pid" mariadbd && stop_pid mariadb mariadbd "$pid"
  # (Re)initialise unless a complete data dir and its password are there.
  local fresh=
  if [[ ! -d $data/mysql || ! -s $DIR/my-password ]]; then
    echo "mariadb: mariadb-install-db"
    rm -rf "$data" "$DIR/my-password"
    install -d -m 0750 -o mysql -g mysql "$data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$data" --auth-root-authentication-method=socket \
      --skip-test-db >"$log" 2>&1 || fail "mariadb: mariadb-install-db failed" "$log"
    fresh=1
  fi
  # Start on loopback only, without name resolution so root@127.0.0.1 matches TCP logins.
  touch "$log" && chown mysql "$log"
  setsid "$(command -v mariadbd || echo /usr/sbin/mariadbd)" --no-defaults --user=mysql --datadir="$data" \
    --socket="$sock" --pid-file="$pid" --log-error="$log" --bind-address=127.0.0.1 --port=$MY_PORT \
    --skip-name-resolve </dev/null >>"$log" 2>&1 &
  wait_for 60 mariadb-admin --socket="$sock" -u root ping || fail "mariadb: not answering on $sock" "$log"
  if [[ -n $fresh ]]; then
    # root keeps socket auth locally and gets a password, also for TCP from 127.0.0.1.
    local pw; pw=$(rand_hex 16)
    mariadb --socket="$sock" -u root -e "
      ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('$pw');
      CREATE USER root@'127.0.0.1' IDENTIFIED BY '$pw';
      GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;" || fail "mariadb: setting root password failed" "$log"
    write_secret "$DIR/my-password" "$pw"
  fi
  wait_for 30 my_ready || fail "mariadb: password login over TCP failed on 127.0.0.1:$MY_PORT" "$log"
  echo "mariadb: up on 127.0.0.1:$MY_PORT"
}

garage_up() {
  local log=$DIR/garage.log pid=$DIR/garage.pid
  # A fresh node needs a config with its own rpc secret and admin token; the config is kept across restarts.
  if [[ ! -s $GARAGE_CONF ]]; then
    echo "garage: new node"
    rm -rf "$DIR/garage" "$DIR/s3-access-key-id" "$DIR/s3-secret-access-key"
    (umask 077 && cat >"$GARAGE_CONF" <<EOF
metadata_dir = "$DIR/garage/meta"
data_dir = "$DIR/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(rand_hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3_PORT"

[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
admin_token = "$(rand_hex 32)"
EOF
    )
  fi
  # Start unless a running instance answers on RPC and on S3 (any HTTP reply, even 403).
  if alive "$pid" garage && garage_cli status >/dev/null 2>&1 && curl -so /dev/null -m 3 "http://127.0.0.1:$S3_PORT/"; then
    echo "garage: reusing running instance"
  else
    alive "$pid" garage && stop_pid garage garage "$pid"
    NO_COLOR=1 setsid "$GARAGE" -c "$GARAGE_CONF" server </dev/null >>"$log" 2>&1 &
    echo $! >"$pid"
    wait_for 60 garage_cli status || fail "garage: not answering on 127.0.0.1:$RPC_PORT" "$log"
  fi
  # One node in zone dc1 holds everything; the layout is applied once (version 0 means none yet).
  if garage_cli layout show 2>/dev/null | grep -q 'Current cluster layout version: 0'; then
    garage_cli layout assign -z dc1 -c 1G "$(garage_cli node id -q | cut -d@ -f1)" >/dev/null
    garage_cli layout apply --version 1 >/dev/null || fail "garage: layout apply failed" "$log"
  fi
  # The admin API's /health turns 200 once the layout is live.
  wait_for 60 curl -fsS "http://127.0.0.1:$ADMIN_PORT/health" || fail "garage: not healthy" "$log"
  # The key is created once and reused while garage still knows it.
  if ! { [[ -s $DIR/s3-access-key-id ]] && garage_cli key info "$(cat "$DIR/s3-access-key-id")" >/dev/null 2>&1; }; then
    local out; out=$(garage_cli key create arca-test-key) || fail "garage: key create failed" "$log"
    write_secret "$DIR/s3-access-key-id" "$(awk '/^Key ID:/ {print $3}' <<<"$out")"
    [[ -s $DIR/s3-access-key-id ]] || fail "garage: no key ID in 'garage key create' output" "$log"
    write_secret "$DIR/s3-secret-access-key" "$(garage_cli key info "$(cat "$DIR/s3-access-key-id")" --secret-key)"
  fi
  # Bucket and its grant are idempotent.
  garage_cli bucket info $BUCKET >/dev/null 2>&1 || garage_cli bucket create $BUCKET >/dev/null
  garage_cli bucket allow --read --write --owner $BUCKET --key "$(cat "$DIR/s3-access-key-id")" >/dev/null \
    || fail "garage: bucket allow failed" "$log"
  # Real signed ListObjectsV2 with the key (secret via curl's stdin config, not argv): S3, key and grant all work.
  s3_ready() { printf 'user = "%s:%s"\n' "$(cat "$DIR/s3-access-key-id")" "$(cat "$DIR/s3-secret-access-key")" |
    curl -K - -fsS -m 5 --aws-sigv4 aws:amz:garage:s3 -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
      "http://127.0.0.1:$S3_PORT/$BUCKET?list-type=2" | grep -q '<ListBucketResult'; }
  wait_for 30 s3_ready || fail "garage: signed S3 request to bucket $BUCKET on 127.0.0.1:$S3_PORT failed" "$log"
  echo "garage: up, S3 on http://127.0.0.1:$S3_PORT"
}

# Stop service $1 (process name $2) by its pid file $3 and wait (bounded) until it is gone.
stop_pid() {
  local name=$1 comm=$2 file=$3 sig=${4:-TERM} p
  alive "$file" "$comm" || { echo "$name: not running"; return 0; }
  p=$(head -n1 "$file")
  kill -"$sig" "$p"
  wait_for 60 eval "! kill -0 $p" || die "$name (pid $p) did not stop within 60s"
  echo "$name: stopped"
}

up() {
  [[ $EUID -eq 0 ]] || die "run as root (installs packages and runs postgres/mariadbd as their own users)"
  install_missing
  # Services run as postgres/mysql, which must reach their dirs under $DIR.
  mkdir -p "$DIR" && chmod 0755 "$DIR" && cd "$DIR"
  runuser -u postgres -- test -x "$DIR" || die "$DIR is not reachable by the postgres user; pick another ARCA_SERVICES_DIR"
  postgres_up
  mariadb_up
  garage_up
  # Sourceable connection settings for the tests; secrets stay in files.
  cat >"$DIR/env" <<EOF
export ARCA_TEST_PG_HOST=127.0.0.1
export ARCA_TEST_PG_PORT=$PG_PORT
export ARCA_TEST_PG_USER=postgres
export ARCA_TEST_PG_PASSWORD_FILE=$DIR/pg-password
export ARCA_TEST_PG_CA_FILE=$DIR/pg-ca.crt
export ARCA_TEST_MY_HOST=127.0.0.1
export ARCA_TEST_MY_PORT=$MY_PORT
export ARCA_TEST_MY_USER=root
export ARCA_TEST_MY_PASSWORD_FILE=$DIR/my-password
export ARCA_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export ARCA_TEST_S3_REGION=garage
export ARCA_TEST_S3_BUCKET=$BUCKET
export ARCA_TEST_S3_ACCESS_KEY_ID_FILE=$DIR/s3-access-key-id
export ARCA_TEST_S3_SECRET_ACCESS_KEY_FILE=$DIR/s3-secret-access-key
EOF
  echo "$DIR/env"
}

down() {
  # Postgres: SIGINT is its "fast" shutdown (SIGTERM would wait for clients to leave).
  stop_pid postgres postgres "$DIR/postgres/postmaster.pid" INT
  stop_pid mariadb mariadbd "$DIR/mariadb/mariadb.pid"
  stop_pid garage garage "$DIR/garage.pid"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down" ;;
esac
