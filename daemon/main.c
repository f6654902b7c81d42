/*
** main.c: hpod's process: configuration, storage, service, the request
** dispatcher, the HTTP server (its own threads, docs/STYLE.md rule 33), and
** the libuv loop for signals, timers (heartbeat reaper, connection sweep,
** systemd watchdog) and the orderly shutdown of docs/STYLE.md rule 37.
*/
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "hpod-config.h"

#include "../api/api.h"
#include "../core/log.h"
#include "../core/clock.h"
#include "../core/history.h"
#include "../service/service.h"
#include "../storage/cluster.h"
#include "../storage/storage.h"
#include "../api/forward.h"
#include "activation.h"
#include "admin.h"
#include "cluster.h"
#include "config.h"
#include "dispatch.h"
#include "metrics.h"
#include "migrate.h"
#include "notify.h"
#include "preflight.h"
#include "security.h"

/* How long a stop waits for requests in flight. */
#define STOP_WAIT_MS 30000

/* How often a stop looks whether requests are still in flight. */
#define STOP_POLL_MS 5

/*
** A study whose recent jobs took less than this on average runs them on the
** HTTP thread that received them while its lane is idle (daemon/dispatch.h).
*/
#define INLINE_MAX_US 2000
/* Several daemons: threads that wait on forwards to other daemons (dispatch.h). */
#define FORWARD_THREADS 16

/* --http-threads 0 (http_threads below): at most this many. */
#define HTTP_THREADS_MAX_AUTO 8

struct daemon {
    uv_loop_t loop;
    struct hpo_config cfg;
    struct hpo_storage *storage;
    struct hpo_service *service;
    struct hpo_api *api;
    struct hpo_dispatch *dispatch;
    uv_timer_t reap_timer;
    uv_timer_t watchdog_timer;
    uv_timer_t stop_timer;
    uint64_t stop_deadline; /* uv_now() after which a stop cuts requests short */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_work_t reap_work;
    bool reaping;
    bool stopping;
    uint64_t watchdog_ticks;
    struct hpo_security sec; /* tokens and TLS (security.h) */
    struct hpo_daemon_cluster cl; /* several daemons on PostgreSQL (cluster.h) */
};

static void submit(void *ctx, struct hpo_job *job)
{
    struct daemon *d = ctx;

    hpo_dispatch_submit(d->dispatch, job);
}

static bool run_inline(void *ctx, struct hpo_job *job)
{
    struct daemon *d = ctx;

    return hpo_dispatch_run_inline(d->dispatch, job);
}

static void release(void *ctx, struct hpo_job *job)
{
    struct daemon *d = ctx;

    hpo_dispatch_release(d->dispatch, job);
}

static bool round_end(void *ctx, void (*wake)(void *loop), void *loop)
{
    struct daemon *d = ctx;

    return hpo_storage_lead(d->storage, wake, loop);
}

static uint64_t round_pending(void *ctx)
{
    (void)ctx;
    return hpo_storage_lead_pending();
}

static bool healthy(void *ctx)
{
    struct daemon *d = ctx;

    return hpo_storage_healthy(d->storage);
}

static int backup(void *ctx, int *ret_fd, uint64_t *ret_size, struct hpo_error *err)
{
    struct daemon *d = ctx;

    /* The snapshot holds every write acknowledged before (the redo log's applied). */
    hpo_storage_settle(d->storage);
    return hpo_admin_backup(d->cfg.db, ret_fd, ret_size, err);
}

