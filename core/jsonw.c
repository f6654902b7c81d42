/*
** jsonw.c: shortest round-trip doubles and a compact JSON writer over json_t.
**
** Why three tries: any decimal of at most 15 significant digits survives
** decimal -> double -> "%.15g" unchanged (DBL_DIG), so when the shortest
** text has 15 digits or fewer, "%.15g" (which drops trailing zeros) is that
** text. Otherwise the shortest has 16 or 17 digits, and "%.16g" / "%.17g"
** give the correctly rounded, hence nearest, text of that length; 17 always
** reads back. Subnormals carry fewer bits, so shorter texts can read back
** for them (5e-324): they try every length from 1.
*/
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

size_t hpo_format_double(char *buf, double x)
{
    int n = 0;
    int first = fabs(x) < DBL_MIN && x != 0 ? 1 : 15;

    for (int prec = first; prec <= 17; prec++) {
        n = snprintf(buf, HPO_DOUBLE_BUF, "%.*g", prec, x);
        if (prec == 17 || strtod(buf, NULL) == x) {
            break;
        }
    }
    return n > 0 ? (size_t)n : 0;
}

struct out {
    char *buf;
    size_t len, cap;
    bool failed;
};

static char *reserve(struct out *o, size_t n)
{
    if (o->failed) {
        return NULL;
    }
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        char *b;
        while (cap < o->len + n + 1) {
            cap *= 2;
        }
        b = realloc(o->buf, cap);
        if (b == NULL) {
            o->failed = true;
            return NULL;
        }
        o->buf = b;
        o->cap = cap;
    }
    return o->buf + o->len;
}

static void put(struct out *o, const char *s, size_t n)
{
    char *p = reserve(o, n);

    if (p != NULL) {
        memcpy(p, s, n);
        o->len += n;
    }
}

static void put_string(struct out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t elen = 2;
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        put(o, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
            break;
        }
        put(o, esc, elen);
    }
    put(o, s + run, n - run);
    put(o, "\"", 1);
}

static void put_real(struct out *o, double x)
{
    char num[HPO_DOUBLE_BUF + 2];
    size_t n;

    if (!isfinite(x)) {
        o->failed = true;
        return;
    }
    n = hpo_format_double(num, x);
    if (strpbrk(num, ".e") == NULL) {
        /* "3" would read back as an integer: keep the value a real. */
        memcpy(num + n, ".0", 3);
        n += 2;
    }
    put(o, num, n);
}

static void put_value(struct out *o, const json_t *v)
{
    char num[32];
    int n;

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *item;
        bool first = true;
        put(o, "{", 1);
        json_object_foreach((json_t *)v, key, item) {
            if (!first) {
                put(o, ",", 1);
            }
            first = false;
            put_string(o, key, strlen(key));
            put(o, ":", 1);
            put_value(o, item);
        }
        put(o, "}", 1);
        break;
    }
    case JSON_ARRAY:
        put(o, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0) {
                put(o, ",", 1);
            }
            put_value(o, json_array_get(v, i));
        }
        put(o, "]", 1);
        break;
    case JSON_STRING:
        put_string(o, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        put(o, num, (size_t)n);
        break;
    case JSON_REAL:
        put_real(o, json_real_value(v));
        break;
    case JSON_TRUE:
        put(o, "true", 4);
        break;
    case JSON_FALSE:
        put(o, "false", 5);
        break;
    case JSON_NULL:
        put(o, "null", 4);
        break;
    }
}

char *hpo_json_dumps(const json_t *v, size_t *ret_len)
{
    struct out o = { 0 };

    if (v == NULL) {
        return NULL;
    }
    put_value(&o, v);
    if (reserve(&o, 0) == NULL) {
        free(o.buf);
        return NULL;
    }
    o.buf[o.len] = '\0';
    if (ret_len != NULL) {
        *ret_len = o.len;
    }
    return o.buf;
}
