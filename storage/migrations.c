/*
** migrations.c: the numbered schema migrations, tracked by PRAGMA user_version
** (on PostgreSQL by the table hpod_schema, applied by pg.c from the same list).
**
** Migration N takes a database from version N-1 to N. Each one runs in its
** own BEGIN IMMEDIATE transaction together with the user_version bump, so a
** crash leaves the database at N-1 or N, never in between. Migrations are
** append-only: never edit one that has shipped, add the next.
*/
#include <errno.h>
#include <stdio.h>

#include <sqlite3.h>

#include "storage-int.h"

/*
** Version 1: the whole schema. Every table is STRICT. Children of a trial
** reference it with ON DELETE CASCADE, and trials reference their study, so
** deleting a study removes everything of it. The composite-key tables are
** WITHOUT ROWID: they are read and written by primary key only, and a
** rowid table would need a second b-tree for the key.
**
** params.value is ANY: REAL for a scalar (NULL for NaN), BLOB of
** little-endian float64 for a vector. A STRICT table keeps ANY values as
** bound, so 1.0 stays REAL.
*/
static const char migration_1[] =
        "CREATE TABLE studies ("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT UNIQUE NOT NULL,"
        "  spec TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  sampler_state BLOB"
        ") STRICT;"
        "CREATE TABLE trials ("
        "  study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,"
        "  number INTEGER NOT NULL,"
        "  state INTEGER NOT NULL,"
        "  value REAL,"
        "  worker TEXT,"
        "  retry_of INTEGER NOT NULL,"
        "  retries INTEGER NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  started_at INTEGER NOT NULL,"
        "  completed_at INTEGER NOT NULL,"
        "  heartbeat_at INTEGER NOT NULL,"
        "  PRIMARY KEY (study_id, number)"
        ") STRICT, WITHOUT ROWID;"
        "CREATE TABLE params ("
        "  study_id INTEGER NOT NULL,"
        "  number INTEGER NOT NULL,"
        "  idx INTEGER NOT NULL,"
        "  value ANY,"
        "  PRIMARY KEY (study_id, number, idx),"
        "  FOREIGN KEY (study_id, number) REFERENCES trials(study_id, number)"
        "    ON DELETE CASCADE"
        ") STRICT, WITHOUT ROWID;"
        "CREATE TABLE intermediate ("
        "  study_id INTEGER NOT NULL,"
        "  number INTEGER NOT NULL,"
        "  step INTEGER NOT NULL,"
        "  value REAL,"
        "  PRIMARY KEY (study_id, number, step),"
        "  FOREIGN KEY (study_id, number) REFERENCES trials(study_id, number)"
        "    ON DELETE CASCADE"
        ") STRICT, WITHOUT ROWID;"
        "CREATE TABLE trial_attrs ("
        "  study_id INTEGER NOT NULL,"
        "  number INTEGER NOT NULL,"
        "  key TEXT NOT NULL,"
        "  value TEXT NOT NULL,"
        "  PRIMARY KEY (study_id, number, key),"
        "  FOREIGN KEY (study_id, number) REFERENCES trials(study_id, number)"
        "    ON DELETE CASCADE"
        ") STRICT, WITHOUT ROWID;";

