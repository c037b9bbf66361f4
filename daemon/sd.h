/*
 * sd.h - the systemd glue: socket activation and readiness notification.
 * Harmless when not run by systemd.
 */
#ifndef LLMQ_SD_H
#define LLMQ_SD_H

/* The listening socket systemd passed us, or -1 (none), or -errno. */
int sd_listen_socket(void);
void sd_ready(const char *status);
void sd_stopping(void);

#endif
