/*
** test-client-retry.c: libhpoclient's retry policy and error decoding against
** a scripted HTTP server (a thread on 127.0.0.1, port 0): 503 is retried,
** a dropped connection is retried only for idempotent calls, other errors
** are not retried, and error bodies that are not the API's shape still map
** to a code from the status. Also the requests enqueue and the user-attrs
** calls send (method, path, body), and which of them are retried.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h> /* cmocka needs setjmp.h, stdarg.h and stddef.h */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <hpo/client.h>

#define MAX_STEPS 8

/* One scripted answer: a status line and a body; NULL `status` drops the connection. */
struct step {
    const char *status;
    const char *body;
};

struct server {
    int fd;
    int port;
    pthread_t thread;
    struct step steps[MAX_STEPS];
    int n_steps;
    int served; /* requests read, under the lock */
    char last_request[4096];
    pthread_mutex_t lock;
};

#define DROP { NULL, NULL }
#define S503 { "503 Service Unavailable", \
        "{\"error\": {\"code\": \"unavailable\", \"message\": \"database is locked\"}}" }
#define SOK { "200 OK", "{\"studies\": []}" }
#define STELL { "200 OK", "{}" }
#define S500 { "500 Internal Server Error", "<h1>oops</h1>" }
#define S400 { "400 Bad Request", "{\"error\": {\"code\": \"invalid_argument\"," \
        " \"message\": \"bad step\", \"field\": \"step\"}}" }

/* Read one request: the head, then Content-Length bytes of body. */
static void read_request(int c, char *head, size_t head_size)
{
    char buf[4096];
    size_t len = 0;
    size_t need = 0;
    char *end = NULL;

    while (len < sizeof(buf) - 1) {
        ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (end == NULL) {
            end = strstr(buf, "\r\n\r\n");
            if (end != NULL) {
                char *cl = strcasestr(buf, "Content-Length:");
                need = (size_t)(end - buf) + 4 + (cl ? strtoul(cl + 15, NULL, 10) : 0);
            }
        }
        if (end != NULL && len >= need) {
            break;
        }
    }
    buf[len] = '\0';
    snprintf(head, head_size, "%s", buf);
}

static void *serve(void *arg)
{
    struct server *s = arg;

    for (int i = 0; i < s->n_steps; i++) {
        char head[4096];
        int c = accept(s->fd, NULL, NULL);

        if (c < 0) {
            break;
        }
        read_request(c, head, sizeof(head));
        pthread_mutex_lock(&s->lock);
        s->served++;
        snprintf(s->last_request, sizeof(s->last_request), "%s", head);
        pthread_mutex_unlock(&s->lock);
        if (s->steps[i].status != NULL) {
            char reply[1024];
            int n = snprintf(reply, sizeof(reply),
                    "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n%s",
                    s->steps[i].status, strlen(s->steps[i].body), s->steps[i].body);
            (void)!write(c, reply, (size_t)n);
        }
        close(c);
    }
    return NULL;
}

static struct server *server_start(const struct step *steps, int n)
{
    struct server *s = calloc(1, sizeof(*s));
    struct sockaddr_in addr = { .sin_family = AF_INET };
    socklen_t alen = sizeof(addr);

    assert_non_null(s);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&addr, &alen), 0);
    s->port = ntohs(addr.sin_port);
    s->n_steps = n;
    memcpy(s->steps, steps, (size_t)n * sizeof(*steps));
    pthread_mutex_init(&s->lock, NULL);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
    return s;
}

/* Stop the server (after a call that must not use the remaining steps) and return the count. */
static int server_stop(struct server *s)
{
    int served;

    /* Unblock accept() if steps remain: shut the listener down. */
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);
    served = s->served;
    pthread_mutex_destroy(&s->lock);
    free(s);
    return served;
}

static struct hpo_client *client_for(struct server *s, int retries)
{
    char url[64];
    struct hpo_client *c = NULL;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/", s->port);
    assert_int_equal(hpo_client_create(url, "sekrit", &c, NULL), 0);
    assert_int_equal(hpo_client_set_retries(c, retries, 1, 4), 0);
    assert_int_equal(hpo_client_set_timeouts(c, 2000, 5000), 0);
    return c;
}

static void test_503_retried(void **state)
{
    const struct step steps[] = { S503, S503, SOK };
    struct server *s = server_start(steps, 3);
    struct hpo_client *c = client_for(s, 3);
    struct hpo_client_error err;
    char *body = NULL;

    (void)state;
    assert_int_equal(hpo_client_study_list(c, &body, &err), 0);
    assert_string_equal(body, "{\"studies\": []}");
    assert_int_equal(err.code, HPO_CLIENT_OK);
    hpo_client_free(body);
    /* The base URL's "/v1/" was dropped and the token sent. */
    assert_non_null(strstr(s->last_request, "GET /v1/studies HTTP/1.1"));
    assert_non_null(strstr(s->last_request, "Authorization: Bearer sekrit"));
    hpo_client_destroy(c);
    assert_int_equal(server_stop(s), 3);
}

