/*
 * sd.c - libsystemd calls, kept here so the rest of the daemon does not care
 * whether systemd is there.
 */
#include "sd.h"

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include "log.h"

int sd_listen_socket(void)
{
	int n = sd_listen_fds(1);

	if (n < 0)
		return n;
	if (n == 0)
		return -1;
	if (n > 1 || sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
		return -EINVAL;
	return SD_LISTEN_FDS_START;
}

void sd_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void sd_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

void sd_reloading(void)
{
	sd_notify(0, "RELOADING=1");
}

void sd_status(const char *status)
{
	sd_notifyf(0, "STATUS=%s", status);
}

int64_t sd_watchdog_ms(void)
{
	uint64_t usec = 0;

	return sd_watchdog_enabled(0, &usec) > 0 ? (int64_t)(usec / 1000) : 0;
}

void sd_watchdog_ping(void)
{
	sd_notify(0, "WATCHDOG=1");
}

void sd_log_sink(int prio, const struct log_fields *f, const char *msg)
{
	const struct log_fields none = {0};

	if (!f)
		f = &none;
	sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio, "SYSLOG_IDENTIFIER=llmqd",
	                "LLMQ_BATCH=%s", f->batch ? f->batch : "", "LLMQ_LANE=%s",
	                f->lane ? f->lane : "", "LLMQ_JOB=%s", f->job ? f->job : "", NULL);
}
