#!/usr/bin/env bash
# Smoke test for scripts/services.sh: talk to each service for real, using only $DIR/env.
set -euo pipefail

DIR="${ARCA_SERVICES_DIR:-/tmp/arca-services}"
die() { echo "services-check: $*" >&2; exit 1; }
# shellcheck source=/dev/null
source "$DIR/env" || die "no $DIR/env: run scripts/services.sh up first"

# PostgreSQL: password login over TCP (password via env, never argv).
PGPASSWORD=$(cat "$ARCA_TEST_PG_PASSWORD_FILE") psql -h "$ARCA_TEST_PG_HOST" -p "$ARCA_TEST_PG_PORT" \
  -U "$ARCA_TEST_PG_USER" -w -Atqc 'select 1' postgres | grep -qx 1 || die "postgres: select 1 failed"
echo "postgres ok"

# MariaDB: password login over TCP (password via env, never argv).
MYSQL_PWD=$(cat "$ARCA_TEST_MY_PASSWORD_FILE") mariadb -h "$ARCA_TEST_MY_HOST" -P "$ARCA_TEST_MY_PORT" \
  -u "$ARCA_TEST_MY_USER" -Ne 'select 1' | grep -qx 1 || die "mariadb: select 1 failed"
echo "mariadb ok"

# S3: credentials and region come from the env the AWS CLI reads.
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=$ARCA_TEST_S3_REGION
AWS_ACCESS_KEY_ID=$(cat "$ARCA_TEST_S3_ACCESS_KEY_ID_FILE")
AWS_SECRET_ACCESS_KEY=$(cat "$ARCA_TEST_S3_SECRET_ACCESS_KEY_FILE")
# Prefer Debian's awscli (/usr/bin/aws) over whatever else is first on PATH.
AWS=$( [[ -x /usr/bin/aws ]] && echo /usr/bin/aws || command -v aws ) || die "no aws CLI (apt-get install awscli)"
s3() { "$AWS" --endpoint-url "$ARCA_TEST_S3_ENDPOINT" "$@"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
key="x/smoke-$$.txt" url="s3://$ARCA_TEST_S3_BUCKET"
echo "arca smoke $$" >"$tmp/in"
# Round trip: put, list (plain and with prefix+delimiter, as the backup catalog does), get, compare, delete.
s3 s3 cp --only-show-errors "$tmp/in" "$url/$key" || die "s3 put failed"
out=$(s3 s3 ls "$url/x/") && grep -q "smoke-$$.txt" <<<"$out" || die "s3 ls does not show $key"
out=$(s3 s3api list-objects-v2 --bucket "$ARCA_TEST_S3_BUCKET" --prefix x/ --delimiter / --output text \
  --query 'Contents[].Key') && grep -qF "$key" <<<"$out" || die "list-objects-v2 --prefix x/ --delimiter / misses $key"
out=$(s3 s3api list-objects-v2 --bucket "$ARCA_TEST_S3_BUCKET" --delimiter / --output text \
  --query 'CommonPrefixes[].Prefix') && grep -qw 'x/' <<<"$out" || die "list-objects-v2 --delimiter / misses prefix x/"
s3 s3 cp --only-show-errors "$url/$key" "$tmp/out" || die "s3 get failed"
cmp -s "$tmp/in" "$tmp/out" || die "s3 object came back different"
s3 s3 rm --only-show-errors "$url/$key" || die "s3 delete failed"
out=$(s3 s3 ls "$url/x/" || true)  # ls exits 1 when nothing matches
! grep -q "smoke-$$.txt" <<<"$out" || die "s3 object still listed after delete"
echo "s3 ok ($("$AWS" --version 2>&1 | cut -d' ' -f1))"
echo "services-check: all ok"
