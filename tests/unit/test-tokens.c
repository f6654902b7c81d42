/*
** test-tokens.c: api/tokens.c: the tokens file (valid lines, every error
** with its line number), lookup by digest, bearer headers, scopes, roles
** and minting (format, randomness, the line it prints parses back); the
** access settings and decisions of api/access.c.
*/
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "access.h"
#include "tokens.h"

/* sha256("hpod_alpha") and sha256("hpod_beta") (checked with sha256sum). */
#define D_ALPHA "892e6d843d87dab7f601c2ad1c24fe3f702b8034a2c8f068656349c086bc7a5a"
#define D_BETA "8923de80ef1363c30c45fa1dea2b1f333cba28fbc89572f6e45f8051c3a5613c"

static struct hpo_tokens *parse_ok(const char *text)
{
    struct hpo_tokens *t = NULL;
    char msg[256] = "";

    if (hpo_tokens_parse(text, strlen(text), &t, msg, sizeof(msg)) != 0) {
        fail_msg("parse failed: %s", msg);
    }
    return t;
}

static void expect_error(const char *text, const char *message)
{
    struct hpo_tokens *t = NULL;
    char msg[256] = "";

    assert_int_equal(hpo_tokens_parse(text, strlen(text), &t, msg, sizeof(msg)), -EINVAL);
    assert_null(t);
    assert_string_equal(msg, message);
}

static void test_parse_valid(void **state)
{
    struct hpo_tokens *t = parse_ok("# the tokens of the cluster\n"
                                    "\n"
                                    "ci write " D_ALPHA " team-a-   # CI of team A\n"
                                    "  \t ops admin " D_BETA "\r\n"
                                    "   # an indented comment\n"
                                    "viewer read 0000000000000000000000000000000000000000000000000000000000000000");

    assert_int_equal(t->n, 3);
    assert_string_equal(t->v[0].name, "ci");
    assert_int_equal(t->v[0].role, HPO_ROLE_WRITE);
    assert_string_equal(t->v[0].prefix, "team-a-");
    assert_int_equal(t->v[0].digest[0], 0x89);
    assert_int_equal(t->v[0].digest[31], 0x5a);
    assert_string_equal(t->v[1].name, "ops");
    assert_int_equal(t->v[1].role, HPO_ROLE_ADMIN);
    assert_string_equal(t->v[1].prefix, "");
    assert_string_equal(t->v[2].name, "viewer");
    assert_int_equal(t->v[2].role, HPO_ROLE_READ);
    hpo_tokens_free(t);

    /* An empty file is a valid set of no tokens. */
    t = parse_ok("");
    assert_int_equal(t->n, 0);
    hpo_tokens_free(t);
    /* Upper-case hex is the same digest. */
    t = parse_ok("x read 892E6D843D87DAB7F601C2AD1C24FE3F702B8034A2C8F068656349C086BC7A5A");
    assert_int_equal(t->v[0].digest[0], 0x89);
    hpo_tokens_free(t);
}

