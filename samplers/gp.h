/*
** gp.h: internals of the GP Bayesian-optimization sampler (gp.c), exposed
** for its unit tests and for the service's diagnostics: the Gaussian-process
** model (gp-model.c), logEI (docs/ALGORITHMS.md §4.4) and the scrambled
** Sobol generator (gp-sobol.c).
**
** All functions are pure computations on caller-owned memory, safe to call
** from any thread on distinct objects; none logs.
*/
#ifndef HPO_SAMPLERS_GP_H
#define HPO_SAMPLERS_GP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hpo_rng;

/* Noise of exact rows (liars, deterministic_objective). */
#define HPO_GP_MIN_NOISE 1e-6

/*
** BoTorch SingleTaskGP's defaults (docs/ALGORITHMS.md §4.3): lengthscale
** prior LogNormal(sqrt(2) + ln(d)/2, sqrt(3)), l >= 0.025; noise prior
** LogNormal(-4, 1), sigma^2 >= 1e-4.
*/
#define HPO_GP_LS_PRIOR_SIGMA  1.7320508075688772
#define HPO_GP_NOISE_PRIOR_MU  -4.0
#define HPO_GP_MIN_LENGTHSCALE 0.025
#define HPO_GP_MIN_FIT_NOISE   1e-4

/* Kernels. */
enum hpo_gp_kernel { HPO_GP_RBF = 0, HPO_GP_MATERN52 = 1 };

/*
** A GP over `d` modelled dims with constant mean c and an ARD kernel
** k(x,x') = s M(r^2), M = e^{-r^2/2} (RBF) or Matern-5/2,
** r^2 = sum_k theta_k delta_k^2, theta_k = 1/l_k^2, delta_k = x_k - x'_k for
** continuous dims, delta_k^2 = [x_k != x'_k] for categorical ones (stored as
** their choice index). Rows 0..n-1 are the data (observations then liars);
** the Cholesky factor is cached and can be extended by rows.
*/
struct hpo_gp_model {
    size_t d;
    bool *is_cat;   /* d flags: categorical (Hamming) dim */
    double *theta;  /* d inverse squared lengthscales */
    double scale;   /* s, the kernel (signal) variance */
    double noise;   /* sigma^2 */
    double mean;    /* c, the constant prior mean */
    int kernel;     /* enum hpo_gp_kernel */
    size_t n;       /* rows in use */
    size_t cap;     /* rows allocated; the leading dimension of L */
    double *x;      /* cap x d, row-major */
    double *xt;     /* the same transposed, d x cap: dim k of row i at xt[k * cap + i] */
    double *y;      /* cap targets (standardized, maximized) */
    double *L;      /* cap x cap, column-major lower Cholesky factor of K */
    double *alpha;  /* K^-1 y over rows 0..n-1, after hpo_gp_solve() */
    size_t n_factored; /* rows 0..n_factored-1 of L are valid */
    double jitter;     /* diagonal jitter the factor needed (0 normally) */
    size_t exact_from; /* rows from here (liars) get noise 1e-6, not `noise`; SIZE_MAX none */
};

/*
** Initialise an empty model over d dims (is_cat copied, may be NULL for all
** continuous) with RBF kernel, theta = s = 1, noise = 1e-6, c = 0. Returns 0
** or -ENOMEM. Free with hpo_gp_model_free.
*/
int hpo_gp_model_init(struct hpo_gp_model *m, size_t d, const bool *is_cat);

/* Free a model's memory; accepts a zeroed model. */
void hpo_gp_model_free(struct hpo_gp_model *m);

/* Make room for `cap` rows, keeping rows and the factor. Returns 0 or -ENOMEM. */
int hpo_gp_model_reserve(struct hpo_gp_model *m, size_t cap);

/* Append a row (d coordinates, target y); the factor is not touched. 0 or -ENOMEM. */
int hpo_gp_model_add(struct hpo_gp_model *m, const double *x, double y);

/* Matern-5/2 M(r) as a function of r^2, and dM/d(r^2). */
double hpo_gp_matern52(double r2);
double hpo_gp_matern52_d(double r2);

/* The kernel between two points under the model's hyperparameters. */
double hpo_gp_kernel(const struct hpo_gp_model *m, const double *a, const double *b);

/*
** Factor K over all n rows from scratch (LAPACK dpotrf), escalating jitter
** 1e-6 * mean(diag K), x10 per retry, at most 5 retries. Returns 0, -ENOMEM,
** or -EDOM when K stays indefinite.
*/
int hpo_gp_factor(struct hpo_gp_model *m);

