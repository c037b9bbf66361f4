/*
 * config.h - llmqd's configuration. Precedence, lowest first: built-in
 * defaults, the INI file (--config, or /etc/llmq/llmqd.conf when present),
 * the environment, command-line flags. Without a file there is one lane,
 * "openai", set from the prototype's OPENAI_* variables.
 *
 * Owns the parsed values; reads files and the environment, does not log.
 */
#ifndef LLMQ_CONFIG_H
#define LLMQ_CONFIG_H

#include <limits.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "gate/budget.h"
#include "fleet/fleet.h"
#include "gate/gate.h"
#include "gate/price.h"

#define CONFIG_DEFAULT_FILE "/etc/llmq/llmqd.conf"
#define CONFIG_MAX_LANES 16
#define CONFIG_MAX_MODELS 16
#define CONFIG_DEFAULT_HTTP "127.0.0.1:8411"
#define CONFIG_DEFAULT_ADMIN_GROUP "llmq-admin"
#define CONFIG_DEFAULT_FILES_MAX_BYTES_PER_USER (2LL << 30) /* 2 GiB */
#define CONFIG_DEFAULT_QUEUE_MAX_JOBS_PER_USER 1000000LL
#define CONFIG_DEFAULT_DISK_MIN_FREE_MB 256LL

struct lane_config {
	char name[64];
	char base_url[512];
	char key_env[128];                   /* environment variable holding the API key */
	char key_credential[128];            /* or a systemd credential of that name */
	char models[CONFIG_MAX_MODELS][128]; /* fnmatch patterns */
	int n_models;
	int is_default;
	struct gate_limits limits;
	int64_t est_tokens_per_run;
	int retry_max_attempts;
	int64_t backoff_base_ms;
	int64_t backoff_cap_ms;
	int64_t retry_after_max_ms; /* longest pause a retry-after may impose */
	int64_t quota_pause_ms;     /* pause after insufficient_quota */
	int64_t queue_max_jobs;     /* admission caps; 0 = none */
	int64_t queue_max_tokens;
	int64_t connect_timeout_ms;
	int64_t request_timeout_ms;
	int64_t interactive_max_wait_ms; /* an interactive call waits this long at most */
	int64_t lane_wait_max_ms;        /* a job waits this long in all for a 429'd or
	                                  * unreachable lane before it fails */
	int provider_window;             /* enum gate_window: how the provider enforces */
	int64_t window_probation_ms;     /* a learned window is tried as a minute again after
	                                  * this long without a 429 that confirms it */
	char share[64];                  /* the fleet's key for this lane's shared gate; "": name */
};

struct config {
	char socket_path[PATH_MAX];
	char db_path[PATH_MAX];
	char config_file[PATH_MAX];
	char http_addr[128];        /* HOST:PORT, or "off" */
	char http_socket[PATH_MAX]; /* the HTTP face on a Unix socket; "" for none */
	int http_log_bodies;        /* keep interactive calls' bodies in the calls table */
	int upstream_curl;          /* plain http to an address by curl too, not llmqd's own
	                             * client (upstream_client = curl) */
	int http_anonymous;         /* callers nobody can identify may call models (not Files,
	                             * Batches); else they get 401 */
	char http_tokens[PATH_MAX]; /* "USER TOKEN" lines: callers on TCP must send one */
	char socket_group[64];      /* the llmq socket is 0660 with this group; "" for 0600 */
	char admin_group[64];       /* its members see every user's batches */
	int64_t retention_ms;       /* finished batches older than this are deleted; 0 keeps */
	int max_connections;
	int max_connections_per_user; /* the rest stay for the other users */
	int http_max_connections;     /* the HTTP face's, all users */
	int http_max_connections_per_user;
	int64_t client_timeout_ms;        /* a whole request, a submit's lines, a stuck answer */
	int64_t db_max_bytes;             /* 0: no cap; past it writes fail as on a full disk */
	int64_t files_max_bytes_per_user; /* uploaded bytes one user may hold; 0: no cap */
	int64_t queue_max_jobs_per_user;  /* jobs one user may have queued or running; 0: none */
	int64_t disk_min_free_bytes;      /* below it new uploads and batches are refused; 0: off */
	int log_level;
	struct fleet_config fleet;
	struct lane_config lanes[CONFIG_MAX_LANES];
	int n_lanes;
	char prices_file[PATH_MAX]; /* more [prices], in a file of their own; "" for none */
	struct price_table prices;  /* [prices] of the file, then of prices_file */
	struct budget_table
	    budgets; /* [user NAME] and [group NAME] sections, in the file's order */
};

/*
 * Fill cfg from defaults, file, environment and argv. Returns 0; 1 when
 * --help or --version was handled (caller exits 0); -EINVAL with a message
 * in err for a bad value.
 */
int config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen);

/*
 * Set one setting of lane l by its llmqd.conf key (max_concurrency,
 * tpm_limit, ...) from text, with the file's checks and messages; where
 * names the place for the message ("llmq set"). -EINVAL with err.
 */
int config_lane_setting(struct lane_config *l, const char *key, const char *value,
                        const char *where, char *err, size_t errlen);

/* The lane whose patterns match model, else the default lane. Never NULL. */
const struct lane_config *config_lane_for_model(const struct config *cfg, const char *model);

void config_usage(FILE *f);

/* The name of lane l's shared state in the fleet: its share, else its name. */
const char *config_lane_share(const struct lane_config *l);

/* Split HOST:PORT ([v6]:PORT); host and ret_port may be NULL. */
int config_parse_http_addr(const char *addr, char *host, size_t hostlen, int *ret_port);

#endif
