/* The backup section's rules beyond what the key table checks: with backup
 * on, pgwarden owns archive_mode, archive_command and restore_command
 * (pg/pgbackrest.c writes them), so a node that also sets them would run
 * with a silent difference; it is refused instead, naming the key. */
#include <string.h>
#include <strings.h>

#include "common/cfg_internal.h"

static const struct ynode *seen(const struct cfg__walk *w, const char *path)
{
    const struct cfg_key *k = cfg__key_find(path);
    return k != NULL ? w->seen[k - cfg__keys] : NULL;
}

static int refuse_owned(struct cfg__walk *w, const struct cfg_kvlist *l, const char *section,
                        const char *const *names)
{
    for (size_t i = 0; i < l->n; i++)
        for (const char *const *n = names; *n != NULL; n++)
            if (strcasecmp(l->items[i].key, *n) == 0) {
                char path[128];
                snprintf(path, sizeof path, "%s.%s", section, *n);
                cfg__error(w->err, w->file, seen(w, section), path,
                           "set by pgwarden when backup.method is pgbackrest (it archives to "
                           "and restores from the backup repository); remove it here, or "
                           "remove the backup section to manage archiving yourself");
                return PGW_EINVAL;
            }
    return PGW_OK;
}

int cfg__backup_finalize(struct cfg__walk *w)
{
    struct cfg *c = w->c;
    struct cfg_backup *b = &c->backup;
    if (!cfg_backup_enabled(b) || c->witness)
        return PGW_OK;
    static const char *const params[] = {"archive_mode", "archive_command", "archive_library",
                                         NULL};
    static const char *const recovery[] = {"restore_command", NULL};
    int rc = refuse_owned(w, &c->postgresql.parameters, "postgresql.parameters", params);
    if (rc == PGW_OK)
        rc = refuse_owned(w, &c->postgresql.recovery_conf, "postgresql.recovery_conf", recovery);
    if (rc != PGW_OK)
        return rc;
    if (b->command == NULL || b->command[0] != '/') {
        cfg__error(w->err, w->file, seen(w, "backup.command"), "backup.command",
                   "must be an absolute path");
        return PGW_EINVAL;
    }
    for (size_t i = 0; i < b->options.n; i++) {
        const char *o = b->options.items[i];
        size_t klen = strcspn(o, "=");
        if (o[klen] != '=' || strspn(o, "abcdefghijklmnopqrstuvwxyz0123456789-") != klen ||
            strpbrk(o, "\n\r") != NULL) {
            /* the name only: the value may be a secret (repo1-cipher-pass) */
            char q[80];
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(klen < 63 ? klen : 63), o);
            cfg__quote(name, q, sizeof q);
            cfg__error(w->err, w->file, seen(w, "backup.options"), "backup.options",
                       "option %s: expected `name: value` with a pgBackRest option name (lower "
                       "case, digits, '-') and a one-line value", q);
            return PGW_EINVAL;
        }
    }
    if (b->stanza == NULL && (b->stanza = strdup(c->scope)) == NULL) {
        cfg__error(w->err, w->file, NULL, NULL, "out of memory");
        return PGW_ENOMEM;
    }
    return PGW_OK;
}
