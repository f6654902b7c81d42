/*
** admin.h: what the daemon does for /v1/admin/ requests (on a worker thread).
*/
#ifndef HPO_ADMIN_H
#define HPO_ADMIN_H

#include <stdint.h>

#include "../core/error.h"

/*
** A tar of a consistent snapshot of the database at `db_path` and its side
** files (storage/backup.h), in an unlinked temporary file of the database's
** directory: returns 0 with the file's descriptor (at offset 0, the caller
** closes it) and size, or a negative errno with `err` filled.
*/
int hpo_admin_backup(const char *db_path, int *ret_fd, uint64_t *ret_size,
        struct hpo_error *err);

#endif
