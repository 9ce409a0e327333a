/* cfg_print_reference: docs/configuration.md, printed from the key table so
 * the documented types, defaults and reload behaviour are the ones the code
 * applies. Regenerate with
 *     pgwarden validate --print-reference > docs/configuration.md */
#include <stdio.h>
#include <string.h>

#include "common/cfg_internal.h"

static const char intro[] =
    "# pgwarden configuration reference\n"
    "\n"
    "<!-- Generated from the key table in common/cfg_schema.c by\n"
    "     `pgwarden validate --print-reference > docs/configuration.md`.\n"
    "     Do not edit by hand: a unit test fails when this file and the table differ. -->\n"
    "\n"
    "pgwarden reads one YAML file per node (`pgwarden run -c FILE`). Check a file with\n"
    "`pgwarden validate -c FILE`: it prints nothing and exits 0 when the file is valid,\n"
    "prints the first error and exits 1 otherwise. Keys follow Patroni's wherever the\n"
    "meaning is the same, so a Patroni configuration can be brought over by replacing its\n"
    "`etcd:` (or `consul:`, `zookeeper:`, `kubernetes:`, ...) section with `raft:`.\n"
    "[patroni-settings.md](patroni-settings.md) goes through every key of Patroni's\n"
    "settings and says which pgwarden treats the same way, which differently (and how)\n"
    "and which it refuses (and why).\n"
    "\n"
    "## Minimal example\n"
    "\n"
    "```yaml\n"
    "scope: demo\n"
    "name: node1\n"
    "raft:\n"
    "  self_addr: 10.0.0.1:5010\n"
    "  partner_addrs: [10.0.0.2:5010, 10.0.0.3:5010]\n"
    "  data_dir: /var/lib/pgwarden/raft\n"
    "postgresql:\n"
    "  listen: 0.0.0.0:5432\n"
    "  data_dir: /var/lib/postgresql/15/main\n"
    "```\n"
    "\n"
    "## How the file is read\n"
    "\n"
    "- Errors read `<file>:<line>:<col>: <key.path>: <what was wrong>`, e.g.\n"
    "  `pgwarden.yml:12:11: postgresql.listen: expected host:port, got \"5432\"`.\n"
    "  pgwarden stops at the first error.\n"
    "- Unknown keys are warnings, not errors: `<file>:<line>:<col>: unknown key <path> (ignored)`.\n"
    "- The file must be UTF-8, at most 1 MiB, nested at most 32 levels deep and hold at most\n"
    "  100000 nodes, counting every alias expanded (so a \"billion laughs\" file is refused\n"
    "  at once). Anchors and aliases are allowed; merge keys (`<<`) are not. A key given twice\n"
    "  in one mapping is an error, and so is a key given under both its names (an alias such\n"
    "  as `post_init`).\n"
    "- A key written without a value (`ttl:`) keeps its default.\n"
    "- A relative path (the keys of type *path*) is resolved against the working directory\n"
    "  of the command that reads the file (`pgwarden run`, `pgwarden validate`, `pgwarden ctl`)\n"
    "  as the file is read, as Patroni resolves it (its example has `data_dir:\n"
    "  data/postgresql0`): run `validate` from the directory `run` starts in. Under systemd\n"
    "  that is `/` unless the unit sets `WorkingDirectory=`. A leading `./` and trailing `/`\n"
    "  are dropped; `..` and symbolic links are kept. Commands (callbacks, `post_bootstrap`,\n"
    "  methods) are not paths.\n"
    "- Passwords are never printed: not in errors, warnings, diffs or logs.\n"
    "\n"
    "Value types:\n"
    "\n"
    "| Type | Written as |\n"
    "|---|---|\n"
    "| duration | seconds, decimals allowed (`0.5`), or with a unit: `ms`, `s`, `min`, `h`, `d` (`30min`); never negative |\n"
    "| size | bytes, or with a unit `kB`, `MB`, `GB`, `TB` (1024-based, PostgreSQL's spelling: `100MB`) |\n"
    "| boolean | `true`/`false`, `yes`/`no`, `on`/`off`, in any case |\n"
    "| name | 1 to 63 characters from `A-Z a-z 0-9 _ . -` |\n"
    "| host:port | host is a name, an IPv4 address or `[IPv6]`; port 1 to 65535 |\n"
    "| path | a file or directory; a relative one is resolved against the working directory |\n"
    "| a.b.c.d:port | an IPv4 address and a port (libraft accepts nothing else) |\n"
    "\n"
    "The *Changes* column says when a new value takes effect: **restart** (of pgwarden on\n"
    "that node), **reload** (SIGHUP or `POST /reload`), **cluster-wide (PATCH /config)**\n"
    "(the dynamic configuration held in Raft: `bootstrap.dcs` seeds it when the cluster is\n"
    "created and later edits in the file are ignored; use `pgwarden ctl edit-config`),\n"
    "**bootstrap only** (used once, when the cluster is created), **ctl** (read by each\n"
    "`pgwarden ctl` command).\n"
    "\n"
    "Timing rule (Patroni's, checked for the file and for every PATCH /config):\n"
    "`loop_wait + 2*retry_timeout <= ttl`. Unlike Patroni, pgwarden refuses a\n"
    "configuration that breaks it instead of silently lowering loop_wait or retry_timeout.\n"
    "\n"
    "What a node is: a node with a `postgresql` section runs PostgreSQL; a node without one,\n"
    "or with `witness: true`, is a witness (a Raft voter only). `raft.partner_addrs` lists\n"
    "the other nodes and must not contain `raft.self_addr`.\n";