static char *metrics(void *ctx, const char *scope)
{
    struct daemon *d = ctx;
    struct hpo_metrics_sources src = { .api = d->api, .service = d->service,
        .storage = d->storage, .version = HPOD_VERSION,
        .max_studies = d->cfg.metrics_max_studies, .scope = scope };
    char *text = hpo_metrics_text(&src);
    char *all = NULL;
    size_t len = 0;
    unsigned waiting, busy;
    FILE *f;

    if (text == NULL || d->cl.cluster == NULL) {
        return text;
    }
    f = open_memstream(&all, &len);
    if (f == NULL) {
        return text;
    }
    fputs(text, f);
    free(text);
    hpo_dispatch_forward_load(d->dispatch, &waiting, &busy);
    fprintf(f, "# HELP hpod_forward_threads_busy Forward threads waiting for another daemon's reply.\n"
               "# TYPE hpod_forward_threads_busy gauge\n"
               "hpod_forward_threads_busy %u\n"
               "# HELP hpod_forward_queue Requests waiting for a free forward thread.\n"
               "# TYPE hpod_forward_queue gauge\n"
               "hpod_forward_queue %u\n", busy, waiting);
    if (hpo_daemon_cluster_metrics(&d->cl, f) < 0 || fclose(f) != 0) {
        free(all);
        return NULL;
    }
    return all;
}

/* Several daemons (cluster.h): where a request is served, and study lists. */
static int route(void *ctx, struct hpo_api_call *call)
{
    struct daemon *d = ctx;

    return d->cl.cluster != NULL ? hpo_daemon_cluster_route(&d->cl, call) : 0;
}

static bool forwarded(void *ctx, const char *mark)
{
    struct daemon *d = ctx;

    return d->cl.cluster != NULL && hpo_daemon_cluster_marked(&d->cl, mark);
}

static void gather(void *ctx, struct hpo_api_call *call, void *reply)
{
    struct daemon *d = ctx;

    if (d->cl.cluster != NULL) {
        hpo_daemon_cluster_gather(&d->cl, call, reply);
    }
}

static void *health(void *ctx)
{
    struct daemon *d = ctx;

    return d->cl.cluster != NULL ? hpo_daemon_cluster_health(&d->cl) : NULL;
}

/*
** Join the other daemons on a PostgreSQL database, as --advertise or the
** URL of --listen (this machine's name for a wildcard address).
*/
static int join_cluster(struct daemon *d)
{
    char url[300], host[256], msg[512];
    const char *scheme = d->sec.tls != NULL ? "https" : "http";
    int r;

    if (!hpo_storage_is_postgresql(d->cfg.db)) {
        return 0; /* SQLite: one daemon per database */
    }
    if (d->cfg.advertise[0] != '\0') {
        snprintf(url, sizeof(url), "%s", d->cfg.advertise);
    } else {
        if (strcmp(d->cfg.host, "0.0.0.0") == 0 || strcmp(d->cfg.host, "::") == 0) {
            if (gethostname(host, sizeof(host)) != 0) {
                snprintf(host, sizeof(host), "localhost");
            }
            host[sizeof(host) - 1] = '\0';
        } else {
            snprintf(host, sizeof(host), "%s", d->cfg.host);
        }
        snprintf(url, sizeof(url), strchr(host, ':') != NULL ? "%s://[%s]:%u" : "%s://%s:%u",
                scheme, host, hpo_api_port(d->api));
    }
    if (d->cfg.cluster_cacert[0] != '\0' && access(d->cfg.cluster_cacert, R_OK) != 0) {
        char eb[128];

        hpo_log(HPO_LOG_ERR, "cluster-cacert: cannot read '%s': %s", d->cfg.cluster_cacert,
                strerror_r(errno, eb, sizeof(eb)));
        return -EINVAL;
    }
    (void)hpo_forward_set_cacert(d->cfg.cluster_cacert);
    r = hpo_daemon_cluster_start(&d->cl, d->storage, d->service, url, d->cfg.lease_ms,
            d->cfg.cluster_token_file, msg, sizeof(msg));
    if (r == -ENOTSUP) {
        return 0;
    }
    if (r < 0) {
        hpo_log(HPO_LOG_ERR, "%s", msg);
        return r;
    }
    hpo_log(HPO_LOG_NOTICE, "serving as %s, one of the daemons on the database", url);
    return 0;
}

/* ---- timers ---------------------------------------------------------------- */

