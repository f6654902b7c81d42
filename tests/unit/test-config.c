/*
** test-config.c: the daemon's configuration (daemon/config.c): each setting
** valid and invalid with its message, the config file format, and the
** precedence defaults < file < HPOD_* environment < flags. The daemon is an
** executable, not a library, so the file is included (h2o's unit-test style).
*/
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Before cmocka.h, whose fail() macro would rename config.c's fail(). */
#include "../../daemon/config.c"

#include <cmocka.h>

static const char *const env_names[] = {
    "HPOD_LISTEN", "HPOD_DB", "HPOD_SYNCHRONOUS", "HPOD_THREADS", "HPOD_LOG_LEVEL",
    "STATE_DIRECTORY",
};

/* Each test starts with no HPOD_* variables and its own temp directory. */
static int setup(void **state)
{
    char *dir = strdup("/tmp/hpod-test-config.XXXXXX");

    if (dir == NULL || mkdtemp(dir) == NULL) {
        free(dir);
        return -1;
    }
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++) {
        unsetenv(env_names[i]);
    }
    *state = dir;
    return 0;
}

static int teardown(void **state)
{
    char *dir = *state;
    char cmd[256];

    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++) {
        unsetenv(env_names[i]);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        return -1;
    }
    free(dir);
    return 0;
}

/* A file in the test's directory with `text`; returns its path (static buffer per call site). */
static void write_file(const char *dir, const char *name, const char *text, char *path,
        size_t len)
{
    FILE *f;

    snprintf(path, len, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static struct hpo_config defaults(void)
{
    struct hpo_config cfg;
    char msg[256];
    char *argv[] = { "hpod", NULL };

    assert_int_equal(hpo_config_load(&cfg, 1, argv, msg, sizeof(msg)), 0);
    return cfg;
}

static void expect_set_fails(const char *key, const char *value, const char *message)
{
    struct hpo_config cfg = defaults();
    char msg[256] = "";

    assert_int_equal(hpo_config_set(&cfg, key, value, msg, sizeof(msg)), -EINVAL);
    assert_string_equal(msg, message);
}

static void test_defaults(void **state)
{
    struct hpo_config cfg = defaults();

    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 8080);
    assert_string_equal(cfg.db, "./hpod.db");
    assert_true(cfg.synchronous_full); /* durable by default */
    assert_int_equal(cfg.threads, 4);
    assert_int_equal(cfg.log_level, HPO_LOG_INFO);
    assert_false(cfg.check_only || cfg.show_help || cfg.show_version);

    /* Under systemd the database lives in the first StateDirectory. */
    setenv("STATE_DIRECTORY", "/var/lib/hpod:/var/lib/other", 1);
    cfg = defaults();
    assert_string_equal(cfg.db, "/var/lib/hpod/hpod.db");
    setenv("STATE_DIRECTORY", "", 1);
    cfg = defaults();
    assert_string_equal(cfg.db, "./hpod.db");
}

static void test_listen(void **state)
{
    struct hpo_config cfg = defaults();
    char msg[256];

    assert_int_equal(hpo_config_set(&cfg, "listen", "127.0.0.1:0", msg, sizeof(msg)), 0);
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 0);
    assert_int_equal(hpo_config_set(&cfg, "listen", "0.0.0.0:65535", msg, sizeof(msg)), 0);
    assert_string_equal(cfg.host, "0.0.0.0");
    assert_int_equal(cfg.port, 65535);
    assert_int_equal(hpo_config_set(&cfg, "listen", "localhost:9000", msg, sizeof(msg)), 0);
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 9000);
    /* IPv6 in brackets; the last colon separates the port. */
    assert_int_equal(hpo_config_set(&cfg, "listen", "[::1]:8081", msg, sizeof(msg)), 0);
    assert_string_equal(cfg.host, "::1");
    assert_int_equal(cfg.port, 8081);

    expect_set_fails("listen", "8080", "listen: '8080' must be HOST:PORT");
    expect_set_fails("listen", ":80", "listen: ':80' has no valid host");
    expect_set_fails("listen", "[]:80", "listen: '[]:80' has no valid host");
    expect_set_fails("listen", "host:", "listen: 'host:' has no valid port (0-65535)");
    expect_set_fails("listen", "host:65536", "listen: 'host:65536' has no valid port (0-65535)");
    expect_set_fails("listen", "host:80x", "listen: 'host:80x' has no valid port (0-65535)");
    expect_set_fails("listen", "host:-1", "listen: 'host:-1' has no valid port (0-65535)");
    {
        char big[128];
        char expect[256];
        memset(big, 'h', 64);
        snprintf(big + 64, sizeof(big) - 64, ":80");
        snprintf(expect, sizeof(expect), "listen: '%s' has no valid host", big);
        expect_set_fails("listen", big, expect);
    }
    /* The daemon binds numeric addresses only: names fail here, not after the database opened. */
    expect_set_fails("listen", "example.com:8080",
            "listen: 'example.com:8080': 'example.com' is not a numeric IPv4 address");
    expect_set_fails("listen", "[::g]:80",
            "listen: '[::g]:80': '::g' is not a numeric IPv6 address");
    expect_set_fails("listen", "127.0.0.256:80",
            "listen: '127.0.0.256:80': '127.0.0.256' is not a numeric IPv4 address");
}