static const char *change_text(enum cfg_change c)
{
    switch (c) {
    case CH_RELOAD: return "reload";
    case CH_CLUSTER: return "cluster-wide (PATCH /config)";
    case CH_BOOTSTRAP: return "bootstrap only";
    case CH_CLIENT: return "ctl";
    default: return "restart";
    }
}

/* Markdown table cell: '|' must be escaped. */
static void cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', out);
        fputc(*s, out);
    }
}

static void choices_cell(FILE *out, const char *choices)
{
    const char *p = choices;
    bool first = true;
    while (p != NULL && *p != '\0') {
        const char *bar = strchr(p, '|');
        int len = bar ? (int)(bar - p) : (int)strlen(p);
        fprintf(out, "%s`%.*s`", first ? "" : ", ", len, p);
        first = false;
        p = bar ? bar + 1 : NULL;
    }
}

static void type_cell(FILE *out, const struct cfg_key *k)
{
    char lo[32], hi[32];
    switch (k->type) {
    case KT_STR: fputs((k->flags & KF_PATH) ? "path" : "string", out); break;
    case KT_IDENT: fputs("name", out); break;
    case KT_CHOICE: choices_cell(out, k->choices); break;
    case KT_BOOL: fputs("boolean", out); break;
    case KT_DURATION:
        fputs("duration", out);
        cfg__fmt_seconds((uint64_t)(k->min > 0 ? k->min : 0), lo, sizeof lo);
        cfg__fmt_seconds((uint64_t)(k->max > 0 ? k->max : 0), hi, sizeof hi);
        if ((k->flags & KF_MIN) && (k->flags & KF_MAX))
            fprintf(out, ", %s to %s s", lo, hi);
        else if (k->flags & KF_MIN)
            fprintf(out, ", at least %s s", lo);
        break;
    case KT_UINT:
    case KT_INT:
        fputs("integer", out);
        if ((k->flags & KF_MIN) && (k->flags & KF_MAX))
            fprintf(out, ", %lld to %lld", k->min, k->max);
        else if (k->flags & KF_MIN)
            fprintf(out, ", at least %lld", k->min);
        break;
    case KT_SIZE: fputs("size", out); break;
    case KT_LAG: fputs("size, or -1", out); break;
    case KT_HOSTPORT: fputs("host:port", out); break;
    case KT_PGLISTEN: fputs("host:port, or host1,host2:port", out); break;
    case KT_IPV4: fputs("a.b.c.d:port", out); break;
    case KT_IPV4LIST: fputs("list of a.b.c.d:port", out); break;
    case KT_STRLIST:
        if (k->choices != NULL) {
            fputs("list of ", out);
            choices_cell(out, k->choices);
        } else {
            fputs("list of strings", out);
        }
        break;
    case KT_PARAMS: fputs("mapping name: value", out); break;
    case KT_OPTIONS: fputs("list of options", out); break;
    case KT_SYNCMODE: fputs("`off`, `on`, `quorum`", out); break;
    case KT_WDMODE: fputs("`off`, `automatic`, `required`", out); break;
    case KT_LOGLEVEL: fputs("`debug`, `info`, `warning`, `error`, `critical`", out); break;
    case KT_LOGFORMAT: fputs("`plain`, `json`", out); break;
    case KT_SLOTS: fputs("mapping slot name: {type, database, plugin}", out); break;
    case KT_SLOTMATCH: fputs("list of {name, type, database, plugin}", out); break;
    case KT_USERS: fputs("mapping user name: {password, options}", out); break;
    case KT_SECTION: fputs("mapping", out); break;
    }
}

