/*
** random.c: random search (docs/ALGORITHMS.md §1). Each coordinate is
** uniform in the unit cube; decoding applies log, steps and choices, and
** `when` conditions. Supports vectors. Stateless.
*/
#include <errno.h>
#include <stdlib.h>

#include "../core/history.h"
#include "../core/rng.h"
#include "../core/space.h"
#include "sampler.h"

static int random_configure(const json_t *options, const struct hpo_space *space, void **state,
        struct hpo_error *err)
{
    static const char *const allowed[] = { NULL };
    int r = hpo_options_check_keys(options, allowed, "sampler", err);

    if (r < 0) {
        return r;
    }
    *state = NULL;
    return 0;
}

static json_t *random_describe(const void *state)
{
    return json_object();
}

static int random_suggest(void *state, const struct hpo_space *space,
        const struct hpo_history *history, struct hpo_rng *rng, double *unit_point,
        struct hpo_error *err)
{
    for (size_t j = 0; j < space->dim; j++) {
        unit_point[j] = hpo_rng_uniform(rng);
    }
    return 0;
}

static void random_destroy(void *state)
{
}

const struct hpo_sampler_type hpo_sampler_random = {
    .name = "random",
    .supports_vectors = true,
    .options_schema = "{}",
    .configure = random_configure,
    .describe = random_describe,
    .suggest = random_suggest,
    .destroy = random_destroy,
};
