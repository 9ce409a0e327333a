/* Loading a configuration from a string in the cfg unit tests. */
#ifndef PGW_TEST_CFG_LOAD_H
#define PGW_TEST_CFG_LOAD_H

#include <string.h>

#include "common/cfg.h"

static inline int load(const char *yaml, struct cfg *c, struct cfg_error *e,
                       struct cfg_warnings *w)
{
    return cfg_load_buffer("t.yml", yaml, strlen(yaml), c, e, w);
}

/* Loaded, or the test fails with the loader's message and the text. */
static inline void load_ok(const char *yaml, struct cfg *c, struct cfg_warnings *w)
{
    struct cfg_error e;
    if (load(yaml, c, &e, w) != 0)
        fail_msg("refused: %s\n---\n%s", e.msg, yaml);
}

#endif
