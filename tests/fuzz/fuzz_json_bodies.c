/* Fuzz the JSON body path of PATCH /config (issue 6): the input, when it is
 * a JSON object (parsed as api_body_object does, duplicates refused), is an
 * RFC 7386 merge patch applied with jy_merge_patch_apply to the JSON form of
 * the default dynamic configuration, then validated with cfg_dcs_from_json,
 * the way api/handlers_actions.c config_write does it ("pause" is taken out
 * of the patch first, as there). Never a crash or a leak, and:
 *   - applying the same patch twice changes nothing more (merge patches are
 *     idempotent, RFC 7386 section 1);
 *   - the patch jy_merge_patch_diff computes from the old to the new
 *     document turns the old into the new (ctl edit-config relies on it);
 *   - an accepted configuration converts to JSON that is accepted again and
 *     gives the same JSON. */
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

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    return 0;
}

static void fail_json(const char *what, const json_t *a, const json_t *b)
{
    char *x = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char *y = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    FUZZ_CHECK(false, "%s:\n%s\n%s", what, x != NULL ? x : "?", y != NULL ? y : "?");
}

static void check_accepted(const struct cfg_dcs *d)
{
    json_t *j1 = cfg_dcs_to_json(d);
    FUZZ_CHECK(j1 != NULL, "cfg_dcs_to_json failed");
    struct cfg_dcs d2;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    if (cfg_dcs_from_json(j1, &d2, &err) != 0)
        fail_json("the JSON form of an accepted configuration is refused", j1, json_null());
    json_t *j2 = cfg_dcs_to_json(&d2);
    FUZZ_CHECK(j2 != NULL, "cfg_dcs_to_json failed");
    if (!json_equal(j1, j2))
        fail_json("JSON round trip of an accepted configuration differs", j1, j2);
    json_decref(j1);
    json_decref(j2);
    cfg_dcs_free(&d2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *patch = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (patch == NULL)
        return 0;
    if (!json_is_object(patch)) {
        json_decref(patch);
        return 0;
    }
    json_object_del(patch, "pause");

    struct cfg_dcs defaults;
    cfg_dcs_defaults(&defaults);
    json_t *cur = cfg_dcs_to_json(&defaults);
    cfg_dcs_free(&defaults);
    FUZZ_CHECK(cur != NULL, "cfg_dcs_to_json(defaults) failed");

    json_t *next = json_deep_copy(cur);
    FUZZ_CHECK(next != NULL, "copy failed");
    FUZZ_CHECK(jy_merge_patch_apply(next, patch) == 0, "merge patch refused an object");

    json_t *twice = json_deep_copy(next);
    FUZZ_CHECK(twice != NULL, "copy failed");
    FUZZ_CHECK(jy_merge_patch_apply(twice, patch) == 0, "second merge patch refused");
    if (!json_equal(next, twice))
        fail_json("merge patch is not idempotent", next, twice);
    json_decref(twice);

    json_t *diff = jy_merge_patch_diff(cur, next);
    FUZZ_CHECK(diff != NULL, "jy_merge_patch_diff failed");
    json_t *redo = json_deep_copy(cur);
    FUZZ_CHECK(redo != NULL, "copy failed");
    FUZZ_CHECK(jy_merge_patch_apply(redo, diff) == 0, "computed patch refused");
    if (!json_equal(redo, next))
        fail_json("diff(old, new) applied to old does not give new", redo, next);
    json_decref(redo);
    json_decref(diff);

    struct cfg_dcs d;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    if (cfg_dcs_from_json(next, &d, &err) == 0) {
        check_accepted(&d);
        cfg_dcs_free(&d);
    } else {
        FUZZ_CHECK(err.msg[0] != '\0', "refused configuration without a reason");
    }
    json_decref(next);
    json_decref(cur);
    json_decref(patch);
    return 0;
}
