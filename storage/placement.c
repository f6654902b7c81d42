/*
** placement.c: rendezvous hashing with bounded loads, kept where it already
** is (placement.h has the rule and what it guarantees).
*/
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../core/buf.h"
#include "placement.h"
#include "storage-int.h"

#define NONE ((size_t)-1)

uint64_t hpo__place_score(const char *name, const char *url)
{
    struct hpo_xxh64 x;

    hpo__xxh64_init(&x);
    hpo__xxh64_update(&x, name, strlen(name));
    hpo__xxh64_update(&x, "\n", 1);
    hpo__xxh64_update(&x, url, strlen(url));
    return hpo__xxh64_digest(&x);
}

static void *alloc_or_die(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);

    if (p == NULL) {
        hpo_oom();
    }
    return p;
}

/* A (study, member) pair and its score; ordered best first. */
struct pair {
    uint64_t score;
    int64_t study_id, member_id;
    size_t study, member;
};

static int cmp_id64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

/* Higher score first, then the lower study id, then the lower member id. */
static int by_score(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;

    if (x->score != y->score) {
        return x->score > y->score ? -1 : 1;
    }
    if (x->study_id != y->study_id) {
        return cmp_id64(x->study_id, y->study_id);
    }
    return cmp_id64(x->member_id, y->member_id);
}

/* By member id, then as by_score (an owner keeps its best-scoring studies). */
static int by_member(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;

    if (x->member_id != y->member_id) {
        return cmp_id64(x->member_id, y->member_id);
    }
    return by_score(a, b);
}

struct member_ref {
    int64_t id;
    size_t at;
};

static int by_ref_id(const void *a, const void *b)
{
    return cmp_id64(((const struct member_ref *)a)->id, ((const struct member_ref *)b)->id);
}

/* The index of the member with id `id`, or NONE. */
static size_t find_member(const struct member_ref *ref, size_t d, int64_t id)
{
    struct member_ref key = { .id = id };
    const struct member_ref *r = bsearch(&key, ref, d, sizeof(*ref), by_ref_id);

    return r != NULL ? r->at : NONE;
}

/*
** Members below `fl` take, one at a time, the study that scores highest for
** them among those of members above `fl` (in member id order, so the result
** is the same whatever order the caller gave).
*/
static void fill_deficits(const struct hpo_place_member *m, const struct member_ref *ref,
        size_t d, const struct hpo_place_study *s, size_t n, size_t fl, size_t *load,
        size_t *at)
{
    struct pair *cand = NULL;

    for (size_t k = 0; k < d; k++) {
        size_t mi = ref[k].at;
        size_t nc = 0;

        if (load[mi] >= fl) {
            continue;
        }
        if (cand == NULL) {
            cand = alloc_or_die(n, sizeof(*cand));
        }
        /*
        ** Donors only lose studies here, so a study passed over (its member
        ** at the floor, or itself one that took) stays passed over: one sort
        ** per member that takes.
        */
        for (size_t i = 0; i < n; i++) {
            if (at[i] != NONE && at[i] != mi && load[at[i]] > fl) {
                cand[nc++] = (struct pair){ .score = hpo__place_score(s[i].name, m[mi].url),
                    .study_id = s[i].id, .member_id = m[mi].id, .study = i, .member = mi };
            }
        }
        qsort(cand, nc, sizeof(*cand), by_score);
        for (size_t j = 0; j < nc && load[mi] < fl; j++) {
            size_t i = cand[j].study;

            if (load[at[i]] > fl && at[i] != mi) {
                load[at[i]]--;
                at[i] = mi;
                load[mi]++;
            }
        }
    }
    free(cand);
}

void hpo__place(const struct hpo_place_member *m, size_t d, struct hpo_place_study *s,
        size_t n)
{
    struct member_ref *ref;
    struct pair *own, *pairs;
    size_t *load, *at, *loose;
    size_t cap, fl, n_own = 0, n_loose = 0, n_pairs = 0;

    if (d == 0) {
        for (size_t i = 0; i < n; i++) {
            s[i].target = 0;
        }
        return;
    }
    cap = (n + d - 1) / d;
    fl = n / d;
    ref = alloc_or_die(d, sizeof(*ref));
    for (size_t k = 0; k < d; k++) {
        ref[k] = (struct member_ref){ .id = m[k].id, .at = k };
    }
    qsort(ref, d, sizeof(*ref), by_ref_id);
    load = alloc_or_die(d, sizeof(*load));
    at = alloc_or_die(n, sizeof(*at));
    loose = alloc_or_die(n, sizeof(*loose));
    own = alloc_or_die(n, sizeof(*own));

    /* Owners keep their studies within the bound: the best-scoring ones. */
    for (size_t i = 0; i < n; i++) {
        size_t mi = find_member(ref, d, s[i].owner);

        at[i] = NONE;
        if (mi != NONE) {
            own[n_own++] = (struct pair){ .score = hpo__place_score(s[i].name, m[mi].url),
                .study_id = s[i].id, .member_id = m[mi].id, .study = i, .member = mi };
        } else {
            loose[n_loose++] = i;
        }
    }
    qsort(own, n_own, sizeof(*own), by_member);
    for (size_t j = 0; j < n_own; j++) {
        if (load[own[j].member] < cap) {
            at[own[j].study] = own[j].member;
            load[own[j].member]++;
        } else {
            loose[n_loose++] = own[j].study;
        }
    }
    free(own);

    /* The others, best pair first: up to the floor, then up to the bound. */
    pairs = alloc_or_die(n_loose * d, sizeof(*pairs));
    for (size_t j = 0; j < n_loose; j++) {
        for (size_t k = 0; k < d; k++) {
            size_t i = loose[j];

            pairs[n_pairs++] = (struct pair){ .score = hpo__place_score(s[i].name, m[k].url),
                .study_id = s[i].id, .member_id = m[k].id, .study = i, .member = k };
        }
    }
    qsort(pairs, n_pairs, sizeof(*pairs), by_score);
    for (int pass = 0; pass < 2; pass++) {
        size_t limit = pass == 0 ? fl : cap;

        for (size_t j = 0; j < n_pairs; j++) {
            if (at[pairs[j].study] == NONE && load[pairs[j].member] < limit) {
                at[pairs[j].study] = pairs[j].member;
                load[pairs[j].member]++;
            }
        }
    }
    free(pairs);
    free(loose);

    /* d * cap >= n, so every study has a place; members below the floor fill up. */
    fill_deficits(m, ref, d, s, n, fl, load, at);
    for (size_t i = 0; i < n; i++) {
        s[i].target = at[i] != NONE ? m[at[i]].id : 0;
    }
    free(at);
    free(load);
    free(ref);
}

size_t hpo__place_new(const struct hpo_place_member *m, const size_t *load, size_t d, size_t n,
        const char *name)
{
    size_t limit[3] = { (n + 1) / d, (n + d) / d, (size_t)-1 };

    for (int pass = 0; pass < 3; pass++) {
        size_t best = NONE;
        uint64_t best_score = 0;

        for (size_t k = 0; k < d; k++) {
            uint64_t sc;

            if (load[k] >= limit[pass]) {
                continue;
            }
            sc = hpo__place_score(name, m[k].url);
            if (best == NONE || sc > best_score || (sc == best_score && m[k].id < m[best].id)) {
                best = k;
                best_score = sc;
            }
        }
        if (best != NONE) {
            return best;
        }
    }
    return 0; /* not reached: the last pass takes any member */
}
