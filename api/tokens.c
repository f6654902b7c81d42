/*
** tokens.c: the tokens file, role and scope rules, constant-time lookup
** by SHA-256 digest (GnuTLS's implementation), and minting (tokens.h).
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "tokens.h"

static int fail(char *msg, size_t len, int r, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int fail(char *msg, size_t len, int r, const char *fmt, ...)
{
    va_list ap;

    if (msg != NULL && len > 0) {
        va_start(ap, fmt);
        vsnprintf(msg, len, fmt, ap);
        va_end(ap);
    }
    return r;
}

enum hpo_role hpo_role_parse(const char *name)
{
    if (strcmp(name, "read") == 0) {
        return HPO_ROLE_READ;
    }
    if (strcmp(name, "write") == 0) {
        return HPO_ROLE_WRITE;
    }
    if (strcmp(name, "admin") == 0) {
        return HPO_ROLE_ADMIN;
    }
    return HPO_ROLE_NONE;
}

const char *hpo_role_name(enum hpo_role role)
{
    switch (role) {
    case HPO_ROLE_READ:
        return "read";
    case HPO_ROLE_WRITE:
        return "write";
    case HPO_ROLE_ADMIN:
        return "admin";
    default:
        return "none";
    }
}

/* A token name: 1-64 of A-Z a-z 0-9 _ . - @ (shown in logs, so nothing else). */
static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n > HPO_TOKEN_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-' || c == '@')) {
            return false;
        }
    }
    return true;
}

