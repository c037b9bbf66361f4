/*
 * log.c - leveled logging to stderr or journald.
 */
#include "log.h"
#include "text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *log_ident = "llmq";
static int log_level = LOG_INFO;
static int log_journal;
static log_sink_fn log_sink;

/* JOURNAL_STREAM is inherited by children too: only trust it for our stderr. */
static int stderr_is_journal(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!v || sscanf(v, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(const char *ident)
{
	log_ident = ident;
	log_journal = stderr_is_journal();
}

int log_to_journal(void)
{
	return log_journal;
}

void log_set_sink(log_sink_fn sink)
{
	log_sink = sink;
}

void log_set_level(int level)
{
	log_level = level;
}

static void log_v(int prio, const struct log_fields *f, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void log_v(int prio, const struct log_fields *f, const char *fmt, va_list ap)
{
	static const char *const names[] = {"emerg",   "alert",  "crit", "error",
	                                    "warning", "notice", "info", "debug"};
	char when[32], raw[2048], msg[2048];
	struct tm tm;
	time_t now;

	if (prio > log_level)
		return;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	/* The last line of defence: a caller's string with an LF or an escape
	 * sequence in it never forges a line nor reaches a terminal raw. */
	text_escape(raw, msg, sizeof(msg));
	if (log_sink) {
		log_sink(prio, f, msg);
		return;
	}
	if (log_journal) {
		fprintf(stderr, "<%d>%s\n", prio, msg);
		return;
	}
	now = time(NULL);
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s %s[%s]: %s\n", when, log_ident, names[prio & 7], msg);
}

void log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(prio, NULL, fmt, ap);
	va_end(ap);
}

void log_ctx(int prio, const struct log_fields *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(prio, f, fmt, ap);
	va_end(ap);
}
