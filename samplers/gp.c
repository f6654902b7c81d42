/*
** gp.c: the GP Bayesian-optimization sampler (docs/ALGORITHMS.md §4;
** BoTorch's SingleTaskGP + optimize_acqf defaults). A GP with constant mean
** and Matern-5/2 (or RBF) ARD kernel on the unit cube, BoTorch's
** dimension-scaled LogNormal lengthscale prior and LogNormal noise prior
** (MAP fit), standardized (and warped) targets, logEI or UCB maximized
** from raw Sobol candidates by Boltzmann-selected L-BFGS restarts on the
** exact gradient, running trials as best constant liars.
**
** Refit policy (hpod choice, docs/ALGORITHMS.md §4.8): with at most 300 complete
** trials the hyperparameters are refitted at every ask; above, only when
** the number of complete trials grew by 5% (or by 64) since the last fit, and in
** between the cached Cholesky factor is extended by the new rows in
** O(n^2) per row. The model conditions on (and the fit uses) at most
** MAX_ROWS rows chosen at each refit (the best quarter plus a random rest),
** plus the trials appended until the next one.
**
** Targets: -loss, standardized (sample std), then by default the worse half
** log-compressed (warp_bad_half, an hpod choice beyond BoTorch).
**
** OpenBLAS runs single-threaded (hpo_sampler_blas_single_thread, at the
** first configure): the service already runs studies on a thread pool.
** Within one ask, the raw candidates, the local searches and the fit's
** starts run as tasks on core/parallel.h's kept workers (run_tasks,
** fit_part), with the same suggestions as on one thread, bit for bit.
*/
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <nlopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/history.h"
#include "../core/parallel.h"
#include "../core/rng.h"
#include "../core/space.h"
#include "gp-transfer.h"
#include "gp-int.h"
#include "gp.h"
#include "sampler.h"

#define REFIT_ALWAYS_UPTO 300  /* refit at every ask up to this many complete trials */
#define REFIT_GROWTH      1.05 /* above, refit when complete trials grew by 5% */
#define REFIT_APPEND      64   /* or by this many (the model's rows stay <= MAX_ROWS + 64) */
#define FIT_ROWS          512  /* rows used to fit hyperparameters */
#ifndef MAX_ROWS
#define MAX_ROWS          512  /* rows the model conditions on, chosen at a refit */
#endif
#define MAX_EXHAUSTIVE_GRID 16 /* grid dims up to this many values are searched exhaustively */
#define MAX_EXHAUSTIVE_CAT  64 /* categoricals above this try a random 64 choices */
#define LOCAL_ROUNDS      10   /* rounds of continuous + discrete search per start */
#define LOCAL_TOL         1e-4 /* stop when a round improves acq by less than this */
#define LBFGS_MAXEVAL     100  /* L-BFGS evaluations per start and round */
#ifndef LBFGS_FTOL
#define LBFGS_FTOL        1e-7 /* on the acquisition */
#endif
#define LBFGS_XTOL        1e-6
#define VAR_EPS           1e-12
#define RAW_CHUNK         64   /* raw candidates per task (a multiple of 8: see acq_tasks) */
#define LOCAL_COLS        (MAX_EXHAUSTIVE_CAT + 8) /* most points a local search predicts at once */
#ifndef DEFAULT_WARP
#define DEFAULT_WARP      true /* output_warping: measured in docs/ALGORITHMS.md §4.2 */
#endif

static const char *const acq_names[] = { "logei", "ucb", NULL };
static const char *const kernel_names[] = { "rbf", "matern52", NULL };

static int gp_configure(const json_t *options, const struct hpo_space *space, void **state,
        struct hpo_error *err)
{
    static const char *const allowed[] = { "n_startup_trials", "acquisition", "beta",
        "deterministic_objective", "n_candidates", "n_local_searches", "kernel",
        "output_warping", NULL };
    struct gp_state s = { 0 }, *ps;
    int r;

    r = hpo_options_check_keys(options, allowed, "sampler", err);
    if (r == 0) {
        r = hpo_option_int(options, "n_startup_trials", "sampler", 10, 0, 1000000, &s.n_startup,
                err);
    }
    if (r == 0) {
        r = hpo_option_enum(options, "acquisition", "sampler", acq_names, ACQ_LOGEI, &s.acq, err);
    }
    if (r == 0) {
        r = hpo_option_double(options, "beta", "sampler", 2.0, 0.0, 1e6, &s.beta, err);
    }
    if (r == 0) {
        r = hpo_option_bool(options, "deterministic_objective", "sampler", false,
                &s.deterministic, err);
    }
    if (r == 0) {
        r = hpo_option_int(options, "n_candidates", "sampler", 512, 1, 65536, &s.n_candidates,
                err);
    }
    if (r == 0) {
        r = hpo_option_enum(options, "kernel", "sampler", kernel_names, HPO_GP_MATERN52, &s.kernel,
                err);
    }
    if (r == 0) {
        r = hpo_option_bool(options, "output_warping", "sampler", DEFAULT_WARP, &s.warp, err);
    }
    if (r == 0) {
        r = hpo_option_int(options, "n_local_searches", "sampler", 20, 0, 1000, &s.n_local, err);
    }
    if (r < 0) {
        return r;
    }
    if (space != NULL && space->has_vectors) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "sampler.type",
                "the gp sampler does not support vector parameters");
    }
    ps = malloc(sizeof(*ps));
    if (ps == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    s.target = GP_TARGET_LOSS;
    *ps = s;
    hpo_sampler_blas_single_thread();
    *state = ps;
    return 0;
}

static json_t *gp_describe(const void *state)
{
    const struct gp_state *s = state;

    return json_pack("{s:I,s:s,s:f,s:b,s:I,s:I,s:s,s:b}", "n_startup_trials",
            (json_int_t)s->n_startup, "acquisition", acq_names[s->acq], "beta", s->beta,
            "deterministic_objective", s->deterministic, "n_candidates",
            (json_int_t)s->n_candidates, "n_local_searches", (json_int_t)s->n_local, "kernel",
            kernel_names[s->kernel], "output_warping", s->warp);
}

void hpo__gp_cache_reset(struct gp_state *s)
{
    hpo_gp_model_free(&s->model);
    free(s->dims);
    free(s->row_trial);
    free(s->raw);
    free(s->seen);
    s->seen = NULL;
    s->n_seen = 0;
    s->dims = NULL;
    s->row_trial = NULL;
    s->raw = NULL;
    s->d = 0;
    s->n_obs = 0;
    s->cap_rows = 0;
    s->have_raw = false;
    s->n_at_fit = 0;
}

static void gp_destroy(void *state)
{
    struct gp_state *s = state;

    if (s == NULL) {
        return;
    }
    hpo__gp_cache_reset(s);
    hpo_gp_transfer_free(s->transfer);
    hpo__gp_mo_free(s->mo);
    free(s);
}

void hpo_gp_get_stats(const void *state, struct hpo_gp_stats *ret)
{
    *ret = ((const struct gp_state *)state)->stats;
}

const struct hpo_gp_model *hpo_gp_get_model(const void *state)
{
    const struct gp_state *s = state;

    return s->d > 0 && s->have_raw ? &s->model : NULL;
}

