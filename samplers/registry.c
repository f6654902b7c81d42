/*
** registry.c: every sampler type, by name. A new sampler is one line here.
** Also the helpers several samplers share (sampler.h).
*/
#include <pthread.h>
#include <string.h>

#include <cblas.h>

#include "../core/history.h"
#include "sampler.h"

const struct hpo_sampler_type *const hpo_sampler_types[] = {
    &hpo_sampler_random,
    &hpo_sampler_tpe,
    &hpo_sampler_gradient,
    &hpo_sampler_gp,
    &hpo_sampler_qmc,
    &hpo_sampler_cmaes,
    &hpo_sampler_nsga2,
    NULL,
};

const struct hpo_sampler_type *hpo_sampler_find(const char *name)
{
    for (size_t i = 0; hpo_sampler_types[i] != NULL; i++) {
        if (strcmp(hpo_sampler_types[i]->name, name) == 0) {
            return hpo_sampler_types[i];
        }
    }
    return NULL;
}

int64_t hpo_sampler_asked_number(const struct hpo_history *h)
{
    if (h->count[HPO_STATE_WAITING] > 0) {
        for (size_t i = 0; i < h->n_trials; i++) {
            if (h->trials[i]->state == HPO_STATE_WAITING) {
                return (int64_t)i;
            }
        }
    }
    return (int64_t)h->n_trials;
}

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_one_thread(void)
{
    openblas_set_num_threads(1);
}

void hpo_sampler_blas_single_thread(void)
{
    pthread_once(&blas_once, blas_one_thread);
}
