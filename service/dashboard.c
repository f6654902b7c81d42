/*
** dashboard.c: the read-only answers the web dashboard needs for large studies
** (docs/API.md "Dashboard endpoints"):
**
**   columns  the trials from a cursor on, as binary columns (state, every
**            objective and constraint, each scalar param in values form,
**            duration): about 65 bytes a trial with 6 params, against some
**            160 in CSV;
**   pulse    what the events stream (api/events.c) compares: counts, best,
**            cursor;
**   curves   intermediate values of up to `trials` trials (evenly spaced among
**            those with reports), each cut to at most `points` points.
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/options.h"
#include "service-int.h"

#define COLUMNS_MAGIC "HPOC"

/* Query keys: from (columns), trials and points (curves); nothing else. */
static int decode_dash(const struct hpo_service_query *q, const char *const *allowed,
        struct hpo_service_dash_args *out, struct hpo_error *err)
{
    out->from = 0;
    out->trials = 100;
    out->points = 50;
    for (size_t i = 0; q != NULL && i < q->n; i++) {
        const char *k = q->pairs[i].key, *v = q->pairs[i].value;
        int64_t *dst = NULL, min = 0, max = INT64_MAX;
        for (size_t j = 0; allowed[j] != NULL; j++) {
            if (strcmp(allowed[j], k) == 0) {
                dst = strcmp(k, "from") == 0 ? &out->from
                        : strcmp(k, "trials") == 0 ? &out->trials : &out->points;
            }
        }
        if (dst == NULL) {
            char bad[130];
            snprintf(bad, sizeof(bad), "%.128s", k);
            hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, bad, "unknown query parameter '%s'",
                    bad);
            return -EINVAL;
        }
        if (dst == &out->trials) {
            min = 1;
            max = 10000;
        } else if (dst == &out->points) {
            min = 2;
            max = 10000;
        }
        if (v == NULL || !hpo_parse_count(v, dst) || *dst < min || *dst > max) {
            hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, k,
                    "%s must be an integer from %lld to %lld", k, (long long)min, (long long)max);
            return -EINVAL;
        }
    }
    return 0;
}

int hpo__decode_columns(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err)
{
    static const char *const allowed[] = { "from", NULL };

    (void)body;
    return decode_dash(q, allowed, &a->dash, err);
}

int hpo__decode_curves(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err)
{
    static const char *const allowed[] = { "trials", "points", "from", NULL };

    (void)body;
    return decode_dash(q, allowed, &a->dash, err);
}

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* One f64 column of the columns reply: its name and the value of trial t. */
static void put_f64(double *col, const struct hpo_history *h, size_t from, size_t count,
        const struct study *s, int kind, size_t k)
{
    for (size_t i = 0; i < count; i++) {
        const struct hpo_trial *t = h->trials[from + i];
        double v = NAN;
        switch (kind) {
        case 0: /* objective k */
            v = hpo__trial_objective(s, t, k);
            break;
        case 1: /* scalar param at offset k */
            v = t->values != NULL ? t->values[k] : NAN;
            break;
        case 2: /* constraint k as told */
            v = t->results != NULL ? t->results[s->n_obj + k] : NAN;
            break;
        default: /* duration */
            v = t->started_at > 0 && t->completed_at > 0
                    ? (double)(t->completed_at - t->started_at) / 1000.0 : NAN;
            break;
        }
        col[i] = v;
    }
}

