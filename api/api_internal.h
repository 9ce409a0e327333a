/* Shared by the api/ handler files. */
#ifndef PGW_API_INTERNAL_H
#define PGW_API_INTERNAL_H

#include <jansson.h>

#include "api/api.h"

/* Reply with a JSON document (consumed). */
void api_reply_json(struct http_exchange *x, int status, json_t *body);
/* {"error": "..."} with the status. */
void api_reply_error(struct http_exchange *x, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Parse the request body as a JSON object; replies 400 and returns NULL on failure. */
json_t *api_body_object(struct http_exchange *x, const struct http_request *req);

/* The node status document (GET /patroni, and the body of health checks). */
/* Reply with the status document (GET /patroni, the health checks), from a
 * rendering cached while nothing in it changed (handlers_status.c). view:
 * the ha_get_view the caller decided the status from, or NULL. */
void api_reply_status(struct http_exchange *x, struct api_ctx *ctx, const struct ha_view *view,
                      int status);
/* The freshest known primary WAL position (FSM renewal, member reports). */
uint64_t api_primary_lsn(const struct api_ctx *ctx);

int api_register_health(struct http_server *s, struct api_ctx *ctx) PGW_MUST_CHECK;
int api_register_status(struct http_server *s, struct api_ctx *ctx) PGW_MUST_CHECK;
int api_register_raft(struct http_server *s, struct api_ctx *ctx) PGW_MUST_CHECK;
int api_register_actions(struct http_server *s, struct api_ctx *ctx) PGW_MUST_CHECK;
int api_register_ops(struct http_server *s, struct api_ctx *ctx) PGW_MUST_CHECK;
int api_register_metrics(struct http_server *s, struct api_ctx *ctx) PGW_MUST_CHECK;
/* Parse an ISO 8601 time with a time zone into wall ms. */
bool api_parse_iso8601(const char *s, uint64_t *wall_ms);

#endif