/*
** Extend the factor from n_factored rows to all n rows in O(n^2 r): the new
** block row is L21 = K21 L11^-T (dtrsm), L22 = chol(K22 - L21 L21^T). On a
** failure of the small Cholesky, refactors everything with jitter. Returns
** as hpo_gp_factor.
*/
int hpo_gp_extend(struct hpo_gp_model *m);

/* Drop rows beyond `n` (e.g. constant liars); the factor of the rest stays valid. */
void hpo_gp_truncate(struct hpo_gp_model *m, size_t n);

/* alpha = K^-1 (y - c) over the factored rows (two triangular solves). 0 or -EDOM if unfactored. */
int hpo_gp_solve(struct hpo_gp_model *m);

/*
** Posterior of the latent function at `count` points xs (count x d,
** row-major): mean and variance (clamped >= 0), evaluated in blocks with
** one dgemv and one dtrsm per block. `work` must hold n * count doubles.
*/
void hpo_gp_predict(const struct hpo_gp_model *m, size_t count, const double *xs, double *mean,
        double *var, double *work);

/*
** Posterior at one point with gradients with respect to the continuous dims
** (dmean, dvar: d entries; categorical entries set to 0). `work` must hold
** 2n doubles.
*/
void hpo_gp_predict_grad(const struct hpo_gp_model *m, const double *x, double *mean,
        double *var, double *dmean, double *dvar, double *work);

/*
** The log posterior used to fit hyperparameters: log p(y | X, phi) (+ the
** log priors of docs/ALGORITHMS.md §4.3 when `with_prior`), at raw parameters
** raw = (ln l_1..d, ln sigma^2, c), or (ln l_1..d, c) when `deterministic`
** (sigma^2 = 1e-6 then); s = 1. Uses the model's rows, targets and kernel,
** not its factor. Writes the gradient to `grad` when non-NULL.
** Returns 0, -ENOMEM, or -EDOM when K cannot be factored.
*/
int hpo_gp_log_posterior(const struct hpo_gp_model *m, const double *raw, bool deterministic,
        bool with_prior, double *ret_value, double *grad);

/* Set the model's hyperparameters from raw parameters (as above). */
void hpo_gp_set_raw(struct hpo_gp_model *m, const double *raw, bool deterministic);

/* The number of raw parameters: d + 2, or d + 1 when deterministic. */
size_t hpo_gp_n_raw(size_t d, bool deterministic);

/* The raw parameters at the priors' modes (the first fit's start); c = 0. */
void hpo_gp_prior_mode(size_t d, bool deterministic, double *raw);

/* The fit's bounds on the raw parameters. */
void hpo_gp_raw_bounds(size_t d, bool deterministic, double *lb, double *ub);

/* log densities of the priors (with constants): lengthscale l at d dims; noise sigma^2. */
double hpo_gp_lengthscale_log_prior(double ell, size_t d);
double hpo_gp_noise_log_prior(double noise);

/* The mode of the lengthscale prior, sqrt(d) e^{sqrt(2) - 3}. */
double hpo_gp_lengthscale_mode(size_t d);

/*
** MAP fit of the hyperparameters with NLopt's bounded L-BFGS, starting from
** raw (in/out). Uses the model's rows, not its factor; sets the model's
** hyperparameters on success. Returns 0, or a negative errno when the
** optimizer failed (raw then holds the starting point again). The number
** of log posterior evaluations is added to *ret_evals when non-NULL.
*/
int hpo_gp_fit(struct hpo_gp_model *m, double *raw, bool deterministic, int *ret_evals);

/* ln h(z), h(z) = phi(z) + z Phi(z): finite and monotone for any finite z. */
double hpo_gp_log_h(double z);

/* d ln h / dz = Phi(z) / h(z). */
double hpo_gp_log_h_dz(double z);

/*
** Scrambled Sobol points (Joe-Kuo direction numbers, random linear
** matrix scramble plus digital shift drawn from rng): `count` points of
** `dim` coordinates in [0,1), row-major. Dims beyond the 1024 tabulated
** ones are plain uniform random numbers. Returns 0 or -ENOMEM.
*/
int hpo_gp_sobol(size_t dim, size_t count, bool scramble, struct hpo_rng *rng, double *out);

/*
** BoTorch's Standardize on targets in place: (y - mean) / std with the
** sample std (n - 1), replaced by 1 when below 1e-8 or n = 1; +-inf first
** become the finite max / min.
*/
void hpo_gp_standardize(double *y, size_t n);

