/*
 * config-file.c - the INI files, read with libinih: llmqd.conf's sections
 * ([daemon], [fleet], [prices], [lane NAME], [user NAME], [group NAME]) and
 * their keys, where a variable set in the environment wins over its key,
 * the checks a whole file must pass (a lane without base_url, a key_env not
 * set), and a prices file of [prices] alone. The values' checks are
 * config-values.c's and config-lane.c's.
 */
#include "service/config-private.h"
#include "timeutil.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ini_state {
	struct config *cfg;
	struct lane_config *lane;
	char section[128];
	char *err;
	size_t errlen;
	int failed;
	int socket_from_env, db_from_env, http_from_env, http_socket_from_env;
	unsigned char has_base_url[CONFIG_MAX_LANES];
	unsigned char has_key_env[CONFIG_MAX_LANES];
};

/* One "PATTERN = INPUT [CACHED] OUTPUT" line of a [prices] section. */
static int config_price_line(struct ini_state *st, const char *where, const char *name,
                             const char *value)
{
	char why[256];

	if (price_table_add(&st->cfg->prices, name, value, why, sizeof(why)) == 0)
		return 1;
	config_bad(st->err, st->errlen, where, name, value, why);
	st->failed = 1;
	return 0;
}

/* One key of a [user NAME] or [group NAME] section: a user's budgets. */
static int config_budget_line(struct ini_state *st, const char *where, const char *section,
                              const char *name, const char *value)
{
	int group = section[0] == 'g';
	char why[256];

	if (budget_table_set(&st->cfg->budgets, group, section + (group ? 6 : 5), name, value, why,
	                     sizeof(why)) == 0)
		return 1;
	config_bad(st->err, st->errlen, where, name, value, why);
	st->failed = 1;
	return 0;
}

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
	struct ini_state *st = user;
	struct config *cfg = st->cfg;
	const struct setting *s;
	char where[PATH_MAX + 64];
	int i;

	if (st->failed)
		return 0;
	snprintf(where, sizeof(where), "%s [%s]", cfg->config_file, section);
	if (strcmp(section, "fleet") == 0) {
		const char *env = config_fleet_env(name);

		/* The environment wins: a value it replaces is not checked. */
		if (env && getenv(env) && *getenv(env))
			return 1;
		if (config_fleet_set(&cfg->fleet, name, value, where, name, st->err, st->errlen) <
		    0)
			goto fail;
		return 1;
	}
	if (strcmp(section, "daemon") == 0) {
		if (strcmp(name, "socket") == 0) {
			if (!st->socket_from_env)
				snprintf(cfg->socket_path, sizeof(cfg->socket_path), "%s", value);
		} else if (strcmp(name, "db") == 0) {
			if (!st->db_from_env)
				snprintf(cfg->db_path, sizeof(cfg->db_path), "%s", value);
		} else if (strcmp(name, "db_max_mb") == 0) {
			if (config_parse_mb(value, &cfg->db_max_bytes) < 0)
				goto fail_range;
		} else if (strcmp(name, "files_max_bytes_per_user") == 0) {
			if (!getenv("LLMQ_FILES_MAX_BYTES_PER_USER") &&
			    config_parse_bytes(value, &cfg->files_max_bytes_per_user) < 0)
				goto fail_range;
		} else if (strcmp(name, "queue_max_jobs_per_user") == 0) {
			if (!getenv("LLMQ_QUEUE_MAX_JOBS_PER_USER") &&
			    config_parse_big_count(value, &cfg->queue_max_jobs_per_user) < 0)
				goto fail_range;
		} else if (strcmp(name, "disk_min_free_mb") == 0) {
			if (!getenv("LLMQ_DISK_MIN_FREE_MB") &&
			    config_parse_mb(value, &cfg->disk_min_free_bytes) < 0)
				goto fail_range;
		} else if (strcmp(name, "http") == 0) {
			if (!st->http_from_env)
				snprintf(cfg->http_addr, sizeof(cfg->http_addr), "%s", value);
		} else if (strcmp(name, "http_socket") == 0) {
			if (!st->http_socket_from_env)
				snprintf(cfg->http_socket, sizeof(cfg->http_socket), "%s", value);
		} else if (strcmp(name, "http_tokens") == 0) {
			if (!getenv("LLMQ_HTTP_TOKENS"))
				snprintf(cfg->http_tokens, sizeof(cfg->http_tokens), "%s", value);
		} else if (strcmp(name, "client_timeout") == 0) {
			if (!getenv("LLMQ_CLIENT_TIMEOUT") &&
			    config_parse_client_timeout(value, &cfg->client_timeout_ms) < 0)
				goto fail_range;
		} else if (strcmp(name, "retention") == 0) {
			if (!getenv("LLMQ_RETENTION") &&
			    (time_parse_duration(value, &cfg->retention_ms) < 0 ||
			     cfg->retention_ms < 0))
				goto fail_range;
		} else if (strcmp(name, "socket_group") == 0) {
			if (!getenv("LLMQ_SOCKET_GROUP"))
				snprintf(cfg->socket_group, sizeof(cfg->socket_group), "%s", value);
		} else if (strcmp(name, "admin_group") == 0) {
			if (!getenv("LLMQ_ADMIN_GROUP"))
				snprintf(cfg->admin_group, sizeof(cfg->admin_group), "%s", value);
		} else if (strcmp(name, "http_log_bodies") == 0) {
			if (config_parse_bool(value, &cfg->http_log_bodies) < 0)
				goto fail_range;
		} else if (strcmp(name, "upstream_client") == 0) {
			if (!getenv("LLMQ_UPSTREAM_CLIENT") &&
			    config_parse_upstream_client(value, &cfg->upstream_curl) < 0) {
				config_bad(st->err, st->errlen, where, name, value,
				           "expected builtin or curl");
				goto fail;
			}
		} else if (strcmp(name, "http_anonymous") == 0) {
			if (!getenv("LLMQ_HTTP_ANONYMOUS") &&
			    config_parse_bool(value, &cfg->http_anonymous) < 0)
				goto fail_range;
		} else if (strcmp(name, "max_connections") == 0) {
			if (config_parse_count(value, 1, 4096, &cfg->max_connections) < 0)
				goto fail_range;
		} else if (strcmp(name, "http_max_connections") == 0) {
			if (config_parse_count(value, 1, 65536, &cfg->http_max_connections) < 0)
				goto fail_range;
		} else if (strcmp(name, "http_max_connections_per_user") == 0) {
			if (getenv("LLMQ_HTTP_MAX_CONNECTIONS_PER_USER"))
				return 1;
			if (config_parse_count(value, 1, 65536,
			                       &cfg->http_max_connections_per_user) < 0)
				goto fail_range;
		} else if (strcmp(name, "max_connections_per_user") == 0) {
			if (config_parse_count(value, 1, 4096, &cfg->max_connections_per_user) < 0)
				goto fail_range;
		} else if (strcmp(name, "prices_file") == 0) {
			if (!getenv("LLMQ_PRICES_FILE"))
				snprintf(cfg->prices_file, sizeof(cfg->prices_file), "%s", value);
		} else {
			config_bad(st->err, st->errlen, where, name, value, "unknown key");
			goto fail;
		}
		return 1;
	}
	if (strcmp(section, "prices") == 0)
		return config_price_line(st, where, name, value);
	if ((strncmp(section, "user ", 5) == 0 && section[5]) ||
	    (strncmp(section, "group ", 6) == 0 && section[6]))
		return config_budget_line(st, where, section, name, value);
	if (strncmp(section, "lane ", 5) != 0 || !section[5]) {
		snprintf(st->err, st->errlen,
		         "%s: unknown section [%s]; use [daemon], [fleet], [prices], [lane NAME], "
		         "[user NAME] or [group NAME]",
		         cfg->config_file, section);
		goto fail;
	}
	if (section[5] == '~') {
		/* The store marks the jobs of a batch still being stored with it. */
		snprintf(st->err, st->errlen, "%s: [%s]: a lane's name cannot begin with '~'",
		         cfg->config_file, section);
		goto fail;
	}
	if (!st->lane || strcmp(st->section, section) != 0) {
		st->lane = NULL;
		for (i = 0; i < cfg->n_lanes; i++)
			if (strcmp(cfg->lanes[i].name, section + 5) == 0)
				st->lane = &cfg->lanes[i];
		if (!st->lane) {
			if (cfg->n_lanes == CONFIG_MAX_LANES) {
				snprintf(st->err, st->errlen, "%s: more than %d lanes",
				         cfg->config_file, CONFIG_MAX_LANES);
				goto fail;
			}
			st->lane = &cfg->lanes[cfg->n_lanes++];
			config_lane_defaults(st->lane, section + 5);
		}
		snprintf(st->section, sizeof(st->section), "%s", section);
	}
	for (s = config_lane_settings; s->key; s++)
		if (strcmp(s->key, name) == 0)
			break;
	if (!s->key) {
		config_bad(st->err, st->errlen, where, name, value, "unknown key");
		goto fail;
	}
	if (config_lane_apply(st->lane, s, value, where, s->key, st->err, st->errlen) < 0)
		goto fail;
	if (strcmp(name, "base_url") == 0)
		st->has_base_url[st->lane - cfg->lanes] = 1;
	if (strcmp(name, "key_env") == 0)
		st->has_key_env[st->lane - cfg->lanes] = 1;
	return 1;
