/*
** walbuf.h: the VFS of the writer connection (walbuf.c): SQLite's unix VFS
** whose WAL files write a commit's frames with one pwrite instead of two
** per frame. Internal to storage/.
*/
#ifndef HPO_WALBUF_H
#define HPO_WALBUF_H

/* The VFS's name for sqlite3_open_v2 (registered on the first call), or NULL: use the default. */
const char *hpo__walbuf_vfs(void);

#endif