static void reap_work_cb(uv_work_t *w)
{
    struct daemon *d = w->data;
    size_t n;

    if (d->cl.cluster != NULL) {
        /* Studies this daemon came to own are loaded (and reaped); those it lost leave. */
        hpo_daemon_cluster_sync(&d->cl);
    }
    n = hpo_service_reap(d->service, hpo_now_ms());
    if (n > 0) {
        hpo_log(HPO_LOG_NOTICE, "heartbeat reaper failed %zu trial(s)", n);
    }
    /* A big vector no ask reused goes back to the system, with the heap's free tops. */
    if (hpo_point_cache_tick()) {
        (void)malloc_trim(0);
    }
}

static void reap_after_cb(uv_work_t *w, int status)
{
    struct daemon *d = w->data;

    d->reaping = false;
}

static void reap_timer_cb(uv_timer_t *t)
{
    struct daemon *d = t->data;

    if (d->api != NULL && !d->stopping) {
        hpo_api_sweep(d->api);
    }
    if (d->reaping || d->stopping) {
        return;
    }
    d->reaping = true;
    d->reap_work.data = d;
    if (uv_queue_work(&d->loop, &d->reap_work, reap_work_cb, reap_after_cb) != 0) {
        d->reaping = false;
    }
}

static void watchdog_timer_cb(uv_timer_t *t)
{
    struct daemon *d = t->data;
    uint64_t ticks = hpo_storage_ticks(d->storage);

    /* Ping only while the writer thread is alive: a stuck writer stops the pings. */
    if (ticks != d->watchdog_ticks) {
        (void)hpo_notify("WATCHDOG=1");
        d->watchdog_ticks = ticks;
    }
}

/* ---- shutdown ---------------------------------------------------------------- */

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/*
** Every STOP_POLL_MS during a stop: once no request is in flight (none
** suspended for a job, every reply sent) and the reaper is idle, refuse new
** work (hpo_api_close_work) and, if still nothing is in flight, stop: the
** workers first (none has a job left), then MHD's threads, then every handle
** so the loop ends. After STOP_WAIT_MS the stop goes ahead anyway.
*/
static void stop_timer_cb(uv_timer_t *t)
{
    struct daemon *d = t->data;

    if (d->api == NULL) {
        return;
    }
    if (uv_now(&d->loop) < d->stop_deadline) {
        if (hpo_api_inflight(d->api) != 0 || d->reaping) {
            return;
        }
        hpo_api_close_work(d->api);
        if (hpo_api_inflight(d->api) != 0) {
            return; /* a request got in before the door closed: wait for it too */
        }
    } else {
        hpo_log(HPO_LOG_WARNING, "stopping with %zu request(s) still in flight",
                hpo_api_inflight(d->api));
        hpo_api_close_work(d->api);
    }
    uv_timer_stop(&d->stop_timer);
    hpo_dispatch_stop(d->dispatch);
    hpo_api_stop(d->api);
    d->api = NULL;
    hpo_dispatch_detach(d->dispatch);
    uv_walk(&d->loop, close_walk_cb, NULL);
}

