/*
** test-client-runutil.c: unit tests of hpoctl run's pure parts: environment
** variable names, {name} placeholders and the `hpo:` output lines.
*/
#include <math.h>
#include <setjmp.h> /* cmocka needs setjmp.h, stdarg.h and stddef.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runutil.h"

static void expect_env(const char *param, const char *want)
{
    char *got = hpoctl_env_name(param);

    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_env_name(void **state)
{
    (void)state;
    expect_env("lr", "HPO_PARAM_LR");
    expect_env("learning-rate", "HPO_PARAM_LEARNING_RATE");
    expect_env("layer.0.units", "HPO_PARAM_LAYER_0_UNITS");
    expect_env("Mixed_Case9", "HPO_PARAM_MIXED_CASE9");
    expect_env("", "HPO_PARAM_");
}

static const char *lookup(void *userdata, const char *name, size_t len)
{
    (void)userdata;
    if (len == 2 && memcmp(name, "lr", 2) == 0) {
        return "0.001";
    }
    if (len == 3 && memcmp(name, "opt", 3) == 0) {
        return "sgd";
    }
    if (len == 5 && memcmp(name, "empty", 5) == 0) {
        return "";
    }
    return NULL;
}

static void expect_subst(const char *arg, const char *want)
{
    char *got = hpoctl_substitute(arg, lookup, NULL);

    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_substitute(void **state)
{
    (void)state;
    expect_subst("--lr={lr}", "--lr=0.001");
    expect_subst("{lr}{opt}", "0.001sgd");
    expect_subst("{opt}-{lr}-{opt}", "sgd-0.001-sgd");
    expect_subst("plain", "plain");
    expect_subst("", "");
    expect_subst("{unknown}", "{unknown}");      /* unknown names stay */
    expect_subst("{lr", "{lr");                  /* no closing brace */
    expect_subst("{{lr}}", "{0.001}");           /* the inner {lr} is the placeholder */
    expect_subst("a{empty}b", "ab");
    expect_subst("{}", "{}");
    expect_subst("json={\"a\": {lr}}", "json={\"a\": 0.001}");
}

static void test_lines(void **state)
{
    int64_t step = -1;
    double value = NAN;

    (void)state;
    assert_int_equal(hpoctl_parse_line("hpo: report 3 0.25", &step, &value), HPOCTL_LINE_REPORT);
    assert_int_equal(step, 3);
    assert_true(value == 0.25);
    assert_int_equal(hpoctl_parse_line("hpo:report\t7   -1e-3 \r", &step, &value),
            HPOCTL_LINE_REPORT);
    assert_int_equal(step, 7);
    assert_true(value == -1e-3);
    assert_int_equal(hpoctl_parse_line("hpo: value 0.1", &step, &value), HPOCTL_LINE_VALUE);
    assert_true(value == 0.1);
    assert_int_equal(hpoctl_parse_line("hpo: value -42", &step, &value), HPOCTL_LINE_VALUE);
    assert_true(value == -42.0);
    {
        const char *name = NULL;
        size_t len = 0;

        assert_int_equal(hpoctl_parse_line_named("hpo: value error 0.08", &step, &value, &name,
                                 &len),
                HPOCTL_LINE_NAMED_VALUE);
        assert_true(value == 0.08);
        assert_int_equal(len, 5);
        assert_memory_equal(name, "error", 5);
        assert_int_equal(hpoctl_parse_line_named("hpo:  constraint\tmemory_gb  11.2 \r", &step,
                                 &value, &name, &len),
                HPOCTL_LINE_CONSTRAINT);
        assert_true(value == 11.2);
        assert_int_equal(len, 9);
        assert_memory_equal(name, "memory_gb", 9);
        assert_int_equal(hpoctl_parse_line_named("hpo: value 1e3x -1e-3", &step, &value, &name,
                                 &len),
                HPOCTL_LINE_NAMED_VALUE);
        assert_true(value == -1e-3);
        assert_int_equal(len, 4);
    }

    step = 99;
    value = 99;
    assert_int_equal(hpoctl_parse_line("loss 0.3", &step, &value), HPOCTL_LINE_OTHER);
    assert_int_equal(hpoctl_parse_line(" hpo: value 1", &step, &value), HPOCTL_LINE_OTHER);
    assert_int_equal(hpoctl_parse_line("", &step, &value), HPOCTL_LINE_OTHER);
    assert_int_equal(hpoctl_parse_line("hpo: value", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: value nan", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: value inf", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: value 1e999", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: value 1 2", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: value 0.5x", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: report -1 0.5", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: report 1.5 0.5", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: report 2", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: report 99999999999999999999 1", &step, &value),
            HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: values 1", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: constraint 1", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: constraint mem", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: value err nan", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: value err 1 2", &step, &value), HPOCTL_LINE_BAD);
    assert_int_equal(hpoctl_parse_line("hpo: value err", &step, &value), HPOCTL_LINE_BAD);
    assert_true(value == 99);
    assert_int_equal(hpoctl_parse_line("hpo: tell 1", &step, &value), HPOCTL_LINE_BAD);
    /* Out-parameters untouched unless REPORT or VALUE. */
    assert_int_equal(step, 99);
    assert_true(value == 99);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_name),
        cmocka_unit_test(test_substitute),
        cmocka_unit_test(test_lines),
    };

    return cmocka_run_group_tests_name("client-runutil", tests, NULL, NULL);
}
