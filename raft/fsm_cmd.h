/* Commands of the replicated cluster-state machine.
 *
 * Wire form: one JSON object per Raft entry, versioned and self-describing,
 * e.g. {"v":1,"op":"lease_renew","rid":"n1.5f2a.17","member":"n1","epoch":4,
 * "lsn":123456,"timeline":3}. JSON because the state is tiny, an operator can
 * read an entry in a hex dump, and jansson rejects malformed input cleanly.
 *
 * The same decoder runs on the submitting side (a malformed or unknown
 * command is refused there, with a message naming the field) and in
 * fsm_apply (where a bad entry that slipped through is a no-op with an error
 * result, never a crash and never a wedged node). Every command carries a
 * request id (rid) so a retry after a leader change is applied once. */
#ifndef PGW_RAFT_FSM_CMD_H
#define PGW_RAFT_FSM_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/status.h"

#define FSM_CMD_VERSION 1
/* What this binary's FSM understands beyond FSM_CMD_VERSION: 2 = the
 * conditions of issue 15 (an assignment's if_renewals, a sync set's
 * if_version); 3 = backup_done (ha/backup.c). A command uses a condition
 * or a newer op only when every member
 * registered at least that level: a node that ignored it would apply what
 * the others refuse, and the replicated state would diverge. */
#define FSM_LEVEL 3
#define FSM_NAME_MAX 64       /* member names: 1..63 bytes */
#define FSM_RID_MAX 64
#define FSM_ADDR_MAX 64
#define FSM_URL_MAX 256
#define FSM_TEXT_MAX 256
#define FSM_MAX_MEMBERS 32
#define FSM_MAX_SYNC 16
#define FSM_CMD_MAX_BYTES 65536

enum fsm_op {
    FSM_OP_NOOP = 1,        /* read barrier for followers */
    FSM_OP_MEMBER_REGISTER, /* identity: raft id/address, api url, conn url, tags */
    FSM_OP_MEMBER_REMOVE,
    FSM_OP_MEMBER_REPORT,   /* last reported PostgreSQL state */
    FSM_OP_LEASE_RENEW,     /* the primary renews its lease */
    FSM_OP_PRIMARY_ASSIGN,  /* controller: new primary epoch */
    FSM_OP_PRIMARY_RUNNING, /* assigned primary: promotion done */
    FSM_OP_PRIMARY_DEMOTE,  /* controller: switchover step 1, stop and hand over */
    FSM_OP_PRIMARY_STOPPED, /* old primary: stopped cleanly at final_lsn */
    FSM_OP_PRIMARY_RELEASE, /* holder gives the role up (cannot run, shutting down) */
    FSM_OP_CLUSTER_INIT,    /* records the PostgreSQL system identifier once */
    FSM_OP_CONFIG_SET,      /* dynamic configuration, compare-and-set on version */
    FSM_OP_PAUSE_SET,
    FSM_OP_SWITCHOVER_SET,  /* pending switchover / manual failover */
    FSM_OP_SWITCHOVER_CLEAR,
    FSM_OP_SYNC_SET,        /* synchronous standby set */
    FSM_OP_BACKUP_DONE,     /* a backup ended on the primary (level 3) */
    FSM_OP__COUNT
};

enum fsm_assign_mode { FSM_ASSIGN_PROMOTE = 0, FSM_ASSIGN_BOOTSTRAP };

struct fsm_report {
    char role[16];       /* primary | replica | uninitialized | ... */
    char state[32];      /* running | stopped | starting | creating replica | hung | ... */
    char repl_state[32]; /* streaming | in archive recovery | "" */
    uint32_t timeline;
    uint64_t lsn;         /* primary: current WAL LSN */
    uint64_t receive_lsn; /* replica */
    uint64_t replay_lsn;  /* replica */
    bool pending_restart;
    int server_version;
    char sysid[24];
    char reason[FSM_TEXT_MAX]; /* why not a candidate / what is wrong, "" if fine */
};

