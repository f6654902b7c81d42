/*
** placement.h: which daemon owns which study (docs/CLUSTER.md, "Placement"):
** rendezvous hashing with bounded loads, kept where it already is. A pure
** function of its inputs, so every daemon computes the same answer from the
** same view; storage/pg-cluster.c acts on it, its unit test checks the
** balance and the churn.
**
** The rule, for n studies and d members (the live daemons studies may go
** to): each member ends with at least floor(n/d) and at most ceil(n/d)
** studies. A study stays with its owner when the owner is a member and
** keeps it within ceil(n/d) (an owner over the bound keeps the ones that
** score highest for it); every other study (owner gone, or shed) goes, in
** descending order of score, first to members below floor(n/d), then to
** members below ceil(n/d); a member still below floor(n/d) then takes, one
** at a time, the study scoring highest for it from those of members above
** floor(n/d). Score: XXH64(name "\n" url); ties go to the lower study id,
** then the lower member id.
**
** So no study moves that need not: a member joining takes max(U, D)
** studies, a member leaving moves max(its studies, D), where U counts the
** studies that must leave their owner (its owner gone, or over the new
** bound) and D the places missing below the new floor(n/d); both are the
** least any rule within the bounds can move. A new study moves no other
** one; a deleted one moves at most one.
*/
#ifndef HPO_PLACEMENT_H
#define HPO_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

/* A daemon studies may be placed on. */
struct hpo_place_member {
    int64_t id;      /* unique, > 0 */
    const char *url; /* its advertised URL (borrowed) */
};

/* A study to place. */
struct hpo_place_study {
    int64_t id;       /* unique */
    const char *name; /* borrowed */
    int64_t owner;    /* in: its owner now (not a member's id: it has none) */
    int64_t target;   /* out: the member's id it belongs to (0: there is no member) */
};

/* The rendezvous score of the member at `url` for the study `name`. */
uint64_t hpo__place_score(const char *name, const char *url);

/*
** Place the `n` studies over the `d` members (any order; the result does not
** depend on it): sets each study's target. Any thread; allocates (hpo_oom()
** when memory runs out).
*/
void hpo__place(const struct hpo_place_member *m, size_t d, struct hpo_place_study *s,
        size_t n);

/*
** Where a new study `name` goes: the index of the member it would be placed
** on when `load[i]` studies are placed on member i and `n` studies exist
** besides it (the rule above, for one study without an owner). d > 0.
*/
size_t hpo__place_new(const struct hpo_place_member *m, const size_t *load, size_t d, size_t n,
        const char *name);

#endif