/*
** The weights of BoTorch's initialize_q_batch (eta = 1) over n acquisition
** values: exp(Z - max Z), Z standardized with the sample std (all 1 when
** the values are equal); non-finite values get 0. Proportional to the
** first-draw probabilities.
*/
void hpo_gp_boltzmann_weights(const double *acq, size_t n, double *w);

/*
** Constraints and several objectives (gp-mo.c, docs/ALGORITHMS.md §4.10).
**
** log P(lo <= Y <= hi) for Y ~ N(mu, var + 1e-12) (lo or hi may be
** infinite), stable in both tails; with its derivatives in mu and var when
** dmu is non-NULL.
*/
double hpo_gp_log_pof(double mu, double var, double lo, double hi, double *dmu, double *dvar);

/*
** hpo_gp_log_h(z) and hpo_gp_log_h_dz(z) together, to 1e-12 relative, at a
** fraction of their cost below z = -3 (EHVI evaluates them for every box).
*/
double hpo_gp_log_h_fast(double z, double *dz);

/*
** The non-dominated region below `ref` of a front of m = 2 or 3 losses
** (minimized), as disjoint boxes: a grid over the points' first m-1
** coordinates (k[d] intervals per grid dim, from -inf), each cell bounded
** above in the last coordinate by u[cell_u[cell]] (from -inf).
*/
struct hpo_gp_hvgrid {
    unsigned m;
    double ref[3];
    size_t k[2];      /* intervals per grid dim (k[1] = 1 when m = 2) */
    double *b[2];     /* k[d] + 1 interval bounds per grid dim */
    size_t n_cells;   /* k[0] * k[1], row-major */
    size_t *cell_u;   /* per cell: index into u */
    double *u;        /* distinct upper bounds of the last coordinate */
    size_t n_u;
    double *scratch;  /* per evaluation */
};

/*
** Build the grid of `n` points (row-major; dominated points and points not
** strictly below ref are allowed and change nothing). Returns 0, -EINVAL
** for m outside 2..3, or -ENOMEM. Free with hpo_gp_hvgrid_free.
*/
int hpo_gp_hvgrid_build(struct hpo_gp_hvgrid *g, const double *front, size_t n, unsigned m,
        const double *ref);
void hpo_gp_hvgrid_free(struct hpo_gp_hvgrid *g);

/*
** log EHVI of a loss Y ~ N(mu, diag(var + 1e-12)) against the grid's
** front: exact (per box a product of 1-D expectations), summed in log
** space; with derivatives in mu and var when dmu is non-NULL. Not
** thread-safe on one grid (it uses the grid's scratch).
*/
double hpo_gp_log_ehvi(const struct hpo_gp_hvgrid *g, const double *mu, const double *var,
        double *dmu, double *dvar);

/* Counters of one gp sampler state, for diagnostics. */
struct hpo_gp_stats {
    uint64_t suggests;    /* suggest calls */
    uint64_t random;      /* of which random by design (startup, nothing to model) */
    uint64_t fallbacks;   /* of which random because the model failed */
    uint64_t fits;        /* hyperparameter fits run */
    uint64_t refactors;   /* full Cholesky factorizations of the model rows */
    uint64_t extends;     /* asks that only extended the cached factor */
    size_t model_rows;    /* rows of the last model (without liars) */
    int fit_evals;        /* log posterior evaluations of the last fit */
    int acq_evals;        /* acquisition evaluations of the last ask */
    double fit_ms;        /* wall time of the last ask: model update incl. fit */
    double acq_ms;        /* and acquisition maximization */
    char last_fallback[128]; /* why the last fallback happened; empty if none */
};

/* Copy the counters of a gp sampler state (as made by hpo_sampler_gp.configure). */
void hpo_gp_get_stats(const void *state, struct hpo_gp_stats *ret);

/*
** The model of the last ask (its observed rows, their targets and the
** fitted hyperparameters; the factor and alpha may still include that
** ask's liars), or NULL before the first model; for diagnostics and the
** reference comparison in bench/quality. Valid until the next suggest.
*/
const struct hpo_gp_model *hpo_gp_get_model(const void *state);

/* The acquisition value of the last ask's suggestion (model coordinates). */
double hpo_gp_last_acq(const void *state);

/*
** Whether asks may spread the acquisition's maximization (raw candidates,
** local searches) over core/parallel.h's worker threads (the default); the
** suggestions are the same either way. For tests and benchmarks; any thread.
*/
void hpo_gp_set_parallel(bool on);

#endif
