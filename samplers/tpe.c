/*
** tpe.c: the Tree-structured Parzen Estimator (docs/ALGORITHMS.md §3).
**
** Finished trials are split at the gamma-quantile of the loss into "below"
** (good) and "above"; running trials join "above" (constant liar). Each
** group is a Parzen mixture of truncated Gaussians in the unit cube (bin
** masses for int and stepped params, a smoothed one-hot kernel for
** categoricals) plus a prior kernel. Candidates are drawn from the below
** mixture l and the one maximizing log l(x) - log g(x) is returned.
**
** Modes: multivariate (default; one kernel index for every param of a
** group), with `group` decomposing conditional spaces into sets of params
** that always co-occur; or univariate (each param on its own).
**
** Speed (docs/ALGORITHMS.md §3.7). The above mixture g has one kernel per trial.
** The state mirrors the history: per numeric coordinate the included
** trials sorted by value, and per coordinate g's kernels in arrays indexed
** by trial number (mu, 1/sigma, log-normalizer). A suggest syncs the mirror
** (only reported, new and newest trials when observe() is in use, checked
** against the per-state counts; every trial otherwise), merges new trials
** into the sorted lists, and updates the neighbour-rule bandwidths of the
** neighbours of trials whose role changed (walk_incr; the whole list when
** that cannot be done, walk_full), rewriting a kernel (and its erfc) only
** when its sigma changed. Scoring runs blocks of kernels x candidates with
** a streaming logsumexp: the first two dims over every kernel of the
** block on 4-wide vectors, then only the kernels that can still reach the
** logsumexp, by index (mix_score). From 512 above kernels and two
** continuous dims, g is scored without touching most kernels: each
** coordinate's trials bucketed by value give the few kernels near a candidate
** in every dim that could reach the logsumexp; those are evaluated and the
** logsumexp replayed in trial order (filter_score), and g's base is then
** computed only for them.
**
** One deviation from Optuna (docs/ALGORITHMS.md §3.4): in multivariate units the below
** mixture's magic clip is divided by sqrt(number of params modelled
** jointly) (see build_below).
**
** Everything is a pure function of the history and the rng: the caches
** change the cost of a suggest, never its result.
*/
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "../core/history.h"
#include "../core/parallel.h"
#include "../core/rng.h"
#include "../core/space.h"
#include "sampler.h"
#include "tpe-mo.h"
#include "tpe-warm.h"
#include "tpe.h"

#define HALF_LN_2PI 0.91893853320467274178

#define ROLE_SKIP  0
#define ROLE_BELOW 1
#define ROLE_ABOVE 2

#define KIND_CONT 0 /* continuous float: truncated normal density */
#define KIND_DISC 1 /* int or stepped float: truncated normal mass of the value's bin */
#define KIND_CAT  2 /* categorical */

#define BLOCK       256        /* kernels scored together (a multiple of LANES) */
#define LANES       8          /* kernel arrays are padded to a multiple of this */
#define CHUNK       32         /* candidates scored together */
#define DENSE_DIMS  2          /* dims added to every kernel of a block before pruning */
#define LSE_CUTOFF  50.0       /* terms below max - 50 add < 2e-22 each to a logsumexp */
#define TAB_BUDGET  (1u << 19) /* doubles of per-class bin-mass tables per chunk */
#define MAX_BELOW   25
#define MIN_SIGMA_NO_CLIP 1e-12
#define RECHECK_TAIL 64        /* newest trials whose params are compared at every sync */
#define NBUCK       32         /* value buckets of a continuous coordinate (filter_score) */
#define FILTER_MIN  512        /* above kernels from which g is scored through filter_score */
#define FILTER_DIMS 12         /* dims whose ranges filter_score intersects at most */
#define FILTER_MIN_DIMS 3      /* and at least */
#define FILTER_CAP  2048       /* kernels left by the ranges that filter_score evaluates */
#define PAR_SCORE_WORK 32768   /* kernels x candidates of a chunk worth splitting over threads */

/* Four doubles for the scoring loop (two SSE2 ops on baseline x86-64). */
typedef double tpe_v4 __attribute__((vector_size(32)));

/* Whether any lane of *a is above the same lane of *t (NaN is not). */
static inline __attribute__((always_inline)) bool any_above(const tpe_v4 *a, const tpe_v4 *t)
{
#if defined(__SSE2__)
    __m128d a0 = _mm_loadu_pd((const double *)a), a1 = _mm_loadu_pd((const double *)a + 2);
    __m128d t0 = _mm_loadu_pd((const double *)t), t1 = _mm_loadu_pd((const double *)t + 2);

    return _mm_movemask_pd(_mm_or_pd(_mm_cmpgt_pd(a0, t0), _mm_cmpgt_pd(a1, t1))) != 0;
#else
    __typeof__(*a > *t) k = *a > *t;

    return (k[0] | k[1] | k[2] | k[3]) != 0;
#endif
}

/* ---------------------------------------------------------------------- */
/* Kernel math                                                             */

/* log(1 - exp(x)) for x <= 0, accurate near 0 and for very negative x. */
static double log1mexp(double x)
{
    return x > -M_LN2 ? log(-expm1(x)) : log1p(-exp(x));
}

double hpo_tpe_log_ndtr(double x)
{
    double x2, ix2, term, sum;

    if (x > 6.0) {
        return log1p(-0.5 * erfc(x / M_SQRT2));
    }
    if (x > -30.0) {
        return log(0.5 * erfc(-x / M_SQRT2));
    }
    /* Mills-ratio series: Phi(x) = phi(x)/|x| (1 - 1/x^2 + 3/x^4 - ...); next term < 3e-16. */
    x2 = x * x;
    ix2 = 1.0 / x2;
    term = 1.0;
    sum = 1.0;
    for (int k = 1; k <= 6; k++) {
        term *= -(double)(2 * k - 1) * ix2;
        sum += term;
    }
    return -0.5 * x2 - log(-x) - HALF_LN_2PI + log(sum);
}

double hpo_tpe_log_gauss_mass(double a, double b)
{
    double d = b - a;
    double z = fmax(fabs(a), fabs(b));

    if (!(d > 0.0)) {
        return -INFINITY;
    }
    if (d < 1e-3 && d * z < 1e-2) {
        /*
        ** Narrow interval: two-point Gauss-Legendre, relative error below
        ** d^4 (z^4 + 3) / 4320 < 1e-11, where differences of CDFs cancel.
        */
        double m = 0.5 * (a + b), h = 0.5 * d / sqrt(3.0);
        double q1 = -0.5 * (m - h) * (m - h), q2 = -0.5 * (m + h) * (m + h);
        double mx = fmax(q1, q2);
        return log(0.5 * d) - HALF_LN_2PI + mx + log(exp(q1 - mx) + exp(q2 - mx));
    }
    if (b <= 0.0) {
        double lb = hpo_tpe_log_ndtr(b);
        return lb + log1mexp(hpo_tpe_log_ndtr(a) - lb);
    }
    if (a >= 0.0) {
        double la = hpo_tpe_log_ndtr(-a);
        return la + log1mexp(hpo_tpe_log_ndtr(-b) - la);
    }
    /* a < 0 < b: two positive halves, no cancellation. */
    return log(0.5 * (erf(b / M_SQRT2) + erf(-a / M_SQRT2)));
}

double hpo_tpe_trunc_logpdf(double x, double mu, double sigma, double low, double high)
{
    double z = (x - mu) / sigma;

    return -0.5 * z * z - log(sigma) - HALF_LN_2PI -
            hpo_tpe_log_gauss_mass((low - mu) / sigma, (high - mu) / sigma);
}

double hpo_tpe_trunc_logmass(double lo, double hi, double mu, double sigma, double low,
        double high)
{
    return hpo_tpe_log_gauss_mass((lo - mu) / sigma, (hi - mu) / sigma) -
            hpo_tpe_log_gauss_mass((low - mu) / sigma, (high - mu) / sigma);
}

size_t hpo_tpe_gamma(size_t n)
{
    size_t g = (n + 9) / 10;

    return g < MAX_BELOW ? g : MAX_BELOW;
}

void hpo_tpe_default_weights(size_t m, double *ret)
{
    size_t ramp;

    for (size_t i = 0; i < m; i++) {
        ret[i] = 1.0;
    }
    if (m < 25) {
        return;
    }
    ramp = m - 25;
    /* numpy.linspace(1/m, 1, ramp) */
    for (size_t i = 0; i < ramp; i++) {
        double start = 1.0 / (double)m;
        ret[i] = ramp == 1 ? start :
                (i == ramp - 1 ? 1.0 : start + (double)i * (1.0 - start) / (double)(ramp - 1));
    }
}

/* The constant of an above/below kernel (mu, sigma) on [0, 1]. */
static double kernel_cst(int kind, double mu, double sigma)
{
    double lz = hpo_tpe_log_gauss_mass(-mu / sigma, (1.0 - mu) / sigma);

    return kind == KIND_CONT ? -log(sigma) - HALF_LN_2PI - lz : -lz;
}

/* A draw from N(mu, sigma^2) truncated to [0, 1]; the mass is >= 0.34, so rejection is cheap. */
static double sample_trunc(struct hpo_rng *rng, double mu, double sigma)
{
    for (int i = 0; i < 1000; i++) {
        double x = mu + sigma * hpo_rng_normal(rng);
        if (x >= 0.0 && x <= 1.0) {
            return x;
        }
    }
    return mu < 0.0 ? 0.0 : (mu > 1.0 ? 1.0 : mu);
}

/* ---------------------------------------------------------------------- */
/* State                                                                   */

struct tpe_options {
    long long n_startup_trials;
    long long n_ei_candidates;
    bool multivariate;
    bool group;
    bool constant_liar;
    double prior_weight;
    bool consider_magic_clip;
    bool consider_endpoints;
};

/*
** One included trial's value in a per-coordinate sorted list, packed in
** 12 bytes: a new trial moves the entries after its place (sync_lists).
*/
struct tpe_entry {
    double v;     /* unit coordinate */
    uint32_t t;   /* trial number */
} __attribute__((packed));

/*
** One coordinate: its included trials sorted by value, and the above
** mixture's kernel of each trial, indexed by trial number (slots of trials
** not in "above" hold finite stale values and get weight 0), so g is
** rebuilt by rewriting only the kernels whose bandwidth changed.
*/
struct tpe_coord {
    int kind;
    struct tpe_entry *ord; /* sorted by (v, t); numeric coordinates only */
    size_t n, cap;
    double *tmu, *tis, *tcst; /* numeric: mu, isig (scaled as in tpe_mdim), constant */
    double *tsg;              /* numeric: the sigma last written to them; 0 = none */
    uint32_t *tcls;           /* discrete: class of the kernel in this suggest */
    uint32_t *tcat;           /* categorical: the choice (UINT32_MAX when inactive) */
    /*
    ** Continuous: the roles of the last walk of the sorted list (per trial;
    ** ROLE_SKIP past the trials walked), valid when `walked`, with that
    ** walk's clip, endpoint rule and number of above entries: the next walk
    ** revisits only the neighbours of trials whose role changed (walk_incr).
    */
    uint8_t *trole;
    bool walked, w_ends;
    double sig_hi; /* continuous: >= the sigma of every above kernel of the last walk */
    double cst_hi; /* >= the constant (tcst) of every above kernel of the last walk */
    double w_cst;  /* the largest constant set_kernel saw since it was reset */
    uint64_t rgen; /* trole equals the state's prole while this is its role_gen */
    /*
    ** Continuous: per trial, the bucket floor(v NBUCK) of its listed value
    ** v (at most NBUCK - 1), so filter_score finds the trials in a range of
    ** values by comparing bytes.
    */
    uint8_t *vq;
    double w_minsig;
    size_t w_na;
};

struct tpe_udim {
    size_t coord;
    const struct hpo_param *p;
    int kind;
    double n_choices;
};

/* One dimension of a mixture, structure-of-arrays over its observed kernels. */
struct tpe_mdim {
    /*
    ** Numeric: mu, isig (1/sigma; for continuous dims 1/(sigma sqrt 2), so
    ** the density term is -(z isig)^2), cst (folded into the mixture's base),
    ** sig (below mixture only, for sampling).
    */
    double *mu, *isig, *cst, *sig;
    uint32_t *cls;                 /* discrete: class of each kernel */
    double *cls_mu, *cls_isig;     /* discrete: distinct (mu, 1/sigma) */
    size_t n_cls;
    uint32_t *cat;                 /* categorical: observed choice */
    double cat_hit, cat_miss;      /* categorical: log p of the observed / another choice */
};

struct tpe_mix {
    size_t m;        /* observed kernels; the prior kernel is kept apart */
    size_t m_pad;    /* m rounded up to LANES; padding kernels have weight 0 */
    double *logw;    /* normalized log weights of the observed kernels */
    double *base;    /* logw + the kernel constants of every numeric dim */
    double logw_prior;
    struct tpe_mdim *d;
};

/* Candidates of one chunk: unit value, bin edges (discrete) and choice (categorical). */
struct tpe_cands {
    double *x, *lo, *hi;
    uint32_t *ci;
};