static void test_settings(void **state)
{
    struct hpo_config cfg = defaults();
    char msg[256];
    char path[5000];

    assert_int_equal(hpo_config_set(&cfg, "db", "/tmp/x/hpod.db", msg, sizeof(msg)), 0);
    assert_string_equal(cfg.db, "/tmp/x/hpod.db");
    expect_set_fails("db", "", "db: '' is not a usable path");
    memset(path, 'p', 4096);
    path[4096] = '\0';
    assert_int_equal(hpo_config_set(&cfg, "db", path, msg, sizeof(msg)), -EINVAL);
    assert_string_equal(cfg.db, "/tmp/x/hpod.db");

    assert_int_equal(hpo_config_set(&cfg, "synchronous", "full", msg, sizeof(msg)), 0);
    assert_true(cfg.synchronous_full);
    assert_int_equal(hpo_config_set(&cfg, "synchronous", "normal", msg, sizeof(msg)), 0);
    assert_false(cfg.synchronous_full);
    expect_set_fails("synchronous", "FULL", "synchronous: 'FULL' must be normal or full");
    expect_set_fails("synchronous", "off", "synchronous: 'off' must be normal or full");

    assert_int_equal(hpo_config_set(&cfg, "threads", "1", msg, sizeof(msg)), 0);
    assert_int_equal(cfg.threads, 1);
    assert_int_equal(hpo_config_set(&cfg, "threads", "1024", msg, sizeof(msg)), 0);
    assert_int_equal(cfg.threads, 1024);
    expect_set_fails("threads", "0", "threads: '0' must be an integer from 1 to 1024");
    expect_set_fails("threads", "1025", "threads: '1025' must be an integer from 1 to 1024");
    expect_set_fails("threads", "4x", "threads: '4x' must be an integer from 1 to 1024");
    expect_set_fails("threads", "-2", "threads: '-2' must be an integer from 1 to 1024");
    expect_set_fails("threads", "99999999999999999999",
            "threads: '99999999999999999999' must be an integer from 1 to 1024");

    static const struct {
        const char *name;
        int level;
    } levels[] = {
        { "err", HPO_LOG_ERR }, { "warning", HPO_LOG_WARNING }, { "notice", HPO_LOG_NOTICE },
        { "info", HPO_LOG_INFO }, { "debug", HPO_LOG_DEBUG },
    };
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        assert_int_equal(hpo_config_set(&cfg, "log-level", levels[i].name, msg, sizeof(msg)), 0);
        assert_int_equal(cfg.log_level, levels[i].level);
    }
    assert_int_equal(hpo_config_set(&cfg, "log_level", "err", msg, sizeof(msg)), 0);
    assert_int_equal(cfg.log_level, HPO_LOG_ERR);
    expect_set_fails("log-level", "trace",
            "log-level: 'trace' must be err, warning, notice, info or debug");
    assert_int_equal(cfg.max_vector_memory, 0);
    assert_int_equal(hpo_config_set(&cfg, "max-vector-memory", "4096", msg, sizeof(msg)), 0);
    assert_int_equal(cfg.max_vector_memory, 4096);
    assert_int_equal(hpo_config_set(&cfg, "max-vector-memory", "3G", msg, sizeof(msg)), 0);
    assert_int_equal(cfg.max_vector_memory, 3ull << 30);
    assert_int_equal(hpo_config_set(&cfg, "max_vector_memory", "512MiB", msg, sizeof(msg)), 0);
    assert_int_equal(cfg.max_vector_memory, 512ull << 20);
    assert_int_equal(hpo_config_set(&cfg, "max-vector-memory", "2k", msg, sizeof(msg)), 0);
    assert_int_equal(cfg.max_vector_memory, 2048);
    assert_int_equal(hpo_config_set(&cfg, "max-vector-memory", "unlimited", msg, sizeof(msg)), 0);
    assert_true(cfg.max_vector_memory == UINT64_MAX);
    expect_set_fails("max-vector-memory", "0", "max-vector-memory: '0' must be a positive size in "
                                               "bytes (suffix K, M, G or T) or unlimited");
    expect_set_fails("max-vector-memory", "1P", "max-vector-memory: '1P' must be a positive size "
                                                "in bytes (suffix K, M, G or T) or unlimited");
    expect_set_fails("max-vector-memory", "99999999T", "max-vector-memory: '99999999T' must be a "
                                                      "positive size in bytes (suffix K, M, G or "
                                                      "T) or unlimited");
    expect_set_fails("max-vector-memory", "1Gx", "max-vector-memory: '1Gx' must be a positive size "
                                                 "in bytes (suffix K, M, G or T) or unlimited");
    expect_set_fails("listn", "127.0.0.1:1", "unknown setting 'listn'");
    expect_set_fails("config", "x", "unknown setting 'config'");
}