fail_range:
	config_bad(st->err, st->errlen, where, name, value, "out of range");
fail:
	st->failed = 1;
	return 0;
}

int config_file_load(struct config *cfg, int required, char *err, size_t errlen)
{
	struct ini_state st = {.cfg = cfg, .err = err, .errlen = errlen};
	FILE *f;
	int r, i;

	st.socket_from_env = getenv("LLMQ_SOCKET") && *getenv("LLMQ_SOCKET");
	st.db_from_env = getenv("LLMQ_DB") && *getenv("LLMQ_DB");
	st.http_from_env = getenv("LLMQ_HTTP_ADDR") && *getenv("LLMQ_HTTP_ADDR");
	st.http_socket_from_env = getenv("LLMQ_HTTP_SOCKET") && *getenv("LLMQ_HTTP_SOCKET");
	f = fopen(cfg->config_file, "re");
	if (!f) {
		if (!required && errno == ENOENT) {
			cfg->config_file[0] = '\0';
			return 0;
		}
		snprintf(err, errlen, "cannot open config file %s: %s", cfg->config_file,
		         strerror(errno));
		return -EINVAL;
	}
	cfg->n_lanes = 0;
	r = ini_parse_file(f, on_ini_line, &st);
	fclose(f);
	if (st.failed)
		return -EINVAL;
	if (r != 0) {
		snprintf(err, errlen,
		         "%s: line %d: syntax error (expected [section] or key = value)",
		         cfg->config_file, r);
		return -EINVAL;
	}
	if (cfg->n_lanes == 0) {
		snprintf(err, errlen, "%s: defines no [lane NAME] section", cfg->config_file);
		return -EINVAL;
	}
	for (i = 0; i < cfg->n_lanes; i++) {
		if (!st.has_base_url[i]) {
			/* Never send a lane's traffic somewhere nobody wrote down. */
			snprintf(err, errlen,
			         "%s: [lane %s] has no base_url; set it (base_url = "
			         "https://api.openai.com/v1 for OpenAI)",
			         cfg->config_file, cfg->lanes[i].name);
			return -EINVAL;
		}
		if (st.has_key_env[i] && !cfg->lanes[i].key_credential[0] &&
		    !getenv(cfg->lanes[i].key_env)) {
			snprintf(err, errlen,
			         "%s: [lane %s] key_env = %s, but %s is not set in llmqd's "
			         "environment; set it (EnvironmentFile= under systemd), use "
			         "key_credential, or drop key_env for a lane without a key",
			         cfg->config_file, cfg->lanes[i].name, cfg->lanes[i].key_env,
			         cfg->lanes[i].key_env);
			return -EINVAL;
		}
	}
	return 0;
}

