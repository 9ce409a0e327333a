/* JSON <-> YAML for `pgwarden ctl` (show-config, edit-config, -f yaml) and
 * the small editing helpers edit-config needs: a merge patch between two
 * documents (RFC 7386), applying one, patronictl's `-s key.path=value`, and a
 * unified diff of two texts.
 *
 * YAML is read and written with libyaml; values go through jansson. Plain
 * scalars are resolved the way PyYAML (and so patronictl) resolves them, so
 * `ttl: 30` stays a number and `pause: on` a boolean: null (~, null, empty),
 * booleans (true/false/yes/no/on/off in their three spellings), integers
 * (decimal without leading zeros, 0x hex), floats (with a '.' or an exponent);
 * everything else, and every quoted scalar, is a string. Strings that would
 * read back as something else are written quoted.
 *
 * Pure functions: no I/O. Errors go to errbuf ("line 3, column 5: ..."). */
#ifndef PGW_COMMON_JSONYAML_H
#define PGW_COMMON_JSONYAML_H

#include <stddef.h>

#include <jansson.h>

#include "common/status.h"

#define JY_MAX_DEPTH 64
#define JY_MAX_BYTES (4u * 1024u * 1024u)

/* Block-style YAML of j, ending with a newline (a scalar gives one line).
 * Object keys keep jansson's (insertion) order. NULL when out of memory. */
char *jy_to_yaml(const json_t *j);

/* Parse one YAML document into JSON. An empty stream gives json_null().
 * Refused with a message naming the place: syntax errors, aliases (*x),
 * non-scalar or duplicate mapping keys, nesting deeper than JY_MAX_DEPTH,
 * input larger than JY_MAX_BYTES, a second document. NULL on failure. */
json_t *jy_from_yaml(const char *text, size_t len, char *errbuf, size_t errlen);

/* Resolve one plain (unquoted) scalar as described above. Never NULL unless
 * out of memory. */
json_t *jy_scalar(const char *text);

/* RFC 7386: apply `patch` to `target` in place (null deletes, objects merge,
 * anything else replaces). Both must be objects; returns 0 or PGW_EINVAL/ENOMEM. */
int jy_merge_patch_apply(json_t *target, const json_t *patch) PGW_MUST_CHECK;

/* The merge patch that turns `from` into `to` (both objects): keys missing
 * in `to` map to null, changed values to their new value, nested objects are
 * diffed recursively. An empty object when nothing differs. NULL when out of
 * memory or either argument is not an object. (A merge patch cannot set a
 * value to null; such a change shows as a deletion.) */
json_t *jy_merge_patch_diff(const json_t *from, const json_t *to);

/* patronictl's `-s key.path=value` on `root` (an object): the value is read
 * as YAML (`ttl=30` a number, `x=[a, b]` a list, `x=` or `x=null` deletes
 * the key, and parents left empty by a deletion are removed). Under
 * postgresql.parameters the rest of the path is one GUC name, dots included
 * (`postgresql.parameters.auto_explain.log_min_duration=1s`). Intermediate
 * values that are not objects are replaced by objects. Returns 0, or
 * PGW_EINVAL with the reason in errbuf ("expected key.path=value, got ..."). */
int jy_set_path(json_t *root, const char *assignment, char *errbuf, size_t errlen) PGW_MUST_CHECK;

/* Unified diff (3 lines of context) turning text a into text b, with
 * "--- label_a" / "+++ label_b" headers; "" when they are equal. NULL when
 * out of memory. Very large inputs (more than 4 million line pairs) are
 * shown as one hunk removing all of a and adding all of b. */
char *jy_text_diff(const char *a, const char *b, const char *label_a, const char *label_b);

#endif