void hpo__op_columns(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct study *s = hpo__study_acquire(svc, req);
    const struct hpo_history *h;
    const struct hpo_space *sp;
    size_t n, from, count, cursor, n_f64, head_len, off, size;
    json_t *head, *names, *cols, *objs, *cons;
    char *head_text, *buf;
    uint32_t len32;
    char colname[HPO_NAME_MAX + 16];

    if (s == NULL) {
        return;
    }
    h = &s->history;
    sp = s->space;
    n = h->n_trials;
    from = a->dash.from < (int64_t)n ? (size_t)a->dash.from : n;
    count = n - from;
    cursor = n;
    for (size_t i = from; i < n; i++) {
        if (h->trials[i]->state == HPO_STATE_WAITING || h->trials[i]->state == HPO_STATE_RUNNING) {
            cursor = i;
            break;
        }
    }
    /*
    ** Columns: state (u8); with constraints, feasible (u8: 1 complete and every
    ** constraint told and within bounds); value (objective 0); value:1 ..
    ** value:m-1 (the other objectives); each scalar param; constraint:0 ..
    ** constraint:c-1 (as told); duration; with vector params, point (the
    ** number of the trial whose point this one shares, else its own).
    */
    names = json_array();
    objs = json_array();
    cons = json_array();
    cols = json_array();
    json_array_append_new(cols, json_pack("[s,s]", "state", "u8"));
    if (s->n_cons > 0) {
        json_array_append_new(cols, json_pack("[s,s]", "feasible", "u8"));
    }
    for (size_t k = 0; k < s->n_obj; k++) {
        json_array_append_new(objs, json_string(s->obj[k].name));
        snprintf(colname, sizeof(colname), k == 0 ? "value" : "value:%zu", k);
        json_array_append_new(cols, json_pack("[s,s]", colname, "f64"));
    }
    n_f64 = s->n_obj + s->n_cons + 1;
    for (size_t p = 0; p < sp->n_params; p++) {
        if (sp->params[p].size == 0) {
            json_array_append_new(names, json_string(sp->params[p].name));
            json_array_append_new(cols, json_pack("[s,s]", sp->params[p].name, "f64"));
            n_f64++;
        }
    }
    for (size_t k = 0; k < s->n_cons; k++) {
        json_array_append_new(cons, json_string(s->cons[k].name));
        snprintf(colname, sizeof(colname), "constraint:%zu", k);
        json_array_append_new(cols, json_pack("[s,s]", colname, "f64"));
    }
    json_array_append_new(cols, json_pack("[s,s]", "duration", "f64"));
    if (sp->has_vectors) {
        json_array_append_new(cols, json_pack("[s,s]", "point", "f64"));
        n_f64++;
    }
    head = json_pack("{s:I,s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "from", (json_int_t)from, "count",
            (json_int_t)count, "total", (json_int_t)n, "cursor", (json_int_t)cursor, "params",
            names, "objectives", objs, "constraints", cons, "columns", cols);
    head_text = head ? json_dumps(head, JSON_COMPACT) : NULL;
    json_decref(head);
    if (head_text == NULL) {
        hpo_oom();
    }
    head_len = strlen(head_text);
    off = pad8(8 + head_len);
    size = off + pad8(count) * (s->n_cons > 0 ? 2 : 1) + 8 * count * n_f64;
    buf = malloc(size);
    if (buf == NULL) {
        hpo_oom();
    }
    memset(buf, ' ', off);
    memcpy(buf, COLUMNS_MAGIC, 4);
    len32 = (uint32_t)(off - 8);
    memcpy(buf + 4, &len32, 4); /* little-endian hosts only (x86-64, arm64) */
    memcpy(buf + 8, head_text, head_len);
    free(head_text);
    memset(buf + off, 0, pad8(count));
    for (size_t i = 0; i < count; i++) {
        buf[off + i] = (char)h->trials[from + i]->state;
    }
    off += pad8(count);
    if (s->n_cons > 0) {
        memset(buf + off, 0, pad8(count));
        for (size_t i = 0; i < count; i++) {
            const struct hpo_trial *t = h->trials[from + i];
            buf[off + i] = (char)(t->state == HPO_STATE_COMPLETE && hpo__trial_feasible(s, t));
        }
        off += pad8(count);
    }
    for (size_t k = 0; k < s->n_obj; k++) {
        put_f64((double *)(void *)(buf + off), h, from, count, s, 0, k);
        off += 8 * count;
    }
    for (size_t p = 0; p < sp->n_params; p++) {
        if (sp->params[p].size == 0) {
            put_f64((double *)(void *)(buf + off), h, from, count, s, 1, sp->params[p].offset);
            off += 8 * count;
        }
    }
    for (size_t k = 0; k < s->n_cons; k++) {
        put_f64((double *)(void *)(buf + off), h, from, count, s, 2, k);
        off += 8 * count;
    }
    put_f64((double *)(void *)(buf + off), h, from, count, s, 3, 0);
    off += 8 * count;
    if (sp->has_vectors) {
        /* The trial whose point (vectors included) this one shares: an optimizer version. */
        double *col = (double *)(void *)(buf + off);
        for (size_t i = 0; i < count; i++) {
            const struct hpo_trial *t = h->trials[from + i];
            col[i] = (double)(t->shares >= 0 ? t->shares : t->number);
        }
    }
    hpo__study_release(s);
    req->text = buf;
    req->text_len = size;
    req->status = 200;
}

