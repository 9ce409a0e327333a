/* Event-loop busy time per iteration (see loopstat.h). */
#include "common/loopstat.h"

#include <string.h>

#include "common/log.h"

void loopstat_record(struct loopstat *ls, uint64_t busy_ns)
{
    static const uint64_t bounds[] = LOOPSTAT_BOUNDS_US;
    uint64_t us = busy_ns / 1000;
    size_t i = 0;
    while (i < sizeof bounds / sizeof bounds[0] && us > bounds[i])
        i++;
    ls->c.bucket[i]++;
    ls->c.iterations++;
    ls->c.busy_sum_s += (double)busy_ns / 1e9;
    if (us > ls->c.busy_max_us)
        ls->c.busy_max_us = us;
}

static void on_check(uv_check_t *h)
{
    struct loopstat *ls = h->data;
    uint64_t now = uv_hrtime();
    uint64_t idle = uv_metrics_idle_time(h->loop);
    if (ls->last_ns != 0) {
        uint64_t wall = now - ls->last_ns;
        uint64_t waited = idle - ls->last_idle_ns;
        uint64_t busy = wall > waited ? wall - waited : 0;
        loopstat_record(ls, busy);
        uint64_t ms = now / 1000000;
        if (busy / 1000000 >= LOOPSTAT_WARN_MS &&
            (ls->last_warn_ms == 0 || ms - ls->last_warn_ms >= LOOPSTAT_WARN_EVERY_MS)) {
            ls->last_warn_ms = ms;
            log_warn("main", "the event loop was busy for %llu ms without waiting for I/O: "
                     "health probes, Raft and lease renewals waited as long (a blocking step, "
                     "or the machine did not run pgwarden)", (unsigned long long)(busy / 1000000));
        }
    }
    ls->last_ns = now;
    ls->last_idle_ns = idle;
}

void loopstat_start(uv_loop_t *loop, struct loopstat *ls)
{
    memset(ls, 0, sizeof *ls);
    int rc = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
    if (rc != 0) {
        /* without idle-time accounting every iteration would look busy */
        log_warn("main", "event loop busy time not measured: %s", uv_strerror(rc));
        return;
    }
    ls->started = true;
    uv_check_init(loop, &ls->check);
    ls->check.data = ls;
    uv_check_start(&ls->check, on_check);
    uv_unref((uv_handle_t *)&ls->check); /* never keeps the loop alive on its own */
}

void loopstat_close(struct loopstat *ls)
{
    if (ls->started && !uv_is_closing((uv_handle_t *)&ls->check))
        uv_close((uv_handle_t *)&ls->check, NULL);
}

void loopstat_get(const struct loopstat *ls, struct loopstat_counts *out)
{
    *out = ls->c;
}
