/* busy_writer: one PostgreSQL session that stays busy writing, for the
 * fencing tests. A fence must stop sessions in the middle of their work, not
 * only idle ones between short statements; each mode models one kind:
 *
 *   busy_writer CONNINFO long-insert SECONDS ROWS_PER_STATEMENT WORK_PER_ROW
 *       INSERT INTO busy_long SELECT ... with an md5 of WORK_PER_ROW copies
 *       of the row number per row: one long statement after another, each
 *       writing as it goes and busy on the CPU. (Not pg_sleep: it waits on
 *       a latch that notices the postmaster's death, which a busy backend
 *       does not.)
 *   busy_writer CONNINFO copy SECONDS ROWS_PER_COPY MS_PER_ROW
 *       COPY busy_copy FROM STDIN, the client sending a row every MS_PER_ROW.
 *   busy_writer CONNINFO pipeline SECONDS MAX_INFLIGHT [PER_SECOND]
 *       libpq pipeline mode: INSERT + Sync after INSERT + Sync, each its own
 *       transaction, up to MAX_INFLIGHT not yet answered, at most PER_SECOND
 *       sent a second (default: as fast as the server answers).
 *
 * Every acknowledged commit is printed as it arrives:
 *   ack MONO N        (MONO: CLOCK_MONOTONIC seconds, the clock of Python's
 *                      time.monotonic(); N: rows that commit made durable)
 * then, when the session ends:
 *   err MONO MESSAGE  (the session broke: a fence or a statement error), or
 *   end MONO          (SECONDS elapsed)
 * A line "ready MONO" comes once the session is connected. The session never
 * reconnects: it is the client a fence must cut. Exit 0 after end or err, 2
 * on bad arguments. Blocking libpq is fine here: this is a test client. */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void say_err(PGconn *c, const char *what)
{
    const char *m = PQerrorMessage(c);
    char line[512];
    snprintf(line, sizeof line, "%s: %s", what, m != NULL && m[0] ? m : "connection lost");
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    printf("err %.6f %s\n", mono(), line);
}

static long arg_long(const char *s, const char *name)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v <= 0) {
        fprintf(stderr, "busy_writer: %s must be a positive integer, not \"%s\"\n", name, s);
        exit(2);
    }
    return v;
}

static int result_ok(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
    if (r == NULL || PQresultStatus(r) != want) {
        if (r != NULL && PQresultErrorMessage(r)[0])
            printf("err %.6f %s: %s", mono(), what, PQresultErrorMessage(r));
        else
            say_err(c, what);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

static int long_insert(PGconn *c, double until, long rows, long work)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO busy_long(v) SELECT g FROM generate_series(1, %ld) g "
             "WHERE md5(repeat(g::text, %ld)) <> ''", rows, work);
    while (mono() < until) {
        if (result_ok(c, PQexec(c, sql), PGRES_COMMAND_OK, "long insert") != 0)
            return -1;
        printf("ack %.6f %ld\n", mono(), rows);
    }
    return 0;
}

static int copy_rows(PGconn *c, double until, long rows, long ms)
{
    while (mono() < until) {
        if (result_ok(c, PQexec(c, "COPY busy_copy(v) FROM STDIN"), PGRES_COPY_IN, "copy") != 0)
            return -1;
        for (long i = 0; i < rows; i++) {
            char row[32];
            int n = snprintf(row, sizeof row, "%ld\n", i);
            if (PQputCopyData(c, row, n) != 1) {
                say_err(c, "copy data");
                return -1;
            }
            if (PQflush(c) != 0) {
                say_err(c, "copy flush");
                return -1;
            }
            sleep_ms(ms);
        }
        if (PQputCopyEnd(c, NULL) != 1) {
            say_err(c, "copy end");
            return -1;
        }
        if (result_ok(c, PQgetResult(c), PGRES_COMMAND_OK, "copy") != 0)
            return -1;
        PGresult *r;
        while ((r = PQgetResult(c)) != NULL)
            PQclear(r);
        printf("ack %.6f %ld\n", mono(), rows);
    }
    return 0;
}

/* Each INSERT is followed by a Sync, so each is its own implicit transaction
 * and commits when the server processes the Sync: a commit is acknowledged
 * when its PGRES_PIPELINE_SYNC arrives (ReadyForQuery), not at the INSERT's
 * own CommandComplete. */
