/* <raft.data_dir>/pgwarden-node.json: which node and cluster this Raft data
 * directory belongs to, and how it entered the cluster. Written durably
 * (temp file, fsync, rename, fsync of the directory). */
#ifndef PGW_RAFT_NODE_FILE_H
#define PGW_RAFT_NODE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define NODE_FILE_NAME "pgwarden-node.json"

enum node_mode { NODE_MODE_BOOTSTRAP = 1, NODE_MODE_JOIN };

struct node_file {
    uint64_t id;
    char name[64];
    char scope[256];
    enum node_mode mode;
};

/* 0 and *found=false when absent; PGW_EINVAL with err when unreadable. */
int node_file_read(const char *dir, struct node_file *out, bool *found, char *err, size_t errlen)
    PGW_MUST_CHECK;
int node_file_write(const char *dir, const struct node_file *nf, char *err, size_t errlen)
    PGW_MUST_CHECK;

/* Write `data` to dir/name durably. Shared helper for small state files. */
int durable_write(const char *dir, const char *name, const char *data, size_t len, char *err,
                  size_t errlen) PGW_MUST_CHECK;

#endif
