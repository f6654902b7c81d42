/*
** replay-main.c: runs a libFuzzer target without libFuzzer, once over each
** file named on the command line (directories are walked one level), so
** corpora and past crashers run as ordinary tests (docs/STYLE.md rule 47).
*/
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../core/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    int r = f == NULL ? -errno : hpo_read_stream(f, SIZE_MAX, &buf, &len);

    if (r < 0) {
        fprintf(stderr, "replay: %s: cannot read (%d)\n", path, r);
        return r;
    }
    /* Exactly `len` bytes, like libFuzzer: a copy so ASan sees overreads. */
    {
        uint8_t *exact = malloc(len ? len : 1);
        if (exact == NULL) {
            free(buf);
            return -ENOMEM;
        }
        memcpy(exact, buf, len);
        free(buf);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int n = 0, failed = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            if (d == NULL) {
                failed++;
                continue;
            }
            while ((e = readdir(d)) != NULL) {
                char path[4096];
                if (e->d_name[0] == '.') {
                    continue;
                }
                snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
                failed += replay_file(path) < 0;
                n++;
            }
            closedir(d);
        } else {
            failed += replay_file(argv[i]) < 0;
            n++;
        }
    }
    printf("replayed %d inputs, %d unreadable\n", n, failed);
    return failed ? 1 : 0;
}