static void begin_stop(struct daemon *d, const char *why)
{
    if (d->stopping) {
        return;
    }
    d->stopping = true;
    hpo_log(HPO_LOG_NOTICE, "%s: stopping after in-flight requests", why);
    (void)hpo_notify("STOPPING=1");
    hpo_api_quiesce(d->api);
    if (d->cl.cluster != NULL) {
        /* Its studies go to the others: new requests are forwarded while these drain. */
        hpo_cluster_leave(d->cl.cluster);
    }
    uv_timer_stop(&d->reap_timer);
    uv_timer_stop(&d->watchdog_timer);
    /* A deadline: requests still in flight after it are cut short. */
    d->stop_deadline = uv_now(&d->loop) + STOP_WAIT_MS;
    uv_timer_start(&d->stop_timer, stop_timer_cb, 0, STOP_POLL_MS);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;

    if (signum == SIGHUP) {
        struct hpo_config fresh;
        char msg[512];
        /* The tokens file and the TLS pair first: a broken config file must not keep them. */
        hpo_security_reload(&d->sec, &d->cfg, d->api);
        /* Reload what is reloadable: the log level, from the config file. */
        fresh = d->cfg;
        if (d->cfg.config_file[0] != '\0') {
            char *argv[] = { (char *)"hpod", (char *)"--config", d->cfg.config_file, NULL };
            if (hpo_config_load(&fresh, 3, argv, msg, sizeof(msg)) < 0) {
                hpo_log(HPO_LOG_WARNING, "SIGHUP: %s, keeping the running configuration", msg);
                return;
            }
        }
        hpo_log_set_level((enum hpo_log_level)fresh.log_level);
        d->cfg.log_level = fresh.log_level;
        hpo_log(HPO_LOG_NOTICE, "SIGHUP: configuration reloaded");
        return;
    }
    begin_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int start_handles(struct daemon *d)
{
    uint64_t wd = hpo_notify_watchdog_usec();

    uv_timer_init(&d->loop, &d->reap_timer);
    d->reap_timer.data = d;
    uv_timer_start(&d->reap_timer, reap_timer_cb, 1000, 1000);
    uv_timer_init(&d->loop, &d->watchdog_timer);
    d->watchdog_timer.data = d;
    if (wd > 0) {
        uint64_t ms = wd / 2000 > 0 ? wd / 2000 : 1;
        uv_timer_start(&d->watchdog_timer, watchdog_timer_cb, ms, ms);
    }
    uv_timer_init(&d->loop, &d->stop_timer);
    d->stop_timer.data = d;
    uv_signal_init(&d->loop, &d->sig_term);
    uv_signal_init(&d->loop, &d->sig_int);
    uv_signal_init(&d->loop, &d->sig_hup);
    d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
    uv_signal_start(&d->sig_term, signal_cb, SIGTERM);
    uv_signal_start(&d->sig_int, signal_cb, SIGINT);
    uv_signal_start(&d->sig_hup, signal_cb, SIGHUP);
    return 0;
}

/*
** Vectors, request bodies and sampler states are big mmapped blocks; with
** transparent huge pages in `madvise` mode (Debian's default) glibc asks for
** huge pages on them only when the tunable glibc.malloc.hugetlb=1 is set
** at start, which takes 512 times fewer page faults to fill them (a third
** of a 10^6-element gradient round trip otherwise). Tunables are read only
** at exec, so run again once with it; HPOD_NO_REEXEC=1 turns this off.
*/
static void reexec_with_huge_pages(char **argv)
{
    static const char want[] = "glibc.malloc.hugetlb=1";
    const char *cur = getenv("GLIBC_TUNABLES");
    const char *off = getenv("HPOD_NO_REEXEC");
    char val[1024];
    int n;

    if ((off != NULL && strcmp(off, "0") != 0) ||
            (cur != NULL && strstr(cur, "glibc.malloc.hugetlb") != NULL)) {
        return;
    }
    n = cur != NULL && cur[0] != '\0' ? snprintf(val, sizeof(val), "%s:%s", cur, want)
                                       : snprintf(val, sizeof(val), "%s", want);
    if (n < 0 || (size_t)n >= sizeof(val) || setenv("GLIBC_TUNABLES", val, 1) < 0) {
        return;
    }
    /* The marker keeps a loop away should this glibc drop the tunable. */
    if (setenv("HPOD_NO_REEXEC", "1", 1) == 0) {
        execv("/proc/self/exe", argv);
    }
    /* Not possible here (no /proc): go on as we are. */
    if (cur != NULL) {
        setenv("GLIBC_TUNABLES", cur, 1);
    } else {
        unsetenv("GLIBC_TUNABLES");
    }
    unsetenv("HPOD_NO_REEXEC");
}

/*
** The kernel names a process after the file it executes, "exe" after the
** re-exec through /proc/self/exe: name it after argv[0] again, so that
** pgrep, top and ps show hpod (argv itself went through the exec unchanged).
*/
static void keep_name(const char *argv0)
{
    const char *base = strrchr(argv0, '/');
    char name[16];

    snprintf(name, sizeof(name), "%s", base != NULL ? base + 1 : argv0);
    if (name[0] != '\0') {
        (void)prctl(PR_SET_NAME, name, 0, 0, 0);
    }
}

/*
** MHD's threads: --http-threads, or one per CPU core on PostgreSQL and one
** per two cores on SQLite (at least one, at most HTTP_THREADS_MAX_AUTO).
** On SQLite the redo log's applier thread does the database's work of the
** requests those threads answer (docs/DESIGN.md "The redo log"): on 2
** cores one HTTP thread served `normal` as fast as two and `full` 20-35%
** faster (their inline flushes of one file no longer contend).
*/
static unsigned http_threads(const struct hpo_config *cfg)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (cfg->http_threads > 0) {
        return (unsigned)cfg->http_threads;
    }
    if (n > 1 && !hpo_storage_is_postgresql(cfg->db)) {
        n /= 2;
    }
    if (n < 1) {
        return 1;
    }
    return n > HTTP_THREADS_MAX_AUTO ? HTTP_THREADS_MAX_AUTO : (unsigned)n;
}

