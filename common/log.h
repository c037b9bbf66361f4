/*
 * log.h - the daemon's log. Under systemd (JOURNAL_STREAM set) lines carry the
 * sd-daemon "<N>" priority prefix so journald records their level; otherwise
 * they are timestamped on stderr. Never log secrets.
 */
#ifndef LLMQ_LOG_H
#define LLMQ_LOG_H

#include <syslog.h>

void log_init(const char *ident);
void log_set_level(int level);
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