double hpo_gp_last_acq(const void *state)
{
    return ((const struct gp_state *)state)->last_acq;
}

#define BLOCK 512

static double acq_from(const struct ctx *c, double mean, double var)
{
    double sd = sqrt(var + VAR_EPS);

    if (c->s->acq == ACQ_UCB) {
        return mean + sqrt(c->s->beta) * sd;
    }
    return log(sd) + hpo_gp_log_h((mean - c->f0) / sd);
}

/* Acquisition at `count` points (row-major, model coordinates). */
static void acq_batch(struct ctx *c, size_t count, const double *xs, double *out)
{
    double mean[BLOCK], var[BLOCK];
    size_t cols = c->work_cols < BLOCK ? c->work_cols : BLOCK;

    c->acq_evals += (int)count;
    if (c->mo != NULL) {
        hpo__gp_mo_acq_batch(c, count, xs, out);
        return;
    }
    for (size_t i0 = 0; i0 < count; i0 += cols) {
        size_t b = count - i0 < cols ? count - i0 : cols;
        hpo_gp_predict(&c->s->model, b, &xs[i0 * c->d], mean, var, c->work);
        if (c->s->transfer != NULL) {
            (void)hpo_gp_transfer_apply(c->s->transfer, c->s->n_obs, b, &xs[i0 * c->d], mean,
                    var);
        }
        for (size_t i = 0; i < b; i++) {
            out[i0 + i] = acq_from(c, mean[i], var[i]);
        }
    }
}

static double acq_one(struct ctx *c, const double *x)
{
    double v;

    acq_batch(c, 1, x, &v);
    return v;
}

/* Acquisition and its gradient (continuous dims) at x. */
/* The acquisition and its gradient from the posterior and its gradient at one point. */
static double acq_from_grad(const struct ctx *c, double mean, double var, const double *dmean,
        const double *dvar, double *grad)
{
    double sd = sqrt(var + VAR_EPS), val;

    if (c->s->acq == ACQ_UCB) {
        double sb = sqrt(c->s->beta);
        val = mean + sb * sd;
        for (size_t k = 0; k < c->d; k++) {
            grad[k] = dmean[k] + sb * dvar[k] / (2.0 * sd);
        }
        return val;
    }
    double z = (mean - c->f0) / sd, g = hpo_gp_log_h_dz(z);
    val = log(sd) + hpo_gp_log_h(z);
    for (size_t k = 0; k < c->d; k++) {
        double dsd = dvar[k] / (2.0 * sd);
        grad[k] = dsd / sd + g * (dmean[k] - z * dsd) / sd;
    }
    return val;
}

/* Acquisition and its gradient (continuous dims) at x. */
static double acq_grad(struct ctx *c, const double *x, double *grad)
{
    double mean, var;

    c->acq_evals++;
    if (c->mo != NULL) {
        return hpo__gp_mo_acq_grad(c, x, grad);
    }
    hpo_gp_predict_grad(&c->s->model, x, &mean, &var, c->dmean, c->dvar, c->gwork);
    if (c->s->transfer != NULL) {
        (void)hpo_gp_transfer_apply_grad(c->s->transfer, c->s->n_obs, x, &mean, &var, c->dmean,
                c->dvar);
    }
    return acq_from_grad(c, mean, var, c->dmean, c->dvar, grad);
}

/* The model coordinate of grid value / choice k of modelled dim j. */
static double grid_coord(const struct ctx *c, size_t j, double k)
{
    const struct hpo_param *p = &c->space->params[c->s->dims[j]];

    if (c->kind[j] == DIM_CAT) {
        return k;
    }
    return hpo_param_to_unit(p, p->low + k * p->step);
}

/* The grid index of model coordinate x of a discrete dim. */
static double grid_index(const struct ctx *c, size_t j, double x)
{
    const struct hpo_param *p = &c->space->params[c->s->dims[j]];

    if (c->kind[j] == DIM_CAT) {
        return x;
    }
    return nearbyint((hpo_param_from_unit(p, x) - p->low) / p->step);
}

/* Map a unit-cube coordinate to the model coordinate of dim j. */
static double model_coord(const struct ctx *c, size_t j, double u)
{
    const struct hpo_param *p = &c->space->params[c->s->dims[j]];

    switch (c->kind[j]) {
    case DIM_CAT:
        return hpo_param_snap(p, u * (double)p->n_choices);
    case DIM_GRID:
        return hpo_param_to_unit(p, hpo_param_from_unit(p, u));
    case DIM_CONT:
    default:
        return u < 0.0 ? 0.0 : (u > 1.0 ? 1.0 : u);
    }
}

/* The model coordinates of a trial (values form), or false if a modelled dim is unset. */
static bool trial_coords(const struct ctx *c, const struct hpo_trial *t, double *x)
{
    for (size_t j = 0; j < c->d; j++) {
        const struct hpo_param *p = &c->space->params[c->s->dims[j]];
        double v = t->values[p->offset];
        if (isnan(v)) {
            return false;
        }
        x[j] = c->kind[j] == DIM_CAT ? v : hpo_param_to_unit(p, v);
    }
    return true;
}

bool hpo__gp_trial_coords(const struct ctx *c, const struct hpo_trial *t, double *x)
{
    return trial_coords(c, t, x);
}

struct lbfgs_ctx {
    struct ctx *c;
    double *sqrt_theta;
    int evals;
};

static double lbfgs_objective(unsigned n, const double *z, double *gz, void *data)
{
    struct lbfgs_ctx *lc = data;
    struct ctx *c = lc->c;
    double val;

    for (unsigned i = 0; i < n; i++) {
        c->xbuf[c->cont[i]] = z[i] / lc->sqrt_theta[i];
    }
    lc->evals++;
    val = acq_grad(c, c->xbuf, c->grad);
    if (!isfinite(val)) {
        if (gz != NULL) {
            memset(gz, 0, n * sizeof(*gz));
        }
        return 1e100;
    }
    if (gz != NULL) {
        for (unsigned i = 0; i < n; i++) {
            gz[i] = -c->grad[c->cont[i]] / lc->sqrt_theta[i];
        }
    }
    return -val;
}

/*
** L-BFGS on the continuous dims of x (in place) in the scaled coordinates
** z = x sqrt(theta) = x / lengthscale (Optuna's preconditioning).
*/
static double optimize_continuous(struct ctx *c, double *x, double cur)
{
    size_t n = c->n_cont;
    double *buf = malloc(4 * n * sizeof(double));
    double *st, *z, *lb, *ub, f;
    struct lbfgs_ctx lc;
    nlopt_opt opt;

    if (buf == NULL) {
        return cur;
    }
    st = buf;
    z = buf + n;
    lb = buf + 2 * n;
    ub = buf + 3 * n;
    for (size_t i = 0; i < n; i++) {
        st[i] = sqrt(c->s->model.theta[c->cont[i]]);
        z[i] = x[c->cont[i]] * st[i];
        lb[i] = 0.0;
        ub[i] = st[i];
    }
    lc.c = c;
    lc.sqrt_theta = st;
    lc.evals = 0;
    memcpy(c->xbuf, x, c->d * sizeof(double));
    opt = nlopt_create(NLOPT_LD_LBFGS, (unsigned)n);
    if (opt == NULL) {
        free(buf);
        return cur;
    }
    nlopt_set_lower_bounds(opt, lb);
    nlopt_set_upper_bounds(opt, ub);
    nlopt_set_min_objective(opt, lbfgs_objective, &lc);
    nlopt_set_ftol_abs(opt, LBFGS_FTOL);
    nlopt_set_xtol_abs1(opt, LBFGS_XTOL);
    nlopt_set_maxeval(opt, LBFGS_MAXEVAL);
    if (nlopt_optimize(opt, z, &f) >= NLOPT_ROUNDOFF_LIMITED && isfinite(f) && -f > cur) {
        for (size_t i = 0; i < n; i++) {
            double v = z[i] / st[i];
            x[c->cont[i]] = v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
        }
        cur = acq_one(c, x);
    }
    nlopt_destroy(opt);
    free(buf);
    return cur;
}

