/*
 * sd.h - the systemd glue: socket activation and readiness notification.
 * Harmless when not run by systemd.
 */
#ifndef LLMQ_SD_H
#define LLMQ_SD_H

#include <stdint.h>

#include <stddef.h>

/* The names llmqd's .socket units give their sockets (FileDescriptorName=). */
#define SD_NAME_IPC "llmq"
#define SD_NAME_HTTP "http"

/* The listening sockets systemd passed, each -1 when not passed. */
struct sd_sockets {
	int ipc;       /* "llmq": the llmq socket (a lone unnamed Unix socket too) */
	int http_tcp;  /* "http": the HTTP face on TCP */
	int http_unix; /* "http": the HTTP face on a Unix socket */
};

/*
 * What systemd passed, told apart by name and family; all -1 when started by
 * hand. -EINVAL, with the reason in err, for a socket llmqd cannot use.
 */
int sd_listen_sockets(struct sd_sockets *ret, char *err, size_t errlen);
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
