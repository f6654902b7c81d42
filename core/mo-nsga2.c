/*
** mo-nsga2.c: NSGA-II generations and children as a pure function of the
** finished trials (mo.h; docs/ALGORITHMS.md §9.5).
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mo.h"
#include "rng.h"

void hpo_nsga2_defaults(struct hpo_nsga2_options *opt)
{
    opt->population_size = 50;
    opt->crossover_prob = 0.9;
    opt->swapping_prob = 0.5;
    opt->mutation_prob = -1.0;
    opt->constrained = 0;
}

static int check_options(const struct hpo_nsga2_options *opt, unsigned m)
{
    if (opt->population_size < 2 || m == 0 || m > HPO_MO_MAX_OBJECTIVES) {
        return -EINVAL;
    }
    if (!(opt->crossover_prob >= 0.0 && opt->crossover_prob <= 1.0) ||
            !(opt->swapping_prob >= 0.0 && opt->swapping_prob <= 1.0) ||
            !(opt->mutation_prob <= 1.0)) {
        return -EINVAL;
    }
    return 0;
}

/* The selection (0, 1, ...) that first sees trial t (docs/ALGORITHMS.md §9.5). */
static uint64_t visible_at(const struct hpo_mo_trial *t, uint64_t p)
{
    uint64_t b = t->number / p, s;

    if (t->told_at == 0) {
        return b;
    }
    /* Told before trial (s+1)P was asked iff told_at <= (s+1)P. */
    s = (t->told_at - 1) / p;
    return s > b ? s : b;
}

struct vis_ctx {
    const struct hpo_mo_trial *trials;
    const uint64_t *vis;
};

/* By visibility, then by number. */
static int vis_cmp(const void *pa, const void *pb, void *arg)
{
    const struct vis_ctx *c = arg;
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;

    if (c->vis[a] != c->vis[b]) {
        return c->vis[a] < c->vis[b] ? -1 : 1;
    }
    if (c->trials[a].number != c->trials[b].number) {
        return c->trials[a].number < c->trials[b].number ? -1 : 1;
    }
    return 0;
}

static int num_cmp(const void *pa, const void *pb, void *arg)
{
    const struct hpo_mo_trial *t = arg;
    uint64_t a = t[*(const size_t *)pa].number, b = t[*(const size_t *)pb].number;

    return a < b ? -1 : a > b;
}

/*
** The parent population of `generation` as indices into `trials`, in
** selection order: ret_idx needs room for P entries. Returns the count or a
** negative errno.
*/
static long parents_idx(const struct hpo_nsga2_options *opt, const struct hpo_mo_trial *trials,
        size_t n, unsigned m, uint64_t generation, size_t *ret_idx)
{
    size_t p = opt->population_size, n_elite = 0, next = 0;
    size_t *ord = NULL, *pool = NULL, *chosen = NULL;
    uint64_t *vis = NULL;
    double *loss = NULL, *viol = NULL;
    long rc = 0;

    if (generation == 0 || n == 0) {
        return 0;
    }
    ord = malloc(n * sizeof(*ord));
    vis = malloc(n * sizeof(*vis));
    pool = malloc((n + p) * sizeof(*pool));
    chosen = malloc((n + p) * sizeof(*chosen));
    loss = malloc((n + p) * m * sizeof(*loss));
    viol = malloc((n + p) * sizeof(*viol));
    if (ord == NULL || vis == NULL || pool == NULL || chosen == NULL || loss == NULL ||
            viol == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        ord[i] = i;
        vis[i] = visible_at(&trials[i], p);
    }
    {
        struct vis_ctx c = { trials, vis };

        qsort_r(ord, n, sizeof(*ord), vis_cmp, &c);
    }
    /* A trial number twice is a caller bug: refuse rather than guess. */
    memcpy(pool, ord, n * sizeof(*pool));
    qsort_r(pool, n, sizeof(*pool), num_cmp, (void *)trials);
    for (size_t i = 1; i < n; i++) {
        if (trials[pool[i]].number == trials[pool[i - 1]].number) {
            rc = -EINVAL;
            goto out;
        }
    }
    /* Selections 0 .. generation-1; a selection with nothing new keeps the elite. */
    for (uint64_t s = 0; s < generation && next < n; s++) {
        size_t k = n_elite;
        long got;

        if (vis[ord[next]] != s) {
            if (vis[ord[next]] >= generation) {
                break;
            }
            s = vis[ord[next]];
        }
        memcpy(pool, ret_idx, n_elite * sizeof(*pool));
        while (next < n && vis[ord[next]] == s) {
            pool[k++] = ord[next++];
        }
        /* Pool in number order, so the result does not depend on the input order. */
        qsort_r(pool, k, sizeof(*pool), num_cmp, (void *)trials);
        for (size_t j = 0; j < k; j++) {
            memcpy(loss + j * m, trials[pool[j]].loss, m * sizeof(*loss));
            viol[j] = trials[pool[j]].violation;
        }
        got = hpo_mo_select(loss, k, m, opt->constrained ? viol : NULL, p, chosen);
        if (got < 0) {
            rc = got;
            goto out;
        }
        for (long j = 0; j < got; j++) {
            ret_idx[j] = pool[chosen[j]];
        }
        n_elite = (size_t)got;
    }
    rc = (long)n_elite;
out:
    free(ord);
    free(vis);
    free(pool);
    free(chosen);
    free(loss);
    free(viol);
    return rc;
}

