/*
** gradient.c: the gradient sampler (docs/ALGORITHMS.md §7). First-order
** descent on every active float coordinate (scalar or vector) from client
** hypergradients, or from SPSA / finite-difference estimates when clients
** send values only. Int and categorical params stay at the initial point.
**
** Bookkeeping without per-trial state: the state keeps a step log, the
** number of trials that existed when each optimizer step was applied. A
** trial's version (the step count when it was created) and, for SPSA/FD,
** its role in a pair or set (by its offset in its version's window of trial
** numbers) follow from its number and that log, so suggest() changes
** persistent state only once, when it picks the initial point
** (needs_save() reports it). Per trial the state holds one bit (told or
** not), never a vector; the log keeps only the versions that are not too
** stale, so the saved state is O(dim + max_staleness + recent trials).
**
** Choices where section 7 is silent:
** - NaN entries of a client gradient count as 0; a gradient that is NaN on
**   every differentiable coordinate is no gradient. Only complete trials'
**   gradients are used. A retried tell of the same trial is ignored.
** - estimator "auto": the first gradient decides "client"; the first
**   value-only tell of a trial this sampler handed out decides SPSA, whose
**   pairs start with the next trial.
** - Optimizer default: "sgd" (Spall's gains a_k) for estimator spsa/fd,
**   "adam" otherwise; lr default 0.01 for adam, 0.1 for sgd/momentum. With
**   SPSA/FD and sgd the step is a_k and lr, schedule and hd_beta are unused;
**   with adam/momentum the estimate feeds that optimizer with lr.
** - hd_beta updates the base lr before the schedule scales it; for momentum
**   the previous direction is the previous update (m, or g + mu m).
** - Initial point: per coordinate, the oldest waiting or running trial
**   present when the sampler first runs (an enqueued trial), else `init`
**   (a vector may be given one number), else the centre; categoricals take
**   their first choice, ints the snapped midpoint. `when` is evaluated once
**   on that point.
** - SPSA Δ for pair j of step k: xoshiro256** seeded by hpo_rng_init(key,
**   k << 32 ^ j), one bit per coordinate; `key` is drawn from the rng of the
**   first trial that needs it and saved. The estimate uses the values the
**   two trials were actually given: (y+ - y-) / (u+_i - u-_i), 0 if equal.
**   FD trials u ± c_k e_i come in sets of 2P; batch_size sets are averaged.
*/
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/hexp.h"
#include "../core/history.h"
#include "../core/parallel.h"
#include "../core/rng.h"
#include "../core/space.h"
#include "../core/thread.h"
#include "gradient-step.h"
#include "sampler.h"

#define LOGIT_PMIN 1e-6 /* logit transform: p clamped to [PMIN, 1-PMIN] (section 7.2) */
#define FD_MAX_DIM 16   /* finite differences only up to this many coordinates */
#define SPSA_ALPHA 0.602
#define SPSA_GAMMA 0.101
#define BLOB_MAGIC "HPOGRD01"
#define REC_MAGIC  "HPOGREC1"
#define REC_HEAD   32 /* a record's header: magic, trial, n_trials, sign */
#define MAX_BATCH  1000000
#define MAX_STALE  1000000000

enum optimizer { OPT_ADAM, OPT_SGD, OPT_MOMENTUM };
enum schedule { SCHED_CONSTANT, SCHED_COSINE };
enum staleness { STALE_SCALE, STALE_IGNORE };
enum transform { XF_LOGIT, XF_CLIP };
enum estimator { EST_AUTO, EST_CLIENT, EST_SPSA, EST_FD };
/* What the study does now; EST_AUTO starts undecided. */
enum mode { MODE_UNDECIDED, MODE_CLIENT, MODE_SPSA, MODE_FD };

static const char *const optimizer_names[] = { "adam", "sgd", "momentum", NULL };
static const char *const schedule_names[] = { "constant", "cosine", NULL };
static const char *const staleness_names[] = { "scale", "ignore", NULL };
static const char *const transform_names[] = { "logit", "clip", NULL };
static const char *const estimator_names[] = { "auto", "client", "spsa", "fd", NULL };
static const char *const mode_names[] = { "undecided", "client", "spsa", "fd" };

/* How one param maps to the optimizer's u (section 7.2). */
enum kind { KIND_FROZEN, KIND_LOG, KIND_LOGIT, KIND_CLIP };

struct gparam {
    enum kind kind;
    double lo, hi;   /* value bounds */
    double ulo, uhi; /* bounds in u */
    size_t offset, width;
    bool conditional; /* has `when` conditions: may be inactive */
};

/*
** Blob layout (native byte order; the blob is read back only by the same
** daemon): magic, HEADER_WORDS u64 words, lr and a (double), then u, m, v,
** acc, dprev (those present; only once initialized) as dim doubles each, the
** kept step log (k - steps_base u64), and the told bitmap.
*/
#define HEADER_WORDS 13

struct gradient_state {
    /* Options, resolved. */
    enum optimizer optimizer;
    double lr0, beta1, beta2, eps, momentum;
    bool nesterov;
    enum schedule schedule;
    long long schedule_steps;
    double lr_min, hd_beta;
    long long batch_size, max_staleness;
    enum staleness staleness;
    double max_grad_norm;
    enum transform transform;
    enum estimator estimator;
    bool spsa_a_auto;
    double spsa_a, spsa_c, spsa_A;
    json_t *init; /* the `init` option (reference), or NULL */

    /* Derived from the space. */
    const struct hpo_space *space; /* the study's, outlives the state (replays records) */
    size_t dim, n_params;
    bool any_conditional; /* a param has `when`: no records (activity is the service's) */
    struct gparam *gp; /* per param */
    bool *active;      /* per param, fixed at the initial point */
    size_t n_diff;     /* differentiable coordinates P */

    /* Persistent state (save/load). */
    /*
    ** How the service decodes the points handed out, and replay() the
    ** records (core/space.h): HEXP for a study created by this build, LIBM
    ** for a state saved before decode versions (no F_DECODE_HEXP).
    */
    enum hpo_decode decode;
    bool initialized;
    bool have_key;
    bool a_resolved;
    enum mode mode;
    uint64_t init_n;     /* trials that existed when the initial point was chosen */
    uint64_t spsa_start; /* first trial number that plays an SPSA/FD role */
    uint64_t key;        /* SPSA perturbation key */
    int64_t k;           /* optimizer steps applied */
    double lr;           /* current base lr (moves with hd_beta) */
    double a;            /* SPSA gain a once resolved */
    uint64_t n_acc;      /* gradients in the accumulator */
    uint64_t n_dropped;  /* gradients dropped as too stale */
    double *u;           /* dim: u for float coords, the unit coord for frozen ones, NaN inactive */
    double *m;           /* adam/momentum first moment, or NULL */
    double *v;           /* adam second moment, or NULL */
    double *acc;         /* batch accumulator (batch_size > 1), or NULL */
    double *dprev;       /* previous step direction (hd_beta > 0), or NULL */
    /*
    ** The step log: steps[s - steps_base] = n_trials when step s+1 was
    ** applied, for s in [steps_base, k). Only the last max_staleness + 1
    ** entries are kept: older versions are dropped as stale anyway.
    */
    uint64_t *steps;
    size_t cap_steps;
    int64_t steps_base;
    unsigned char *told; /* bit t - told_base: trial t's tell() seen */
    size_t n_told_bits;
    uint64_t told_base; /* trials below it are too stale to matter (multiple of 8) */

    /* Scratch, not persisted. */
    double *est; /* SPSA/FD estimate, allocated on first use */
    bool dirty;  /* suggest() changed persistent state */
    /*
    ** The last suggest handed the iterate u of step pure_k, unperturbed, to
    ** the new trial pure_number: its values then follow from u alone, so
    ** its tell can be stored as a record (its gradient) and replayed.
    */
    bool pure;
    uint64_t pure_number;
    int64_t pure_k;
    /* The last tell as a record (save_record): header and the client's gradient. */
    bool rec_ready;
    const double *rec_grad;
    unsigned char rec_head[REC_HEAD];
    unsigned char head[8 + HEADER_WORDS * 8 + 2 * sizeof(double)]; /* save_parts' header */
    /*
    ** A deferred optimizer step (defer_next, settle): the vector loops of a
    ** record tell's step, on their own thread while the tell commits.
    */
    bool may_defer;
    bool step_running;
    struct stepper *stepper; /* the step's thread, kept from the first deferred step on */
    /*
    ** Set by start() (the storage copied the record out) or settle(): until
    ** then the loops run on the step's thread alone, chunk by chunk, leaving
    ** the other core to the record's copy; then split (hpo_parallel_for).
    */
    atomic_bool step_split;
    struct {
        const struct hpo_space *space;
        const double *grad, *vals;
        double sgn, mul, div;
        double lr_t, inv_b1t, inv_sqrt_b2t;
    } pend;
};

/*
** A deferred step's thread (defer_loops), one per state, started at its
** first deferred step and kept until destroy: no stack to map and unmap
** each tell. It is kept off the waking thread's CPU (as core/parallel.c's
** workers): a thread woken from its wait is otherwise often queued on its
** waker's CPU, behind the tell that goes on writing the record, while the
** other core idles; a thread created per tell was placed on an idle CPU.
** Kept but not steered, the tell was 1.23x a thread per tell's (run.py
** --ab, 60 rounds, quiet machine).
*/
struct stepper {
    struct hpo_kept k;
    bool job; /* queued or running: the pending step (gradient_state.pend); under k.mu */
    struct gradient_state *st;
    cpu_set_t allowed; /* the process's CPUs when it started */
    bool have_allowed;
    int steered_off;   /* the CPU it is kept off (-1: none) */
};