/* A prices file: an INI file of [prices] sections alone. */
static int on_prices_line(void *user, const char *section, const char *name, const char *value)
{
	struct ini_state *st = user;
	char where[PATH_MAX + 64];

	if (st->failed)
		return 0;
	snprintf(where, sizeof(where), "%s [%s]", st->cfg->prices_file, section);
	if (strcmp(section, "prices") != 0) {
		snprintf(st->err, st->errlen,
		         "%s: [%s]: a prices file holds [prices] alone (\"gpt-4o-mini = 0.15 "
		         "0.075 0.60\" lines)",
		         st->cfg->prices_file, section);
		st->failed = 1;
		return 0;
	}
	return config_price_line(st, where, name, value);
}

int config_file_load_prices(struct config *cfg, char *err, size_t errlen)
{
	struct ini_state st = {.cfg = cfg, .err = err, .errlen = errlen};
	FILE *f;
	int r;

	if (!cfg->prices_file[0])
		return 0;
	f = fopen(cfg->prices_file, "re");
	if (!f) {
		snprintf(err, errlen,
		         "cannot open the prices file %s: %s; fix prices_file (or "
		         "LLMQ_PRICES_FILE)",
		         cfg->prices_file, strerror(errno));
		return -EINVAL;
	}
	r = ini_parse_file(f, on_prices_line, &st);
	fclose(f);
	if (st.failed)
		return -EINVAL;
	if (r != 0) {
		snprintf(err, errlen,
		         "%s: line %d: syntax error (expected [prices] or PATTERN = "
		         "INPUT [CACHED] OUTPUT)",
		         cfg->prices_file, r);
		return -EINVAL;
	}
	return 0;
}