/*
** The cap on memory held by big vectors (core/history.h): the configured
** one, else half the physical memory.
*/
static uint64_t vector_memory_cap(const struct hpo_config *cfg)
{
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);

    if (cfg->max_vector_memory != 0) {
        return cfg->max_vector_memory;
    }
    if (pages <= 0 || page <= 0) {
        return UINT64_MAX;
    }
    return (uint64_t)pages * (uint64_t)page / 2;
}

int main(int argc, char **argv)
{
    static struct daemon d;
    struct hpo_storage_options sopt = { 0 };
    struct hpo_service_options svopt = { 0 };
    struct hpo_api_config acfg = { 0 };
    struct hpo_error err = { 0 };
    char msg[1024], status[256];
    const char *delay;
    int r, rc = 0, listen_fd;
    bool served = false; /* it ran, and stopped as asked */

    reexec_with_huge_pages(argv);
    keep_name(argv[0]);
    /*
    ** Large buffers (vectors, request bodies, sampler states) are mmapped and
    ** go back to the kernel when freed; glibc's default raises the threshold
    ** after the first big free and then keeps such blocks in its arenas.
    */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    /* A file-size limit (LimitFSIZE=) makes a write fail with EFBIG (503), not kill hpod. */
    signal(SIGXFSZ, SIG_IGN);
    json_object_seed(0);
    if (argc >= 2 && strcmp(argv[1], "migrate") == 0) {
        return hpo_migrate_main(argc - 1, argv + 1);
    }
    r = hpo_security_new_token(argc, argv);
    if (r >= 0) {
        return r;
    }
    if (hpo_config_load(&d.cfg, argc, argv, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "hpod: %s\n", msg);
        return 2;
    }
    if (d.cfg.show_help) {
        hpo_config_usage(argv[0]);
        return 0;
    }
    if (d.cfg.show_version) {
        printf("hpod %s\n", HPOD_VERSION);
        return 0;
    }
    /*
    ** A socket passed by systemd replaces --listen (its address decides the
    ** loopback rule). It is already bound, often to the very address
    ** --listen names (hpod.socket and hpod.conf both say 127.0.0.1:8080), so
    ** then no bind is tried.
    */
    listen_fd = hpo_activation_listen_fd(d.cfg.host, sizeof(d.cfg.host), &d.cfg.port, msg,
            sizeof(msg));
    if (listen_fd == -EINVAL) {
        fprintf(stderr, "hpod: %s\n", msg);
        return 2;
    }
    /*
    ** What the daemon needs before it creates anything: an address it can
    ** bind (only whether it is this machine's for --check-config, as the
    ** running daemon may hold the port; none for a passed socket) and a
    ** database it can open.
    */
    if ((listen_fd < 0 && hpo_preflight_listen(d.cfg.host, d.cfg.check_only ? 0 : d.cfg.port,
                                  msg, sizeof(msg)) < 0) ||
            hpo_preflight_db(d.cfg.db, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "hpod: %s\n", msg);
        return 2;
    }
    if (d.cfg.check_only) {
        /* The tokens file, the TLS pair and the loopback rule, loaded as at start. */
        if (hpo_security_start(&d.sec, &d.cfg, msg, sizeof(msg)) < 0) {
            fprintf(stderr, "hpod: %s\n", msg);
            return 2;
        }
        hpo_security_finish(&d.sec);
        printf("configuration ok\n");
        return 0;
    }
    /* One daemon per database; held until the process ends. */
    r = hpo_preflight_lock(d.cfg.db, msg, sizeof(msg));
    if (r < 0) {
        hpo_log(HPO_LOG_ERR, "%s", msg);
        return 1;
    }
    hpo_vector_memory_set_cap(vector_memory_cap(&d.cfg));
    hpo_log_set_level((enum hpo_log_level)d.cfg.log_level);
    if (hpo_security_start(&d.sec, &d.cfg, msg, sizeof(msg)) < 0) {
        hpo_log(HPO_LOG_ERR, "%s", msg);
        return 2;
    }
    /*
    ** libuv's pool runs only the reaper's pass (requests run on the
    ** dispatcher's own workers); set before the first uv_queue_work.
    */
    setenv("UV_THREADPOOL_SIZE", "1", 1);
    delay = secure_getenv("HPOD_TEST_SUGGEST_DELAY_MS");
    if (delay != NULL) {
        svopt.suggest_delay_ms = (unsigned)strtoul(delay, NULL, 10);
    }
    svopt.db_path = d.cfg.db;
    sopt.synchronous_full = d.cfg.synchronous_full;
    r = hpo_storage_open(d.cfg.db, &sopt, &d.storage, &err);
    if (r < 0) {
        hpo_log(HPO_LOG_ERR, "cannot open database '%s': %s", d.cfg.db, err.message);
        return 1;
    }
    r = hpo_service_create(d.storage, &svopt, &d.service, &err);
    if (r < 0) {
        hpo_log(HPO_LOG_ERR, "cannot load database '%s': %s", d.cfg.db, err.message);
        hpo_storage_close(d.storage);
        return 1;
    }
    uv_loop_init(&d.loop);
    /*
    ** On PostgreSQL a worker waits on the database's round trips, so the
    ** dispatcher gets workers for waiting beside those for working; a
    ** request that may be forwarded to another daemon waits for it on a
    ** forward thread (dispatch.h: with forwards on the workers, two daemons
    ** each forwarding more requests to the other than it has workers served
    ** neither side's until the forwards timed out).
    */
    r = hpo_dispatch_create((unsigned)d.cfg.threads + (hpo_storage_is_postgresql(d.cfg.db) ? 16u : 0u),
            INLINE_MAX_US, &d.dispatch);
    if (r == 0 && hpo_storage_is_postgresql(d.cfg.db)) {
        /* Forwards wait on threads of their own: the workers serve forwarded requests. */
        r = hpo_dispatch_forwarders(d.dispatch, FORWARD_THREADS);
    }
    if (r < 0) {
        char eb[128];
        hpo_log(HPO_LOG_ERR, "cannot set up the request dispatcher: %s",
                strerror_r(-r, eb, sizeof(eb)));
        rc = 1;
        goto out_service;
    }
    if (d.cfg.synchronous_full) {
        /* The pipelined flush (SQLite, PostgreSQL): replies wait for it on the dispatcher. */
        hpo_dispatch_hold_replies(d.dispatch, d.storage);
    }
    /* A study's next request runs while its last write commits (dispatch.h). */
    hpo_dispatch_pipeline(d.dispatch, d.storage);
    if (!hpo_storage_is_postgresql(d.cfg.db)) {
        /*
        ** The HTTP threads commit each round's writes at its end (STYLE rule
        ** 33); under synchronous full a flusher's fdatasync then releases
        ** the replies (storage/sqlite.c, api/loops.h: hpo__loops_hold).
        */
        hpo_dispatch_round_commits(d.dispatch);
    }
    acfg.host = d.cfg.host;
    acfg.port = d.cfg.port;
    acfg.listen_fd = listen_fd;
    acfg.json_limit = d.cfg.json_limit;
    acfg.binary_limit = d.cfg.binary_limit;
    acfg.connection_limit = d.cfg.access.max_connections;
    acfg.connection_timeout_s = d.cfg.access.idle_timeout_s;
    acfg.per_client_limit = hpo_access_per_client(&d.cfg.access);
    acfg.head_timeout_s = d.cfg.access.head_timeout_s;
    acfg.http_threads = http_threads(&d.cfg);
    acfg.tokens = d.sec.tokens;
    acfg.tls = d.sec.tls;
    acfg.service = d.service;
    acfg.version = HPOD_VERSION;
    acfg.slow_request_ms = d.cfg.slow_request_ms;
    acfg.submit = submit;
    /*
    ** On PostgreSQL a study may be owned by another daemon and its request
    ** forwarded (a wait): such requests never run on an HTTP thread.
    */
    acfg.run_inline = hpo_storage_is_postgresql(d.cfg.db) ? NULL : run_inline;
    acfg.release = release;
    acfg.round_end = round_end;
    acfg.round_pending = round_pending;
    acfg.round_replies = !hpo_storage_is_postgresql(d.cfg.db);
    acfg.round_flush = acfg.round_replies && d.cfg.synchronous_full;
    acfg.healthy = healthy;
    acfg.metrics = metrics;
    acfg.backup = backup;
    if (hpo_storage_is_postgresql(d.cfg.db)) {
        acfg.route = route;
        acfg.forwarded = forwarded;
        acfg.gather = gather;
        acfg.health = health;
    }
    acfg.ctx = &d;
    /* Under full, a round's end flushes on its HTTP thread unless work waits there. */
    hpo_storage_lead_busy(hpo_api_ready_here);
    r = hpo_api_start(&acfg, &d.api, &err);
    if (r < 0) {
        hpo_log(HPO_LOG_ERR, "%s", err.message);
        rc = 1;
        goto out_service;
    }
    if (join_cluster(&d) < 0) {
        hpo_api_stop(d.api);
        d.api = NULL;
        rc = 1;
        goto out_service;
    }
    start_handles(&d);
    if (strchr(d.cfg.host, ':') != NULL) {
        snprintf(status, sizeof(status), "listening on [%s]:%u", d.cfg.host, hpo_api_port(d.api));
        hpo_log(HPO_LOG_NOTICE, "listening on %s://[%s]:%u (db %s)", d.sec.tls ? "https" : "http",
                d.cfg.host, hpo_api_port(d.api), d.cfg.db);
    } else {
        snprintf(status, sizeof(status), "listening on %s:%u", d.cfg.host, hpo_api_port(d.api));
        hpo_log(HPO_LOG_NOTICE, "listening on %s://%s:%u (db %s)", d.sec.tls ? "https" : "http",
                d.cfg.host, hpo_api_port(d.api), d.cfg.db);
    }
    {
        char note[300];
        snprintf(note, sizeof(note), "READY=1\nSTATUS=%s", status);
        (void)hpo_notify(note);
    }
    uv_run(&d.loop, UV_RUN_DEFAULT);
    if (d.api != NULL) {
        hpo_api_stop(d.api);
    }
    r = uv_loop_close(&d.loop);
    if (r != 0) {
        hpo_log(HPO_LOG_WARNING, "event loop closed with open handles, ignoring");
    }
    served = true;
out_service:
    hpo_daemon_cluster_stop(&d.cl);
    hpo_dispatch_destroy(d.dispatch);
    hpo_storage_close(d.storage);
    hpo_service_destroy(d.service);
    hpo_security_finish(&d.sec);
    if (served) {
        /* (After the storage's close: its last warnings, a redo log left unapplied, come first.) */
        hpo_log(HPO_LOG_NOTICE, "stopped");
    }
    return rc;
}
