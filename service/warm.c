/*
** warm.c: warm start across studies (docs/API.md "Warm start",
** docs/ALGORITHMS.md §12): the `warm_start` field of a create, reading the
** named studies' trials once at the first ask (a snapshot, mapped into this
** study's space), and the summary entry.
**
** Locks: the prior studies are read one at a time, each under its own lock,
** with no other study locked (two studies naming each other cannot
** deadlock); the snapshot is then installed under this study's lock if no
** other ask installed one meanwhile.
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../samplers/prior.h"
#include "service-int.h"
#include "study.h"

#define FAIL(field, ...) hpo_error_set(err, -EINVAL, HPO_INVALID_ARGUMENT, field, __VA_ARGS__)

#define WARM_STUDIES_MAX 64

int hpo__warm_parse(struct study *s, const json_t *body, json_t *def, struct hpo_error *err)
{
    const json_t *ws = json_object_get(body, "warm_start"), *list, *v;
    const char *key;
    json_t *names;
    char f[64];

    if (ws == NULL || json_is_null(ws)) {
        return 0;
    }
    if (!json_is_object(ws)) {
        return FAIL("warm_start", "warm_start must be an object {\"studies\": [names...]}");
    }
    json_object_foreach((json_t *)ws, key, v) {
        if (strcmp(key, "studies") != 0) {
            snprintf(f, sizeof(f), "warm_start.%.40s", key);
            return FAIL(f, "unknown field '%s'", f);
        }
    }
    list = json_object_get(ws, "studies");
    if (list == NULL) {
        return FAIL("warm_start.studies", "warm_start.studies is required");
    }
    if (!json_is_array(list) || json_array_size(list) > WARM_STUDIES_MAX) {
        return FAIL("warm_start.studies",
                "warm_start.studies must be an array of at most %d study names",
                WARM_STUDIES_MAX);
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        v = json_array_get(list, i);
        snprintf(f, sizeof(f), "warm_start.studies[%zu]", i);
        if (!json_is_string(v) || !hpo_name_valid(json_string_value(v))) {
            return FAIL(f, "%s must be a study name (1-128 characters of A-Z a-z 0-9 _ . -)", f);
        }
        if (strcmp(json_string_value(v), s->name) == 0) {
            return FAIL(f, "a study cannot warm-start from itself");
        }
        for (size_t k = 0; k < i; k++) {
            if (json_equal(v, json_array_get(list, k))) {
                return FAIL(f, "study '%s' is named twice", json_string_value(v));
            }
        }
    }
    names = json_deep_copy(list);
    if (names == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    json_object_set_new(def, "warm_start", json_pack("{s:O}", "studies", names));
    s->warm_names = names;
    s->warm_pending = s->sampler_type->warm != NULL;
    return 0;
}

void hpo__warm_free(struct study *s)
{
    json_decref(s->warm_names);
    json_decref(s->warm_info);
    hpo_prior_free(s->prior);
}

/* How a param of the current space reads a prior study's param (-1 for none). */
struct param_map {
    long src;     /* index in the prior space, or -1 */
    long *choice; /* categorical: prior choice index -> current index (or -1) */
};

static bool params_compatible(const struct hpo_param *cur, const struct hpo_param *old,
        long *choice)
{
    bool any = false;

    if (cur->size != 0 || old->size != 0 || cur->type != old->type) {
        return false;
    }
    if (cur->type != HPO_PARAM_CATEGORICAL) {
        return old->low <= cur->high && old->high >= cur->low;
    }
    for (size_t a = 0; a < old->n_choices; a++) {
        choice[a] = -1;
        for (size_t b = 0; b < cur->n_choices; b++) {
            if (json_equal(json_array_get(old->choices, a), json_array_get(cur->choices, b))) {
                choice[a] = (long)b;
                any = true;
                break;
            }
        }
    }
    return any;
}

static void add_name(json_t *arr, const char *name)
{
    for (size_t i = 0; i < json_array_size(arr); i++) {
        if (strcmp(json_string_value(json_array_get(arr, i)), name) == 0) {
            return;
        }
    }
    json_array_append_new(arr, json_string(name));
}

