/* The REST API of a pgwarden node: what each route answers. The server
 * mechanics are in api/http_server.h; this module only adds rows to its
 * route table and answers from in-memory state (a health probe never waits
 * on PostgreSQL or Raft). */
#ifndef PGW_API_API_H
#define PGW_API_API_H

#include <stdint.h>

#include <uv.h>

#include "api/http_server.h"
#include "common/cfg.h"
#include "ha/ha.h"
#include "raft/cluster.h"
#include "raft/fsm.h"
#include "raft/submit.h"

struct api_ctx {
    uv_loop_t *loop;
    const struct cfg *cfg;  /* current configuration (swapped on SIGHUP) */
    struct cluster *cluster;
    struct fsm *fsm;
    struct ha *ha;
    struct submitter *sub;
    struct http_server *server;
    /* POST /reload: re-read the configuration file, like SIGHUP. Returns 0
     * or a negative status with the reason in err. */
    int (*reload)(void *ctx, char *err, size_t errlen);
    void *reload_ctx;
};

int api_register(struct http_server *s, struct api_ctx *ctx) PGW_MUST_CHECK;

/* Basic-auth check for write methods (constant-time compare). Replies 401
 * and returns false when credentials are required and wrong. */
bool api_check_auth(struct http_exchange *x, const struct http_request *req,
                    const struct api_ctx *ctx);

#endif
