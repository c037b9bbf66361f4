/*
 * lane.h - what a lane needs from outside the daemon: its API key (from an
 * environment variable or a systemd credential) and its request URLs.
 */
#ifndef LLMQ_LANE_H
#define LLMQ_LANE_H

#include <stddef.h>

#include "service/config.h"

/*
 * Load the lane's key: $CREDENTIALS_DIRECTORY/<key_credential> when set and
 * present, else the variable named key_env. *ret is NULL when there is none.
 */
int lane_load_key(const struct lane_config *l, char **ret);

/* base_url + the job's url ("/v1/..."), without doubling a trailing "/v1". */
int lane_url(const struct lane_config *l, const char *path, char *buf, size_t len);

/* url as it may be shown (status, the log): credentials in it ("user:pass@")
 * become "***@". Truncates to fit len. */
const char *lane_redact_url(const char *url, char *buf, size_t len);

struct sockaddr_storage;
/*
 * Whether base_url names the TCP listener listener (an address of this host
 * when it listens on all): an upstream that is llmqd's own HTTP face. Host
 * names other than localhost are not looked up (no DNS at start): a loop
 * through one is caught by the hop header instead.
 */
int lane_url_is(const char *base_url, const struct sockaddr_storage *listener);

#endif
