/* pgwarden validate: load a configuration file exactly as `pgwarden run`
 * would (environment overrides included), run the start-up checks run runs
 * (ha/preflight.h: paths, programs, TLS files, the watchdog device, ...) and
 * report the first error. Silent and exit 0 when the file is valid, so it
 * fits in scripts and CI. What holds only now (a busy port, another pgwarden
 * holding the lock) is a warning; --offline checks the file alone. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/cfg.h"
#include "common/log.h"
#include "ha/preflight.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pgwarden validate -c FILE\n"
            "       pgwarden validate --print-reference\n"
            "\n"
            "Check a configuration file: prints nothing and exits 0 when it is valid;\n"
            "prints the first error (file:line:col: key.path: what was wrong) and exits 1\n"
            "otherwise. PGWARDEN_* environment variables are applied as `pgwarden run`\n"
            "would. Then checks this machine as `pgwarden run` does before it starts:\n"
            "raft.data_dir, postgresql.data_dir's parent, bin_dir's programs, TLS files,\n"
            "log.dir, the watchdog device (mode required), backup.command; permissions are\n"
            "those of the user running validate (run it as the service user).\n"
            "Warnings go to stderr and do not fail the check: unknown keys, and what would\n"
            "stop `pgwarden run` only at this moment (a port in use, another pgwarden\n"
            "holding raft.data_dir's lock).\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE    the configuration file to check\n"
            "      --offline        check the file alone, not this machine (a file written\n"
            "                       for another machine)\n"
            "      --print-reference\n"
            "                       print the configuration reference (Markdown) and exit;\n"
            "                       docs/configuration.md is this output\n"
            "  -h, --help           show this help\n");
}

static void collect_log(enum log_level l, const char *module, const char *msg, void *ctx)
{
    (void)module;
    if (l >= LOGL_WARN && cfg_warnings_add(ctx, msg) != 0)
        fprintf(stderr, "pgwarden: warning: %s\n", msg); /* out of memory: at once */
}

int cmd_validate(int argc, char **argv)
{
    const char *file = NULL;
    bool reference = false, offline = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--print-reference") == 0) {
            reference = true;
        } else if (strcmp(a, "--offline") == 0) {
            offline = true;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pgwarden validate: %s needs a file name\n", a);
                return 2;
            }
            if (file != NULL) {
                fprintf(stderr, "pgwarden validate: only one configuration file, please\n");
                return 2;
            }
            file = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            if (file != NULL) {
                fprintf(stderr, "pgwarden validate: only one configuration file, please\n");
                return 2;
            }
            file = a + 9;
        } else {
            fprintf(stderr, "pgwarden validate: unexpected argument \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (reference) {
        if (file != NULL) {
            fprintf(stderr, "pgwarden validate: --print-reference takes no file\n");
            return 2;
        }
        cfg_print_reference(stdout);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (file == NULL || *file == '\0') {
        fprintf(stderr, "pgwarden validate: which file? (-c FILE)\n\n");
        usage(stderr);
        return 2;
    }
    struct cfg c;
    struct cfg_error err;
    struct cfg_warnings warn = {0};
    int rc = cfg_load(file, &c, &err, &warn);
    char perr[2048] = "";
    if (rc == 0 && !offline) {
        /* the modules' own log lines (an expired certificate) become warnings */
        log_set_quiet(true);
        log_set_hook(collect_log, &warn);
        rc = preflight_check(&c, PREFLIGHT_NOW, &warn, perr, sizeof perr);
        log_set_hook(NULL, NULL);
        log_set_quiet(false);
        cfg_free(&c);
    } else if (rc == 0) {
        cfg_free(&c);
    } else {
        snprintf(perr, sizeof perr, "%s", err.msg);
    }
    for (size_t i = 0; i < warn.n; i++)
        fprintf(stderr, "pgwarden: warning: %s\n", warn.items[i]);
    cfg_warnings_free(&warn);
    if (rc != 0) {
        fprintf(stderr, "pgwarden: %s\n", perr);
        return 1;
    }
    return 0;
}
