/* Event-loop busy time: a callback that blocks for 20 ms is one iteration
 * in the (10 ms, 50 ms] bucket, while 60 ms spent waiting for a timer are
 * not busy time; and the bucket boundaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/loopstat.h"

static void block_20ms(uv_timer_t *t)
{
    (void)t;
    uint64_t end = uv_hrtime() + 20 * 1000000ull;
    while (uv_hrtime() < end)
        ;
}

static void nothing(uv_timer_t *t)
{
    (void)t;
}

static void test_blocking_callback_is_counted_waiting_is_not(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct loopstat ls;
    loopstat_start(&loop, &ls);
    assert_true(ls.started);
    uv_timer_t idle, busy;
    uv_timer_init(&loop, &idle);
    uv_timer_init(&loop, &busy);
    uv_timer_start(&idle, nothing, 60, 0);
    uv_timer_start(&busy, block_20ms, 120, 0);
    uint64_t t0 = uv_hrtime();
    uv_run(&loop, UV_RUN_DEFAULT); /* both timers fire, then nothing is left */
    uint64_t wall_ms = (uv_hrtime() - t0) / 1000000;
    assert_true(wall_ms >= 120);
    struct loopstat_counts c;
    loopstat_get(&ls, &c);
    assert_true(c.iterations >= 2);
    /* exactly one iteration above 10 ms: the blocking one (20 ms, or more
     * on a busy machine, but well under the 120 ms of waiting) */
    uint64_t above10 = 0;
    for (size_t i = 5; i < LOOPSTAT_BUCKETS; i++)
        above10 += c.bucket[i];
    assert_int_equal(above10, 1);
    assert_true(c.busy_max_us >= 20000);
    assert_true(c.busy_sum_s >= 0.020);
    assert_true(c.busy_sum_s < (double)wall_ms / 1000.0 - 0.05); /* the waits are not in it */
    loopstat_close(&ls);
    uv_close((uv_handle_t *)&idle, NULL);
    uv_close((uv_handle_t *)&busy, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bucket_bounds(void **state)
{
    (void)state;
    struct loopstat ls;
    memset(&ls, 0, sizeof ls);
    loopstat_record(&ls, 100 * 1000);     /* 100 us: <= 100 us */
    loopstat_record(&ls, 101 * 1000);     /* <= 500 us */
    loopstat_record(&ls, 1000 * 1000);    /* <= 1 ms */
    loopstat_record(&ls, 2000000000ull);  /* 2 s: +Inf */
    assert_int_equal(ls.c.bucket[0], 1);
    assert_int_equal(ls.c.bucket[1], 1);
    assert_int_equal(ls.c.bucket[2], 1);
    assert_int_equal(ls.c.bucket[LOOPSTAT_BUCKETS - 1], 1);
    assert_int_equal(ls.c.iterations, 4);
    assert_int_equal(ls.c.busy_max_us, 2000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocking_callback_is_counted_waiting_is_not),
        cmocka_unit_test(test_bucket_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