static void test_503_gives_up(void **state)
{
    const struct step steps[] = { S503, S503, S503, SOK };
    struct server *s = server_start(steps, 4);
    struct hpo_client *c = client_for(s, 2);
    struct hpo_client_error err;
    int r;

    (void)state;
    /* 503 means nothing changed: even ask is retried, here 1 + 2 times. */
    r = hpo_client_ask(c, "s", &(struct hpo_trial *){ NULL }, &err);
    assert_int_equal(r, -EIO);
    assert_int_equal(err.code, HPO_CLIENT_UNAVAILABLE);
    assert_int_equal(err.status, 503);
    assert_string_equal(err.message, "database is locked");
    hpo_client_destroy(c);
    assert_int_equal(server_stop(s), 3);
}

static void test_dropped_connection(void **state)
{
    const struct step steps[] = { DROP, DROP, STELL };
    struct server *s = server_start(steps, 3);
    struct hpo_client *c = client_for(s, 3);
    struct hpo_client_error err;
    int r;

    (void)state;
    /* ask is not idempotent: a request that may have reached the server is not repeated. */
    r = hpo_client_ask(c, "s", &(struct hpo_trial *){ NULL }, &err);
    assert_true(r < 0 && r != -EIO);
    assert_int_equal(err.code, HPO_CLIENT_TRANSPORT);
    assert_int_equal(err.status, 0);
    /* tell is: the second drop is retried and the third attempt answers. */
    assert_int_equal(hpo_client_tell(c, "s", 4, 0.5, &err), 0);
    assert_non_null(strstr(s->last_request, "POST /v1/studies/s/trials/4/tell HTTP/1.1"));
    assert_non_null(strstr(s->last_request, "{\"value\":0.5}"));
    hpo_client_destroy(c);
    assert_int_equal(server_stop(s), 3);
}

static void test_errors_not_retried(void **state)
{
    const struct step steps[] = { S500, S400, SOK };
    struct server *s = server_start(steps, 3);
    struct hpo_client *c = client_for(s, 3);
    struct hpo_client_error err;
    bool prune = true;
    int r;

    (void)state;
    r = hpo_client_heartbeat(c, "s", 1, &err);
    assert_int_equal(r, -EIO);
    assert_int_equal(err.code, HPO_CLIENT_INTERNAL);
    assert_int_equal(err.status, 500);
    assert_string_equal(err.message, "HTTP status 500");
    assert_string_equal(err.field, "");
    r = hpo_client_report(c, "s", 1, 2, 0.25, &prune, &err);
    assert_int_equal(r, -EIO);
    assert_int_equal(err.code, HPO_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "step");
    assert_true(prune); /* untouched on failure */
    assert_non_null(strstr(s->last_request, "{\"step\":2,\"value\":0.25}"));
    hpo_client_destroy(c);
    assert_int_equal(server_stop(s), 2);
}

static void test_bad_success_body(void **state)
{
    const struct step steps[] = { { "200 OK", "hello" }, { "200 OK", "{}" } };
    struct server *s = server_start(steps, 2);
    struct hpo_client *c = client_for(s, 0);
    struct hpo_client_error err;
    struct hpo_trial *t = NULL;
    int r;

    (void)state;
    r = hpo_client_ask(c, "s", &t, &err);
    assert_int_equal(r, -EPROTO);
    assert_int_equal(err.code, HPO_CLIENT_BAD_RESPONSE);
    assert_null(t);
    r = hpo_client_report(c, "s", 1, 0, 1.0, NULL, &err);
    assert_int_equal(r, -EPROTO);
    assert_int_equal(err.code, HPO_CLIENT_BAD_RESPONSE);
    hpo_client_destroy(c);
    assert_int_equal(server_stop(s), 2);
}

#define STRIAL(state) { "201 Created", "{\"study\": \"s\", \"number\": 3, \"state\": \"" state \
        "\", \"params\": {\"x\": 1}, \"user_attrs\": {\"k\": \"v\"}}" }
#define SSTUDY { "200 OK", "{\"name\": \"s\", \"user_attrs\": {\"b\": 2}}" }

