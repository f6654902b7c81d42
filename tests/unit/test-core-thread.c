/*
** test-core-thread.c: hpo_thread_start starts its function with every
** signal blocked (a thread that outlives its starter must not take a signal
** meant for the loop thread), under the name given, with its argument,
** and leaves the caller's own signal mask as it was.
*/
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocked_named_caller_unchanged),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
