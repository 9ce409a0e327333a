/* A YAML document as a small tree that remembers where every key and value
 * came from (1-based line and column), built from libyaml's event API.
 *
 * Why our own tree rather than libyaml's document API: we need the marks of
 * keys, hard limits enforced while parsing (size, depth, node count with
 * aliases expanded, so a "billion laughs" file fails fast), duplicate-key
 * detection and errors phrased as "file:line:col: key.path: what". Internal
 * to the configuration module (common/cfg*.c) and to `pgwarden
 * convert-patroni` (cmd/convert_patroni.c), which reads a Patroni file with
 * the same parser and turns it into JSON to rewrite it. */
#ifndef PGW_YAML_TREE_H
#define PGW_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "common/cfg.h"
#include "common/status.h"

#define YTREE_MAX_BYTES (1024u * 1024u)
#define YTREE_MAX_DEPTH 32
#define YTREE_MAX_NODES 100000u
#define YTREE_MAX_ANCHORS 1000u

enum ynode_kind { YN_SCALAR, YN_SEQ, YN_MAP };

struct ynode {
    enum ynode_kind kind;
    bool plain;     /* scalar written without quotes or !!str: may be a bool/number/null */
    bool borrowed;  /* alias copy: shares text and items with its anchor */
    int line, col;  /* 1-based; 0 when not from a file (JSON, environment) */
    char *text;     /* scalar text, NUL-terminated (NUL bytes are refused) */
    size_t len;
    struct ynode **items; /* SEQ: the items; MAP: key, value, key, value, ... */
    size_t n, cap;        /* number of entries in items (MAP: 2 * pairs) */
    size_t weight;        /* nodes in this subtree, aliases expanded */
    struct ynode *next_alloc;
};

struct ytree {
    struct ynode *root; /* NULL for an empty stream */
    struct ynode *all;  /* every node, for ytree_free */
};

/* Parse one YAML document. `name` is the file name used in messages. On
 * failure fills err ("name:line:col: [key.path: ]what") and returns
 * PGW_EINVAL (or PGW_ENOMEM); *out is then empty. */
int ytree_parse(const char *name, const char *buf, size_t len, struct ytree *out,
                struct cfg_error *err) PGW_MUST_CHECK;

/* Build a tree from JSON (positions 0): strings become quoted scalars,
 * numbers/booleans/null plain scalars, so the same value parsers serve
 * YAML and JSON. */
int ytree_from_json(const json_t *j, struct ytree *out) PGW_MUST_CHECK;

/* The tree as JSON: plain scalars resolved as PyYAML (and so Patroni)
 * resolves them (jy_scalar: `30` a number, `on` a boolean), quoted ones as
 * strings; mapping keys as text, in file order; a mapping key that is not a
 * scalar fails. NULL when out of memory or on such a key. */
json_t *ytree_to_json(const struct ynode *n);

void ytree_free(struct ytree *t);

/* Plain "", "~", "null" (any case). */
bool ynode_is_null(const struct ynode *n);
/* "a list", "a mapping" or "a scalar", for messages. */
const char *ynode_kind_name(const struct ynode *n);

#endif
