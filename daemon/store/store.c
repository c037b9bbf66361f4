/*
 * store.c - the SQLite store's connection. One connection, WAL, foreign keys,
 * and every statement prepared once. Owns opening (the pragmas, the schema
 * migrations embedded from sql/), the statement cache and the transactions
 * every family of tables shares (store-private.h); each family is a
 * store-*.c file, their SQL text store-sql.c. Builds no SQL from data:
 * everything is bound.
 *
 * The store runs on the event loop, so it never waits long for a lock that
 * another program (a person's sqlite3) holds: it waits STORE_BUSY_WAIT_MS,
 * then fails the statement with -EBUSY and counts the database as contended;
 * while contended, a lock is not waited for at all. The callers keep their
 * writes and try again from a timer; the first write that gets through ends
 * the contention. In WAL mode reads are never blocked by a writer.
 */
#include "store/store-private.h"
#include "store/migrations.h"
#include "log.h"
#include "protocol.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sqlite3.h>

#define STORE_BUSY_WAIT_MS 10    /* on the loop: a lock someone holds for a moment */
#define STORE_OPEN_WAIT_MS 10000 /* at start-up, before the loop serves anyone */

static int64_t now_ms(int clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* SQLite's busy handler: count is how often it was called for this lock. */
static int on_busy(void *userdata, int count)
{
	struct store *s = userdata;
	struct timespec ms = {0, 1000000};
	int limit = s->patient ? STORE_OPEN_WAIT_MS : STORE_BUSY_WAIT_MS;

	if (s->sibling && s->sibling(s->sibling_ud))
		return 1; /* our own writer held it, and has let go: no other program's */
	if (!s->contended_since && count < limit) {
		nanosleep(&ms, NULL);
		return 1;
	}
	if (!s->contended_since)
		s->contended_since = now_ms(CLOCK_REALTIME);
	return 0;
}

static void uncontended(struct store *s)
{
	s->contended_since = 0;
}

int64_t store_contended_since(const struct store *s)
{
	return s->contended_since;
}

void store_serving(struct store *s)
{
	s->patient = 0;
}

int store_check_file(struct store *s)
{
	struct stat st;

	if (stat(s->path, &st) < 0)
		return errno == ENOENT ? -ENOENT : 0; /* other errors: cannot tell */
	if (st.st_dev != s->st.st_dev || st.st_ino != s->st.st_ino)
		return -ESTALE;
	return 0;
}

/* The one adapter from SQLite result codes to -errno. */
int store_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_TOOBIG:
		return -E2BIG;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EBADMSG;
	default:
		return -EIO;
	}
}

const char *store_errmsg(struct store *s)
{
	return s && s->db ? sqlite3_errmsg(s->db) : "no database";
}

json_object *store_error_reply(struct store *s, const char *what, int r)
{
	char msg[512];

	if (r == -ENOSPC) {
		snprintf(msg, sizeof(msg),
		         "%s: the disk holding the database is full; nothing was changed. "
		         "Free space there and try again",
		         what);
		log_err("%s: disk full (%s)", what, store_errmsg(s));
	} else {
		snprintf(msg, sizeof(msg), "%s: database error (%s); see llmqd's log", what,
		         strerror(-r));
		log_err("%s: %s: %s", what, strerror(-r), store_errmsg(s));
	}
	return proto_error(r == -ENOSPC ? ERR_STORAGE : ERR_INTERNAL, msg);
}

int store_prep(struct store *s, enum stmt_id id, sqlite3_stmt **ret)
{
	int rc;

	if (!s->stmt[id]) {
		rc = sqlite3_prepare_v3(s->db, store_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
		                        &s->stmt[id], NULL);
		if (rc != SQLITE_OK)
			return store_errno(rc);
	}
	sqlite3_reset(s->stmt[id]);
	sqlite3_clear_bindings(s->stmt[id]);
	*ret = s->stmt[id];
	return 0;
}

/* Run a statement that returns no rows; *ret_changes may be NULL. */
int store_run(struct store *s, sqlite3_stmt *st, int64_t *ret_changes)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return store_errno(rc);
	if (!s->in_tx && !sqlite3_stmt_readonly(st))
		uncontended(s);
	if (ret_changes)
		*ret_changes = sqlite3_changes64(s->db);
	return 0;
}

void store_bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

void store_bind_opt_int(sqlite3_stmt *st, int i, int64_t v)
{
	if (v >= 0)
		sqlite3_bind_int64(st, i, v);
	else
		sqlite3_bind_null(st, i);
}