int hpo_nsga2_parents(const struct hpo_nsga2_options *opt, const struct hpo_mo_trial *trials,
        size_t n, unsigned m, uint64_t generation, uint64_t *ret_numbers, size_t *ret_count)
{
    size_t *idx;
    long k;
    int rc = check_options(opt, m);

    if (rc < 0) {
        return rc;
    }
    idx = malloc(opt->population_size * sizeof(*idx));
    if (idx == NULL) {
        return -ENOMEM;
    }
    k = parents_idx(opt, trials, n, m, generation, idx);
    if (k < 0) {
        free(idx);
        return (int)k;
    }
    for (long j = 0; j < k; j++) {
        ret_numbers[j] = trials[idx[j]].number;
    }
    *ret_count = (size_t)k;
    free(idx);
    return 0;
}

static int beats(const struct hpo_nsga2_options *opt, const struct hpo_mo_trial *a,
        const struct hpo_mo_trial *b, unsigned m)
{
    if (opt->constrained) {
        return hpo_mo_constrained_dominates(a->loss, a->violation, b->loss, b->violation, m);
    }
    return hpo_mo_dominates(a->loss, b->loss, m);
}

/*
** Binary tournament (Optuna _select_parent) among pop[0..k-1] without
** position `skip` (k when none): two uniform draws with replacement; the
** first wins only if it dominates the second. Returns a position in pop.
*/
static size_t tournament(const struct hpo_nsga2_options *opt, const struct hpo_mo_trial *trials,
        const size_t *pop, size_t k, size_t skip, unsigned m, struct hpo_rng *rng)
{
    size_t kk = skip < k ? k - 1 : k, a, b;

    a = (size_t)hpo_rng_below(rng, kk);
    b = (size_t)hpo_rng_below(rng, kk);
    if (skip < k) {
        a += a >= skip;
        b += b >= skip;
    }
    return beats(opt, &trials[pop[a]], &trials[pop[b]], m) ? a : b;
}

int hpo_nsga2_child(const struct hpo_nsga2_options *opt, const struct hpo_mo_trial *trials,
        size_t n, unsigned m, unsigned d, uint64_t seed, uint64_t number, double *ret_u,
        struct hpo_nsga2_child *ret_info)
{
    struct hpo_nsga2_child info = { 0 };
    struct hpo_rng rng;
    size_t *pop;
    double mp;
    long k;
    int rc = check_options(opt, m);

    if (rc < 0) {
        return rc;
    }
    pop = malloc(opt->population_size * sizeof(*pop));
    if (pop == NULL) {
        return -ENOMEM;
    }
    info.generation = number / opt->population_size;
    k = parents_idx(opt, trials, n, m, info.generation, pop);
    if (k < 0) {
        free(pop);
        return (int)k;
    }
    hpo_rng_init(&rng, seed, number);
    if (k == 0) {
        for (unsigned j = 0; j < d; j++) {
            ret_u[j] = hpo_rng_uniform(&rng);
        }
        free(pop);
        if (ret_info != NULL) {
            *ret_info = info;
        }
        return 0;
    }
    if (hpo_rng_uniform(&rng) < opt->crossover_prob) {
        /* Two parents by tournament, the second without the first (one member: itself). */
        size_t a = tournament(opt, trials, pop, (size_t)k, (size_t)k, m, &rng);
        size_t b = k > 1 ? tournament(opt, trials, pop, (size_t)k, a, m, &rng) : a;
        const double *u0 = trials[pop[a]].u, *u1 = trials[pop[b]].u;

        info.kind = 1;
        info.parent[0] = trials[pop[a]].number;
        info.parent[1] = trials[pop[b]].number;
        /* Uniform crossover: parent 1's coordinate where U >= swapping_prob. */
        for (unsigned j = 0; j < d; j++) {
            ret_u[j] = hpo_rng_uniform(&rng) >= opt->swapping_prob ? u1[j] : u0[j];
        }
    } else {
        size_t a = (size_t)hpo_rng_below(&rng, (uint64_t)k);

        info.kind = 2;
        info.parent[0] = info.parent[1] = trials[pop[a]].number;
        memcpy(ret_u, trials[pop[a]].u, d * sizeof(*ret_u));
    }
    free(pop);
    mp = opt->mutation_prob < 0.0 ? 1.0 / (d > 1 ? d : 1) : opt->mutation_prob;
    for (unsigned j = 0; j < d; j++) {
        /* Mutation resamples like the random sampler; so does an unset parent coordinate. */
        if (hpo_rng_uniform(&rng) < mp || !(ret_u[j] >= 0.0 && ret_u[j] <= 1.0)) {
            ret_u[j] = hpo_rng_uniform(&rng);
            info.n_mutated++;
        }
    }
    if (ret_info != NULL) {
        *ret_info = info;
    }
    return 0;
}
