/* Fuzz configuration parsing (issue 6): the same bytes go to
 *   - cfg_load_buffer (the YAML file): never a crash or leak; an accepted
 *     file frees cleanly, differs from itself in nothing (cfg_diff), and its
 *     bootstrap.dcs is also valid in its JSON form (the form it takes in the
 *     replicated state, which PATCH /config validates with cfg_dcs_from_json);
 *   - cfg_dcs_from_json, when the bytes are JSON: an accepted dynamic
 *     configuration converts back to JSON that is accepted again and gives
 *     the same JSON (what GET /config shows is what PUT /config takes);
 *   - jy_from_yaml (ctl edit-config): YAML written back by jy_to_yaml reads
 *     back as the same JSON value.
 * PGWARDEN_* variables are removed from the environment first, so the
 * environment overrides cannot make runs differ. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/cfg.h"
#include "common/jsonyaml.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern char **environ;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    /* Collect first: unsetenv edits environ while we walk it. */
    char names[64][128];
    size_t n = 0;
    for (char **e = environ; e != NULL && *e != NULL && n < 64; e++) {
        const char *eq = strchr(*e, '=');
        size_t len = eq != NULL ? (size_t)(eq - *e) : strlen(*e);
        if (strncmp(*e, "PGWARDEN_", 9) == 0 && len < sizeof names[0]) {
            memcpy(names[n], *e, len);
            names[n++][len] = '\0';
        }
    }
    for (size_t i = 0; i < n; i++)
        unsetenv(names[i]);
    return 0;
}

static void count_diff(const char *line, void *ctx)
{
    (void)line;
    (*(size_t *)ctx)++;
}

/* An accepted dynamic configuration: its JSON form is accepted again and
 * converts to the same JSON. `what` names the path that produced it. */
static void check_dcs_json(const struct cfg_dcs *d, const char *what)
{
    json_t *j1 = cfg_dcs_to_json(d);
    FUZZ_CHECK(j1 != NULL, "%s: cfg_dcs_to_json failed", what);
    struct cfg_dcs d2;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    int rc = cfg_dcs_from_json(j1, &d2, &err);
    if (rc != 0) {
        char *t = json_dumps(j1, JSON_COMPACT | JSON_SORT_KEYS);
        FUZZ_CHECK(rc == 0, "%s: its own JSON form is refused: %s\n%s", what, err.msg,
                   t != NULL ? t : "?");
    }
    json_t *j2 = cfg_dcs_to_json(&d2);
    FUZZ_CHECK(j2 != NULL, "%s: cfg_dcs_to_json failed", what);
    if (!json_equal(j1, j2)) {
        char *a = json_dumps(j1, JSON_COMPACT | JSON_SORT_KEYS);
        char *b = json_dumps(j2, JSON_COMPACT | JSON_SORT_KEYS);
        FUZZ_CHECK(false, "%s: JSON round trip differs:\n%s\n%s", what, a != NULL ? a : "?",
                   b != NULL ? b : "?");
    }
    json_decref(j1);
    json_decref(j2);
    cfg_dcs_free(&d2);
}

static void fuzz_yaml_file(const char *text, size_t len)
{
    struct cfg c;
    struct cfg_error err;
    struct cfg_warnings warn = {0};
    int rc = cfg_load_buffer("fuzz.yml", text, len, &c, &err, &warn);
    if (rc != 0) {
        FUZZ_CHECK(rc < 0 && err.msg[0] != '\0', "refused config without a reason (%d)", rc);
        cfg_warnings_free(&warn);
        return;
    }
    FUZZ_CHECK(c.scope != NULL && c.name != NULL, "accepted config without scope or name");
    size_t ndiff = 0;
    size_t ret = cfg_diff(&c, &c, count_diff, &ndiff);
    FUZZ_CHECK(ret == 0 && ndiff == 0, "a config differs from itself in %zu keys", ret);
    check_dcs_json(&c.bootstrap.dcs, "bootstrap.dcs of an accepted YAML file");
    cfg_free(&c);
    cfg_warnings_free(&warn);
}

static void fuzz_dcs_json(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL)
        return;
    struct cfg_dcs d;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    if (cfg_dcs_from_json(j, &d, &err) == 0) {
        check_dcs_json(&d, "accepted dcs JSON");
        cfg_dcs_free(&d);
    } else {
        FUZZ_CHECK(err.msg[0] != '\0', "refused dcs JSON without a reason");
    }
    json_decref(j);
}

static void fuzz_jy(const char *text, size_t len)
{
    char err[256] = "";
    json_t *j = jy_from_yaml(text, len, err, sizeof err);
    if (j == NULL) {
        FUZZ_CHECK(err[0] != '\0', "refused YAML without a reason");
        return;
    }
    char *y = jy_to_yaml(j);
    FUZZ_CHECK(y != NULL, "jy_to_yaml failed");
    json_t *j2 = jy_from_yaml(y, strlen(y), err, sizeof err);
    FUZZ_CHECK(j2 != NULL, "YAML we wrote does not read back: %s\n%s", err, y);
    if (!json_equal(j, j2)) {
        char *a = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        char *b = json_dumps(j2, JSON_COMPACT | JSON_ENCODE_ANY);
        FUZZ_CHECK(false, "YAML round trip changes the value:\n%s\n%s\n%s", a ? a : "?",
                   b ? b : "?", y);
    }
    json_decref(j2);
    free(y);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    fuzz_yaml_file(text, size);
    fuzz_dcs_json(text, size);
    fuzz_jy(text, size);
    return 0;
}