/* Keep the step thread off the calling thread's CPU (a system call only when that changed). */
static void stepper_steer(struct stepper *t)
{
    if (t->have_allowed) {
        hpo_thread_steer_off(&t->k.thread, 1, &t->allowed, &t->steered_off);
    }
}

/* Wait for a deferred step's loops (every op but save_parts and save_record does first). */
static void settle(struct gradient_state *st)
{
    struct stepper *t = st->stepper;

    if (st->step_running) {
        atomic_store_explicit(&st->step_split, true, memory_order_release);
        pthread_mutex_lock(&t->k.mu);
        while (t->job) {
            pthread_cond_wait(&t->k.done, &t->k.mu);
        }
        pthread_mutex_unlock(&t->k.mu);
        st->step_running = false;
    }
}

/* ---- transforms ---------------------------------------------------- */

static double logit_umax(void)
{
    return log1p(-LOGIT_PMIN) - log(LOGIT_PMIN);
}

static double clampd(double x, double lo, double hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* e^x as the study decodes (struct gradient_state `decode`). */
static double exp_as(enum hpo_decode how, double x)
{
    return how == HPO_DECODE_HEXP ? hpo_exp(x) : exp(x);
}

/* The value handed out for u. */
static double value_of(const struct gparam *g, double u, enum hpo_decode how)
{
    switch (g->kind) {
    case KIND_LOG:
        return exp_as(how, u);
    case KIND_LOGIT:
        return g->lo + 1.0 / (1.0 + exp_as(how, -u)) * (g->hi - g->lo);
    default:
        return u;
    }
}

/* The u of a given value, projected onto the bounds. */
static double u_of(const struct gparam *g, double v)
{
    double p;

    switch (g->kind) {
    case KIND_LOG:
        return clampd(log(v), g->ulo, g->uhi);
    case KIND_LOGIT:
        p = clampd((v - g->lo) / (g->hi - g->lo), LOGIT_PMIN, 1.0 - LOGIT_PMIN);
        return log(p) - log1p(-p);
    default:
        return clampd(v, g->ulo, g->uhi);
    }
}

/*
** The unit-cube coordinate whose decode (hpo_param_from_unit) gives
** value_of(u): for continuous params decode computes ulow + x * range, so
** log params give exp(u) and logit params lo + sigmoid(u) * (hi - lo) up to
** one rounding of ulow + x * range. The exps are `how`'s, as the decode's:
** what replay() and regenerate recompute (HEXP: unit_range's vector path).
*/
static double unit_of(const struct hpo_param *p, const struct gparam *g, double u,
        enum hpo_decode how)
{
    double x;

    if (g->kind == KIND_LOGIT && p->step == 0.0) {
        x = 1.0 / (1.0 + exp_as(how, -u));
    } else if (g->kind == KIND_LOG) {
        x = (u - p->ulow) / (p->uhigh - p->ulow);
    } else {
        x = (value_of(g, u, how) - p->ulow) / (p->uhigh - p->ulow);
    }
    return clampd(x, 0.0, 1.0);
}

static bool is_diff(const struct gradient_state *st, size_t i)
{
    return st->active[i] && st->gp[i].kind != KIND_FROZEN;
}

/* ---- options --------------------------------------------------------- */

static int fail_field(struct hpo_error *err, const char *key, const char *msg)
{
    char field[128];

    snprintf(field, sizeof(field), "sampler.%s", key);
    return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, "%s %s", field, msg);
}

/* A double that must be > 0 (finite); hpo_option_double bounds are inclusive. */
static int option_positive(const json_t *o, const char *key, double def, double *ret,
        struct hpo_error *err)
{
    double x;
    int r = hpo_option_double(o, key, "sampler", def, 0.0, INFINITY, &x, err);

    if (r < 0) {
        return r;
    }
    if (!(x > 0.0) || !isfinite(x)) {
        return fail_field(err, key, "must be a finite number > 0");
    }
    *ret = x;
    return 0;
}

/* A double in [0, 1). */
static int option_unit_open(const json_t *o, const char *key, double def, double *ret,
        struct hpo_error *err)
{
    double x;
    int r = hpo_option_double(o, key, "sampler", def, 0.0, 1.0, &x, err);

    if (r < 0) {
        return r;
    }
    if (x >= 1.0) {
        return fail_field(err, key, "must be in [0, 1)");
    }
    *ret = x;
    return 0;
}

/*
** Read the `init` option into values form (NaN where not given). A vector
** param may be given one number for every element. Errors name
** "sampler.init.<param>".
*/
static int parse_init(const json_t *init, const struct hpo_space *space, double *ret_values,
        struct hpo_error *err)
{
    json_t *plain;
    const char *key;
    json_t *val;
    struct hpo_error e;
    int r;

    if (!json_is_object(init)) {
        return fail_field(err, "init", "must be an object of param values");
    }
    plain = json_object();
    if (plain == NULL) {
        return -ENOMEM;
    }
    json_object_foreach((json_t *)init, key, val) {
        long i = hpo_space_find(space, key);
        if (i >= 0 && space->params[i].size > 0 && json_is_number(val)) {
            continue; /* broadcast below */
        }
        if (json_object_set(plain, key, val) < 0) {
            json_decref(plain);
            return -ENOMEM;
        }
    }
    hpo_error_clear(&e);
    r = hpo_space_values_from_json(space, plain, true, ret_values, &e);
    json_decref(plain);
    if (r < 0) {
        char field[128];
        const char *rest = strncmp(e.field, "params", 6) == 0 ? e.field + 6 : "";
        snprintf(field, sizeof(field), "sampler.init%.100s", rest);
        return hpo_error_set(err, r, HPO_INVALID_ARGUMENT, field, "sampler.init: %s", e.message);
    }
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        double x;
        val = json_object_get(init, p->name);
        if (val == NULL || p->size == 0 || !json_is_number(val)) {
            continue;
        }
        x = json_number_value(val);
        if (!hpo_param_valid(p, x)) {
            char field[128];
            snprintf(field, sizeof(field), "sampler.init.%.100s", p->name);
            return hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field,
                    "%s is not a valid value of the param", field);
        }
        for (size_t j = p->offset; j < p->offset + p->width; j++) {
            ret_values[j] = x;
        }
    }
    return 0;
}

static void state_free(struct gradient_state *st)
{
    if (st == NULL) {
        return;
    }
    json_decref(st->init);
    free(st->gp);
    free(st->active);
    free(st->u);
    free(st->m);
    free(st->v);
    free(st->acc);
    free(st->dprev);
    free(st->steps);
    free(st->told);
    free(st->est);
    free(st);
}

static int read_options(const json_t *o, const struct hpo_space *space,
        struct gradient_state *st, struct hpo_error *err)
{
    static const char *const allowed[] = { "optimizer", "lr", "beta1", "beta2", "eps",
        "momentum", "nesterov", "schedule", "schedule_steps", "lr_min", "hd_beta", "batch_size",
        "max_staleness", "staleness", "max_grad_norm", "transform", "estimator", "spsa_a",
        "spsa_c", "spsa_A", "init", NULL };
    int opt, sched, stale, xf, est;
    json_t *a;
    int r;

