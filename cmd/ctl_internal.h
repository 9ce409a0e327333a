/* Shared pieces of `pgwarden ctl` (cmd/ctl*.c): the context, option
 * parsing, HTTP calls on ctl's own libuv loop, prompts and output helpers.
 * Not used outside cmd/ctl*.c. */
#ifndef PGW_CMD_CTL_INTERNAL_H
#define PGW_CMD_CTL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "common/status.h"

/* Exit statuses of every ctl command. */
enum { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2 };

enum ctl_format { CTL_FMT_PRETTY = 0, CTL_FMT_JSON, CTL_FMT_YAML, CTL_FMT_TSV };

#define CTL_GET_TIMEOUT_MS 5000u
#define CTL_ACTION_TIMEOUT_MS 75000u /* the server waits up to 60 s for a switchover's outcome */

struct ctl {
    const char *sub; /* the subcommand, for messages: "ctl <sub>: ..." */
    const char *config_path;
    char **endpoints; /* normalised base URLs, no trailing '/' */
    size_t n_endpoints;
    size_t preferred; /* the endpoint that answered last */
    char **cli_endpoints; /* --endpoint, as given */
    size_t n_cli_endpoints;
    char *user, *password;
    /* TLS for https:// endpoints: ctl.cacert/certfile/keyfile/insecure from
     * -c, overridden by --cacert/--certfile/--keyfile/--insecure */
    char *cacert, *certfile, *keyfile;
    char *cli_cacert, *cli_certfile, *cli_keyfile;
    bool insecure;
    enum ctl_format format;
    bool format_given; /* -f/--format was on the line */
    bool force;    /* the subcommand's --force, when it has one */
    bool loop_ready;
    uv_loop_t loop;
};

/* --- options ------------------------------------------------------------------- */

struct ctl_opt {
    const char *lng; /* "candidate" for --candidate */
    char shrt;       /* 'c' or 0 */
    bool has_arg;
    int id;          /* > 0 */
};

struct ctl_iter {
    int argc;
    char **argv;
    int i;
    bool only_positionals; /* after "--" */
};

enum { CTL_ARG_END = -1, CTL_ARG_ERROR = -2, CTL_ARG_POSITIONAL = 0, CTL_ARG_HELP = 1000 };

/* Next argument: an option id from `opts` (value in *val when it takes
 * one), CTL_ARG_POSITIONAL with the word in *val, CTL_ARG_HELP for -h/--help,
 * CTL_ARG_END, or CTL_ARG_ERROR after printing why (exit 2). The global
 * options (-c, --endpoint, -f, --insecure, --cacert, --certfile, --keyfile)
 * are accepted anywhere and stored in c. */
int ctl_next_arg(struct ctl *c, struct ctl_iter *it, const struct ctl_opt *opts, const char **val);

/* Load -c, resolve the endpoints and start the loop. Returns CTL_OK or the
 * exit status after printing the reason. */
int ctl_ready(struct ctl *c);
/* ctl_ready, then GET /cluster into *cluster (the caller's, json_decref):
 * the preamble of every subcommand that acts on members. CTL_OK, or the
 * exit status after printing the reason (*cluster NULL). */
int ctl_ready_cluster(struct ctl *c, json_t **cluster);

/* --- HTTP ------------------------------------------------------------------------ */

struct ctl_resp {
    int status;      /* 0, or a negative PGW_E* for a transport failure */
    int http_status; /* 0 on transport failure */
    char *body;      /* NUL-terminated, malloc'd (may be NULL) */
    size_t body_len;
    char error[512]; /* transport failure: what happened */
    char url[512];   /* where the request went */
    bool sent;       /* the request may have reached the server */
};

void ctl_resp_free(struct ctl_resp *r);
/* The body parsed as JSON, or NULL. */
json_t *ctl_resp_json(const struct ctl_resp *r);
/* The server's reason: "error" or "message" of a JSON body, else the text
 * body, else the transport error. */
const char *ctl_resp_reason(const struct ctl_resp *r, char *buf, size_t len);

/* One request to a full URL (body may be NULL). Returns r->status. */
int ctl_request(struct ctl *c, const char *method, const char *url, const json_t *body,
                uint32_t timeout_ms, struct ctl_resp *r);
