/*
 * sd.c - libsystemd calls, kept here so the rest of the daemon does not care
 * whether systemd is there.
 */
#include "service/sd.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include "log.h"

/* Whether fd is a listening stream socket of family (AF_UNIX, or AF_INET/AF_INET6: -1). */
static int sd_is_listener(int fd, int family)
{
	if (family == AF_UNIX)
		return sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0;
	return sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) > 0;
}

int sd_listen_sockets(struct sd_sockets *ret, char *err, size_t errlen)
{
	struct sd_sockets s = {.ipc = -1, .http_tcp = -1, .http_unix = -1};
	char **names = NULL;
	int n, i, fd, r = 0;

	n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		snprintf(err, errlen, "cannot read the sockets systemd passed: %s", strerror(-n));
		r = n;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const char *name = names && names[i] ? names[i] : "unknown";
		int *slot = NULL;

		fd = SD_LISTEN_FDS_START + i;
		if (strcmp(name, SD_NAME_IPC) == 0 ||
		    (n == 1 && strcmp(name, "unknown") == 0 && sd_is_listener(fd, AF_UNIX)))
			slot = sd_is_listener(fd, AF_UNIX) ? &s.ipc : NULL;
		else if (strcmp(name, SD_NAME_HTTP) == 0)
			slot = sd_is_listener(fd, AF_UNIX) ? &s.http_unix
			       : sd_is_listener(fd, -1)    ? &s.http_tcp
			                                   : NULL;
		if (!slot || *slot >= 0) {
			snprintf(err, errlen,
			         "systemd passed a socket llmqd cannot use (FileDescriptorName=%s, "
			         "descriptor %d): name the llmq socket \"" SD_NAME_IPC
			         "\" (one Unix stream socket) and the HTTP face's \"" SD_NAME_HTTP
			         "\" (one TCP and at most one Unix stream socket) in the .socket "
			         "units",
			         name, fd);
			r = -EINVAL;
			goto out;
		}
		*slot = fd;
	}
	*ret = s;
out:
	for (i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
	return r;
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
