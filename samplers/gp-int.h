/*
** gp-int.h: what gp.c shares with gp-mo.c (constraints and several
** objectives, docs/ALGORITHMS.md §4.10): the sampler state, the per-ask
** context and the model update. Not a public interface.
*/
#ifndef HPO_SAMPLERS_GP_INT_H
#define HPO_SAMPLERS_GP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gp.h"

struct hpo_history;
struct hpo_space;
struct hpo_trial;
struct gp_mo;

enum acq_kind { ACQ_LOGEI = 0, ACQ_UCB = 1 };
enum dim_kind { DIM_CONT, DIM_GRID, DIM_CAT };

/* What a model's targets are (gp_state.target). */
#define GP_TARGET_LOSS -1 /* the study's loss (trial value): the one-objective model */

enum gp_liar {
    GP_LIAR_BEST = 0, /* running trials at the best observed target (one objective) */
    GP_LIAR_BELIEVER = 1, /* at the posterior mean (kriging believer) */
};

struct gp_state {
    long long n_startup;
    int acq;
    int kernel;           /* enum hpo_gp_kernel */
    bool warp;            /* output_warping */
    double beta;
    bool deterministic;
    long long n_candidates;
    long long n_local;
    /* Cache, valid while the modelled dims stay the same. */
    size_t d;             /* modelled dims; 0 = no cache */
    size_t *dims;         /* param index of each modelled dim */
    struct hpo_gp_model model;
    int64_t *row_trial;   /* trial number of each observed row */
    size_t n_obs;         /* observed rows (liars follow) */
    size_t cap_rows;
    bool *seen;           /* by trial number: complete trial already considered for a row */
    size_t n_seen;        /* entries of seen */
    double *raw;          /* fitted raw hyperparameters */
    bool have_raw;
    size_t n_at_fit;      /* complete trials at the last fit */
    double last_acq;      /* acquisition value of the last suggestion */
    struct hpo_gp_stats stats;
    /* Constraints and several objectives (gp-mo.c). */
    int target;           /* GP_TARGET_LOSS, or an index of hpo__gp_mo_target_y */
    int liar;             /* enum gp_liar */
    bool feasible_best;   /* f0 and the liar: best *feasible* row (constrained one objective) */
    struct gp_mo *mo;     /* models of objectives and constraints; NULL until needed */
    struct hpo_gp_transfer *transfer; /* warm start (gp-transfer.c); NULL none */
};

/* Per-suggest context: the modelled dims and scratch buffers. */
struct ctx {
    struct gp_state *s;
    const struct hpo_space *space;
    const struct hpo_history *h;
    struct hpo_rng *rng;
    size_t d;
    enum dim_kind *kind;
    double *n_vals; /* grid values / choices per dim */
    double f0;      /* best standardized observation (maximized) */
    double *work;   /* n * work_cols for batched prediction */
    size_t work_cols; /* points per hpo_gp_predict call (<= gp.c's BLOCK) */
    int acq_evals;  /* acquisition evaluations through this context */
    double *gwork;  /* 2n for one point with gradient */
    double *dmean, *dvar;
    /* L-BFGS over the continuous dims. */
    size_t n_cont;
    size_t *cont;
    double *xbuf; /* the full point being optimized */
    double *grad;
    /* Constraints or several objectives: the acquisition is gp-mo.c's. */
    struct gp_mo *mo;
};

/* ---- gp.c ---- */

/* Make s's cache model the dims `dims` (d of them), resetting it when they changed. 0 or -ENOMEM. */
int hpo__gp_ensure_cache(struct gp_state *s, const struct hpo_space *space, const size_t *dims,
        size_t d);

/* Free s's cache (model, rows, fit); s stays usable. */
void hpo__gp_cache_reset(struct gp_state *s);

/*
** Bring c->s's model up to date with the `n_complete` trials of `complete`
** (history indices whose target is known), append the running trials as
** liars (c->s->liar) and solve; sets c->f0. Returns 0 or a negative errno
** with *why set.
*/
int hpo__gp_update_model(struct ctx *c, const size_t *complete, size_t n_complete,
        const char **why);

/* The model coordinates of a trial, or false when a modelled dim is unset. */
bool hpo__gp_trial_coords(const struct ctx *c, const struct hpo_trial *t, double *x);

/* ---- gp-mo.c ---- */

/*
** The target of model `target` for trial t (NaN when not told):
** GP_TARGET_LOSS: -loss; 0..n_obj-1: -loss of objective k;
** n_obj + j: -(value of constraint j).
*/
double hpo__gp_mo_target_y(const struct hpo_history *h, const struct hpo_trial *t, int target);

/* Is complete trial t feasible (every constraint told and within its bounds)? */
bool hpo__gp_mo_feasible(const struct hpo_history *h, const struct hpo_trial *t);

/*
** Constrained or several objectives: update every model (c->s's own for
** one objective, one per objective otherwise, one per constraint) and
** prepare the acquisition; sets c->mo. Returns 0 or a negative errno with
** *why set.
*/
int hpo__gp_mo_update(struct ctx *c, const size_t *complete, size_t n_complete,
        const char **why);

/* The acquisition at `count` points (row-major, model coordinates). */
void hpo__gp_mo_acq_batch(struct ctx *c, size_t count, const double *xs, double *out);

/* The acquisition and its gradient (continuous dims; d entries) at x. */
double hpo__gp_mo_acq_grad(struct ctx *c, const double *x, double *grad);

/* One more local-search start (a feasible best / front trial): false when none. */
bool hpo__gp_mo_start(struct ctx *c, double *x);

/* Drop the liars of every model after an ask and free the ask's buffers. */
void hpo__gp_mo_finish(struct ctx *c);

/* Free the models of constraints and objectives; accepts NULL. */
void hpo__gp_mo_free(struct gp_mo *mo);

#endif
