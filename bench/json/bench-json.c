/*
** bench-json.c: the cost of serializing one reply object, jansson's
** json_dumps(JSON_COMPACT | JSON_REAL_PRECISION(17)) (the reply path before)
** against hpo_json_dumps (shortest round-trip numbers, the reply path now).
**
** The objects are trials as ask/tell answer them: 4 params (two random
** floats, an int, a categorical), a random value, 3 intermediate values,
** RFC 3339 timestamps. Half the floats are "user" numbers (0.1, 0.35), half
** random doubles that need 16-17 digits. Prints ns per object for each.
**
** Built by bench/json/run.py: cc -O2 bench-json.c ../../core/jsonw.c -I../../core $(pkg-config --cflags --libs jansson) -lm
** Usage: bench-json [objects] [rounds]
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "jsonw.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005u + 1442695040888963407u;
    return (double)(*s >> 11) * 0x1.0p-53;
}

static json_t *trial(uint64_t *s, int k)
{
    static const double user[] = { 0.1, 0.35, 1e-5, 0.05, 3.0, 0.001 };
    double x = k % 2 ? user[k % 6] : uniform(s);
    json_t *inter = json_array();

    for (int i = 0; i < 3; i++) {
        json_array_append_new(inter, json_pack("{s:i,s:f}", "step", i, "value", uniform(s)));
    }
    return json_pack("{s:s,s:i,s:s,s:{s:f,s:f,s:i,s:s},s:f,s:o,s:{},s:s,s:n,s:s,s:s,s:s,s:s}",
            "study", "bench", "number", k, "state", "complete", "params", "x", x, "lr",
            1e-5 * (1.0 + uniform(s) * 1e4), "layers", k % 7, "act", "relu", "value",
            k % 2 ? user[(k + 1) % 6] : uniform(s), "intermediate", inter, "user_attrs",
            "worker", "w1", "retry_of", "created_at", "2026-12-06T04:13:51.123Z", "started_at",
            "2026-12-06T04:13:51.124Z", "completed_at", "2026-12-06T04:13:52.200Z",
            "heartbeat_at", "2026-12-06T04:13:52.000Z");
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
    int rounds = argc > 2 ? atoi(argv[2]) : 50;
    json_t **objs = calloc(n, sizeof(*objs));
    uint64_t s = 42;
    size_t bytes_a = 0, bytes_b = 0;
    double best_a = 1e30, best_b = 1e30;

    for (size_t i = 0; i < n; i++) {
        objs[i] = trial(&s, (int)i);
    }
    for (int r = 0; r < rounds; r++) {
        double t0 = now_s(), t1, t2;
        bytes_a = bytes_b = 0;
        for (size_t i = 0; i < n; i++) {
            char *t = json_dumps(objs[i], JSON_COMPACT | JSON_REAL_PRECISION(17));
            bytes_a += strlen(t);
            free(t);
        }
        t1 = now_s();
        for (size_t i = 0; i < n; i++) {
            size_t len;
            char *t = hpo_json_dumps(objs[i], &len);
            bytes_b += len;
            free(t);
        }
        t2 = now_s();
        best_a = t1 - t0 < best_a ? t1 - t0 : best_a;
        best_b = t2 - t1 < best_b ? t2 - t1 : best_b;
    }
    printf("objects=%zu rounds=%d (best round)\n", n, rounds);
    printf("jansson %%.17g:       %7.0f ns/object  %5.0f bytes/object\n", best_a * 1e9 / (double)n,
            (double)bytes_a / (double)n);
    printf("hpo_json_dumps:      %7.0f ns/object  %5.0f bytes/object\n", best_b * 1e9 / (double)n,
            (double)bytes_b / (double)n);
    {
        /* One double: printf's %.17g, the shortest text, and the 3-printf reference. */
        enum { N = 100000 };
        static double xs[N];
        char buf[64];
        double best[3] = { 1e30, 1e30, 1e30 };
        volatile size_t sink = 0;
        for (size_t i = 0; i < N; i++) {
            xs[i] = i % 2 ? uniform(&s) : (double)(i % 1000) / 100.0;
        }
        for (int r = 0; r < 5; r++) {
            double t[4];
            t[0] = now_s();
            for (size_t i = 0; i < N; i++) {
                sink += (size_t)snprintf(buf, sizeof(buf), "%.17g", xs[i]);
            }
            t[1] = now_s();
            for (size_t i = 0; i < N; i++) {
                sink += hpo_format_double(buf, xs[i]);
            }
            t[2] = now_s();
            for (size_t i = 0; i < N; i++) {
                sink += hpo__format_double_reference(buf, xs[i]);
            }
            t[3] = now_s();
            for (int k = 0; k < 3; k++) {
                best[k] = t[k + 1] - t[k] < best[k] ? t[k + 1] - t[k] : best[k];
            }
        }
        printf("one double (half random, half short decimals): %%.17g %.0f ns, "
                "hpo_format_double %.0f ns, 3-printf reference %.0f ns\n", best[0] * 1e9 / N,
                best[1] * 1e9 / N, best[2] * 1e9 / N);
    }
    for (size_t i = 0; i < n; i++) {
        json_decref(objs[i]);
    }
    free(objs);
    return 0;
}