/* The same to `path` on the endpoints in order, starting with the last one
 * that answered: moves on after a transport failure when nothing can have
 * reached the server (or for GET). r holds the last attempt; when every
 * endpoint failed, r->error lists them all. */
int ctl_request_any(struct ctl *c, const char *method, const char *path, const json_t *body,
                    uint32_t timeout_ms, struct ctl_resp *r);
/* GET path from any endpoint, expecting 200 and JSON. Prints the reason and
 * returns NULL otherwise. */
json_t *ctl_get_json(struct ctl *c, const char *path);
/* base URL of a member's REST API (api_url without a trailing /patroni) + path */
void ctl_member_url(const char *api_url, const char *path, char *buf, size_t len);
/* Sleep on ctl's loop (a uv timer), ms at most 60000. */
void ctl_sleep_ms(struct ctl *c, uint64_t ms);

/* --- output, prompts ------------------------------------------------------------ */

void ctl_err(const struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "ctl <sub>: <what> (<code> <reason phrase>): <server reason>" and CTL_FAILED */
int ctl_refused(const struct ctl *c, const char *what, const struct ctl_resp *r);

bool ctl_interactive(void);
/* Unless --force: refuse with exit 2 when stdin is not a terminal (saying to
 * use --force for `action`). Returns CTL_OK when going on is allowed. */
int ctl_need_confirmation_ok(const struct ctl *c, const char *action);
/* Ask a yes/no question (default no). true for yes; always true with --force. */
bool ctl_confirm(const struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Ask for a line; the default when the answer is empty. Returns a malloc'd
 * string, or NULL at end of input. */
char *ctl_prompt(const char *question, const char *dflt);

/* Print a JSON document in the chosen format (json: indented; yaml: block). */
int ctl_print_doc(const struct ctl *c, const json_t *j);
/* Local time "YYYY-MM-DD HH:MM:SS" for messages. */
void ctl_now(char *buf, size_t len);
/* Normalise --scheduled: ISO 8601 with a time zone (the local one is added
 * when missing). false when s is not a time. */
bool ctl_parse_time(const char *s, char *out, size_t len);
/* An option's value in seconds, min < s <= max (min itself allowed when
 * min_inclusive): false after printing "<opt> expects seconds ..." */
bool ctl_parse_seconds(const struct ctl *c, const char *opt, const char *val, double min,
                       bool min_inclusive, double max, double *out);

/* --- the cluster view (GET /cluster) ----------------------------------------- */

const json_t *ctl_member(const json_t *cluster, const char *name);
/* Name of the member whose role is leader, or NULL. */
const char *ctl_leader(const json_t *cluster);
/* "n1, n2, n3" into buf. */
void ctl_member_names(const json_t *cluster, char *buf, size_t len);
/* patronictl's roles: leader is the primary or the standby leader, primary
 * only the former, replica (or standby) any other member. */
enum ctl_role { CTL_ROLE_ANY, CTL_ROLE_LEADER, CTL_ROLE_PRIMARY, CTL_ROLE_STANDBY_LEADER, CTL_ROLE_REPLICA };
/* -r's word (leader, primary/master, standby-leader, replica/standby, any);
 * CTL_USAGE after printing why otherwise. */
int ctl_parse_role(const struct ctl *c, const char *v, enum ctl_role *f);
/* A member of GET /cluster has the role (witnesses are the caller's concern). */
bool ctl_role_matches(const json_t *m, enum ctl_role f);
/* Print the cluster table (list's layout) in the context's format. */
int ctl_print_cluster(struct ctl *c, const json_t *cluster, bool extended, bool topology);

/* --- subcommands ----------------------------------------------------------------- */

int ctl_cmd_list(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_topology(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_history(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_version(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_switchover(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_failover(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_restart(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_reload(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_reinit(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_pause(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_resume(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_demote_cluster(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_promote_cluster(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_show_config(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_edit_config(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_members(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_flush(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_backup(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_restore(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_query(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_dsn(struct ctl *c, struct ctl_iter *it);
int ctl_cmd_remove(struct ctl *c, struct ctl_iter *it);

/* A subcommand's help: usage line(s) then its options. */
void ctl_sub_help(FILE *out, const char *sub);
/* The optional CLUSTER word patronictl users type: fine if it is the scope. */
int ctl_check_cluster_arg(const struct ctl *c, const json_t *cluster, const char *word);

#endif
