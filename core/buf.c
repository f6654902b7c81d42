/*
** buf.c: the growable buffer and the out-of-memory exit (buf.h).
*/
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "buf.h"

int hpo_buf_reserve(struct hpo_buf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 64;
    char *n;

    if (more <= b->cap - b->len) {
        return 0;
    }
    if (more > SIZE_MAX / 2 - b->len) {
        return -ENOMEM;
    }
    while (cap - b->len < more) {
        cap *= 2;
    }
    n = realloc(b->data, cap);
    if (n == NULL) {
        return -ENOMEM;
    }
    b->data = n;
    b->cap = cap;
    return 0;
}

void *hpo_buf_add(struct hpo_buf *b, size_t size)
{
    void *p;

    if (hpo_buf_reserve(b, size) < 0) {
        return NULL;
    }
    p = b->data + b->len;
    b->len += size;
    return p;
}

void *hpo_buf_add_or_die(struct hpo_buf *b, size_t size)
{
    void *p = hpo_buf_add(b, size);

    if (p == NULL) {
        hpo_oom();
    }
    return p;
}

void hpo_buf_free(struct hpo_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void hpo_oom(void)
{
    static const char msg[] = "hpod: out of memory where the change cannot be undone\n";

    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    abort();
}