/* Best value of discrete dim j with the other coordinates of x fixed. */
static double optimize_discrete(struct ctx *c, size_t j, double *x, double cur)
{
    double nv = c->n_vals[j], kcur = grid_index(c, j, x[j]);
    size_t count = 0, cap = MAX_EXHAUSTIVE_CAT + 8;
    double ks[MAX_EXHAUSTIVE_CAT + 8], vals[MAX_EXHAUSTIVE_CAT + 8];
    double *pts = malloc(cap * c->d * sizeof(double));
    double best = cur, kbest = kcur;

    if (pts == NULL || nv < 2.0) {
        free(pts);
        return cur;
    }
    if ((c->kind[j] == DIM_GRID && nv <= MAX_EXHAUSTIVE_GRID) ||
            (c->kind[j] == DIM_CAT && nv <= MAX_EXHAUSTIVE_CAT)) {
        for (double k = 0; k < nv; k++) {
            ks[count++] = k;
        }
    } else if (c->kind[j] == DIM_CAT) {
        for (size_t i = 0; i < MAX_EXHAUSTIVE_CAT; i++) {
            ks[count++] = (double)hpo_rng_below(c->rng, (uint64_t)nv);
        }
    } else {
        /* Golden-section search over the grid index (acq assumed unimodal along the line). */
        double lo = 0.0, hi = nv - 1.0;
        while (hi - lo > 2.0) {
            double m1 = lo + floor((hi - lo) * 0.381966011250105);
            double m2 = hi - floor((hi - lo) * 0.381966011250105);
            double f1, f2;
            if (m2 <= m1) {
                m2 = m1 + 1.0;
            }
            memcpy(pts, x, c->d * sizeof(double));
            memcpy(pts + c->d, x, c->d * sizeof(double));
            pts[j] = grid_coord(c, j, m1);
            pts[c->d + j] = grid_coord(c, j, m2);
            acq_batch(c, 2, pts, vals);
            f1 = vals[0];
            f2 = vals[1];
            if (f1 > best) {
                best = f1;
                kbest = m1;
            }
            if (f2 > best) {
                best = f2;
                kbest = m2;
            }
            if (f1 >= f2) {
                hi = m2;
            } else {
                lo = m1;
            }
        }
        for (double k = lo; k <= hi; k++) {
            ks[count++] = k;
        }
        ks[count++] = kcur > 0 ? kcur - 1.0 : kcur;
        ks[count++] = kcur < nv - 1.0 ? kcur + 1.0 : kcur;
    }
    for (size_t i = 0; i < count; i++) {
        memcpy(&pts[i * c->d], x, c->d * sizeof(double));
        pts[i * c->d + j] = grid_coord(c, j, ks[i]);
    }
    acq_batch(c, count, pts, vals);
    for (size_t i = 0; i < count; i++) {
        if (vals[i] > best) {
            best = vals[i];
            kbest = ks[i];
        }
    }
    x[j] = grid_coord(c, j, kbest);
    free(pts);
    return best;
}