static void test_file_format(void **state)
{
    const char *dir = *state;
    struct hpo_config cfg;
    char path[512], arg[600], msg[256];

    write_file(dir, "ok.conf",
            "# hpod settings\n"
            "\n"
            "   # an indented comment\n"
            "listen\t127.0.0.1:7000\n"
            "db   /var/tmp/hpod.db   \r\n"
            "  threads 2\n"
            "synchronous normal",
            path, sizeof(path));
    {
        char *argv[] = { "hpod", "--config", path, NULL };
        assert_int_equal(hpo_config_load(&cfg, 3, argv, msg, sizeof(msg)), 0);
    }
    assert_int_equal(cfg.port, 7000);
    assert_string_equal(cfg.db, "/var/tmp/hpod.db");
    assert_int_equal(cfg.threads, 2);
    assert_false(cfg.synchronous_full);
    assert_string_equal(cfg.config_file, path);

    /* --config=FILE works the same; a bad value names the setting. */
    write_file(dir, "bad.conf", "listen 127.0.0.1:1\nthreads many\n", path, sizeof(path));
    snprintf(arg, sizeof(arg), "--config=%s", path);
    {
        char *argv[] = { "hpod", arg, NULL };
        assert_int_equal(hpo_config_load(&cfg, 2, argv, msg, sizeof(msg)), -EINVAL);
        assert_string_equal(msg, "threads: 'many' must be an integer from 1 to 1024");
    }
    /* A key without a value. */
    write_file(dir, "novalue.conf", "threads\n", path, sizeof(path));
    {
        char *argv[] = { "hpod", "--config", path, NULL };
        char expect[700];
        assert_int_equal(hpo_config_load(&cfg, 3, argv, msg, sizeof(msg)), -EINVAL);
        /*
        ** Only the prefix: config.c leaves the line's '\n' in the key
        ** ("setting 'threads\n' has no value"); reported to the lead.
        */
        snprintf(expect, sizeof(expect), "config: '%s': setting 'threads", path);
        assert_memory_equal(msg, expect, strlen(expect));
        assert_non_null(strstr(msg, "' has no value"));
    }
    /* A missing file is an error, unless its name starts with '-'. */
    snprintf(path, sizeof(path), "%s/missing.conf", dir);
    {
        char *argv[] = { "hpod", "--config", path, NULL };
        assert_int_equal(hpo_config_load(&cfg, 3, argv, msg, sizeof(msg)), -EINVAL);
        assert_non_null(strstr(msg, "cannot open"));
    }
    snprintf(arg, sizeof(arg), "-%s/missing.conf", dir);
    {
        char *argv[] = { "hpod", "--config", arg, NULL };
        assert_int_equal(hpo_config_load(&cfg, 3, argv, msg, sizeof(msg)), 0);
        assert_int_equal(cfg.port, 8080);
    }
}

