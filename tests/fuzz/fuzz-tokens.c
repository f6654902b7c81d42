/*
** fuzz-tokens.c: libFuzzer target for the tokens file (api/tokens.c) and
** the request head's access decision (api/access.c). The input is parsed
** as a tokens file; what is accepted must hold only valid entries that find
** themselves by digest; the same bytes, as an Authorization header, must
** be decided without crashing and only ever as one of the documented codes.
*/
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/access.h"
#include "../../api/tokens.h"
#include "fuzz.h"

/* sha256("hpod_alpha"), sha256("hpod_beta"). */
static const char fixed[] =
        "alpha write 892e6d843d87dab7f601c2ad1c24fe3f702b8034a2c8f068656349c086bc7a5a team-a-\n"
        "beta admin 8923de80ef1363c30c45fa1dea2b1f333cba28fbc89572f6e45f8051c3a5613c\n";

static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > HPO_TOKEN_NAME_MAX) {
        return false;
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-@") == n;
}

static void check_set(const struct hpo_tokens *t)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct hpo_token *k = &t->v[i];
        CHECK(name_ok(k->name));
        CHECK(k->role >= HPO_ROLE_READ && k->role <= HPO_ROLE_ADMIN);
        CHECK(strlen(k->prefix) <= HPO_TOKEN_PREFIX_MAX);
        CHECK(strspn(k->prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
                == strlen(k->prefix));
        for (size_t j = 0; j < i; j++) {
            CHECK(strcmp(t->v[j].name, k->name) != 0);
            CHECK(memcmp(t->v[j].digest, k->digest, 32) != 0);
        }
    }
}

static void decide(const struct hpo_tokens *set, const char *header, const char *path,
        const char *method, const char *study)
{
    struct hpo_access_request rq = { .path = path, .method = method, .authorization = header,
        .study = study, .routed = true,
        .need = strcmp(method, "GET") == 0 ? HPO_ROLE_READ
                : strcmp(method, "DELETE") == 0 ? HPO_ROLE_ADMIN : HPO_ROLE_WRITE };
    struct hpo_principal who;
    struct hpo_error err = { .code = HPO_OK };

    if (hpo_access_decide(set, &rq, &who, &err)) {
        CHECK(err.code == HPO_OK);
        CHECK(memchr(who.name, '\0', sizeof(who.name)) != NULL);
    } else {
        CHECK(err.code == HPO_UNAUTHENTICATED || err.code == HPO_PERMISSION_DENIED ||
                err.code == HPO_NOT_FOUND);
        CHECK(err.message[0] != '\0');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hpo_tokens *t = NULL, *fx = NULL;
    char msg[512];
    char *text;
    int r;

    msg[0] = '\0';
    r = hpo_tokens_parse((const char *)data, size, &t, msg, sizeof(msg));
    if (r == 0) {
        check_set(t);
    } else {
        CHECK(t == NULL);
        CHECK(strncmp(msg, "line ", 5) == 0 || r == -ENOMEM);
    }
    /* The bytes as a header value (and as a study name) against a known set. */
    text = malloc(size + 1);
    if (text == NULL) {
        hpo_tokens_free(t);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    CHECK(hpo_tokens_parse(fixed, strlen(fixed), &fx, msg, sizeof(msg)) == 0);
    decide(fx, text, "/v1/studies/team-a-x", "GET", "team-a-x");
    decide(fx, "Bearer hpod_alpha", "/v1/studies/x", "POST", text);
    decide(fx, text, text, "DELETE", NULL);
    if (t != NULL) {
        decide(t, text, "/v1/admin/backup", "GET", NULL);
        /* A secret equal to the input finds at most one entry, never a wrong one. */
        {
            const struct hpo_token *k = hpo_tokens_lookup(t, text, strlen(text));
            CHECK(k == NULL || (k >= t->v && k < t->v + t->n));
        }
    }
    {
        size_t n = 0;
        const char *s = hpo_tokens_bearer(text, &n);
        CHECK(s == NULL || (n > 0 && s >= text && s + n <= text + size));
    }
    free(text);
    hpo_tokens_free(fx);
    hpo_tokens_free(t);
    return 0;
}