/*
** Version 1 on PostgreSQL (pg.c): the same tables, keys and cascades. No
** column holds two types, so a param has `value` (a scalar, or the number
** of the earlier trial a shared vector refers to, as SQLite's REAL) and
** `vec` (a vector's little-endian float64 bytes, NULL for a scalar).
** Vectors and sampler states are bytea inline, never side files: a bytea
** holds up to 1 GB, beyond any value a request can carry (256 MiB), and
** TOAST compresses and moves it out of the row (docs/POSTGRESQL.md).
** hpod_batch holds the id of the last committed group transaction, which
** tells a writer whose COMMIT answer was lost whether it committed.
*/
static const char migration_1_pg[] =
        "CREATE TABLE studies ("
        "  id bigint PRIMARY KEY,"
        "  name text UNIQUE NOT NULL,"
        "  spec text NOT NULL,"
        "  created_at bigint NOT NULL,"
        "  sampler_state bytea"
        ");"
        "CREATE TABLE trials ("
        "  study_id bigint NOT NULL REFERENCES studies(id) ON DELETE CASCADE,"
        "  number bigint NOT NULL,"
        "  state integer NOT NULL,"
        "  value double precision,"
        "  worker text,"
        "  retry_of bigint NOT NULL,"
        "  retries bigint NOT NULL,"
        "  created_at bigint NOT NULL,"
        "  started_at bigint NOT NULL,"
        "  completed_at bigint NOT NULL,"
        "  heartbeat_at bigint NOT NULL,"
        "  PRIMARY KEY (study_id, number)"
        ");"
        "CREATE TABLE params ("
        "  study_id bigint NOT NULL,"
        "  number bigint NOT NULL,"
        "  idx bigint NOT NULL,"
        "  value double precision,"
        "  vec bytea,"
        "  PRIMARY KEY (study_id, number, idx),"
        "  FOREIGN KEY (study_id, number) REFERENCES trials(study_id, number)"
        "    ON DELETE CASCADE"
        ");"
        "CREATE TABLE intermediate ("
        "  study_id bigint NOT NULL,"
        "  number bigint NOT NULL,"
        "  step bigint NOT NULL,"
        "  value double precision,"
        "  PRIMARY KEY (study_id, number, step),"
        "  FOREIGN KEY (study_id, number) REFERENCES trials(study_id, number)"
        "    ON DELETE CASCADE"
        ");"
        "CREATE TABLE trial_attrs ("
        "  study_id bigint NOT NULL,"
        "  number bigint NOT NULL,"
        "  key text NOT NULL,"
        "  value text NOT NULL,"
        "  PRIMARY KEY (study_id, number, key),"
        "  FOREIGN KEY (study_id, number) REFERENCES trials(study_id, number)"
        "    ON DELETE CASCADE"
        ");"
        "ALTER TABLE studies ALTER COLUMN sampler_state SET STORAGE EXTERNAL;"
        "ALTER TABLE params ALTER COLUMN vec SET STORAGE EXTERNAL;"
        "CREATE TABLE hpod_batch (one boolean PRIMARY KEY CHECK (one), id bigint NOT NULL);"
        "INSERT INTO hpod_batch VALUES (true, 0);";

/*
** Version 2: objectives and constraints (docs/API.md "Objectives and
** constraints"). A trial of a study with several objectives or with
** constraints keeps in `results` a JSON array of its objective values then
** its constraint values, in the study's declared order (null: not told);
** `value` still holds the first objective. Rows of earlier versions keep
** NULL: one objective, its value in `value`; nothing is rewritten.
*/
static const char migration_2[] = "ALTER TABLE trials ADD COLUMN results TEXT;";
static const char migration_2_pg[] = "ALTER TABLE trials ADD COLUMN results text;";

/*
** Version 3, PostgreSQL only: several daemons on one database
** (docs/CLUSTER.md). `daemons`: one row per daemon process (a fresh id at
** each start), its advertised URL and its heartbeat on the database's
** clock; a daemon is live while its heartbeat is within the lease and its
** writer session holds the advisory lock (HPO_PG_DAEMON_LOCK, id).
** `study_owners`: a study's owner (NULL: released) and its fencing epoch,
** bumped on every change of owner. hpod_fence() is the first statement of
** every write of a study: it takes the row FOR SHARE (a claimant's UPDATE
** waits for the batch) and raises SQLSTATE HP001 when the writer no longer
** owns the study at the epoch it loaded. `hpod_batches`: each daemon's
** batch marker. `hpod_study_ids`: study ids, unique across daemons.
*/
static const char migration_3_pg[] =
        "CREATE TABLE daemons ("
        "  id bigserial PRIMARY KEY,"
        "  url text NOT NULL DEFAULT '',"
        "  heartbeat timestamptz NOT NULL DEFAULT now(),"
        "  started timestamptz NOT NULL DEFAULT now(),"
        "  leaving boolean NOT NULL DEFAULT false"
        ");"
        "CREATE TABLE study_owners ("
        "  study_id bigint PRIMARY KEY REFERENCES studies(id) ON DELETE CASCADE,"
        "  owner bigint,"
        "  epoch bigint NOT NULL,"
        "  changed timestamptz NOT NULL DEFAULT now()"
        ");"
        "CREATE TABLE hpod_batches (daemon bigint PRIMARY KEY, id bigint NOT NULL);"
        "CREATE SEQUENCE hpod_study_ids;"
        "SELECT setval('hpod_study_ids', (SELECT coalesce(max(id), 0) + 1 FROM studies), false);"
        "CREATE FUNCTION hpod_fence(s bigint, d bigint, e bigint) RETURNS integer"
        " LANGUAGE plpgsql AS $f$ BEGIN"
        "  PERFORM 1 FROM study_owners WHERE study_id = s AND owner = d AND epoch = e FOR SHARE;"
        "  IF NOT FOUND THEN RAISE EXCEPTION 'study % is no longer owned by this daemon"
        " (fencing epoch %)', s, e USING ERRCODE = 'HP001'; END IF;"
        "  RETURN 1;"
        " END $f$;";