/*
** Map prior study p's usable trials into s's space (p locked; s's space is
** fixed after create). Returns the source's summary entry; fills *out.
*/
static json_t *read_source(const struct study *s, const struct study *p,
        struct hpo_prior_study *out)
{
    const struct hpo_space *sp = s->space, *ps = p->space;
    const struct hpo_history *h = &p->history;
    json_t *e = json_pack("{s:s}", "study", p->name);
    json_t *ignored = json_array(), *missing = json_array();
    struct param_map *map = calloc(sp->n_params + 1, sizeof(*map));
    size_t dim = sp->dim, n_used = 0, n_outside = 0, matched = 0, n_cand;
    double *vals = NULL, *unit = NULL, *loss = NULL;
    const char *why = NULL;

    memset(out, 0, sizeof(*out));
    if (map == NULL) {
        hpo_oom();
    }
    if (s->n_obj != 1 || p->n_obj != 1) {
        why = "warm start reads studies of one objective only";
    } else if (s->n_cons > 0) {
        /* The samplers' warm paths model the objective alone: not used with constraints. */
        why = "warm start is not used by a study with constraints";
    } else if (p->maximize != s->maximize) {
        why = "the objective's direction differs";
    }
    for (size_t i = 0; why == NULL && i < sp->n_params; i++) {
        const struct hpo_param *cur = &sp->params[i];
        long j = hpo_space_find(ps, cur->name);
        map[i].src = -1;
        if (j >= 0 && cur->type == HPO_PARAM_CATEGORICAL &&
                ps->params[j].type == HPO_PARAM_CATEGORICAL) {
            map[i].choice = malloc(ps->params[j].n_choices * sizeof(long));
            if (map[i].choice == NULL) {
                hpo_oom();
            }
        }
        if (j >= 0 && params_compatible(cur, &ps->params[j], map[i].choice)) {
            map[i].src = j;
            matched++;
        } else {
            add_name(missing, cur->name);
        }
    }
    for (size_t j = 0; why == NULL && j < ps->n_params; j++) {
        bool used = false;
        for (size_t i = 0; i < sp->n_params; i++) {
            used = used || map[i].src == (long)j;
        }
        if (!used) {
            add_name(ignored, ps->params[j].name);
        }
    }
    if (why == NULL && matched == 0) {
        why = "no param in common (same name and type, overlapping range)";
    }
    n_cand = why == NULL ? h->count[HPO_STATE_COMPLETE] : 0;
    if (n_cand > 0) {
        vals = malloc(n_cand * (dim ? dim : 1) * sizeof(double));
        unit = malloc(n_cand * (dim ? dim : 1) * sizeof(double));
        loss = malloc(n_cand * sizeof(double));
        if (vals == NULL || unit == NULL || loss == NULL) {
            hpo_oom();
        }
    }
    for (size_t t = 0; n_cand > 0 && t < h->n_trials; t++) {
        const struct hpo_trial *tr = h->trials[t];
        double *row = vals + n_used * dim;
        bool keep = true;
        if (tr->state != HPO_STATE_COMPLETE || !isfinite(tr->value) ||
                !hpo__trial_feasible(p, tr) || n_used >= n_cand) {
            continue;
        }
        for (size_t k = 0; k < dim; k++) {
            row[k] = NAN;
        }
        for (size_t i = 0; i < sp->n_params && keep; i++) {
            const struct hpo_param *cur = &sp->params[i];
            double v;
            if (map[i].src < 0) {
                continue;
            }
            v = tr->values[ps->params[map[i].src].offset];
            if (isnan(v)) {
                continue;
            }
            if (cur->type == HPO_PARAM_CATEGORICAL) {
                long c = map[i].choice[(size_t)v];
                keep = c >= 0;
                v = (double)c;
            } else if (v < cur->low || v > cur->high) {
                keep = false;
            } else {
                v = hpo_param_snap(cur, v);
            }
            row[cur->offset] = v;
        }
        if (!keep) {
            n_outside++;
            continue;
        }
        /* This space's `when` conditions decide what is active. */
        for (size_t i = 0; i < sp->n_params; i++) {
            if (sp->params[i].n_conditions > 0 && !hpo_space_active(sp, i, row)) {
                row[sp->params[i].offset] = NAN;
            }
        }
        hpo_space_encode(sp, row, unit + n_used * dim);
        loss[n_used] = s->maximize ? -tr->value : tr->value;
        n_used++;
    }
    for (size_t i = 0; i < sp->n_params; i++) {
        free(map[i].choice);
    }
    free(map);
    if (n_used == 0) {
        free(vals);
        free(unit);
        free(loss);
    } else {
        out->n = n_used;
        out->values = vals;
        out->unit = unit;
        out->loss = loss;
    }
    json_object_set_new(e, "status", json_string(why != NULL ? "incompatible" : "ok"));
    if (why != NULL) {
        json_object_set_new(e, "reason", json_string(why));
    }
    json_object_set_new(e, "trials", json_integer((json_int_t)n_used));
    json_object_set_new(e, "outside_space", json_integer((json_int_t)n_outside));
    json_object_set_new(e, "ignored_params", ignored);
    json_object_set_new(e, "missing_params", missing);
    return e;
}

