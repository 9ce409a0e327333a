#!/bin/sh
# Calls we never make in pgwarden's own sources: blocking libpq on the event
# loop, system(), and unbounded string functions.
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' 2>/dev/null | grep -v '^tests/' || true)
[ -n "$files" ] || files=$(find cmd common raft pg ha api -name '*.[ch]')
# shellcheck disable=SC2086
bad=$(grep -HnE '(^|[^_[:alnum:]])(system|sprintf|vsprintf|strcpy|strcat|atoi|atol|gets)\(|\bPQexec\(|\bPQconnectdb\(|\bPQconnectdbParams\(|\bwaitpid\(' $files || true)
if [ -n "$bad" ]; then
    echo "lint: banned calls (use snprintf, strtol, PQsendQuery/PQconnectStart, uv_spawn):" >&2
    echo "$bad" >&2
    exit 1
fi
echo "lint: ok"
