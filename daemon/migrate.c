/*
** migrate.c: `hpod migrate --from SRC --to DST`.
**
** Opens both databases through the storage interface (so each takes its
** one-daemon lock: neither may be in use by a running hpod), refuses a
** destination that holds any study, then reads the source with the load
** pass and writes what it reads to the destination as it goes: every
** study with its sampler state, trial, param (scalar, vector or a shared
** vector's reference), intermediate value and user attr, ids and numbers
** unchanged. Writes are grouped, FLUSH_OPS ops or FLUSH_BYTES bytes to a
** transaction; a failure leaves a partial destination, which the message
** says to delete before trying again.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../storage/storage.h"
#include "migrate.h"
#include "preflight.h"

#define FLUSH_OPS   4096
#define FLUSH_BYTES ((size_t)64 << 20)

struct copy {
    struct hpo_storage *dst;
    struct hpo_op *ops;
    void **owned; /* what the ops point to, freed after the flush */
    size_t n, cap, n_owned, cap_owned;
    size_t bytes;
    uint64_t studies, trials, params, reports, attrs;
    struct hpo_error err;
};

static void *keep(struct copy *c, const void *data, size_t len)
{
    void *p;

    if (c->n_owned == c->cap_owned) {
        size_t cap = c->cap_owned ? c->cap_owned * 2 : 1024;
        void **v = realloc(c->owned, cap * sizeof(*v));

        if (v == NULL) {
            return NULL;
        }
        c->owned = v;
        c->cap_owned = cap;
    }
    p = malloc(len ? len : 1);
    if (p == NULL) {
        return NULL;
    }
    if (len > 0) {
        memcpy(p, data, len);
    }
    c->owned[c->n_owned++] = p;
    c->bytes += len;
    return p;
}

static char *keep_str(struct copy *c, const char *s)
{
    return s != NULL ? keep(c, s, strlen(s) + 1) : NULL;
}

static int flush(struct copy *c)
{
    struct hpo_write w = { .ops = c->ops, .n_ops = c->n };
    int r = 0;

    if (c->n > 0) {
        r = hpo_storage_write(c->dst, &w, &c->err);
    }
    for (size_t i = 0; i < c->n_owned; i++) {
        free(c->owned[i]);
    }
    c->n_owned = 0;
    c->n = 0;
    c->bytes = 0;
    return r;
}

/* A new op (zeroed) at the end of the pending write; NULL when out of memory. */
static struct hpo_op *add(struct copy *c, enum hpo_op_kind kind, int64_t study_id)
{
    struct hpo_op *op;

    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        struct hpo_op *v = realloc(c->ops, cap * sizeof(*v));

        if (v == NULL) {
            return NULL;
        }
        c->ops = v;
        c->cap = cap;
    }
    op = &c->ops[c->n++];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->study_id = study_id;
    return op;
}

static int maybe_flush(struct copy *c)
{
    return c->n >= FLUSH_OPS || c->bytes >= FLUSH_BYTES ? flush(c) : 0;
}