struct fsm_cmd {
    enum fsm_op op;
    char rid[FSM_RID_MAX];
    char member[FSM_NAME_MAX]; /* subject of the command, when there is one */
    uint64_t epoch;            /* LEASE_RENEW, PRIMARY_*: the epoch it is about */
    union {
        struct {
            uint64_t raft_id;
            char raft_addr[FSM_ADDR_MAX];
            char api_url[FSM_URL_MAX];
            char conn_host[FSM_URL_MAX];
            uint16_t conn_port;
            bool witness;
            json_t *tags; /* object; owned by the cmd */
            uint32_t level; /* FSM_LEVEL of the registering binary (0: older, sent nothing) */
        } reg;
        struct fsm_report report;
        struct {
            uint64_t lsn;
            uint32_t timeline;
            /* the ttl this renewal is sent under, and the ttl of the lease
             * the holder counts on while it is in flight; 0: not sent (an
             * older pgwarden): the judge then uses its own configuration */
            uint32_t ttl_ms, held_ttl_ms;
        } lease;
        struct {
            enum fsm_assign_mode mode;
            char reason[FSM_TEXT_MAX];
            bool allow_data_loss;
            /* the controller decided from a view in which the holder had
             * renewed this many times: refused if it renewed since (wire
             * "if_renewals", absent from older nodes: no condition) */
            bool if_renewals_set;
            uint64_t if_renewals;
        } assign;
        struct {
            uint32_t timeline;
            uint64_t lsn;
            uint64_t wall_ms;
        } running;
        struct {
            char target[FSM_NAME_MAX];
        } demote;
        struct {
            uint64_t final_lsn;
            uint32_t timeline;
        } stopped;
        struct {
            char reason[FSM_TEXT_MAX];
            /* the holder refused to promote (pre_promote failed): the
             * controller does not choose it again for ttl. Wire field
             * "refused", sent only when true; older nodes ignore it. */
            bool promote_refused;
        } release;
        struct {
            char sysid[24];
        } init;
        struct {
            json_t *config; /* object; owned by the cmd */
            uint64_t expect_version;
        } config;
        struct {
            bool pause;
        } pause;
        struct {
            bool failover;   /* manual failover (no healthy primary needed) */
            char from[FSM_NAME_MAX];
            char to[FSM_NAME_MAX];
            uint64_t scheduled_wall_ms; /* 0 = now */
            bool allow_data_loss;
            uint64_t requested_wall_ms;
        } sw;
        struct {
            char type[8];    /* full | diff | incr */
            char label[64];  /* pgBackRest's label; "" when it made none */
            bool ok;
            uint64_t started_wall_ms, ended_wall_ms;
            char result[FSM_TEXT_MAX];
        } backup;
        struct {
            char members[FSM_MAX_SYNC][FSM_NAME_MAX];
            unsigned n;
            unsigned count;      /* quorum: ANY count of members; on: every member */
            bool quorum;
            uint64_t primary_epoch;
            /* decided from the set at this version: refused if it changed
             * since (wire "if_version", absent from older nodes) */
            bool if_version_set;
            uint64_t if_version;
        } sync;
    } u;
};

const char *fsm_op_name(enum fsm_op op);

/* Parse and validate one command. On failure returns PGW_EINVAL (or
 * PGW_EPROTO for an unsupported version) with the reason in err. */
int fsm_cmd_decode(const char *buf, size_t len, struct fsm_cmd *out, char *err, size_t errlen)
    PGW_MUST_CHECK;

/* Encode to JSON text allocated with raft_malloc (what raft_apply wants);
 * the result is validated by decoding it again. */
int fsm_cmd_encode(const struct fsm_cmd *cmd, char **out, size_t *len, char *err, size_t errlen)
    PGW_MUST_CHECK;

void fsm_cmd_init(struct fsm_cmd *cmd, enum fsm_op op, const char *rid);
void fsm_cmd_free(struct fsm_cmd *cmd);

/* Member and scope names: 1..63 bytes of [A-Za-z0-9_.-]. */
bool fsm_name_valid(const char *s);

#endif
