/*
** parallel.h: split an elementwise loop over a few threads.
**
** For the per-coordinate work on vectors of up to millions of elements
** (decoding a gradient study's iterate, an optimizer step): each element is
** computed the same way whichever thread runs it, so results do not depend on
** the split. Loops below the grain run on the caller alone.
*/
#ifndef HPO_CORE_PARALLEL_H
#define HPO_CORE_PARALLEL_H

#include <stddef.h>

/*
** Run fn(ctx, lo, hi) over disjoint ranges covering [0, n): on the calling
** thread plus up to (online CPUs - 1, at most 3) short-lived threads, each
** range at least `grain` elements. fn must only touch its own range's
** outputs. If a thread cannot be started its range runs on the caller.
*/
void hpo_parallel_for(size_t n, size_t grain, void (*fn)(void *ctx, size_t lo, size_t hi),
        void *ctx);

/* The grain the vector loops use: below it a thread costs more than it saves. */
#define HPO_PARALLEL_GRAIN ((size_t)1 << 17)

#endif
