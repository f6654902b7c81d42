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
**
** Speed: printf of a double costs about twice strtod, so the fast path
** prints 17 digits once and rounds the shorter candidates from them.
*/
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

/*
** `k` significant digits (no trailing zeros) of a value d.ddd x 10^exp, as
** printf's "%.Pg" writes it: fixed notation when -4 <= exp < P, else
** d.ddde+XX. Returns the length.
*/
static size_t write_g(char *buf, bool neg, const char *digits, int k, int exp, int prec)
{
    char *p = buf;

    if (neg) {
        *p++ = '-';
    }
    if (exp >= -4 && exp < prec) {
        if (exp >= 0) {
            for (int i = 0; i <= exp; i++) {
                *p++ = i < k ? digits[i] : '0';
            }
            if (k > exp + 1) {
                *p++ = '.';
                memcpy(p, digits + exp + 1, (size_t)(k - exp - 1));
                p += k - exp - 1;
            }
        } else {
            *p++ = '0';
            *p++ = '.';
            for (int i = 0; i < -exp - 1; i++) {
                *p++ = '0';
            }
            memcpy(p, digits, (size_t)k);
            p += k;
        }
    } else {
        int e = exp < 0 ? -exp : exp;
        *p++ = digits[0];
        if (k > 1) {
            *p++ = '.';
            memcpy(p, digits + 1, (size_t)(k - 1));
            p += k - 1;
        }
        *p++ = 'e';
        *p++ = exp < 0 ? '-' : '+';
        if (e >= 100) {
            *p++ = (char)('0' + e / 100);
        }
        *p++ = (char)('0' + e / 10 % 10);
        *p++ = (char)('0' + e % 10);
    }
    *p = '\0';
    return (size_t)(p - buf);
}

/* The text of "%.Pg" and whether it reads back as x. */
static bool try_printf(char *buf, double x, int prec, size_t *ret_len)
{
    int n = snprintf(buf, HPO_DOUBLE_BUF, "%.*g", prec, x);

    *ret_len = n > 0 ? (size_t)n : 0;
    return strtod(buf, NULL) == x;
}

/*
** The slow, obviously right way: "%.Pg" for P = first..17 until one reads
** back. For subnormals (first = 1) and as the reference in the tests.
*/
static size_t format_by_printf(char *buf, double x, int first)
{
    size_t n = 0;

    for (int prec = first; prec < 17; prec++) {
        if (try_printf(buf, x, prec, &n)) {
            return n;
        }
    }
    try_printf(buf, x, 17, &n);
    return n;
}