/* A prefix: 1-128 of a study name's characters, A-Z a-z 0-9 _ . - */
static bool valid_prefix(const char *s, size_t n)
{
    if (n == 0 || n > HPO_TOKEN_PREFIX_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-')) {
            return false;
        }
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool parse_digest(const char *s, size_t n, uint8_t out[32])
{
    if (n != 64) {
        return false;
    }
    for (size_t i = 0; i < 32; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* Split one line (no newline) into at most 5 fields; returns how many. */
static size_t split_fields(const char *p, const char *end, const char *f[5], size_t n[5])
{
    size_t k = 0;

    while (p < end && k < 5) {
        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        if (p == end || *p == '#') {
            break;
        }
        f[k] = p;
        while (p < end && *p != ' ' && *p != '\t' && *p != '#') {
            p++;
        }
        n[k] = (size_t)(p - f[k]);
        k++;
    }
    return k;
}

/* Parse one non-blank line into `t`; 0 or -EINVAL with msg. */
static int parse_line(const char *p, const char *end, size_t lineno, struct hpo_token *t,
        char *msg, size_t msg_len)
{
    const char *f[5];
    size_t n[5], k = split_fields(p, end, f, n);
    char role[16];

    if (k == 0) {
        return 1; /* blank or comment only */
    }
    if (k < 3 || k > 4) {
        return fail(msg, msg_len, -EINVAL,
                "line %zu: expected NAME ROLE SHA256HEX [PREFIX], got %zu field%s", lineno, k,
                k == 1 ? "" : "s");
    }
    if (!valid_name(f[0], n[0])) {
        return fail(msg, msg_len, -EINVAL,
                "line %zu: token name must be 1-%d characters of A-Z a-z 0-9 _ . - @", lineno,
                HPO_TOKEN_NAME_MAX);
    }
    memcpy(t->name, f[0], n[0]);
    t->name[n[0]] = '\0';
    snprintf(role, sizeof(role), "%.*s", (int)(n[1] < 15 ? n[1] : 15), f[1]);
    t->role = n[1] < 15 ? hpo_role_parse(role) : HPO_ROLE_NONE;
    if (t->role == HPO_ROLE_NONE) {
        return fail(msg, msg_len, -EINVAL,
                "line %zu: token '%s': role '%s' must be read, write or admin", lineno, t->name,
                role);
    }
    if (!parse_digest(f[2], n[2], t->digest)) {
        return fail(msg, msg_len, -EINVAL,
                "line %zu: token '%s': the digest must be 64 hex digits (SHA-256 of the secret)",
                lineno, t->name);
    }
    t->prefix[0] = '\0';
    if (k == 4) {
        if (!valid_prefix(f[3], n[3])) {
            return fail(msg, msg_len, -EINVAL,
                    "line %zu: token '%s': prefix must be 1-%d characters of A-Z a-z 0-9 _ . -",
                    lineno, t->name, HPO_TOKEN_PREFIX_MAX);
        }
        memcpy(t->prefix, f[3], n[3]);
        t->prefix[n[3]] = '\0';
    }
    return 0;
}

int hpo_tokens_parse(const char *text, size_t len, struct hpo_tokens **ret_tokens, char *msg,
        size_t msg_len)
{
    struct hpo_tokens *set = calloc(1, sizeof(*set));
    size_t cap = 0, lineno = 0;
    const char *p = text, *end = text + len;
    int r = 0;

    if (set == NULL) {
        return fail(msg, msg_len, -ENOMEM, "out of memory");
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        struct hpo_token t;
        lineno++;
        if (le > p && le[-1] == '\r') {
            le--;
        }
        if ((size_t)(le - p) >= HPO_TOKEN_LINE_MAX) {
            r = fail(msg, msg_len, -EINVAL, "line %zu: longer than %d characters", lineno,
                    HPO_TOKEN_LINE_MAX - 1);
            goto error;
        }
        if (memchr(p, '\0', (size_t)(le - p)) != NULL) {
            r = fail(msg, msg_len, -EINVAL, "line %zu: contains a NUL byte", lineno);
            goto error;
        }
        memset(&t, 0, sizeof(t));
        r = parse_line(p, le, lineno, &t, msg, msg_len);
        if (r < 0) {
            goto error;
        }
        if (r == 0) {
            for (size_t i = 0; i < set->n; i++) {
                if (strcmp(set->v[i].name, t.name) == 0) {
                    r = fail(msg, msg_len, -EINVAL, "line %zu: token name '%s' is used twice",
                            lineno, t.name);
                    goto error;
                }
                if (memcmp(set->v[i].digest, t.digest, 32) == 0) {
                    r = fail(msg, msg_len, -EINVAL,
                            "line %zu: token '%s' has the same digest as token '%s'", lineno,
                            t.name, set->v[i].name);
                    goto error;
                }
            }
            if (set->n == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                struct hpo_token *nv = realloc(set->v, ncap * sizeof(*nv));
                if (nv == NULL) {
                    r = fail(msg, msg_len, -ENOMEM, "out of memory");
                    goto error;
                }
                set->v = nv;
                cap = ncap;
            }
            set->v[set->n++] = t;
        }
        p = nl != NULL ? nl + 1 : end;
    }
    *ret_tokens = set;
    return 0;
error:
    hpo_tokens_free(set);
    return r;
}

int hpo_tokens_load(const char *path, struct hpo_tokens **ret_tokens, char *msg, size_t msg_len)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL, eb[128];
    size_t len = 0, cap = 0;
    int r;

    if (f == NULL) {
        int e = errno;
        return fail(msg, msg_len, -e, "tokens file '%s': %s", path, strerror_r(e, eb, sizeof(eb)));
    }
    for (;;) {
        size_t n;
        if (len == cap) {
            char *nb;
            if (cap >= 64u * 1024 * 1024) {
                free(buf);
                fclose(f);
                return fail(msg, msg_len, -EFBIG, "tokens file '%s': larger than 64 MiB", path);
            }
            cap = cap ? cap * 2 : 4096;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return fail(msg, msg_len, -ENOMEM, "out of memory");
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        int e = errno ? errno : EIO;
        free(buf);
        fclose(f);
        return fail(msg, msg_len, -e, "tokens file '%s': %s", path, strerror_r(e, eb, sizeof(eb)));
    }
    fclose(f);
    {
        char inner[400];
        r = hpo_tokens_parse(buf ? buf : "", len, ret_tokens, inner, sizeof(inner));
        if (r < 0) {
            fail(msg, msg_len, r, "tokens file '%s': %s", path, inner);
        }
    }
    free(buf);
    return r;
}

void hpo_tokens_free(struct hpo_tokens *tokens)
{
    if (tokens == NULL) {
        return;
    }
    free(tokens->v);
    free(tokens);
}

/* 0 when equal; the time depends only on n. */
static unsigned ct_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    volatile unsigned d = 0;

    for (size_t i = 0; i < n; i++) {
        d |= (unsigned)(a[i] ^ b[i]);
    }
    return d;
}

const struct hpo_token *hpo_tokens_lookup(const struct hpo_tokens *tokens, const char *secret,
        size_t len)
{
    uint8_t digest[32];
    const struct hpo_token *found = NULL;

    if (tokens == NULL || secret == NULL || len == 0 || len > HPO_TOKEN_SECRET_MAX) {
        return NULL;
    }
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, secret, len, digest) != 0) {
        return NULL;
    }
    /* No early exit: every digest is compared whatever matched before. */
    for (size_t i = 0; i < tokens->n; i++) {
        unsigned d = ct_diff(tokens->v[i].digest, digest, sizeof(digest));
        if (d == 0) {
            found = &tokens->v[i];
        }
    }
    return found;
}

