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
** Run fn(ctx, lo, hi) over disjoint ranges covering [0, n): k = min(n /
** grain, usable CPUs, 4) ranges of n / k elements (the last takes the
** rest), so each is at least `grain`; k <= 1 runs fn(ctx, 0, n) on the
** caller. The caller runs the first range and kept worker threads (started
** on first use, up to k - 1, signals blocked, idle between calls) run the
** others; the caller takes any range no worker has started. Returns when
** every range is done. Any thread may call, also from inside fn: while
** another call uses the workers, this one runs its ranges on its own
** thread, in order (the same ranges). fn must only touch its own range's
** outputs. If a worker cannot be started its ranges run on the caller.
*/
void hpo_parallel_for(size_t n, size_t grain, void (*fn)(void *ctx, size_t lo, size_t hi),
        void *ctx);

/* The grain the vector loops use: below it a thread costs more than it saves. */
#define HPO_PARALLEL_GRAIN ((size_t)1 << 17)

#endif
