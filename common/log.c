#include "common/log.h"
#include "common/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192

static struct {
    enum log_level level;
    enum log_format format;
    int file_fd;
    log_hook_fn hook;
    void *hook_ctx;
    bool quiet;
} g_log = {LOGL_INFO, LOGF_PLAIN, -1, NULL, NULL, false};

static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

const char *log_level_name(enum log_level l)
{
    return (l >= LOGL_DEBUG && l <= LOGL_ERROR) ? level_names[l] : "?";
}

int log_level_parse(const char *s, enum log_level *out)
{
    static const struct { const char *name; enum log_level l; } map[] = {
        {"debug", LOGL_DEBUG}, {"info", LOGL_INFO}, {"warning", LOGL_WARN},
        {"warn", LOGL_WARN},   {"error", LOGL_ERROR}, {"critical", LOGL_ERROR},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcasecmp(s, map[i].name) == 0) {
            *out = map[i].l;
            return PGW_OK;
        }
    }
    return PGW_EINVAL;
}

bool log_enabled(enum log_level l)
{
    return !g_log.quiet && l >= g_log.level;
}

void log_set_quiet(bool quiet)
{
    g_log.quiet = quiet;
}

int log_configure(const struct log_settings *s)
{
    g_log.level = s->level;
    g_log.format = s->format;
    int fd = -1;
    if (s->dir != NULL && s->dir[0] != '\0') {
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/pgwarden.log", s->dir);
        if (n < 0 || (size_t)n >= sizeof path) {
            log_error("log", "log.dir is too long: %s", s->dir);
            return PGW_EINVAL;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0) {
            log_error("log", "cannot open log file %s: %s", path, strerror(errno));
            return PGW_EIO;
        }
    }
    if (g_log.file_fd >= 0)
        close(g_log.file_fd);
    g_log.file_fd = fd;
    return PGW_OK;
}

void log_shutdown(void)
{
    if (g_log.file_fd >= 0)
        close(g_log.file_fd);
    g_log.file_fd = -1;
}

void log_set_hook(log_hook_fn fn, void *ctx)
{
    g_log.hook = fn;
    g_log.hook_ctx = ctx;
}

static size_t fmt_timestamp(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000L);
    return n + (m > 0 ? (size_t)m : 0);
}

/* JSON string escaping for the message; control bytes become \u00XX. */
static size_t json_escape(char *dst, size_t cap, const char *src)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p && o + 7 < cap; p++) {
        switch (*p) {
        case '"': dst[o++] = '\\'; dst[o++] = '"'; break;
        case '\\': dst[o++] = '\\'; dst[o++] = '\\'; break;
        case '\n': dst[o++] = '\\'; dst[o++] = 'n'; break;
        case '\t': dst[o++] = '\\'; dst[o++] = 't'; break;
        case '\r': dst[o++] = '\\'; dst[o++] = 'r'; break;
        default:
            if (*p < 0x20)
                o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", *p);
            else
                dst[o++] = (char)*p;
        }
    }
    dst[o] = '\0';
    return o;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a logging failure */
        }
        buf += w;
        len -= (size_t)w;
    }
}

void log_vwrite(enum log_level l, const char *module, const char *fmt, va_list ap)
{
    if (!log_enabled(l) && g_log.hook == NULL)
        return;
    char msg[LOG_LINE_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (g_log.hook != NULL)
        g_log.hook(l, module, msg, g_log.hook_ctx);
    if (!log_enabled(l))
        return;

    char ts[40];
    fmt_timestamp(ts, sizeof ts);
    char line[LOG_LINE_MAX * 2 + 128];
    int n;
    if (g_log.format == LOGF_JSON) {
        char esc[LOG_LINE_MAX * 2];
        json_escape(esc, sizeof esc, msg);
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"level\":\"%s\",\"module\":\"%s\",\"message\":\"%s\"}\n",
                     ts, log_level_name(l), module, esc);
    } else {
        n = snprintf(line, sizeof line, "%s %-7s [%s] %s\n", ts, log_level_name(l), module, msg);
    }
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (line[len - 1] != '\n')
        line[len - 1] = '\n';
    write_all(STDERR_FILENO, line, len);
    if (g_log.file_fd >= 0)
        write_all(g_log.file_fd, line, len);
}

void log_write(enum log_level l, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(l, module, fmt, ap);
    va_end(ap);
}
