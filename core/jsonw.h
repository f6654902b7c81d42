/*
** jsonw.h: numbers and JSON text as the daemon writes them to clients:
** every double in its shortest form that reads back to the same bits
** (0.1, not 0.10000000000000001).
**
** Threading: no shared state; any thread.
*/
#ifndef HPO_CORE_JSONW_H
#define HPO_CORE_JSONW_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Room for any double hpo_format_double writes, with its NUL. */
#define HPO_DOUBLE_BUF 32

/*
** Write finite x into buf (HPO_DOUBLE_BUF bytes) as the shortest "%.Ng"
** text (N = 15, 16 or 17) that strtod reads back as exactly x; among texts
** of that length, the one nearest x. Returns the text's length. Integral
** values print without a point ("3", "1e+21"); -0.0 prints "-0".
*/
size_t hpo_format_double(char *buf, double x);

/* For tests: the same text by trying "%.15g", "%.16g", "%.17g" with printf. */
size_t hpo__format_double_reference(char *buf, double x);

/*
** Compact JSON text of `v` (any JSON value), object keys in insertion
** order, as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes it except
** that reals are written by hpo_format_double (with ".0" appended when the
** text would otherwise read back as an integer). Returns malloc'd text with
** its length in *ret_len (may be NULL), or NULL on OOM or a non-finite real.
*/
char *hpo_json_dumps(const json_t *v, size_t *ret_len);

/*
** The same text written piece by piece, for a reply built straight from
** memory without a json_t tree (service/trial-text.c): start zeroed, add
** pieces, then hpo_jsonw_finish. A failure (no memory, a non-finite real)
** sticks, and finish then returns NULL.
*/
struct hpo_jsonw {
    char *buf;
    size_t len, cap;
    bool failed;
};
void hpo_jsonw_raw(struct hpo_jsonw *w, const char *s, size_t n); /* as it is */
void hpo_jsonw_string(struct hpo_jsonw *w, const char *s);        /* quoted, escaped */
void hpo_jsonw_int(struct hpo_jsonw *w, long long v);
void hpo_jsonw_real(struct hpo_jsonw *w, double x); /* as hpo_json_dumps writes a real */
void hpo_jsonw_value(struct hpo_jsonw *w, const json_t *v);
/* The text (malloc'd, NUL-terminated) and its length, or NULL (then nothing to free). */
char *hpo_jsonw_finish(struct hpo_jsonw *w, size_t *ret_len);

#endif
