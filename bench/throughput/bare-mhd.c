/*
** bare-mhd.c: the yardstick of bench/throughput: a bare libmicrohttpd server
** answering every request with a fixed JSON body (201 to a path ending in
** "/ask", else 200), with no routing, parsing, storage or logging. The
** benchmark drives it with the same load generator as hpod, so hpod's figure
** over this one is the share of the machine's HTTP limit hpod reaches.
**
** A fair yardstick is libmicrohttpd as hpod runs it, minus hpod's own work
** (api/http.c, api/loops.c): as many threads as hpod's HTTP threads, each
** one event loop on the one listening socket, the same per-connection
** memory (a 64 KiB pool grown in 64 KiB steps: libmicrohttpd zeroes the
** whole pool between two requests of a connection), connection limit and
** timeout, and bodies of the size of hpod's replies to the benchmark's ask
** and tell (a trial of its three-parameter space, about 310 and 330
** bytes). hpod runs its own threads, each an MHD daemon in external epoll
** mode; this server keeps MHD's own poll() threads
** (MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME), which served as many pairs
** as --epoll (MHD's own epoll threads) in the same minute (35-42k pairs/s
** at 8 clients, either way), so the yardstick is the same. What it leaves
** out is hpod's work: routing, access, the request log and metrics, the
** service, SQLite, encoding, and hpod's extra headers (X-Request-Id, Allow).
** --epoll (MHD_USE_EPOLL, no suspend/resume) and --small-bodies (60 and 45
** bytes) give the yardstick of before, to see what each choice weighs.
**
** Built by meson as a bench target (`ninja -C build bench/bare-mhd`) or by
** bench/throughput/run.py with: cc -O2 bare-mhd.c $(pkg-config --cflags --libs libmicrohttpd)
** Usage: bare-mhd [--threads N] [--epoll] [--small-bodies]   (N of MHD's
** threads on one listening socket, default 1). Prints "port=P" once
** listening on 127.0.0.1 (a free port), serves until stdin closes.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

/* hpod's replies to the benchmark's ask and tell, as it writes them (same fields and sizes). */
static const char ask_body[] =
        "{\"study\":\"bench-0-8\",\"number\":1234,\"state\":\"running\",\"params\":{\"x\":"
        "-0.5004024437631802,\"n\":57,\"c\":\"c\"},\"value\":null,\"intermediate\":[],"
        "\"user_attrs\":{},\"worker\":null,\"retry_of\":null,\"created_at\":"
        "\"2026-12-06T12:52:58.031Z\",\"started_at\":\"2026-12-06T12:52:58.031Z\","
        "\"completed_at\":null,\"heartbeat_at\":\"2026-12-06T12:52:58.031Z\"}";
static const char tell_body[] =
        "{\"study\":\"bench-0-8\",\"number\":1234,\"state\":\"complete\",\"params\":{\"x\":"
        "-0.5004024437631802,\"n\":57,\"c\":\"c\"},\"value\":0.8571428571428571,"
        "\"intermediate\":[],\"user_attrs\":{},\"worker\":null,\"retry_of\":null,"
        "\"created_at\":\"2026-12-06T12:52:58.031Z\",\"started_at\":"
        "\"2026-12-06T12:52:58.031Z\",\"completed_at\":\"2026-12-06T12:52:58.040Z\","
        "\"heartbeat_at\":\"2026-12-06T12:52:58.031Z\"}";
/* The yardstick of before (--small-bodies). */
static const char small_ask_body[] =
        "{\"number\":1,\"state\":\"running\",\"params\":{\"x\":0.5,\"n\":3,\"c\":\"a\"}}";
static const char small_tell_body[] = "{\"number\":1,\"state\":\"complete\",\"value\":0.5}";
static int small_bodies;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
        const char *method, const char *version, const char *upload_data,
        size_t *upload_data_size, void **req_cls)
{
    static int marker;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    size_t n = strlen(url);
    int ask = n >= 4 && strcmp(url + n - 4, "/ask") == 0;

    (void)cls;
    (void)method;
    (void)version;
    (void)upload_data;
    if (*req_cls == NULL) {
        *req_cls = &marker; /* the headers: wait for the body */
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0; /* the body is read and dropped */
        return MHD_YES;
    }
    if (small_bodies) {
        resp = MHD_create_response_from_buffer(
                ask ? sizeof(small_ask_body) - 1 : sizeof(small_tell_body) - 1,
                (void *)(ask ? small_ask_body : small_tell_body), MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer(ask ? sizeof(ask_body) - 1 : sizeof(tell_body) - 1,
                (void *)(ask ? ask_body : tell_body), MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    ret = MHD_queue_response(conn, ask ? 201 : 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void usage(void)
{
    fprintf(stderr, "usage: bare-mhd [--threads 1..64] [--epoll] [--small-bodies]\n");
}

int main(int argc, char **argv)
{
    unsigned threads = 1;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    char line[64];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            threads = (unsigned)strtoul(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || threads < 1 || threads > 64) {
                usage();
                return 2;
            }
        } else if (strcmp(argv[i], "--epoll") == 0) {
            flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
        } else if (strcmp(argv[i], "--small-bodies") == 0) {
            small_bodies = 1;
        } else {
            usage();
            return 2;
        }
    }
    {
        struct sockaddr_in a;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        /* hpod's limits (daemon/config.c defaults, api/http.c): 1024 connections per thread. */
        d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
                (struct sockaddr *)&a, MHD_OPTION_THREAD_POOL_SIZE, threads > 1 ? threads : 0,
                MHD_OPTION_CONNECTION_LIMIT, 1024u * threads, MHD_OPTION_CONNECTION_TIMEOUT, 300u,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                MHD_OPTION_CONNECTION_MEMORY_INCREMENT, (size_t)(64 * 1024), MHD_OPTION_END);
    }
    if (d == NULL) {
        fprintf(stderr, "bare-mhd: cannot start libmicrohttpd\n");
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("port=%u\n", info != NULL ? (unsigned)info->port : 0u);
    fflush(stdout);
    while (fgets(line, sizeof(line), stdin) != NULL) {
    }
    MHD_stop_daemon(d);
    return 0;
}
