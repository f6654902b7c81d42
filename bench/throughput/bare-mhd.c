/*
** bare-mhd.c: the yardstick of bench/throughput: a bare libmicrohttpd server
** answering every request with a fixed JSON body (201 to a path ending in
** "/ask", whose body carries a trial number, else 200), with no routing,
** parsing, storage or logging. The benchmark drives it with the same load
** generator as hpod, so hpod's figure over this one is the share of the
** machine's HTTP limit hpod reaches.
**
** Built by meson as a bench target (`ninja -C build bench/bare-mhd`) or by
** bench/throughput/run.py with: cc -O2 bare-mhd.c $(pkg-config --cflags --libs libmicrohttpd)
** Usage: bare-mhd [--threads N]   (N of MHD's internal epoll threads on one
** listening socket, default 1). Prints "port=P" once listening on 127.0.0.1
** (a free port), serves until stdin closes.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

static const char ask_body[] =
        "{\"number\":1,\"state\":\"running\",\"params\":{\"x\":0.5,\"n\":3,\"c\":\"a\"}}";
static const char tell_body[] = "{\"number\":1,\"state\":\"complete\",\"value\":0.5}";

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
    resp = MHD_create_response_from_buffer(ask ? sizeof(ask_body) - 1 : sizeof(tell_body) - 1,
            (void *)(ask ? ask_body : tell_body), MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    ret = MHD_queue_response(conn, ask ? 201 : 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

int main(int argc, char **argv)
{
    unsigned threads = 1;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    char line[64];

    if (argc == 3 && strcmp(argv[1], "--threads") == 0) {
        char *end;
        errno = 0;
        threads = (unsigned)strtoul(argv[2], &end, 10);
        if (errno != 0 || *end != '\0' || threads < 1 || threads > 64) {
            fprintf(stderr, "usage: bare-mhd [--threads 1..64]\n");
            return 2;
        }
    } else if (argc != 1) {
        fprintf(stderr, "usage: bare-mhd [--threads 1..64]\n");
        return 2;
    }
    {
        struct sockaddr_in a;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
                on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                MHD_OPTION_THREAD_POOL_SIZE, threads > 1 ? threads : 0,
                MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_CONNECTION_TIMEOUT, 300u,
                MHD_OPTION_END);
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