int hpo_service_pulse(struct hpo_service *svc, const char *study, struct hpo_service_pulse *ret_pulse)
{
    struct hpo_service_request req;
    struct study *s;
    const struct hpo_history *h;
    const int64_t *run;
    size_t n_run;

    memset(&req, 0, sizeof(req));
    req.study = study;
    s = hpo__study_acquire(svc, &req);
    if (s == NULL) {
        return -ENOENT;
    }
    h = &s->history;
    ret_pulse->total = (int64_t)h->n_trials;
    for (int i = 0; i < 5; i++) {
        ret_pulse->counts[i] = (int64_t)h->count[i];
    }
    ret_pulse->best = s->best >= 0 ? h->trials[s->best]->number : -1;
    /* The cursor of the columns reply: the lowest number still waiting or running. */
    ret_pulse->cursor = ret_pulse->total;
    for (size_t i = s->waiting_cursor; i < h->n_trials; i++) {
        if (h->trials[i]->state == HPO_STATE_WAITING) {
            ret_pulse->cursor = (int64_t)i;
            break;
        }
    }
    run = (const int64_t *)(const void *)s->running.data;
    n_run = HPO_BUF_N(&s->running, int64_t);
    for (size_t i = 0; i < n_run; i++) {
        if (run[i] < ret_pulse->cursor) {
            ret_pulse->cursor = run[i];
        }
    }
    hpo__study_release(s);
    hpo_storage_chain_unref(req.chain); /* no reply to check */
    return 0;
}

/* At most `points` of a trial's reports: the first, the last and evenly spaced between. */
static json_t *curve_json(const struct hpo_trial *t, int64_t points)
{
    json_t *steps = json_array(), *values = json_array();
    size_t n = t->n_reports, k = (size_t)points < n ? (size_t)points : n;

    for (size_t j = 0; j < k; j++) {
        size_t i = k == 1 ? 0 : (size_t)((double)j * (double)(n - 1) / (double)(k - 1) + 0.5);
        json_array_append_new(steps, json_integer(t->reports[i].step));
        json_array_append_new(values, json_real(t->reports[i].value));
    }
    return json_pack("{s:I,s:s,s:o,s:o,s:I}", "number", (json_int_t)t->number, "state",
            hpo_state_name(t->state), "steps", steps, "values", values, "reports",
            (json_int_t)n);
}

