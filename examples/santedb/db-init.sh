#!/bin/bash
# First start of the PostgreSQL container only: the application role and SanteDB's two
# databases (the official postgres image runs this from /docker-entrypoint-initdb.d).
set -euo pipefail
pw=$(cat /run/secrets/santedb-password)
psql -v ON_ERROR_STOP=1 -U postgres -d postgres -v pw="$pw" <<'SQL'
CREATE ROLE santedb LOGIN PASSWORD :'pw';
CREATE DATABASE santedb OWNER santedb ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE auditdb OWNER santedb ENCODING 'UTF8' TEMPLATE template0;
SQL
