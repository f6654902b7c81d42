/*
** fuzz.h: what every fuzz target shares: the libFuzzer entry point's
** prototype and CHECK(), which aborts with the broken invariant (libFuzzer
** and the corpus replay both report an abort as a failure).
*/
#ifndef HPO_TESTS_FUZZ_H
#define HPO_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void fuzz_check_failed(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    abort();
}

#define check_failed(what) fuzz_check_failed(__FILE__, __LINE__, (what))

#define CHECK(cond)                      \
    do {                                 \
        if (!(cond)) {                   \
            check_failed(#cond);         \
        }                                \
    } while (0)

#endif
