/*
** runutil.c: environment names, placeholders and `hpo:` lines for `hpoctl run`.
*/
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runutil.h"

char *hpoctl_env_name(const char *param)
{
    static const char prefix[] = "HPO_PARAM_";
    size_t n = strlen(param);
    char *out = malloc(sizeof(prefix) + n);

    if (out == NULL) {
        return NULL;
    }
    memcpy(out, prefix, sizeof(prefix) - 1);
    for (size_t i = 0; i < n; i++) {
        char ch = param[i];
        if (ch >= 'a' && ch <= 'z') {
            ch = (char)(ch - 'a' + 'A');
        } else if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) {
            ch = '_';
        }
        out[sizeof(prefix) - 1 + i] = ch;
    }
    out[sizeof(prefix) - 1 + n] = '\0';
    return out;
}

char *hpoctl_substitute(const char *arg, hpoctl_lookup_fn lookup, void *userdata)
{
    size_t cap = strlen(arg) + 1;
    size_t len = 0;
    char *out = malloc(cap);
    const char *p = arg;

    if (out == NULL) {
        return NULL;
    }
    while (*p != '\0') {
        const char *piece = p;
        size_t plen = 1;
        const char *close = NULL;

        if (*p == '{') {
            close = strchr(p + 1, '}');
        }
        if (close != NULL) {
            const char *v = lookup(userdata, p + 1, (size_t)(close - p - 1));
            if (v != NULL) {
                piece = v;
                plen = strlen(v);
                p = close + 1;
            } else {
                /* Unknown: copy the "{" alone; the name is copied as plain text. */
                p++;
            }
        } else {
            p++;
        }
        if (len + plen + 1 > cap) {
            size_t ncap = (len + plen + 1) * 2;
            char *grown = realloc(out, ncap);
            if (grown == NULL) {
                free(out);
                return NULL;
            }
            out = grown;
            cap = ncap;
        }
        memcpy(out + len, piece, plen);
        len += plen;
    }
    out[len] = '\0';
    return out;
}

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* Whether only blanks (and a '\r') remain. */
static bool at_end(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r') {
        p++;
    }
    return *p == '\0';
}

static bool read_number(const char **pp, double *ret)
{
    char *end;
    double x;

    errno = 0;
    x = strtod(*pp, &end);
    if (end == *pp || errno == ERANGE || !isfinite(x)) {
        return false;
    }
    if (*end != '\0' && *end != ' ' && *end != '\t' && *end != '\r') {
        return false;
    }
    *pp = end;
    *ret = x;
    return true;
}

/* "NAME V" after a keyword: NAME a run of non-blanks, V a finite number, then the end. */
static enum hpoctl_line_kind named_number(const char *p, enum hpoctl_line_kind kind,
        double *ret_value, const char **ret_name, size_t *ret_name_len)
{
    const char *name = p;
    double value;

    while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r') {
        p++;
    }
    if (p == name || (*p != ' ' && *p != '\t')) {
        return HPOCTL_LINE_BAD;
    }
    /* A number is not a name: "hpo: value 1 2" is malformed, not objective "1". */
    {
        const char *q = name;
        if (read_number(&q, &value)) {
            return HPOCTL_LINE_BAD;
        }
    }
    *ret_name_len = (size_t)(p - name);
    p = skip_blanks(p);
    if (!read_number(&p, &value) || !at_end(p)) {
        return HPOCTL_LINE_BAD;
    }
    *ret_name = name;
    *ret_value = value;
    return kind;
}

enum hpoctl_line_kind hpoctl_parse_line(const char *line, int64_t *ret_step, double *ret_value)
{
    const char *name;
    size_t len;

    return hpoctl_parse_line_named(line, ret_step, ret_value, &name, &len);
}

enum hpoctl_line_kind hpoctl_parse_line_named(const char *line, int64_t *ret_step,
        double *ret_value, const char **ret_name, size_t *ret_name_len)
{
    const char *p;
    double value;

    if (strncmp(line, "hpo:", 4) != 0) {
        return HPOCTL_LINE_OTHER;
    }
    p = skip_blanks(line + 4);
    if (strncmp(p, "report", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
        char *end;
        long long step;

        p = skip_blanks(p + 6);
        if (*p < '0' || *p > '9') {
            return HPOCTL_LINE_BAD;
        }
        errno = 0;
        step = strtoll(p, &end, 10);
        if (errno != 0 || (*end != ' ' && *end != '\t')) {
            return HPOCTL_LINE_BAD;
        }
        p = skip_blanks(end);
        if (!read_number(&p, &value) || !at_end(p)) {
            return HPOCTL_LINE_BAD;
        }
        *ret_step = step;
        *ret_value = value;
        return HPOCTL_LINE_REPORT;
    }
    if (strncmp(p, "value", 5) == 0 && (p[5] == ' ' || p[5] == '\t')) {
        const char *q;

        p = skip_blanks(p + 5);
        q = p;
        if (read_number(&q, &value) && at_end(q)) {
            *ret_value = value;
            return HPOCTL_LINE_VALUE;
        }
        return named_number(p, HPOCTL_LINE_NAMED_VALUE, ret_value, ret_name, ret_name_len);
    }
    if (strncmp(p, "constraint", 10) == 0 && (p[10] == ' ' || p[10] == '\t')) {
        return named_number(skip_blanks(p + 10), HPOCTL_LINE_CONSTRAINT, ret_value, ret_name,
                ret_name_len);
    }
    return HPOCTL_LINE_BAD;
}
