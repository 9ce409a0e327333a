/* Rejoin decision: does the local data dir need pg_rewind before it can
 * follow the primary? (Patroni's rule, patroni-behaviour.md §4.7.)
 *
 * Happy path of pgrewind_fetch_primary(): replication connection
 * (replication=1) -> IDENTIFY_SYSTEM (sysid, timeline, xlogpos) ->
 * TIMELINE_HISTORY <tli> (when tli > 1) -> parsed history -> callback.
 * Failure modes: connection refused/timeout (PGW_EUNAVAIL/PGW_ETIMEDOUT),
 * the server refusing (no REPLICATION privilege, pg_hba: PGW_EIO with the
 * server's message), malformed answers (PGW_EPROTO). */
#ifndef PGW_PG_PGREWIND_H
#define PGW_PG_PGREWIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/status.h"
#include "pg/lsn.h"
#include "pg/pgconn.h"

#define PGREWIND_MAX_HISTORY 256

struct pg_tli_switch {
    uint32_t parent_tli; /* the timeline that ended */
    pg_lsn switchpoint;  /* where the child timeline forked off it */
};

struct pg_tli_history {
    size_t n;
    struct pg_tli_switch items[PGREWIND_MAX_HISTORY];
};

/* Parse a .history file ("1\t0/3000148\tno recovery target specified").
 * Blank lines and '#' comments are skipped; PGW_EPROTO names the bad line. */
int pg_tli_history_parse(const char *text, size_t len, struct pg_tli_history *out, char *errbuf,
                         size_t errlen) PGW_MUST_CHECK;

/* Read and parse <data_dir>/pg_wal/<tli>.history (up to 16 kB).
 * PGW_ENOTFOUND when it does not exist; other errors name the file. */
int pg_tli_history_read(const char *data_dir, uint32_t tli, struct pg_tli_history *out,
                        char *errbuf, size_t errlen) PGW_MUST_CHECK;

struct pgrewind_primary {
    uint64_t system_identifier;
    uint32_t timeline;
    pg_lsn xlogpos;
    struct pg_tli_history history; /* empty when timeline == 1 */
};

struct pgrewind_local {
    uint32_t timeline;       /* local timeline (controldata checkpoint tli, or received/replay tli) */
    pg_lsn lsn;              /* former primary: checkpoint location; replica: replayed location */
    pg_lsn checkpoint_end;   /* former primary: end of its checkpoint record; 0 = unknown */
    bool was_primary;        /* cluster state "in production" / "shut down" / "in crash recovery" */
    uint64_t system_identifier;
    /* pg_wal/<timeline>.history of the data directory (timeline > 1), when
     * it could be read: two nodes that both promoted from the same timeline
     * (one killed before it could confirm) carry the same new timeline
     * number over different histories */
    bool history_known;
    struct pg_tli_history history;
};

enum pgrewind_verdict { PGREWIND_NOT_NEEDED = 0, PGREWIND_NEEDED, PGREWIND_IMPOSSIBLE };

struct pgrewind_decision {
    enum pgrewind_verdict verdict;
    char reason[256]; /* "local timeline 2 is ahead of the primary's 1" */
};

/* The decision table (pure). IMPOSSIBLE: different system identifier. */
void pgrewind_decide(const struct pgrewind_local *local, const struct pgrewind_primary *primary,
                     struct pgrewind_decision *out);

typedef void (*pgrewind_fetch_cb)(int status, const char *error,
                                  const struct pgrewind_primary *primary, void *ctx);
struct pgrewind_fetch;
/* params must carry replication=1 (pgconf_conn_params(..., true, ...)). */
int pgrewind_fetch_primary(uv_loop_t *loop, const struct pgconn_params *params,
                           uint32_t timeout_ms, pgrewind_fetch_cb cb, void *ctx,
                           struct pgrewind_fetch **out) PGW_MUST_CHECK;
/* Cancel: the callback is not called. */
void pgrewind_fetch_cancel(struct pgrewind_fetch *f);

/* Parse pg_waldump's output when asked for two records from a checkpoint
 * (Patroni's trick: the error on the 2nd record names where the 1st ends).
 * Returns 0 when not determinable. */
pg_lsn pgrewind_parse_waldump_end(const char *out, const char *err, pg_lsn checkpoint);

#endif
