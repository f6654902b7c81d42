/*
** qmc.c: quasi-Monte Carlo search (docs/ALGORITHMS.md §13, departures
** marked **hpod** there; the generator: §2). Trial number n takes point n of
** a scrambled Sobol or Halton sequence over all coordinates of the unit cube
** (point n + 1 unscrambled, so that no trial sits on the lower corner), so
** a restart simply continues the sequence. Categoricals take one coordinate,
** floored by the decoder; conditional params take theirs whether active or
** not. No vectors.
**
** State: the scramble key, drawn from the rng of the first trial the sampler
** is asked for (so it follows from the study seed) and saved once; without
** it a restart could not rebuild the same scramble, because samplers never
** see the seed itself. The scrambled tables are rebuilt from the key.
*/
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/history.h"
#include "../core/rng.h"
#include "../core/space.h"
#include "sampler.h"
#include "sobol.h"

enum qmc_type { QMC_SOBOL, QMC_HALTON };

#define QMC_MAGIC    0x31434d51u /* "QMC1" */
#define QMC_BLOB_LEN 16

struct qmc {
    enum qmc_type type;
    bool scramble;
    size_t dim;
    bool keyed; /* key drawn (always true unscrambled: nothing to draw) */
    bool dirty; /* key drawn since the last save */
    uint64_t key;
    uint32_t *dirs;  /* sobol: dim x 32 direction numbers (scrambled with the key) */
    uint32_t *shift; /* sobol: dim digital shifts */
    unsigned *base;  /* halton: dim primes */
    int *digits;     /* halton: digits K per dim (scrambled) */
    uint16_t **perm; /* halton scrambled: per dim K permutations of 0..base-1 */
};

static const char *const qmc_types[] = { "sobol", "halton", NULL };

/* The first n primes. */
static int first_primes(unsigned *out, size_t n)
{
    unsigned c = 2;

    for (size_t i = 0; i < n; c++) {
        bool prime = true;
        for (size_t k = 0; k < i && out[k] * out[k] <= c; k++) {
            if (c % out[k] == 0) {
                prime = false;
                break;
            }
        }
        if (prime) {
            out[i++] = c;
        }
    }
    return 0;
}

static void free_tables(struct qmc *q)
{
    if (q->perm != NULL) {
        for (size_t j = 0; j < q->dim; j++) {
            free(q->perm[j]);
        }
    }
    free(q->perm);
    free(q->dirs);
    free(q->shift);
    q->perm = NULL;
    q->dirs = NULL;
    q->shift = NULL;
}

/* Build the direction numbers / permutations for key `key`. 0 or -ENOMEM. */
static int build_tables(struct qmc *q, uint64_t key)
{
    struct hpo_rng rng;
    size_t n = q->dim ? q->dim : 1;

    free_tables(q);
    hpo_rng_seed(&rng, key);
    if (q->type == QMC_SOBOL) {
        q->dirs = malloc(n * HPO_SOBOL_BITS * sizeof(*q->dirs));
        q->shift = calloc(n, sizeof(*q->shift));
        if (q->dirs == NULL || q->shift == NULL) {
            free_tables(q);
            return -ENOMEM;
        }
        for (size_t j = 0; j < q->dim; j++) {
            uint32_t *v = q->dirs + j * HPO_SOBOL_BITS;
            hpo_sobol_directions(j, v);
            if (q->scramble) {
                hpo_sobol_scramble(v, &rng);
                q->shift[j] = (uint32_t)hpo_rng_next(&rng);
            }
        }
        return 0;
    }
    if (!q->scramble) {
        return 0;
    }
    q->perm = calloc(n, sizeof(*q->perm));
    if (q->perm == NULL) {
        return -ENOMEM;
    }
    for (size_t j = 0; j < q->dim; j++) {
        unsigned b = q->base[j];
        int k_digits = q->digits[j];
        uint16_t *p = malloc((size_t)k_digits * b * sizeof(*p));
        if (p == NULL) {
            free_tables(q);
            return -ENOMEM;
        }
        q->perm[j] = p;
        for (int k = 0; k < k_digits; k++) {
            uint16_t *row = p + (size_t)k * b;
            for (unsigned d = 0; d < b; d++) {
                row[d] = (uint16_t)d;
            }
            for (unsigned d = b - 1; d > 0; d--) {
                unsigned e = (unsigned)hpo_rng_below(&rng, (uint64_t)d + 1);
                uint16_t t = row[d];
                row[d] = row[e];
                row[e] = t;
            }
        }
    }
    return 0;
}

static void qmc_destroy(void *state)
{
    struct qmc *q = state;

    if (q == NULL) {
        return;
    }
    free_tables(q);
    free(q->base);
    free(q->digits);
    free(q);
}

/*
** Coordinates with a sequence: Sobol has direction numbers for 1024; Halton
** stops there too (its scrambled tables grow with the sum of the primes and
** its high dimensions correlate badly, §13.2).
*/
#define QMC_MAX_DIM HPO_SOBOL_MAX_DIM

static int qmc_configure(const json_t *options, const struct hpo_space *space, void **state,
        struct hpo_error *err)
{
    static const char *const allowed[] = { "qmc_type", "scramble", NULL };
    struct qmc *q;
    int type, r;
    bool scramble;