static void test_precedence(void **state)
{
    const char *dir = *state;
    struct hpo_config cfg;
    char path[512], msg[256];

    write_file(dir, "p.conf", "listen 127.0.0.1:1001\nthreads 3\nlog-level debug\ndb /f.db\nsynchronous normal\n",
            path, sizeof(path));
    setenv("HPOD_LISTEN", "127.0.0.1:1002", 1);
    setenv("HPOD_THREADS", "5", 1);
    {
        char *argv[] = { "hpod", "--config", path, "--listen", "127.0.0.1:1003", NULL };
        assert_int_equal(hpo_config_load(&cfg, 5, argv, msg, sizeof(msg)), 0);
    }
    /* flag > env > file > default. */
    assert_int_equal(cfg.port, 1003);
    assert_int_equal(cfg.threads, 5);
    assert_int_equal(cfg.log_level, HPO_LOG_DEBUG);
    assert_string_equal(cfg.db, "/f.db");
    assert_false(cfg.synchronous_full);

    /* A bad environment value is an error naming the setting. */
    setenv("HPOD_SYNCHRONOUS", "sometimes", 1);
    {
        char *argv[] = { "hpod", NULL };
        assert_int_equal(hpo_config_load(&cfg, 1, argv, msg, sizeof(msg)), -EINVAL);
        assert_string_equal(msg, "synchronous: 'sometimes' must be normal or full");
    }
}

