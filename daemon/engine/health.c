/*
 * health.c - see health.h.
 */
#include "engine/health.h"
#include "log.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

/* Bytes free to llmqd on the filesystem of the database; -errno when unknown. */
static int64_t health_free_bytes(const char *db_path)
{
	char dir[PATH_MAX];
	struct statvfs sv;

	snprintf(dir, sizeof(dir), "%s", db_path);
	if (statvfs(dirname(dir), &sv) < 0)
		return -errno;
	return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

static void health_check_disk(struct llmqd *d)
{
	int64_t floor = d->cfg->disk_min_free_bytes, free = health_free_bytes(d->cfg->db_path);
	int low;

	if (free < 0) {
		d->disk_free = -1;
		return; /* cannot tell: keep the verdict */
	}
	d->disk_free = free;
	low = floor > 0 && free < floor;
	if (low && !d->disk_low)
		log_err("only %.1f MiB free on the filesystem of %s, below disk_min_free_mb "
		        "(%lld MiB): new uploads and batches are refused until there is room; "
		        "reads, cancels and deletes go on. Delete files no batch needs, or free "
		        "space there",
		        (double)free / 1048576.0, d->cfg->db_path, (long long)(floor >> 20));
	else if (!low && d->disk_low)
		log_info("%.1f MiB free on the filesystem of %s again: new uploads and batches "
		         "are taken",
		         (double)free / 1048576.0, d->cfg->db_path);
	d->disk_low = low;
}

static void clock_text(int64_t wall_ms, char *buf, size_t len)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	if (!localtime_r(&t, &tm) || strftime(buf, len, "%H:%M:%S", &tm) == 0)
		snprintf(buf, len, "?");
}

void health_check(struct llmqd *d)
{
	int64_t since = store_contended_since(d->store);
	int gone = store_check_file(d->store);
	char at[16];

	if (since && !d->db_locked_since) {
		clock_text(since, at, sizeof(at));
		log_warn("the database %s is locked by another program since %s (a sqlite3 "
		         "session in a transaction?); llmqd keeps serving, holds outcomes in "
		         "memory and retries every second. End that transaction to let them in",
		         d->cfg->db_path, at);
	} else if (!since && d->db_locked_since) {
		log_info("the database takes writes again after %llds locked",
		         (long long)((time_wall_ms() - d->db_locked_since) / 1000));
	}
	d->db_locked_since = since;
	if (gone && !d->db_gone)
		log_err("the database file %s was %s while llmqd ran: nothing stored from now "
		        "on would survive a restart, so new batches are refused. Restart llmqd "
		        "(systemctl restart llmqd) to start a new database",
		        d->cfg->db_path, gone == -ENOENT ? "deleted" : "replaced");
	d->db_gone = gone;
	health_check_disk(d);
}

int health_db(const struct llmqd *d, char *msg, size_t len, int *ret_refuse)
{
	char at[16];

	*ret_refuse = 0;
	if (d->db_gone) {
		*ret_refuse = 1;
		snprintf(msg, len,
		         "the database file %s was %s while llmqd ran; nothing stored now would "
		         "survive a restart, so llmqd takes no new batches: restart llmqd",
		         d->cfg->db_path, d->db_gone == -ENOENT ? "deleted" : "replaced");
		return 1;
	}
	if (d->db_locked_since) {
		clock_text(d->db_locked_since, at, sizeof(at));
		snprintf(msg, len,
		         "the database is locked by another program since %s; writes wait in "
		         "memory until it lets go",
		         at);
		return 1;
	}
	if (!sched_store_writable(d->sched)) {
		snprintf(msg, len,
		         "the database refuses writes (see the log); outcomes wait in "
		         "memory");
		return 1;
	}
	return 0;
}

int health_disk(const struct llmqd *d, char *msg, size_t len)
{
	if (!d->disk_low)
		return 0;
	snprintf(msg, len,
	         "only %.1f MiB free on the database's filesystem, below disk_min_free_mb (%lld "
	         "MiB): new uploads and batches are refused until there is room; reads, "
	         "cancels and deletes go on. Delete files no batch needs, or free space there",
	         (double)d->disk_free / 1048576.0, (long long)(d->cfg->disk_min_free_bytes >> 20));
	return 1;
}