struct tpe_key {
    int cls; /* 0 complete, 1 pruned with reports, 2 pruned without, 3 running */
    double a, b;
    uint32_t t;
};

struct tpe {
    struct tpe_options opt;
    size_t dim, n_params;
    /* Mirror of the history (checked at every suggest). */
    size_t n_known, cap_trials;
    uint8_t *incl;     /* per trial: complete, pruned or running, so in the sorted lists */
    uint8_t *mark;     /* per trial: 1 remove, 2 add (sync scratch) */
    uint8_t *dirty;    /* per trial: observe() reported a change since the last sync */
    uint8_t *st;       /* per trial: its state when last synced */
    struct tpe_key *key; /* per trial: its split key when finished */
    double *mu_rows;   /* per trial: its dim unit coordinates when last synced */
    bool observed;     /* observe() has been called: trust it for coordinate changes */
    size_t cnt[HPO_STATE_COUNT]; /* trials of the mirror in each state */
    uint32_t *dlist;   /* trials observe() reported since the last sync */
    size_t n_dlist, cap_dlist;
    bool dlist_lost;   /* a report could not be stored: compare everything next time */
    uint32_t *touched; /* trials with a mark set during a sync */
    size_t n_touched, cap_touched;
    struct tpe_coord *coords;
    struct tpe_entry *newbuf;
    size_t cap_newbuf;
    uint32_t *added;
    size_t cap_added;
    size_t *fix;       /* walk_incr: positions whose bandwidth is recomputed */
    size_t cap_fix;
    /*
    ** The roles of the last unit built (prole, per trial), a count of such
    ** builds (role_gen), and the trials whose role differs from prole in
    ** the unit being built (chg; chg_ok once list_changes listed them): a
    ** coordinate whose rgen is role_gen diffs its roles by that list.
    */
    uint8_t *prole;
    uint64_t role_gen;
    uint32_t *chg;
    size_t n_chg, cap_chg;
    bool chg_ok;
    /* Per-unit scratch. */
    uint8_t *role;
    int *pcls, *pmap;
    uint8_t *pever, *pact;
    size_t *plist;
    char *pool;
    size_t cap_pool;
    uint32_t *fin;     /* several objectives or constraints: a unit's finished trials */
    size_t cap_fin;
    const struct hpo_prior *prior; /* warm start (tpe-warm.c), borrowed; NULL none */
};

/* ---------------------------------------------------------------------- */
/* Configuration                                                           */

static const char *const tpe_keys[] = {
    "n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar",
    "prior_weight", "consider_magic_clip", "consider_endpoints", NULL,
};

static void tpe_destroy(void *state)
{
    struct tpe *s = state;

    if (s == NULL) {
        return;
    }
    if (s->coords != NULL) {
        for (size_t k = 0; k < s->dim; k++) {
            struct tpe_coord *co = &s->coords[k];
            free(co->ord);
            free(co->tmu);
            free(co->tis);
            free(co->tcst);
            free(co->tsg);
            free(co->vq);
            free(co->tcls);
            free(co->tcat);
            free(co->trole);
        }
    }
    free(s->coords);
    free(s->incl);
    free(s->mark);
    free(s->dirty);
    free(s->st);
    free(s->key);
    free(s->mu_rows);
    free(s->newbuf);
    free(s->added);
    free(s->fix);
    free(s->prole);
    free(s->chg);
    free(s->dlist);
    free(s->touched);
    free(s->role);
    free(s->pcls);
    free(s->pmap);
    free(s->pever);
    free(s->pact);
    free(s->plist);
    free(s->pool);
    free(s->fin);
    free(s);
}

static int tpe_configure(const json_t *options, const struct hpo_space *space, void **state,
        struct hpo_error *err)
{
    struct tpe_options o;
    struct tpe *s;
    int r;