/*
** Whether the decimal r[0..prec-1] x 10^(exp - prec + 1) reads back as ax
** (> 0). Clinger's fast path: an integer below 2^53 times or over a power
** of ten up to 1e22 (both exact doubles) is one correctly rounded IEEE
** operation, so it gives what strtod gives. Otherwise strtod decides, on
** the text write_g makes (into cand).
*/
static bool reads_back(const char *r, int prec, int exp, double ax, char *cand, bool neg, int k)
{
    static const double pow10[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
        1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
    uint64_t m = 0;
    int q = exp - prec + 1;

    for (int i = 0; i < prec; i++) {
        m = m * 10 + (uint64_t)(r[i] - '0');
    }
    if (m <= ((uint64_t)1 << 53) && q >= -22 && q <= 22) {
        double y = q >= 0 ? (double)m * pow10[q] : (double)m / pow10[-q];
        return y == ax;
    }
    write_g(cand, neg, r, k, exp, prec);
    return fabs(strtod(cand, NULL)) == ax;
}

/*
** The exact path, for most doubles a sampler hands out (1e-5 <= |x| <
** 1e15, not an integer of 2^53 or more): no printf and no strtod, only
** integer arithmetic on 128 bits. x = m 2^-s exactly (m < 2^53, 0 < s <=
** 120), so x 10^q = m 10^q / 2^s for q <= 21 is an exact quotient and
** remainder (m 10^21 < 2^123): the correctly rounded P-digit text for P =
** 15, 16, 17, as printf gives it, and whether it reads back, decided by
** its exact distance from x against half the gap to x's neighbours (a
** quarter below a power of two, where the gap below is half as wide).
** Any tie (a remainder of exactly one half, a distance of exactly half a
** gap) returns false: the printf path decides those, as before.
*/
__extension__ typedef unsigned __int128 hpo_u128;

static hpo_u128 pow10_128(int q)
{
    static const uint64_t p10[] = { 1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u,
        10000000u, 100000000u, 1000000000u, 10000000000u, 100000000000u, 1000000000000u,
        10000000000000u, 100000000000000u, 1000000000000000u, 10000000000000000u,
        100000000000000000u, 1000000000000000000u, 10000000000000000000u };

    return q <= 19 ? (hpo_u128)p10[q] : (hpo_u128)p10[19] * p10[q - 19];
}

static bool format_exact(char *buf, double x, size_t *ret_len)
{
    uint64_t bits, m;
    int be, s, e10, k;
    bool neg, pow2;
    hpo_u128 mask, half;

    memcpy(&bits, &x, sizeof(bits));
    neg = (bits >> 63) != 0;
    be = (int)((bits >> 52) & 0x7ff);
    m = (bits & (((uint64_t)1 << 52) - 1)) | ((uint64_t)1 << 52);
    s = 1075 - be;
    if (be == 0 || be == 0x7ff || s <= 0 || s > 120) {
        return false;
    }
    pow2 = m == ((uint64_t)1 << 52) && be > 1;
    mask = ((hpo_u128)1 << s) - 1;
    half = (hpo_u128)1 << (s - 1);
    /* 10^e10 <= |x| < 10^(e10+1): from the binary exponent, then checked on the digits. */
    e10 = (int)floor((double)(be - 1023) * 0.30102999566398120);
    k = 16 - e10;
    if (k <= 21 && k >= 2 && ((hpo_u128)m * pow10_128(k)) >> s >= pow10_128(17)) {
        e10++;
        k--;
    }
    if (k > 21 || k < 2) {
        return false;
    }
    for (int prec = 15; prec <= 17; prec++) {
        int q = k - 17 + prec, exp = e10, nd = prec;
        hpo_u128 xq = (hpo_u128)m * pow10_128(q), qt = xq >> s, rem = xq & mask, dist;
        uint64_t v;
        char r[18];
        bool up;
        if (qt < pow10_128(prec - 1) || qt >= pow10_128(prec) || rem == half) {
            return false; /* not the decade expected, or a rounding tie */
        }
        up = rem > half;
        /* |candidate - x| and half the gap on its side, both in units of 2^-s at 10^q. */
        dist = up ? ((hpo_u128)1 << s) - rem : rem;
        {
            hpo_u128 twice = dist * (up || !pow2 ? 2 : 4), gap = pow10_128(q);
            if (twice == gap) {
                return false; /* exactly between two doubles: printf and strtod decide */
            }
            if (twice > gap) {
                continue; /* reads back as a neighbour of x */
            }
        }
        v = (uint64_t)(qt + up);
        if (v == (uint64_t)pow10_128(prec)) {
            v /= 10; /* 99..9 rounded up: 10..0, one decade higher */
            exp++;
        }
        /* Two digits a division: the divisions form the chain that takes the time. */
        for (int i = prec - 1; i >= 0; i -= 2) {
            unsigned two = (unsigned)(v % 100);
            v /= 100;
            r[i] = (char)('0' + two % 10);
            if (i > 0) {
                r[i - 1] = (char)('0' + two / 10);
            }
        }
        while (nd > 1 && r[nd - 1] == '0') {
            nd--;
        }
        *ret_len = write_g(buf, neg, r, nd, exp, prec);
        return true;
    }
    return false;
}

size_t hpo_format_double(char *buf, double x)
{
    char sci[40], digits[18], cand[HPO_DOUBLE_BUF];
    bool neg = signbit(x) != 0;
    int exp17;
    const char *p;
    size_t n;

    if (x == 0) {
        return write_g(buf, neg, "0", 1, 0, 17);
    }
    if (fabs(x) < DBL_MIN) {
        return format_by_printf(buf, x, 1);
    }
    if (format_exact(buf, x, &n)) {
        return n;
    }
    /*
    ** One printf for the 17 correctly rounded digits; the 15- and 16-digit
    ** texts are rounded from them. Rounding twice can differ from rounding
    ** x once only when the digits cut off are exactly "5", "50": printf
    ** decides those.
    */
    snprintf(sci, sizeof(sci), "%.16e", x);
    p = sci + neg;
    digits[0] = p[0];
    memcpy(digits + 1, p + 2, 16);
    digits[17] = '\0';
    exp17 = (int)strtol(p + 19, NULL, 10);
    for (int prec = 15; prec <= 16; prec++) {
        char r[18];
        int exp = exp17, k = prec;
        bool tie = digits[prec] == '5' && (prec == 16 || digits[16] == '0');
        if (tie) {
            if (try_printf(buf, x, prec, &n)) {
                return n;
            }
            continue;
        }
        memcpy(r, digits, (size_t)prec);
        if (digits[prec] >= '5') {
            int i = prec - 1;
            while (i >= 0 && r[i] == '9') {
                r[i--] = '0';
            }
            if (i >= 0) {
                r[i]++;
            } else {
                r[0] = '1'; /* 99..9 rounded up: 10..0, one decade higher */
                exp++;
            }
        }
        while (k > 1 && r[k - 1] == '0') {
            k--;
        }
        if (reads_back(r, prec, exp, fabs(x), cand, neg, k)) {
            return write_g(buf, neg, r, k, exp, prec);
        }
    }
    {
        int k = 17;
        while (k > 1 && digits[k - 1] == '0') {
            k--;
        }
        return write_g(buf, neg, digits, k, exp17, 17);
    }
}

size_t hpo__format_double_reference(char *buf, double x)
{
    return format_by_printf(buf, x, fabs(x) < DBL_MIN && x != 0 ? 1 : 15);
}

static char *reserve(struct hpo_jsonw *o, size_t n)
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

static void put(struct hpo_jsonw *o, const char *s, size_t n)
{
    char *p = reserve(o, n);

    if (p != NULL) {
        memcpy(p, s, n);
        o->len += n;
    }
}

static void put_string(struct hpo_jsonw *o, const char *s, size_t n)
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

static void put_real(struct hpo_jsonw *o, double x)
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

static void put_value(struct hpo_jsonw *o, const json_t *v)
{
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
        hpo_jsonw_int(o, (long long)json_integer_value(v));
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

char *hpo_jsonw_finish(struct hpo_jsonw *w, size_t *ret_len)
{
    if (reserve(w, 0) == NULL) {
        free(w->buf);
        w->buf = NULL;
        return NULL;
    }
    w->buf[w->len] = '\0';
    if (ret_len != NULL) {
        *ret_len = w->len;
    }
    return w->buf;
}

char *hpo_json_dumps(const json_t *v, size_t *ret_len)
{
    struct hpo_jsonw o = { 0 };

    if (v == NULL) {
        return NULL;
    }
    put_value(&o, v);
    return hpo_jsonw_finish(&o, ret_len);
}

void hpo_jsonw_raw(struct hpo_jsonw *w, const char *s, size_t n)
{
    put(w, s, n);
}

void hpo_jsonw_string(struct hpo_jsonw *w, const char *s)
{
    put_string(w, s, strlen(s));
}

void hpo_jsonw_int(struct hpo_jsonw *w, long long v)
{
    char num[24], *p = num + sizeof(num);
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        *--p = '-';
    }
    put(w, p, (size_t)(num + sizeof(num) - p));
}

void hpo_jsonw_real(struct hpo_jsonw *w, double x)
{
    put_real(w, x);
}

void hpo_jsonw_value(struct hpo_jsonw *w, const json_t *v)
{
    put_value(w, v);
}
