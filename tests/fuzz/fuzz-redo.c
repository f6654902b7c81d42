/*
** fuzz-redo.c: libFuzzer target for storage/redo.c's replay, the reader of
** a redo log that a crash may have left torn or a disk damaged.
**
** The input is taken as a log file; each record head in it that fits gets
** its magic, epoch and checksum made right (hpo__redo_seal), so that the payload
** decoder, not the checksum, meets the mutations. Replay must not read out
** of bounds (ASan), must hand over only whole, consistent writes (every op
** of a kind storage knows; a vector aligned; strings ending in their NUL),
** and whatever it accepted must encode again (hpo__redo_append) and replay
** from that second log to the same records and op counts.
*/
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../storage/redo.h"
#include "fuzz.h"

static char dir[64];
/* Every record is made this database's (a foreign epoch only ends a replay). */
#define EPOCH 0x5eed

struct seen {
    struct hpo__redo *again; /* accepted records are appended here */
    size_t records, ops;
    uint64_t lsn[64];
};

static int take(void *ctx, uint64_t lsn, struct hpo_write *batch, struct hpo_error *err)
{
    struct seen *s = ctx;
    volatile size_t touched = 0;

    for (struct hpo_write *w = batch; w != NULL; w = w->next) {
        CHECK(w->n_ops > 0);
        for (size_t i = 0; i < w->n_ops; i++) {
            const struct hpo_op *op = &w->ops[i];
            const char *texts[4] = { op->name, op->text, op->trial.worker, op->trial.results };

            CHECK(op->parts == NULL && op->append == NULL);
            CHECK(op->vector == NULL || op->blob == NULL);
            for (int j = 0; j < 4; j++) {
                touched += texts[j] != NULL ? strlen(texts[j]) : 0;
            }
            if (op->vector != NULL) {
                CHECK((uintptr_t)op->vector % sizeof(double) == 0);
                for (size_t k = 0; k < op->len; k++) {
                    touched += op->vector[k] == op->vector[k];
                }
            }
            if (op->blob != NULL && op->len > 0) {
                touched += ((const unsigned char *)op->blob)[op->len - 1];
            }
            s->ops++;
        }
    }
    (void)touched;
    if (s->records < 64) {
        s->lsn[s->records] = lsn;
    }
    s->records++;
    if (s->again != NULL) {
        CHECK(hpo__redo_append(s->again, lsn, batch, err) == 0);
    }
    return 0;
}

static void replay_file(const char *db, struct seen *s)
{
    struct hpo__redo *r = NULL;
    struct hpo_error err;
    uint64_t last = 0;

    CHECK(hpo__redo_open(db, EPOCH, &r, &err) == 0);
    CHECK(hpo__redo_replay(r, take, s, &last, &err) == 0);
    CHECK(s->records == 0 ? last == 0 : s->records > 64 || last == s->lsn[s->records - 1]);
    hpo__redo_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char db[96], db2[96], path[112];
    struct seen first = { 0 }, second = { 0 };
    struct hpo_error err;
    uint8_t *buf;
    size_t at = 0;
    FILE *f;

    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/hpo-fuzz-redo-XXXXXX");
        CHECK(mkdtemp(dir) != NULL);
    }
    buf = malloc(size > 0 ? size : 1);
    CHECK(buf != NULL);
    memcpy(buf, data, size);
    while (size - at >= HPO__REDO_HEAD) {
        uint64_t len;

        memcpy(&len, buf + at + 16, sizeof(len));
        if (len > size - at - HPO__REDO_HEAD) {
            break;
        }
        hpo__redo_seal(buf + at, EPOCH);
        at += HPO__REDO_HEAD + (size_t)len;
    }
    snprintf(db, sizeof(db), "%s/a.db", dir);
    snprintf(db2, sizeof(db2), "%s/b.db", dir);
    snprintf(path, sizeof(path), "%s.redo", db);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(size == 0 || fwrite(buf, 1, size, f) == size);
    CHECK(fclose(f) == 0);
    free(buf);
    snprintf(path, sizeof(path), "%s.redo", db2);
    (void)unlink(path);

    CHECK(hpo__redo_open(db2, EPOCH, &first.again, &err) == 0);
    replay_file(db, &first);
    hpo__redo_close(first.again);
    replay_file(db2, &second);
    CHECK(second.records == first.records && second.ops == first.ops);
    for (size_t i = 0; i < first.records && i < 64; i++) {
        CHECK(second.lsn[i] == first.lsn[i]);
    }
    return 0;
}
