/*
 * log.c - leveled logging to stderr or journald.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *log_ident = "llmq";
static int log_level = LOG_INFO;
static int log_journal;

void log_init(const char *ident)
{
	log_ident = ident;
	log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_level(int level)
{
	log_level = level;
}

void log_msg(int prio, const char *fmt, ...)
{
	static const char *const names[] = {"emerg",   "alert",  "crit", "error",
	                                    "warning", "notice", "info", "debug"};
	char when[32];
	struct tm tm;
	time_t now;
	va_list ap;

	if (prio > log_level)
		return;
	va_start(ap, fmt);
	if (log_journal) {
		fprintf(stderr, "<%d>", prio);
	} else {
		now = time(NULL);
		localtime_r(&now, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		fprintf(stderr, "%s %s[%s]: ", when, log_ident, names[prio & 7]);
	}
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}