static void test_parse_errors(void **state)
{
    expect_error("ci write\n", "line 1: expected NAME ROLE SHA256HEX [PREFIX], got 2 fields");
    expect_error("# c\nci\n", "line 2: expected NAME ROLE SHA256HEX [PREFIX], got 1 field");
    expect_error("a read " D_ALPHA " p extra\n",
            "line 1: expected NAME ROLE SHA256HEX [PREFIX], got 5 fields");
    expect_error("\n\nci root " D_ALPHA "\n",
            "line 3: token 'ci': role 'root' must be read, write or admin");
    expect_error("ci Write " D_ALPHA "\n",
            "line 1: token 'ci': role 'Write' must be read, write or admin");
    expect_error("ci read abc\n",
            "line 1: token 'ci': the digest must be 64 hex digits (SHA-256 of the secret)");
    expect_error("ci read " D_ALPHA "0\n",
            "line 1: token 'ci': the digest must be 64 hex digits (SHA-256 of the secret)");
    expect_error("ci read g92e6d843d87dab7f601c2ad1c24fe3f702b8034a2c8f068656349c086bc7a5a\n",
            "line 1: token 'ci': the digest must be 64 hex digits (SHA-256 of the secret)");
    expect_error("c/i read " D_ALPHA "\n",
            "line 1: token name must be 1-64 characters of A-Z a-z 0-9 _ . - @");
    expect_error("ci read " D_ALPHA " team/a\n",
            "line 1: token 'ci': prefix must be 1-128 characters of A-Z a-z 0-9 _ . -");
    expect_error("ci read " D_ALPHA "\nci write " D_BETA "\n",
            "line 2: token name 'ci' is used twice");
    expect_error("ci read " D_ALPHA "\nops write " D_ALPHA "\n",
            "line 2: token 'ops' has the same digest as token 'ci'");
    {
        char big[700];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        expect_error(big, "line 1: longer than 511 characters");
    }
    {
        static const char nul[] = "ci read " D_ALPHA "\0\n";
        struct hpo_tokens *t = NULL;
        char msg[256] = "";
        assert_int_equal(hpo_tokens_parse(nul, sizeof(nul) - 1, &t, msg, sizeof(msg)), -EINVAL);
        assert_string_equal(msg, "line 1: contains a NUL byte");
    }
}

static void test_load(void **state)
{
    char path[] = "/tmp/hpod-test-tokens.XXXXXX";
    int fd = mkstemp(path);
    struct hpo_tokens *t = NULL;
    char msg[512] = "", want[600];
    FILE *f;

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("ci write " D_ALPHA "\nbad\n", f);
    fclose(f);
    assert_int_equal(hpo_tokens_load(path, &t, msg, sizeof(msg)), -EINVAL);
    snprintf(want, sizeof(want),
            "tokens file '%s': line 2: expected NAME ROLE SHA256HEX [PREFIX], got 1 field", path);
    assert_string_equal(msg, want);
    f = fopen(path, "w");
    fputs("ci write " D_ALPHA "\n", f);
    fclose(f);
    assert_int_equal(hpo_tokens_load(path, &t, msg, sizeof(msg)), 0);
    assert_int_equal(t->n, 1);
    hpo_tokens_free(t);
    unlink(path);
    assert_int_equal(hpo_tokens_load(path, &t, msg, sizeof(msg)), -ENOENT);
    snprintf(want, sizeof(want), "tokens file '%s': No such file or directory", path);
    assert_string_equal(msg, want);
}

static void test_lookup(void **state)
{
    struct hpo_tokens *t = parse_ok("a read " D_ALPHA "\nb admin " D_BETA "\n");

    assert_ptr_equal(hpo_tokens_lookup(t, "hpod_alpha", 10), &t->v[0]);
    assert_ptr_equal(hpo_tokens_lookup(t, "hpod_beta", 9), &t->v[1]);
    assert_null(hpo_tokens_lookup(t, "hpod_alph", 9));
    assert_null(hpo_tokens_lookup(t, "hpod_alphax", 11));
    assert_null(hpo_tokens_lookup(t, "", 0));
    assert_null(hpo_tokens_lookup(NULL, "hpod_alpha", 10));
    /* The digest in the file is what matches, not the name. */
    assert_null(hpo_tokens_lookup(t, "a", 1));
    hpo_tokens_free(t);
}

static void test_bearer(void **state)
{
    size_t n = 0;
    const char *s;

    s = hpo_tokens_bearer("Bearer hpod_x", &n);
    assert_non_null(s);
    assert_int_equal(n, 6);
    assert_memory_equal(s, "hpod_x", 6);
    s = hpo_tokens_bearer("  bearer \t hpod_y  ", &n);
    assert_non_null(s);
    assert_int_equal(n, 6);
    assert_memory_equal(s, "hpod_y", 6);
    assert_null(hpo_tokens_bearer("Basic dXNlcjpwYXNz", &n));
    assert_null(hpo_tokens_bearer("Bearer", &n));
    assert_null(hpo_tokens_bearer("Bearer   ", &n));
    assert_null(hpo_tokens_bearer("Bearerhpod_x", &n));
    assert_null(hpo_tokens_bearer(NULL, &n));
}

