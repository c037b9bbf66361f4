/*
 * log.h - the daemon's log. When stderr really is the journal's stream
 * (JOURNAL_STREAM names stderr's device and inode), a sink the daemon sets
 * sends each entry to journald with its priority and the fields LLMQ_BATCH=,
 * LLMQ_LANE=, LLMQ_JOB=; without a sink, lines carry the sd-daemon "<N>"
 * prefix. Elsewhere they are timestamped on stderr. Never log secrets.
 */
#ifndef LLMQ_LOG_H
#define LLMQ_LOG_H

#include <syslog.h>

/* What an entry is about; any member may be NULL. */
struct log_fields {
	const char *batch;
	const char *lane;
	const char *job;
};

typedef void (*log_sink_fn)(int prio, const struct log_fields *f, const char *msg);

void log_init(const char *ident);
void log_set_level(int level);
/* 1 when stderr is connected to the journal. */
int log_to_journal(void);
/* Entries go to sink instead of stderr (NULL: back to stderr). */
void log_set_sink(log_sink_fn sink);

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_ctx(int prio, const struct log_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