const char *hpo_tokens_bearer(const char *header, size_t *ret_len)
{
    const char *p = header, *e;

    if (header == NULL) {
        return NULL;
    }
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t')) {
        return NULL;
    }
    p += 6;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    e = p + strlen(p);
    while (e > p && (e[-1] == ' ' || e[-1] == '\t')) {
        e--;
    }
    if (e == p) {
        return NULL;
    }
    *ret_len = (size_t)(e - p);
    return p;
}

bool hpo_tokens_sees(const char *prefix, const char *study)
{
    size_t n = strlen(prefix);

    return n == 0 || (study != NULL && strncmp(study, prefix, n) == 0);
}

static void base64url(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
    }
    out[o] = '\0';
}

int hpo_tokens_mint(const char *spec, char *secret, size_t secret_len, char *line,
        size_t line_len, char *msg, size_t msg_len)
{
    const char *c1 = strchr(spec, ':'), *c2, *prefix = "";
    char role_s[16];
    enum hpo_role role;
    uint8_t raw[32], digest[32];
    char hex[65];
    size_t got = 0;

    if (c1 == NULL) {
        return fail(msg, msg_len, -EINVAL, "'%s' must be NAME:ROLE[:PREFIX]", spec);
    }
    c2 = strchr(c1 + 1, ':');
    if (!valid_name(spec, (size_t)(c1 - spec))) {
        return fail(msg, msg_len, -EINVAL,
                "token name must be 1-%d characters of A-Z a-z 0-9 _ . - @", HPO_TOKEN_NAME_MAX);
    }
    {
        size_t rn = c2 != NULL ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1);
        snprintf(role_s, sizeof(role_s), "%.*s", (int)(rn < 15 ? rn : 15), c1 + 1);
        role = rn < 15 ? hpo_role_parse(role_s) : HPO_ROLE_NONE;
    }
    if (role == HPO_ROLE_NONE) {
        return fail(msg, msg_len, -EINVAL, "role '%s' must be read, write or admin", role_s);
    }
    if (c2 != NULL) {
        prefix = c2 + 1;
        if (!valid_prefix(prefix, strlen(prefix))) {
            return fail(msg, msg_len, -EINVAL,
                    "prefix must be 1-%d characters of A-Z a-z 0-9 _ . -", HPO_TOKEN_PREFIX_MAX);
        }
    }
    if (secret_len < 49 || line_len < HPO_TOKEN_LINE_MAX) {
        return fail(msg, msg_len, -ENOBUFS, "buffers too small");
    }
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(msg, msg_len, -errno, "getrandom failed");
        }
        got += (size_t)n;
    }
    memcpy(secret, "hpod_", 5);
    base64url(raw, sizeof(raw), secret + 5);
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, secret, strlen(secret), digest) != 0) {
        return fail(msg, msg_len, -EIO, "SHA-256 is not available");
    }
    for (size_t i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    }
    snprintf(line, line_len, "%.*s %s %s%s%s", (int)(c1 - spec), spec, hpo_role_name(role), hex,
            prefix[0] ? " " : "", prefix);
    return 0;
}
