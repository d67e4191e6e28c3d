#!/bin/sh
# Stand-in for `prisma migrate deploy` in the runner's tests (Prisma's engines cannot be
# downloaded here). Like Prisma it reads DATABASE_URL and is idempotent: it applies each
# MIGRATIONS_DIR/*.sql file once, in name order, each in one transaction together with its row
# in schema_migrations.
#
# Test hooks:
#   STATE_DIR     if set: "mkdir STATE_DIR/inside" must succeed (it fails when another command
#                 is inside: exit 99, "OVERLAP"); start/end times are appended to STATE_DIR/journal
#   HOLD_SECONDS  sleep this long before leaving (widens the window an overlap would show in)
set -eu
migrations=${1:?usage: fake_migrate.sh MIGRATIONS_DIR}
: "${DATABASE_URL:?DATABASE_URL is not set}"

run_psql() { psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }

if [ -n "${STATE_DIR:-}" ]; then
    if ! mkdir "$STATE_DIR/inside" 2>/dev/null; then
        echo "OVERLAP: another migration command is running" >&2
        exit 99
    fi
    echo "start $(date +%s.%N) $$" >>"$STATE_DIR/journal"
fi

run_psql -c "CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"

for file in "$migrations"/*.sql; do
    version=$(basename "$file" .sql)
    if [ -n "$(run_psql -At -c "SELECT 1 FROM schema_migrations WHERE version = '$version'")" ]; then
        echo "already applied: $version"
    else
        run_psql -1 -f "$file" -c "INSERT INTO schema_migrations (version) VALUES ('$version')"
        echo "applied: $version"
    fi
done

sleep "${HOLD_SECONDS:-0}"

if [ -n "${STATE_DIR:-}" ]; then
    echo "end $(date +%s.%N) $$" >>"$STATE_DIR/journal"
    rmdir "$STATE_DIR/inside"
fi
