#!/bin/sh
# Run the libFuzzer targets built in BUILD_DIR (make fuzz / make fuzz-short).
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
#
# For each target (default: every tests/fuzz/fuzz_*.c), in this order:
#   1. replay every reproducer tests/fuzz/crashes/<target>-*: a crash found
#      once must stay fixed;
#   2. fuzz for SECONDS on BUILD_DIR/corpus/<target> (the seeds of
#      tests/fuzz/corpus/<target> copied in; the corpus grows there across
#      runs and the repository is never written), with
#      tests/fuzz/<target>.dict when it exists. Crash inputs go to
#      BUILD_DIR/artifacts/<target>/, the full log to BUILD_DIR/logs/.
# Prints one summary line per target (executions, executions per second,
# coverage) and exits non-zero if any target crashed, leaked, timed out or
# could not run.
set -u

if [ $# -lt 2 ]; then
    echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
    exit 2
fi
B=$1
SECS=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)

case "$SECS" in
    ''|*[!0-9]*) echo "fuzz: SECONDS must be a whole number, got '$SECS'" >&2; exit 2 ;;
esac

if [ $# -eq 0 ]; then
    for f in "$HERE"/fuzz_*.c; do
        t=$(basename "$f" .c)
        set -- "$@" "${t#fuzz_}"
    done
fi

mkdir -p "$B/corpus" "$B/artifacts" "$B/logs"
# Sanitizer reports must end the run with the stack; libFuzzer handles the
# rest (its own -timeout and -rss_limit_mb).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=""
summary=""
for t in "$@"; do
    bin="$B/fuzz_$t"
    log="$B/logs/$t.log"
    if [ ! -x "$bin" ]; then
        echo "fuzz: $bin is missing (build target pgw_fuzzers first)" >&2
        failed="$failed $t(missing)"
        continue
    fi

    # 1. Regression inputs, one run each (libFuzzer stops at the first
    #    failing file, and every one should be reported).
    for r in "$HERE/crashes/$t"-*; do
        [ -f "$r" ] || continue
        n=$(basename "$r")
        rlog="$B/logs/replay-$n.log"
        if "$bin" -timeout=30 "$r" >"$rlog" 2>&1; then
            echo "== $t: reproducer $n passes"
        else
            echo "fuzz: $t: reproducer tests/fuzz/crashes/$n still fails (log: $rlog):" >&2
            grep -E "fuzz check failed|^==[0-9]+==ERROR|runtime error" "$rlog" | head -3 >&2
            failed="$failed $n"
        fi
    done

    # 2. Fuzzing.
    corpus="$B/corpus/$t"
    arts="$B/artifacts/$t"
    mkdir -p "$corpus" "$arts"
    if [ -d "$HERE/corpus/$t" ]; then
        cp -n "$HERE/corpus/$t"/* "$corpus"/ 2>/dev/null || true
    fi
    dict=""
    [ -f "$HERE/$t.dict" ] && dict="-dict=$HERE/$t.dict"
    echo "== $t: fuzzing for ${SECS}s (log: $log)"
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$SECS" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$arts/" $dict "$corpus" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*ft: \([0-9]*\).*corp: \([^ ]*\).*/cov \1, ft \2, corpus \3/p')
    line="$t: ${execs:-?} execs, ${eps:-?}/s, ${cov:-no coverage line}"
    if [ $rc -ne 0 ]; then
        line="$line -- FAILED (exit $rc)"
        failed="$failed $t"
        grep -E "^==[0-9]+==ERROR|fuzz check failed|runtime error|SUMMARY|Test unit written" "$log" | head -8 >&2
    fi
    echo "$line"
    summary="$summary
$line"
done

echo
echo "fuzz summary (${SECS}s per target):$summary"
if [ -n "$failed" ]; then
    echo "fuzz: FAILED:$failed (artifacts in $B/artifacts, logs in $B/logs)" >&2
    exit 1
fi
exit 0