static void test_flags(void **state)
{
    struct hpo_config cfg;
    char msg[256];

    {
        char *argv[] = { "hpod", "--listen=127.0.0.1:0", "--db", "/d.db", "--threads=8",
            "--synchronous", "full", "--log-level", "notice", "--check-config", NULL };
        assert_int_equal(hpo_config_load(&cfg, 10, argv, msg, sizeof(msg)), 0);
    }
    assert_int_equal(cfg.port, 0);
    assert_string_equal(cfg.db, "/d.db");
    assert_int_equal(cfg.threads, 8);
    assert_true(cfg.synchronous_full);
    assert_int_equal(cfg.log_level, HPO_LOG_NOTICE);
    assert_true(cfg.check_only);
    {
        char *argv[] = { "hpod", "--threads", NULL };
        assert_int_equal(hpo_config_load(&cfg, 2, argv, msg, sizeof(msg)), -EINVAL);
        assert_string_equal(msg, "--threads needs a value");
    }
    {
        char *argv[] = { "hpod", "serve", NULL };
        assert_int_equal(hpo_config_load(&cfg, 2, argv, msg, sizeof(msg)), -EINVAL);
        assert_string_equal(msg, "unexpected argument 'serve'");
    }
    {
        char *argv[] = { "hpod", "--port", "80", NULL };
        assert_int_equal(hpo_config_load(&cfg, 3, argv, msg, sizeof(msg)), -EINVAL);
        assert_string_equal(msg, "unknown option --port");
    }
    /* An unknown flag last on the line is unknown, not one missing its value. */
    {
        char *argv[] = { "hpod", "--bogus", NULL };
        assert_int_equal(hpo_config_load(&cfg, 2, argv, msg, sizeof(msg)), -EINVAL);
        assert_string_equal(msg, "unknown option --bogus");
    }
    {
        char *argv[] = { "hpod", "--bogus=1", NULL };
        assert_int_equal(hpo_config_load(&cfg, 2, argv, msg, sizeof(msg)), -EINVAL);
        assert_string_equal(msg, "unknown option --bogus");
    }
    {
        char *argv[] = { "hpod", "--max-vector-memory", NULL };
        assert_int_equal(hpo_config_load(&cfg, 2, argv, msg, sizeof(msg)), -EINVAL);
        assert_string_equal(msg, "--max-vector-memory needs a value");
    }
    {
        char *argv[] = { "hpod", "--config", NULL };
        assert_int_equal(hpo_config_load(&cfg, 2, argv, msg, sizeof(msg)), -EINVAL);
        assert_string_equal(msg, "--config needs a value");
    }
    /* --help and --version win before any file is read or any flag checked. */
    {
        char *argv[] = { "hpod", "--bogus", "--config", "/nonexistent/x", "--help", NULL };
        assert_int_equal(hpo_config_load(&cfg, 5, argv, msg, sizeof(msg)), 0);
        assert_true(cfg.show_help);
    }
    {
        char *argv[] = { "hpod", "--version", NULL };
        assert_int_equal(hpo_config_load(&cfg, 2, argv, msg, sizeof(msg)), 0);
        assert_true(cfg.show_version);
        assert_false(cfg.show_help);
    }
}

/* --slow-request-ms and --metrics-max-studies (test_observability.py runs them). */
static void test_observability_settings(void **state)
{
    struct hpo_config cfg = defaults();
    char msg[256];

    assert_int_equal(cfg.slow_request_ms, 500);
    assert_int_equal(cfg.metrics_max_studies, 100);
    assert_int_equal(hpo_config_set(&cfg, "slow-request-ms", "0", msg, sizeof(msg)), 0);
    assert_int_equal(cfg.slow_request_ms, 0);
    assert_int_equal(hpo_config_set(&cfg, "slow-request-ms", "3600000", msg, sizeof(msg)), 0);
    assert_int_equal(cfg.slow_request_ms, 3600000);
    assert_int_equal(hpo_config_set(&cfg, "metrics-max-studies", "7", msg, sizeof(msg)), 0);
    assert_int_equal(cfg.metrics_max_studies, 7);
    assert_int_equal(cfg.slow_request_ms, 3600000);
    expect_set_fails("slow-request-ms", "-1",
            "slow-request-ms: '-1' must be an integer from 0 to 3600000");
    expect_set_fails("slow-request-ms", "3600001",
            "slow-request-ms: '3600001' must be an integer from 0 to 3600000");
    expect_set_fails("slow-request-ms", "5ms",
            "slow-request-ms: '5ms' must be an integer from 0 to 3600000");
    expect_set_fails("metrics-max-studies", "",
            "metrics-max-studies: '' must be an integer from 0 to 3600000");
    expect_set_fails("metrics-max-studies", " 1",
            "metrics-max-studies: ' 1' must be an integer from 0 to 3600000");
    setenv("HPOD_SLOW_REQUEST_MS", "20", 1);
    setenv("HPOD_METRICS_MAX_STUDIES", "3", 1);
    {
        char *argv[] = { "hpod", "--metrics-max-studies=4", NULL };
        assert_int_equal(hpo_config_load(&cfg, 2, argv, msg, sizeof(msg)), 0);
    }
    unsetenv("HPOD_SLOW_REQUEST_MS");
    unsetenv("HPOD_METRICS_MAX_STUDIES");
    assert_int_equal(cfg.slow_request_ms, 20);
    assert_int_equal(cfg.metrics_max_studies, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_observability_settings, setup, teardown),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
