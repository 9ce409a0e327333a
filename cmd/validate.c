/* pgwarden validate: load a configuration file exactly as `pgwarden run`
 * would (environment overrides included) and report the first error. Silent
 * and exit 0 when the file is valid, so it fits in scripts and CI. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/cfg.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pgwarden validate -c FILE\n"
            "       pgwarden validate --print-reference\n"
            "\n"
            "Check a configuration file: prints nothing and exits 0 when it is valid;\n"
            "prints the first error (file:line:col: key.path: what was wrong) and exits 1\n"
            "otherwise. Warnings (unknown keys) go to stderr and do not fail the check.\n"
            "PGWARDEN_* environment variables are applied as `pgwarden run` would.\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE    the configuration file to check\n"
            "      --print-reference\n"
            "                       print the configuration reference (Markdown) and exit;\n"
            "                       docs/configuration.md is this output\n"
            "  -h, --help           show this help\n");
}

int cmd_validate(int argc, char **argv)
{
    const char *file = NULL;
    bool reference = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--print-reference") == 0) {
            reference = true;
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
    for (size_t i = 0; i < warn.n; i++)
        fprintf(stderr, "pgwarden: warning: %s\n", warn.items[i]);
    cfg_warnings_free(&warn);
    if (rc != 0) {
        fprintf(stderr, "pgwarden: %s\n", err.msg);
        return 1;
    }
    cfg_free(&c);
    return 0;
}
