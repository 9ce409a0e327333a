/* cpu_stall: how often, and for how long, this machine stops running a
 * process that wants to run. A floor under any latency figure taken here.
 *
 *   cpu_stall SECONDS [CPU...]
 *
 * For each CPU (default: every CPU this process may run on), in turn: pin
 * to it and spin for SECONDS reading CLOCK_MONOTONIC. Two successive reads
 * are normally tens of nanoseconds apart; a gap is time the process was not
 * running: the hypervisor running another guest (steal), an interrupt, a
 * kernel thread or another task on that CPU. A server whose event loop is
 * stalled that way answers late whatever its code does, so a probe p99
 * measured on a CPU that stalls more than 1 % of a second's worth of
 * requests cannot be under the stall length.
 *
 * Output, one line per CPU: gaps longer than 0.1, 1, 5 and 10 ms, the
 * longest, the total time lost, and the steal time the kernel accounted on
 * that CPU meanwhile (/proc/stat, when it has the column). Exit 0; 2 on bad
 * arguments (with the reason); 1 when a CPU cannot be used. */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* steal ticks (USER_HZ) of one CPU from /proc/stat; -1 when unknown */
static long long steal_ticks(int cpu)
{
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return -1;
    char line[512], want[32];
    snprintf(want, sizeof want, "cpu%d ", cpu);
    long long out = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, want, strlen(want)) != 0)
            continue;
        long long v[8];
        if (sscanf(line + strlen(want), "%lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
            out = v[7];
        break;
    }
    fclose(f);
    return out;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int measure(int cpu, long secs)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        fprintf(stderr, "cpu_stall: cannot run on CPU %d: %s\n", cpu, strerror(errno));
        return -1;
    }
    static const uint64_t bounds[] = {100000, 1000000, 5000000, 10000000};
    uint64_t over[4] = {0}, worst = 0, lost = 0;
    long long steal0 = steal_ticks(cpu);
    uint64_t start = now_ns(), end = start + (uint64_t)secs * 1000000000u, prev = start;
    for (uint64_t t = start; t < end; prev = t) {
        t = now_ns();
        uint64_t gap = t - prev;
        if (gap < bounds[0])
            continue;
        lost += gap;
        if (gap > worst)
            worst = gap;
        for (int i = 0; i < 4; i++)
            if (gap > bounds[i])
                over[i]++;
    }
    long long steal1 = steal_ticks(cpu);
    char steal[64] = "steal n/a";
    long hz = sysconf(_SC_CLK_TCK);
    if (steal0 >= 0 && steal1 >= steal0 && hz > 0)
        snprintf(steal, sizeof steal, "steal %.0f ms", (double)(steal1 - steal0) * 1000.0 / hz);
    printf("cpu %d: %ld s, gaps > 0.1 ms %" PRIu64 ", > 1 ms %" PRIu64 " (%.1f/s), > 5 ms %" PRIu64
           ", > 10 ms %" PRIu64 "; longest %.2f ms; lost %.1f ms (%.2f %%); %s\n",
           cpu, secs, over[0], over[1], (double)over[1] / (double)secs, over[2], over[3],
           (double)worst / 1e6, (double)lost / 1e6, (double)lost / ((double)secs * 1e7), steal);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    long secs;
    if (argc < 2 || parse_int(argv[1], 1, 600, &secs) != 0) {
        fprintf(stderr, "usage: cpu_stall SECONDS [CPU...]  (SECONDS: a whole number from 1 to 600%s%s)\n",
                argc >= 2 ? "; got " : "", argc >= 2 ? argv[1] : "");
        return 2;
    }
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
        fprintf(stderr, "cpu_stall: sched_getaffinity: %s\n", strerror(errno));
        return 1;
    }
    int cpus[CPU_SETSIZE], n = 0;
    if (argc > 2) {
        for (int i = 2; i < argc; i++) {
            long c;
            if (parse_int(argv[i], 0, CPU_SETSIZE - 1, &c) != 0 || !CPU_ISSET((int)c, &allowed)) {
                fprintf(stderr, "cpu_stall: %s is not a CPU this process may run on\n", argv[i]);
                return 2;
            }
            cpus[n++] = (int)c;
        }
    } else {
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &allowed))
                cpus[n++] = c;
    }
    for (int i = 0; i < n; i++)
        if (measure(cpus[i], secs) != 0)
            return 1;
    return 0;
}
