/*
** cluster.h: several hpod daemons on one PostgreSQL database (docs/CLUSTER.md):
** membership (a heartbeat on the database's clock), the owner of each study
** (rendezvous hashing with bounded loads over the live daemons, placement.h;
** claimed with a fencing epoch), and the view every request is routed by.
**
** A thread of its own, on a connection of its own, runs a tick every
** `tick_ms`: it renews this daemon's heartbeat, reads the live daemons and
** the owners, claims the studies placed on it whose owner is gone
** (heartbeat older than the lease, or its writer session closed), hands
** over those placed on another daemon (one that joined, or one below its
** share), and forgets (unfences) those another daemon took. The routing view it publishes is read by any thread.
*/
#ifndef HPO_CLUSTER_H
#define HPO_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/histogram.h"

struct hpo_storage;
struct hpo_cluster;

struct hpo_cluster_options {
    const char *url;   /* how the other daemons reach this one (--advertise) */
    unsigned lease_ms; /* a daemon without a heartbeat this long is gone (3000) */
    unsigned tick_ms;  /* heartbeat period (1000) */
};

/*
** Start membership on an opened PostgreSQL store (not exclusive): publish
** `url`, run the first tick (so the view is ready), start the thread.
** Returns 0 and a new cluster; -ENOTSUP for SQLite and exclusive stores;
** or a negative errno with `err`.
*/
int hpo_cluster_start(struct hpo_storage *st, const struct hpo_cluster_options *opt,
        struct hpo_cluster **ret, struct hpo_error *err);

enum hpo_cluster_where {
    HPO_CLUSTER_HERE,    /* this daemon owns the study, at *ret_epoch */
    HPO_CLUSTER_THERE,   /* another daemon does: its URL (empty: none reachable now) */
    HPO_CLUSTER_UNKNOWN, /* the view has no such study (new, or none) */
    /*
    ** hpo_cluster_lookup only: the view has no such study, and no tick
    ** went through since the call (the owners could not be read): it may
    ** exist all the same.
    */
    HPO_CLUSTER_UNSURE,
};

/* Where study `name` is served, by the last view. Any thread. */
enum hpo_cluster_where hpo_cluster_locate(struct hpo_cluster *c, const char *name,
        int64_t *ret_epoch, char *url, size_t url_len);

/*
** Whether the last view (within the lease) names another owner, or none,
** for study `name`: it was handed over, taken over or fenced since this
** daemon found it here. Any thread; never waits.
*/
bool hpo_cluster_moved(struct hpo_cluster *c, const char *name);

/*
** Look study `name` up in the database now (a study the view does not know
** yet), claiming it when it has no live owner and this daemon is preferred;
** then locate it as above (HPO_CLUSTER_UNSURE instead of UNKNOWN when the
** ticks since the call failed). Blocks on the database: a worker thread.
*/
enum hpo_cluster_where hpo_cluster_lookup(struct hpo_cluster *c, const char *name,
        int64_t *ret_epoch, char *url, size_t url_len);

/*
** Wait until a tick that started after this call is done (at most 3 s): the
** view, and the studies this daemon owns, are the database's of now (a
** study list). Blocks on the database: a worker thread.
*/
void hpo_cluster_refresh(struct hpo_cluster *c);

/*
** Call fn(ctx, name) for each study of the view whose owner is live (a
** study list should hold it), under the view's lock: fn must not block or
** call back. Any thread.
*/
void hpo_cluster_each_served(struct hpo_cluster *c, void (*fn)(void *ctx, const char *name),
        void *ctx);

/*
** The daemon a new study named `name` goes to (placement.h, over the live
** daemons' studies in the view and the creates sent since): true when it is
** this one, else false with its URL. Counts the create. Any thread.
*/
bool hpo_cluster_preferred(struct hpo_cluster *c, const char *name, char *url, size_t url_len);

/*
** Call fn(ctx, name, epoch) for each study this daemon owns (from a copy of
** the view: fn may block). Any thread.
*/
void hpo_cluster_each_owned(struct hpo_cluster *c,
        void (*fn)(void *ctx, const char *name, int64_t epoch), void *ctx);

/* Call fn(ctx, url) for each live daemon but this one (a study list's gathering). */
void hpo_cluster_each_peer(struct hpo_cluster *c, void (*fn)(void *ctx, const char *url),
        void *ctx);

/* Whether the daemon at `url` is live in the last view. Any thread. */
bool hpo_cluster_live(struct hpo_cluster *c, const char *url);

/* This daemon's advertised URL (borrowed for the cluster's life). */
const char *hpo_cluster_url(const struct hpo_cluster *c);

/*
** SIGTERM, first step: stop serving (locate never answers HERE again), so
** new requests go to the others while those in flight drain. Any thread.
*/
void hpo_cluster_leave(struct hpo_cluster *c);

/* Wake the thread for a tick now (a write was fenced). Any thread. */
void hpo_cluster_poke(struct hpo_cluster *c);

/*
** Stop: release every study this daemon owns (the next owners load them),
** mark the daemon gone, join the thread, free. Accepts NULL. After the last
** request finished.
*/
void hpo_cluster_stop(struct hpo_cluster *c);

struct hpo_cluster_stats {
    size_t owned;         /* studies this daemon owns */
    size_t studies;       /* studies in the view */
    size_t live;          /* live daemons, this one included */
    uint64_t claims, releases, lost, ticks, tick_failures;
    uint64_t fenced;      /* writes refused by fencing */
    int64_t daemon_id;
    bool lease_ok;        /* the last heartbeat went through within the lease */
    uint64_t heartbeat_age_ms; /* since the last heartbeat that went through */
    bool leaving;
    const struct hpo_hist *db_rtt_us; /* the heartbeat's round trip (borrowed) */
};
void hpo_cluster_stats(struct hpo_cluster *c, struct hpo_cluster_stats *ret);

#endif
