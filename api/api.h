/* The REST API of a pgwarden node: what each route answers. The server
 * mechanics are in api/http_server.h; this module only adds rows to its
 * route table and answers from in-memory state (a health probe never waits
 * on PostgreSQL or Raft). */
#ifndef PGW_API_API_H
#define PGW_API_API_H

#include <stdint.h>

#include <uv.h>

#include "api/http_server.h"
#include "common/loopstat.h"
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
    const struct loopstat *loopstat; /* event-loop busy time (NULL: not measured) */
    struct api_status_cache *status_cache; /* handlers_status.c; freed by api_status_cache_free */
    /* POST /reload: re-read the configuration file, like SIGHUP. Returns 0
     * or a negative status with the reason in err. */
    int (*reload)(void *ctx, char *err, size_t errlen);
    void *reload_ctx;
};

int api_register(struct http_server *s, struct api_ctx *ctx) PGW_MUST_CHECK;
/* Frees what the handlers keep in ctx (once the servers are closed). */
void api_status_cache_free(struct api_ctx *ctx);

/* Only the health-check routes (GET/HEAD/OPTIONS of /, /primary, /replica,
 * /read-only, /sync, /async, /health, /liveness, /readiness, ...): for the
 * plain-HTTP probe listener (restapi.health_listen) next to an HTTPS API. */
int api_register_probes(struct http_server *s, struct api_ctx *ctx) PGW_MUST_CHECK;

/* A command forwarded by a member when the cluster has no raft.password:
 * the request comes from a member's host (and passes restapi.allowlist).
 * Patroni's members never use each other's REST credentials, so each node
 * may have its own restapi.authentication (Patroni's example files do);
 * without a cluster secret the Raft port itself takes anyone, so basic auth
 * on the forwarding endpoint would protect nothing from a member. */
bool api_member_without_secret(const struct api_ctx *ctx, const struct http_request *req);

/* Access check for write methods: restapi.allowlist (403), a verified
 * client certificate when restapi.verify_client is optional (403 "client
 * certificate required"), then basic auth (constant-time compare; 401).
 * Replies and returns false when the request is refused. */
bool api_check_auth(struct http_exchange *x, const struct http_request *req,
                    const struct api_ctx *ctx);

#endif