void hpo__op_curves(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct study *s = hpo__study_acquire(svc, req);
    const struct hpo_history *h;
    size_t with = 0, picked = 0, k = 0, from;
    json_t *arr;

    if (s == NULL) {
        return;
    }
    h = &s->history;
    /* Trials numbered `from` and up only (a live update asks from its columns cursor). */
    from = a->dash.from < (int64_t)h->n_trials ? (size_t)a->dash.from : h->n_trials;
    for (size_t i = from; i < h->n_trials; i++) {
        with += h->trials[i]->n_reports > 0;
    }
    arr = json_array();
    /* Evenly spaced among the trials with reports: the j-th pick is the one of rank j*with/T. */
    for (size_t i = from; i < h->n_trials && picked < (size_t)a->dash.trials; i++) {
        const struct hpo_trial *t = h->trials[i];
        if (t->n_reports == 0) {
            continue;
        }
        if (with <= (size_t)a->dash.trials ||
                k == (size_t)((double)picked * (double)with / (double)a->dash.trials)) {
            json_array_append_new(arr, curve_json(t, a->dash.points));
            picked++;
        }
        k++;
    }
    hpo__study_release(s);
    hpo__reply(req, 200, json_pack("{s:o,s:I}", "trials", arr, "with_reports", (json_int_t)with));
}

/*
** Parameter importances by PED-ANOVA (Watanabe et al. 2023; Optuna 4's
** PedAnovaImportanceEvaluator with its defaults: target quantile 0.1 of the
** complete trials against all of them, 50-step grids, Scott's-rule Parzen
** estimators with a prior of weight 1). For each param p:
**   importance = (n_top / n)^2 * sum_k pdf_all(k) * (pdf_top(k) / pdf_all(k) - 1)^2
** over the grid k of p's range (each pdf + 1e-12). Trials: complete, with a
** value, every scalar param active.
*/
#define PED_STEPS 50
#define PED_QUANTILE 0.1
#define PED_MIN_TOP 2

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double norm_cdf(double z)
{
    return 0.5 * erfc(-z / sqrt(2.0));
}

/* The number of grid steps of a numeric param (Optuna: linspace over its range, at most 50). */
static size_t ped_grid(const struct hpo_param *p)
{
    size_t n = PED_STEPS;

    if (p->type == HPO_PARAM_INT && p->log) {
        size_t k = (size_t)ceil(log(p->high - p->low + 1.0) / log(2.0)) + 1;
        n = k < n ? k : n;
    } else if (p->type == HPO_PARAM_INT || p->step > 0) {
        double st = p->type == HPO_PARAM_INT ? (p->step > 0 ? p->step : 1.0) : p->step;
        size_t k = (size_t)llround((p->high - p->low) / st) + 1;
        n = k < n ? k : n;
    }
    return n;
}

/* The grid cell of each trial's value (numpy's searchsorted(grid, x - h/2), side left). */
static void ped_counts(const struct hpo_param *p, size_t n_grid, const double *x, size_t n,
        double *counts)
{
    double a = p->log ? log(p->low) : p->low, b = p->log ? log(p->high) : p->high;
    double step = (b - a) / (double)(n_grid - 1);
    double grid[PED_STEPS];

    for (size_t j = 0; j < n_grid; j++) {
        grid[j] = (double)j * step + a;
    }
    grid[n_grid - 1] = b;
    memset(counts, 0, n_grid * sizeof(*counts));
    for (size_t i = 0; i < n; i++) {
        double t = (p->log ? log(x[i]) : x[i]) - (grid[1] - grid[0]) / 2;
        size_t lo = 0, hi = n_grid;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (grid[mid] < t) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        counts[lo < n_grid ? lo : n_grid - 1] += 1; /* past the last point: cannot happen in range */
    }
}

