/*
** backup.h: an online backup of a database and its side files as a tar
** stream (GET /v1/admin/backup, docs/API.md "Access and TLS").
*/
#ifndef HPO_STORAGE_BACKUP_H
#define HPO_STORAGE_BACKUP_H

#include "../core/error.h"

/*
** Write to `out_fd` (from its current offset) an ustar archive of a
** consistent snapshot of the database at `db_path`: the database as
** "<basename>" (one self-contained file, no -wal) and every side file the
** snapshot references as "<basename>.blobs/<name>", nothing else. The
** snapshot is one read transaction on a connection of its own (SQLite's
** online backup API), so writers are not held up; side files are checked
** against the hashes in their references and the snapshot is taken again
** (at most 3 times) when one was replaced meanwhile. A temporary copy of the
** database is made beside it and removed. Thread-safe; blocking.
** Returns 0, or a negative errno with `err` filled.
*/
int hpo_storage_backup(const char *db_path, int out_fd, struct hpo_error *err);

#endif