int store_exec(struct store *s, const char *sql)
{
	return store_errno(sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

int store_schema_version(struct store *s)
{
	sqlite3_stmt *st = NULL;
	int v = -1;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

int store_limit_size(struct store *s, int64_t max_bytes)
{
	sqlite3_stmt *st = NULL;
	int64_t page = 4096;
	char sql[64];

	if (max_bytes <= 0)
		return 0;
	if (sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		page = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld",
	         (long long)(max_bytes / page > 0 ? max_bytes / page : 1));
	return store_exec(s, sql);
}

static int migrate(struct store *s)
{
	char pragma[64];
	int cur, r = 0;
	size_t i;

	cur = store_schema_version(s);
	if (cur < 0)
		return -EIO;
	if (migrations_count > 0 && cur > migrations[migrations_count - 1].version)
		return -EPROTO; /* a newer llmqd wrote this database */
	for (i = 0; i < migrations_count; i++) {
		if (migrations[i].version <= cur)
			continue;
		r = store_exec(s, "BEGIN IMMEDIATE");
		if (r < 0)
			return r;
		r = store_exec(s, migrations[i].sql);
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", migrations[i].version);
		if (r == 0)
			r = store_exec(s, pragma);
		if (r == 0)
			r = store_exec(s, "COMMIT");
		if (r < 0) {
			store_exec(s, "ROLLBACK");
			return r;
		}
	}
	return 0;
}

/*
 * Whether rc says the disk had no room for what opening needs: the WAL's
 * shared-memory index (SQLite writes a byte into each of its pages so that
 * a full tmpfs fails the write rather than raising SIGBUS on the mapping),
 * or a page.
 */
static int store_no_room(sqlite3 *db, int rc)
{
	int ext = sqlite3_extended_errcode(db);

	return (rc & 0xff) == SQLITE_FULL || ext == SQLITE_IOERR_SHMSIZE ||
	       ext == SQLITE_IOERR_SHMOPEN || ext == SQLITE_IOERR_SHMMAP ||
	       ext == SQLITE_IOERR_WRITE || ext == SQLITE_IOERR_TRUNCATE;
}

static int store_connect(struct store *s, int exclusive)
{
	int persist = 1, rc, r;

	if (s->db) {
		sqlite3_close(s->db);
		s->db = NULL;
	}
	rc =
	    sqlite3_open_v2(s->path, &s->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		return store_errno(rc);
	sqlite3_busy_handler(s->db, on_busy, s);
	sqlite3_extended_result_codes(s->db, 1);
	r = store_slice_register(s->db);
	if (r < 0)
		return r;
	/*
	 * Keep the WAL and its shared-memory index when closing: a restart on a
	 * full disk then finds them made, instead of needing room for them.
	 */
	sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	/* Before the first read: then SQLite keeps the WAL's index in memory. */
	if (exclusive)
		rc = sqlite3_exec(s->db, "PRAGMA locking_mode = EXCLUSIVE", NULL, NULL, NULL);
	/*
	 * Only takes on a new file, before its tables: then retention gives
	 * space back. Setting it writes the header even when it is set already,
	 * so on a file with tables it is not set again: opening writes nothing.
	 */
	if (rc == SQLITE_OK && store_schema_version(s) == 0)
		rc = sqlite3_exec(s->db, "PRAGMA auto_vacuum = INCREMENTAL", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		return 0;
	return store_no_room(s->db, rc) ? -ENOSPC : store_errno(rc);
}

int store_open(const char *path, struct store **ret)
{
	struct store *s;
	int r;

	/*
	 * SQLite's memory statistics (which llmqd never reads) take one mutex of
	 * the whole process on every allocation: with the writer thread and the
	 * loop both in SQLite, it was most of the loop's futex calls in a drain.
	 * Only before SQLite's first use (the first open, no other thread in it
	 * yet); later it refuses with SQLITE_MISUSE and changes nothing.
	 */
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->patient = 1;
	s->path = strdup(path);
	if (!s->path) {
		r = -ENOMEM;
		goto out;
	}
	r = store_connect(s, 0);
	if (r == -ENOSPC) {
		/* No room for the index's file: keep it in memory, others locked out. */
		r = store_connect(s, 1);
		if (r == 0)
			s->exclusive = 1;
	}
	if (r == 0)
		r = store_exec(s, "PRAGMA synchronous = NORMAL");
	/* Off while migrating: a migration may rebuild a table others refer to. */
	if (r == 0)
		r = migrate(s);
	if (r == 0)
		r = store_exec(s, "PRAGMA foreign_keys = ON");
	if (r == 0 && stat(path, &s->st) < 0)
		r = -errno;
out:
	if (r < 0) {
		store_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

int store_exclusive(const struct store *s)
{
	return s->exclusive;
}

void store_free(struct store *s)
{
	int i;

	if (!s)
		return;
	for (i = 0; i < S__COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close(s->db);
	free(s->held);
	free(s->reading);
	free(s->path);
	free(s);
}

int store_prepare_all(struct store *s)
{
	sqlite3_stmt *st;
	int i, r, first = 0;

	for (i = 0; i < S__COUNT; i++) {
		r = store_prep(s, (enum stmt_id)i, &st);
		if (r < 0 && first == 0)
			first = r;
	}
	return first;
}

int store_simple(struct store *s, enum stmt_id id)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, id, &st);

	return r < 0 ? r : store_run(s, st, NULL);
}

int store_tx_begin(struct store *s)
{
	int r = store_simple(s, S_BEGIN);

	if (r == 0)
		s->in_tx = 1;
	return r;
}

int store_tx_commit(struct store *s)
{
	int r = store_simple(s, S_COMMIT);

	if (r == 0) {
		s->in_tx = 0;
		uncontended(s);
	}
	return r;
}

int store_read_begin(struct store *s)
{
	if (s->in_tx || !sqlite3_get_autocommit(s->db))
		return 0;
	return store_simple(s, S_BEGIN_READ) == 0;
}

void store_read_end(struct store *s, int begun)
{
	if (begun && !sqlite3_get_autocommit(s->db) && store_simple(s, S_COMMIT) < 0)
		store_simple(s, S_ROLLBACK);
}

int store_tx_rollback(struct store *s)
{
	int r = 0;

	if (!sqlite3_get_autocommit(s->db))
		r = store_simple(s, S_ROLLBACK);
	s->in_tx = 0;
	return r;
}

int store_tx_end(struct store *s, int own, int r)
{
	if (!own) {
		if (r < 0)
			store_simple(s, S_ROLLBACK_TO);
		store_simple(s, S_RELEASE);
		return r;
	}
	if (r == 0)
		r = store_tx_commit(s);
	if (r < 0)
		store_tx_rollback(s);
	return r;
}

int store_db_bytes(struct store *s, int64_t *ret)
{
	sqlite3_stmt *st;
	int64_t pages = -1, size = -1;

	if (sqlite3_prepare_v2(s->db, "PRAGMA page_count", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		pages = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		size = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (pages < 0 || size < 0)
		return -EIO;
	*ret = pages * size;
	return 0;
}

int64_t store_last_insert_id(struct store *s)
{
	return sqlite3_last_insert_rowid(s->db);
}

int store_sum_of(struct store *s, enum stmt_id id, int64_t uid, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, id, &st), rc;

	if (r < 0)
		return r;
	store_bind_opt_int(st, 1, uid);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*ret = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : store_errno(rc == SQLITE_DONE ? SQLITE_ERROR : rc);
}

int64_t store_vm_steps(struct store *s)
{
	int64_t n = 0;
	int i;

	for (i = 0; i < S__COUNT; i++)
		if (s->stmt[i])
			n += sqlite3_stmt_status(s->stmt[i], SQLITE_STMTSTATUS_VM_STEP, 0);
	return n;
}

int store_open_writer(struct store *s, struct store **ret)
{
	struct store *w = NULL;
	sqlite3_stmt *st = NULL;
	int64_t pages = 0;
	char sql[64];
	int r;

	if (s->exclusive || !sqlite3_threadsafe())
		return -ENOTSUP;
	if (sqlite3_prepare_v2(s->db, "PRAGMA max_page_count", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		pages = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	r = store_open(s->path, &w);
	if (r < 0)
		return r;
	if (w->exclusive) {
		r = -ENOTSUP;
		goto out;
	}
	w->patient = 0;
	r = store_errno(sqlite3_busy_timeout(w->db, STORE_WRITER_WAIT_MS));
	if (r == 0 && pages > 0) {
		snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", (long long)pages);
		r = store_exec(w, sql);
	}
out:
	if (r < 0) {
		store_free(w);
		return r;
	}
	*ret = w;
	return 0;
}

int store_checkpoint(struct store *s)
{
	return store_errno(
	    sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL));
}

int store_autocheckpoint(struct store *s, int pages)
{
	return store_errno(sqlite3_wal_autocheckpoint(s->db, pages));
}

void store_note_contended(struct store *s, int64_t since)
{
	if (!since)
		s->contended_since = 0;
	else if (!s->contended_since)
		s->contended_since = since;
}

void store_on_sibling(struct store *s, int (*wait)(void *), void *userdata)
{
	s->sibling = wait;
	s->sibling_ud = userdata;
}
