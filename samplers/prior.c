/*
** prior.c: freeing the prior studies of a warm start (prior.h).
*/
#include <stdlib.h>

#include "prior.h"

void hpo_prior_free(struct hpo_prior *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t k = 0; k < p->n_studies; k++) {
        free(p->studies[k].values);
        free(p->studies[k].unit);
        free(p->studies[k].loss);
    }
    free(p->studies);
    free(p);
}
