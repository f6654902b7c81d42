/*
** fuzz-blob.c: libFuzzer target for two decoders of stored bytes:
** - storage/blobs.c's hpo__blob_parse, the side-file reference
**   "HPOBLOB1:<name>:<length>:<xxh64>" a cell may hold (first byte even);
** - samplers/gradient.c's load(), the gradient sampler's state blob, on a
**   freshly configured state (first byte odd; byte >> 1 picks one of the
**   configurations below).
** Accepted input must be canonical: a parsed reference prints back to the
** same bytes, a loaded state saves back to the same blob, and the loaded
** state must then survive a few rounds of suggest and tell.
*/
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../core/history.h"
#include "../../core/rng.h"
#include "../../core/space.h"
#include "../../samplers/sampler.h"
#include "../../storage/storage-int.h"
#include "fuzz.h"

/* ---- blob references -------------------------------------------------- */

static void fuzz_blob_ref(const uint8_t *data, size_t size)
{
    struct hpo_blob_ref ref, again;
    struct hpo_blobs b = { .dirfd = -1 };
    char text[sizeof(ref.text) + 64];
    int n;

    memset(&ref, 0xa5, sizeof(ref));
    if (!hpo__blob_parse(data, size, &ref)) {
        /* Not a reference: an inline value, unless it looks like one (then it is in a file). */
        CHECK(hpo__blob_obsolete(&b, data, size, false) == 0);
        CHECK(b.obsolete.n == 0);
        return;
    }
    /* Fields are sane and print back to exactly the input. */
    CHECK(memchr(ref.name, '\0', sizeof(ref.name)) != NULL);
    CHECK(ref.name[0] == 's' && strchr(ref.name, '/') == NULL && strchr(ref.name, ':') == NULL);
    CHECK(ref.text_len == size && memcmp(ref.text, data, size) == 0);
    n = snprintf(text, sizeof(text), "%s%s:%zu:%016" PRIx64, HPO_BLOB_MAGIC, ref.name, ref.len,
            ref.hash);
    CHECK(n > 0 && (size_t)n == size && memcmp(text, data, size) == 0);
    {
        char hex[17];
        snprintf(hex, sizeof(hex), "%016" PRIx64, ref.counter);
        CHECK(strlen(ref.name) > 17 && strcmp(ref.name + strlen(ref.name) - 16, hex) == 0);
    }
    /* What prepare writes for the same counter parses back to the same fields. */
    b.next = ref.counter;
    hpo__blob_prepare(&b, (int64_t)(ref.hash >> 1), data, size, &again);
    CHECK(again.counter == ref.counter && b.next == ref.counter + 1);
    memset(&ref, 0, sizeof(ref));
    CHECK(hpo__blob_parse(again.text, again.text_len, &ref));
    CHECK(strcmp(ref.name, again.name) == 0 && ref.counter == again.counter &&
            ref.len == again.len && ref.hash == again.hash);
    /* A reference cell makes its file obsolete. */
    CHECK(hpo__blob_obsolete(&b, data, size, false) == 0);
    CHECK(b.obsolete.n == 1);
    hpo__blobs_close(&b);
}

/* ---- gradient sampler state ------------------------------------------- */

struct config {
    const char *space;
    const char *options;
};

static const struct config configs[] = {
    { "[{\"name\":\"x\",\"type\":\"float\",\"low\":-1,\"high\":1}]", "{}" },
    { "[{\"name\":\"lr\",\"type\":\"float\",\"low\":0.001,\"high\":1,\"log\":true},"
      "{\"name\":\"v\",\"type\":\"float\",\"low\":0,\"high\":1,\"size\":3},"
      "{\"name\":\"c\",\"type\":\"categorical\",\"choices\":[\"a\",\"b\"]},"
      "{\"name\":\"y\",\"type\":\"float\",\"low\":0,\"high\":1,\"when\":{\"c\":[\"a\"]}}]",
      "{\"optimizer\":\"sgd\"}" },
    { "[{\"name\":\"x\",\"type\":\"float\",\"low\":-1,\"high\":1},"
      "{\"name\":\"n\",\"type\":\"int\",\"low\":1,\"high\":8}]",
      "{\"optimizer\":\"momentum\",\"batch_size\":3,\"hd_beta\":0.01,\"max_staleness\":2}" },
    { "[{\"name\":\"v\",\"type\":\"float\",\"low\":-2,\"high\":2,\"size\":4}]",
      "{\"estimator\":\"spsa\",\"max_staleness\":3}" },
    { "[{\"name\":\"x\",\"type\":\"float\",\"low\":0,\"high\":1,\"step\":0.1},"
      "{\"name\":\"z\",\"type\":\"float\",\"low\":-5,\"high\":5}]",
      "{\"estimator\":\"fd\",\"schedule\":\"cosine\",\"schedule_steps\":5}" },
    { "[{\"name\":\"x\",\"type\":\"float\",\"low\":-1,\"high\":1}]",
      "{\"estimator\":\"client\",\"batch_size\":2,\"transform\":\"clip\",\"max_grad_norm\":1}" },
};
#define N_CONFIGS (sizeof(configs) / sizeof(configs[0]))

static struct hpo_space *spaces[N_CONFIGS];
static json_t *options[N_CONFIGS];

static void setup(void)
{
    static int done;
    struct hpo_error err = { 0 };

    if (done) {
        return;
    }
    for (size_t i = 0; i < N_CONFIGS; i++) {
        json_t *params = json_loads(configs[i].space, 0, NULL);
        options[i] = json_loads(configs[i].options, 0, NULL);
        CHECK(params != NULL && options[i] != NULL);
        CHECK(hpo_space_parse(params, &spaces[i], &err) == 0);
        json_decref(params);
    }
    done = 1;
}