/* The Parzen estimator's probabilities over a numeric grid of m cells from the counts. */
static void ped_pdf_numeric(const double *counts, size_t m, double *pdf)
{
    double n = 0, mean = 0, var = 0, sigma, iqr, wsum;
    size_t n_mu = 0, q25 = 0, q75 = 0;
    double mus[PED_STEPS], ws[PED_STEPS], cum[PED_STEPS];

    for (size_t k = 0; k < m; k++) {
        if (counts[k] > 0) {
            mus[n_mu] = (double)k;
            ws[n_mu] = counts[k];
            n += counts[k];
            cum[n_mu] = n;
            n_mu++;
        }
    }
    for (size_t i = 0; i < n_mu; i++) {
        mean += mus[i] * ws[i] / n;
    }
    for (size_t i = 0; i < n_mu; i++) {
        var += (mus[i] - mean) * (mus[i] - mean) * ws[i];
    }
    sigma = sqrt(var / (n - 1 > 1 ? n - 1 : 1));
    /* searchsorted(cum, floor(n/4), left) and (cum, floor(3n/4), right). */
    while (q25 < n_mu && cum[q25] < floor(n / 4)) {
        q25++;
    }
    while (q75 < n_mu && cum[q75] <= floor(n * 3 / 4)) {
        q75++;
    }
    iqr = mus[q75 < n_mu - 1 ? q75 : n_mu - 1] - mus[q25 < n_mu ? q25 : n_mu - 1];
    sigma = 1.059 * fmin(iqr / 1.34, sigma) * pow(n, -0.2);
    sigma = fmax(sigma, 0.5 / 1.64);
    wsum = n + 1.0; /* the prior's weight is 1 */
    for (size_t k = 0; k < m; k++) {
        pdf[k] = 0;
    }
    for (size_t i = 0; i <= n_mu; i++) {
        double mu = i < n_mu ? mus[i] : 0.5 * (double)(m - 1);
        double sg = i < n_mu ? sigma : (double)m;
        double w = (i < n_mu ? ws[i] : 1.0) / wsum;
        double z = norm_cdf((m - 1 + 0.5 - mu) / sg) - norm_cdf((-0.5 - mu) / sg);
        for (size_t k = 0; k < m; k++) {
            pdf[k] += w * (norm_cdf((k + 0.5 - mu) / sg) - norm_cdf((k - 0.5 - mu) / sg)) / z;
        }
    }
}

/* The same for a categorical of m choices: one kernel per chosen choice, plus the prior. */
static void ped_pdf_categorical(const double *counts, size_t m, double *pdf)
{
    size_t used = 0;
    double n = 0;

    for (size_t k = 0; k < m; k++) {
        used += counts[k] > 0;
        n += counts[k];
        pdf[k] = 0;
    }
    {
        double kern = (double)used + 1, base = 1.0 / kern, row = 1.0 + (double)m * base;
        for (size_t c = 0; c < m; c++) {
            if (counts[c] <= 0) {
                continue;
            }
            for (size_t k = 0; k < m; k++) {
                pdf[k] += counts[c] / (n + 1.0) * (base + (k == c)) / row;
            }
        }
        for (size_t k = 0; k < m; k++) {
            pdf[k] += 1.0 / (n + 1.0) / (double)m;
        }
    }
}

