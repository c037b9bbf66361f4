/*
 * sd.h - the systemd glue: socket activation and readiness notification.
 * Harmless when not run by systemd.
 */
#ifndef LLMQ_SD_H
#define LLMQ_SD_H

#include <stdint.h>

/* The listening socket systemd passed us, or -1 (none), or -errno. */
int sd_listen_socket(void);
void sd_ready(const char *status);
void sd_stopping(void);
void sd_reloading(void);
void sd_status(const char *status);
/* The watchdog interval systemd asks for in ms (WatchdogSec=), or 0. */
int64_t sd_watchdog_ms(void);
void sd_watchdog_ping(void);

struct log_fields;
/* A log sink for log_set_sink(): structured entries to journald. */
void sd_log_sink(int prio, const struct log_fields *f, const char *msg);

#endif