    r = hpo_options_check_keys(o, allowed, "sampler", err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_enum(o, "estimator", "sampler", estimator_names, EST_AUTO, &est, err);
    if (r < 0) {
        return r;
    }
    st->estimator = est;
    /* SPSA/FD studies default to Spall's gain sequence, client gradients to Adam. */
    r = hpo_option_enum(o, "optimizer", "sampler", optimizer_names,
            (est == EST_SPSA || est == EST_FD) ? OPT_SGD : OPT_ADAM, &opt, err);
    if (r < 0) {
        return r;
    }
    st->optimizer = opt;
    r = option_positive(o, "lr", opt == OPT_ADAM ? 0.01 : 0.1, &st->lr0, err);
    if (r < 0) {
        return r;
    }
    r = option_unit_open(o, "beta1", 0.9, &st->beta1, err);
    if (r < 0) {
        return r;
    }
    r = option_unit_open(o, "beta2", 0.999, &st->beta2, err);
    if (r < 0) {
        return r;
    }
    r = option_positive(o, "eps", 1e-8, &st->eps, err);
    if (r < 0) {
        return r;
    }
    r = option_unit_open(o, "momentum", 0.9, &st->momentum, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_bool(o, "nesterov", "sampler", false, &st->nesterov, err);
    if (r < 0) {
        return r;
    }
    if (st->nesterov && opt != OPT_MOMENTUM) {
        return fail_field(err, "nesterov", "needs optimizer \"momentum\"");
    }
    r = hpo_option_enum(o, "schedule", "sampler", schedule_names, SCHED_CONSTANT, &sched, err);
    if (r < 0) {
        return r;
    }
    st->schedule = sched;
    if (sched == SCHED_COSINE) {
        if (json_object_get(o, "schedule_steps") == NULL) {
            return fail_field(err, "schedule_steps", "is required with schedule \"cosine\"");
        }
        r = hpo_option_int(o, "schedule_steps", "sampler", 1, 1, INT64_MAX / 2,
                &st->schedule_steps, err);
        if (r < 0) {
            return r;
        }
        r = hpo_option_double(o, "lr_min", "sampler", 0.0, 0.0, st->lr0, &st->lr_min, err);
        if (r < 0) {
            return r;
        }
    } else {
        if (json_object_get(o, "schedule_steps") != NULL) {
            return fail_field(err, "schedule_steps", "applies only to schedule \"cosine\"");
        }
        if (json_object_get(o, "lr_min") != NULL) {
            return fail_field(err, "lr_min", "applies only to schedule \"cosine\"");
        }
        st->schedule_steps = 0;
        st->lr_min = 0.0;
    }
    r = hpo_option_double(o, "hd_beta", "sampler", 0.0, 0.0, INFINITY, &st->hd_beta, err);
    if (r < 0) {
        return r;
    }
    if (!isfinite(st->hd_beta)) {
        return fail_field(err, "hd_beta", "must be finite");
    }
    r = hpo_option_int(o, "batch_size", "sampler", 1, 1, MAX_BATCH, &st->batch_size, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_int(o, "max_staleness", "sampler", 16, 0, MAX_STALE, &st->max_staleness,
            err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_enum(o, "staleness", "sampler", staleness_names, STALE_SCALE, &stale, err);
    if (r < 0) {
        return r;
    }
    st->staleness = stale;
    r = hpo_option_double(o, "max_grad_norm", "sampler", 0.0, 0.0, INFINITY,
            &st->max_grad_norm, err);
    if (r < 0) {
        return r;
    }
    if (!isfinite(st->max_grad_norm)) {
        return fail_field(err, "max_grad_norm", "must be finite (0 turns clipping off)");
    }
    r = hpo_option_enum(o, "transform", "sampler", transform_names, XF_LOGIT, &xf, err);
    if (r < 0) {
        return r;
    }
    st->transform = xf;
    a = o ? json_object_get(o, "spsa_a") : NULL;
    st->spsa_a_auto = true;
    st->spsa_a = 0.0;
    if (a != NULL && !(json_is_string(a) && strcmp(json_string_value(a), "auto") == 0)) {
        if (!json_is_number(a) || !(json_number_value(a) > 0.0) ||
                !isfinite(json_number_value(a))) {
            return fail_field(err, "spsa_a", "must be \"auto\" or a finite number > 0");
        }
        st->spsa_a_auto = false;
        st->spsa_a = json_number_value(a);
    }
    r = option_positive(o, "spsa_c", 0.1, &st->spsa_c, err);
    if (r < 0) {
        return r;
    }
    r = hpo_option_double(o, "spsa_A", "sampler", 10.0, 0.0, 1e15, &st->spsa_A, err);
    if (r < 0) {
        return r;
    }
    a = o ? json_object_get(o, "init") : NULL;
    if (a != NULL) {
        double *tmp = malloc((space->dim ? space->dim : 1) * sizeof(double));
        if (tmp == NULL) {
            return -ENOMEM;
        }
        r = parse_init(a, space, tmp, err);
        free(tmp);
        if (r < 0) {
            return r;
        }
        st->init = json_incref(a);
    }
    return 0;
}

static int gradient_configure(const json_t *options, const struct hpo_space *space,
        void **state, struct hpo_error *err)
{
    struct gradient_state *st = calloc(1, sizeof(*st));
    size_t dim = space->dim ? space->dim : 1;
    int r;

    if (st == NULL) {
        return -ENOMEM;
    }
    r = read_options(options, space, st, err);
    if (r < 0) {
        goto fail;
    }
    st->space = space;
    st->decode = HPO_DECODE_HEXP;
    st->dim = space->dim;
    st->n_params = space->n_params;
    st->gp = calloc(space->n_params ? space->n_params : 1, sizeof(*st->gp));
    st->active = calloc(space->n_params ? space->n_params : 1, sizeof(*st->active));
    st->u = calloc(dim, sizeof(double));
    if (st->gp == NULL || st->active == NULL || st->u == NULL) {
        r = -ENOMEM;
        goto fail;
    }
    if (st->optimizer != OPT_SGD) {
        st->m = calloc(dim, sizeof(double));
    }
    if (st->optimizer == OPT_ADAM) {
        st->v = calloc(dim, sizeof(double));
    }
    if (st->batch_size > 1) {
        st->acc = calloc(dim, sizeof(double));
    }
    if (st->hd_beta > 0.0) {
        st->dprev = calloc(dim, sizeof(double));
    }
    if ((st->optimizer != OPT_SGD && st->m == NULL) || (st->optimizer == OPT_ADAM &&
            st->v == NULL) || (st->batch_size > 1 && st->acc == NULL) ||
            (st->hd_beta > 0.0 && st->dprev == NULL)) {
        r = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        struct gparam *g = &st->gp[i];
        g->lo = p->low;
        g->hi = p->high;
        g->offset = p->offset;
        g->width = p->width;
        g->conditional = p->n_conditions > 0;
        st->any_conditional = st->any_conditional || g->conditional;
        if (p->type != HPO_PARAM_FLOAT) {
            g->kind = KIND_FROZEN;
        } else if (p->log) {
            g->kind = KIND_LOG;
            g->ulo = log(p->low);
            g->uhi = log(p->high);
        } else if (st->transform == XF_LOGIT) {
            g->kind = KIND_LOGIT;
            g->uhi = logit_umax();
            g->ulo = -g->uhi;
        } else {
            g->kind = KIND_CLIP;
            g->ulo = p->low;
            g->uhi = p->high;
        }
    }
    st->lr = st->lr0;
    st->a = st->spsa_a;
    st->a_resolved = !st->spsa_a_auto;
    *state = st;
    return 0;
fail:
    state_free(st);
    return r;
}

static json_t *gradient_describe(const void *state)
{
    const struct gradient_state *st = state;
    json_t *o = json_object();

    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "optimizer", json_string(optimizer_names[st->optimizer]));
    json_object_set_new(o, "lr", json_real(st->lr0));
    json_object_set_new(o, "beta1", json_real(st->beta1));
    json_object_set_new(o, "beta2", json_real(st->beta2));
    json_object_set_new(o, "eps", json_real(st->eps));
    json_object_set_new(o, "momentum", json_real(st->momentum));
    json_object_set_new(o, "nesterov", json_boolean(st->nesterov));
    json_object_set_new(o, "schedule", json_string(schedule_names[st->schedule]));
    if (st->schedule == SCHED_COSINE) {
        json_object_set_new(o, "schedule_steps", json_integer(st->schedule_steps));
        json_object_set_new(o, "lr_min", json_real(st->lr_min));
    }
    json_object_set_new(o, "hd_beta", json_real(st->hd_beta));
    json_object_set_new(o, "batch_size", json_integer(st->batch_size));
    json_object_set_new(o, "max_staleness", json_integer(st->max_staleness));
    json_object_set_new(o, "staleness", json_string(staleness_names[st->staleness]));
    json_object_set_new(o, "max_grad_norm", json_real(st->max_grad_norm));
    json_object_set_new(o, "transform", json_string(transform_names[st->transform]));
    json_object_set_new(o, "estimator", json_string(estimator_names[st->estimator]));
    if (st->spsa_a_auto) {
        json_object_set_new(o, "spsa_a", json_string("auto"));
    } else {
        json_object_set_new(o, "spsa_a", json_real(st->spsa_a));
    }
    json_object_set_new(o, "spsa_c", json_real(st->spsa_c));
    json_object_set_new(o, "spsa_A", json_real(st->spsa_A));
    if (st->init != NULL) {
        json_object_set(o, "init", st->init);
    }
    return o;
}

static json_t *gradient_status(const void *state)
{
    const struct gradient_state *st = state;
    json_t *o = json_object();

    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "version", json_integer(st->k));
    json_object_set_new(o, "estimator", json_string(mode_names[st->mode]));
    json_object_set_new(o, "lr", json_real(st->lr));
    json_object_set_new(o, "dropped_stale", json_integer((json_int_t)st->n_dropped));
    return o;
}

/* ---- the initial point ------------------------------------------------- */

/* The centre of a param (section 7.2); categoricals take their first choice. */
static double centre_value(const struct hpo_param *p)
{
    if (p->type == HPO_PARAM_CATEGORICAL) {
        return 0.0;
    }
    if (p->log) {
        return hpo_param_snap(p, sqrt(p->low * p->high));
    }
    return hpo_param_snap(p, p->low + (p->high - p->low) / 2.0);
}

/*
** Choose the initial point: per coordinate, the oldest waiting (or, before
** anything was suggested, running: an enqueued trial already handed out)
** trial's value, else `init`, else the centre. Fixes which params are active
** and the mode. `rng` is NULL when called from tell().
*/
static void init_point(struct gradient_state *st, const struct hpo_space *space,
        const struct hpo_history *h, struct hpo_rng *rng)
{
    const struct hpo_trial *from = NULL;
    double *vals = st->u; /* values first, then turned into u in place */

    for (size_t j = 0; j < st->dim; j++) {
        vals[j] = NAN;
    }
    if (st->init != NULL) {
        /* Validated at configure; cannot fail except on OOM (then centre). */
        if (parse_init(st->init, space, vals, NULL) < 0) {
            for (size_t j = 0; j < st->dim; j++) {
                vals[j] = NAN;
            }
        }
    }
    for (size_t t = 0; t < h->n_trials; t++) {
        enum hpo_state s = h->trials[t]->state;
        if (s == HPO_STATE_WAITING || s == HPO_STATE_RUNNING) {
            from = h->trials[t];
            break;
        }
    }
    st->n_diff = 0;
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        bool active = hpo_space_active(space, i, vals);
        st->active[i] = active;
        for (size_t j = p->offset; j < p->offset + p->width; j++) {
            if (!active) {
                vals[j] = NAN;
                continue;
            }
            if (from != NULL && !isnan(from->values[j])) {
                vals[j] = from->values[j];
            } else if (isnan(vals[j])) {
                vals[j] = centre_value(p);
            }
        }
    }
    /* Activity was decided on values; now turn each coordinate into u. */
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        for (size_t j = p->offset; j < p->offset + p->width; j++) {
            if (!st->active[i]) {
                st->u[j] = NAN;
            } else if (st->gp[i].kind == KIND_FROZEN) {
                st->u[j] = hpo_param_to_unit(p, hpo_param_snap(p, vals[j]));
            } else {
                st->u[j] = u_of(&st->gp[i], vals[j]);
                st->n_diff++;
            }
        }
    }
    st->init_n = h->n_trials;
    switch (st->estimator) {
    case EST_CLIENT:
        st->mode = MODE_CLIENT;
        break;
    case EST_SPSA:
        st->mode = MODE_SPSA;
        break;
    case EST_FD:
        st->mode = st->n_diff <= FD_MAX_DIM ? MODE_FD : MODE_SPSA;
        break;
    default:
        st->mode = MODE_UNDECIDED;
        break;
    }
    st->spsa_start = st->init_n;
    if (rng != NULL) {
        st->key = hpo_rng_next(rng);
        st->have_key = true;
    }
    st->initialized = true;
}

