/* Logging: one line per event, to stderr (journald-friendly) and optionally
 * to a file in log.dir. Every line carries an ISO-8601 UTC timestamp with
 * milliseconds, the level and the module that spoke.
 *
 * The sink is process-wide (like syslog): logging must work before the
 * configuration is read and from every module without threading a handle
 * through each call. Its settings are applied explicitly by log_configure(). */
#ifndef PGW_LOG_H
#define PGW_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOGL_DEBUG = 0, LOGL_INFO, LOGL_WARN, LOGL_ERROR };
enum log_format { LOGF_PLAIN = 0, LOGF_JSON };

struct log_settings {
    enum log_level level;
    enum log_format format;
    const char *dir; /* NULL or "": no file */
};

/* Apply settings; opens (or reopens, for rotation) <dir>/pgwarden.log.
 * Returns 0, or a negative status with the reason logged to stderr. */
int log_configure(const struct log_settings *s);
void log_shutdown(void);

/* Parse "debug|info|warning|warn|error|critical" (case-insensitive). */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level l);

bool log_enabled(enum log_level l);

void log_write(enum log_level l, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(enum log_level l, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Tests capture lines through a hook; NULL restores normal output. */
typedef void (*log_hook_fn)(enum log_level l, const char *module, const char *msg, void *ctx);
void log_set_hook(log_hook_fn fn, void *ctx);
/* Write nothing (a hook still sees every line): `pgwarden validate` turns
 * what the checks it shares with run log into its own warnings. */
void log_set_quiet(bool quiet);

#define log_debug(mod, ...) do { if (log_enabled(LOGL_DEBUG)) log_write(LOGL_DEBUG, (mod), __VA_ARGS__); } while (0)
#define log_info(mod, ...) log_write(LOGL_INFO, (mod), __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOGL_WARN, (mod), __VA_ARGS__)
#define log_error(mod, ...) log_write(LOGL_ERROR, (mod), __VA_ARGS__)

#endif
