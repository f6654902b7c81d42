/*
** fuzz-config.c: libFuzzer target for the daemon's config parser
** (daemon/config.c, included since the daemon is not a library). The input
** is a config file: it is loaded through --config from a memfd, then each
** of its lines is also applied as "key value" through hpo_config_set.
*/
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../daemon/config.c"
#include "fuzz.h"

/* Whatever was accepted leaves the config within its documented ranges. */
static void check_config(const struct hpo_config *cfg)
{
    CHECK(memchr(cfg->host, '\0', sizeof(cfg->host)) != NULL);
    CHECK(cfg->host[0] != '\0');
    CHECK(cfg->port <= 65535);
    CHECK(memchr(cfg->db, '\0', sizeof(cfg->db)) != NULL);
    CHECK(cfg->db[0] != '\0');
    CHECK(cfg->threads >= 1 && cfg->threads <= 1024);
    CHECK(cfg->log_level >= HPO_LOG_ERR && cfg->log_level <= HPO_LOG_DEBUG);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hpo_config cfg;
    char msg[256], path[64], line[512];
    int fd, r;
    size_t start = 0;

    /* The whole input as a config file. */
    fd = memfd_create("fuzz-config", 0);
    if (fd < 0) {
        return 0;
    }
    if (size > 0 && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    {
        char *argv[] = { "hpod", "--config", path, NULL };
        msg[0] = '\0';
        r = hpo_config_load(&cfg, 3, argv, msg, sizeof(msg));
        if (r == 0) {
            check_config(&cfg);
        } else {
            CHECK(r == -EINVAL);
            CHECK(msg[0] != '\0');
        }
    }
    close(fd);

    /* Each line as "key value" through hpo_config_set on a default config. */
    {
        char *argv[] = { "hpod", NULL };
        CHECK(hpo_config_load(&cfg, 1, argv, msg, sizeof(msg)) == 0);
    }
    while (start < size) {
        size_t end = start, n;
        char *space;
        while (end < size && data[end] != '\n') {
            end++;
        }
        n = end - start < sizeof(line) - 1 ? end - start : sizeof(line) - 1;
        memcpy(line, data + start, n);
        line[n] = '\0';
        space = strchr(line, ' ');
        if (space != NULL) {
            struct hpo_config before;
            memcpy(&before, &cfg, sizeof(cfg));
            *space = '\0';
            msg[0] = '\0';
            r = hpo_config_set(&cfg, line, space + 1, msg, sizeof(msg));
            if (r < 0) {
                CHECK(r == -EINVAL);
                CHECK(msg[0] != '\0');
                /* A rejected setting changes nothing. */
                CHECK(memcmp(&before, &cfg, sizeof(cfg)) == 0);
            }
            check_config(&cfg);
        }
        start = end + 1;
    }
    return 0;
}
