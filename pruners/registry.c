/*
** registry.c: every pruner type, by name. A new pruner is one line here.
*/
#include <string.h>

#include "pruner.h"

const struct hpo_pruner_type *const hpo_pruner_types[] = {
    &hpo_pruner_none,
    &hpo_pruner_median,
    &hpo_pruner_percentile,
    &hpo_pruner_asha,
    &hpo_pruner_hyperband,
    NULL,
};

const struct hpo_pruner_type *hpo_pruner_find(const char *name)
{
    for (size_t i = 0; hpo_pruner_types[i] != NULL; i++) {
        if (strcmp(hpo_pruner_types[i]->name, name) == 0) {
            return hpo_pruner_types[i];
        }
    }
    return NULL;
}