static int cmp_json_string(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* The sorted union of ignored and missing params over the sources read ("ok"). */
static json_t *ignored_union(const json_t *sources)
{
    json_t *all = json_array(), *out = json_array(), *e;
    size_t i, n;
    json_t **items;

    json_array_foreach(sources, i, e) {
        json_t *v;
        size_t k;
        if (strcmp(json_string_value(json_object_get(e, "status")), "ok") != 0) {
            continue;
        }
        json_array_foreach(json_object_get(e, "ignored_params"), k, v) {
            add_name(all, json_string_value(v));
        }
        json_array_foreach(json_object_get(e, "missing_params"), k, v) {
            add_name(all, json_string_value(v));
        }
    }
    n = json_array_size(all);
    items = malloc((n ? n : 1) * sizeof(*items));
    if (items == NULL) {
        hpo_oom();
    }
    for (i = 0; i < n; i++) {
        items[i] = json_array_get(all, i);
    }
    qsort(items, n, sizeof(*items), cmp_json_string);
    for (i = 0; i < n; i++) {
        json_array_append(out, items[i]);
    }
    free(items);
    json_decref(all);
    return out;
}

void hpo__warm_load(struct hpo_service *svc, const char *name)
{
    struct study *s = hpo__study_get(svc, name);
    struct hpo_prior *prior;
    json_t *sources, *info;
    size_t n_names;

    if (s == NULL || s->warm_names == NULL) {
        hpo__study_unref(s);
        return;
    }
    n_names = json_array_size(s->warm_names); /* fixed after create: read unlocked */
    prior = calloc(1, sizeof(*prior));
    if (prior == NULL || (prior->studies = calloc(n_names + 1, sizeof(*prior->studies))) == NULL) {
        hpo_oom();
    }
    prior->dim = s->space->dim;
    sources = json_array();
    for (size_t k = 0; k < n_names; k++) {
        const char *pn = json_string_value(json_array_get(s->warm_names, k));
        struct study *p = hpo__study_get(svc, pn);
        struct hpo_prior_study ps = { 0 };
        json_t *e = NULL;
        if (p != NULL) {
            pthread_mutex_lock(&p->lock);
            if (!p->deleted) {
                e = read_source(s, p, &ps);
            }
            pthread_mutex_unlock(&p->lock);
            hpo__study_unref(p);
        }
        if (e == NULL) {
            e = json_pack("{s:s,s:s,s:i}", "study", pn, "status", "not_found", "trials", 0);
        }
        json_array_append_new(sources, e);
        if (ps.n > 0) {
            prior->studies[prior->n_studies++] = ps;
            prior->n_total += ps.n;
        }
    }
    info = json_object();
    json_object_set_new(info, "trials", json_integer((json_int_t)prior->n_total));
    json_object_set_new(info, "ignored_params", ignored_union(sources));
    json_object_set_new(info, "sources", sources);
    pthread_mutex_lock(&s->lock);
    if (s->warm_pending && !s->deleted) {
        s->warm_pending = false;
        s->warm_info = info;
        info = NULL;
        s->prior = prior;
        if (prior->n_total > 0) {
            s->sampler_type->warm(s->sampler, prior);
        }
        prior = NULL;
        pthread_mutex_lock(&s->cache_lock);
        s->summary_valid = false;
        pthread_mutex_unlock(&s->cache_lock);
    }
    pthread_mutex_unlock(&s->lock);
    json_decref(info);
    hpo_prior_free(prior);
    hpo__study_unref(s);
}

json_t *hpo__warm_summary(const struct study *s)
{
    json_t *o = json_pack("{s:O}", "studies", s->warm_names);
    bool used = s->sampler_type->warm != NULL;

    json_object_set_new(o, "used", json_boolean(used));
    json_object_set_new(o, "loaded", json_boolean(s->warm_info != NULL));
    if (s->warm_info != NULL) {
        json_object_update(o, s->warm_info);
    } else {
        json_object_set_new(o, "trials", json_integer(0));
        json_object_set_new(o, "ignored_params", json_array());
        json_object_set_new(o, "sources", json_array());
    }
    return o;
}
