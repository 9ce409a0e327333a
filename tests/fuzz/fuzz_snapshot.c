/* Fuzz snapshot restore (issue 6): fsm_state_load takes arbitrary bytes
 * (a snapshot file or an InstallSnapshot from a peer running other code)
 * without a crash, a leak, or a state it cannot reproduce: whenever a load
 * succeeds, dump -> load -> dump gives identical bytes, and a failed load
 * leaves the previous state untouched. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/fsm.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    return 0;
}

static uint64_t fixed_now(void *ctx)
{
    return *(const uint64_t *)ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t now = 1000000;
    const struct clock_src clk = {fixed_now, &now};
    struct fsm f;
    fsm_init(&f, &clk);
    char *before = fsm_state_dump(&f.st);
    FUZZ_CHECK(before != NULL, "dump of the empty state failed");

    char err[256] = "";
    int rc = fsm_state_load(&f, (const char *)data, size, err, sizeof err);
    char *d1 = fsm_state_dump(&f.st);
    FUZZ_CHECK(d1 != NULL, "dump failed");
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0', "refused snapshot without a reason (%d)", rc);
        FUZZ_CHECK(strcmp(before, d1) == 0, "a refused snapshot changed the state");
    } else {
        FUZZ_CHECK(f.st.n_members <= FSM_MAX_MEMBERS && f.st.n_history <= FSM_HISTORY_MAX &&
                       f.st.n_sync <= FSM_MAX_SYNC && f.st.n_rids <= FSM_RID_WINDOW,
                   "loaded state counters out of bounds");
        struct fsm g;
        fsm_init(&g, &clk);
        rc = fsm_state_load(&g, d1, strlen(d1), err, sizeof err);
        FUZZ_CHECK(rc == 0, "dump of a loaded snapshot does not load: %s\n%s", err, d1);
        char *d2 = fsm_state_dump(&g.st);
        FUZZ_CHECK(d2 != NULL, "dump failed");
        FUZZ_CHECK(strcmp(d1, d2) == 0, "dump/load/dump differs:\n%s\n%s", d1, d2);
        free(d2);
        fsm_close(&g);
    }
    free(before);
    free(d1);
    fsm_close(&f);
    return 0;
}