/* ---- versions and roles ------------------------------------------------ */

/*
** The version trial `t` was handed: steps applied before it was created.
** For a trial older than the kept log this is steps_base, which is already
** too stale (k - steps_base > max_staleness).
*/
static int64_t version_of(const struct gradient_state *st, uint64_t t)
{
    size_t lo = 0, hi = (size_t)(st->k - st->steps_base);

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->steps[mid] <= t) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return st->steps_base + (int64_t)lo;
}

/* Whether version `ver` is older than the kept log (its window is unknown). */
static bool ancient(const struct gradient_state *st, int64_t ver)
{
    return st->steps_base > 0 && ver <= st->steps_base;
}

/* First trial number of version `ver`'s SPSA/FD window. */
static uint64_t window_start(const struct gradient_state *st, int64_t ver)
{
    uint64_t w = ver > 0 ? st->steps[ver - 1 - st->steps_base] : 0;

    return w > st->spsa_start ? w : st->spsa_start;
}

/* Trials per estimate: a ± pair for SPSA, 2P for finite differences. */
static uint64_t set_size(const struct gradient_state *st)
{
    return st->mode == MODE_FD ? 2 * (uint64_t)st->n_diff : 2;
}

static double spsa_ck(const struct gradient_state *st, int64_t k)
{
    return st->spsa_c / pow((double)k + 1.0, SPSA_GAMMA);
}

static bool told_get(const struct gradient_state *st, uint64_t t)
{
    if (t < st->told_base) {
        return true; /* too stale to change anything: as good as told */
    }
    t -= st->told_base;
    return t < st->n_told_bits && (st->told[t / 8] >> (t % 8)) & 1;
}

static void told_set(struct gradient_state *st, uint64_t t)
{
    if (t < st->told_base) {
        return;
    }
    t -= st->told_base;
    if (t >= st->n_told_bits) {
        size_t bytes = (st->n_told_bits + 7) / 8;
        size_t need = t / 8 + 1;
        size_t cap = bytes ? bytes : 64;
        unsigned char *n;
        while (cap < need) {
            cap *= 2;
        }
        n = realloc(st->told, cap);
        if (n == NULL) {
            return; /* a retried tell could then count twice; nothing worse */
        }
        memset(n + bytes, 0, cap - bytes);
        st->told = n;
        st->n_told_bits = cap * 8;
    }
    st->told[t / 8] |= (unsigned char)(1u << (t % 8));
}

/* ---- suggest --------------------------------------------------------- */

struct unit_job {
    const struct hpo_param *p;
    const struct gparam *g;
    const double *u;
    double *unit;
    enum hpo_decode how;
    double *out; /* unit_decode_range: the values */
};

static void unit_range(void *ctx, size_t lo, size_t hi)
{
    const struct unit_job *job = ctx;
    const struct hpo_param *p = job->p;
    const struct gparam g = *job->g;

    if (g.kind == KIND_LOGIT && p->step == 0.0 && job->how == HPO_DECODE_HEXP) {
        /* unit_of()'s 1 / (1 + hpo_exp(-u)) clamped, the bits the same, vectorized. */
        hpo_logistic_n(job->u + lo, job->unit + lo, hi - lo);
        return;
    }
    for (size_t j = lo; j < hi; j++) {
        job->unit[j] = unit_of(p, &g, job->u[j], job->how);
    }
}

/*
** unit_range and the service's decode of its unit coordinates in one pass,
** for a continuous log param under HEXP: unit_of()'s (u - ulow) / (uhigh -
** ulow) clamped, then hpo_param_decode_n's hpo_exp_decode of it, the same
** bits (hpo_exp_decode_u).
*/
static void unit_decode_range(void *ctx, size_t lo, size_t hi)
{
    const struct unit_job *job = ctx;
    const struct hpo_param *p = job->p;

    hpo_exp_decode_u(job->u + lo, job->unit + lo, job->out + lo, hi - lo, p->ulow,
            p->uhigh - p->ulow, p->low, p->high);
}

/*
** The unperturbed point of u into `unit`; with `values`, also what the
** service's decode (hpo_param_decode_n with st->decode) makes of it, every
** param being active (no `when`): a log vector under HEXP in one pass.
*/
static void write_point(const struct gradient_state *st, const struct hpo_space *space,
        double *unit, double *values)
{
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        const struct gparam *g = &st->gp[i];
        if (st->active[i] && g->kind != KIND_FROZEN) {
            struct unit_job job = { p, g, st->u + p->offset, unit + p->offset, st->decode,
                values != NULL ? values + p->offset : NULL };
            if (values != NULL && g->kind == KIND_LOG && p->step == 0.0 &&
                    st->decode == HPO_DECODE_HEXP) {
                hpo_parallel_for(p->width, HPO_PARALLEL_GRAIN, unit_decode_range, &job);
                continue;
            }
            hpo_parallel_for(p->width, HPO_PARALLEL_GRAIN, unit_range, &job);
        } else {
            for (size_t j = p->offset; j < p->offset + p->width; j++) {
                unit[j] = st->active[i] ? st->u[j] : NAN;
            }
        }
        if (values != NULL && st->active[i]) {
            hpo_param_decode_n(p, unit + p->offset, values + p->offset, p->width, st->decode);
        } else if (values != NULL) {
            for (size_t j = p->offset; j < p->offset + p->width; j++) {
                values[j] = NAN;
            }
        }
    }
}

/*
** The SPSA perturbation of pair `pair` at step k: Rademacher signs from a
** counter-based stream keyed by (key, k, pair), one bit per differentiable
** coordinate in order.
*/
static void spsa_point(const struct gradient_state *st, const struct hpo_space *space,
        uint64_t pair, double sign, double *unit)
{
    struct hpo_rng r;
    double ck = spsa_ck(st, st->k);
    uint64_t bits = 0;
    unsigned left = 0;

    hpo_rng_init(&r, st->key, ((uint64_t)st->k << 32) ^ pair);
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        const struct gparam *g = &st->gp[i];
        if (!is_diff(st, i)) {
            continue;
        }
        for (size_t j = p->offset; j < p->offset + p->width; j++) {
            double delta;
            if (left == 0) {
                bits = hpo_rng_next(&r);
                left = 64;
            }
            delta = (bits & 1) ? 1.0 : -1.0;
            bits >>= 1;
            left--;
            unit[j] = unit_of(p, g, clampd(st->u[j] + sign * ck * delta, g->ulo, g->uhi),
                    st->decode);
        }
    }
}

/* The finite-difference point: coordinate number `idx` moved by ±c_k. */
static void fd_point(const struct gradient_state *st, const struct hpo_space *space,
        uint64_t idx, double sign, double *unit)
{
    double h = spsa_ck(st, st->k);
    uint64_t n = 0;

    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        const struct gparam *g = &st->gp[i];
        if (!is_diff(st, i)) {
            continue;
        }
        for (size_t j = p->offset; j < p->offset + p->width; j++, n++) {
            if (n == idx) {
                unit[j] = unit_of(p, g, clampd(st->u[j] + sign * h, g->ulo, g->uhi),
                        st->decode);
                return;
            }
        }
    }
}

/* suggest(), and with `values` its decode too where it can: 1 if it decoded. */
static int suggest_point(struct gradient_state *st, const struct hpo_space *space,
        const struct hpo_history *history, struct hpo_rng *rng, double *unit_point,
        double *values)
{
    uint64_t t = history->n_trials;
    bool perturbed;

    settle(st);
    if (!st->initialized) {
        init_point(st, space, history, rng);
        st->dirty = true;
    }
    perturbed = (st->mode == MODE_SPSA || st->mode == MODE_FD) && st->n_diff > 0 &&
            t >= st->spsa_start;
    /* With `when`, which params are active is the service's to say: it decodes. */
    if (perturbed || st->any_conditional) {
        values = NULL;
    }
    write_point(st, space, unit_point, values);
    /* A waiting trial may be the one served (with fixed values): not pure then. */
    st->pure = history->count[HPO_STATE_WAITING] == 0;
    st->pure_number = t;
    st->pure_k = st->k;
    st->rec_ready = false;
    if (perturbed) {
        uint64_t w = window_start(st, st->k);
        uint64_t s = set_size(st);
        uint64_t o = t - w;
        uint64_t member = o % s;
        st->pure = false;
        if (!st->have_key) {
            st->key = hpo_rng_next(rng);
            st->have_key = true;
            st->dirty = true;
        }
        if (st->mode == MODE_SPSA) {
            spsa_point(st, space, o / s, member == 0 ? 1.0 : -1.0, unit_point);
        } else {
            fd_point(st, space, member / 2, member % 2 == 0 ? 1.0 : -1.0, unit_point);
        }
    }
    return values != NULL;
}

static int gradient_suggest(void *state, const struct hpo_space *space,
        const struct hpo_history *history, struct hpo_rng *rng, double *unit_point,
        struct hpo_error *err)
{
    (void)err; /* cannot fail */
    (void)suggest_point(state, space, history, rng, unit_point, NULL);
    return 0;
}

static int gradient_suggest_decoded(void *state, const struct hpo_space *space,
        const struct hpo_history *history, struct hpo_rng *rng, double *unit_point,
        double *values, struct hpo_error *err)
{
    (void)err; /* cannot fail */
    return suggest_point(state, space, history, rng, unit_point, values);
}

