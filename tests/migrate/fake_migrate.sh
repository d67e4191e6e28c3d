#!/bin/sh
# Stand-in for `prisma migrate deploy` in the runner's tests (Prisma's engines cannot be
# downloaded here). Like Prisma it reads DATABASE_URL, holds one session for the whole run and is
# idempotent: it applies each MIGRATIONS_DIR/*.sql file once, in name order, each in one
# transaction together with its row in schema_migrations. One psql reads a script written here
# (one connection instead of one per step: each TLS + SCRAM login costs a process and ~40 ms).
#
# Test hooks:
#   STATE_DIR     if set: "mkdir STATE_DIR/inside" must succeed (it fails when another command
#                 is inside: exit 99, "OVERLAP"); start/end times are appended to STATE_DIR/journal
#   HOLD_SECONDS  sleep this long before leaving (widens the window an overlap would show in)
set -eu
migrations=${1:?usage: fake_migrate.sh MIGRATIONS_DIR}
: "${DATABASE_URL:?DATABASE_URL is not set}"

if [ -n "${STATE_DIR:-}" ]; then
    if ! mkdir "$STATE_DIR/inside" 2>/dev/null; then
        echo "OVERLAP: another migration command is running" >&2
        exit 99
    fi
    echo "start $(date +%s.%N) $$" >>"$STATE_DIR/journal"
fi

# REPLY := $1 as a quoted psql/SQL literal (' doubled), in the shell itself: no process per name.
quote() {
    REPLY= rest=$1
    while :; do
        case $rest in
            *\'*) REPLY="$REPLY${rest%%\'*}''" rest=${rest#*\'} ;;
            *) break ;;
        esac
    done
    REPLY="'$REPLY$rest'"
}

script() {
    echo "CREATE TABLE IF NOT EXISTS schema_migrations (
        version text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT clock_timestamp());"
    for file in "$migrations"/*.sql; do
        name=${file##*/}
        name=${name%.sql}
        quote "$name"; version=$REPLY
        quote "$file"; path=$REPLY
        quote "already applied: $name"; skipped=$REPLY
        quote "applied: $name"; applied=$REPLY
        # An error in the file stops psql (ON_ERROR_STOP) inside the open transaction: nothing of
        # it, nor its row, is committed, and nothing after it runs.
        printf '%s\n' \
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $version) AS done \\gset" \
            '\if :done' "\\echo $skipped" '\else' \
            'BEGIN;' "\\i $path" "INSERT INTO schema_migrations (version) VALUES ($version);" 'COMMIT;' \
            "\\echo $applied" '\endif'
    done
}

script | psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -f -

[ -z "${HOLD_SECONDS:-}" ] || sleep "$HOLD_SECONDS"

if [ -n "${STATE_DIR:-}" ]; then
    echo "end $(date +%s.%N) $$" >>"$STATE_DIR/journal"
    rmdir "$STATE_DIR/inside"
fi
