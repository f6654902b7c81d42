/*
** test-core-thread.c: hpo_thread_start starts its function with every
** signal blocked (a thread that outlives its starter must not take a signal
** meant for the loop thread), under the name given (set before its function
** runs), with its argument,
** and leaves the caller's own signal mask as it was; a kept thread
** (hpo_kept) runs the jobs it is given, one at a time, under its name, and
** its stop ends it with no job lost that it had taken.
*/
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "thread.h"

struct seen {
    pthread_mutex_t hold; /* held by the test until it has read the name */
    sigset_t mask;
    int arg;
};

static void *look(void *p)
{
    struct seen *s = p;

    pthread_sigmask(SIG_SETMASK, NULL, &s->mask);
    s->arg = 42;
    pthread_mutex_lock(&s->hold);
    pthread_mutex_unlock(&s->hold);
    return s;
}

static void test_blocked_named_caller_unchanged(void **state)
{
    (void)state;
    sigset_t before, after, one;
    struct seen s;
    pthread_t t;
    void *ret = NULL;

    /* The caller blocks SIGUSR1 only: the thread gets every signal blocked, the caller keeps its own. */
    sigemptyset(&one);
    sigaddset(&one, SIGUSR1);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &one, &before), 0);
    char name[16] = "";

    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.hold, NULL);
    pthread_mutex_lock(&s.hold);
    assert_int_equal(hpo_thread_start(&t, NULL, look, &s, "hpod-test"), 0);
    /* Named by the time hpo_thread_start returns (the thread waits on `hold`). */
    assert_int_equal(pthread_getname_np(t, name, sizeof(name)), 0);
    assert_string_equal(name, "hpod-test");
    pthread_mutex_unlock(&s.hold);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &after), 0);
    assert_true(sigismember(&after, SIGUSR1));
    assert_false(sigismember(&after, SIGTERM));
    assert_false(sigismember(&after, SIGHUP));
    assert_int_equal(pthread_join(t, &ret), 0);
    assert_ptr_equal(ret, &s);
    assert_int_equal(s.arg, 42);
    /*
    ** SIGKILL and SIGSTOP cannot be blocked; every other standard signal is
    ** (32 and 33 are glibc's own, which sigfillset leaves out), and the
    ** real-time ones.
    */
    for (int sig = 1; sig < 32; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) {
            continue;
        }
        assert_true(sigismember(&s.mask, sig));
    }
    assert_true(sigismember(&s.mask, SIGRTMIN));
    pthread_mutex_destroy(&s.hold);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
}

/* A kept thread's user: jobs are counters to add, `todo` queued, `ran` run. */
struct counter {
    struct hpo_kept k;
    int todo, ran;
    char name[16];
};

static void *count_main(void *arg)
{
    struct counter *c = arg;

    (void)pthread_getname_np(pthread_self(), c->name, sizeof(c->name));
    pthread_mutex_lock(&c->k.mu);
    for (;;) {
        while (c->todo == 0 && !c->k.stop) {
            pthread_cond_wait(&c->k.wake, &c->k.mu);
        }
        if (c->k.stop) {
            break;
        }
        c->todo--;
        c->ran++;
        pthread_cond_broadcast(&c->k.done);
    }
    pthread_mutex_unlock(&c->k.mu);
    return NULL;
}

static void test_kept_thread(void **state)
{
    (void)state;
    struct counter c = { .todo = 0 };
    struct timespec until;

    assert_int_equal(hpo_kept_start(&c.k, count_main, &c, "hpod-kepttest"), 0);
    for (int i = 1; i <= 5; i++) {
        pthread_mutex_lock(&c.k.mu);
        c.todo++;
        pthread_cond_signal(&c.k.wake);
        /* `done` runs on CLOCK_MONOTONIC: a timed wait with that clock's deadline. */
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += 30;
        while (c.ran < i) {
            assert_int_not_equal(pthread_cond_timedwait(&c.k.done, &c.k.mu, &until), ETIMEDOUT);
        }
        pthread_mutex_unlock(&c.k.mu);
    }
    hpo_kept_stop(&c.k); /* joins: the thread has returned */
    assert_int_equal(c.ran, 5);
    assert_int_equal(c.todo, 0);
    assert_string_equal(c.name, "hpod-kepttest");
}

static void *early_name(void *arg)
{
    (void)pthread_getname_np(pthread_self(), arg, 16);
    return NULL;
}

/*
** The name is the thread's from its first instruction on: named by the
** creator after pthread_create, a thread that runs at once (the other core)
** read its creator's name about once in a few starts.
*/
static void test_named_before_it_runs(void **state)
{
    (void)state;
    for (int i = 0; i < 300; i++) {
        char name[16] = "";
        pthread_t t;

        assert_int_equal(hpo_thread_start(&t, NULL, early_name, name, "hpod-early"), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_string_equal(name, "hpod-early");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocked_named_caller_unchanged),
        cmocka_unit_test(test_kept_thread),
        cmocka_unit_test(test_named_before_it_runs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