static bool gradient_reproducible(const void *state)
{
    const struct gradient_state *st = state;

    return st->pure && st->initialized && !st->any_conditional && st->mode != MODE_SPSA &&
            st->mode != MODE_FD;
}

/* The unperturbed point of u as it is (what a pure suggest wrote). */
static int gradient_regenerate(void *state, const struct hpo_space *space, double *unit_point)
{
    struct gradient_state *st = state;

    settle(st);
    if (!st->initialized || st->any_conditional || st->mode == MODE_SPSA ||
            st->mode == MODE_FD) {
        return -ENOENT;
    }
    write_point(st, space, unit_point, NULL);
    return 0;
}

static int gradient_decode(const void *state)
{
    return (int)((const struct gradient_state *)state)->decode;
}

static bool gradient_needs_save(const void *state)
{
    return ((const struct gradient_state *)state)->dirty;
}

/* ---- tell: gradients, batches, steps ----------------------------------- */

/*
** Where a gradient comes from: a client's G in value units at the values the
** trial was given (g = sgn * G * dv/du), or a dense vector already in u
** units (an SPSA/FD estimate or the batch accumulator). ĝ = mul * g / div,
** 0 where G or the value is NaN (gradient-step.h has the exact formula; its
** loops compute every ĝ).
*/
struct gsrc {
    const double *grad;
    const double *vals;
    double sgn;
    const double *dense;
    double mul, div;
};

/*
** ĝ of param g's coordinates as gradient-step.c computes it (the source and
** kind of the step; the optimizer's fields are left zero).
*/
static struct hpo__gstep gstep_source(const struct gparam *g, const struct gsrc *s)
{
    struct hpo__gstep k = {
        .dense = s->dense, .grad = s->grad, .vals = s->vals,
        .sgn = s->sgn, .mul = s->mul, .div = s->div,
        .kind = g->kind == KIND_LOG ? HPO_GSTEP_LOG
                : (g->kind == KIND_LOGIT ? HPO_GSTEP_LOGIT : HPO_GSTEP_CLIP),
        .lo = g->lo, .hi = g->hi,
    };

    return k;
}

/* Σ ĝ_j other_j (ĝ_j² without other) over the differentiable coordinates, in order. */
static double src_dot(const struct gradient_state *st, const struct hpo_space *space,
        const struct gsrc *s, const double *other)
{
    double sum = 0.0;

    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        if (is_diff(st, i)) {
            struct hpo__gstep k = gstep_source(&st->gp[i], s);
            sum = hpo__gstep_dot(&k, p->offset, p->offset + p->width, other, sum);
        }
    }
    return sum;
}

static double src_abs_mean(const struct gradient_state *st, const struct hpo_space *space,
        const struct gsrc *s)
{
    double sum = 0.0;

    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        if (is_diff(st, i)) {
            struct hpo__gstep k = gstep_source(&st->gp[i], s);
            sum = hpo__gstep_abs_sum(&k, p->offset, p->offset + p->width, sum);
        }
    }
    return st->n_diff > 0 ? sum / (double)st->n_diff : 0.0;
}

/*
** Keep the step log to max_staleness + 1 entries and the told bitmap to the
** trials created since the oldest kept version, so the saved state does not
** grow with the number of trials.
*/
static void forget_old_versions(struct gradient_state *st)
{
    int64_t keep = st->max_staleness + 1;
    int64_t drop = st->k - st->steps_base - keep;
    uint64_t base;

    if (drop <= 0) {
        return;
    }
    memmove(st->steps, st->steps + drop, (size_t)keep * sizeof(*st->steps));
    st->steps_base += drop;
    /* Trials created before the oldest kept step are of version <= steps_base. */
    base = st->steps[0] / 8 * 8;
    if (base > st->told_base) {
        size_t shift = (size_t)(base - st->told_base) / 8;
        size_t bytes = st->n_told_bits / 8;
        if (bytes == 0) {
            /* nothing recorded yet */
        } else if (shift >= bytes) {
            memset(st->told, 0, bytes);
        } else {
            memmove(st->told, st->told + shift, bytes - shift);
            memset(st->told + bytes - shift, 0, shift);
        }
        st->told_base = base;
    }
}

/*
** The update of coordinates [lo, hi) of one param, relative to its first
** coordinate: the loops of gradient-step.c, which give the scalar
** formulas of gradient-step.h bit for bit.
*/
struct step_job {
    struct gradient_state *st;
    const struct gparam *g;
    const struct gsrc *s;
    double lr_t, inv_b1t, inv_sqrt_b2t;
    size_t offset; /* the param's first coordinate: ranges are relative to it */
};

static void step_range(void *ctx, size_t rlo, size_t rhi)
{
    const struct step_job *job = ctx;
    const struct gradient_state *st = job->st;
    struct hpo__gstep k = gstep_source(job->g, job->s);

    k.opt = st->optimizer == OPT_ADAM ? HPO_GSTEP_ADAM
            : (st->optimizer == OPT_MOMENTUM ? HPO_GSTEP_MOMENTUM : HPO_GSTEP_PLAIN);
    k.nesterov = st->nesterov;
    k.b1 = st->beta1;
    k.b2 = st->beta2;
    k.eps = st->eps;
    k.mom = st->momentum;
    k.lr_t = job->lr_t;
    k.inv_b1t = job->inv_b1t;
    k.inv_sqrt_b2t = job->inv_sqrt_b2t;
    k.ulo = job->g->ulo;
    k.uhi = job->g->uhi;
    k.u = st->u;
    k.m = st->m;
    k.v = st->v;
    k.dprev = st->dprev;
    hpo__gstep_range(&k, job->offset + rlo, job->offset + rhi);
}

/* Coordinates a deferred step updates alone between two looks at step_split. */
#define DEFER_CHUNK ((size_t)1 << 14)

/*
** The vector part of a step: every differentiable coordinate's update. With
** `split` (a deferred step), on this thread alone DEFER_CHUNK coordinates at
** a time until it is set, the rest split over threads; every coordinate is
** computed alike whichever thread runs it (the same bits).
*/
static void step_loops(struct gradient_state *st, const struct hpo_space *space,
        const struct gsrc *s, double lr_t, double inv_b1t, double inv_sqrt_b2t,
        const atomic_bool *split)
{
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        if (is_diff(st, i)) {
            struct step_job job = { st, &st->gp[i], s, lr_t, inv_b1t, inv_sqrt_b2t, p->offset };
            size_t lo = 0;
            while (split != NULL && lo < p->width &&
                    !atomic_load_explicit(split, memory_order_acquire)) {
                size_t hi = p->width - lo > DEFER_CHUNK ? lo + DEFER_CHUNK : p->width;
                step_range(&job, lo, hi);
                lo = hi;
            }
            if (lo < p->width) {
                job.offset = p->offset + lo;
                hpo_parallel_for(p->width - lo, HPO_PARALLEL_GRAIN, step_range, &job);
            }
        }
    }
}

static void run_pending(struct gradient_state *st)
{
    struct gsrc s = { .grad = st->pend.grad, .vals = st->pend.vals, .sgn = st->pend.sgn,
        .mul = st->pend.mul, .div = st->pend.div };

    step_loops(st, st->pend.space, &s, st->pend.lr_t, st->pend.inv_b1t, st->pend.inv_sqrt_b2t,
            &st->step_split);
}

static void *stepper_main(void *arg)
{
    struct stepper *t = arg;

    pthread_mutex_lock(&t->k.mu);
    for (;;) {
        while (!t->job && !t->k.stop) {
            pthread_cond_wait(&t->k.wake, &t->k.mu);
        }
        if (t->k.stop) {
            break;
        }
        pthread_mutex_unlock(&t->k.mu);
        run_pending(t->st);
        pthread_mutex_lock(&t->k.mu);
        t->job = false;
        pthread_cond_signal(&t->k.done);
    }
    pthread_mutex_unlock(&t->k.mu);
    return NULL;
}

/* The state's step thread, started now if need be; NULL if it cannot be. */
static struct stepper *stepper_get(struct gradient_state *st)
{
    struct stepper *t = st->stepper;

