/*
** buf.h: one growable buffer for every module (arrays of any element type,
** text), and the one out-of-memory exit.
**
** Out of memory, the policy (docs/STYLE.md rule 22): a library function
** returns -ENOMEM and changes nothing; the service answers `internal` with
** nothing changed. Where a failure could not be undone (a buffer grown in
** the middle of building a write), the caller calls hpo_oom(), never a bare
** abort(): one place to find them all.
*/
#ifndef HPO_CORE_BUF_H
#define HPO_CORE_BUF_H

#include <stddef.h>

struct hpo_buf {
    char *data; /* NULL until the first add */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
};

/*
** A piece of memory, borrowed: a value written as the concatenation of
** pieces (a sampler's saved state from save_parts, a storage side file).
*/
struct hpo_part {
    const void *data;
    size_t len;
};

/* Room for `more` bytes after len (capacity doubles, 64 at least). 0 or -ENOMEM (unchanged). */
int hpo_buf_reserve(struct hpo_buf *b, size_t more);

/* Take `size` more bytes (uninitialised) and return them; NULL on OOM (unchanged). */
void *hpo_buf_add(struct hpo_buf *b, size_t size);

/* hpo_buf_add that calls hpo_oom() rather than fail. */
void *hpo_buf_add_or_die(struct hpo_buf *b, size_t size);

/* Free the memory; the buffer is empty again. */
void hpo_buf_free(struct hpo_buf *b);

/* Elements of type T in a buffer used as an array of T. */
#define HPO_BUF_N(b, T) ((b)->len / sizeof(T))
#define HPO_BUF_AT(b, T, i) (((T *)(void *)(b)->data)[i])

/* Out of memory where failing cannot be undone: a message on stderr, then abort(). */
_Noreturn void hpo_oom(void);

#endif
