/*
** sampler-test.h: helpers the sampler unit tests share (include after
** <cmocka.h>, "sampler.h" and "space.h").
*/
#ifndef HPO_TESTS_SAMPLER_TEST_H
#define HPO_TESTS_SAMPLER_TEST_H

#include <errno.h>
#include <stdio.h>

#include <jansson.h>

/* A space of d floats x0..x{d-1} in [0, 1]. */
static inline struct hpo_space *sampler_float_space(size_t d)
{
    json_t *params = json_array();
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };

    for (size_t i = 0; i < d; i++) {
        char name[32];
        snprintf(name, sizeof(name), "x%zu", i);
        json_array_append_new(params,
                json_pack("{s:s, s:s, s:f, s:f}", "name", name, "type", "float", "low", 0.0,
                        "high", 1.0));
    }
    assert_int_equal(hpo_space_parse(params, &space, &err), 0);
    json_decref(params);
    return space;
}

/* A sampler of `type` configured with the JSON `options`; fails the test on error. */
static inline void *sampler_make(const struct hpo_sampler_type *type,
        const struct hpo_space *space, const char *options)
{
    json_t *opts = json_loads(options, 0, NULL);
    struct hpo_error err = { 0 };
    void *state = NULL;

    assert_non_null(opts);
    if (type->configure(opts, space, &state, &err) != 0) {
        print_error("configure: %s: %s\n", err.field, err.message);
        fail();
    }
    json_decref(opts);
    return state;
}

/* configure refuses `options` with invalid_argument on `field` and leaves *state alone. */
static inline void sampler_expect_error(const struct hpo_sampler_type *type, const char *options,
        const char *field)
{
    struct hpo_space *space = sampler_float_space(2);
    json_t *opts = json_loads(options, 0, NULL);
    struct hpo_error err = { 0 };
    void *state = (void *)&err;

    assert_non_null(opts);
    assert_int_equal(type->configure(opts, space, &state, &err), -EINVAL);
    assert_int_equal(err.code, HPO_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
    assert_ptr_equal(state, (void *)&err);
    json_decref(opts);
    hpo_space_destroy(space);
}

#endif