    if (t != NULL) {
        return t;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->st = st;
    t->steered_off = -1;
    t->have_allowed = sched_getaffinity(0, sizeof(t->allowed), &t->allowed) == 0;
    if (hpo_kept_start(&t->k, stepper_main, t, "hpod-gstep") != 0) {
        free(t);
        return NULL;
    }
    st->stepper = t;
    return t;
}

/* Stop and free the step thread (destroy, after settle). */
static void stepper_stop(struct gradient_state *st)
{
    struct stepper *t = st->stepper;

    if (t == NULL) {
        return;
    }
    hpo_kept_stop(&t->k);
    free(t);
    st->stepper = NULL;
}

/*
** Start step_loops on the state's step thread (defer_next): false to run them
** here. Only a client's gradient, read in place, with no batch to add to,
** and only loops long enough to pay for a thread.
*/
#define DEFER_MIN ((size_t)1 << 16)

static bool defer_loops(struct gradient_state *st, const struct hpo_space *space,
        const struct gsrc *s, double lr_t, double inv_b1t, double inv_sqrt_b2t)
{
    struct stepper *t;

    if (s->dense != NULL || st->acc != NULL || st->step_running || st->dim < DEFER_MIN ||
            (t = stepper_get(st)) == NULL) {
        return false;
    }
    st->pend.space = space;
    st->pend.grad = s->grad;
    st->pend.vals = s->vals;
    st->pend.sgn = s->sgn;
    st->pend.mul = s->mul;
    st->pend.div = s->div;
    st->pend.lr_t = lr_t;
    st->pend.inv_b1t = inv_b1t;
    st->pend.inv_sqrt_b2t = inv_sqrt_b2t;
    atomic_store_explicit(&st->step_split, false, memory_order_relaxed);
    stepper_steer(t);
    pthread_mutex_lock(&t->k.mu);
    t->job = true;
    pthread_mutex_unlock(&t->k.mu);
    pthread_cond_signal(&t->k.wake); /* after the unlock: it need not wait for the lock */
    st->step_running = true;
    return true;
}

/* One optimizer step t = k+1 with ĝ from `s` (section 7.3 step 6). */
static void apply_step(struct gradient_state *st, const struct hpo_space *space,
        const struct gsrc *s, uint64_t n_trials)
{
    double t = (double)(st->k + 1);
    double lr_t;
    double inv_b1t = 0.0, inv_sqrt_b2t = 0.0;
    bool gain = (st->mode == MODE_SPSA || st->mode == MODE_FD) && st->optimizer == OPT_SGD;

    if (gain) {
        if (!st->a_resolved) {
            double mean = src_abs_mean(st, space, s);
            if (mean > 0.0 && isfinite(mean)) {
                st->a = 0.1 * pow(st->spsa_A + 1.0, SPSA_ALPHA) / mean;
                st->a_resolved = true;
            }
        }
        lr_t = st->a_resolved ? st->a / pow((double)st->k + 1.0 + st->spsa_A, SPSA_ALPHA) : 0.0;
    } else {
        if (st->dprev != NULL) {
            /*
            ** A hypergradient step that overflows (ĝ and dprev near
            ** ±DBL_MAX) is skipped: an infinite or NaN lr is a state that
            ** load() refuses.
            */
            double lr = st->lr + st->hd_beta * src_dot(st, space, s, st->dprev);
            if (isfinite(lr)) {
                st->lr = lr;
            }
        }
        lr_t = st->lr;
        if (st->schedule == SCHED_COSINE) {
            double T = (double)st->schedule_steps;
            double e = t - 1.0 < T ? t - 1.0 : T;
            lr_t = st->lr_min + (lr_t - st->lr_min) * 0.5 * (1.0 + cos(M_PI * e / T));
        }
    }
    if (st->optimizer == OPT_ADAM) {
        /* PyTorch's arrangement: one division and one sqrt per coordinate. */
        inv_b1t = 1.0 / (1.0 - pow(st->beta1, t));
        inv_sqrt_b2t = 1.0 / sqrt(1.0 - pow(st->beta2, t));
    }
    if (!(st->may_defer && defer_loops(st, space, s, lr_t, inv_b1t, inv_sqrt_b2t))) {
        step_loops(st, space, s, lr_t, inv_b1t, inv_sqrt_b2t, NULL);
    }
    st->steps[st->k - st->steps_base] = n_trials;
    st->k++;
    forget_old_versions(st);
}

/*
** Feed one gradient of version `ver`: clip, weight by staleness, add to the
** batch, step when the batch is full (section 7.3 steps 3-5).
*/
static bool feed(struct gradient_state *st, const struct hpo_space *space, struct gsrc *s,
        int64_t ver, uint64_t n_trials)
{
    int64_t tau = st->k - ver;
    double w;

    if (tau > st->max_staleness) {
        st->n_dropped++;
        return false;
    }
    /* Room for the step log first, so an OOM cannot leave a half-applied step. */
    if ((size_t)(st->k - st->steps_base) + 1 > st->cap_steps) {
        size_t cap = st->cap_steps ? st->cap_steps * 2 : 64;
        uint64_t *n = realloc(st->steps, cap * sizeof(*n));
        if (n == NULL) {
            return false;
        }
        st->steps = n;
        st->cap_steps = cap;
    }
    w = st->staleness == STALE_SCALE ? 1.0 / (1.0 + (double)tau) : 1.0;
    if (st->max_grad_norm > 0.0) {
        double norm;
        s->mul = 1.0;
        s->div = 1.0;
        norm = sqrt(src_dot(st, space, s, NULL));
        if (norm > st->max_grad_norm) {
            w *= st->max_grad_norm / norm;
        }
    }
    s->mul = w;
    s->div = 1.0;
    if (st->acc == NULL) {
        apply_step(st, space, s, n_trials);
        return true;
    }
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        if (is_diff(st, i)) {
            struct hpo__gstep k = gstep_source(&st->gp[i], s);
            hpo__gstep_accumulate(&k, p->offset, p->offset + p->width, st->acc);
        }
    }
    st->n_acc++;
    if (st->n_acc >= (uint64_t)st->batch_size) {
        struct gsrc b = { .dense = st->acc, .mul = 1.0, .div = (double)st->batch_size };
        apply_step(st, space, &b, n_trials);
        memset(st->acc, 0, st->dim * sizeof(double));
        st->n_acc = 0;
    }
    return true;
}

static bool has_gradient(const struct gradient_state *st, const struct hpo_space *space,
        const double *gradient)
{
    if (gradient == NULL) {
        return false;
    }
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        if (!is_diff(st, i)) {
            continue;
        }
        for (size_t j = p->offset; j < p->offset + p->width; j++) {
            if (!isnan(gradient[j])) {
                return true;
            }
        }
    }
    return false;
}

/* u-difference of coordinate j between two trials' given values; 0 when equal. */
static double fd_quotient(const struct gparam *g, double dy, double vplus, double vminus)
{
    double up = u_of(g, vplus);
    double um = u_of(g, vminus);

    if (isnan(vplus) || isnan(vminus) || up == um) {
        return 0.0;
    }
    return dy / (up - um);
}

/*
** An SPSA/FD trial was told complete: if it completes its pair or set (all
** other members told complete before), estimate the gradient and feed it.
*/
static void estimate_tell(struct gradient_state *st, const struct hpo_space *space,
        const struct hpo_history *h, uint64_t trial)
{
    int64_t ver;
    uint64_t w, end, s, first;

    if (trial < st->spsa_start || st->n_diff == 0) {
        return;
    }
    ver = version_of(st, trial);
    if (ancient(st, ver)) {
        return;
    }
    w = window_start(st, ver);
    end = ver < st->k ? st->steps[ver - st->steps_base] : UINT64_MAX;
    s = set_size(st);
    if (trial < w) {
        return;
    }
    first = w + (trial - w) / s * s;
    if (first + s > end || first + s > h->n_trials) {
        return; /* a step cut the set off, or it is not all handed out yet */
    }
    for (uint64_t m = first; m < first + s; m++) {
        if (h->trials[m]->state != HPO_STATE_COMPLETE || (m != trial && !told_get(st, m))) {
            return;
        }
    }
    if (st->est == NULL) {
        st->est = calloc(st->dim ? st->dim : 1, sizeof(double));
        if (st->est == NULL) {
            return;
        }
    }
    if (st->mode == MODE_SPSA) {
        const struct hpo_trial *tp = h->trials[first];
        const struct hpo_trial *tm = h->trials[first + 1];
        double dy = hpo_history_loss(h, tp) - hpo_history_loss(h, tm);
        for (size_t i = 0; i < space->n_params; i++) {
            const struct hpo_param *p = &space->params[i];
            if (!is_diff(st, i)) {
                continue;
            }
            for (size_t j = p->offset; j < p->offset + p->width; j++) {
                st->est[j] = fd_quotient(&st->gp[i], dy, tp->values[j], tm->values[j]);
            }
        }
    } else {
        uint64_t n = 0;
        for (size_t i = 0; i < space->n_params; i++) {
            const struct hpo_param *p = &space->params[i];
            if (!is_diff(st, i)) {
                continue;
            }
            for (size_t j = p->offset; j < p->offset + p->width; j++, n++) {
                const struct hpo_trial *tp = h->trials[first + 2 * n];
                const struct hpo_trial *tm = h->trials[first + 2 * n + 1];
                double dy = hpo_history_loss(h, tp) - hpo_history_loss(h, tm);
                st->est[j] = fd_quotient(&st->gp[i], dy, tp->values[j], tm->values[j]);
            }
        }
    }
    {
        struct gsrc src = { .dense = st->est, .mul = 1.0, .div = 1.0 };
        (void)feed(st, space, &src, ver, h->n_trials);
    }
}

static void gradient_tell(void *state, const struct hpo_space *space,
        const struct hpo_history *history, size_t trial, const double *gradient)
{
    struct gradient_state *st = state;
    const struct hpo_trial *t = history->trials[trial];
    /* Its values are u's of now: the tell can be a record (save_record). */
    bool pure, grad, may_defer = st->may_defer;

    settle(st);
    st->may_defer = false;
    pure = st->pure && st->initialized && st->mode == MODE_CLIENT && !st->any_conditional &&
            (uint64_t)trial == st->pure_number && st->pure_k == st->k;
    st->rec_ready = false;
    if (trial < st->told_base) {
        /* Older than every kept version: too stale (a retry may count twice). */
        if (st->mode == MODE_CLIENT && t->state == HPO_STATE_COMPLETE &&
                has_gradient(st, space, gradient)) {
            st->n_dropped++;
        }
        return;
    }
    if (told_get(st, trial)) {
        return; /* a retried tell changes nothing */
    }
    told_set(st, trial);
    if (!st->initialized) {
        init_point(st, space, history, NULL);
    }
    if (t->state != HPO_STATE_COMPLETE) {
        return; /* failed and pruned trials carry no gradient; they void their SPSA pair */
    }
    grad = has_gradient(st, space, gradient);
    if (st->mode == MODE_UNDECIDED) {
        if (grad) {
            st->mode = MODE_CLIENT;
        } else if (trial >= st->init_n) {
            /* The first value-only tell of a trial we handed out: SPSA for good. */
            st->mode = MODE_SPSA;
            st->spsa_start = history->n_trials;
            return;
        } else {
            return;
        }
    }
    if (st->mode == MODE_CLIENT) {
        if (grad) {
            struct gsrc src = { .grad = gradient, .vals = t->values,
                .sgn = history->maximize ? -1.0 : 1.0 };
            uint64_t head[3] = { (uint64_t)trial, history->n_trials, 0 };
            bool fed;
            /* A record's step needs only the gradient: its loops may run during the commit. */
            st->may_defer = may_defer && pure;
            fed = feed(st, space, &src, version_of(st, trial), history->n_trials);
            st->may_defer = false;
            if (fed && pure) {
                memcpy(&head[2], &src.sgn, sizeof(double));
                memcpy(st->rec_head, REC_MAGIC, 8);
                memcpy(st->rec_head + 8, head, sizeof(head));
                st->rec_grad = gradient;
                st->rec_ready = true;
            }
        }
        return;
    }
    estimate_tell(st, space, history, trial);
}