static void test_scope_and_roles(void **state)
{
    assert_true(hpo_tokens_sees("", "anything"));
    assert_true(hpo_tokens_sees("team-a-", "team-a-resnet"));
    assert_true(hpo_tokens_sees("team-a-", "team-a-"));
    assert_false(hpo_tokens_sees("team-a-", "team-a"));
    assert_false(hpo_tokens_sees("team-a-", "team-b-x"));
    assert_false(hpo_tokens_sees("team-a-", NULL));
    assert_int_equal(hpo_role_parse("read"), HPO_ROLE_READ);
    assert_int_equal(hpo_role_parse("write"), HPO_ROLE_WRITE);
    assert_int_equal(hpo_role_parse("admin"), HPO_ROLE_ADMIN);
    assert_int_equal(hpo_role_parse("root"), HPO_ROLE_NONE);
    assert_true(HPO_ROLE_READ < HPO_ROLE_WRITE && HPO_ROLE_WRITE < HPO_ROLE_ADMIN);
    assert_string_equal(hpo_role_name(HPO_ROLE_ADMIN), "admin");
}

static void test_mint(void **state)
{
    char s1[64], s2[64], line[HPO_TOKEN_LINE_MAX], line2[HPO_TOKEN_LINE_MAX], msg[256];
    struct hpo_tokens *t;

    assert_int_equal(hpo_tokens_mint("ci:write:team-a-", s1, sizeof(s1), line, sizeof(line), msg,
                             sizeof(msg)), 0);
    assert_int_equal(strlen(s1), 48);
    assert_memory_equal(s1, "hpod_", 5);
    for (size_t i = 5; i < 48; i++) {
        char c = s1[i];
        assert_true((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_');
    }
    /* The line parses back and finds the secret. */
    t = parse_ok(line);
    assert_int_equal(t->n, 1);
    assert_string_equal(t->v[0].name, "ci");
    assert_int_equal(t->v[0].role, HPO_ROLE_WRITE);
    assert_string_equal(t->v[0].prefix, "team-a-");
    assert_ptr_equal(hpo_tokens_lookup(t, s1, strlen(s1)), &t->v[0]);
    hpo_tokens_free(t);
    /* The line holds no part of the secret. */
    assert_null(strstr(line, s1 + 5));
    /* Two mints differ. */
    assert_int_equal(hpo_tokens_mint("ops:admin", s2, sizeof(s2), line2, sizeof(line2), msg,
                             sizeof(msg)), 0);
    assert_string_not_equal(s1, s2);
    assert_int_equal(strncmp(line2, "ops admin ", 10), 0);
    assert_int_equal(strlen(line2), 10 + 64);

    assert_int_equal(hpo_tokens_mint("ci", s1, sizeof(s1), line, sizeof(line), msg, sizeof(msg)),
            -EINVAL);
    assert_string_equal(msg, "'ci' must be NAME:ROLE[:PREFIX]");
    assert_int_equal(hpo_tokens_mint("ci:root", s1, sizeof(s1), line, sizeof(line), msg,
                             sizeof(msg)), -EINVAL);
    assert_string_equal(msg, "role 'root' must be read, write or admin");
    assert_int_equal(hpo_tokens_mint(":read", s1, sizeof(s1), line, sizeof(line), msg,
                             sizeof(msg)), -EINVAL);
    assert_string_equal(msg, "token name must be 1-64 characters of A-Z a-z 0-9 _ . - @");
    assert_int_equal(hpo_tokens_mint("ci:read:", s1, sizeof(s1), line, sizeof(line), msg,
                             sizeof(msg)), -EINVAL);
    assert_string_equal(msg, "prefix must be 1-128 characters of A-Z a-z 0-9 _ . -");
    assert_int_equal(hpo_tokens_mint("ci:read:a:b", s1, sizeof(s1), line, sizeof(line), msg,
                             sizeof(msg)), -EINVAL);
}

static void test_access_config(void **state)
{
    struct hpo_access_config a;
    char msg[256] = "";

    hpo_access_config_init(&a);
    assert_int_equal(a.max_connections, 1024);
    assert_int_equal(hpo_access_per_client(&a), 256);
    assert_int_equal(a.head_timeout_s, 10);
    assert_int_equal(a.idle_timeout_s, 30);
    assert_false(a.allow_unauthenticated);
    assert_int_equal(hpo_access_config_set(&a, "max-connections", "10", msg, sizeof(msg)), 0);
    assert_int_equal(hpo_access_per_client(&a), 2);
    assert_int_equal(hpo_access_config_set(&a, "max-connections", "3", msg, sizeof(msg)), 0);
    assert_int_equal(hpo_access_per_client(&a), 1); /* never 0 */
    assert_int_equal(hpo_access_config_set(&a, "max-connections-per-client", "7", msg,
                             sizeof(msg)), 0);
    assert_int_equal(hpo_access_per_client(&a), 7);
    assert_int_equal(hpo_access_config_set(&a, "max-connections", "0", msg, sizeof(msg)),
            -EINVAL);
    assert_string_equal(msg, "max-connections: '0' must be an integer from 1 to 1000000");
    assert_int_equal(hpo_access_config_set(&a, "request-head-timeout", "-1", msg, sizeof(msg)),
            -EINVAL);
    assert_string_equal(msg, "request-head-timeout: '-1' must be an integer from 1 to 3600");
    assert_int_equal(hpo_access_config_set(&a, "connection-timeout", "5s", msg, sizeof(msg)),
            -EINVAL);
    assert_int_equal(hpo_access_config_set(&a, "allow-unauthenticated", "yes", msg, sizeof(msg)),
            0);
    assert_true(a.allow_unauthenticated);
    assert_int_equal(hpo_access_config_set(&a, "tokens", "/etc/hpod/tokens", msg, sizeof(msg)),
            0);
    assert_string_equal(a.tokens, "/etc/hpod/tokens");
    assert_int_equal(hpo_access_config_set(&a, "threads", "4", msg, sizeof(msg)), 1);

    assert_true(hpo_access_is_loopback("127.0.0.1"));
    assert_true(hpo_access_is_loopback("127.1.2.3"));
    assert_true(hpo_access_is_loopback("::1"));
    assert_false(hpo_access_is_loopback("0.0.0.0"));
    assert_false(hpo_access_is_loopback("::"));
    assert_false(hpo_access_is_loopback("10.0.0.1"));
    assert_false(hpo_access_is_loopback("localhost")); /* config.c turns it into 127.0.0.1 */
}

/* The decision table of access.c, without HTTP. */
static void test_decide(void **state)
{
    struct hpo_tokens *t = parse_ok("r read " D_ALPHA "\nw write " D_BETA " team-a-\n");
    struct hpo_principal who;
    struct hpo_error err;
    struct hpo_access_request rq = { .path = "/v1/studies/team-a-x", .method = "GET",
        .authorization = "Bearer hpod_alpha", .study = "team-a-x", .routed = true,
        .need = HPO_ROLE_READ };

    assert_true(hpo_access_decide(NULL, &rq, &who, &err)); /* no tokens: all allowed */
    assert_string_equal(who.name, "-");
    assert_int_equal(who.role, HPO_ROLE_ADMIN);
    assert_true(hpo_access_decide(t, &rq, &who, &err));
    assert_string_equal(who.name, "r");
    rq.method = "POST";
    rq.need = HPO_ROLE_WRITE; /* the row's role (routes.def) */
    assert_false(hpo_access_decide(t, &rq, &who, &err));
    assert_int_equal(err.code, HPO_PERMISSION_DENIED);
    assert_string_equal(err.message, "token 'r' has role read; POST /v1/studies/team-a-x needs write");
    rq.authorization = "Bearer hpod_beta";
    assert_true(hpo_access_decide(t, &rq, &who, &err));
    assert_string_equal(who.prefix, "team-a-");
    rq.study = "team-b-x";
    assert_false(hpo_access_decide(t, &rq, &who, &err));
    assert_int_equal(err.code, HPO_NOT_FOUND);
    assert_string_equal(err.message, "no study named 'team-b-x'");
    rq.method = "DELETE";
    rq.need = HPO_ROLE_ADMIN;
    assert_false(hpo_access_decide(t, &rq, &who, &err));
    assert_int_equal(err.code, HPO_PERMISSION_DENIED);
    rq.authorization = "Bearer hpod_gamma";
    assert_false(hpo_access_decide(t, &rq, &who, &err));
    assert_int_equal(err.code, HPO_UNAUTHENTICATED);
    rq.authorization = NULL;
    assert_false(hpo_access_decide(t, &rq, &who, &err));
    assert_int_equal(err.code, HPO_UNAUTHENTICATED);
    /* /healthz and paths outside /v1 need nothing; /metrics and /v1 do. */
    rq.healthz = true;
    rq.path = "/healthz";
    assert_true(hpo_access_decide(t, &rq, &who, &err));
    rq.healthz = false;
    rq.path = "/favicon.ico";
    assert_true(hpo_access_decide(t, &rq, &who, &err));
    rq.path = "/metrics";
    assert_false(hpo_access_decide(t, &rq, &who, &err));
    rq.path = "/v1";
    assert_false(hpo_access_decide(t, &rq, &who, &err));
    rq.path = "/v1x";
    assert_true(hpo_access_decide(t, &rq, &who, &err));
    /* A routed GET needs its row's role, not the method's: the backup row needs admin. */
    rq.authorization = "Bearer hpod_alpha";
    rq.path = "/v1/admin/backup";
    rq.method = "GET";
    rq.study = NULL;
    rq.need = HPO_ROLE_ADMIN;
    assert_false(hpo_access_decide(t, &rq, &who, &err));
    assert_int_equal(err.code, HPO_PERMISSION_DENIED);
    assert_string_equal(err.message, "token 'r' has role read; GET /v1/admin/backup needs admin");
    /* Unrouted: authenticated, then left to 404/405, except admin paths. */
    rq.routed = false;
    rq.study = NULL;
    rq.method = "POST";
    rq.path = "/v1/nothing";
    assert_true(hpo_access_decide(t, &rq, &who, &err));
    rq.path = "/v1/admin/whatever";
    rq.method = "GET";
    assert_false(hpo_access_decide(t, &rq, &who, &err));
    assert_int_equal(err.code, HPO_PERMISSION_DENIED);
    hpo_tokens_free(t);
}

/* Creating and listing under a prefix. */
static void test_scope_json(void **state)
{
    struct hpo_principal who = { .name = "ci", .role = HPO_ROLE_WRITE, .prefix = "team-a-" };
    struct hpo_principal all = { .name = "ops", .role = HPO_ROLE_ADMIN, .prefix = "" };
    struct hpo_error err;
    json_t *body = json_pack("{s:s}", "name", "team-b-x");
    json_t *list = json_pack("{s:[{s:s},{s:s},{s:s},{s:i}]}", "studies", "name", "team-a-1",
            "name", "team-b-1", "name", "team-a-2", "name", 3);

    assert_false(hpo_access_may_create(&who, body, &err));
    assert_int_equal(err.code, HPO_PERMISSION_DENIED);
    assert_string_equal(err.field, "name");
    assert_true(hpo_access_may_create(&all, body, &err));
    json_object_set_new(body, "name", json_string("team-a-x"));
    assert_true(hpo_access_may_create(&who, body, &err));
    json_object_set_new(body, "name", json_integer(5)); /* the service rejects it */
    assert_true(hpo_access_may_create(&who, body, &err));
    assert_true(hpo_access_may_create(&who, NULL, &err));
    hpo_access_filter_studies(&all, list);
    assert_int_equal(json_array_size(json_object_get(list, "studies")), 4);
    hpo_access_filter_studies(&who, list);
    assert_int_equal(json_array_size(json_object_get(list, "studies")), 2);
    assert_string_equal(json_string_value(json_object_get(
            json_array_get(json_object_get(list, "studies"), 1), "name")), "team-a-2");
    json_decref(body);
    json_decref(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_scope_and_roles),
        cmocka_unit_test(test_mint),
        cmocka_unit_test(test_access_config),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_scope_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
