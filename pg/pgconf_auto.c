/* postgresql.auto.conf holds what ALTER SYSTEM and restore tools wrote.
 *
 * Recovery settings there (pgBackRest's restore writes restore_command and
 * recovery_target_*) would override the ones pgwarden manages in
 * postgresql.conf, on this node and on every replica cloned from it. They
 * are removed whenever pgwarden writes its configuration, except while a
 * custom bootstrap method's recovery runs with
 * keep_existing_recovery_conf; Patroni does the same
 * (ConfigHandler._sanitize_auto_conf).
 *
 * The parameters that must be equal on all nodes (pgconf_cluster_only_params)
 * set there would win over the cluster-wide value; Patroni passes them on
 * the postgres command line, which ALTER SYSTEM cannot override. pgwarden
 * removes them before every start instead, naming them in the log: the same
 * effect, and no pending_restart left standing forever by a value the
 * command line would always override. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pg/pgconf_internal.h"

static const char *const recovery_params[] = {
    "restore_command",        "archive_cleanup_command", "recovery_end_command",
    "recovery_target",        "recovery_target_name",    "recovery_target_time",
    "recovery_target_xid",    "recovery_target_lsn",     "recovery_target_inclusive",
    "recovery_target_timeline", "recovery_target_action", "primary_conninfo",
    "primary_slot_name",      "promote_trigger_file",    "recovery_min_apply_delay",
    "standby_mode",           "trigger_file",            NULL,
};

/* The parameter a line sets ("" for a comment or blank line). */
static void line_param(const char *line, size_t len, char *name, size_t namelen)
{
    size_t i = 0, k = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    while (i < len && (isalnum((unsigned char)line[i]) || line[i] == '_' || line[i] == '.') &&
           k + 1 < namelen)
        name[k++] = line[i++];
    name[k] = '\0';
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i >= len || line[i] != '=')
        name[0] = '\0';
}

int pgconf_sanitize_auto_conf(const char *data_dir, bool recovery, char *removed,
                              size_t removed_len, char *errbuf, size_t errlen)
{
    removed[0] = '\0';
    char path[4200];
    snprintf(path, sizeof path, "%s/postgresql.auto.conf", data_dir);
    bool missing = false;
    char *text = pgconf__read_small(path, &missing, errbuf, errlen);
    if (text == NULL)
        return missing ? PGW_OK : PGW_EIO;
    size_t len = strlen(text), out = 0, used = 0;
    char *kept = malloc(len + 1);
    if (kept == NULL) {
        free(text);
        snprintf(errbuf, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    for (size_t pos = 0; pos < len;) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        if (end < len)
            end++;
        char name[64];
        line_param(text + pos, end - pos, name, sizeof name);
        bool drop = false;
        for (const char *const *p = recovery_params; recovery && *p && name[0]; p++)
            if (strcasecmp(name, *p) == 0)
                drop = true;
        for (const char *const *p = pgconf_cluster_only_params; *p && name[0]; p++)
            if (strcasecmp(name, *p) == 0)
                drop = true;
        if (drop) {
            int n = snprintf(removed + used, removed_len - used, "%s%s", used ? ", " : "", name);
            if (n > 0 && (size_t)n < removed_len - used)
                used += (size_t)n;
        } else {
            memcpy(kept + out, text + pos, end - pos);
            out += end - pos;
        }
        pos = end;
    }
    int rc = PGW_OK;
    if (out != len)
        rc = pgconf_write_file(path, kept, out, 0600, errbuf, errlen);
    free(kept);
    free(text);
    return rc;
}