static int on_study(void *ctx, int64_t id, const char *name, const char *spec,
        int64_t created_at, const void *state, size_t state_len)
{
    struct copy *c = ctx;
    struct hpo_op *op = add(c, HPO_OP_STUDY_PUT, id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->name = keep_str(c, name);
    op->text = keep_str(c, spec);
    op->created_at = created_at;
    if (op->name == NULL || op->text == NULL) {
        return -ENOMEM;
    }
    if (state != NULL) {
        op = add(c, HPO_OP_SAMPLER_STATE, id);
        if (op == NULL || (op->blob = keep(c, state, state_len)) == NULL) {
            return -ENOMEM;
        }
        op->len = state_len;
    }
    c->studies++;
    return maybe_flush(c);
}

static int on_trial(void *ctx, int64_t study_id, int64_t number, const struct hpo_trial_row *row)
{
    struct copy *c = ctx;
    struct hpo_op *op = add(c, HPO_OP_TRIAL_PUT, study_id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->number = number;
    op->trial = *row;
    if (row->worker != NULL && (op->trial.worker = keep_str(c, row->worker)) == NULL) {
        return -ENOMEM;
    }
    if (row->results != NULL && (op->trial.results = keep_str(c, row->results)) == NULL) {
        return -ENOMEM;
    }
    c->trials++;
    return maybe_flush(c);
}

static int on_param(void *ctx, int64_t study_id, int64_t number, int64_t index, double value,
        const double *vector, size_t len)
{
    struct copy *c = ctx;
    struct hpo_op *op = add(c, vector != NULL ? HPO_OP_PARAM_VECTOR : HPO_OP_PARAM_PUT,
            study_id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->number = number;
    op->index = index;
    op->value = value;
    if (vector != NULL) {
        op->len = len;
        if ((op->vector = keep(c, vector, len * sizeof(double))) == NULL) {
            return -ENOMEM;
        }
    }
    c->params++;
    return maybe_flush(c);
}

static int on_report(void *ctx, int64_t study_id, int64_t number, int64_t step, double value)
{
    struct copy *c = ctx;
    struct hpo_op *op = add(c, HPO_OP_REPORT_PUT, study_id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->number = number;
    op->step = step;
    op->value = value;
    c->reports++;
    return maybe_flush(c);
}

static int on_attr(void *ctx, int64_t study_id, int64_t number, const char *key,
        const char *json)
{
    struct copy *c = ctx;
    struct hpo_op *op = add(c, HPO_OP_ATTR_PUT, study_id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->number = number;
    op->name = keep_str(c, key);
    op->text = keep_str(c, json);
    if (op->name == NULL || op->text == NULL) {
        return -ENOMEM;
    }
    c->attrs++;
    return maybe_flush(c);
}

static int count_study(void *ctx, int64_t id, const char *name, const char *spec,
        int64_t created_at, const void *state, size_t state_len)
{
    (*(uint64_t *)ctx)++;
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: hpod migrate --from SRC --to DST\n"
            "  Copy every study and trial from SRC to the empty database DST. Each is a\n"
            "  SQLite path or a postgresql:// URI; no hpod may be running on either.\n");
}

/* Take a SQLite database's one-daemon lock (a URI's lock comes with opening it). */
static int lock_db(const char *db)
{
    char msg[512];
    int r = hpo_preflight_lock(db, msg, sizeof(msg));

    if (r < 0) {
        fprintf(stderr, "hpod migrate: %s\n", msg);
        return -1;
    }
    return 0;
}

int hpo_migrate_main(int argc, char **argv)
{
    static const struct hpo_load_callbacks copy_cb = {
        .study = on_study,
        .trial = on_trial,
        .param = on_param,
        .report = on_report,
        .attr = on_attr,
    };
    static const struct hpo_load_callbacks count_cb = { .study = count_study };
    const char *from = NULL, *to = NULL;
    struct hpo_storage *src = NULL, *dst = NULL;
    struct hpo_error err = { 0 };
    struct copy c = { 0 };
    uint64_t existing = 0;
    struct stat sb;
    int rc = 1;
    int r;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 0;
        }
        if (i + 1 < argc && strcmp(argv[i], "--from") == 0) {
            from = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--to") == 0) {
            to = argv[++i];
        } else {
            fprintf(stderr, "hpod migrate: unexpected argument '%s'\n", argv[i]);
            usage();
            return 2;
        }
    }
    if (from == NULL || to == NULL || from[0] == '\0' || to[0] == '\0') {
        usage();
        return 2;
    }
    if (strcmp(from, to) == 0) {
        fprintf(stderr, "hpod migrate: --from and --to name the same database\n");
        return 2;
    }
    /* Opening creates a SQLite database: a missing source is a mistake. */
    if (!hpo_storage_is_postgresql(from) && stat(from, &sb) != 0) {
        fprintf(stderr, "hpod migrate: '%s' does not exist\n", from);
        return 1;
    }
    if (lock_db(from) < 0 || lock_db(to) < 0) {
        return 1;
    }
    /* The copy is durable when the command says so: every commit flushed (FULL). */
    r = hpo_storage_open(to, &(struct hpo_storage_options){ .synchronous_full = true, .exclusive = true }, &dst,
            &err);
    if (r < 0) {
        fprintf(stderr, "hpod migrate: cannot open '%s': %s\n", to, err.message);
        return 1;
    }
    r = hpo_storage_load(dst, &count_cb, &existing, &err);
    if (r < 0) {
        fprintf(stderr, "hpod migrate: cannot read '%s': %s\n", to, err.message);
        goto out;
    }
    if (existing > 0) {
        fprintf(stderr, "hpod migrate: '%s' is not empty (%llu studies): refusing to copy into"
                " it\n", to, (unsigned long long)existing);
        goto out;
    }
    r = hpo_storage_open(from, &(struct hpo_storage_options){ .exclusive = true }, &src, &err);
    if (r < 0) {
        fprintf(stderr, "hpod migrate: cannot open '%s': %s\n", from, err.message);
        goto out;
    }
    r = hpo_storage_start(dst);
    if (r < 0) {
        fprintf(stderr, "hpod migrate: cannot start writing '%s' (%d)\n", to, r);
        goto out;
    }
    c.dst = dst;
    r = hpo_storage_load(src, &copy_cb, &c, &err);
    if (r == 0) {
        r = flush(&c);
        err = c.err;
    } else if (c.err.message[0] != '\0') {
        /* A write failed inside a callback: say that, not "callback failed". */
        err = c.err;
    }
    if (r < 0) {
        fprintf(stderr, "hpod migrate: copying '%s' to '%s' failed: %s\n"
                "hpod migrate: '%s' holds part of the copy; delete it before trying again\n",
                from, to, err.message, to);
        goto out;
    }
    printf("copied %llu studies, %llu trials, %llu params, %llu intermediate values,"
           " %llu user attrs from %s to %s\n",
            (unsigned long long)c.studies, (unsigned long long)c.trials,
            (unsigned long long)c.params, (unsigned long long)c.reports,
            (unsigned long long)c.attrs, from, to);
    rc = 0;
out:
    c.n = 0;
    (void)flush(&c);
    free(c.ops);
    free(c.owned);
    hpo_storage_close(src);
    hpo_storage_close(dst);
    return rc;
}