static void test_enqueue(void **state)
{
    const struct step steps[] = { DROP, STRIAL("waiting"), STRIAL("waiting") };
    struct server *s = server_start(steps, 3);
    struct hpo_client *c = client_for(s, 3);
    struct hpo_client_error err;
    struct hpo_trial *t = NULL;
    int64_t x = 0;
    int r;

    (void)state;
    /* Each POST makes a trial: a request that may have arrived is not repeated. */
    r = hpo_client_enqueue(c, "s", "{\"x\": 1}", NULL, &t, &err);
    assert_true(r < 0 && r != -EIO);
    assert_int_equal(err.code, HPO_CLIENT_TRANSPORT);
    assert_null(t);
    assert_int_equal(hpo_client_enqueue(c, "s", "{\"x\": 1, \"y\": \"a\"}", "{\"k\": \"v\"}", &t,
                             &err),
            0);
    assert_non_null(strstr(s->last_request, "POST /v1/studies/s/trials HTTP/1.1"));
    assert_non_null(strstr(s->last_request,
            "{\"params\":{\"x\":1,\"y\":\"a\"},\"user_attrs\":{\"k\":\"v\"}}"));
    assert_string_equal(hpo_trial_state(t), "waiting");
    assert_int_equal(hpo_trial_number(t), 3);
    assert_int_equal(hpo_trial_param_int(t, "x", &x), 0);
    assert_int_equal(x, 1);
    hpo_trial_free(t);
    /* Without attrs and without a trial wanted back. */
    assert_int_equal(hpo_client_enqueue(c, "s", "{}", NULL, NULL, &err), 0);
    assert_non_null(strstr(s->last_request, "\r\n\r\n{\"params\":{}}"));
    /* Arguments that are not JSON objects: usage errors, nothing sent. */
    r = hpo_client_enqueue(c, "s", "[1]", NULL, &t, &err);
    assert_int_equal(r, -EINVAL);
    assert_int_equal(err.code, HPO_CLIENT_USAGE);
    assert_string_equal(err.field, "params");
    r = hpo_client_enqueue(c, "s", "{}", "{bad", &t, &err);
    assert_int_equal(r, -EINVAL);
    assert_string_equal(err.field, "user_attrs");
    r = hpo_client_enqueue(c, "s", "{\"x\": 1, \"x\": 2}", NULL, &t, &err);
    assert_int_equal(r, -EINVAL);
    assert_int_equal(hpo_client_enqueue(NULL, "s", "{}", NULL, &t, &err), -EINVAL);
    hpo_client_destroy(c);
    assert_int_equal(server_stop(s), 3);
}

static void test_user_attrs(void **state)
{
    const struct step steps[] = { DROP, SSTUDY, STRIAL("complete"), STRIAL("complete") };
    struct server *s = server_start(steps, 4);
    struct hpo_client *c = client_for(s, 3);
    struct hpo_client_error err;
    struct hpo_trial *t = NULL;
    char *json = NULL;
    int r;

    (void)state;
    /* A merge is idempotent: a dropped PATCH is sent again. */
    assert_int_equal(hpo_client_study_set_user_attrs(c, "s", "{\"a\": null, \"b\": 2}", &json,
                             &err),
            0);
    assert_non_null(strstr(s->last_request, "PATCH /v1/studies/s HTTP/1.1"));
    assert_non_null(strstr(s->last_request, "{\"user_attrs\":{\"a\":null,\"b\":2}}"));
    assert_string_equal(json, "{\"name\": \"s\", \"user_attrs\": {\"b\": 2}}");
    hpo_client_free(json);
    assert_int_equal(hpo_client_trial_set_user_attrs(c, "s", 3, "{\"k\": \"v\"}", &t, &err), 0);
    assert_non_null(strstr(s->last_request, "PATCH /v1/studies/s/trials/3 HTTP/1.1"));
    assert_non_null(strstr(s->last_request, "{\"user_attrs\":{\"k\":\"v\"}}"));
    assert_string_equal(hpo_trial_state(t), "complete");
    assert_non_null(strstr(hpo_trial_json(t), "\"user_attrs\":{\"k\":\"v\"}"));
    hpo_trial_free(t);
    assert_int_equal(hpo_client_trial_set_user_attrs(c, "s", 3, "{}", NULL, &err), 0);
    /* Not objects, a negative number: usage errors, nothing sent. */
    r = hpo_client_study_set_user_attrs(c, "s", "\"text\"", NULL, &err);
    assert_int_equal(r, -EINVAL);
    assert_int_equal(err.code, HPO_CLIENT_USAGE);
    assert_string_equal(err.field, "user_attrs");
    assert_int_equal(hpo_client_trial_set_user_attrs(c, "s", -1, "{}", NULL, &err), -EINVAL);
    assert_int_equal(hpo_client_trial_set_user_attrs(c, "s", 1, NULL, NULL, &err), -EINVAL);
    hpo_client_destroy(c);
    assert_int_equal(server_stop(s), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_503_retried),
        cmocka_unit_test(test_503_gives_up),
        cmocka_unit_test(test_dropped_connection),
        cmocka_unit_test(test_errors_not_retried),
        cmocka_unit_test(test_bad_success_body),
        cmocka_unit_test(test_enqueue),
        cmocka_unit_test(test_user_attrs),
    };

    return cmocka_run_group_tests_name("client-retry", tests, NULL, NULL);
}
