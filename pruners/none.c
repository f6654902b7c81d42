/*
** none.c: the pruner that never prunes (the default).
*/
#include "pruner.h"

static int none_configure(const json_t *options, void **state, struct hpo_error *err)
{
    static const char *const allowed[] = { NULL };

    *state = NULL;
    return hpo_options_check_keys(options, allowed, "pruner", err);
}

static json_t *none_describe(const void *state)
{
    return json_object();
}

static int none_decide(void *state, const struct hpo_history *history, size_t trial, int64_t step,
        bool *ret_prune, struct hpo_error *err)
{
    *ret_prune = false;
    return 0;
}

static void none_destroy(void *state)
{
}

const struct hpo_pruner_type hpo_pruner_none = {
    .name = "none",
    .options_schema = "{}",
    .configure = none_configure,
    .describe = none_describe,
    .decide = none_decide,
    .destroy = none_destroy,
};