static int pipeline(PGconn *c, double until, long max_inflight, long per_second)
{
    double gap = per_second > 0 ? 1.0 / (double)per_second : 0, next_send = mono();
    if (PQenterPipelineMode(c) != 1 || PQsetnonblocking(c, 1) != 0) {
        say_err(c, "pipeline mode");
        return -1;
    }
    long sent = 0, acked = 0;
    for (;;) {
        double now = mono();
        bool sending = now < until;
        if (!sending && acked == sent)
            return 0;
        bool may_send = sending && sent - acked < max_inflight && now >= next_send;
        if (may_send) {
            next_send = (next_send + gap > now - 1.0 ? next_send : now) + gap;
            char v[32];
            snprintf(v, sizeof v, "%ld", sent + 1);
            const char *params[1] = {v};
            if (PQsendQueryParams(c, "INSERT INTO busy_pipe(v) VALUES ($1::bigint)", 1, NULL,
                                  params, NULL, NULL, 0) != 1 ||
                PQpipelineSync(c) != 1) {
                say_err(c, "pipeline send");
                return -1;
            }
            sent++;
        }
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
        int fl = PQflush(c);
        if (fl < 0) {
            say_err(c, "pipeline flush");
            return -1;
        }
        if (fl > 0)
            p.events |= POLLOUT;
        /* wake for the next send, or for answers */
        int wait_ms = 100;
        if (sending && sent - acked < max_inflight)
            wait_ms = next_send > now ? (int)((next_send - now) * 1000) + 1 : 1;
        if (wait_ms > 100)
            wait_ms = 100;
        int pr = poll(&p, 1, wait_ms);
        if (pr < 0 && errno != EINTR) {
            say_err(c, "poll");
            return -1;
        }
        if (pr > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP))) {
            if (PQconsumeInput(c) != 1) {
                say_err(c, "pipeline read");
                return -1;
            }
        }
        if (!sending && mono() > until + 30) {
            printf("err %.6f pipeline: %ld commits still unanswered 30 s after the end\n", mono(),
                   sent - acked);
            return -1;
        }
        int nulls = 0;
        while (!PQisBusy(c)) {
            PGresult *r = PQgetResult(c);
            if (r == NULL) {
                /* one NULL ends each query's results; two, or none pending, ends what was read */
                if (++nulls >= 2 || acked == sent)
                    break;
                continue;
            }
            nulls = 0;
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_PIPELINE_SYNC) {
                acked++;
                printf("ack %.6f 1\n", mono());
            } else if (st != PGRES_COMMAND_OK) {
                printf("err %.6f pipeline: %s", mono(),
                       PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r) : "result lost\n");
                PQclear(r);
                return -1;
            }
            PQclear(r);
        }
        if (PQstatus(c) == CONNECTION_BAD) {
            say_err(c, "pipeline");
            return -1;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: busy_writer CONNINFO long-insert SECONDS ROWS WORK_PER_ROW\n"
                        "       busy_writer CONNINFO copy SECONDS ROWS MS_PER_ROW\n"
                        "       busy_writer CONNINFO pipeline SECONDS MAX_INFLIGHT [PER_SECOND]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argv[2];
    long seconds = arg_long(argv[3], "SECONDS");
    bool pipe_mode = strcmp(mode, "pipeline") == 0;
    if (!pipe_mode && strcmp(mode, "long-insert") != 0 && strcmp(mode, "copy") != 0) {
        fprintf(stderr, "busy_writer: unknown mode \"%s\" (long-insert, copy, pipeline)\n", mode);
        return 2;
    }
    if (pipe_mode ? (argc != 5 && argc != 6) : argc != 6) {
        fprintf(stderr, "busy_writer: wrong number of arguments for %s\n", mode);
        return 2;
    }
    long a = arg_long(argv[4], pipe_mode ? "MAX_INFLIGHT" : "ROWS");
    long b = pipe_mode ? (argc == 6 ? arg_long(argv[5], "PER_SECOND") : 0)
                       : arg_long(argv[5], strcmp(mode, "copy") == 0 ? "MS_PER_ROW" : "WORK_PER_ROW");
    PGconn *c = PQconnectdb(argv[1]);
    if (PQstatus(c) != CONNECTION_OK) {
        say_err(c, "connect");
        PQfinish(c);
        return 0;
    }
    printf("ready %.6f\n", mono());
    double until = mono() + (double)seconds;
    int rc;
    if (pipe_mode)
        rc = pipeline(c, until, a, b);
    else if (strcmp(mode, "copy") == 0)
        rc = copy_rows(c, until, a, b);
    else
        rc = long_insert(c, until, a, b);
    if (rc == 0)
        printf("end %.6f\n", mono());
    PQfinish(c);
    return 0;
}
