# Sourced by every rehearsal shim (tests/chaos/test_rehearsal.py): appends the
# call (command and arguments, tab-separated) to $PGW_REHEARSAL_LOG so the test
# can assert what the startup script and the runbook asked for.
# shellcheck shell=bash

shim_log() {
    local line a
    line=$(basename "$0")
    for a in "$@"; do
        line+=$'\t'$a
    done
    printf '%s\n' "$line" >>"${PGW_REHEARSAL_LOG:?PGW_REHEARSAL_LOG is not set}"
}

shim_die() {
    echo "$(basename "$0") (rehearsal): $*" >&2
    exit 2
}
