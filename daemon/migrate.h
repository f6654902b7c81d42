/*
** migrate.h: `hpod migrate --from SRC --to DST`, a copy of every study and
** trial between two databases (SQLite paths or PostgreSQL URIs, any pair).
*/
#ifndef HPO_MIGRATE_H
#define HPO_MIGRATE_H

/* Run the subcommand with argv[0] = "migrate". Returns the exit status. */
int hpo_migrate_main(int argc, char **argv);

#endif