/* One local search from x (in place); returns its acquisition value. */
static double local_search(struct ctx *c, double *x, double cur)
{
    for (int round = 0; round < LOCAL_ROUNDS; round++) {
        double start = cur;
        if (c->n_cont > 0) {
            cur = optimize_continuous(c, x, cur);
        }
        for (size_t j = 0; j < c->d; j++) {
            if (c->kind[j] != DIM_CONT) {
                cur = optimize_discrete(c, j, x, cur);
            }
        }
        if (cur - start < LOCAL_TOL || c->n_cont == c->d) {
            /* Purely continuous: one L-BFGS run already converged. */
            break;
        }
    }
    return cur;
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void random_point(const struct hpo_space *space, struct hpo_rng *rng, double *unit)
{
    for (size_t j = 0; j < space->dim; j++) {
        unit[j] = hpo_rng_uniform(rng);
    }
}

static int fallback(struct gp_state *s, const struct hpo_space *space, struct hpo_rng *rng,
        double *unit, const char *why)
{
    s->stats.fallbacks++;
    snprintf(s->stats.last_fallback, sizeof(s->stats.last_fallback), "%s", why);
    random_point(space, rng, unit);
    return 0;
}

/* Sort helper: indices by descending y. */
struct idx_y {
    size_t i;
    double y;
};

static int by_y_desc(const void *a, const void *b)
{
    const struct idx_y *p = a, *q = b;

    if (p->y != q->y) {
        return p->y > q->y ? -1 : 1;
    }
    return p->i < q->i ? -1 : (p->i > q->i);
}

/*
** Choose `want` of `n` items: the best quarter by y, then a uniform random
** rest; writes the chosen indices in increasing order to `out`.
*/
static int choose_subset(const double *y, size_t n, size_t want, struct hpo_rng *rng,
        size_t *out)
{
    struct idx_y *iy = malloc(n * sizeof(*iy));
    bool *taken = calloc(n, sizeof(*taken));
    size_t n_best = want / 4, k = 0;

    if (iy == NULL || taken == NULL) {
        free(iy);
        free(taken);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        iy[i].i = i;
        iy[i].y = y[i];
    }
    qsort(iy, n, sizeof(*iy), by_y_desc);
    for (size_t i = 0; i < n_best; i++) {
        taken[iy[i].i] = true;
    }
    /* Partial Fisher-Yates over the rest. */
    for (size_t i = n_best; i < n && n_best + (i - n_best) < want; i++) {
        size_t r = i + (size_t)hpo_rng_below(rng, n - i);
        struct idx_y t = iy[i];
        iy[i] = iy[r];
        iy[r] = t;
        taken[iy[i].i] = true;
    }
    for (size_t i = 0; i < n; i++) {
        if (taken[i]) {
            out[k++] = i;
        }
    }
    free(iy);
    free(taken);
    return 0;
}

/* The model's target for a trial (-loss), +-inf replaced later; NaN for none. */
static double trial_y(const struct ctx *c, const struct hpo_trial *t)
{
    if (c->s->target != GP_TARGET_LOSS) {
        return hpo__gp_mo_target_y(c->h, t, c->s->target);
    }
    return -hpo_history_loss(c->h, t);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/*
** Standardize ys in place (BoTorch's Standardize: sample std with n - 1,
** replaced by 1 when below 1e-8 or n = 1; +-inf first become the finite
** max/min as in Optuna).
*/
void hpo_gp_standardize(double *y, size_t n)
{
    double lo = HUGE_VAL, hi = -HUGE_VAL, mean = 0.0, var = 0.0, sd;

    for (size_t i = 0; i < n; i++) {
        if (isfinite(y[i])) {
            lo = y[i] < lo ? y[i] : lo;
            hi = y[i] > hi ? y[i] : hi;
        }
    }
    if (lo > hi) {
        lo = hi = 0.0;
    }
    for (size_t i = 0; i < n; i++) {
        if (y[i] == HUGE_VAL) {
            y[i] = hi;
        } else if (y[i] == -HUGE_VAL) {
            y[i] = lo;
        }
        mean += y[i];
    }
    mean /= (double)(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        var += (y[i] - mean) * (y[i] - mean);
    }
    sd = n > 1 ? sqrt(var / (double)(n - 1)) : 1.0;
    if (sd < 1e-8) {
        sd = 1.0;
    }
    for (size_t i = 0; i < n; i++) {
        y[i] = (y[i] - mean) / sd;
    }
}

/*
** Output warping (hpod choice, after Vizier's half-rank warp,
** docs/ALGORITHMS.md §4.2): on standardized targets, values below the median are compressed
** to med - log1p(med - y), then everything is standardized again. Monotone,
** so the best points stay best, but a few huge losses (Rosenbrock-like) no
** longer flatten the model around the good region.
*/
static void warp_bad_half(double *y, size_t n)
{
    double *tmp, med;

    if (n < 3) {
        return;
    }
    tmp = malloc(n * sizeof(double));
    if (tmp == NULL) {
        return;
    }
    memcpy(tmp, y, n * sizeof(double));
    qsort(tmp, n, sizeof(double), cmp_double);
    med = tmp[n / 2];
    free(tmp);
    for (size_t i = 0; i < n; i++) {
        if (y[i] < med) {
            y[i] = med - log1p(med - y[i]);
        }
    }
    hpo_gp_standardize(y, n);
}

/* Set by hpo_gp_set_parallel(false): every task on the caller, in order. */
static atomic_bool serial_only;

void hpo_gp_set_parallel(bool on)
{
    atomic_store(&serial_only, !on);
}

/*
** The fit's starts (at most two) as tasks that any thread may run: each
** fits its own copy of the model's hyperparameters (the rows are shared,
** read-only) and writes only its own slots, so the winner does not depend
** on the threads.
*/
struct fit_tasks {
    const struct hpo_gp_model *fm; /* the rows to fit */
    bool deterministic;
    size_t n_raw;
    size_t n;       /* starts */
    double *raw;    /* n x n_raw: the starts in, the fitted values out */
    int r[2];       /* 0, or hpo_gp_fit's error or -EDOM when the fit's value is unusable */
    double v[2];    /* the log posterior of the fit */
    int evals[2];
};

static void fit_part(void *arg, size_t lo, size_t hi)
{
    struct fit_tasks *ft = arg;

    for (size_t k = lo; k < hi; k++) {
        struct hpo_gp_model h = *ft->fm;
        double *raw = &ft->raw[k * ft->n_raw];
        int r;
        /* hpo_gp_fit sets the hyperparameters of the model it fits: a private theta. */
        h.theta = malloc((h.d ? h.d : 1) * sizeof(double));
        if (h.theta == NULL) {
            ft->r[k] = -ENOMEM;
            continue;
        }
        memcpy(h.theta, ft->fm->theta, h.d * sizeof(double));
        r = hpo_gp_fit(&h, raw, ft->deterministic, &ft->evals[k]);
        if (r == 0 && (hpo_gp_log_posterior(&h, raw, ft->deterministic, true, &ft->v[k],
                               NULL) < 0 || !isfinite(ft->v[k]))) {
            r = -EDOM;
        }
        ft->r[k] = r;
        free(h.theta);
    }
}

/*
** Fit hyperparameters on (a subset of) the model rows; never fails
** (docs/ALGORITHMS.md §4.3). Starts: the previous fit (when there is one)
** and the priors' modes (at every fit while n <= REFIT_ALWAYS_UPTO, else
** only when there is no previous fit); the better log posterior wins. If
** every start fails, the priors' modes are used unfitted.
*/
static int fit_hyper(struct ctx *c, size_t n_complete)
{
    struct gp_state *s = c->s;
    struct hpo_gp_model *m = &s->model, fm;
    size_t n_raw = hpo_gp_n_raw(c->d, s->deterministic);
    double *start = malloc(3 * n_raw * sizeof(double)), best_v = -HUGE_VAL;
    struct fit_tasks ft = { 0 };
    size_t *sub = NULL;
    bool own = false, have = false;
    int r = 0;

    if (start == NULL) {
        return -ENOMEM;
    }
    ft.raw = start + n_raw;
    fm = *m;
    if (m->n > FIT_ROWS) {
        sub = malloc(FIT_ROWS * sizeof(*sub));
        r = sub ? hpo_gp_model_init(&fm, c->d, m->is_cat) : -ENOMEM;
        if (r == 0) {
            own = true;
            fm.kernel = m->kernel;
            r = choose_subset(m->y, m->n, FIT_ROWS, c->rng, sub);
        }
        for (size_t i = 0; r == 0 && i < FIT_ROWS; i++) {
            r = hpo_gp_model_add(&fm, &m->x[sub[i] * c->d], m->y[sub[i]]);
        }
        if (r < 0) {
            goto out;
        }
    }
    for (int k = 0; k < 2; k++) {
        if (k == 0) {
            if (!s->have_raw) {
                continue;
            }
            memcpy(&ft.raw[ft.n * n_raw], s->raw, n_raw * sizeof(double));
        } else {
            if (s->have_raw && n_complete > REFIT_ALWAYS_UPTO) {
                continue;
            }
            hpo_gp_prior_mode(c->d, s->deterministic, &ft.raw[ft.n * n_raw]);
        }
        ft.n++;
    }
    ft.fm = &fm;
    ft.deterministic = s->deterministic;
    ft.n_raw = n_raw;
    if (atomic_load(&serial_only)) {
        fit_part(&ft, 0, ft.n);
    } else {
        hpo_parallel_for(ft.n, 1, fit_part, &ft);
    }
    for (size_t k = 0; k < ft.n; k++) {
        s->stats.fits++;
        s->stats.fit_evals += ft.evals[k];
        if (ft.r[k] == -ENOMEM) {
            r = -ENOMEM;
            goto out;
        }
        if (ft.r[k] < 0) {
            continue;
        }
        if (!have || ft.v[k] > best_v) {
            have = true;
            best_v = ft.v[k];
            memcpy(start, &ft.raw[k * n_raw], n_raw * sizeof(double));
        }
    }
    r = 0;
    if (!have) {
        hpo_gp_prior_mode(c->d, s->deterministic, start);
    }
    memcpy(s->raw, start, n_raw * sizeof(double));
    s->have_raw = true;
    hpo_gp_set_raw(m, s->raw, s->deterministic);
out:
    if (own) {
        hpo_gp_model_free(&fm);
    }
    free(sub);
    free(start);
    return r;
}

/*
** Kriging believer: the running trials join the model (as exact rows) at
** the posterior mean of the observed rows, all predicted before any joins.
*/
static int add_believers(struct ctx *c)
{
    struct hpo_gp_model *m = &c->s->model;
    const struct hpo_history *h = c->h;
    size_t n_run = 0, d = c->d ? c->d : 1;
    double *xs = NULL, *mean = NULL, *var = NULL, *work = NULL;
    int r;

    for (size_t t = 0; t < h->n_trials; t++) {
        n_run += h->trials[t]->state == HPO_STATE_RUNNING;
    }
    if (n_run == 0 || m->n == 0) {
        return 0;
    }
    r = hpo_gp_solve(m);
    if (r < 0) {
        return r;
    }
    xs = malloc(n_run * d * sizeof(double));
    mean = malloc(n_run * sizeof(double));
    var = malloc(n_run * sizeof(double));
    work = malloc(m->n * n_run * sizeof(double));
    if (xs == NULL || mean == NULL || var == NULL || work == NULL) {
        r = -ENOMEM;
        goto out;
    }
    n_run = 0;
    for (size_t t = 0; t < h->n_trials; t++) {
        const struct hpo_trial *tr = h->trials[t];
        if (tr->state == HPO_STATE_RUNNING && trial_coords(c, tr, &xs[n_run * c->d])) {
            n_run++;
        }
    }
    hpo_gp_predict(m, n_run, xs, mean, var, work);
    for (size_t i = 0; i < n_run && r == 0; i++) {
        r = hpo_gp_model_add(m, &xs[i * c->d], mean[i]);
    }
out:
    free(xs);
    free(mean);
    free(var);
    free(work);
    return r;
}

/*
** Bring the model up to date with the history: refit and refactor, or
** append the new complete trials to the cached factor. Then append the
** running trials as best constant liars and solve for alpha.
*/
static int update_model(struct ctx *c, const size_t *complete, size_t n_complete, const char **why)
{
    struct gp_state *s = c->s;
    struct hpo_gp_model *m = &s->model;
    const struct hpo_history *h = c->h;
    bool refit = !s->have_raw || n_complete <= REFIT_ALWAYS_UPTO ||
            (double)n_complete >= REFIT_GROWTH * (double)s->n_at_fit ||
            n_complete >= s->n_at_fit + REFIT_APPEND;
    double *x = malloc((c->d ? c->d : 1) * sizeof(double)), *ys = NULL, ybest = -HUGE_VAL;
    size_t *rows = NULL, n_rows;
    int r = 0;

    if (x == NULL) {
        r = -ENOMEM;
        goto out;
    }
    /* Cached rows must still be complete trials; otherwise start over. */
    for (size_t i = 0; i < s->n_obs && !refit; i++) {
        int64_t t = s->row_trial[i];
        if (t < 0 || (size_t)t >= h->n_trials || h->trials[t]->state != HPO_STATE_COMPLETE) {
            refit = true;
        }
    }
    if (s->n_seen < h->n_trials) {
        bool *seen = realloc(s->seen, h->n_trials * sizeof(bool));
        if (seen == NULL) {
            r = -ENOMEM;
            goto out;
        }
        memset(seen + s->n_seen, 0, (h->n_trials - s->n_seen) * sizeof(bool));
        s->seen = seen;
        s->n_seen = h->n_trials;
    }
    hpo_gp_truncate(m, s->n_obs);
    rows = malloc((n_complete ? n_complete : 1) * sizeof(*rows));
    if (rows == NULL) {
        r = -ENOMEM;
        goto out;
    }
    if (refit) {
        /* Every complete trial is considered now, chosen as a row or not. */
        memset(s->seen, 0, s->n_seen * sizeof(bool));
        for (size_t i = 0; i < n_complete; i++) {
            s->seen[complete[i]] = true;
        }
        n_rows = n_complete;
        if (n_complete > MAX_ROWS) {
            ys = malloc(n_complete * sizeof(double));
            if (ys == NULL) {
                r = -ENOMEM;
                goto out;
            }
            for (size_t i = 0; i < n_complete; i++) {
                ys[i] = trial_y(c, h->trials[complete[i]]);
                ys[i] = isnan(ys[i]) ? -HUGE_VAL : ys[i];
            }
            r = choose_subset(ys, n_complete, MAX_ROWS, c->rng, rows);
            if (r < 0) {
                goto out;
            }
            n_rows = MAX_ROWS;
            for (size_t i = 0; i < n_rows; i++) {
                rows[i] = complete[rows[i]];
            }
        } else {
            memcpy(rows, complete, n_complete * sizeof(*rows));
        }
        hpo_gp_truncate(m, 0);
        s->n_obs = 0;
    } else {
        /* Trials completed since: appended to the cached factor. */
        n_rows = 0;
        for (size_t i = 0; i < n_complete; i++) {
            if (!s->seen[complete[i]]) {
                s->seen[complete[i]] = true;
                rows[n_rows++] = complete[i];
            }
        }
    }
    if (s->n_obs + n_rows > s->cap_rows) {
        size_t cap = (s->n_obs + n_rows) * 2;
        int64_t *rt = realloc(s->row_trial, cap * sizeof(*rt));
        if (rt == NULL) {
            r = -ENOMEM;
            goto out;
        }
        s->row_trial = rt;
        s->cap_rows = cap;
    }
    for (size_t i = 0; i < n_rows; i++) {
        const struct hpo_trial *t = h->trials[rows[i]];
        if (!trial_coords(c, t, x)) {
            continue;
        }
        r = hpo_gp_model_add(m, x, 0.0);
        if (r < 0) {
            goto out;
        }
        s->row_trial[s->n_obs++] = t->number;
    }
    /* Targets: standardized over the observed rows at every ask. */
    for (size_t i = 0; i < s->n_obs; i++) {
        m->y[i] = trial_y(c, h->trials[s->row_trial[i]]);
    }
    hpo_gp_standardize(m->y, s->n_obs);
    if (s->warp) {
        warp_bad_half(m->y, s->n_obs);
    }
    for (size_t i = 0; i < s->n_obs; i++) {
        ybest = m->y[i] > ybest ? m->y[i] : ybest;
    }
    if (s->feasible_best) {
        /* Constrained: f0 and the liar are the best feasible row (when there is one). */
        double yf = -HUGE_VAL;
        for (size_t i = 0; i < s->n_obs; i++) {
            if (m->y[i] > yf && hpo__gp_mo_feasible(h, h->trials[s->row_trial[i]])) {
                yf = m->y[i];
            }
        }
        ybest = yf > -HUGE_VAL ? yf : ybest;
    }
    c->f0 = ybest;
    if (s->transfer != NULL &&
            hpo_gp_transfer_residuals(s->transfer, m->x, m->y, 0, s->n_obs, true) < 0) {
        r = -ENOMEM;
        goto out;
    }
    s->stats.model_rows = s->n_obs;
    m->exact_from = SIZE_MAX; /* observed rows all carry the fitted noise */
    if (refit) {
        r = fit_hyper(c, n_complete);
        if (r < 0) {
            *why = "out of memory in the fit";
            goto out;
        }
        s->n_at_fit = n_complete;
        s->stats.refactors++;
        r = hpo_gp_factor(m);
    } else {
        s->stats.extends++;
        r = hpo_gp_extend(m);
    }
    if (r < 0) {
        *why = r == -EDOM ? "kernel matrix not positive definite" : "out of memory";
        goto out;
    }
    /*
    ** Best constant liar: running trials at the best observed value (no
    ** refit), as exact observations (noise 1e-6) so that they repel the next
    ** suggestion even when the fitted noise is large.
    */
    m->exact_from = s->n_obs;
    if (s->liar == GP_LIAR_BELIEVER) {
        r = add_believers(c);
        goto solve;
    }
    for (size_t t = 0; t < h->n_trials; t++) {
        const struct hpo_trial *tr = h->trials[t];
        if (tr->state != HPO_STATE_RUNNING || !trial_coords(c, tr, x)) {
            continue;
        }
        r = hpo_gp_model_add(m, x, ybest);
        if (r < 0) {
            goto out;
        }
    }
solve:
    if (r == 0 && s->transfer != NULL) {
        r = hpo_gp_transfer_residuals(s->transfer, m->x, m->y, s->n_obs, m->n, false);
    }
    if (r == 0) {
        r = hpo_gp_extend(m);
    }
    if (r == 0) {
        r = hpo_gp_solve(m);
    }
    if (r < 0) {
        *why = r == -EDOM ? "kernel matrix not positive definite" : "out of memory";
    }
out:
    free(x);
    free(ys);
    free(rows);
    return r;
}

int hpo__gp_update_model(struct ctx *c, const size_t *complete, size_t n_complete,
        const char **why)
{
    return update_model(c, complete, n_complete, why);
}

/*
** BoTorch's initialize_q_batch (docs/ALGORITHMS.md §4.6): pick k of n
** points without replacement with weights exp(Z), Z the acquisition values
** standardized (sample std); uniformly when they are all equal. Non-finite
** values get weight 0. The argmax `ib` replaces the last draw when it was
** not drawn. Returns the number picked (< k only if fewer points qualify).
*/
void hpo_gp_boltzmann_weights(const double *acq, size_t n, double *w)
{
    double mean = 0.0, var = 0.0, sd, zmax = -HUGE_VAL;
    size_t nf = 0;

    for (size_t i = 0; i < n; i++) {
        if (isfinite(acq[i])) {
            mean += acq[i];
            nf++;
        }
    }
    mean /= (double)(nf ? nf : 1);
    for (size_t i = 0; i < n; i++) {
        if (isfinite(acq[i])) {
            var += (acq[i] - mean) * (acq[i] - mean);
        }
    }
    sd = nf > 1 ? sqrt(var / (double)(nf - 1)) : 0.0;
    for (size_t i = 0; i < n; i++) {
        w[i] = isfinite(acq[i]) ? (sd > 0.0 ? (acq[i] - mean) / sd : 0.0) : -HUGE_VAL;
        zmax = w[i] > zmax ? w[i] : zmax;
    }
    /* exp(Z - max Z): the same distribution as exp(Z), without overflow. */
    for (size_t i = 0; i < n; i++) {
        w[i] = isfinite(w[i]) ? exp(w[i] - zmax) : 0.0;
    }
}

static size_t boltzmann_starts(struct hpo_rng *rng, const double *acq, size_t n, size_t ib,
        size_t k, size_t *out)
{
    double *w = malloc((n ? n : 1) * sizeof(double));
    size_t got = 0;
    bool have_ib = false;

    if (w == NULL) {
        return 0;
    }
    hpo_gp_boltzmann_weights(acq, n, w);
    while (got < k) {
        double total = 0.0, u, acc = 0.0;
        size_t pick = n;
        for (size_t i = 0; i < n; i++) {
            total += w[i];
        }
        if (!(total > 0.0)) {
            break;
        }
        u = hpo_rng_uniform(rng) * total;
        for (size_t i = 0; i < n; i++) {
            if (w[i] > 0.0) {
                pick = i;
                acc += w[i];
                if (acc > u) {
                    break;
                }
            }
        }
        out[got++] = pick;
        have_ib = have_ib || pick == ib;
        w[pick] = 0.0;
    }
    if (got > 0 && !have_ib && ib < n) {
        out[got - 1] = ib;
    }
    free(w);
    return got;
}

/*
** The independent pieces of the acquisition's maximization as tasks any
** thread may run: chunks of RAW_CHUNK raw candidates, or local searches.
** A task reads the model and writes only its own outputs, through the
** running thread's private scratch, and is computed the same way whoever
** runs it (a chunk is always one hpo_gp_predict call of the same points;
** a local search starts from its own point), so the suggestion does not
** depend on the number of threads. How BLAS groups the columns of one
** dtrsm can change a column's last bits; with OpenBLAS 0.3.21 chunks of a
** multiple of 8 columns gave the bits of one 512-column call (measured at
** 521 rows), so the chunking did not change the suggestions either.
*/
struct acq_tasks {
    struct ctx *c;
    size_t n;          /* tasks */
    bool local;        /* local searches, else chunks of raw candidates */
    size_t count;      /* raw: candidates */
    const double *u;   /* raw: the candidates (count x d) */
    double *out;       /* raw: acq per candidate; local: value per start, in and out */
    double *xs;        /* local: the start points in, the optima out (n x d) */
    bool *done;
    atomic_size_t next; /* the next task nobody has claimed */
    atomic_int evals;   /* acquisition evaluations by the pool's parts */
};

static void run_task(struct ctx *c, struct acq_tasks *t, size_t i)
{
    if (t->local) {
        t->out[i] = local_search(c, &t->xs[i * c->d], t->out[i]);
    } else {
        size_t lo = i * RAW_CHUNK, b = t->count - lo < RAW_CHUNK ? t->count - lo : RAW_CHUNK;
        acq_batch(c, b, &t->u[lo * c->d], &t->out[lo]);
    }
    t->done[i] = true;
}

/*
** A part of hpo_parallel_for: a private context, then claim tasks until
** none is left (the ranges only say how many parts run). Without memory
** it claims nothing; run_tasks runs what is left.
*/
static void task_part(void *arg, size_t lo, size_t hi)
{
    struct acq_tasks *t = arg;
    struct ctx w = *t->c;
    size_t n = w.s->model.n, d = w.d ? w.d : 1;
    size_t cols = t->local ? LOCAL_COLS : RAW_CHUNK;

    (void)lo;
    (void)hi;
    w.work = malloc((n * cols + 1) * sizeof(double));
    w.work_cols = cols;
    w.gwork = malloc((2 * n + 1) * sizeof(double));
    w.dmean = malloc(4 * d * sizeof(double));
    w.acq_evals = 0;
    if (w.work != NULL && w.gwork != NULL && w.dmean != NULL) {
        w.dvar = w.dmean + d;
        w.xbuf = w.dmean + 2 * d;
        w.grad = w.dmean + 3 * d;
        for (;;) {
            size_t i = atomic_fetch_add(&t->next, 1);
            if (i >= t->n) {
                break;
            }
            run_task(&w, t, i);
        }
    }
    atomic_fetch_add(&t->evals, w.acq_evals);
    free(w.work);
    free(w.gwork);
    free(w.dmean);
}

/*
** Run every task: on the worker pool (core/parallel.h) when `parallel`,
** then whatever is left on the caller with its own context, in order.
*/
static void run_tasks(struct acq_tasks *t, bool parallel)
{
    atomic_init(&t->next, 0);
    atomic_init(&t->evals, 0);
    if (parallel && t->n > 1 && !atomic_load(&serial_only)) {
        hpo_parallel_for(t->n, 1, task_part, t);
    }
    for (size_t i = 0; i < t->n; i++) {
        if (!t->done[i]) {
            run_task(t->c, t, i);
        }
    }
    t->c->acq_evals += atomic_load(&t->evals);
}

/*
** Tasks may run on several threads unless something they use is shared:
** the models of constraints and objectives (gp-mo.c) and the stacked
** priors (gp-transfer.c) have one scratch each, and a categorical dim
** with more choices than MAX_EXHAUSTIVE_CAT draws its tries from the ask's
** rng (whose sequence must not depend on the threads).
*/
static bool tasks_parallel(const struct ctx *c)
{
    if (c->mo != NULL || c->s->transfer != NULL) {
        return false;
    }
    for (size_t j = 0; j < c->d; j++) {
        if (c->kind[j] == DIM_CAT && c->n_vals[j] > MAX_EXHAUSTIVE_CAT) {
            return false;
        }
    }
    return true;
}

/*
** Maximize the acquisition (BoTorch's optimize_acqf, docs/ALGORITHMS.md
** §4.6); writes the best point (model coordinates) to best, its value to
** *ret_val. The raw candidates' acquisition and the local searches run as
** tasks (run_tasks); the best start wins in the order of the starts.
*/
static int maximize_acq(struct ctx *c, double *best, double *ret_val)
{
    struct gp_state *s = c->s;
    size_t d = c->d, nc = (size_t)s->n_candidates, n_local = (size_t)s->n_local;
    size_t n_chunks = (nc + RAW_CHUNK - 1) / RAW_CHUNK, n_done = n_chunks > n_local + 1
            ? n_chunks : n_local + 1;
    double *u = malloc(nc * d * sizeof(double)), *acq = malloc(nc * sizeof(double));
    size_t *starts = malloc((n_local + 1) * sizeof(size_t)), ib = 0, n_starts = 0, n_jobs = 0;
    double *xs = malloc((n_local + 1) * d * sizeof(double) + 1);
    double *vs = malloc((n_local + 1) * sizeof(double)), best_val;
    bool *done = calloc(n_done, sizeof(bool)), parallel = tasks_parallel(c);
    struct acq_tasks t;
    int r = -ENOMEM;

    if (u == NULL || acq == NULL || starts == NULL || xs == NULL || vs == NULL || done == NULL) {
        goto out;
    }
    r = hpo_gp_sobol(d, nc, true, c->rng, u);
    if (r < 0) {
        goto out;
    }
    for (size_t i = 0; i < nc; i++) {
        for (size_t j = 0; j < d; j++) {
            u[i * d + j] = model_coord(c, j, u[i * d + j]);
        }
    }
    if (parallel) {
        t = (struct acq_tasks){ .c = c, .n = n_chunks, .count = nc, .u = u, .out = acq,
            .done = done };
        run_tasks(&t, true);
    } else {
        acq_batch(c, nc, u, acq);
    }
    for (size_t i = 1; i < nc; i++) {
        if (acq[i] > acq[ib] || (!isfinite(acq[ib]) && isfinite(acq[i]))) {
            ib = i;
        }
    }
    memcpy(best, &u[ib * d], d * sizeof(double));
    best_val = acq[ib];
    n_starts = boltzmann_starts(c->rng, acq, nc, ib, n_local, starts);
    for (size_t k = 0; k < n_starts; k++) {
        memcpy(&xs[k * d], &u[starts[k] * d], d * sizeof(double));
        vs[k] = acq[starts[k]];
    }
    n_jobs = n_starts;
    if (n_starts > 0 && c->mo == NULL && s->n_obs > 0) {
        /* The best observed trial as one more start (Optuna's GPSampler). */
        size_t bi = 0;
        for (size_t i = 1; i < s->n_obs; i++) {
            if (s->model.y[i] > s->model.y[bi]) {
                bi = i;
            }
        }
        memcpy(&xs[n_jobs * d], &s->model.x[bi * d], d * sizeof(double));
        vs[n_jobs] = acq_one(c, &xs[n_jobs * d]);
        n_jobs++;
    }
    memset(done, 0, n_done * sizeof(bool));
    t = (struct acq_tasks){ .c = c, .n = n_jobs, .local = true, .out = vs, .xs = xs,
        .done = done };
    run_tasks(&t, parallel);
    if (n_starts > 0 && c->mo != NULL && hpo__gp_mo_start(c, &xs[n_jobs * d])) {
        /* A feasible best / Pareto-optimal trial as one more start (its pick draws from rng). */
        vs[n_jobs] = local_search(c, &xs[n_jobs * d], acq_one(c, &xs[n_jobs * d]));
        n_jobs++;
    }
    for (size_t k = 0; k < n_jobs; k++) {
        if (vs[k] > best_val) {
            best_val = vs[k];
            memcpy(best, &xs[k * d], d * sizeof(double));
        }
    }
    *ret_val = best_val;
    r = 0;
out:
    free(u);
    free(acq);
    free(starts);
    free(xs);
    free(vs);
    free(done);
    return r;
}

int hpo__gp_ensure_cache(struct gp_state *s, const struct hpo_space *space, const size_t *dims,
        size_t d)
{
    bool *is_cat;
    int r;

    if (s->d == d && memcmp(s->dims, dims, d * sizeof(*dims)) == 0) {
        return 0;
    }
    is_cat = calloc(d, sizeof(bool));
    hpo__gp_cache_reset(s);
    s->dims = malloc(d * sizeof(*dims));
    s->raw = malloc(hpo_gp_n_raw(d, s->deterministic) * sizeof(double));
    if (is_cat == NULL || s->dims == NULL || s->raw == NULL) {
        free(is_cat);
        hpo__gp_cache_reset(s);
        return -ENOMEM;
    }
    for (size_t j = 0; j < d; j++) {
        is_cat[j] = space->params[dims[j]].type == HPO_PARAM_CATEGORICAL;
    }
    memcpy(s->dims, dims, d * sizeof(*dims));
    r = hpo_gp_model_init(&s->model, d, is_cat);
    s->model.kernel = s->kernel;
    free(is_cat);
    if (r < 0) {
        hpo__gp_cache_reset(s);
        return r;
    }
    s->d = d;
    return 0;
}

static int gp_suggest(void *state, const struct hpo_space *space,
        const struct hpo_history *history, struct hpo_rng *rng, double *unit_point,
        struct hpo_error *err)
{
    struct gp_state *s = state;
    struct ctx c = { 0 };
    size_t *complete = NULL, n_complete = 0, *dims = NULL, d = 0, n_total;
    const char *why = "out of memory";
    double *best = NULL, t0;
    int r;

    s->stats.suggests++;
    complete = malloc((history->n_trials ? history->n_trials : 1) * sizeof(*complete));
    dims = malloc((space->n_params ? space->n_params : 1) * sizeof(*dims));
    if (complete == NULL || dims == NULL) {
        r = fallback(s, space, rng, unit_point, why);
        goto out;
    }
    for (size_t i = 0; i < history->n_trials; i++) {
        const struct hpo_trial *t = history->trials[i];
        if (t->state == HPO_STATE_COMPLETE && !isnan(t->value)) {
            complete[n_complete++] = i;
        }
    }
    /* Intersection search space: params active in every complete trial. */
    for (size_t p = 0; p < space->n_params && n_complete > 0; p++) {
        const struct hpo_param *pp = &space->params[p];
        bool all = pp->size == 0;
        for (size_t i = 0; i < n_complete && all; i++) {
            all = !isnan(history->trials[complete[i]]->values[pp->offset]);
        }
        if (all) {
            dims[d++] = p;
        }
    }
    if (s->transfer != NULL && history->n_trials < hpo_gp_transfer_replays(s->transfer)) {
        /* Warm start: first the best configuration of each of the last prior studies. */
        random_point(space, rng, unit_point);
        (void)hpo_gp_transfer_replay(s->transfer, history->n_trials, unit_point);
        r = 0;
        goto out;
    }
    if (s->transfer != NULL && d > 0 &&
            hpo_gp_transfer_prepare(s->transfer, space, dims, d, s->kernel, s->deterministic,
                    s->warp ? warp_bad_half : NULL) < 0) {
        /* No prior level for these dims: as cold. */
        hpo_gp_transfer_free(s->transfer);
        s->transfer = NULL;
    }
    if (n_complete == 0 || (n_complete < (size_t)s->n_startup && s->transfer == NULL) || d == 0) {
        s->stats.random++;
        random_point(space, rng, unit_point);
        r = 0;
        goto out;
    }
    if (hpo__gp_ensure_cache(s, space, dims, d) < 0) {
        r = fallback(s, space, rng, unit_point, why);
        goto out;
    }
    c.s = s;
    c.space = space;
    c.h = history;
    c.rng = rng;
    c.d = d;
    c.kind = malloc(d * sizeof(*c.kind));
    c.n_vals = malloc(d * sizeof(double));
    c.cont = malloc(d * sizeof(size_t));
    if (c.kind == NULL || c.n_vals == NULL || c.cont == NULL) {
        r = fallback(s, space, rng, unit_point, why);
        goto out;
    }
    for (size_t j = 0; j < d; j++) {
        const struct hpo_param *p = &space->params[dims[j]];
        if (p->type == HPO_PARAM_CATEGORICAL) {
            c.kind[j] = DIM_CAT;
            c.n_vals[j] = (double)p->n_choices;
        } else if (p->n_grid > 0.0) {
            c.kind[j] = DIM_GRID;
            c.n_vals[j] = p->n_grid;
        } else {
            c.kind[j] = DIM_CONT;
            c.n_vals[j] = 0.0;
            c.cont[c.n_cont++] = j;
        }
    }
    t0 = now_ms();
    s->stats.fit_evals = 0;
    s->stats.acq_evals = 0;
    if (history->n_obj > 1 || history->n_cons > 0) {
        r = hpo__gp_mo_update(&c, complete, n_complete, &why);
    } else {
        r = update_model(&c, complete, n_complete, &why);
    }
    s->stats.fit_ms = now_ms() - t0;
    if (r < 0) {
        hpo__gp_mo_finish(&c);
        hpo_gp_truncate(&s->model, s->n_obs);
        r = fallback(s, space, rng, unit_point, why);
        goto out;
    }
    n_total = s->model.n;
    c.work = malloc(n_total * BLOCK * sizeof(double) + 1);
    c.work_cols = BLOCK;
    c.gwork = malloc(2 * n_total * sizeof(double) + 1);
    c.dmean = malloc(d * sizeof(double));
    c.dvar = malloc(d * sizeof(double));
    c.xbuf = malloc(d * sizeof(double));
    c.grad = malloc(d * sizeof(double));
    best = malloc(d * sizeof(double));
    if (c.work == NULL || c.gwork == NULL || c.dmean == NULL || c.dvar == NULL ||
            c.xbuf == NULL || c.grad == NULL || best == NULL) {
        hpo__gp_mo_finish(&c);
        hpo_gp_truncate(&s->model, s->n_obs);
        r = fallback(s, space, rng, unit_point, why);
        goto out;
    }
    t0 = now_ms();
    r = maximize_acq(&c, best, &s->last_acq);
    s->stats.acq_ms = now_ms() - t0;
    s->stats.acq_evals = c.acq_evals;
    /* Drop the liars; the factor of the observed rows stays cached. */
    hpo__gp_mo_finish(&c);
    hpo_gp_truncate(&s->model, s->n_obs);
    if (r < 0) {
        r = fallback(s, space, rng, unit_point, why);
        goto out;
    }
    /* Params outside the intersection space are drawn at random. */
    random_point(space, rng, unit_point);
    for (size_t j = 0; j < d; j++) {
        const struct hpo_param *p = &space->params[dims[j]];
        double v = best[j];
        if (c.kind[j] == DIM_CAT) {
            v = (v + 0.5) / (double)p->n_choices;
        }
        unit_point[p->offset] = v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
    }
    r = 0;
out:
    free(complete);
    free(dims);
    free(best);
    free(c.kind);
    free(c.n_vals);
    free(c.cont);
    free(c.work);
    free(c.gwork);
    free(c.dmean);
    free(c.dvar);
    free(c.xbuf);
    free(c.grad);
    (void)err;
    return r;
}

/* Warm start: stacked residual GPs (docs/ALGORITHMS.md §12.3, gp-transfer.c). */
static void gp_warm(void *state, const struct hpo_prior *prior)
{
    struct gp_state *s = state;

    hpo_gp_transfer_free(s->transfer);
    s->transfer = hpo_gp_transfer_new(prior);
}

const struct hpo_sampler_type hpo_sampler_gp = {
    .name = "gp",
    .supports_vectors = false,
    .options_schema =
            "{\"n_startup_trials\": {\"type\": \"integer\", \"default\": 10, \"minimum\": 0},"
            " \"acquisition\": {\"type\": \"string\", \"enum\": [\"logei\", \"ucb\"],"
            " \"default\": \"logei\"},"
            " \"beta\": {\"type\": \"number\", \"default\": 2.0, \"minimum\": 0},"
            " \"deterministic_objective\": {\"type\": \"boolean\", \"default\": false},"
            " \"n_candidates\": {\"type\": \"integer\", \"default\": 512, \"minimum\": 1,"
            " \"maximum\": 65536},"
            " \"n_local_searches\": {\"type\": \"integer\", \"default\": 20, \"minimum\": 0,"
            " \"maximum\": 1000},"
            " \"kernel\": {\"type\": \"string\", \"enum\": [\"matern52\", \"rbf\"],"
            " \"default\": \"matern52\"},"
            " \"output_warping\": {\"type\": \"boolean\", \"default\": true}}",
    .configure = gp_configure,
    .describe = gp_describe,
    .suggest = gp_suggest,
    .destroy = gp_destroy,
    .warm = gp_warm,
};
