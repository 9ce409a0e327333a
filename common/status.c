#include "common/status.h"

const char *pgw_strerror(int status)
{
    switch (status) {
    case PGW_OK: return "success";
    case PGW_ENOMEM: return "out of memory";
    case PGW_EINVAL: return "invalid input";
    case PGW_EIO: return "I/O error";
    case PGW_ETIMEDOUT: return "timed out";
    case PGW_ENOTLEADER: return "not the Raft leader";
    case PGW_EBUSY: return "busy";
    case PGW_ENOTFOUND: return "not found";
    case PGW_ECONFLICT: return "conflict";
    case PGW_ECANCELED: return "canceled";
    case PGW_EUNAVAIL: return "unavailable";
    case PGW_EREFUSED: return "refused";
    case PGW_EPROTO: return "protocol error";
    case PGW_ECHILD: return "child process failed";
    default: return "unknown error";
    }
}