/* A smooth objective and its derivative, per coordinate. */
static double objective(const struct hpo_space *space, const double *values, double *grad)
{
    double y = 0.0;

    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        for (size_t j = p->offset; j < p->offset + p->width; j++) {
            grad[j] = NAN;
            if (p->type == HPO_PARAM_FLOAT && !isnan(values[j])) {
                y += (values[j] - 0.3) * (values[j] - 0.3);
                grad[j] = 2.0 * (values[j] - 0.3);
            }
        }
    }
    return y;
}

/*
** What the service does around a sampler: `rounds` asks (suggest, decode),
** each told complete, failed or pruned, with or without a gradient, the
** state saved and reloaded now and then. Suggested active coordinates must
** lie in the unit cube. With `strict`, every reload must succeed; a state
** loaded from fuzzed bytes may hold trial numbers this history never had
** (a step log from the future), which the next save keeps and load then
** refuses: without `strict` that ends the rounds.
*/
static void exercise(const struct hpo_sampler_type *type, void *state,
        const struct hpo_space *space, struct hpo_history *h, unsigned rounds, uint64_t seed,
        int strict)
{
    double *unit = malloc((space->dim + 1) * sizeof(double));
    double *grad = malloc((space->dim + 1) * sizeof(double));
    void *blob = NULL;
    size_t len = 0;

    CHECK(unit != NULL && grad != NULL);
    for (unsigned r = 0; r < rounds; r++) {
        struct hpo_error err = { 0 };
        struct hpo_rng rng;
        struct hpo_trial *t;
        int ret;

        hpo_rng_init(&rng, seed, h->n_trials);
        ret = type->suggest(state, space, h, &rng, unit, &err);
        if (ret < 0) {
            CHECK(err.code != HPO_OK && err.message[0] != '\0');
            break;
        }
        t = hpo_history_append(h, HPO_STATE_RUNNING);
        CHECK(t != NULL);
        for (size_t i = 0; i < space->n_params; i++) {
            const struct hpo_param *p = &space->params[i];
            int active = hpo_space_active(space, i, t->values);
            for (size_t j = p->offset; j < p->offset + p->width; j++) {
                if (active) {
                    /*
                    ** Known gap: load() cannot see the space, so a fuzzed u may
                    ** mark a `when` param inactive while its parent's value
                    ** makes it active (NaN then); only strict runs check those.
                    */
                    CHECK((!strict && p->n_conditions > 0 && isnan(unit[j])) ||
                            (unit[j] >= 0.0 && unit[j] <= 1.0));
                    t->values[j] = hpo_param_from_unit(p, unit[j]);
                    t->unit[j] = hpo_param_to_unit(p, t->values[j]);
                }
            }
        }
        if (type->observe != NULL) {
            type->observe(state, h, (size_t)t->number);
        }
        t->value = objective(space, t->values, grad);
        hpo_history_set_state(h, t, (seed >> (r % 16)) % 7 == 0 ? HPO_STATE_FAILED :
                (seed >> (r % 16)) % 11 == 0 ? HPO_STATE_PRUNED : HPO_STATE_COMPLETE);
        if (t->state == HPO_STATE_FAILED) {
            t->value = NAN;
        }
        if (type->tell != NULL) {
            type->tell(state, space, h, (size_t)t->number, (seed >> r) & 1 ? grad : NULL);
        }
        if (type->save != NULL && (r % 3 == 2 || (type->needs_save && type->needs_save(state)))) {
            CHECK(type->save(state, &blob, &len) == 0);
            ret = type->load(state, blob, len);
            CHECK(ret == 0 || (!strict && ret == -EINVAL));
            if (ret != 0) {
                break;
            }
        }
    }
    free(blob);
    free(grad);
    free(unit);
}

static void fuzz_gradient(unsigned which, const uint8_t *data, size_t size)
{
    const struct hpo_sampler_type *type = &hpo_sampler_gradient;
    const struct hpo_space *space;
    struct hpo_history h;
    struct hpo_error err = { 0 };
    void *state = NULL, *blob = NULL;
    size_t len = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    int r;

    setup();
    space = spaces[which % N_CONFIGS];
    CHECK(type->configure(options[which % N_CONFIGS], space, &state, &err) == 0);
    r = type->load(state, data, size);
    if (r != 0) {
        CHECK(r == -EINVAL || r == -ENOMEM);
        type->destroy(state);
        return;
    }
    /* Canonical: saving the loaded state gives back the same bytes. */
    CHECK(type->save(state, &blob, &len) == 0);
    CHECK(len == size && memcmp(blob, data, size) == 0);
    free(blob);
    if (type->describe != NULL) {
        json_decref(type->describe(state));
    }
    if (type->status != NULL) {
        json_decref(type->status(state));
    }
    /* The state as the service would use it after a restart. */
    for (size_t i = 0; i < size; i++) {
        seed = (seed ^ data[i]) * 0x100000001b3ULL;
    }
    hpo_history_init(&h, space, "fuzz", false);
    exercise(type, state, space, &h, 6, seed, 0);
    hpo_history_finish(&h);
    type->destroy(state);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    if ((data[0] & 1) == 0) {
        /* Copy to an exact-size buffer without the selector byte, so overreads show. */
        uint8_t *copy = malloc(size - 1 ? size - 1 : 1);
        CHECK(copy != NULL);
        memcpy(copy, data + 1, size - 1);
        fuzz_blob_ref(copy, size - 1);
        free(copy);
    } else {
        uint8_t *copy = malloc(size - 1 ? size - 1 : 1);
        CHECK(copy != NULL);
        memcpy(copy, data + 1, size - 1);
        fuzz_gradient(data[0] >> 1, copy, size - 1);
        free(copy);
    }
    return 0;
}