static void default_cell(FILE *out, const struct cfg_key *k)
{
    if (k->def != NULL) {
        fputc('`', out);
        cell(out, k->def);
        fputc('`', out);
    } else if (k->def_doc != NULL) {
        cell(out, k->def_doc);
    } else if (k->flags & KF_REQUIRED) {
        fputs("**required**", out);
    } else if (k->flags & KF_REQUIRED_PG) {
        fputs("**required** on a PostgreSQL node", out);
    } else {
        fputs("none", out);
    }
}

static void table_head(FILE *out)
{
    fputs("| Key | Type | Default | Changes | Description |\n|---|---|---|---|---|\n", out);
}

void cfg_print_reference(FILE *out)
{
    fputs(intro, out);
    fputs("\n## Top level\n\n", out);
    table_head(out);
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (k->type == KT_SECTION) {
            if (strchr(k->path, '.') == NULL) {
                fprintf(out, "\n## `%s`\n\n", k->path);
                if (k->doc != NULL) {
                    fputs(k->doc, out);
                    fputs("\n\n", out);
                }
                table_head(out);
            }
            continue;
        }
        fprintf(out, "| `%s`", k->path);
        if (k->alias != NULL)
            fprintf(out, " (%s `%s`)", (k->flags & KF_LEGACY) ? "legacy name" : "also",
                    k->alias);
        fputs(" | ", out);
        type_cell(out, k);
        fputs(" | ", out);
        default_cell(out, k);
        fprintf(out, " | %s | ", change_text(k->change));
        cell(out, k->doc);
        fputs(" |\n", out);
    }
    cfg__print_methods_reference(out);
    fputs("\n## Environment variables\n\n"
          "Read at start, after the file; each overrides one key. An empty variable counts as\n"
          "unset. Setting `PGWARDEN_POSTGRESQL_LISTEN` or `PGWARDEN_POSTGRESQL_DATA_DIR` makes\n"
          "the node a PostgreSQL node even without a `postgresql` section. Errors name the\n"
          "variable instead of a file position (`PGWARDEN_RAFT_SELF_ADDR: expected a.b.c.d:port, got ...`).\n\n"
          "Patroni's names are read too, with the same meaning: `PATRONI_` in place of\n"
          "`PGWARDEN_` (`PATRONI_LOG_TYPE` for `PGWARDEN_LOG_FORMAT`: Patroni's\n"
          "`PATRONI_LOG_FORMAT` is a format string). When both names of one key are set they\n"
          "must agree. A list may be written as Patroni writes it (`'a.b.c.d:port','a.b.c.d:port'`).\n"
          "Any other `PATRONI_*` variable is named in a warning at start and by `validate`,\n"
          "and otherwise ignored.\n\n"
          "| Variable | Key |\n|---|---|\n", out);
    for (size_t i = 0; i < cfg__nkeys; i++) {
        if (cfg__keys[i].env != NULL)
            fprintf(out, "| `%s` | `%s` |\n", cfg__keys[i].env, cfg__keys[i].path);
    }
}
