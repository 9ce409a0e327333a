#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <llhttp.h>
#include <raft.h>
#include <uv.h>
#include <yaml.h>

#include "build_info.h"
#include "cmd/cmd.h"

int cmd_version(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: pgwarden version\n\n"
                   "Print pgwarden's version and the versions of libraft, libuv, libpq,\n"
                   "llhttp, jansson and libyaml it was built with (and, where the library\n"
                   "can tell, the version loaded at run time).\n");
            return 0;
        }
        fprintf(stderr, "pgwarden version: unexpected argument \"%s\"\n", argv[i]);
        return 2;
    }
    int pq = PQlibVersion();
    printf("pgwarden %s (%s build, %s)\n", PGW_VERSION, PGW_BUILD_TYPE, PGW_BUILD_DATE);
    /* libraft 0.15 has no version function (raft_version_number arrived in
     * 0.17.1): the build-time pkg-config version is what we can report. */
#ifdef RAFT_VERSION_NUMBER
    printf("libraft  %s (runtime %d)\n", PGW_RAFT_PKG_VERSION, raft_version_number());
#else
    printf("libraft  %s\n", PGW_RAFT_PKG_VERSION);
#endif
    printf("libuv    %s (runtime %s)\n", PGW_LIBUV_PKG_VERSION, uv_version_string());
    printf("libpq    %s (runtime %d.%d)\n", PGW_LIBPQ_PKG_VERSION, pq / 10000, pq % 10000);
    printf("llhttp   %d.%d.%d\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
    printf("jansson  %s\n", JANSSON_VERSION);
    printf("libyaml  %s (runtime %s)\n", PGW_YAML_PKG_VERSION, yaml_get_version_string());
    return 0;
}