/* ---- save / load ------------------------------------------------------ */

enum {
    F_INITIALIZED = 1 << 0,
    F_HAVE_KEY = 1 << 1,
    F_A_RESOLVED = 1 << 2,
    F_M = 1 << 3,
    F_V = 1 << 4,
    F_ACC = 1 << 5,
    F_DPREV = 1 << 6,
    F_DECODE_HEXP = 1 << 7, /* decoded with hpo_exp (absent in states saved before it) */
};

static uint64_t state_flags(const struct gradient_state *st)
{
    return (st->initialized ? F_INITIALIZED : 0) | (st->have_key ? F_HAVE_KEY : 0) |
            (st->a_resolved ? F_A_RESOLVED : 0) | (st->m ? F_M : 0) | (st->v ? F_V : 0) |
            (st->acc ? F_ACC : 0) | (st->dprev ? F_DPREV : 0) |
            (st->decode == HPO_DECODE_HEXP ? F_DECODE_HEXP : 0);
}

static size_t n_vectors(uint64_t flags)
{
    size_t n = 0;

    if (!(flags & F_INITIALIZED)) {
        return 0;
    }
    n = 1;
    n += (flags & F_M) ? 1 : 0;
    n += (flags & F_V) ? 1 : 0;
    n += (flags & F_ACC) ? 1 : 0;
    n += (flags & F_DPREV) ? 1 : 0;
    return n;
}

static unsigned char *put(unsigned char *p, const void *src, size_t len)
{
    if (len > 0) {
        memcpy(p, src, len);
    }
    return p + len;
}

/*
** The saved state as pieces: the header (magic, words, lr, a), then u and
** whichever of m, v, acc, dprev exist, the step log and the told bitmap.
** Returns the number of pieces (at most HPO_SAVE_PARTS).
*/
static int gradient_save_parts(const void *state, struct hpo_part *parts)
{
    struct gradient_state *st = (struct gradient_state *)state;
    uint64_t flags = state_flags(st);
    size_t vec = st->dim * sizeof(double);
    uint64_t hdr[HEADER_WORDS] = { st->dim, st->n_params, flags, (uint64_t)st->mode,
        st->init_n, st->spsa_start, st->key, (uint64_t)st->k, st->n_acc, st->n_dropped,
        st->n_told_bits, (uint64_t)st->steps_base, st->told_base };
    unsigned char *p = st->head;
    int n = 0;

    p = put(p, BLOB_MAGIC, 8);
    p = put(p, hdr, sizeof(hdr));
    p = put(p, &st->lr, sizeof(double));
    (void)put(p, &st->a, sizeof(double));
    parts[n++] = (struct hpo_part){ st->head, sizeof(st->head) };
    if (st->initialized) {
        const double *vecs[] = { st->u, st->m, st->v, st->acc, st->dprev };
        for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
            if (vecs[i] != NULL) {
                parts[n++] = (struct hpo_part){ vecs[i], vec };
            }
        }
    }
    parts[n++] = (struct hpo_part){ st->steps, (size_t)(st->k - st->steps_base) * 8 };
    parts[n++] = (struct hpo_part){ st->told, st->n_told_bits / 8 };
    st->dirty = false;
    return n;
}

static int gradient_save_record(const void *state, struct hpo_part *parts)
{
    struct gradient_state *st = (struct gradient_state *)state;

    if (!st->rec_ready) {
        return 0;
    }
    st->rec_ready = false;
    parts[0] = (struct hpo_part){ st->rec_head, REC_HEAD };
    parts[1] = (struct hpo_part){ st->rec_grad, st->dim * sizeof(double) };
    return 2;
}

static int gradient_save(const void *state, void **blob, size_t *len)
{
    struct hpo_part parts[HPO_SAVE_PARTS];
    int n;

    settle((struct gradient_state *)state);
    n = gradient_save_parts(state, parts);
    size_t total = 0;
    unsigned char *b;
    unsigned char *p;

    for (int i = 0; i < n; i++) {
        total += parts[i].len;
    }
    /* Reuse the caller's buffer when it is big enough (no page faults for 24 MB states). */
    b = *blob != NULL && *len >= total ? *blob : realloc(*blob, total);
    if (b == NULL) {
        return -ENOMEM; /* *blob is still the caller's to free */
    }
    p = b;
    for (int i = 0; i < n; i++) {
        p = put(p, parts[i].data, parts[i].len);
    }
    *blob = b;
    *len = total;
    return 0;
}

/*
** Whether the vectors of a blob (u, then nv - 1 of m, v, acc, dprev, at p;
** possibly unaligned) make a usable state: u NaN throughout an inactive
** param (only a param with `when` may be) and finite throughout an active
** one, a frozen param's unit coordinates in [0, 1]; the moments finite,
** v >= 0. Whether a `when` param's activity agrees with its parent's value
** needs the space, which load() does not get: not checked.
*/
static bool vectors_valid(const struct gradient_state *st, const unsigned char *p, size_t nv)
{
    size_t vi = st->v != NULL ? 1 + (st->m != NULL) : SIZE_MAX; /* which vector is v */
    double x;

    for (size_t i = 0; i < st->n_params; i++) {
        const struct gparam *g = &st->gp[i];
        bool active;

        memcpy(&x, p + g->offset * sizeof(double), sizeof(double));
        active = !isnan(x);
        if (!active && !g->conditional) {
            return false;
        }
        for (size_t j = g->offset; j < g->offset + g->width; j++) {
            memcpy(&x, p + j * sizeof(double), sizeof(double));
            if (active ? !isfinite(x) || (g->kind == KIND_FROZEN && (x < 0.0 || x > 1.0)) :
                         !isnan(x)) {
                return false;
            }
        }
    }
    for (size_t j = st->dim; j < nv * st->dim; j++) {
        memcpy(&x, p + j * sizeof(double), sizeof(double));
        if (!isfinite(x) || (j / st->dim == vi && x < 0.0)) {
            return false;
        }
    }
    return true;
}

/* A record's header: trial, n_trials and the sign of the gradient. */
static void record_head(const unsigned char *r, uint64_t *trial, uint64_t *n_trials, double *sgn)
{
    memcpy(trial, r + 8, 8);
    memcpy(n_trials, r + 16, 8);
    memcpy(sgn, r + 24, sizeof(double));
}

/*
** Whether n records can be replayed on the state a blob holds (its step
** log, the last `n_steps` entries, and its told bitmap): each of a trial
** created after the step before it and not told yet, counted in order.
*/
static bool records_valid(const struct gradient_state *st, const unsigned char *rec, size_t n,
        const unsigned char *steps, uint64_t n_steps, const unsigned char *told,
        uint64_t told_bits, uint64_t told_base)
{
    uint64_t since = 0; /* trials that existed at the last step */
    uint64_t last = 0;

    if (n_steps > 0) {
        memcpy(&since, steps + (n_steps - 1) * 8, 8);
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *r = rec + i * (REC_HEAD + st->dim * sizeof(double));
        uint64_t trial, n_trials, bit;
        double sgn;

        record_head(r, &trial, &n_trials, &sgn);
        if (memcmp(r, REC_MAGIC, 8) != 0 || (sgn != 1.0 && sgn != -1.0) || trial < since ||
                trial >= n_trials || (i > 0 && trial <= last) || trial < told_base) {
            return false;
        }
        bit = trial - told_base;
        if (bit < told_bits && (told[bit / 8] >> (bit % 8)) & 1) {
            return false;
        }
        since = n_trials;
        last = trial;
    }
    return true;
}

/*
** One record: the tell of a trial that was handed u as it is now. Its values
** are recomputed as the ask made them (unit_of, then the service's decode),
** bit for bit, and the gradient is fed as the tell fed it.
*/
static void replay(struct gradient_state *st, const unsigned char *r, double *vals, double *grad)
{
    const struct hpo_space *space = st->space;
    uint64_t trial, n_trials;
    struct gsrc src = { .grad = grad, .vals = vals };

    record_head(r, &trial, &n_trials, &src.sgn);
    memcpy(grad, r + REC_HEAD, st->dim * sizeof(double)); /* aligned for the step */
    for (size_t i = 0; i < space->n_params; i++) {
        const struct hpo_param *p = &space->params[i];
        if (is_diff(st, i)) {
            struct unit_job job = { p, &st->gp[i], st->u + p->offset, vals + p->offset,
                st->decode, NULL };
            hpo_parallel_for(p->width, HPO_PARALLEL_GRAIN, unit_range, &job);
            hpo_param_decode_n(p, vals + p->offset, vals + p->offset, p->width, st->decode);
        }
    }
    told_set(st, trial);
    (void)feed(st, space, &src, version_of(st, trial), n_trials);
}

