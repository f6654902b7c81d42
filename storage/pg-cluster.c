/*
** pg-cluster.c: membership and study ownership for several daemons on one
** PostgreSQL database (cluster.h, docs/CLUSTER.md).
**
** Safety does not rest on this file: every write of a study carries the
** epoch its copy was loaded at and hpod_fence() refuses it in the database
** once the epoch moved on (pg.c). What this file decides is liveness: who
** should own what, and when to take a study over. A daemon is live while
** its heartbeat (the database's now(), so clocks need not agree) is within
** the lease and its writer session holds its advisory lock: a SIGKILLed
** daemon's session ends at once, so its studies move at the next tick; a
** frozen one's after the lease.
**
** Who should own what is placement.h's rule (rendezvous hashing with
** bounded loads, studies kept where they are): every daemon computes it from
** its view, claims the studies without a live owner that it computes for
** itself, and hands those it owns to the daemon it computes for them.
*/
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "../core/buf.h"
#include "cluster.h"
#include "placement.h"
#include "storage-int.h"

#define LOOKUP_WAIT_MS 3000
#define GONE_LEASES 10 /* a daemon's row is removed after this many leases gone */
#define GONE_EVERY 5   /* looked for every this many ticks */

/* A live daemon of the view. */
struct member {
    int64_t id;
    char *url;
    bool stable; /* live in the previous tick too: one a study may be handed to */
};

/* A study of the view. */
struct entry {
    char *name;
    int64_t study_id;
    int64_t owner; /* 0: none */
    int64_t epoch;
    const char *url; /* the owner's, when live (borrowed from the view's members) */
};

struct view {
    struct member *live;
    size_t n_live;
    size_t *created; /* per live daemon: creates sent to it since this view was read */
    size_t n_created;
    bool me_live; /* this daemon is among them (its writer session holds its lock) */
    struct entry *e; /* by name */
    size_t n;
};

struct hpo_cluster {
    struct hpo_storage *st;
    struct hpo__pg_info pg;
    char *url;
    unsigned lease_ms, tick_ms;
    PGconn *conn; /* the thread's (and the first tick's) */
    pthread_t thread;
    bool started;

    pthread_mutex_t lock;
    pthread_cond_t wake; /* the thread waits on it between ticks */
    pthread_cond_t ticked;
    struct view *view; /* under lock; replaced whole by each tick */
    uint64_t tick_no;  /* ticks tried, done or failed (under lock) */
    bool poked, stopping;
    atomic_bool leaving;   /* draining: serves nothing new, but still owns its studies */
    atomic_bool releasing; /* the last tick: hands every study over, marks itself gone */

    uint64_t last_ok_us; /* under lock */
    atomic_uint_fast64_t claims, releases, lost, ticks, tick_failures;
    uint64_t ticks_done; /* the thread's */
    uint64_t ok_since_us; /* the thread's: ticks went through since (0: the last failed) */
    struct hpo_hist db_rtt_us;
};

static const uint64_t rtt_le[] = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000,
    1000000 };

static uint64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void view_free(struct view *v)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < v->n_live; i++) {
        free(v->live[i].url);
    }
    for (size_t i = 0; i < v->n; i++) {
        free(v->e[i].name);
    }
    free(v->live);
    free(v->created);
    free(v->e);
    free(v);
}

static const struct entry *view_find(const struct view *v, const char *name)
{
    size_t lo = 0, hi = v != NULL ? v->n : 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->e[mid].name, name);

        if (c == 0) {
            return &v->e[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static const struct member *view_member(const struct view *v, int64_t id)
{
    for (size_t i = 0; v != NULL && i < v->n_live; i++) {
        if (v->live[i].id == id) {
            return &v->live[i];
        }
    }
    return NULL;
}

/* ---- the tick ------------------------------------------------------------ */

static int exec_params(PGconn *conn, const char *sql, int n, const char *const *vals,
        PGresult **ret, const char *what, struct hpo_error *err)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(res);

    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
        int r = hpo__pg_error(conn, res, what, err);

        PQclear(res);
        return r;
    }
    if (ret != NULL) {
        *ret = res;
    } else {
        PQclear(res);
    }
    return 0;
}