    r = hpo_options_check_keys(options, allowed, "sampler", err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_enum(options, "qmc_type", "sampler", qmc_types, QMC_SOBOL, &type, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_bool(options, "scramble", "sampler", true, &scramble, err);
    if (r < 0) {
        return r;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    q->type = (enum qmc_type)type;
    q->scramble = scramble;
    /* Coordinates past the cap are drawn at random (suggest). */
    q->dim = space->dim < QMC_MAX_DIM ? space->dim : QMC_MAX_DIM;
    if (q->type == QMC_HALTON) {
        size_t n = q->dim;
        q->base = calloc(n ? n : 1, sizeof(*q->base));
        q->digits = calloc(n ? n : 1, sizeof(*q->digits));
        if (q->base == NULL || q->digits == NULL) {
            qmc_destroy(q);
            return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        }
        first_primes(q->base, n);
        for (size_t j = 0; j < n; j++) {
            /* Owen (2017), as scipy: ceil(54 / log2 b) - 1 digits. */
            q->digits[j] = (int)ceil(54.0 / log2((double)q->base[j])) - 1;
        }
    }
    q->keyed = !scramble;
    if (!scramble && build_tables(q, 0) < 0) {
        qmc_destroy(q);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    *state = q;
    return 0;
}

static json_t *qmc_describe(const void *state)
{
    const struct qmc *q = state;

    return json_pack("{s:s, s:b}", "qmc_type", qmc_types[q->type], "scramble", q->scramble);
}

/*
** The number of the trial being suggested: the service samples the oldest
** waiting trial first (an enqueued trial with params left to fill), else a
** new trial, numbered history->n_trials.
*/
static int64_t asked_number(const struct hpo_history *h)
{
    if (h->count[HPO_STATE_WAITING] > 0) {
        for (size_t i = 0; i < h->n_trials; i++) {
            if (h->trials[i]->state == HPO_STATE_WAITING) {
                return (int64_t)i;
            }
        }
    }
    return (int64_t)h->n_trials;
}

/* Coordinate j of Halton point n. */
static double halton(const struct qmc *q, size_t j, uint64_t n)
{
    unsigned b = q->base[j];
    double f = 1.0 / (double)b, x = 0.0;

    if (!q->scramble) {
        while (n > 0) {
            x += f * (double)(n % b);
            n /= b;
            f /= (double)b;
        }
        return x;
    }
    for (int k = 0; k < q->digits[j]; k++) {
        x += f * (double)q->perm[j][(size_t)k * b + n % b];
        n /= b;
        f /= (double)b;
    }
    return x < 1.0 ? x : nextafter(1.0, 0.0);
}

static int qmc_suggest(void *state, const struct hpo_space *space,
        const struct hpo_history *history, struct hpo_rng *rng, double *unit_point,
        struct hpo_error *err)
{
    struct qmc *q = state;
    uint64_t n = (uint64_t)asked_number(history) + (q->scramble ? 0 : 1);

    if (!q->keyed) {
        uint64_t key = hpo_rng_next(rng);
        if (build_tables(q, key) < 0) {
            return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
        }
        q->key = key;
        q->keyed = true;
        q->dirty = true;
    }
    for (size_t j = 0; j < space->dim; j++) {
        if (j >= q->dim) {
            unit_point[j] = hpo_rng_uniform(rng);
        } else if (q->type == QMC_SOBOL) {
            uint32_t x = hpo_sobol_point(q->dirs + j * HPO_SOBOL_BITS, n) ^ q->shift[j];
            unit_point[j] = (double)x * (1.0 / 4294967296.0);
        } else {
            unit_point[j] = halton(q, j, n);
        }
    }
    return 0;
}

static bool qmc_needs_save(const void *state)
{
    const struct qmc *q = state;

    return q->dirty;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

/* Blob: magic (4 bytes LE), keyed flag (4), key (8). */
static int qmc_save(const void *state, void **blob, size_t *len)
{
    struct qmc *q = (struct qmc *)state;
    unsigned char *p = *blob;

    if (p == NULL || *len < QMC_BLOB_LEN) {
        p = realloc(p, QMC_BLOB_LEN);
        if (p == NULL) {
            return -ENOMEM;
        }
    }
    memset(p, 0, QMC_BLOB_LEN);
    put64(p, QMC_MAGIC);
    p[4] = q->keyed && q->scramble;
    put64(p + 8, q->key);
    *blob = p;
    *len = QMC_BLOB_LEN;
    q->dirty = false;
    return 0;
}

static int qmc_load(void *state, const void *blob, size_t len)
{
    struct qmc *q = state;
    const unsigned char *p = blob;
    bool keyed;
    uint64_t key;

    if (len != QMC_BLOB_LEN || (get64(p) & 0xffffffffu) != QMC_MAGIC || p[4] > 1) {
        return -EINVAL;
    }
    keyed = p[4] == 1;
    key = get64(p + 8);
    if (keyed && !q->scramble) {
        return -EINVAL;
    }
    if (q->scramble) {
        if (keyed && (!q->keyed || key != q->key) && build_tables(q, key) < 0) {
            return -ENOMEM;
        }
        q->keyed = keyed;
        q->key = keyed ? key : 0;
    }
    q->dirty = false;
    return 0;
}

const struct hpo_sampler_type hpo_sampler_qmc = {
    .name = "qmc",
    .supports_vectors = false,
    .options_schema = "{\"qmc_type\": {\"type\": \"string\", \"enum\": [\"sobol\", \"halton\"], "
                      "\"default\": \"sobol\"}, "
                      "\"scramble\": {\"type\": \"boolean\", \"default\": true}}",
    .configure = qmc_configure,
    .describe = qmc_describe,
    .suggest = qmc_suggest,
    .save = qmc_save,
    .load = qmc_load,
    .destroy = qmc_destroy,
    .needs_save = qmc_needs_save,
};
