/* Shared by the libFuzzer targets in tests/fuzz (header-only, static
 * helpers). Each target is built by CMake with PGW_FUZZ=ON and run by
 * `make fuzz` / `make fuzz-short`. */
#ifndef PGW_FUZZ_UTIL_H
#define PGW_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* Stop with a message: libFuzzer reports the abort() as a crash and keeps
 * the input as an artifact. */
#define FUZZ_CHECK(cond, ...)                                                         \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__,   \
                    #cond);                                                           \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            abort();                                                                  \
        }                                                                             \
    } while (0)

static void fuzz_log_discard(enum log_level l, const char *module, const char *msg, void *ctx)
{
    (void)l;
    (void)module;
    (void)msg;
    (void)ctx;
}

/* Logging would dominate the run time and flood libFuzzer's output. Every
 * warning and error is still formatted (the hook receives it, so a bad
 * format argument is still caught by the sanitizers) but nothing is
 * printed. PGW_FUZZ_LOG=debug (or info, ...) prints again, for reproducing
 * one input by hand. */
static void fuzz_quiet_logs(void)
{
    const char *want = getenv("PGW_FUZZ_LOG");
    struct log_settings s = {.level = LOGL_ERROR, .format = LOGF_PLAIN, .dir = NULL};
    if (want != NULL && want[0] != '\0' && log_level_parse(want, &s.level) == 0) {
        (void)log_configure(&s);
        return;
    }
    /* One above the highest level: log_enabled() is false for every line. */
    s.level = (enum log_level)(LOGL_ERROR + 1);
    (void)log_configure(&s);
    log_set_hook(fuzz_log_discard, NULL);
}

#endif