/*
** Claim (owner = this daemon, epoch + 1) or hand over (owner `to`, NULL for
** 0, epoch + 1) study `id` if its row is still at `epoch` (0: no row yet, a
** claim inserts it). Returns the new epoch, 0 when another daemon got there
** first, or a negative errno.
*/
static int64_t change_owner(struct hpo_cluster *c, int64_t id, int64_t epoch, bool claim,
        int64_t to, struct hpo_error *err)
{
    char a[24], b[24], d[24], t[24];
    const char *vals[4] = { a, b, d, to != 0 ? t : NULL };
    PGresult *res = NULL;
    int64_t got = 0;
    int r;

    snprintf(a, sizeof(a), "%lld", (long long)id);
    snprintf(b, sizeof(b), "%lld", (long long)epoch);
    snprintf(d, sizeof(d), "%lld", (long long)c->pg.daemon_id);
    snprintf(t, sizeof(t), "%lld", (long long)to);
    if (claim && epoch == 0) {
        r = exec_params(c->conn,
                "INSERT INTO study_owners (study_id, owner, epoch) SELECT $1, $3, 1"
                " WHERE $2::bigint = 0 ON CONFLICT DO NOTHING RETURNING epoch",
                3, vals, &res, "claiming a study", err);

    } else if (claim) {
        r = exec_params(c->conn,
                "UPDATE study_owners SET owner = $3, epoch = epoch + 1, changed = now()"
                " WHERE study_id = $1 AND epoch = $2 RETURNING epoch",
                3, vals, &res, "claiming a study", err);
    } else {
        r = exec_params(c->conn,
                "UPDATE study_owners SET owner = $4, epoch = epoch + 1, changed = now()"
                " WHERE study_id = $1 AND epoch = $2 AND owner = $3 RETURNING epoch",
                4, vals, &res, "handing a study over", err);
    }
    if (r < 0) {
        return r;
    }
    if (PQntuples(res) == 1) {
        got = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    return got;
}

static char *dup_or_die(const char *s)
{
    char *d = strdup(s);

    if (d == NULL) {
        hpo_oom();
    }
    return d;
}

/* Read the live daemons into `v` (prev: the last view, for `stable`). */
static int read_members(struct hpo_cluster *c, struct view *v, const struct view *prev,
        struct hpo_error *err)
{
    char sql[1024];
    PGresult *res = NULL;
    int r;

    snprintf(sql, sizeof(sql),
            "SELECT d.id, d.url FROM daemons d WHERE d.url <> '' AND NOT d.leaving"
            " AND d.heartbeat > now() - interval '%u milliseconds'"
            " AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid = %u AND l.objid = d.id AND l.objsubid = 2) ORDER BY d.id",
            c->lease_ms, (unsigned)HPO_PG_DAEMON_LOCK);
    r = exec_params(c->conn, sql, 0, NULL, &res, "reading the live daemons", err);
    if (r < 0) {
        return r;
    }
    v->n_live = (size_t)PQntuples(res);
    v->live = calloc(v->n_live ? v->n_live : 1, sizeof(*v->live));
    v->created = calloc(v->n_live ? v->n_live : 1, sizeof(*v->created));
    if (v->live == NULL || v->created == NULL) {
        hpo_oom();
    }
    for (size_t i = 0; i < v->n_live; i++) {
        struct member *m = &v->live[i];

        m->id = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        m->url = dup_or_die(PQgetvalue(res, (int)i, 1));
        m->stable = view_member(prev, m->id) != NULL;
    }
    PQclear(res);
    return 0;
}

static int read_studies(struct hpo_cluster *c, struct view *v, struct hpo_error *err)
{
    PGresult *res = NULL;
    int r = exec_params(c->conn,
            "SELECT s.id, s.name, coalesce(o.owner, 0), coalesce(o.epoch, 0) FROM studies s"
            " LEFT JOIN study_owners o ON o.study_id = s.id ORDER BY s.name COLLATE \"C\"",
            0, NULL, &res, "reading the owners", err);

    if (r < 0) {
        return r;
    }
    v->n = (size_t)PQntuples(res);
    v->e = calloc(v->n ? v->n : 1, sizeof(*v->e));
    if (v->e == NULL) {
        hpo_oom();
    }
    for (size_t i = 0; i < v->n; i++) {
        struct entry *e = &v->e[i];

        e->study_id = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        e->name = dup_or_die(PQgetvalue(res, (int)i, 1));
        e->owner = strtoll(PQgetvalue(res, (int)i, 2), NULL, 10);
        e->epoch = strtoll(PQgetvalue(res, (int)i, 3), NULL, 10);
    }
    PQclear(res);
    return 0;
}

/* The studies this daemon held in the last view (ids, ascending). */
struct held {
    int64_t *id;
    size_t n;
};

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* Under c->lock: fenced() may change the view's owners meanwhile. */
static void held_of(const struct view *v, int64_t me, struct held *h)
{
    h->n = 0;
    h->id = malloc((v != NULL && v->n > 0 ? v->n : 1) * sizeof(*h->id));
    if (h->id == NULL) {
        hpo_oom();
    }
    for (size_t i = 0; v != NULL && i < v->n; i++) {
        if (v->e[i].owner == me) {
            h->id[h->n++] = v->e[i].study_id;
        }
    }
    qsort(h->id, h->n, sizeof(*h->id), cmp_id);
}

static bool held(const struct held *h, int64_t id)
{
    return bsearch(&id, h->id, h->n, sizeof(*h->id), cmp_id) != NULL;
}

/*
** Remove the rows of daemons gone for more than GONE_LEASES leases (one row
** per daemon start, so they would pile up), and their batch markers
** (hpod_batches, 16 bytes each): only those whose session lock is free (the
** process or its connection is gone), that own no study (the fencing rows
** name their owner; a study a gone daemon still owns is claimed first).
** Markers without a daemon row (left by earlier versions, which kept them)
** go too, under the same lock test. Not while this daemon's own heartbeats
** have gone through for less than GONE_LEASES leases: after an outage of the
** database (or a freeze of this daemon) every heartbeat looks old, and the
** others get that long to come back first. A daemon cut off that long that
** comes back finds its row gone at its next heartbeat and exits (tick()):
** without its marker it could not tell whether its last batch committed.
*/
static int forget_gone(struct hpo_cluster *c, struct hpo_error *err)
{
    char sql[2048], lock_held[512];

    snprintf(lock_held, sizeof(lock_held),
            "SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory'"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid = %u AND l.objsubid = 2 AND l.objid = ",
            (unsigned)HPO_PG_DAEMON_LOCK);
    snprintf(sql, sizeof(sql),
            "WITH gone AS (DELETE FROM daemons d WHERE d.heartbeat < now() - interval"
            " '%llu milliseconds'"
            " AND NOT EXISTS (SELECT 1 FROM study_owners o WHERE o.owner = d.id)"
            " AND NOT EXISTS (%sd.id) RETURNING d.id)"
            " DELETE FROM hpod_batches b WHERE b.daemon IN (SELECT id FROM gone)"
            " OR (NOT EXISTS (SELECT 1 FROM daemons d WHERE d.id = b.daemon)"
            " AND NOT EXISTS (%sb.daemon))",
            (unsigned long long)c->lease_ms * GONE_LEASES, lock_held, lock_held);
    return exec_params(c->conn, sql, 0, NULL, NULL, "removing gone daemons", err);
}

/*
** Where each study of `v` belongs (placement.h), over the live daemons but
** `except` (0: none): target[i] for v->e[i], 0 when no daemon is live.
*/
static int64_t *targets(const struct view *v, int64_t except)
{
    struct hpo_place_member *m = calloc(v->n_live ? v->n_live : 1, sizeof(*m));
    struct hpo_place_study *s = calloc(v->n ? v->n : 1, sizeof(*s));
    int64_t *t = calloc(v->n ? v->n : 1, sizeof(*t));
    size_t d = 0;

    if (m == NULL || s == NULL || t == NULL) {
        hpo_oom();
    }
    for (size_t k = 0; k < v->n_live; k++) {
        if (v->live[k].id != except) {
            m[d++] = (struct hpo_place_member){ .id = v->live[k].id, .url = v->live[k].url };
        }
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct entry *e = &v->e[i];

        s[i] = (struct hpo_place_study){ .id = e->study_id, .name = e->name,
            .owner = e->owner != except ? e->owner : 0 };
    }
    hpo__place(m, d, s, v->n);
    for (size_t i = 0; i < v->n; i++) {
        t[i] = s[i].target;
    }
    free(s);
    free(m);
    return t;
}

/*
** Hand the studies of `idx` (entries of this daemon's, to[k] each: a live
** daemon's id, or 0 for none) over in ONE transaction: another daemon's
** heartbeat reads either none of this tick's hand-overs or all of them,
** never a daemon half-way through its share (which it would count as
** still over ceil(n/d) and plan from: one study too many moved on a join).
** A row that cannot be changed (a batch holds it past lock_timeout, or it
** changed meanwhile) is left out (its savepoint rolled back). The entries
** change only once the COMMIT went through; a failed transaction hands
** nothing over (the next tick tries again).
*/
static void hand_over(struct hpo_cluster *c, struct view *v, const size_t *idx,
        const int64_t *to, size_t n)
{
    struct hpo_error err = { 0 };
    bool failed = false;
    bool *done;

    if (n == 0) {
        return;
    }
    done = calloc(n, sizeof(*done));
    if (done == NULL) {
        hpo_oom();
    }
    if (exec_params(c->conn, "BEGIN", 0, NULL, NULL, "handing studies over", &err) < 0) {
        free(done);
        return;
    }
    for (size_t k = 0; k < n && !failed; k++) {
        struct entry *e = &v->e[idx[k]];

        failed = exec_params(c->conn, "SAVEPOINT hand", 0, NULL, NULL, "handing a study over",
                &err) < 0;
        if (!failed) {
            done[k] = change_owner(c, e->study_id, e->epoch, false, to[k], &err) > 0;
            failed = exec_params(c->conn, done[k] ? "RELEASE SAVEPOINT hand"
                                                  : "ROLLBACK TO SAVEPOINT hand",
                    0, NULL, NULL, "handing a study over", &err) < 0;
        }
    }
    /*
    ** (A COMMIT of a transaction in error rolls it back and succeeds: a
    ** savepoint that failed ends it with an explicit ROLLBACK instead.)
    */
    if (failed || exec_params(c->conn, "COMMIT", 0, NULL, NULL, "handing studies over",
                          &err) < 0) {
        (void)exec_params(c->conn, "ROLLBACK", 0, NULL, NULL, "handing studies over", &err);
        free(done);
        return;
    }
    for (size_t k = 0; k < n; k++) {
        struct entry *e = &v->e[idx[k]];
        const struct member *m = to[k] != 0 ? view_member(v, to[k]) : NULL;

        if (done[k]) {
            atomic_fetch_add(&c->releases, 1);
            e->owner = to[k];
            e->epoch++;
            e->url = m != NULL ? m->url : NULL;
        }
    }
    free(done);
}

/* Decide, for each study, whether to claim, release or forget it. */
static void place(struct hpo_cluster *c, struct view *v, const struct held *prev, bool leaving)
{
    int64_t me = c->pg.daemon_id;
    bool me_live = view_member(v, me) != NULL;
    /* Leaving: every study of this daemon goes to where it belongs among the others. */
    int64_t *target = targets(v, leaving ? me : 0);
    size_t *hand_idx = calloc(v->n ? v->n : 1, sizeof(*hand_idx));
    int64_t *hand_to = calloc(v->n ? v->n : 1, sizeof(*hand_to));
    size_t n_hand = 0;

    if (hand_idx == NULL || hand_to == NULL) {
        hpo_oom();
    }

    for (size_t i = 0; i < v->n; i++) {
        struct entry *e = &v->e[i];
        const struct member *owner = e->owner != 0 ? view_member(v, e->owner) : NULL;
        const struct member *to = target[i] != 0 ? view_member(v, target[i]) : NULL;
        struct hpo_error err = { 0 };

        if (e->owner == me) {
            /*
            ** Handed only to a daemon live for two heartbeats (it serves by
            ** now; until then the study waits here). Leaving, to none when
            ** its place is not such a daemon: it is claimed later.
            */
            if (to != NULL && !to->stable) {
                to = NULL;
            }
            if (leaving || (to != NULL && to->id != me && me_live)) {
                /*
                ** Hand it over straight to its daemon (hand_over, with this
                ** tick's others): unfenced first, so nothing more of ours
                ** is written.
                */
                hpo_storage_fence_set(c->st, e->study_id, 0);
                hand_idx[n_hand] = i;
                hand_to[n_hand++] = to != NULL ? to->id : 0;
            }
        } else {
            if (held(prev, e->study_id)) {
                /* Taken by another daemon (we were frozen, or cut off): forget it. */
                hpo_storage_fence_set(c->st, e->study_id, 0);
                atomic_fetch_add(&c->lost, 1);
            }
            if (!leaving && me_live && owner == NULL && target[i] == me) {
                int64_t got = change_owner(c, e->study_id, e->epoch, true, 0, &err);

                if (got > 0) {
                    atomic_fetch_add(&c->claims, 1);
                    e->owner = me;
                    e->epoch = got;
                    owner = view_member(v, me);
                }
            }
        }
        e->url = e->owner == me ? c->url : owner != NULL ? owner->url : NULL;
    }
    hand_over(c, v, hand_idx, hand_to, n_hand);
    free(hand_idx);
    free(hand_to);
    free(target);
}

/*
** This daemon's row is gone: the others took it for gone (no heartbeat for
** GONE_LEASES leases, its session lock free, owning nothing) and removed it
** with its batch marker, without which its writer cannot tell whether a
** batch committed. It owns nothing and its copies are stale: exit
** (EX_TEMPFAIL), so the next start joins afresh with a new row.
*/
static _Noreturn void removed_as_gone(const struct hpo_cluster *c)
{
    fprintf(stderr,
            "<2>hpod: this daemon (id %lld) was removed from the database as gone (no heartbeat"
            " for %u leases); exiting so the next start joins afresh\n",
            (long long)c->pg.daemon_id, (unsigned)GONE_LEASES);
    _exit(75);
}

/* One tick: heartbeat, view, placement, publish. */
static int tick(struct hpo_cluster *c, struct hpo_error *err)
{
    /*
    ** While draining (leaving) the daemon stays live and keeps its studies,
    ** so the writes of requests in flight still commit; only the last tick
    ** hands them over.
    */
    bool leaving = atomic_load(&c->releasing);
    char id[24], lv[8];
    const char *vals[3] = { id, c->url, lv };
    struct view *v, *prev;
    struct held h;
    PGresult *res = NULL;
    uint64_t t0 = mono_us();
    bool gone;
    int r;

    if (c->conn == NULL || PQstatus(c->conn) != CONNECTION_OK) {
        PQfinish(c->conn);
        c->conn = hpo__pg_connect(c->pg.uri, c->pg.passfile, err);
        if (c->conn == NULL) {
            return -EIO;
        }
        /* A claim waits for the batches that hold the study's row, not longer. */
        (void)exec_params(c->conn, "SET lock_timeout = 1000", 0, NULL, NULL, "setting", err);
        (void)exec_params(c->conn, "SET statement_timeout = 5000", 0, NULL, NULL, "setting",
                err);
        /*
        ** A heartbeat must not wait for the WAL flush (it took more than a
        ** second under I/O load, and a lease of three then lapsed). Nothing
        ** here needs it: a heartbeat lost in a server crash is stale anyway,
        ** and a claim or hand-off lost with it reverts its epoch, so the
        ** writes of its new owner are refused by fencing; every write the
        ** writer commits (synchronously) flushes the WAL before it,
        ** ownership changes included.
        */
        (void)exec_params(c->conn, "SET synchronous_commit = off", 0, NULL, NULL, "setting",
                err);
    }
    snprintf(id, sizeof(id), "%lld", (long long)c->pg.daemon_id);
    snprintf(lv, sizeof(lv), "%s", leaving ? "true" : "false");
    r = exec_params(c->conn,
            "UPDATE daemons SET heartbeat = now(), url = $2, leaving = $3 WHERE id = $1", 3,
            vals, &res, "renewing the heartbeat", err);
    if (r < 0) {
        return r;
    }
    gone = strcmp(PQcmdTuples(res), "0") == 0;
    PQclear(res);
    if (gone && !leaving) {
        removed_as_gone(c);
    }
    hpo_hist_observe(&c->db_rtt_us, mono_us() - t0);
    if (c->ok_since_us == 0) {
        c->ok_since_us = t0;
    }
    if (c->ticks_done++ % GONE_EVERY == 0 &&
            t0 - c->ok_since_us >= (uint64_t)c->lease_ms * GONE_LEASES * 1000u) {
        (void)forget_gone(c, err);
    }
    pthread_mutex_lock(&c->lock);
    c->last_ok_us = t0;
    prev = c->view; /* only the ticking thread replaces it */
    held_of(prev, c->pg.daemon_id, &h);
    pthread_mutex_unlock(&c->lock);
    v = calloc(1, sizeof(*v));
    if (v == NULL) {
        hpo_oom();
    }
    r = read_members(c, v, prev, err);
    if (r == 0) {
        r = read_studies(c, v, err);
    }
    if (r < 0) {
        free(h.id);
        view_free(v);
        return r;
    }
    v->me_live = view_member(v, c->pg.daemon_id) != NULL;
    place(c, v, &h, leaving);
    free(h.id);
    pthread_mutex_lock(&c->lock);
    c->view = v;
    c->tick_no++;
    pthread_cond_broadcast(&c->ticked);
    pthread_mutex_unlock(&c->lock);
    view_free(prev);
    atomic_fetch_add(&c->ticks, 1);
    return 0;
}

static void *cluster_main(void *arg)
{
    struct hpo_cluster *c = arg;

    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        struct hpo_error err = { 0 };
        struct timespec ts;
        long ms = (long)c->tick_ms;

        c->poked = false;
        pthread_mutex_unlock(&c->lock);
        if (tick(c, &err) < 0) {
            atomic_fetch_add(&c->tick_failures, 1);
            c->ok_since_us = 0;
            PQfinish(c->conn);
            c->conn = NULL;
            ms = ms > 500 ? 500 : ms;
            /* A lookup waiting for this tick gives up: the database is not there. */
            pthread_mutex_lock(&c->lock);
            c->tick_no++;
            pthread_cond_broadcast(&c->ticked);
            pthread_mutex_unlock(&c->lock);
        }
        pthread_mutex_lock(&c->lock);
        if (c->poked || c->stopping) {
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        (void)pthread_cond_timedwait(&c->wake, &c->lock, &ts);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- the public functions ------------------------------------------------ */

/*
** A write of `study_id` was fenced (the writing thread): another daemon owns
** it, so this one stops serving it at once, and looks at the owners now.
*/
static void fenced(void *ctx, int64_t study_id)
{
    struct hpo_cluster *c = ctx;

    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; c->view != NULL && i < c->view->n; i++) {
        struct entry *e = &c->view->e[i];

        if (e->study_id == study_id && e->owner == c->pg.daemon_id) {
            e->owner = 0;
            e->url = NULL;
        }
    }
    c->poked = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

static void cluster_free(struct hpo_cluster *c)
{
    PQfinish(c->conn);
    view_free(c->view);
    pthread_cond_destroy(&c->ticked);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c->url);
    free(c);
}

int hpo_cluster_start(struct hpo_storage *st, const struct hpo_cluster_options *opt,
        struct hpo_cluster **ret, struct hpo_error *err)
{
    struct hpo_cluster *c;
    pthread_condattr_t attr;
    int r;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    if (!hpo__pg_cluster_info(st, &c->pg)) {
        free(c);
        return -ENOTSUP;
    }
    c->st = st;
    c->url = strdup(opt->url);
    c->lease_ms = opt->lease_ms > 0 ? opt->lease_ms : 3000;
    c->tick_ms = opt->tick_ms > 0 ? opt->tick_ms : 1000;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->wake, &attr);
    pthread_cond_init(&c->ticked, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&c->leaving, false);
    atomic_init(&c->releasing, false);
    hpo_hist_init(&c->db_rtt_us, rtt_le, sizeof(rtt_le) / sizeof(rtt_le[0]));
    if (c->url == NULL) {
        cluster_free(c);
        return hpo_error_set(err, -ENOMEM, HPO_INTERNAL, NULL, "out of memory");
    }
    /*
    ** Two ticks before serving: the first publishes this daemon (live for
    ** everyone from then on), the second claims what is ours to take.
    */
    r = tick(c, err);
    if (r == 0) {
        r = tick(c, err);
    }
    if (r < 0) {
        cluster_free(c);
        return r;
    }
    hpo__pg_on_fenced(st, fenced, c);
    r = hpo__writer_start(&c->lock, &c->started, &c->thread, cluster_main, c);
    if (r < 0) {
        hpo__pg_on_fenced(st, NULL, NULL);
        cluster_free(c);
        return hpo_error_set(err, r, HPO_INTERNAL, NULL, "cannot start the cluster thread");
    }
    (void)pthread_setname_np(c->thread, "hpod-cluster");
    *ret = c;
    return 0;
}

enum hpo_cluster_where hpo_cluster_locate(struct hpo_cluster *c, const char *name,
        int64_t *ret_epoch, char *url, size_t url_len)
{
    enum hpo_cluster_where w = HPO_CLUSTER_UNKNOWN;
    const struct entry *e;

    url[0] = '\0';
    *ret_epoch = 0;
    pthread_mutex_lock(&c->lock);
    /* A view older than the lease (this daemon was frozen or cut off) is no guide. */
    e = mono_us() - c->last_ok_us < (uint64_t)c->lease_ms * 1000u ? view_find(c->view, name)
                                                                  : NULL;
    if (e != NULL) {
        if (e->owner == c->pg.daemon_id && !atomic_load(&c->leaving) && c->view->me_live) {
            /*
            ** Not while this daemon is not live in its own view (its writer
            ** session, and with it its lock, is gone, e.g. the server
            ** restarted): the others may have taken the study, and its copy
            ** here may be behind; 503 until the writer has reconnected.
            */
            w = HPO_CLUSTER_HERE;
            *ret_epoch = e->epoch;
        } else {
            w = HPO_CLUSTER_THERE;
            if (e->url != NULL && e->owner != c->pg.daemon_id) {
                snprintf(url, url_len, "%s", e->url);
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
    return w;
}

bool hpo_cluster_moved(struct hpo_cluster *c, const char *name)
{
    const struct entry *e;
    bool moved = false;

    pthread_mutex_lock(&c->lock);
    if (mono_us() - c->last_ok_us < (uint64_t)c->lease_ms * 1000u) {
        e = view_find(c->view, name);
        moved = e != NULL && e->owner != c->pg.daemon_id;
    }
    pthread_mutex_unlock(&c->lock);
    return moved;
}

/*
** Wait (bounded) for a tick that started after this call: the view is the
** database's now. Returns whether such a tick went through (a failed one
** ends the wait too, leaving the view as it was).
*/
static bool wait_fresh(struct hpo_cluster *c)
{
    uint64_t since = mono_us();
    struct timespec ts;
    uint64_t want;
    bool fresh;

    pthread_mutex_lock(&c->lock);
    /* A tick that starts after this call: one already under way may have read too early. */
    want = c->tick_no + 2;
    c->poked = true;
    pthread_cond_signal(&c->wake);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += LOOKUP_WAIT_MS / 1000;
    while (c->tick_no < want && !c->stopping) {
        if (pthread_cond_timedwait(&c->ticked, &c->lock, &ts) != 0) {
            break;
        }
        if (c->tick_no + 1 == want) {
            c->poked = true;
            pthread_cond_signal(&c->wake);
        }
    }
    /* last_ok_us: when the last tick that went through started, before it read the view. */
    fresh = c->last_ok_us >= since;
    pthread_mutex_unlock(&c->lock);
    return fresh;
}

enum hpo_cluster_where hpo_cluster_lookup(struct hpo_cluster *c, const char *name,
        int64_t *ret_epoch, char *url, size_t url_len)
{
    bool fresh = wait_fresh(c);
    enum hpo_cluster_where w = hpo_cluster_locate(c, name, ret_epoch, url, url_len);

    /*
    ** Not in a view that could not be read again (its heartbeat failed, or
    ** waited past the bound), though within the lease: a study created
    ** since the last view is not in it. Not "not found".
    */
    return w == HPO_CLUSTER_UNKNOWN && !fresh ? HPO_CLUSTER_UNSURE : w;
}

void hpo_cluster_refresh(struct hpo_cluster *c)
{
    (void)wait_fresh(c);
}

void hpo_cluster_each_served(struct hpo_cluster *c, void (*fn)(void *ctx, const char *name),
        void *ctx)
{
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; c->view != NULL && i < c->view->n; i++) {
        const struct entry *e = &c->view->e[i];

        if (e->owner != 0 && view_member(c->view, e->owner) != NULL) {
            fn(ctx, e->name);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

bool hpo_cluster_preferred(struct hpo_cluster *c, const char *name, char *url, size_t url_len)
{
    struct view *v;
    bool mine = true;

    url[0] = '\0';
    if (atomic_load(&c->leaving)) {
        return false;
    }
    pthread_mutex_lock(&c->lock);
    v = c->view;
    if (v != NULL && v->n_live > 0) {
        struct hpo_place_member *m = calloc(v->n_live, sizeof(*m));
        size_t *load = calloc(v->n_live, sizeof(*load));
        size_t k;

        if (m == NULL || load == NULL) {
            hpo_oom();
        }
        /*
        ** The live daemons' studies in the view, plus the creates sent since
        ** it was read (a burst of creates spreads before the next tick).
        */
        for (k = 0; k < v->n_live; k++) {
            m[k] = (struct hpo_place_member){ .id = v->live[k].id, .url = v->live[k].url };
            load[k] = v->created[k];
        }
        for (size_t i = 0; i < v->n; i++) {
            for (k = 0; v->e[i].owner != 0 && k < v->n_live; k++) {
                if (v->live[k].id == v->e[i].owner) {
                    load[k]++;
                    break;
                }
            }
        }
        k = hpo__place_new(m, load, v->n_live, v->n + v->n_created, name);
        v->created[k]++;
        v->n_created++;
        if (v->live[k].id != c->pg.daemon_id) {
            mine = false;
            snprintf(url, url_len, "%s", v->live[k].url);
        }
        free(load);
        free(m);
    }
    pthread_mutex_unlock(&c->lock);
    return mine;
}

void hpo_cluster_each_owned(struct hpo_cluster *c,
        void (*fn)(void *ctx, const char *name, int64_t epoch), void *ctx)
{
    struct {
        char *name;
        int64_t epoch;
    } *own = NULL;
    size_t n = 0;

    pthread_mutex_lock(&c->lock);
    if (c->view != NULL && !atomic_load(&c->leaving)) {
        own = calloc(c->view->n ? c->view->n : 1, sizeof(*own));
        for (size_t i = 0; own != NULL && i < c->view->n; i++) {
            const struct entry *e = &c->view->e[i];

            if (e->owner == c->pg.daemon_id) {
                own[n].name = strdup(e->name);
                own[n].epoch = e->epoch;
                n += own[n].name != NULL;
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < n; i++) {
        fn(ctx, own[i].name, own[i].epoch);
        free(own[i].name);
    }
    free(own);
}

void hpo_cluster_each_peer(struct hpo_cluster *c, void (*fn)(void *ctx, const char *url),
        void *ctx)
{
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; c->view != NULL && i < c->view->n_live; i++) {
        if (c->view->live[i].id != c->pg.daemon_id) {
            fn(ctx, c->view->live[i].url);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

bool hpo_cluster_live(struct hpo_cluster *c, const char *url)
{
    bool live = false;

    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; c->view != NULL && i < c->view->n_live && !live; i++) {
        live = strcmp(c->view->live[i].url, url) == 0;
    }
    pthread_mutex_unlock(&c->lock);
    return live;
}

const char *hpo_cluster_url(const struct hpo_cluster *c)
{
    return c->url;
}

void hpo_cluster_leave(struct hpo_cluster *c)
{
    if (c != NULL) {
        atomic_store(&c->leaving, true);
    }
}

void hpo_cluster_poke(struct hpo_cluster *c)
{
    pthread_mutex_lock(&c->lock);
    c->poked = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

void hpo_cluster_stop(struct hpo_cluster *c)
{
    struct hpo_error err = { 0 };
    bool started;

    if (c == NULL) {
        return;
    }
    hpo__pg_on_fenced(c->st, NULL, NULL);
    pthread_mutex_lock(&c->lock);
    started = c->started;
    c->stopping = true;
    pthread_cond_broadcast(&c->wake);
    pthread_cond_broadcast(&c->ticked);
    pthread_mutex_unlock(&c->lock);
    if (started) {
        pthread_join(c->thread, NULL);
    }
    /* The last tick, leaving: every study released, this daemon no longer live. */
    atomic_store(&c->leaving, true);
    atomic_store(&c->releasing, true);
    if (tick(c, &err) < 0) {
        /* Not released: the others take them over once the lease ran out. */
        atomic_fetch_add(&c->tick_failures, 1);
    }
    cluster_free(c);
}

void hpo_cluster_stats(struct hpo_cluster *c, struct hpo_cluster_stats *ret)
{
    uint64_t now = mono_us();

    memset(ret, 0, sizeof(*ret));
    pthread_mutex_lock(&c->lock);
    if (c->view != NULL) {
        ret->studies = c->view->n;
        ret->live = c->view->n_live;
        for (size_t i = 0; i < c->view->n; i++) {
            ret->owned += c->view->e[i].owner == c->pg.daemon_id;
        }
    }
    ret->heartbeat_age_ms = c->last_ok_us != 0 && now > c->last_ok_us
            ? (now - c->last_ok_us) / 1000u
            : 0;
    pthread_mutex_unlock(&c->lock);
    ret->lease_ok = ret->heartbeat_age_ms < c->lease_ms;
    ret->claims = atomic_load(&c->claims);
    ret->releases = atomic_load(&c->releases);
    ret->lost = atomic_load(&c->lost);
    ret->ticks = atomic_load(&c->ticks);
    ret->tick_failures = atomic_load(&c->tick_failures);
    ret->fenced = hpo__pg_fenced_writes(c->st);
    ret->daemon_id = c->pg.daemon_id;
    ret->leaving = atomic_load(&c->leaving);
    ret->db_rtt_us = &c->db_rtt_us;
}
