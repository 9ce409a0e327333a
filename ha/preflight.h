/* Start-up checks shared by `pgwarden validate` and `pgwarden run`: what run
 * and the modules it starts (log, Raft, the fence keeper, the REST server,
 * TLS, PostgreSQL's programs, the watchdog, backups) need of this machine
 * for the configuration to start, checked without changing anything. run
 * calls it before it touches the disk; validate after loading the file, so a
 * file validate accepts never fails run for a reason the file and this
 * machine show. Each check calls the module's own checker (the one its start
 * path uses), so both commands give the same message.
 *
 * What holds only at the moment (a port in use, another pgwarden holding the
 * raft.data_dir lock) is looked at only with PREFLIGHT_NOW and only warned
 * about: run meets it for real when it binds and locks.
 *
 * Permission checks use access(2): they answer for the user running the
 * command (validate as root says nothing about the postgres user). */
#ifndef PGW_HA_PREFLIGHT_H
#define PGW_HA_PREFLIGHT_H

#include <stddef.h>

#include "common/cfg.h"
#include "common/status.h"

#define PREFLIGHT_NOW 0x1 /* also warn about busy ports and a held lock */

/* 0 when this configuration can start here; otherwise PGW_EINVAL (or
 * PGW_ENOMEM) with the first problem in err: "<file>: <key> ...: <what>".
 * Warnings (a watchdog that automatic mode will go without; with
 * PREFLIGHT_NOW, what is busy now) are appended to *warn. */
int preflight_check(const struct cfg *c, unsigned flags, struct cfg_warnings *warn, char *err,
                    size_t errlen) PGW_MUST_CHECK;

/* run only, after preflight_check: create the missing parent directories
 * of postgresql.data_dir (mode 0700, as initdb and pg_basebackup create
 * them under Patroni). 0, or PGW_EIO with the reason in err. */
int preflight_make_data_dir_parents(const struct cfg *c, char *err,
                                    size_t errlen) PGW_MUST_CHECK;

#endif