    r = hpo_options_check_keys(options, tpe_keys, "sampler", err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "n_startup_trials", "sampler", 10, 0, 1000000000LL,
            &o.n_startup_trials, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(options, "n_ei_candidates", "sampler", 24, 1, 10000, &o.n_ei_candidates,
            err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_bool(options, "multivariate", "sampler", true, &o.multivariate, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_bool(options, "group", "sampler", true, &o.group, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_bool(options, "constant_liar", "sampler", true, &o.constant_liar, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_double(options, "prior_weight", "sampler", 1.0, 0.0, 1e6, &o.prior_weight,
            err);
    if (r < 0) {
        return r;
    }
    if (!(o.prior_weight > 0.0)) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "sampler.prior_weight",
                "sampler.prior_weight must be > 0");
    }
    r = hpo_option_bool(options, "consider_magic_clip", "sampler", true, &o.consider_magic_clip,
            err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_bool(options, "consider_endpoints", "sampler", false, &o.consider_endpoints,
            err);
    if (r < 0) {
        return r;
    }
    if (space->has_vectors) {
        return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, "sampler.type",
                "sampler 'tpe' does not support vector params (size)");
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    s->opt = o;
    s->dim = space->dim;
    s->n_params = space->n_params;
    s->coords = calloc(s->dim ? s->dim : 1, sizeof(*s->coords));
    s->pcls = calloc(s->n_params + 1, sizeof(*s->pcls));
    s->pmap = calloc(2 * s->n_params + 2, sizeof(*s->pmap));
    s->pever = calloc(s->n_params + 1, 1);
    s->pact = calloc(s->n_params + 1, 1);
    s->plist = calloc(s->n_params + 1, sizeof(*s->plist));
    if (s->coords == NULL || s->pcls == NULL || s->pmap == NULL || s->pever == NULL ||
            s->pact == NULL || s->plist == NULL) {
        tpe_destroy(s);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        int kind = p->type == HPO_PARAM_CATEGORICAL ? KIND_CAT :
                (p->n_grid > 0.0 ? KIND_DISC : KIND_CONT);
        for (size_t k = p->offset; k < p->offset + p->width; k++) {
            s->coords[k].kind = kind;
        }
    }
    *state = s;
    return 0;
}

static json_t *tpe_describe(const void *state)
{
    const struct tpe *s = state;
    const struct tpe_options *o = &s->opt;

    return json_pack("{s:I,s:I,s:b,s:b,s:b,s:f,s:b,s:b}",
            "n_startup_trials", (json_int_t)o->n_startup_trials,
            "n_ei_candidates", (json_int_t)o->n_ei_candidates,
            "multivariate", o->multivariate, "group", o->group,
            "constant_liar", o->constant_liar, "prior_weight", o->prior_weight,
            "consider_magic_clip", o->consider_magic_clip,
            "consider_endpoints", o->consider_endpoints);
}

/* ---------------------------------------------------------------------- */
/* Keeping the sorted per-coordinate lists in step with the history        */

static bool state_included(enum hpo_state st)
{
    return st == HPO_STATE_COMPLETE || st == HPO_STATE_PRUNED || st == HPO_STATE_RUNNING;
}

static bool same_double(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

static int entry_cmp(const void *pa, const void *pb)
{
    const struct tpe_entry *a = pa, *b = pb;

    if (a->v != b->v) {
        return a->v < b->v ? -1 : 1;
    }
    return a->t < b->t ? -1 : (a->t > b->t ? 1 : 0);
}

static bool entry_less(const struct tpe_entry *a, const struct tpe_entry *b)
{
    return a->v < b->v || (a->v == b->v && a->t < b->t);
}

/*
** Sort entries by (v, t), as entry_cmp, with a least-significant-digit
** radix sort: the first sync after a restart sorts every trial of every
** coordinate at once (400,000 entries five times in bench/restart), where
** qsort's comparator calls were half of that ask. Passes over t come first
** (skipped when the entries already ascend in t, as a full sync adds them),
** then over the order-preserving bit pattern of v; a pass whose digit is the
** same for every entry is skipped. v holds no NaN; -0.0 sorts as 0.0, as in
** entry_less. The order is total (t is unique), so the result is the one
** qsort gives. Returns -ENOMEM when it cannot get its scratch space.
*/
#define RADIX_BITS   11
#define RADIX_SIZE   (1u << RADIX_BITS)
#define RADIX_T      3 /* passes over t (32 bits) */
#define RADIX_PASSES 9 /* then 6 over v (64 bits) */
#define RADIX_MIN    2048 /* fewer entries: qsort */

static uint32_t radix_digit(const struct tpe_entry *e, int pass)
{
    double v = e->v == 0.0 ? 0.0 : e->v;
    uint64_t u;

    if (pass < RADIX_T) {
        return (e->t >> (RADIX_BITS * pass)) & (RADIX_SIZE - 1);
    }
    memcpy(&u, &v, sizeof(u));
    u = (u >> 63) ? ~u : u | (UINT64_C(1) << 63);
    return (uint32_t)(u >> (RADIX_BITS * (pass - RADIX_T))) & (RADIX_SIZE - 1);
}

static int radix_sort_entries(struct tpe_entry *a, size_t n)
{
    size_t (*cnt)[RADIX_SIZE] = calloc(RADIX_PASSES, sizeof(*cnt));
    struct tpe_entry *tmp = malloc(n * sizeof(*tmp));
    struct tpe_entry *src = a, *dst = tmp;
    bool t_sorted = true;

    if (cnt == NULL || tmp == NULL) {
        free(cnt);
        free(tmp);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        t_sorted = t_sorted && (i == 0 || a[i - 1].t < a[i].t);
        for (int p = 0; p < RADIX_PASSES; p++) {
            cnt[p][radix_digit(&a[i], p)]++;
        }
    }
    for (int p = t_sorted ? RADIX_T : 0; p < RADIX_PASSES; p++) {
        size_t sum = 0;
        struct tpe_entry *sw;

        if (cnt[p][radix_digit(&src[0], p)] == n) {
            continue;
        }
        for (size_t d = 0; d < RADIX_SIZE; d++) {
            size_t c = cnt[p][d];
            cnt[p][d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            dst[cnt[p][radix_digit(&src[i], p)]++] = src[i];
        }
        sw = src;
        src = dst;
        dst = sw;
    }
    if (src != a) {
        memcpy(a, src, n * sizeof(*a));
    }
    free(cnt);
    free(tmp);
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t c = *cap ? *cap : 64;
    void *n;

    if (need <= *cap) {
        return 0;
    }
    while (c < need) {
        c *= 2;
    }
    n = realloc(*p, c * elem);
    if (n == NULL) {
        return -ENOMEM;
    }
    *p = n;
    *cap = c;
    return 0;
}

static int grow_trials(struct tpe *s, size_t need)
{
    size_t c = s->cap_trials ? s->cap_trials : 64;
    void *p;

    if (need <= s->cap_trials) {
        return 0;
    }
    while (c < need) {
        c *= 2;
    }
#define GROW_ONE(field, elem)                                                                 \
    do {                                                                                      \
        p = realloc(s->field, c * (elem));                                                    \
        if (p == NULL) {                                                                      \
            return -ENOMEM;                                                                   \
        }                                                                                     \
        s->field = p;                                                                         \
    } while (0)
    GROW_ONE(incl, 1);
    GROW_ONE(mark, 1);
    GROW_ONE(dirty, 1);
    GROW_ONE(st, 1);
    GROW_ONE(key, sizeof(struct tpe_key));
    GROW_ONE(role, 1);
    GROW_ONE(prole, 1);
    GROW_ONE(mu_rows, (s->dim ? s->dim : 1) * sizeof(double));
#undef GROW_ONE
#define GROW_COORD(field, elem, init)                                                          \
    do {                                                                                      \
        p = realloc(co->field, c * (elem));                                                   \
        if (p == NULL) {                                                                      \
            return -ENOMEM;                                                                   \
        }                                                                                     \
        co->field = p;                                                                        \
        for (size_t t = s->cap_trials; t < c; t++) {                                          \
            co->field[t] = (init);                                                            \
        }                                                                                     \
    } while (0)
    for (size_t k = 0; k < s->dim; k++) {
        struct tpe_coord *co = &s->coords[k];
        if (co->kind == KIND_CAT) {
            GROW_COORD(tcat, sizeof(uint32_t), UINT32_MAX);
            continue;
        }
        GROW_COORD(tmu, sizeof(double), 0.5);
        GROW_COORD(tis, sizeof(double), 0.0);
        GROW_COORD(tcst, sizeof(double), 0.0);
        GROW_COORD(tsg, sizeof(double), 0.0);
        if (co->kind == KIND_DISC) {
            GROW_COORD(tcls, sizeof(uint32_t), 0);
        } else {
            GROW_COORD(trole, 1, ROLE_SKIP);
            GROW_COORD(vq, 1, 0);
        }
    }
#undef GROW_COORD
    memset(s->incl + s->cap_trials, 0, c - s->cap_trials);
    memset(s->dirty + s->cap_trials, 0, c - s->cap_trials);
    memset(s->mark + s->cap_trials, 0, c - s->cap_trials);
    memset(s->st + s->cap_trials, 0xff, c - s->cap_trials);
    memset(s->prole + s->cap_trials, ROLE_SKIP, c - s->cap_trials);
    s->cap_trials = c;
    return 0;
}

/* Forget the mirror: the next sync rebuilds it from scratch. */
static void sync_reset(struct tpe *s)
{
    for (size_t k = 0; k < s->dim; k++) {
        s->coords[k].n = 0;
        s->coords[k].walked = false;
    }
    if (s->incl != NULL) {
        memset(s->incl, 0, s->cap_trials);
        memset(s->mark, 0, s->cap_trials);
        memset(s->dirty, 0, s->cap_trials);
        memset(s->st, 0xff, s->cap_trials);
    }
    memset(s->cnt, 0, sizeof(s->cnt));
    s->n_dlist = 0;
    s->n_known = 0;
}

/* The number of choices of the categorical param holding coordinate k. */
static size_t cat_choices(const struct hpo_space *space, size_t k)
{
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        if (k >= p->offset && k < p->offset + p->width) {
            return p->n_choices;
        }
    }
    return 1;
}

static double nan_to_inf(double x)
{
    return isnan(x) ? INFINITY : x;
}

/* The split key of a finished trial (docs/ALGORITHMS.md §3.3). */
static void trial_key(const struct hpo_history *h, const struct hpo_trial *tr, struct tpe_key *k)
{
    k->t = (uint32_t)tr->number;
    k->b = 0.0;
    if (tr->state == HPO_STATE_RUNNING) {
        k->cls = 3;
        k->a = 0.0;
        return;
    }
    if (tr->state == HPO_STATE_COMPLETE) {
        k->cls = 0;
        k->a = nan_to_inf(hpo_history_loss(h, tr));
        return;
    }
    if (tr->n_reports == 0) {
        k->cls = 2;
        k->a = 0.0;
        return;
    }
    {
        const struct hpo_report *last = hpo_trial_last_report(tr);
        double v = h->maximize ? -last->value : last->value;
        k->cls = 1;
        k->a = -(double)last->step;
        k->b = nan_to_inf(v);
    }
}

/*
** Bring the sorted lists in step with the history: trials that entered or
** left {complete, pruned, running}, or whose coordinates differ from the
** mirror, are removed and (re)inserted. O(n d) to check, O(n) per
** coordinate touched to merge.
*/
static int sync_lists(struct tpe *s, const struct hpo_space *space, size_t n_add, size_t n_rem,
        size_t top);

/*
** Compare trial t with the mirror (its params only when `check`) and bring
** the mirror in step, noting removals and additions. Idempotent.
*/
static void sync_one(struct tpe *s, const struct hpo_history *h, size_t t, bool check,
        size_t *n_add, size_t *n_rem)
{
    size_t dim = s->dim;
    const struct hpo_trial *tr = t < h->n_trials ? h->trials[t] : NULL;
    bool now = tr != NULL && state_included(tr->state);
    bool was = s->incl[t];
    bool same = now && was;
    uint8_t st = tr != NULL ? (uint8_t)tr->state : 0xff;
    double *row = s->mu_rows + t * dim;

    if (same && check) {
        for (size_t k = 0; same && k < dim; k++) {
            same = same_double(tr->unit[k], row[k]);
        }
    }
    if (!same && (was || now) && s->mark[t] == 0) {
        s->touched[s->n_touched++] = (uint32_t)t;
    }
    if (was && !same) {
        s->mark[t] |= 1;
        (*n_rem)++;
    }
    if (now && !same) {
        s->mark[t] |= 2;
        s->added[(*n_add)++] = (uint32_t)t;
        memcpy(row, tr->unit, dim * sizeof(double));
    }
    if (now && (!same || s->st[t] != st || check)) {
        trial_key(h, tr, &s->key[t]);
    }
    if (s->st[t] < HPO_STATE_COUNT) {
        s->cnt[s->st[t]]--;
    }
    if (st < HPO_STATE_COUNT) {
        s->cnt[st]++;
    }
    s->st[t] = st;
    s->incl[t] = now;
    s->dirty[t] = 0;
}

/*
** Bring the sorted lists in step with the history: trials that entered or
** left {complete, pruned, running}, or whose params differ from the mirror,
** are removed and (re)inserted, O(n) per coordinate touched.
**
** Which trials are compared: with observe() in use, the ones it reported,
** the new ones and the newest RECHECK_TAIL (a popped and re-appended
** number); then the per-state counts of the mirror must equal the
** history's, or every trial is compared after all (a change nobody
** reported, such as a heartbeat timeout). Without observe(), every trial's
** state and params are compared at every suggest (O(n d)).
*/
static int tpe_sync(struct tpe *s, const struct hpo_space *space, const struct hpo_history *h)
{
    size_t n = h->n_trials, old = s->n_known;
    size_t top = n > old ? n : old;
    size_t n_add = 0, n_rem = 0;
    bool full = !s->observed || n < old || s->dlist_lost;
    int r;

    if (n > UINT32_MAX) {
        return -EOVERFLOW;
    }
    r = grow_trials(s, top);
    if (r < 0) {
        return r;
    }
    r = grow((void **)&s->added, &s->cap_added, 2 * top + 1, sizeof(*s->added));
    if (r < 0) {
        return r;
    }
    r = grow((void **)&s->touched, &s->cap_touched, top + 1, sizeof(*s->touched));
    if (r < 0) {
        return r;
    }
    s->n_touched = 0;
    if (!full) {
        for (size_t i = 0; i < s->n_dlist; i++) {
            if (s->dlist[i] < old) {
                sync_one(s, h, s->dlist[i], true, &n_add, &n_rem);
            }
        }
        for (size_t t = old > RECHECK_TAIL ? old - RECHECK_TAIL : 0; t < n; t++) {
            sync_one(s, h, t, true, &n_add, &n_rem);
        }
        for (int k = 0; k < HPO_STATE_COUNT && !full; k++) {
            full = s->cnt[k] != h->count[k];
        }
    }
    if (full) {
        for (size_t t = 0; t < top; t++) {
            bool check = !s->observed || s->dirty[t] || t + RECHECK_TAIL >= old || t >= old;
            sync_one(s, h, t, check, &n_add, &n_rem);
        }
    }
    s->n_dlist = 0;
    s->dlist_lost = false;
    s->n_known = n;
    r = sync_lists(s, space, n_add, n_rem, top);
    for (size_t i = 0; i < s->n_touched; i++) {
        s->mark[s->touched[i]] = 0;
    }
    return r;
}

/* Remove the marked trials from every sorted list and merge the added ones in. */
static int sync_lists(struct tpe *s, const struct hpo_space *space, size_t n_add, size_t n_rem,
        size_t top)
{
    size_t dim = s->dim;
    int r;

    if (n_add == 0 && n_rem == 0) {
        return 0;
    }
    r = grow((void **)&s->newbuf, &s->cap_newbuf, n_add + 1, sizeof(*s->newbuf));
    if (r < 0) {
        return r;
    }
    /* A trial may have been listed twice (fast pass, then full): keep the last. */
    {
        size_t w = 0;
        for (size_t a = 0; a < n_add; a++) {
            size_t t = s->added[a];
            if ((s->mark[t] & 2) && s->incl[t]) {
                s->mark[t] |= 4;
                s->added[w++] = (uint32_t)t;
            }
        }
        for (size_t a = 0; a < w; a++) {
            s->mark[s->added[a]] &= (uint8_t)~4;
        }
        n_add = w;
    }
    for (size_t k = 0; k < dim; k++) {
        struct tpe_coord *c = &s->coords[k];
        size_t w = 0, nn = 0;

        if (c->kind == KIND_CAT) {
            double C = (double)cat_choices(space, k);
            for (size_t a = 0; a < n_add; a++) {
                size_t t = s->added[a];
                double u = s->mu_rows[t * dim + k], q = floor(u * C);
                c->tcat[t] = isnan(u) ? UINT32_MAX :
                        (uint32_t)(q < 0.0 ? 0.0 : (q > C - 1.0 ? C - 1.0 : q));
            }
            continue;
        }
        if (n_rem > 0) {
            c->walked = false; /* removed entries' neighbours: walk it all */
            for (size_t i = 0; i < c->n; i++) {
                if (!(c->ord[i].t < top && (s->mark[c->ord[i].t] & 1))) {
                    c->ord[w++] = c->ord[i];
                }
            }
            c->n = w;
        }
        if (n_add == 0) {
            continue;
        }
        for (size_t a = 0; a < n_add; a++) {
            size_t t = s->added[a];
            double v = s->mu_rows[t * dim + k];
            if (c->kind == KIND_CONT) {
                double x = v * NBUCK; /* exact: a power of 2 */
                c->vq[t] = (uint8_t)(!(x >= 1.0) ? 0 : (x >= NBUCK - 1 ? NBUCK - 1 : x));
            }
            if (!isnan(v)) {
                s->newbuf[nn].v = v;
                c->tsg[t] = 0.0; /* (re)listed: its kernel is written at the next walk */
                s->newbuf[nn].t = (uint32_t)t;
                nn++;
            }
        }
        if (nn == 0) {
            continue;
        }
        r = grow((void **)&c->ord, &c->cap, c->n + nn, sizeof(*c->ord));
        if (r < 0) {
            return r;
        }
        if (nn > 1 && (nn < RADIX_MIN || radix_sort_entries(s->newbuf, nn) < 0)) {
            qsort(s->newbuf, nn, sizeof(*s->newbuf), entry_cmp);
        }
        /*
        ** Merge from the back, in place: each new entry (largest first) finds
        ** its place among the old ones by binary search, and the old entries
        ** after it move up in one block.
        */
        {
            size_t i = c->n, j = nn, o = c->n + nn;
            while (j > 0) {
                const struct tpe_entry *x = &s->newbuf[--j];
                size_t lo = 0, hi = i;
                while (lo < hi) {
                    size_t mid = lo + (hi - lo) / 2;
                    if (entry_less(x, &c->ord[mid])) {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                o -= i - lo;
                memmove(c->ord + o, c->ord + lo, (i - lo) * sizeof(*c->ord));
                i = lo;
                c->ord[--o] = *x;
            }
            c->n += nn;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* One model unit: a set of params modelled jointly                        */

struct tpe_carver {
    char *base;
    size_t off;
};

static void *carve(struct tpe_carver *cv, size_t bytes)
{
    size_t at = (cv->off + 15) & ~(size_t)15;

    cv->off = at + bytes;
    return cv->base != NULL ? cv->base + at : NULL;
}

static void mix_layout(struct tpe_carver *cv, struct tpe_mix *mx, const struct tpe_udim *ud,
        size_t nd, size_t m, bool below)
{
    struct tpe_mdim dummy;

    mx->m = m;
    mx->m_pad = m = (m + LANES - 1) / LANES * LANES;
    mx->logw = carve(cv, m * sizeof(double));
    mx->base = carve(cv, m * sizeof(double));
    mx->d = carve(cv, nd * sizeof(struct tpe_mdim));
    for (size_t j = 0; j < nd; j++) {
        struct tpe_mdim *md = mx->d != NULL ? &mx->d[j] : &dummy;
        memset(md, 0, sizeof(*md));
        if (ud[j].kind != KIND_CAT) {
            md->mu = carve(cv, m * sizeof(double));
            md->isig = carve(cv, m * sizeof(double));
            md->cst = carve(cv, m * sizeof(double));
            if (below) {
                md->sig = carve(cv, m * sizeof(double));
            }
        }
        if (ud[j].kind == KIND_DISC) {
            md->cls = carve(cv, m * sizeof(uint32_t));
            md->cls_mu = carve(cv, m * sizeof(double));
            md->cls_isig = carve(cv, m * sizeof(double));
        }
        if (ud[j].kind == KIND_CAT) {
            md->cat = carve(cv, m * sizeof(uint32_t));
        }
    }
}

struct tpe_unit {
    struct tpe_udim *ud;
    size_t nd;
    size_t m_l, m_g;
    size_t n_slots;    /* trials in the history: g's kernel slots */
    struct tpe_mix l, g;
    struct tpe_cands cand;
    double *sl, *sg, *tab, *tab_l, *bestx;
    double **tabs_l, **tabs_g; /* per dim: its bin-mass table in tab_l / tab, or NULL */
    double **cstp;     /* the numeric dims' kernel constants (build_above) */
    double *csth;      /* and their coordinates' cst_hi */
    size_t n_cst;
    double lt;         /* log of g's total weight */
    bool base_done;    /* g's base is computed for every slot (base_full) */
    const uint8_t *role;
    uint32_t *arank;   /* per 64 slots: the above trials before them (filter_prep) */
    double *wg;        /* g's age weights by rank (build_above) */
    /*
    ** filter_score (filter_prep; n_f = 0: not used): the above trials as
    ** bits, the largest base of g, and for up to FILTER_DIMS continuous
    ** dims their index, their coordinate's buckets (vq) and sig_hi sqrt 2.
    */
    uint64_t *abits;
    double bmax;
    size_t n_f;
    size_t f_j[FILTER_DIMS];
    const uint8_t *f_q[FILTER_DIMS];
    double f_w[FILTER_DIMS];
    uint32_t *sel, *below;
    double *wl;        /* below weights (tpe-mo.c), or NULL for the default ones */
    double *tmpv;
    size_t tab_cap, tab_l_cap;
};

static void unit_layout(struct tpe_carver *cv, struct tpe_unit *u, size_t n_ei)
{
    size_t nc = n_ei < CHUNK ? n_ei : CHUNK;
    size_t nd = u->nd;
    size_t ndisc = 0;

    for (size_t j = 0; j < nd; j++) {
        ndisc += u->ud[j].kind == KIND_DISC;
    }
    mix_layout(cv, &u->l, u->ud, nd, u->m_l, true);
    /* g: kernels live in the coordinates' trial arrays; only base and classes here. */
    u->g.m = u->m_g;
    u->g.m_pad = (u->n_slots + LANES - 1) / LANES * LANES;
    u->g.base = carve(cv, u->g.m_pad * sizeof(double));
    u->g.d = carve(cv, nd * sizeof(struct tpe_mdim));
    for (size_t j = 0; j < nd; j++) {
        size_t mc = u->ud[j].kind == KIND_DISC ? u->m_g : 0;
        double *cm = carve(cv, mc * sizeof(double));
        double *ci = carve(cv, mc * sizeof(double));
        if (u->g.d != NULL) {
            memset(&u->g.d[j], 0, sizeof(u->g.d[j]));
            u->g.d[j].cls_mu = cm;
            u->g.d[j].cls_isig = ci;
        }
    }
    u->cand.x = carve(cv, nc * nd * sizeof(double));
    u->cand.lo = carve(cv, nc * nd * sizeof(double));
    u->cand.hi = carve(cv, nc * nd * sizeof(double));
    u->cand.ci = carve(cv, nc * nd * sizeof(uint32_t));
    u->sl = carve(cv, nc * sizeof(double));
    u->sg = carve(cv, nc * sizeof(double));
    u->tab_cap = ndisc * u->m_g * nc;
    if (u->tab_cap > TAB_BUDGET) {
        u->tab_cap = TAB_BUDGET;
    }
    u->tab = carve(cv, u->tab_cap * sizeof(double));
    u->tab_l_cap = ndisc * u->m_l * nc;
    if (u->tab_l_cap > TAB_BUDGET) {
        u->tab_l_cap = TAB_BUDGET;
    }
    u->tab_l = carve(cv, u->tab_l_cap * sizeof(double));
    u->tabs_l = carve(cv, nd * sizeof(double *));
    u->tabs_g = carve(cv, nd * sizeof(double *));
    u->cstp = carve(cv, nd * sizeof(double *));
    u->csth = carve(cv, nd * sizeof(double));
    u->arank = carve(cv, ((u->n_slots + 63) / 64 + 1) * sizeof(uint32_t));
    u->wg = carve(cv, u->m_g * sizeof(double));
    u->abits = carve(cv, (u->n_slots + 63) / 64 * sizeof(uint64_t));
    u->bestx = carve(cv, nd * sizeof(double));
    u->sel = carve(cv, (u->m_g + 1) * sizeof(uint32_t));
    u->below = carve(cv, (MAX_BELOW + 1) * sizeof(uint32_t));
    u->tmpv = carve(cv, (MAX_BELOW + 1) * sizeof(double));
    u->wl = carve(cv, (MAX_BELOW + 1) * sizeof(double));
}

static bool key_less(const struct tpe_key *x, const struct tpe_key *y)
{
    if (x->cls != y->cls) {
        return x->cls < y->cls;
    }
    if (x->a != y->a) {
        return x->a < y->a;
    }
    if (x->b != y->b) {
        return x->b < y->b;
    }
    return x->t < y->t;
}

/* Neighbour-rule bandwidth of point i of `na` sorted values (docs/ALGORITHMS.md §3.4), clipped. */
static double neighbour_sigma(const struct tpe_options *o, double prev, double v, double next,
        size_t i, size_t na, double minsig)
{
    double left = i > 0 ? v - prev : v;
    double right = i + 1 < na ? next - v : 1.0 - v;
    double sg;

    if (!o->consider_endpoints && na >= 2) {
        sg = i == 0 ? right : (i + 1 == na ? left : (left > right ? left : right));
    } else {
        sg = left > right ? left : right;
    }
    return sg < minsig ? minsig : (sg > 1.0 ? 1.0 : sg);
}

static double min_sigma(const struct tpe_options *o, size_t m)
{
    double k = (double)m + 2.0;

    if (!o->consider_magic_clip) {
        return MIN_SIGMA_NO_CLIP;
    }
    return 1.0 / (k < 100.0 ? k : 100.0);
}

static uint32_t cat_index(const struct tpe_udim *ud, double u)
{
    double c = floor(u * ud->n_choices);

    if (!(c >= 0.0)) {
        c = 0.0;
    }
    if (c > ud->n_choices - 1.0) {
        c = ud->n_choices - 1.0;
    }
    return (uint32_t)c;
}

/*
** Fill the padding kernels [m, m_pad) so they add exp(-inf) = 0 to every
** sum, and sum each kernel's constants into base.
*/
static void mix_finish(struct tpe_mix *mx, const struct tpe_udim *ud, size_t nd)
{
    memcpy(mx->base, mx->logw, mx->m * sizeof(double));
    for (size_t j = 0; j < nd; j++) {
        if (ud[j].kind != KIND_CAT) {
            const double *cs = mx->d[j].cst;
            for (size_t i = 0; i < mx->m; i++) {
                mx->base[i] += cs[i];
            }
        }
    }
    for (size_t i = mx->m; i < mx->m_pad; i++) {
        mx->logw[i] = -INFINITY;
        mx->base[i] = -INFINITY;
        for (size_t j = 0; j < nd; j++) {
            struct tpe_mdim *md = &mx->d[j];
            if (ud[j].kind != KIND_CAT) {
                md->mu[i] = 0.5;
                md->isig[i] = 0.0;
                md->cst[i] = 0.0;
                if (md->sig != NULL) {
                    md->sig[i] = 1.0;
                }
            }
            if (ud[j].kind == KIND_DISC) {
                md->cls[i] = 0;
            }
            if (ud[j].kind == KIND_CAT) {
                md->cat[i] = UINT32_MAX;
            }
        }
    }
}

static void set_weights(const struct tpe_options *o, struct tpe_mix *mx, const double *given)
{
    double total = o->prior_weight;

    if (given != NULL) {
        memcpy(mx->logw, given, mx->m * sizeof(double));
    } else {
        hpo_tpe_default_weights(mx->m, mx->logw);
    }
    for (size_t i = 0; i < mx->m; i++) {
        total += mx->logw[i];
    }
    for (size_t i = 0; i < mx->m; i++) {
        mx->logw[i] = log(mx->logw[i] / total);
    }
    mx->logw_prior = log(o->prior_weight / total);
}

static void set_cat(const struct tpe_options *o, struct tpe_mdim *md, size_t m, double C)
{
    double a = o->prior_weight / ((double)m + 1.0);

    md->cat_hit = log((1.0 + a) / (1.0 + C * a));
    md->cat_miss = log(a / (1.0 + C * a));
}

/*
** Build the below mixture from the (chronological) below trials.
**
** The magic clip of a below kernel modelling nd > 1 params jointly is
** min_sigma / sqrt(nd): the clip bounds the kernel's radius (a draw lands
** about sigma sqrt(nd) from its centre) to what the 1-D rule allows. With
** the per-dimension neighbour rule the below group's gaps soon fall under
** the 1-D floor 1/(m + 2) (m <= 25), which then fixes every below kernel's
** width: candidates scatter about 1/(m + 2) sqrt(nd) around the good trials
** whatever the number of trials, while the above kernels (m ~ 0.9 n) are
** far sharper. Univariate units (nd = 1) and the above mixture keep
** Optuna's clip. Measured in bench/quality (60 seeds, hpod only): lower
** median final regret on all 8 objectives.
*/
static void build_below(const struct tpe *s, const struct hpo_history *h, struct tpe_unit *u)
{
    const struct tpe_options *o = &s->opt;
    size_t m = u->m_l;
    double minsig = min_sigma(o, m);

    if (o->consider_magic_clip && u->nd > 1) {
        minsig /= sqrt((double)u->nd);
    }

    set_weights(o, &u->l, u->wl);
    for (size_t j = 0; j < u->nd; j++) {
        const struct tpe_udim *ud = &u->ud[j];
        struct tpe_mdim *md = &u->l.d[j];
        uint32_t order[MAX_BELOW + 1];

        if (ud->kind == KIND_CAT) {
            for (size_t i = 0; i < m; i++) {
                md->cat[i] = cat_index(ud, h->trials[u->below[i]]->unit[ud->coord]);
            }
            set_cat(o, md, m, ud->n_choices);
            continue;
        }
        for (size_t i = 0; i < m; i++) {
            u->tmpv[i] = h->trials[u->below[i]]->unit[ud->coord];
            order[i] = (uint32_t)i;
        }
        /* Insertion sort of at most 25 by (value, trial number). */
        for (size_t i = 1; i < m; i++) {
            uint32_t x = order[i];
            size_t q = i;
            while (q > 0 && (u->tmpv[order[q - 1]] > u->tmpv[x] ||
                    (u->tmpv[order[q - 1]] == u->tmpv[x] && order[q - 1] > x))) {
                order[q] = order[q - 1];
                q--;
            }
            order[q] = x;
        }
        md->n_cls = 0;
        for (size_t i = 0; i < m; i++) {
            size_t k = order[i];
            double v = u->tmpv[k];
            double prev = i > 0 ? u->tmpv[order[i - 1]] : 0.0;
            double next = i + 1 < m ? u->tmpv[order[i + 1]] : 1.0;
            double sg = neighbour_sigma(o, prev, v, next, i, m, minsig);
            md->mu[k] = v;
            md->sig[k] = sg;
            md->isig[k] = (ud->kind == KIND_CONT ? M_SQRT1_2 : 1.0) / sg;
            md->cst[k] = kernel_cst(ud->kind, v, sg);
            if (ud->kind == KIND_DISC) {
                md->cls[k] = (uint32_t)k;
                md->cls_mu[k] = v;
                md->cls_isig[k] = md->isig[k];
            }
        }
        if (ud->kind == KIND_DISC) {
            md->n_cls = m;
        }
    }
}

/* Optuna's default weight of the observation of rank r (oldest first) among m. */
static double default_weight(size_t m, size_t r)
{
    size_t ramp = m < 25 ? 0 : m - 25;
    double start;

    if (r >= ramp) {
        return 1.0;
    }
    start = 1.0 / (double)m;
    if (ramp == 1) {
        return start;
    }
    return r == ramp - 1 ? 1.0 : start + (double)r * (1.0 - start) / (double)(ramp - 1);
}

/*
** The bandwidth of an above entry at v (docs/ALGORITHMS.md §3.4) from its
** nearest above neighbours in the sorted list: prev when has_prev, next
** when has_next; `ends` is the endpoint rule (!consider_endpoints, m >= 2).
*/
static double above_sigma(bool ends, bool has_prev, double prev, double v, bool has_next,
        double next, double minsig)
{
    double left = has_prev ? v - prev : v;
    double right = has_next ? next - v : 1.0 - v;
    double sg;

    if (ends) {
        sg = !has_prev ? right : (!has_next ? left : (left > right ? left : right));
    } else {
        sg = left > right ? left : right;
    }
    return sg < minsig ? minsig : (sg > 1.0 ? 1.0 : sg);
}

/* Give entry e (trial t) bandwidth sg: rewrite its kernel in the trial arrays if it changed. */
static void set_kernel(struct tpe_coord *c, const struct tpe_entry *e, int kind, double sg)
{
    uint32_t t = e->t;

    if (c->tsg[t] != sg) {
        c->tmu[t] = e->v;
        c->tis[t] = (kind == KIND_CONT ? M_SQRT1_2 : 1.0) / sg;
        c->tcst[t] = kernel_cst(kind, e->v, sg);
        c->tsg[t] = sg;
    }
    c->w_cst = c->tcst[t] > c->w_cst ? c->tcst[t] : c->w_cst;
}

/*
** Walk the whole sorted list of coordinate c: every above entry's
** bandwidth from its neighbours, kernels rewritten where it changed, and
** (discrete) the distinct kernels numbered as classes. Remembers the roles
** for walk_incr. -EIO when the number of above entries is not m.
*/
static int walk_full(struct tpe *s, const struct tpe_unit *u, struct tpe_coord *c,
        struct tpe_mdim *md, int kind, size_t m, double minsig)
{
    const struct tpe_options *o = &s->opt;
    bool ends = !o->consider_endpoints && m >= 2;
    struct tpe_entry *ord = c->ord, *cur = NULL;
    size_t n = u->n_slots, na = 0, e = 0;
    double prev = 0.0, hi = 0.0;

    c->walked = false;
    c->w_cst = -INFINITY;
    /* One pass with a window (prev, cur, next) of above entries; cur is set once next is found. */
    for (;;) {
        struct tpe_entry *next = NULL;
        while (e < c->n) {
            struct tpe_entry *x = &ord[e++];
            if (s->role[x->t] == ROLE_ABOVE) {
                next = x;
                break;
            }
        }
        if (cur != NULL) {
            double v = cur->v;
            uint32_t t = cur->t;
            double sg = above_sigma(ends, na > 0, prev, v, next != NULL,
                    next != NULL ? next->v : 0.0, minsig);
            set_kernel(c, cur, kind, sg);
            hi = sg > hi ? sg : hi;
            if (kind == KIND_DISC) {
                if (md->n_cls == 0 || md->cls_mu[md->n_cls - 1] != v ||
                        md->cls_isig[md->n_cls - 1] != c->tis[t]) {
                    md->cls_mu[md->n_cls] = v;
                    md->cls_isig[md->n_cls] = c->tis[t];
                    md->n_cls++;
                }
                c->tcls[t] = (uint32_t)(md->n_cls - 1);
            }
            prev = v;
            na++;
        }
        if (next == NULL) {
            break;
        }
        if (na >= m) {
            return -EIO; /* more above entries than above trials */
        }
        cur = next;
    }
    if (na != m) {
        return -EIO;
    }
    c->sig_hi = hi;
    c->cst_hi = c->w_cst;
    if (kind == KIND_DISC) {
        /* Stale classes of other trials must stay valid indices. */
        for (size_t t = 0; t < n; t++) {
            if (s->role[t] != ROLE_ABOVE) {
                c->tcls[t] = 0;
            }
        }
        return 0;
    }
    memcpy(c->trole, s->role, n);
    memset(c->trole + n, ROLE_SKIP, s->cap_trials - n);
    c->walked = true;
    c->w_ends = ends;
    c->w_minsig = minsig;
    c->w_na = na;
    return 0;
}

/* The position of trial t's entry (value v) in c's sorted list, or SIZE_MAX. */
static size_t entry_find(const struct tpe_coord *c, double v, uint32_t t)
{
    struct tpe_entry key;
    size_t lo = 0, hi = c->n;

    key.v = v;
    key.t = t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (entry_less(&c->ord[mid], &key)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < c->n && c->ord[lo].t == t ? lo : SIZE_MAX;
}

/* The nearest above entry before position p (dir < 0) or after it, or SIZE_MAX. */
static size_t above_near(const struct tpe *s, const struct tpe_coord *c, size_t p, int dir)
{
    if (dir < 0) {
        while (p-- > 0) {
            if (s->role[c->ord[p].t] == ROLE_ABOVE) {
                return p;
            }
        }
        return SIZE_MAX;
    }
    while (++p < c->n) {
        if (s->role[c->ord[p].t] == ROLE_ABOVE) {
            return p;
        }
    }
    return SIZE_MAX;
}

/*
** List the trials whose role differs from prole (once per unit, for the
** first coordinate that can use it); false when it cannot be listed.
*/
static bool list_changes(struct tpe *s, size_t n)
{
    if (s->chg_ok) {
        return true;
    }
    if (grow((void **)&s->chg, &s->cap_chg, n + 1, sizeof(*s->chg)) < 0) {
        return false;
    }
    s->n_chg = 0;
    for (size_t t0 = 0; t0 < n; t0 += 8) {
        size_t len = n - t0 < 8 ? n - t0 : 8;
        uint64_t x = 0, y = 0;
        memcpy(&x, s->role + t0, len);
        memcpy(&y, s->prole + t0, len);
        for (size_t t = t0; t < t0 + len && x != y; t++) {
            if (s->role[t] != s->prole[t]) {
                s->chg[s->n_chg++] = (uint32_t)t;
            }
        }
    }
    s->chg_ok = true;
    return true;
}

/*
** The same result as walk_full on a continuous coordinate, revisiting
** only what can have changed since its last walk. An above entry's
** bandwidth depends only on its nearest above neighbours (and on the clip
** and endpoint rule, which must be the same): if one of them changed, a
** trial between it and its old neighbour changed role, and the entry is
** the nearest above entry on that side of it. So for each trial whose role
** changed, its entry and the nearest above entries on either side are
** recomputed. Entries never move between walks (a removal clears
** `walked`; new entries have sigma 0, so their kernel is written).
** Returns 1 when the whole list must be walked instead.
*/
static int walk_incr(struct tpe *s, const struct tpe_unit *u, struct tpe_coord *c,
        size_t coord, size_t m, double minsig)
{
    bool ends = !s->opt.consider_endpoints && m >= 2, shared;
    size_t n = u->n_slots, n_fix = 0, na;
    const uint8_t *role = s->role;

    if (!c->walked || c->w_ends != ends || c->w_minsig != minsig) {
        return 1;
    }
    if (grow((void **)&s->fix, &s->cap_fix, 3 * (n / 16) + 3, sizeof(*s->fix)) < 0) {
        return 1;
    }
    na = c->w_na;
    shared = c->rgen == s->role_gen && list_changes(s, n);
    /* Shared: trole is prole, so the changed trials are the unit's list. */
    for (size_t i = 0, t0 = 0; shared ? i < s->n_chg : t0 < n; i++, t0 += 8) {
        size_t lo = shared ? s->chg[i] : t0;
        size_t len = shared ? 1 : (n - t0 < 8 ? n - t0 : 8);
        if (len == 8) {
            uint64_t x, y;
            memcpy(&x, role + t0, sizeof(x));
            memcpy(&y, c->trole + t0, sizeof(y));
            if (x == y) {
                continue;
            }
        }
        for (size_t t = lo; t < lo + len; t++) {
            size_t p;
            if (role[t] == c->trole[t]) {
                continue;
            }
            if (n_fix + 3 > s->cap_fix) {
                return 1; /* many changes: one walk is cheaper */
            }
            p = entry_find(c, s->mu_rows[t * s->dim + coord], (uint32_t)t);
            if (p == SIZE_MAX) {
                return 1; /* not listed: let walk_full judge the history */
            }
            na += role[t] == ROLE_ABOVE;
            na -= c->trole[t] == ROLE_ABOVE;
            c->trole[t] = role[t]; /* a return 1 from here on is followed by walk_full */
            if (role[t] == ROLE_ABOVE) {
                s->fix[n_fix++] = p;
            }
            s->fix[n_fix++] = above_near(s, c, p, -1);
            s->fix[n_fix++] = above_near(s, c, p, 1);
        }
    }
    if (na != m) {
        return 1;
    }
    c->w_cst = c->cst_hi;
    for (size_t i = 0; i < n_fix; i++) {
        size_t p = s->fix[i], lp, rp;
        double sg;
        if (p == SIZE_MAX) {
            continue;
        }
        lp = above_near(s, c, p, -1);
        rp = above_near(s, c, p, 1);
        sg = above_sigma(ends, lp != SIZE_MAX, lp != SIZE_MAX ? c->ord[lp].v : 0.0,
                c->ord[p].v, rp != SIZE_MAX, rp != SIZE_MAX ? c->ord[rp].v : 0.0, minsig);
        set_kernel(c, &c->ord[p], KIND_CONT, sg);
        c->sig_hi = sg > c->sig_hi ? sg : c->sig_hi;
    }
    c->cst_hi = c->w_cst;
    c->w_na = na;
    return 0;
}

/*
** The above mixture's base over slots [lo, hi): the age weight of each
** above trial (rank r among the above trials in trial order, as
** default_weight(m, r)), -inf for the other slots, then each numeric dim's
** kernel constant added in dim order. Taken in blocks of BASE_BLOCK slots,
** so a block's base stays in the cache while every dim is added; each
** slot gets the same operations in the same order as a dim-by-dim pass,
** whichever range or thread computes it.
*/
#define BASE_BLOCK 512
#define PAR_BASE_GRAIN 2048 /* slots a thread must have to be worth waking */

struct base_job {
    const uint8_t *role;
    const double *w; /* default_weight(m, r) of the r-th above trial */
    double *base;
    const double *const *cst; /* the numeric dims' tcst arrays, in dim order */
    size_t n_cst, n;
    double lt;
};

static void base_range(void *ctx, size_t lo, size_t hi)
{
    const struct base_job *jb = ctx;
    const uint8_t *role = jb->role;
    const double *wg = jb->w;
    double *restrict base = jb->base;
    size_t n = jb->n, r = 0;
    double lt = jb->lt;

    for (size_t t = 0; t < lo && t < n; t++) {
        r += role[t] == ROLE_ABOVE;
    }
    for (size_t b0 = lo; b0 < hi; b0 += BASE_BLOCK) {
        size_t b1 = hi - b0 < BASE_BLOCK ? hi : b0 + BASE_BLOCK;
        for (size_t t = b0; t < b1; t++) {
            if (t < n && role[t] == ROLE_ABOVE) {
                double w = wg[r++];
                base[t] = w == 1.0 ? -lt : log(w) - lt;
            } else {
                base[t] = -INFINITY;
            }
        }
        for (size_t k = 0; k < jb->n_cst; k++) {
            const double *restrict cs = jb->cst[k];
            for (size_t t = b0; t < b1; t++) {
                base[t] += cs[t];
            }
        }
    }
}

static void filter_dims(const struct tpe *s, struct tpe_unit *u);
static void base_full(struct tpe_unit *u);

/*
** Build the above mixture: per numeric dim one walk of the sorted list
** computing the neighbour-rule bandwidths (rewriting a trial's kernel
** only when its sigma changed), then base (base_range) over the slots,
** split over the worker pool when there are many.
*/
static int build_above(struct tpe *s, const struct hpo_history *h, struct tpe_unit *u)
{
    const struct tpe_options *o = &s->opt;
    struct tpe_mix *g = &u->g;
    size_t m = u->m_g, n_cst = 0;
    double minsig = min_sigma(o, m);
    double total = o->prior_weight, lt;

    for (size_t i = 0; i < m; i++) {
        u->wg[i] = default_weight(m, i);
        total += u->wg[i];
    }
    lt = log(total);
    g->logw_prior = log(o->prior_weight) - lt;
    s->chg_ok = false;
    for (size_t j = 0; j < u->nd; j++) {
        const struct tpe_udim *ud = &u->ud[j];
        struct tpe_mdim *md = &g->d[j];
        struct tpe_coord *c = &s->coords[ud->coord];

        if (ud->kind == KIND_CAT) {
            md->cat = c->tcat;
            set_cat(o, md, m, ud->n_choices);
            continue;
        }
        md->mu = c->tmu;
        md->isig = c->tis;
        md->cls = c->tcls;
        md->n_cls = 0;
        if (ud->kind == KIND_DISC || walk_incr(s, u, c, ud->coord, m, minsig) != 0) {
            int rr = walk_full(s, u, c, md, ud->kind, m, minsig);
            if (rr < 0) {
                return rr;
            }
        }
        u->csth[n_cst] = c->cst_hi;
        u->cstp[n_cst++] = c->tcst;
    }
    /* prole := role; the unit's continuous coordinates now hold it as trole. */
    if (s->chg_ok) {
        for (size_t i = 0; i < s->n_chg; i++) {
            s->prole[s->chg[i]] = s->role[s->chg[i]];
        }
    } else {
        memcpy(s->prole, s->role, u->n_slots);
    }
    s->role_gen++;
    for (size_t j = 0; j < u->nd; j++) {
        struct tpe_coord *c = &s->coords[u->ud[j].coord];
        c->rgen = u->ud[j].kind == KIND_CONT && c->walked ? s->role_gen : 0;
    }
    u->n_cst = n_cst;
    u->lt = lt;
    filter_dims(s, u);
    if (u->n_f == 0) {
        base_full(u);
    }
    (void)h;
    return 0;
}

/* g's base over every slot (base_range), split over the worker pool when there are many. */
static void base_full(struct tpe_unit *u)
{
    struct base_job jb;

    jb.role = u->role;
    jb.base = u->g.base;
    jb.cst = (const double *const *)u->cstp;
    jb.n_cst = u->n_cst;
    jb.n = u->n_slots;
    jb.w = u->wg;
    jb.lt = u->lt;
    hpo_parallel_for(u->g.m_pad, PAR_BASE_GRAIN, base_range, &jb);
    u->base_done = true;
}

/*
** The prior kernel's log density (mu 0.5, sigma 1 on [0,1]) at candidate
** coordinate idx; lz is its log normalizer, log_gauss_mass(-0.5, 0.5).
*/
static double prior_term(const struct tpe_udim *ud, const struct tpe_cands *cd, size_t idx,
        double lz)
{
    switch (ud->kind) {
    case KIND_CONT: {
        double z = cd->x[idx] - 0.5;
        return -0.5 * z * z - HALF_LN_2PI - lz;
    }
    case KIND_DISC:
        return hpo_tpe_log_gauss_mass(cd->lo[idx] - 0.5, cd->hi[idx] - 0.5) - lz;
    default:
        return -log(ud->n_choices);
    }
}

/*
** Add dim j's term of candidate c to the nb kernels a[0..nb) of the block
** at b0 (dense: every kernel).
*/
static void dim_dense(const struct tpe_mdim *md, int kind, const struct tpe_cands *cd,
        const double *tab, size_t c, size_t nd, size_t j, size_t b0, size_t nb,
        double *restrict a)
{
    if (kind == KIND_CONT) {
        const double *restrict mu = md->mu + b0;
        const double *restrict is = md->isig + b0;
        double xv = cd->x[c * nd + j];
        tpe_v4 vx = { xv, xv, xv, xv };
        for (size_t i = 0; i < nb; i += 4) {
            tpe_v4 vm, vi, va, z;
            memcpy(&vm, mu + i, sizeof(vm));
            memcpy(&vi, is + i, sizeof(vi));
            memcpy(&va, a + i, sizeof(va));
            z = (vx - vm) * vi;
            va -= z * z;
            memcpy(a + i, &va, sizeof(va));
        }
    } else if (kind == KIND_DISC) {
        const uint32_t *restrict cl = md->cls + b0;
        if (tab != NULL) {
            const double *row = tab + c * md->n_cls;
            for (size_t i = 0; i < nb; i++) {
                a[i] += row[cl[i]];
            }
        } else {
            double lo = cd->lo[c * nd + j], hi = cd->hi[c * nd + j];
            const double *mu = md->mu + b0, *is = md->isig + b0;
            for (size_t i = 0; i < nb; i++) {
                a[i] += hpo_tpe_log_gauss_mass((lo - mu[i]) * is[i], (hi - mu[i]) * is[i]);
            }
        }
    } else {
        const uint32_t *restrict ct = md->cat + b0;
        uint32_t ci = cd->ci[c * nd + j];
        double hit = md->cat_hit, miss = md->cat_miss;
        for (size_t i0 = 0; i0 < nb; i0 += LANES) {
            for (size_t i = i0; i < i0 + LANES; i++) {
                a[i] += ct[i] == ci ? hit : miss;
            }
        }
    }
}

/*
** Add dim j's term of candidate c to the ns kernels b0 + ix[s] of the block
** at b0 (sparse: the survivors only), each term computed as in dim_dense.
*/
static void dim_sparse(const struct tpe_mdim *md, int kind, const struct tpe_cands *cd,
        const double *tab, size_t c, size_t nd, size_t j, size_t b0, const uint32_t *ix,
        size_t ns, double *restrict a)
{
    if (kind == KIND_CONT) {
        const double *mu = md->mu + b0, *is = md->isig + b0;
        double xv = cd->x[c * nd + j];
        for (size_t s = 0; s < ns; s++) {
            double z = (xv - mu[ix[s]]) * is[ix[s]];
            a[s] -= z * z;
        }
    } else if (kind == KIND_DISC) {
        const uint32_t *cl = md->cls + b0;
        if (tab != NULL) {
            const double *row = tab + c * md->n_cls;
            for (size_t s = 0; s < ns; s++) {
                a[s] += row[cl[ix[s]]];
            }
        } else {
            double lo = cd->lo[c * nd + j], hi = cd->hi[c * nd + j];
            const double *mu = md->mu + b0, *is = md->isig + b0;
            for (size_t s = 0; s < ns; s++) {
                size_t i = ix[s];
                a[s] += hpo_tpe_log_gauss_mass((lo - mu[i]) * is[i], (hi - mu[i]) * is[i]);
            }
        }
    } else {
        const uint32_t *ct = md->cat + b0;
        uint32_t ci = cd->ci[c * nd + j];
        double hit = md->cat_hit, miss = md->cat_miss;
        for (size_t s = 0; s < ns; s++) {
            a[s] += ct[ix[s]] == ci ? hit : miss;
        }
    }
}

/*
** The first n_dense dims of a block, any kinds: a = base plus their terms
** (dim_dense), then the kernels above thr compacted into ix/a.
*/
static size_t dense_generic(const struct tpe_mix *mx, const struct tpe_unit *u,
        double *const *tabs, size_t c, size_t n_dense, size_t b0, size_t nb, double thr,
        uint32_t *restrict ix, double *restrict a)
{
    size_t ns = 0;

    memcpy(a, mx->base + b0, nb * sizeof(double));
    for (size_t j = 0; j < n_dense; j++) {
        dim_dense(&mx->d[j], u->ud[j].kind, &u->cand, tabs != NULL ? tabs[j] : NULL, c, u->nd,
                j, b0, nb, a);
    }
    for (size_t i0 = 0; i0 < nb; i0 += 4) {
        if (!(a[i0] > thr || a[i0 + 1] > thr || a[i0 + 2] > thr || a[i0 + 3] > thr)) {
            continue;
        }
        for (size_t i = i0; i < i0 + 4; i++) {
            ix[ns] = (uint32_t)i;
            a[ns] = a[i];
            ns += a[i] > thr;
        }
    }
    return ns;
}

/*
** The first two dims of a block when both are continuous, fused with the
** pruning: a = base - z0^2 - z1^2 for the nb kernels at b0 (the operations
** of two dim_dense passes), and the kernels above thr are compacted into
** ix/a. Returns their number. Compiled twice (dense2_cont): for the
** baseline and, on x86-64, for AVX, picked at run time; both do the same
** IEEE operations (no FMA), so the bits do not depend on the machine.
*/
static inline __attribute__((always_inline)) size_t dense2_body(const struct tpe_mix *mx,
        const struct tpe_cands *cd, size_t c, size_t nd, size_t b0, size_t nb, double thr,
        uint32_t *restrict ix, double *restrict a)
{
    const double *restrict base = mx->base + b0;
    const double *restrict mu0 = mx->d[0].mu + b0, *restrict is0 = mx->d[0].isig + b0;
    const double *restrict mu1 = mx->d[1].mu + b0, *restrict is1 = mx->d[1].isig + b0;
    double x0 = cd->x[c * nd], x1 = cd->x[c * nd + 1];
    tpe_v4 vx0 = { x0, x0, x0, x0 }, vx1 = { x1, x1, x1, x1 }, vt = { thr, thr, thr, thr };
    size_t ns = 0;

    for (size_t i = 0; i < nb; i += 4) {
        tpe_v4 va, vm, vi, z;
        double tmp[4];
        memcpy(&va, base + i, sizeof(va));
        memcpy(&vm, mu0 + i, sizeof(vm));
        memcpy(&vi, is0 + i, sizeof(vi));
        z = (vx0 - vm) * vi;
        va -= z * z;
        memcpy(&vm, mu1 + i, sizeof(vm));
        memcpy(&vi, is1 + i, sizeof(vi));
        z = (vx1 - vm) * vi;
        va -= z * z;
        if (!any_above(&va, &vt)) {
            continue;
        }
        memcpy(tmp, &va, sizeof(tmp));
        for (size_t l = 0; l < 4; l++) {
            ix[ns] = (uint32_t)(i + l);
            a[ns] = tmp[l];
            ns += tmp[l] > thr;
        }
    }
    return ns;
}

static size_t dense2_base(const struct tpe_mix *mx, const struct tpe_cands *cd, size_t c,
        size_t nd, size_t b0, size_t nb, double thr, uint32_t *restrict ix, double *restrict a)
{
    return dense2_body(mx, cd, c, nd, b0, nb, thr, ix, a);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define TPE_AVX 1
__attribute__((target("avx"))) static size_t dense2_avx(const struct tpe_mix *mx,
        const struct tpe_cands *cd, size_t c, size_t nd, size_t b0, size_t nb, double thr,
        uint32_t *restrict ix, double *restrict a)
{
    return dense2_body(mx, cd, c, nd, b0, nb, thr, ix, a);
}
#endif

typedef size_t (*dense2_fn)(const struct tpe_mix *, const struct tpe_cands *, size_t, size_t,
        size_t, size_t, double, uint32_t *restrict, double *restrict);

/* The variant of dense2 for this machine. */
static dense2_fn dense2_pick(void)
{
#ifdef TPE_AVX
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx")) {
        return dense2_avx;
    }
#endif
    return dense2_base;
}

/*
** log of the mixture density at each of `nc` candidates (mix_score: mix_prep then mix_blocks): a
** logsumexp over the prior kernel and the observed kernels, taken block by
** block (BLOCK kernels) with a running maximum M and sum S.
**
** The prior kernel comes first, so M starts at its log density. Every dim
** adds a term <= 0 to a kernel (the constants are in base), and a kernel
** adds to S only if its sum ends above M - LSE_CUTOFF (M never decreases),
** so a kernel whose partial sum is already at or below that bound can be
** dropped. Per block and candidate: the first DENSE_DIMS dims over every
** kernel (4-wide vectors; dense2 when both are continuous), then the
** survivors' indices are compacted and each further dim is added to the
** survivors only, compacting again after each. What is
** left are exactly the kernels that can change M or S; their sums are the
** same floating-point operations in the same order as a dense pass, so the
** result does not depend on the pruning.
**
** mix_prep: the discrete dims' bin-mass tables (when they fit in tab_cap)
** and M, S started at the prior kernel; mix_blocks: the observed kernels.
*/
static void mix_prep(const struct tpe_mix *mx, const struct tpe_unit *u, size_t nc, double *tab,
        size_t tab_cap, double **tabs, double *M, double *S)
{
    const struct tpe_cands *cd = &u->cand;
    size_t nd = u->nd, used = 0;
    double lz = hpo_tpe_log_gauss_mass(-0.5, 0.5);

    for (size_t j = 0; j < nd; j++) {
        const struct tpe_mdim *md = &mx->d[j];
        double *tb;
        tabs[j] = NULL;
        if (u->ud[j].kind != KIND_DISC || used + md->n_cls * nc > tab_cap) {
            continue;
        }
        tb = tab + used;
        used += md->n_cls * nc;
        for (size_t c = 0; c < nc; c++) {
            double lo = cd->lo[c * nd + j], hi = cd->hi[c * nd + j];
            for (size_t q = 0; q < md->n_cls; q++) {
                tb[c * md->n_cls + q] = hpo_tpe_log_gauss_mass((lo - md->cls_mu[q]) *
                        md->cls_isig[q], (hi - md->cls_mu[q]) * md->cls_isig[q]);
            }
        }
        tabs[j] = tb;
    }
    for (size_t c = 0; c < nc; c++) {
        double lp = mx->logw_prior;
        for (size_t j = 0; j < nd; j++) {
            lp += prior_term(&u->ud[j], cd, c * nd + j, lz);
        }
        M[c] = lp;
        S[c] = 1.0;
    }
}

/*
** The observed kernels' part of mix_score for candidates [c_lo, c_hi):
** every block for each candidate, then ret = M + log S. Candidates share
** nothing but read-only data (scratch on the stack), so ranges of them can
** run on different threads with the same results.
*/
static void mix_blocks(const struct tpe_mix *mx, const struct tpe_unit *u, double *const *tabs,
        dense2_fn dense2, size_t c_lo, size_t c_hi, double *M, double *S, double *ret)
{
    const struct tpe_cands *cd = &u->cand;
    size_t nd = u->nd, n_dense = nd < DENSE_DIMS ? nd : DENSE_DIMS;
    bool fused = nd >= 2 && u->ud[0].kind == KIND_CONT && u->ud[1].kind == KIND_CONT;
    double a[BLOCK] __attribute__((aligned(32)));
    uint32_t ix[BLOCK];

    for (size_t b0 = 0; mx->m > 0 && b0 < mx->m_pad; b0 += BLOCK) {
        size_t nb = mx->m_pad - b0 < BLOCK ? mx->m_pad - b0 : BLOCK; /* a multiple of LANES */
        for (size_t c = c_lo; c < c_hi; c++) {
            double thr = M[c] - LSE_CUTOFF, bm, sum = 0.0;
            size_t ns = 0;
            if (fused) {
                ns = dense2(mx, cd, c, nd, b0, nb, thr, ix, a);
            } else {
                ns = dense_generic(mx, u, tabs, c, n_dense, b0, nb, thr, ix, a);
            }
            for (size_t j = fused ? 2 : n_dense; j < nd && ns > 0; j++) {
                size_t w = 0;
                dim_sparse(&mx->d[j], u->ud[j].kind, cd, tabs[j], c, nd, j, b0, ix, ns, a);
                for (size_t q = 0; q < ns; q++) {
                    ix[w] = ix[q];
                    a[w] = a[q];
                    w += a[q] > thr;
                }
                ns = w;
            }
            if (ns == 0) {
                continue;
            }
            bm = a[0];
            for (size_t q = 1; q < ns; q++) {
                bm = a[q] > bm ? a[q] : bm;
            }
            if (bm > M[c]) {
                S[c] = S[c] * exp(M[c] - bm);
                M[c] = bm;
            }
            thr = M[c] - LSE_CUTOFF;
            for (size_t q = 0; q < ns; q++) {
                if (a[q] > thr) {
                    sum += exp(a[q] - M[c]);
                }
            }
            S[c] += sum;
        }
    }
    for (size_t c = c_lo; c < c_hi; c++) {
        ret[c] = M[c] + log(S[c]);
    }
}

/*
** Whether g is scored through filter_score (u->n_f > 0): from FILTER_MIN
** above kernels, on 3 to FILTER_DIMS continuous dims, each with its
** coordinate's buckets (vq) and the bound sig_hi sqrt 2 on its kernels'
** sigma sqrt 2 (of the walk build_above just did). g's base is then
** computed only for the kernels filter_score evaluates.
*/
static void filter_dims(const struct tpe *s, struct tpe_unit *u)
{
    u->n_f = 0;
    u->role = s->role;
    if (u->m_g < FILTER_MIN) {
        return;
    }
    for (size_t j = 0; j < u->nd && u->n_f < FILTER_DIMS; j++) {
        const struct tpe_coord *c = &s->coords[u->ud[j].coord];
        if (u->ud[j].kind == KIND_CONT && c->walked && c->sig_hi > 0.0) {
            u->f_j[u->n_f] = j;
            u->f_q[u->n_f] = c->vq;
            u->f_w[u->n_f] = c->sig_hi * M_SQRT2;
            u->n_f++;
        }
    }
    if (u->n_f < FILTER_MIN_DIMS) {
        u->n_f = 0; /* fewer ranges keep too many kernels to be worth it */
    }
}

/*
** The rest of what filter_score needs, once per unit: g's above trials as
** bits with the count before each word (a trial's rank, for its weight),
** and bmax >= every above kernel's base: -log(total weight) (an age
** weight is at most 1) plus each numeric dim's cst_hi, added in the
** order base_range adds the constants.
*/
static void filter_prep(struct tpe_unit *u)
{
    size_t n = u->n_slots, nw = (n + 63) / 64;
    double bm = -u->lt;

    if (u->n_f == 0) {
        return;
    }
    memset(u->abits, 0, nw * sizeof(uint64_t));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (size_t t = 0; t < n; t += 8) {
        uint64_t x = 0, b;
        if (n - t >= 8) {
            memcpy(&x, u->role + t, 8);
        } else {
            memcpy(&x, u->role + t, n - t);
        }
        /* Bit 1 of each role byte (ROLE_ABOVE is 2, the others 0 and 1), gathered into 8 bits. */
        b = ((((x >> 1) & UINT64_C(0x0101010101010101)) * UINT64_C(0x0102040810204080)) >> 56);
        u->abits[t / 64] |= b << (t & 63);
    }
#else
    for (size_t t = 0; t < n; t++) {
        u->abits[t / 64] |= (uint64_t)(u->role[t] == ROLE_ABOVE) << (t & 63);
    }
#endif
    u->arank[0] = 0;
    for (size_t w = 0; w < nw; w++) {
        u->arank[w + 1] = u->arank[w] + (uint32_t)__builtin_popcountll(u->abits[w]);
    }
    for (size_t k = 0; k < u->n_cst; k++) {
        bm += u->csth[k];
    }
    u->bmax = bm;
}

/* g's base at above trial t, as base_range computes it. */
static double base_one(const struct tpe_unit *u, uint32_t t)
{
    uint64_t below = u->abits[t / 64] & (((uint64_t)1 << (t & 63)) - 1);
    double w = u->wg[u->arank[t / 64] + (uint32_t)__builtin_popcountll(below)];
    double b = w == 1.0 ? -u->lt : log(w) - u->lt;

    for (size_t k = 0; k < u->n_cst; k++) {
        b += u->cstp[k][t];
    }
    return b;
}

/* Bit i set when b0 <= q[i] < e, for the 64 buckets q[0..64) (each < NBUCK). */
static inline uint64_t bucket_mask(const uint8_t *q, int b0, int e)
{
    uint64_t m = 0;
#if defined(__SSE2__)
    __m128i lo = _mm_set1_epi8((char)(b0 - 1)), hi = _mm_set1_epi8((char)e);

    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(q + 16 * k));
        __m128i in = _mm_and_si128(_mm_cmpgt_epi8(v, lo), _mm_cmpgt_epi8(hi, v));
        m |= (uint64_t)(uint32_t)_mm_movemask_epi8(in) << (16 * k);
    }
#else
    for (int i = 0; i < 64; i++) {
        m |= (uint64_t)(q[i] >= b0 && q[i] < e) << i;
    }
#endif
    return m;
}

/*
** log g at candidates [c_lo, c_hi), the same bits as mix_blocks on g,
** evaluating only the kernels whose value can end above L = M - 50 (M the
** prior kernel's density: mix_blocks never prunes at a lower bound).
**
** A kernel's value is base minus the dims' z^2 (plus terms <= 0 of other
** kinds), and each partial sum is at most the one before, so it ends
** above L only if for every continuous dim j, base - z_j^2 > L: with
** base <= bmax and 1/sigma >= 1/sig_hi, |x_j - mu_j| < sqrt(bmax - L)
** sig_hi sqrt 2 (with a margin for rounding). The trials with mu_j in that
** range have their bucket (vq) in the range's buckets (bucket_mask, 64
** trials a word); the above trials in the ranges of up to FILTER_DIMS dims
** get their values as mix_blocks computes them (every dim in order,
** dim_sparse), pruned at L, first from bmax, then from their own base. Then
** mix_blocks' streaming logsumexp is replayed over those values block by
** block in trial order: a block's kernels above its bound (>= L) are the
** survivors mix_blocks finds there, in index order, with the same values.
** A candidate whose ranges leave more than FILTER_CAP trials is left to
** mix_blocks (fb[c] set; M, S and ret untouched); so is every candidate
** when scratch space is short.
*/
static void filter_score(const struct tpe_unit *u, double *const *tabs, size_t c_lo,
        size_t c_hi, double *M, double *S, double *ret, bool *fb)
{
    const struct tpe_mix *g = &u->g;
    const struct tpe_cands *cd = &u->cand;
    size_t nd = u->nd, nw = (u->n_slots + 63) / 64;
    uint64_t *acc = malloc(nw * sizeof(*acc));
    uint32_t *wl = malloc(nw * sizeof(*wl));
    uint32_t *ix = malloc(FILTER_CAP * sizeof(*ix));
    double *a = malloc(FILTER_CAP * sizeof(*a));

    for (size_t c = c_lo; c < c_hi; c++) {
        double L = M[c] - LSE_CUTOFF, room = u->bmax - L, r;
        size_t ns = 0, q0 = 0, nl = 0;

        fb[c] = false;
        if (acc == NULL || wl == NULL || ix == NULL || a == NULL) {
            fb[c] = true;
            continue;
        }
        if (!(room > 0.0)) {
            ret[c] = M[c] + log(S[c]); /* every kernel ends at or below L */
            continue;
        }
        r = sqrt(room) * (1.0 + 1e-9) + 1e-12;
        /* acc holds the trials left in the words listed in wl (ascending, non-zero). */
        for (size_t w = 0; w < nw; w++) {
            acc[w] = u->abits[w];
            wl[nl] = (uint32_t)w;
            nl += acc[w] != 0;
        }
        for (size_t f = 0; f < u->n_f && nl > 0; f++) {
            double x = cd->x[c * nd + u->f_j[f]], R = r * u->f_w[f] * (1.0 + 1e-9) + 1e-12;
            double lo = (x - R) * NBUCK, hi = (x + R) * NBUCK;
            size_t b0 = lo <= 0.0 ? 0 : (lo >= NBUCK - 1 ? NBUCK - 1 : (size_t)lo);
            size_t e = hi >= NBUCK - 1 ? NBUCK : (hi < 0.0 ? 0 : (size_t)hi + 1);
            const uint8_t *vq = u->f_q[f];
            size_t k = 0;
            if (b0 == 0 && e >= NBUCK) {
                continue; /* the range covers [0, 1] */
            }
            for (size_t i = 0; i < nl; i++) {
                size_t w = wl[i];
                acc[w] &= bucket_mask(vq + w * 64, (int)b0, (int)e);
                wl[k] = (uint32_t)w;
                k += acc[w] != 0;
            }
            nl = k;
        }
        for (size_t i = 0; i < nl; i++) {
            size_t w = wl[i];
            uint64_t x = acc[w];
            while (x != 0 && ns <= FILTER_CAP) {
                if (ns < FILTER_CAP) {
                    ix[ns] = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(x));
                    a[ns] = u->bmax;
                }
                ns++;
                x &= x - 1;
            }
        }
        if (ns > FILTER_CAP) {
            fb[c] = true;
            continue;
        }
        /*
        ** Twice: from bmax (a bound: the same operations from a larger start
        ** end no lower), then from each remaining kernel's own base.
        */
        for (int pass = 0; pass < 2 && ns > 0; pass++) {
            for (size_t q = 0; q < ns && pass == 1; q++) {
                a[q] = base_one(u, ix[q]);
            }
            for (size_t j = 0; j < nd && ns > 0; j++) {
                size_t w = 0;
                dim_sparse(&g->d[j], u->ud[j].kind, cd, tabs[j], c, nd, j, 0, ix, ns, a);
                for (size_t q = 0; q < ns; q++) {
                    ix[w] = ix[q];
                    a[w] = a[q];
                    w += a[q] > L;
                }
                ns = w;
            }
        }
        /* mix_blocks' logsumexp over the survivors, a block of BLOCK trials at a time. */
        while (q0 < ns) {
            size_t blk = ix[q0] / BLOCK, q1 = q0, k = 0;
            double thr = M[c] - LSE_CUTOFF, bm = -INFINITY, sum = 0.0;
            while (q1 < ns && ix[q1] / BLOCK == blk) {
                if (a[q1] > thr) {
                    bm = k == 0 || a[q1] > bm ? a[q1] : bm;
                    k++;
                }
                q1++;
            }
            if (k > 0) {
                if (bm > M[c]) {
                    S[c] = S[c] * exp(M[c] - bm);
                    M[c] = bm;
                }
                thr = M[c] - LSE_CUTOFF;
                for (size_t q = q0; q < q1; q++) {
                    if (a[q] > thr) {
                        sum += exp(a[q] - M[c]);
                    }
                }
                S[c] += sum;
            }
            q0 = q1;
        }
        ret[c] = M[c] + log(S[c]);
    }
    free(acc);
    free(wl);
    free(ix);
    free(a);
}

/* Scoring a chunk under both mixtures, candidates split over threads (hpo_parallel_for). */
struct score_job {
    const struct tpe_unit *u;
    dense2_fn dense2;
    double Ml[CHUNK], Sl[CHUNK], Mg[CHUNK], Sg[CHUNK];
    bool fb[CHUNK]; /* filter_score left the candidate to mix_blocks */
};

static void score_range(void *ctx, size_t lo, size_t hi)
{
    struct score_job *jb = ctx;
    const struct tpe_unit *u = jb->u;

    mix_blocks(&u->l, u, u->tabs_l, jb->dense2, lo, hi, jb->Ml, jb->Sl, u->sl);
    if (u->n_f > 0) {
        filter_score(u, u->tabs_g, lo, hi, jb->Mg, jb->Sg, u->sg, jb->fb);
    } else {
        mix_blocks(&u->g, u, u->tabs_g, jb->dense2, lo, hi, jb->Mg, jb->Sg, u->sg);
    }
}

/*
** log l and log g at the chunk's nc candidates, into u->sl and u->sg.
** With enough kernels the candidates are split over the worker pool:
** each candidate's sums are the same operations whoever runs them.
*/
static void chunk_score(struct tpe_unit *u, size_t nc)
{
    struct score_job jb;
    size_t work = (u->l.m_pad + u->g.m_pad) * nc;

    jb.u = u;
    jb.dense2 = dense2_pick();
    mix_prep(&u->l, u, nc, u->tab_l, u->tab_l_cap, u->tabs_l, jb.Ml, jb.Sl);
    mix_prep(&u->g, u, nc, u->tab, u->tab_cap, u->tabs_g, jb.Mg, jb.Sg);
    /* filter_score's work is too small a share to be worth a thread. */
    hpo_parallel_for(nc, work >= PAR_SCORE_WORK && u->n_f == 0 ? 1 : nc, score_range, &jb);
    for (size_t c = 0; c < nc && u->n_f > 0; c++) {
        if (jb.fb[c]) {
            if (!u->base_done) {
                base_full(u);
            }
            mix_blocks(&u->g, u, u->tabs_g, jb.dense2, c, c + 1, jb.Mg, jb.Sg, u->sg);
        }
    }
}

/* Draw candidate c from the below mixture: one kernel for every dim of the unit. */
static void sample_candidate(const struct tpe_unit *u, struct hpo_rng *rng, size_t c)
{
    const struct tpe_mix *l = &u->l;
    size_t nd = u->nd;
    double r = hpo_rng_uniform(rng), cum = 0.0;
    size_t k = l->m; /* the prior kernel */

    for (size_t i = 0; i < l->m; i++) {
        cum += exp(l->logw[i]);
        if (r < cum) {
            k = i;
            break;
        }
    }
    for (size_t j = 0; j < nd; j++) {
        const struct tpe_udim *ud = &u->ud[j];
        const struct tpe_mdim *md = &l->d[j];
        size_t idx = c * nd + j;

        if (ud->kind == KIND_CAT) {
            uint32_t C = (uint32_t)ud->n_choices, ci;
            if (k == l->m) {
                ci = (uint32_t)hpo_rng_below(rng, C);
            } else if (C == 1 || hpo_rng_uniform(rng) < exp(md->cat_hit)) {
                ci = md->cat[k];
            } else {
                ci = (uint32_t)hpo_rng_below(rng, C - 1);
                ci += ci >= md->cat[k];
            }
            u->cand.ci[idx] = ci;
            u->cand.x[idx] = ((double)ci + 0.5) / ud->n_choices;
            continue;
        }
        {
            double x = k == l->m ? sample_trunc(rng, 0.5, 1.0) :
                    sample_trunc(rng, md->mu[k], md->sig[k]);
            if (ud->kind == KIND_DISC) {
                double value = hpo_param_from_unit(ud->p, x);
                hpo_param_bin(ud->p, value, &u->cand.lo[idx], &u->cand.hi[idx]);
                x = hpo_param_to_unit(ud->p, value);
            }
            u->cand.x[idx] = x;
        }
    }
}

static int pool_ensure(struct tpe *s, size_t bytes)
{
    char *p;

    if (bytes <= s->cap_pool) {
        return 0;
    }
    bytes += bytes / 4 + 64;
    p = realloc(s->pool, bytes);
    if (p == NULL) {
        return -ENOMEM;
    }
    s->pool = p;
    s->cap_pool = bytes;
    return 0;
}

/*
** Run TPE over the params `params[0..np)`, which are active together in
** every trial used, and write the chosen coordinates into unit_point.
*/
static int tpe_unit_run(struct tpe *s, const struct hpo_space *space,
        const struct hpo_history *h, struct hpo_rng *rng, const size_t *params, size_t np,
        double *unit_point)
{
    const struct tpe_options *o = &s->opt;
    struct tpe_udim udbuf[16];
    struct tpe_udim *ud = np <= 16 ? udbuf : malloc(np * sizeof(*ud));
    struct tpe_key top[MAX_BELOW];
    size_t n_top = 0, n_fin = 0, n_pend = 0, lead, k_below;
    struct tpe_unit u;
    struct tpe_carver cv;
    double best = -INFINITY;
    bool have_best = false;
    /* Several objectives or constraints: the split of tpe-mo.c over the list fin. */
    bool mo = h->n_obj > 1 || h->n_cons > 0;
    int r = 0;

    if (ud == NULL) {
        return -ENOMEM;
    }
    if (mo && grow((void **)&s->fin, &s->cap_fin, h->n_trials + 1, sizeof(*s->fin)) < 0) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t j = 0; j < np; j++) {
        const struct hpo_param *p = &space->params[params[j]];
        ud[j].coord = p->offset;
        ud[j].p = p;
        ud[j].n_choices = (double)p->n_choices;
        ud[j].kind = p->type == HPO_PARAM_CATEGORICAL ? KIND_CAT :
                (p->n_grid > 0.0 ? KIND_DISC : KIND_CONT);
    }
    lead = ud[0].coord;
    /* Split (docs/ALGORITHMS.md §3.3): keep the best 25 finished trials by key. */
    for (size_t t = 0; t < h->n_trials; t++) {
        const struct tpe_key *key = &s->key[t];
        size_t q;

        s->role[t] = ROLE_SKIP;
        if (!s->incl[t] || (space->conditional && isnan(s->mu_rows[t * s->dim + lead]))) {
            continue;
        }
        if (s->st[t] == HPO_STATE_RUNNING) {
            if (o->constant_liar) {
                s->role[t] = ROLE_ABOVE;
                n_pend++;
            }
            continue;
        }
        s->role[t] = ROLE_ABOVE;
        if (mo) {
            s->fin[n_fin++] = (uint32_t)t;
            continue;
        }
        n_fin++;
        if (n_top == MAX_BELOW && !key_less(key, &top[MAX_BELOW - 1])) {
            continue;
        }
        q = n_top < MAX_BELOW ? n_top++ : MAX_BELOW - 1;
        while (q > 0 && key_less(key, &top[q - 1])) {
            top[q] = top[q - 1];
            q--;
        }
        top[q] = *key;
    }
    if (n_fin == 0) {
        goto out; /* nothing observed: these coordinates stay random */
    }
    k_below = hpo_tpe_gamma(n_fin);
    memset(&u, 0, sizeof(u));
    u.ud = ud;
    u.nd = np;
    u.m_l = k_below;
    u.m_g = n_fin - k_below + n_pend;
    u.n_slots = h->n_trials;
    cv.base = NULL;
    cv.off = 0;
    unit_layout(&cv, &u, (size_t)o->n_ei_candidates);
    r = pool_ensure(s, cv.off + 16);
    if (r < 0) {
        goto out;
    }
    cv.base = (char *)(((uintptr_t)s->pool + 15) & ~(uintptr_t)15);
    cv.off = 0;
    unit_layout(&cv, &u, (size_t)o->n_ei_candidates);
    /* Below trials in chronological order; kernel indices for both groups. */
    if (mo) {
        r = hpo_tpe_mo_split(h, s->fin, n_fin, k_below, u.below, u.wl);
        if (r < 0) {
            goto out;
        }
        u.wl = r == 1 ? u.wl : NULL;
        r = 0;
    } else {
        u.wl = NULL;
    }
    for (size_t i = 0; i < k_below && !mo; i++) {
        u.below[i] = top[i].t;
    }
    for (size_t i = 1; i < k_below && !mo; i++) {
        uint32_t x = u.below[i];
        size_t q = i;
        while (q > 0 && u.below[q - 1] > x) {
            u.below[q] = u.below[q - 1];
            q--;
        }
        u.below[q] = x;
    }
    for (size_t i = 0; i < k_below; i++) {
        s->role[u.below[i]] = ROLE_BELOW;
    }
    build_below(s, h, &u);
    r = build_above(s, h, &u);
    if (r < 0) {
        goto out;
    }
    mix_finish(&u.l, u.ud, u.nd);
    filter_prep(&u);
    for (size_t c0 = 0; c0 < (size_t)o->n_ei_candidates; c0 += CHUNK) {
        size_t nc = (size_t)o->n_ei_candidates - c0;
        nc = nc < CHUNK ? nc : CHUNK;
        for (size_t c = 0; c < nc; c++) {
            sample_candidate(&u, rng, c);
        }
        chunk_score(&u, nc);
        for (size_t c = 0; c < nc; c++) {
            double sc = u.sl[c] - u.sg[c];
            if (!have_best || sc > best) {
                have_best = true;
                best = isnan(sc) ? -INFINITY : sc;
                memcpy(u.bestx, u.cand.x + c * np, np * sizeof(double));
            }
        }
    }
    for (size_t j = 0; j < np; j++) {
        unit_point[ud[j].coord] = u.bestx[j];
    }
out:
    if (ud != udbuf) {
        free(ud);
    }
    return r;
}

/*
** A trial changed: note it so the next sync compares its params. Once this
** has been called, syncs compare params only for reported, new and the
** newest trials (states are always compared).
*/
static void tpe_observe(void *state, const struct hpo_history *history, size_t trial)
{
    struct tpe *s = state;

    s->observed = true;
    if (trial >= s->n_known || s->dirty[trial]) {
        return; /* new trials are always compared */
    }
    if (grow((void **)&s->dlist, &s->cap_dlist, s->n_dlist + 1, sizeof(*s->dlist)) < 0) {
        s->dlist_lost = true;
        return;
    }
    s->dirty[trial] = 1;
    s->dlist[s->n_dlist++] = (uint32_t)trial;
}

/* ---------------------------------------------------------------------- */
/* Suggest                                                                 */

/* Whether trial t (as last synced) is used: finished, or running under constant liar. */
static bool considered(const struct tpe *s, size_t t)
{
    return s->incl[t] && (s->st[t] != HPO_STATE_RUNNING || s->opt.constant_liar);
}

/*
** Multivariate with group: partition the params into sets that are active
** together in every considered trial (refining the partition by each
** trial's active set), and run TPE on each set seen at least once.
*/
static int run_groups(struct tpe *s, const struct hpo_space *space, const struct hpo_history *h,
        struct hpo_rng *rng, double *unit_point)
{
    size_t np = space->n_params, ncls = 1;
    int r;

    for (size_t p = 0; p < np; p++) {
        s->pcls[p] = 0;
        s->pever[p] = 0;
    }
    for (size_t i = 0; i < 2 * np + 2; i++) {
        s->pmap[i] = -1;
    }
    for (size_t t = 0; t < h->n_trials; t++) {
        const double *row = s->mu_rows + t * s->dim;
        size_t nn = 0;
        if (!considered(s, t)) {
            continue;
        }
        for (size_t p = 0; p < np; p++) {
            int a = !isnan(row[space->params[p].offset]);
            int key = s->pcls[p] * 2 + a;
            s->pever[p] |= (uint8_t)a;
            if (s->pmap[key] < 0) {
                s->pmap[key] = (int)nn++;
            }
            s->pcls[p] = s->pmap[key];
        }
        for (size_t i = 0; i < 2 * ncls; i++) {
            s->pmap[i] = -1;
        }
        ncls = nn;
    }
    /* Each class in order of its first param; pact marks classes already run. */
    for (size_t p = 0; p < np; p++) {
        s->pact[p] = 0;
    }
    for (size_t p = 0; p < np; p++) {
        size_t cnt = 0;
        int cl = s->pcls[p];
        if (!s->pever[p] || s->pact[cl]) {
            continue;
        }
        s->pact[cl] = 1;
        for (size_t q = p; q < np; q++) {
            if (s->pcls[q] == cl && s->pever[q]) {
                s->plist[cnt++] = q;
            }
        }
        r = tpe_unit_run(s, space, h, rng, s->plist, cnt, unit_point);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

/* Multivariate without group: the params active in every considered trial. */
static int run_intersection(struct tpe *s, const struct hpo_space *space,
        const struct hpo_history *h, struct hpo_rng *rng, double *unit_point)
{
    size_t np = space->n_params, cnt = 0;

    for (size_t p = 0; p < np; p++) {
        s->pact[p] = 1;
        s->pever[p] = 0;
    }
    for (size_t t = 0; t < h->n_trials; t++) {
        const double *row = s->mu_rows + t * s->dim;
        if (!considered(s, t)) {
            continue;
        }
        if (!space->conditional) {
            s->pever[0] = 1; /* every param is active in every trial: one is enough */
            break;
        }
        for (size_t p = 0; p < np; p++) {
            s->pever[p] = 1;
            s->pact[p] &= (uint8_t)!isnan(row[space->params[p].offset]);
        }
    }
    if (!space->conditional) {
        memset(s->pever, s->pever[0], np);
    }
    for (size_t p = 0; p < np; p++) {
        if (s->pact[p] && s->pever[p]) {
            s->plist[cnt++] = p;
        }
    }
    if (cnt == 0) {
        return 0;
    }
    return tpe_unit_run(s, space, h, rng, s->plist, cnt, unit_point);
}

static int tpe_suggest(void *state, const struct hpo_space *space,
        const struct hpo_history *history, struct hpo_rng *rng, double *unit_point,
        struct hpo_error *err)
{
    struct tpe *s = state;
    size_t n_fin = history->count[HPO_STATE_COMPLETE] + history->count[HPO_STATE_PRUNED];
    int r;

    for (size_t j = 0; j < space->dim; j++) {
        unit_point[j] = hpo_rng_uniform(rng);
    }
    if (s->prior != NULL && !space->has_vectors) {
        const struct hpo_tpe_warm_opts wo = { s->opt.n_startup_trials, s->opt.n_ei_candidates,
            s->opt.multivariate, s->opt.constant_liar, s->opt.prior_weight,
            s->opt.consider_magic_clip, s->opt.consider_endpoints };
        return hpo_tpe_warm_suggest(s->prior, &wo, space, history, rng, unit_point, err);
    }
    if (n_fin == 0 || n_fin < (size_t)s->opt.n_startup_trials || space->has_vectors ||
            space->dim != s->dim) {
        return 0;
    }
    r = tpe_sync(s, space, history);
    if (r < 0) {
        sync_reset(s);
        return hpo_error_set(err, r, HPO_INTERNAL, NULL, "tpe: out of memory");
    }
    if (!s->opt.multivariate) {
        for (size_t p = 0; p < space->n_params && r == 0; p++) {
            r = tpe_unit_run(s, space, history, rng, &p, 1, unit_point);
        }
    } else if (s->opt.group && space->conditional) {
        r = run_groups(s, space, history, rng, unit_point);
    } else {
        r = run_intersection(s, space, history, rng, unit_point);
    }
    if (r < 0) {
        sync_reset(s);
        return hpo_error_set(err, r, HPO_INTERNAL, NULL, "tpe: %s",
                r == -ENOMEM ? "out of memory" : "inconsistent history cache");
    }
    return 0;
}

/* Warm start: prior studies' trials (docs/ALGORITHMS.md §12.2, tpe-warm.c). */
static void tpe_warm(void *state, const struct hpo_prior *prior)
{
    ((struct tpe *)state)->prior = prior;
}

const struct hpo_sampler_type hpo_sampler_tpe = {
    .name = "tpe",
    .supports_vectors = false,
    .options_schema = "{\"n_startup_trials\": {\"type\": \"integer\", \"default\": 10}, "
                      "\"n_ei_candidates\": {\"type\": \"integer\", \"default\": 24}, "
                      "\"multivariate\": {\"type\": \"boolean\", \"default\": true}, "
                      "\"group\": {\"type\": \"boolean\", \"default\": true}, "
                      "\"constant_liar\": {\"type\": \"boolean\", \"default\": true}, "
                      "\"prior_weight\": {\"type\": \"number\", \"default\": 1.0}, "
                      "\"consider_magic_clip\": {\"type\": \"boolean\", \"default\": true}, "
                      "\"consider_endpoints\": {\"type\": \"boolean\", \"default\": false}}",
    .configure = tpe_configure,
    .describe = tpe_describe,
    .suggest = tpe_suggest,
    .observe = tpe_observe,
    .destroy = tpe_destroy,
    .warm = tpe_warm,
};
