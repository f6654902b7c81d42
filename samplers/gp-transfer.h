/*
** gp-transfer.h: the gp sampler's transfer across studies, OSS Vizier's
** stacked residual GPs (docs/ALGORITHMS.md §12.3; gp-transfer.c).
**
** A stack holds one GP level per prior study (oldest first), each fitted
** on the residuals of its study's standardized targets under the mean of
** the levels below; the gp sampler's own model becomes the top level,
** fitted on the residuals of the current study. Prediction adds the means
** and interpolates the standard deviations geometrically (alpha below).
*/
#ifndef HPO_SAMPLERS_GP_TRANSFER_H
#define HPO_SAMPLERS_GP_TRANSFER_H

#include <stdbool.h>
#include <stddef.h>

#include "gp.h"

struct hpo_prior;
struct hpo_space;

/* Vizier's expected_base_stddev_mismatch. */
#define HPO_GP_TRANSFER_EPS 1.0
/* Rows a prior level keeps at most: its best 25%, then evenly spaced others. */
#define HPO_GP_TRANSFER_MAX_ROWS 300
/* Prior studies whose best configuration is replayed first. */
#define HPO_GP_TRANSFER_REPLAYS 5

/*
** alpha of a level with n_top training points over a base with n_base, at
** d modelled dims: dof(N, H) = max(N - H, N / (1 + H)), H = d + 2,
** beta^2 = dof_top / dof_base * (1 + dof_base + eps^2), alpha = beta^2/(1+beta^2);
** 0 when either dof is 0.
*/
double hpo_gp_transfer_alpha(size_t n_top, size_t n_base, size_t d);

/* One level: a GP over a subset of the modelled dims, and its residual scale. */
struct hpo_gp_level {
    struct hpo_gp_model model; /* over the level's dims */
    size_t *sel;               /* model dim k is modelled dim sel[k] */
    double scale;              /* targets were residuals / scale */
};

/* A stack of prior levels over d modelled dims. */
struct hpo_gp_stack {
    size_t d;
    size_t n_levels;
    struct hpo_gp_level *levels;
    double *work; /* scratch */
    size_t cap_work;
};

void hpo_gp_stack_init(struct hpo_gp_stack *st, size_t d);
void hpo_gp_stack_free(struct hpo_gp_stack *st);

/*
** Add a level from n rows (n x d model coordinates; NaN: the row lacks the
** dim) and standardized targets y (maximized). Dims some row lacks are left
** out of the level. Targets become residuals under the stack's mean, scaled
** by their sample std when n >= 3 (clamped to [0.05, 1e6]; else 1). With
** `raw` non-NULL the level takes those raw hyperparameters (hpo_gp_set_raw,
** over the level's dims) instead of a MAP fit. Returns 0, -ENOMEM, or
** -EDOM when the kernel matrix cannot be factored (the level is not added).
*/
int hpo_gp_stack_add(struct hpo_gp_stack *st, size_t n, const double *x, const double *y,
        const bool *is_cat, int kernel, bool deterministic, const double *raw);

/* Mean and variance of the stack at `count` points (count x d). 0 or -ENOMEM. */
int hpo_gp_stack_predict(struct hpo_gp_stack *st, size_t count, const double *xs, double *mean,
        double *var);

/* The same at one point with gradients (d entries each). 0 or -ENOMEM. */
int hpo_gp_stack_predict_grad(struct hpo_gp_stack *st, const double *x, double *mean,
        double *var, double *dmean, double *dvar);

/*
** Combine a top level's posterior (mean_t, var_t, already multiplied back by
** its scale) with the base's: mean = mean_t + mean_b, var = var_t^a var_b^(1-a).
*/
void hpo_gp_transfer_combine(double alpha, double mean_t, double var_t, double mean_b,
        double var_b, double *mean, double *var);

/* ---- the gp sampler's hook ------------------------------------------------------------ */

struct hpo_gp_transfer;

/* A transfer over a prior (borrowed); NULL on OOM. */
struct hpo_gp_transfer *hpo_gp_transfer_new(const struct hpo_prior *prior);
void hpo_gp_transfer_free(struct hpo_gp_transfer *t);

/*
** Build the prior levels for the modelled dims (param indices `dims`),
** unless built for these already. Returns 0, or <0 when no level could be
** built (the transfer is then inactive for this set of dims).
*/
int hpo_gp_transfer_prepare(struct hpo_gp_transfer *t, const struct hpo_space *space,
        const size_t *dims, size_t d, int kernel, bool deterministic,
        void (*warp)(double *y, size_t n));

/* Whether prepare built a stack for the current dims. */
bool hpo_gp_transfer_active(const struct hpo_gp_transfer *t);

/*
** Turn targets y[from..to) of rows x (d coordinates each) into scaled
** residuals under the base. With `set_scale`, the residual scale is
** estimated from these rows (the observed rows) first.
*/
int hpo_gp_transfer_residuals(struct hpo_gp_transfer *t, const double *x, double *y, size_t from,
        size_t to, bool set_scale);

/* Combine the top model's posterior at count points with the base (n_top observed rows). */
int hpo_gp_transfer_apply(struct hpo_gp_transfer *t, size_t n_top, size_t count, const double *xs,
        double *mean, double *var);

/* The same at one point with gradients. */
int hpo_gp_transfer_apply_grad(struct hpo_gp_transfer *t, size_t n_top, const double *x,
        double *mean, double *var, double *dmean, double *dvar);

/*
** The first asks of a warm-started study replay the best configuration (by
** its own loss) of each of the last HPO_GP_TRANSFER_REPLAYS prior studies,
** the most recent first: how many such asks there are, and the k-th one
** written over the unit coordinates it has (returns whether it wrote).
*/
size_t hpo_gp_transfer_replays(const struct hpo_gp_transfer *t);
bool hpo_gp_transfer_replay(const struct hpo_gp_transfer *t, size_t k, double *unit_point);

#endif
