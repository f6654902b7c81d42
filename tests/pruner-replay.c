/*
** pruner-replay.c: drive one pruner over an in-memory history from a script
** of JSON events on stdin, one per line, answering one JSON line per event
** on stdout. The conformance test (integration/test_pruner_conformance.py)
** uses it to compare hpod's pruners with Optuna's without the daemon.
**
**   {"op": "create", "name": N, "direction": D, "pruner": {...}, "observe": true}
**       -> {"ok": true} or {"error": {"code", "field", "message"}}
**   {"op": "ask"}                                    -> {"number": n}
**   {"op": "report", "number": n, "step": s, "value": v} -> {"prune": b}
**   {"op": "tell", "number": n, "state": "complete"|"pruned"|"failed", "value": v}
**       -> {"ok": true}
**
** With "observe": false the pruner's observe hook is never called, which
** checks that decide() stays correct on its own.
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../core/history.h"
#include "../core/space.h"
#include "pruner.h"

struct replay {
    struct hpo_space space;
    struct hpo_history history;
    char name[256];
    const struct hpo_pruner_type *type;
    void *pruner;
    bool observe;
    bool created;
};

static void reply(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);

    json_decref(o);
    if (s == NULL) {
        fputs("{\"error\": {\"code\": \"internal\"}}\n", stdout);
    } else {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    fflush(stdout);
}

static void reply_error(const char *code, const char *field, const char *message)
{
    reply(json_pack("{s:{s:s, s:s, s:s}}", "error", "code", code, "field", field ? field : "",
            "message", message));
}

static void observe(struct replay *r, size_t trial, int64_t step)
{
    if (r->observe && r->type->observe != NULL) {
        r->type->observe(r->pruner, &r->history, trial, step);
    }
}

static void op_create(struct replay *r, json_t *ev)
{
    json_t *spec = json_object_get(ev, "pruner");
    const char *type = json_string_value(json_object_get(spec, "type"));
    const char *dir = json_string_value(json_object_get(ev, "direction"));
    const char *name = json_string_value(json_object_get(ev, "name"));
    json_t *options, *obs = json_object_get(ev, "observe");
    struct hpo_error err;
    int rc;

    if (r->created || type == NULL || name == NULL) {
        reply_error("invalid_argument", "op", "bad create");
        return;
    }
    r->type = hpo_pruner_find(type);
    if (r->type == NULL) {
        reply_error("invalid_argument", "pruner.type", "unknown pruner");
        return;
    }
    options = json_deep_copy(spec);
    json_object_del(options, "type");
    hpo_error_clear(&err);
    rc = r->type->configure(options, &r->pruner, &err);
    json_decref(options);
    if (rc < 0) {
        reply_error(hpo_code_name(err.code), err.field, err.message);
        return;
    }
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->observe = obs == NULL || json_is_true(obs);
    hpo_history_init(&r->history, &r->space, r->name, dir != NULL && strcmp(dir, "maximize") == 0);
    r->created = true;
    reply(json_pack("{s:b, s:o}", "ok", 1, "pruner", r->type->describe(r->pruner)));
}

/* The trial named by ev's "number", or NULL after answering an error. */
static struct hpo_trial *trial_of(struct replay *r, json_t *ev)
{
    json_t *n = json_object_get(ev, "number");

    if (!json_is_integer(n) || json_integer_value(n) < 0 ||
            (size_t)json_integer_value(n) >= r->history.n_trials) {
        reply_error("not_found", "number", "no such trial");
        return NULL;
    }
    return r->history.trials[json_integer_value(n)];
}

static void op_report(struct replay *r, json_t *ev)
{
    struct hpo_trial *t = trial_of(r, ev);
    json_t *step = json_object_get(ev, "step");
    json_t *value = json_object_get(ev, "value");
    struct hpo_error err;
    bool added, prune;

    if (t == NULL) {
        return;
    }
    if (t->state != HPO_STATE_RUNNING) {
        reply_error("conflict", "", "trial is not running");
        return;
    }
    if (!json_is_integer(step) || json_integer_value(step) < 0 || !json_is_number(value)) {
        reply_error("invalid_argument", "step", "bad report");
        return;
    }
    if (hpo_trial_add_report(t, json_integer_value(step), json_number_value(value), &added) < 0) {
        reply_error("internal", "", "out of memory");
        return;
    }
    if (added) {
        observe(r, (size_t)t->number, json_integer_value(step));
    }
    hpo_error_clear(&err);
    if (r->type->decide(r->pruner, &r->history, (size_t)t->number, json_integer_value(step),
                &prune, &err) < 0) {
        reply_error(hpo_code_name(err.code), err.field, err.message);
        return;
    }
    reply(json_pack("{s:b}", "prune", prune));
}

static void op_tell(struct replay *r, json_t *ev)
{
    struct hpo_trial *t = trial_of(r, ev);
    const char *state = json_string_value(json_object_get(ev, "state"));
    json_t *value = json_object_get(ev, "value");
    int s;

    if (t == NULL) {
        return;
    }
    s = state ? hpo_state_parse(state) : HPO_STATE_COMPLETE;
    if (t->state != HPO_STATE_RUNNING ||
            (s != HPO_STATE_COMPLETE && s != HPO_STATE_PRUNED && s != HPO_STATE_FAILED)) {
        reply_error("conflict", "state", "bad tell");
        return;
    }
    if (s == HPO_STATE_COMPLETE) {
        t->value = json_number_value(value);
    } else if (s == HPO_STATE_PRUNED && t->n_reports > 0) {
        t->value = t->reports[t->n_reports - 1].value;
    }
    hpo_history_set_state(&r->history, t, (enum hpo_state)s);
    observe(r, (size_t)t->number, -1);
    reply(json_pack("{s:b}", "ok", 1));
}

int main(void)
{
    struct replay r;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;

    memset(&r, 0, sizeof(r));
    while ((len = getline(&line, &cap, stdin)) > 0) {
        json_error_t jerr;
        json_t *ev = json_loadb(line, (size_t)len, 0, &jerr);
        const char *op = json_string_value(json_object_get(ev, "op"));

        if (op == NULL) {
            reply_error("invalid_json", "", jerr.text);
        } else if (strcmp(op, "create") == 0) {
            op_create(&r, ev);
        } else if (!r.created) {
            reply_error("invalid_argument", "op", "create first");
        } else if (strcmp(op, "ask") == 0) {
            struct hpo_trial *t = hpo_history_append(&r.history, HPO_STATE_RUNNING);
            if (t == NULL) {
                reply_error("internal", "", "out of memory");
            } else {
                observe(&r, (size_t)t->number, -1);
                reply(json_pack("{s:I}", "number", (json_int_t)t->number));
            }
        } else if (strcmp(op, "report") == 0) {
            op_report(&r, ev);
        } else if (strcmp(op, "tell") == 0) {
            op_tell(&r, ev);
        } else {
            reply_error("invalid_argument", "op", "unknown op");
        }
        json_decref(ev);
    }
    free(line);
    if (r.created) {
        r.type->destroy(r.pruner);
        hpo_history_finish(&r.history);
    }
    return 0;
}
