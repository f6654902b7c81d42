/*
** histogram.c: fixed-bucket atomic histograms (histogram.h).
*/
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "histogram.h"

void hpo_hist_init(struct hpo_hist *h, const uint64_t *le, unsigned n_le)
{
    h->le = le;
    h->n_le = n_le > HPO_HIST_MAX_BOUNDS ? HPO_HIST_MAX_BOUNDS : n_le;
    for (unsigned i = 0; i <= HPO_HIST_MAX_BOUNDS; i++) {
        atomic_init(&h->bucket[i], 0);
    }
    atomic_init(&h->sum, 0);
}

void hpo_hist_observe(struct hpo_hist *h, uint64_t v)
{
    unsigned b = 0;

    /* At most 16 compares against one cache line of bounds: cheaper than a search. */
    while (b < h->n_le && v > h->le[b]) {
        b++;
    }
    atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

uint64_t hpo_hist_count(const struct hpo_hist *h)
{
    uint64_t n = 0;

    for (unsigned i = 0; i <= h->n_le; i++) {
        n += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    }
    return n;
}

int hpo_hist_write(FILE *f, const char *name, const char *labels, const struct hpo_hist *h,
        double unit)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t snap[HPO_HIST_MAX_BOUNDS + 1];
    uint64_t cum = 0, sum;

    for (unsigned i = 0; i <= h->n_le; i++) {
        snap[i] = atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    }
    sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
    for (unsigned i = 0; i < h->n_le; i++) {
        cum += snap[i];
        fprintf(f, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
                (double)h->le[i] / unit, cum);
    }
    cum += snap[h->n_le];
    fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, cum);
    if (labels[0] != '\0') {
        fprintf(f, "%s_sum{%s} %.15g\n%s_count{%s} %" PRIu64 "\n", name, labels,
                (double)sum / unit, name, labels, cum);
    } else {
        fprintf(f, "%s_sum %.15g\n%s_count %" PRIu64 "\n", name, (double)sum / unit, name, cum);
    }
    return ferror(f) ? -EIO : 0;
}