static int gradient_load(void *state, const void *blob, size_t len)
{
    struct gradient_state *st = state;
    const unsigned char *p = blob;
    const size_t fixed = 8 + HEADER_WORDS * 8 + 2 * sizeof(double);
    uint64_t hdr[HEADER_WORDS];
    uint64_t flags, k, base, told_bits, n_steps;
    size_t vec = st->dim * sizeof(double);
    size_t told_bytes, nv;
    uint64_t *steps = NULL;
    unsigned char *told = NULL;
    const unsigned char *rec = NULL;
    double *scratch = NULL;
    size_t whole, n_rec = 0;
    double lr, a;

    settle(st);
    if (len < fixed || memcmp(p, BLOB_MAGIC, 8) != 0) {
        return -EINVAL;
    }
    memcpy(hdr, p + 8, sizeof(hdr));
    memcpy(&lr, p + 8 + sizeof(hdr), sizeof(double));
    memcpy(&a, p + 8 + sizeof(hdr) + sizeof(double), sizeof(double));
    p += fixed;
    flags = hdr[2];
    k = hdr[7];
    told_bits = hdr[10];
    base = hdr[11];
    if (hdr[0] != st->dim || hdr[1] != st->n_params || hdr[3] > MODE_FD ||
            (flags & ~(uint64_t)(F_INITIALIZED | F_HAVE_KEY | F_A_RESOLVED | F_M | F_V | F_ACC |
                    F_DPREV | F_DECODE_HEXP)) != 0 ||
            (flags & (F_M | F_V | F_ACC | F_DPREV)) !=
                    (state_flags(st) & (F_M | F_V | F_ACC | F_DPREV)) ||
            k > (uint64_t)INT64_MAX / 2 || base > k || (k > 0 && base == k) ||
            told_bits % 8 != 0 || hdr[12] % 8 != 0 || hdr[8] >= (uint64_t)st->batch_size) {
        return -EINVAL;
    }
    nv = n_vectors(flags);
    n_steps = k - base;
    told_bytes = told_bits / 8;
    /* Every section must fit in what is left: check before any multiplication overflows. */
    if ((st->dim > 0 && nv > (len - fixed) / vec) || n_steps > (len - fixed - nv * vec) / 8 ||
            len - fixed - nv * vec - n_steps * 8 < told_bytes) {
        return -EINVAL;
    }
    if (!isfinite(lr) || isnan(a) || ((flags & F_INITIALIZED) && !vectors_valid(st, p, nv))) {
        return -EINVAL;
    }
    whole = fixed + nv * vec + n_steps * 8 + told_bytes;
    /* Records of tells after it (save_record): each replays one step. */
    if (whole < len) {
        rec = (const unsigned char *)blob + whole;
        n_rec = (len - whole) / (REC_HEAD + vec);
        if (st->dim == 0 || (len - whole) % (REC_HEAD + vec) != 0 ||
                !(flags & F_INITIALIZED) || hdr[3] != MODE_CLIENT ||
                !records_valid(st, rec, n_rec, n_steps > 0 ? p + nv * vec : NULL, n_steps,
                        p + nv * vec + n_steps * 8, told_bits, hdr[12])) {
            return -EINVAL;
        }
        scratch = malloc(2 * vec);
        if (scratch == NULL) {
            return -ENOMEM;
        }
    }
    if (n_steps + n_rec > 0) {
        /* Room for the replayed steps too: a replay cannot fail halfway. */
        steps = malloc((n_steps + n_rec) * 8);
        if (steps == NULL) {
            free(scratch);
            return -ENOMEM;
        }
        memcpy(steps, p + nv * vec, n_steps * 8);
        for (uint64_t s = 1; s < n_steps; s++) {
            if (steps[s] < steps[s - 1]) {
                free(steps);
                free(scratch);
                return -EINVAL;
            }
        }
    }
    if (told_bytes > 0) {
        told = malloc(told_bytes);
        if (told == NULL) {
            free(steps);
            free(scratch);
            return -ENOMEM;
        }
        memcpy(told, p + nv * vec + n_steps * 8, told_bytes);
    }
    if (flags & F_INITIALIZED) {
        double *vecs[] = { st->u, st->m, st->v, st->acc, st->dprev };
        for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
            if (vecs[i] != NULL) {
                memcpy(vecs[i], p, vec);
                p += vec;
            }
        }
    }
    free(st->steps);
    free(st->told);
    st->steps = steps;
    st->cap_steps = (size_t)(n_steps + n_rec);
    st->steps_base = (int64_t)base;
    st->told = told;
    st->n_told_bits = (size_t)told_bits;
    st->told_base = hdr[12];
    st->initialized = flags & F_INITIALIZED;
    st->have_key = flags & F_HAVE_KEY;
    st->a_resolved = flags & F_A_RESOLVED;
    st->decode = (flags & F_DECODE_HEXP) ? HPO_DECODE_HEXP : HPO_DECODE_LIBM;
    st->mode = (enum mode)hdr[3];
    st->init_n = hdr[4];
    st->spsa_start = hdr[5];
    st->key = hdr[6];
    st->k = (int64_t)k;
    st->n_acc = hdr[8];
    st->n_dropped = hdr[9];
    st->lr = lr;
    st->a = a;
    st->dirty = false;
    st->pure = false;
    st->rec_ready = false;
    /* Which params are active, and P, follow from u (NaN = inactive). */
    st->n_diff = 0;
    for (size_t i = 0; i < st->n_params; i++) {
        const struct gparam *g = &st->gp[i];
        st->active[i] = st->initialized && !isnan(st->u[g->offset]);
        if (st->active[i] && g->kind != KIND_FROZEN) {
            st->n_diff += g->width;
        }
    }
    for (size_t r = 0; r < n_rec; r++) {
        replay(st, rec + r * (REC_HEAD + vec), scratch, scratch + st->dim);
    }
    free(scratch);
    return 0;
}

static void gradient_destroy(void *state)
{
    if (state != NULL) {
        settle(state);
        stepper_stop(state);
    }
    state_free(state);
}

static void gradient_defer_next(void *state)
{
    ((struct gradient_state *)state)->may_defer = true;
}

static void gradient_settle(void *state)
{
    settle(state);
}

static void gradient_start(void *state)
{
    struct gradient_state *st = state;

    atomic_store_explicit(&st->step_split, true, memory_order_release);
}

static const char options_schema[] =
        "{\"optimizer\": {\"type\": \"string\", \"enum\": [\"adam\", \"sgd\", \"momentum\"], "
        "\"default\": \"adam\"},"
        " \"lr\": {\"type\": \"number\", \"default\": 0.01},"
        " \"beta1\": {\"type\": \"number\", \"default\": 0.9},"
        " \"beta2\": {\"type\": \"number\", \"default\": 0.999},"
        " \"eps\": {\"type\": \"number\", \"default\": 1e-08},"
        " \"momentum\": {\"type\": \"number\", \"default\": 0.9},"
        " \"nesterov\": {\"type\": \"boolean\", \"default\": false},"
        " \"schedule\": {\"type\": \"string\", \"enum\": [\"constant\", \"cosine\"], "
        "\"default\": \"constant\"},"
        " \"schedule_steps\": {\"type\": \"integer\", \"default\": null},"
        " \"lr_min\": {\"type\": \"number\", \"default\": 0.0},"
        " \"hd_beta\": {\"type\": \"number\", \"default\": 0.0},"
        " \"batch_size\": {\"type\": \"integer\", \"default\": 1},"
        " \"max_staleness\": {\"type\": \"integer\", \"default\": 16},"
        " \"staleness\": {\"type\": \"string\", \"enum\": [\"scale\", \"ignore\"], "
        "\"default\": \"scale\"},"
        " \"max_grad_norm\": {\"type\": \"number\", \"default\": 0.0},"
        " \"transform\": {\"type\": \"string\", \"enum\": [\"logit\", \"clip\"], "
        "\"default\": \"logit\"},"
        " \"estimator\": {\"type\": \"string\", \"enum\": [\"auto\", \"client\", \"spsa\", "
        "\"fd\"], \"default\": \"auto\"},"
        " \"spsa_a\": {\"type\": [\"string\", \"number\"], \"default\": \"auto\"},"
        " \"spsa_c\": {\"type\": \"number\", \"default\": 0.1},"
        " \"spsa_A\": {\"type\": \"number\", \"default\": 10},"
        " \"init\": {\"type\": \"object\", \"default\": null}}";

/*
** Whether a finished trial's values will still be read: in SPSA/FD mode,
** while the pair or set it belongs to is not all told (estimate_tell reads
** every member's values). Client gradients are read during the own tell only.
*/
static bool gradient_retains(const void *state, const struct hpo_history *h, size_t trial)
{
    const struct gradient_state *st = state;
    uint64_t t = (uint64_t)trial, w, s, first;
    int64_t ver;

    if ((st->mode != MODE_SPSA && st->mode != MODE_FD) || st->n_diff == 0 ||
            t < st->spsa_start) {
        return false;
    }
    ver = version_of(st, t);
    if (ancient(st, ver)) {
        return false;
    }
    w = window_start(st, ver);
    s = set_size(st);
    if (t < w) {
        return false;
    }
    first = w + (t - w) / s * s;
    for (uint64_t m = first; m < first + s; m++) {
        if (m >= h->n_trials) {
            return true; /* not all handed out yet */
        }
        if (h->trials[m]->state == HPO_STATE_RUNNING ||
                h->trials[m]->state == HPO_STATE_WAITING) {
            return true;
        }
    }
    return false;
}

const struct hpo_sampler_type hpo_sampler_gradient = {
    .name = "gradient",
    .supports_vectors = true,
    .options_schema = options_schema,
    .configure = gradient_configure,
    .describe = gradient_describe,
    .suggest = gradient_suggest,
    .suggest_decoded = gradient_suggest_decoded,
    .tell = gradient_tell,
    .save = gradient_save,
    .save_parts = gradient_save_parts,
    .save_record = gradient_save_record,
    .reproducible = gradient_reproducible,
    .regenerate = gradient_regenerate,
    .decode = gradient_decode,
    .defer_next = gradient_defer_next,
    .settle = gradient_settle,
    .start = gradient_start,
    .load = gradient_load,
    .destroy = gradient_destroy,
    .needs_save = gradient_needs_save,
    .status = gradient_status,
    .retains = gradient_retains,
};
