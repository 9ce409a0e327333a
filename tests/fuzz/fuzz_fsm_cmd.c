/* Fuzz the replicated state machine's command path (issue 6): the input is
 * a sequence of Raft entries, one per line. Each line goes through
 * fsm_cmd_decode (never a crash; a decoded command re-encodes to a canonical
 * form that decodes and encodes to the same bytes) and fsm_apply_buf on a
 * fresh struct fsm, so sequences (register, assign, renew, ...) reach deep
 * states. After the last entry the state must survive a snapshot:
 * load(dump) succeeds and dumps to the same bytes (a follower restoring the
 * snapshot must hold exactly the leader's state). Any difference aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "raft/fsm.h"
#include "raft/fsm_cmd.h"
#include "fuzz_util.h"

/* More entries add little and make single inputs slow. */
#define MAX_ENTRIES 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    return 0;
}

/* A fixed virtual clock: the local lease bookkeeping stays deterministic. */
static uint64_t fixed_now(void *ctx)
{
    return *(const uint64_t *)ctx;
}

static void check_codec(const char *buf, size_t len)
{
    struct fsm_cmd c;
    char err[FSM_TEXT_MAX] = "";
    if (fsm_cmd_decode(buf, len, &c, err, sizeof err) != 0) {
        FUZZ_CHECK(err[0] != '\0', "refused command without a reason");
        return;
    }
    char *e1 = NULL, *e2 = NULL;
    size_t n1 = 0, n2 = 0;
    int rc = fsm_cmd_encode(&c, &e1, &n1, err, sizeof err);
    fsm_cmd_free(&c);
    FUZZ_CHECK(rc == 0, "a decoded %s command does not encode: %s", fsm_op_name(c.op), err);

    struct fsm_cmd c2;
    rc = fsm_cmd_decode(e1, n1, &c2, err, sizeof err);
    FUZZ_CHECK(rc == 0, "encoded command does not decode: %s: %.*s", err, (int)n1, e1);
    rc = fsm_cmd_encode(&c2, &e2, &n2, err, sizeof err);
    fsm_cmd_free(&c2);
    FUZZ_CHECK(rc == 0, "re-decoded command does not encode: %s", err);
    FUZZ_CHECK(n1 == n2 && memcmp(e1, e2, n1) == 0, "encoding not canonical:\n%.*s\n%.*s",
               (int)n1, e1, (int)n2, e2);
    raft_free(e1);
    raft_free(e2);
}

static void check_snapshot(const struct fsm *f, const struct clock_src *clk)
{
    char *d1 = fsm_state_dump(&f->st);
    FUZZ_CHECK(d1 != NULL, "dump failed");
    struct fsm g;
    fsm_init(&g, clk);
    char err[256] = "";
    int rc = fsm_state_load(&g, d1, strlen(d1), err, sizeof err);
    FUZZ_CHECK(rc == 0, "our own snapshot does not load: %s\n%s", err, d1);
    char *d2 = fsm_state_dump(&g.st);
    FUZZ_CHECK(d2 != NULL, "dump of the restored state failed");
    FUZZ_CHECK(strcmp(d1, d2) == 0, "snapshot round trip differs:\n%s\n%s", d1, d2);
    free(d1);
    free(d2);
    fsm_close(&g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t now = 1000000;
    const struct clock_src clk = {fixed_now, &now};
    struct fsm f;
    fsm_init(&f, &clk);

    const char *p = (const char *)data, *end = p + size;
    for (unsigned i = 0; i < MAX_ENTRIES && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl != NULL ? nl : end) - p);
        check_codec(p, len);
        const struct fsm_result *r = fsm_apply_buf(&f, p, len, i + 1);
        FUZZ_CHECK(r != NULL && r->index == i + 1, "no result for entry %u", i + 1);
        FUZZ_CHECK(r->status <= 0, "positive status %d", r->status);
        FUZZ_CHECK(f.st.n_members <= FSM_MAX_MEMBERS && f.st.n_history <= FSM_HISTORY_MAX &&
                       f.st.n_sync <= FSM_MAX_SYNC && f.st.n_rids <= FSM_RID_WINDOW,
                   "state counters out of bounds");
        now += 500;
        p = nl != NULL ? nl + 1 : end;
    }
    /* Once per input, not per entry: a load costs more than the rest of the
     * input together (it copies the whole state), and an entry that breaks
     * the snapshot shows up in the input that stops right after it. */
    check_snapshot(&f, &clk);
    fsm_close(&f);
    return 0;
}