/*
** Version 3, SQLite only (PostgreSQL's version 3 is the one above): the
** number of the last redo-log record the database holds (storage/redo.h).
** Every transaction that applies records sets it; at open the records past
** it are applied again. `epoch`: drawn at the first open (0: not yet) and
** written in every record, so that a log is applied only to the database
** it was written for (a backup's copy gets 0, so a restored database never
** takes the records of a log left beside it). One row.
*/
static const char migration_3[] =
        "CREATE TABLE hpod_redo (one INTEGER PRIMARY KEY CHECK (one = 1),"
        " lsn INTEGER NOT NULL, epoch INTEGER NOT NULL) STRICT;"
        "INSERT INTO hpod_redo VALUES (1, 0, 0);";

/*
** migrations[i] takes the database from version i to i + 1: SQLite's SQL,
** PostgreSQL's. SQLite stops at HPO_STORAGE_SCHEMA_VERSION; PostgreSQL goes
** on to HPO_STORAGE_PG_SCHEMA_VERSION (NULL for SQLite past its last).
*/
static const char *const migrations[][2] = {
    { migration_1, migration_1_pg },
    { migration_2, migration_2_pg },
    { migration_3, migration_3_pg },
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == HPO_STORAGE_PG_SCHEMA_VERSION,
        "HPO_STORAGE_PG_SCHEMA_VERSION must be the number of migrations");

const char *hpo__storage_migration_sql(int n, bool postgresql)
{
    if (n < 1 || n > (postgresql ? HPO_STORAGE_PG_SCHEMA_VERSION : HPO_STORAGE_SCHEMA_VERSION)) {
        return NULL;
    }
    return migrations[n - 1][postgresql ? 1 : 0];
}

static int user_version(sqlite3 *db, int *ret_version, struct hpo_error *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;
    int r;

    rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        return hpo__storage_error(db, rc, "reading user_version", err);
    }
    rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        r = hpo__storage_error(db, rc, "reading user_version", err);
        sqlite3_finalize(stmt);
        return r;
    }
    *ret_version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return 0;
}

static int exec(sqlite3 *db, const char *sql, const char *what, struct hpo_error *err)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

    if (rc != SQLITE_OK) {
        return hpo__storage_error(db, rc, what, err);
    }
    return 0;
}

/* Run migration `to` (1-based) unless the version moved past it meanwhile. */
static int migrate_one(sqlite3 *db, int to, struct hpo_error *err)
{
    char bump[64];
    int version;
    int r;

    r = exec(db, "BEGIN IMMEDIATE", "starting a migration", err);
    if (r < 0) {
        return r;
    }
    /* Read again under the write lock: another process may have migrated. */
    r = user_version(db, &version, err);
    if (r < 0) {
        goto fail;
    }
    if (version >= to) {
        return exec(db, "COMMIT", "ending a migration", err);
    }
    r = exec(db, migrations[to - 1][0], "running a migration", err);
    if (r < 0) {
        goto fail;
    }
    snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", to);
    r = exec(db, bump, "setting user_version", err);
    if (r < 0) {
        goto fail;
    }
    r = exec(db, "COMMIT", "committing a migration", err);
    if (r < 0) {
        goto fail;
    }
    return 0;

fail:
    if (!sqlite3_get_autocommit(db)) {
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    return r;
}

int hpo__storage_migrate(sqlite3 *db, struct hpo_error *err)
{
    int version;
    int r;

    r = user_version(db, &version, err);
    if (r < 0) {
        return r;
    }
    if (version < 0 || version > HPO_STORAGE_SCHEMA_VERSION) {
        return hpo_error_set(err, -EPROTONOSUPPORT, HPO_INTERNAL, NULL,
                "database schema version %d is not supported by this hpod (%d)", version,
                HPO_STORAGE_SCHEMA_VERSION);
    }
    for (int to = version + 1; to <= HPO_STORAGE_SCHEMA_VERSION; to++) {
        r = migrate_one(db, to, err);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}
