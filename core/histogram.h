/*
** histogram.h: fixed-bucket histograms for /metrics, cheap on the hot path
** (one relaxed atomic add per bucket and one for the sum; no lock), and
** their Prometheus text form.
*/
#ifndef HPO_HISTOGRAM_H
#define HPO_HISTOGRAM_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

/* The most finite bucket bounds a histogram may have (plus +Inf). */
#define HPO_HIST_MAX_BOUNDS 16

struct hpo_hist {
    const uint64_t *le; /* finite upper bounds, ascending, in observation units (borrowed) */
    unsigned n_le;      /* how many (<= HPO_HIST_MAX_BOUNDS); bucket n_le is +Inf */
    atomic_uint_fast64_t bucket[HPO_HIST_MAX_BOUNDS + 1]; /* per bucket, not cumulative */
    atomic_uint_fast64_t sum;                              /* of observations */
};

/*
** Set up `h` with `n_le` bounds (borrowed: static storage). Not thread-safe;
** call before the histogram is shared.
*/
void hpo_hist_init(struct hpo_hist *h, const uint64_t *le, unsigned n_le);

/* Count one observation `v` (in the units of `le`). Thread-safe, lock-free. */
void hpo_hist_observe(struct hpo_hist *h, uint64_t v);

/*
** Observations so far: the sum of the buckets, so it always equals what
** hpo_hist_write prints as the +Inf bucket and _count. Thread-safe.
*/
uint64_t hpo_hist_count(const struct hpo_hist *h);

/*
** Write the series of one histogram in Prometheus text format 0.0.4:
** name_bucket{labels,le="..."} (cumulative), name_sum, name_count. `labels`
** is "" or `key="value",...` without braces (already escaped). Bounds and
** the sum are divided by `unit` (1e6 for microseconds shown as seconds).
** One snapshot of the buckets is taken, so the +Inf bucket equals _count.
** Thread-safe. Returns 0, or -EIO when the stream failed.
*/
int hpo_hist_write(FILE *f, const char *name, const char *labels, const struct hpo_hist *h,
        double unit);

#endif