void hpo__op_importances(struct hpo_service *svc, struct hpo_service_request *req,
        const union hpo_service_args *a)
{
    struct study *s = hpo__study_acquire(svc, req);
    const struct hpo_history *h;
    const struct hpo_space *sp;
    size_t n = 0, n_top = 0;
    double *loss, *sorted, *x, cutoff = 0;
    json_t *arr;

    (void)a;
    if (s == NULL) {
        return;
    }
    h = &s->history;
    sp = s->space;
    loss = malloc((h->n_trials + 1) * sizeof(double));
    sorted = malloc((h->n_trials + 1) * sizeof(double));
    x = malloc((h->n_trials + 1) * sizeof(double));
    if (loss == NULL || sorted == NULL || x == NULL) {
        hpo_oom();
    }
    /* The trials considered: loss[i] for the i-th of them (x filled per param below). */
    for (size_t i = 0; i < h->n_trials; i++) {
        const struct hpo_trial *t = h->trials[i];
        bool ok = t->state == HPO_STATE_COMPLETE && isfinite(t->value) && t->values != NULL;
        for (size_t p = 0; ok && p < sp->n_params; p++) {
            ok = sp->params[p].size != 0 || !isnan(t->values[sp->params[p].offset]);
        }
        if (ok) {
            loss[n] = hpo_history_loss(h, t);
            sorted[n] = loss[n];
            n++;
        }
    }
    arr = json_array();
    if (n > PED_MIN_TOP) {
        size_t q = (size_t)ceil(PED_QUANTILE * (double)n);
        qsort(sorted, n, sizeof(double), cmp_double);
        cutoff = fmax(sorted[PED_MIN_TOP - 1], sorted[q > 0 ? q - 1 : 0]);
        for (size_t i = 0; i < n; i++) {
            n_top += loss[i] <= cutoff;
        }
    }
    for (size_t p = 0; p < sp->n_params; p++) {
        const struct hpo_param *pp = &sp->params[p];
        double imp = 0;
        if (pp->size != 0) {
            continue;
        }
        if (n > PED_MIN_TOP && n_top > 0 &&
                (pp->type == HPO_PARAM_CATEGORICAL ? pp->n_choices > 1 : pp->low < pp->high)) {
            bool cat = pp->type == HPO_PARAM_CATEGORICAL;
            size_t m = cat ? pp->n_choices : ped_grid(pp), k = 0;
            double *c_all = calloc(2 * m, sizeof(double)), *c_top = c_all + m;
            double *p_all = calloc(2 * m, sizeof(double)), *p_top = p_all + m;
            double *xt = malloc(n * sizeof(double));
            if (c_all == NULL || p_all == NULL || xt == NULL) {
                hpo_oom();
            }
            for (size_t i = 0, j = 0; i < h->n_trials; i++) {
                const struct hpo_trial *t = h->trials[i];
                bool ok = t->state == HPO_STATE_COMPLETE && isfinite(t->value) && t->values != NULL;
                for (size_t r = 0; ok && r < sp->n_params; r++) {
                    ok = sp->params[r].size != 0 || !isnan(t->values[sp->params[r].offset]);
                }
                if (!ok) {
                    continue;
                }
                x[j] = t->values[pp->offset];
                if (loss[j] <= cutoff) {
                    xt[k++] = x[j];
                }
                j++;
            }
            if (cat) {
                for (size_t i = 0; i < n; i++) {
                    c_all[(size_t)x[i]] += 1;
                }
                for (size_t i = 0; i < k; i++) {
                    c_top[(size_t)xt[i]] += 1;
                }
                ped_pdf_categorical(c_all, m, p_all);
                ped_pdf_categorical(c_top, m, p_top);
            } else {
                ped_counts(pp, m, x, n, c_all);
                ped_counts(pp, m, xt, k, c_top);
                ped_pdf_numeric(c_all, m, p_all);
                ped_pdf_numeric(c_top, m, p_top);
            }
            for (size_t g = 0; g < m; g++) {
                double pa = p_all[g] + 1e-12, pt = p_top[g] + 1e-12;
                imp += pa * (pt / pa - 1) * (pt / pa - 1);
            }
            imp *= ((double)n_top / (double)n) * ((double)n_top / (double)n);
            free(c_all);
            free(p_all);
            free(xt);
        }
        json_array_append_new(arr, json_pack("{s:s,s:f}", "param", pp->name, "importance", imp));
    }
    hpo__study_release(s);
    free(loss);
    free(sorted);
    free(x);
    hpo__reply(req, 200, json_pack("{s:s,s:f,s:I,s:I,s:o}", "method", "ped-anova", "target_quantile",
            PED_QUANTILE, "trials", (json_int_t)n, "top_trials", (json_int_t)n_top, "importances",
            arr));
}

int hpo__decode_importances(const json_t *body, const struct hpo_service_query *q,
        union hpo_service_args *a, struct hpo_error *err)
{
    static const char *const allowed[] = { NULL };

    (void)body;
    return decode_dash(q, allowed, &a->dash, err);
}
