/* One table of status codes for all of pgwarden: 0 is success, failures are
 * negative. A module keeps the human-readable detail on its own object; the
 * code only says which class of failure happened, so callers can branch. */
#ifndef PGW_STATUS_H
#define PGW_STATUS_H

#define PGW_MUST_CHECK __attribute__((warn_unused_result))

enum {
    PGW_OK = 0,
    PGW_ENOMEM = -1,      /* allocation failed */
    PGW_EINVAL = -2,      /* bad input: config, request, command */
    PGW_EIO = -3,         /* file system or socket error */
    PGW_ETIMEDOUT = -4,   /* a deadline passed */
    PGW_ENOTLEADER = -5,  /* needs the Raft leader; retry there */
    PGW_EBUSY = -6,       /* another operation of the same kind is running */
    PGW_ENOTFOUND = -7,   /* no such member, key, file */
    PGW_ECONFLICT = -8,   /* state changed under the request (stale epoch, duplicate) */
    PGW_ECANCELED = -9,   /* the operation was cancelled (shutdown, superseded) */
    PGW_EUNAVAIL = -10,   /* not possible right now (no quorum, no leader, PG down) */
    PGW_EREFUSED = -11,   /* refused by policy (not eligible, unauthorized) */
    PGW_EPROTO = -12,     /* peer spoke an unexpected protocol or format */
    PGW_ECHILD = -13,     /* a child process failed */
};

/* Short English name of a status code; never NULL. */
const char *pgw_strerror(int status);

#endif
