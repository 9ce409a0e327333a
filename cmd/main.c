/* pgwarden: PostgreSQL high-availability supervisor, one binary per node. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct subcommand subcommands[] = {
    {"run", cmd_run, "run the supervisor daemon for this node"},
    {"ctl", cmd_ctl, "operator CLI: list, switchover, failover, ..."},
    {"validate", cmd_validate, "check a configuration file and exit 0 (valid) or 1"},
    {"convert-patroni", cmd_convert_patroni, "write a pgwarden configuration from a patroni.yml"},
    {"version", cmd_version, "print pgwarden's version and the library versions it was built with"},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: pgwarden <command> [options]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %-16s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\nRun 'pgwarden <command> --help' for the options of a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(1, argv + 1);
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "pgwarden: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
