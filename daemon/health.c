/*
 * health.c - see health.h.
 */
#include "health.h"
#include "log.h"
#include "scheduler.h"
#include "store.h"
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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
