/*
** metrics.h: the text of GET /metrics (Prometheus text format 0.0.4): the
** HTTP server's series, studies and trials, storage commits, build info
** and the standard process_* series.
*/
#ifndef HPO_DAEMON_METRICS_H
#define HPO_DAEMON_METRICS_H

struct hpo_api;
struct hpo_service;
struct hpo_storage;

struct hpo_metrics_sources {
    struct hpo_api *api;         /* borrowed, like the rest */
    struct hpo_service *service;
    struct hpo_storage *storage;
    const char *version;
    unsigned max_studies; /* studies with their own hpod_study_trials series */
    const char *scope;    /* only studies whose names start with it (a token's prefix); "" all */
};

/*
** The whole exposition as a new malloc'd string, or NULL on OOM. Loop
** thread (the HTTP server's part asks MHD for its connection count).
*/
char *hpo_metrics_text(const struct hpo_metrics_sources *src);

#endif
