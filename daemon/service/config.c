/*
 * config.c - llmqd's configuration as a whole: defaults, the INI file
 * (config-file.c), the environment and flags, in that order of precedence;
 * the rule that with a file the lanes are the file's (the implicit lane's
 * variables and flags are refused, never ignored); --help; and the HTTP
 * address's form.
 */
#include "service/config-private.h"
#include "paths.h"
#include "timeutil.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

/* The [fleet] keys and the variables that override them. */
static const char *const fleet_keys[][2] = {
    {"redis_url", "LLMQ_REDIS_URL"},
    {"redis_password_file", "LLMQ_REDIS_PASSWORD_FILE"},
    {"redis_timeout", "LLMQ_REDIS_TIMEOUT"},
    {"host_id", "LLMQ_HOST_ID"},
};

const char *config_fleet_env(const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(fleet_keys) / sizeof(fleet_keys[0]); i++)
		if (strcmp(fleet_keys[i][0], key) == 0)
			return fleet_keys[i][1];
	return NULL;
}

static const struct option base_options[] = {
    {"socket", required_argument, NULL, 'S'},      {"db", required_argument, NULL, 'D'},
    {"db-max-mb", required_argument, NULL, 'M'},   {"config", required_argument, NULL, 'c'},
    {"verbose", no_argument, NULL, 'v'},           {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},           {"http", required_argument, NULL, 'H'},
    {"http-socket", required_argument, NULL, 'U'}, {"redis", required_argument, NULL, 'R'},
};
#define N_BASE (sizeof(base_options) / sizeof(base_options[0]))
#define N_SETTINGS CONFIG_LANE_N_SETTINGS

void config_usage(FILE *f)
{
	const struct setting *s;

	fprintf(f, "usage: llmqd [options]\n\n"
	           "  --socket PATH    Unix socket to listen on (LLMQ_SOCKET)\n"
	           "  --db PATH        SQLite database (LLMQ_DB)\n"
	           "  --db-max-mb N    cap the database's size (LLMQ_DB_MAX_MB)\n"
	           "  --config FILE    lanes and limits (default " CONFIG_DEFAULT_FILE
	           " when present)\n"
	           "  --http ADDR      OpenAI-compatible HTTP listener, HOST:PORT or off\n"
	           "                   (LLMQ_HTTP_ADDR, default " CONFIG_DEFAULT_HTTP ")\n"
	           "  --http-socket P  the same on a Unix socket (LLMQ_HTTP_SOCKET)\n"
	           "  --redis URL      share the lanes' budgets with other llmqd through this\n"
	           "                   Redis (LLMQ_REDIS_URL; redis://HOST:PORT/DB or\n"
	           "                   unix:///PATH)\n"
	           "  -v, --verbose    log each request\n"
	           "  --help, --version\n\n"
	           "Limits of the implicit 'openai' lane (used when there is no config file):\n");
	for (s = config_lane_settings; s->key; s++)
		if (s->flag)
			fprintf(f, "  --%-20s (%s)\n", s->flag, s->env);
}

/*
 * With a file, the lanes are the file's: the implicit lane's variables would
 * be silently ignored, so they are refused instead - every one of them in one
 * message, with the file key to set for each.
 */
static int refuse_lane_variables(const struct config *cfg, char *err, size_t errlen)
{
	char vars[1024] = "", keys[1024] = "";
	size_t nv = 0, nk = 0;
	const struct setting *s;
	const char *v;
	int count = 0;

	for (s = config_lane_settings; s->key; s++) {
		if (!s->env || !(v = getenv(s->env)) || !*v)
			continue;
		nv += (size_t)snprintf(vars + nv, sizeof(vars) - nv, "%s%s", count ? ", " : "",
		                       s->env);
		nk += (size_t)snprintf(keys + nk, sizeof(keys) - nk, "%s%s", count ? ", " : "",
		                       s->key);
		if (nv >= sizeof(vars) || nk >= sizeof(keys))
			break;
		count++;
	}
	if (count == 0)
		return 0;
	snprintf(err, errlen,
	         "%s %s set, but the lanes come from %s: set %s in the lane's section there, or "
	         "unset %s (in /etc/llmq/llmqd.env under systemd: comment %s out)",
	         vars, count == 1 ? "is" : "are", cfg->config_file, keys,
	         count == 1 ? "it" : "them", count == 1 ? "it" : "them");
	return -EINVAL;
}

int config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	struct option opts[N_BASE + N_SETTINGS];
	const char *file = NULL, *v;
	const struct setting *s;
	size_t n = 0, i;
	char flag[64];
	int c, idx, r, file_required = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->max_connections = 64;
	cfg->max_connections_per_user = 16;
	cfg->http_max_connections = 1024;
	cfg->http_max_connections_per_user = 256;
	cfg->client_timeout_ms = 60000;
	cfg->log_level = LOG_INFO;
	snprintf(cfg->http_addr, sizeof(cfg->http_addr), "%s", CONFIG_DEFAULT_HTTP);
	snprintf(cfg->admin_group, sizeof(cfg->admin_group), "%s", CONFIG_DEFAULT_ADMIN_GROUP);
	cfg->retention_ms = 30LL * 24 * 3600 * 1000;
	cfg->fleet.redis_timeout_ms = FLEET_DEFAULT_TIMEOUT_MS;
	cfg->files_max_bytes_per_user = CONFIG_DEFAULT_FILES_MAX_BYTES_PER_USER;
	cfg->queue_max_jobs_per_user = CONFIG_DEFAULT_QUEUE_MAX_JOBS_PER_USER;
	cfg->disk_min_free_bytes = CONFIG_DEFAULT_DISK_MIN_FREE_MB << 20;
	memcpy(opts, base_options, sizeof(base_options));
	n = N_BASE;
	for (s = config_lane_settings; s->key; s++)
		if (s->flag)
			opts[n++] = (struct option){s->flag, required_argument, NULL,
			                            1000 + (int)(s - config_lane_settings)};
	opts[n] = (struct option){NULL, 0, NULL, 0};

	/* First pass: find --config, --help and --version. */
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "vhV", opts, &idx)) != -1) {
		if (c == 'c') {
			file = optarg;
			file_required = 1;
		} else if (c == 'h') {
			config_usage(stdout);
			return 1;
		} else if (c == 'V') {
			printf("llmqd %s\n", LLMQ_VERSION);
			return 1;
		} else if (c == '?') {
			snprintf(err, errlen, "unknown or incomplete option '%s'; see llmqd --help",
			         argv[optind - 1]);
			return -EINVAL;
		}
	}

	if (paths_socket(cfg->socket_path, sizeof(cfg->socket_path)) < 0 ||
	    paths_db(cfg->db_path, sizeof(cfg->db_path)) < 0) {
		snprintf(err, errlen,
		         "cannot work out the default socket or database path; "
		         "set LLMQ_SOCKET and LLMQ_DB");
		return -EINVAL;
	}
	config_lane_defaults(&cfg->lanes[0], "openai");
	cfg->lanes[0].is_default = 1;
	cfg->n_lanes = 1;

	if (!file && (v = getenv("LLMQ_CONFIG")) && *v) {
		file = v;
		file_required = 1;
	}
	snprintf(cfg->config_file, sizeof(cfg->config_file), "%s",
	         file ? file : CONFIG_DEFAULT_FILE);
	r = config_file_load(cfg, file_required, err, errlen);
	if (r < 0)
		return r;

	if ((v = getenv("LLMQ_RETENTION")) && *v &&
	    (time_parse_duration(v, &cfg->retention_ms) < 0 || cfg->retention_ms < 0)) {
		snprintf(err, errlen,
		         "environment: LLMQ_RETENTION = \"%s\": expected a duration such as 30d, "
		         "720h, or 0 to keep everything",
		         v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_HTTP_TOKENS")))
		snprintf(cfg->http_tokens, sizeof(cfg->http_tokens), "%s", v);
	if ((v = getenv("LLMQ_CLIENT_TIMEOUT")) && *v &&
	    config_parse_client_timeout(v, &cfg->client_timeout_ms) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_CLIENT_TIMEOUT = \"%s\": expected a duration from 1s "
		         "to 1h, such as 60s",
		         v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_HTTP_MAX_CONNECTIONS_PER_USER")) && *v) {
		if (config_parse_count(v, 1, 65536, &cfg->http_max_connections_per_user) < 0) {
			snprintf(
			    err, errlen,
			    "environment: LLMQ_HTTP_MAX_CONNECTIONS_PER_USER = \"%s\": expected "
			    "1..65536",
			    v);
			return -EINVAL;
		}
	}
	if ((v = getenv("LLMQ_SOCKET_GROUP")))
		snprintf(cfg->socket_group, sizeof(cfg->socket_group), "%s", v);
	if ((v = getenv("LLMQ_ADMIN_GROUP")))
		snprintf(cfg->admin_group, sizeof(cfg->admin_group), "%s", v);
	if ((v = getenv("LLMQ_HTTP_ADDR")) && *v)
		snprintf(cfg->http_addr, sizeof(cfg->http_addr), "%s", v);
	if ((v = getenv("LLMQ_HTTP_SOCKET")) && *v)
		snprintf(cfg->http_socket, sizeof(cfg->http_socket), "%s", v);
	if ((v = getenv("LLMQ_HTTP_LOG_BODIES")) && *v &&
	    config_parse_bool(v, &cfg->http_log_bodies) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_HTTP_LOG_BODIES = \"%s\": expected yes or no", v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_UPSTREAM_CLIENT")) && *v &&
	    config_parse_upstream_client(v, &cfg->upstream_curl) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_UPSTREAM_CLIENT = \"%s\": expected builtin or curl", v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_HTTP_ANONYMOUS")) && *v &&
	    config_parse_bool(v, &cfg->http_anonymous) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_HTTP_ANONYMOUS = \"%s\": expected yes or no", v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_PRICES_FILE")) && *v)
		snprintf(cfg->prices_file, sizeof(cfg->prices_file), "%s", v);
	r = config_file_load_prices(cfg, err, errlen);
	if (r < 0)
		return r;
	if ((v = getenv("LLMQ_DB_MAX_MB")) && *v && config_parse_mb(v, &cfg->db_max_bytes) < 0) {
		snprintf(err, errlen, "environment: LLMQ_DB_MAX_MB = \"%s\": expected megabytes",
		         v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_FILES_MAX_BYTES_PER_USER")) && *v &&
	    config_parse_bytes(v, &cfg->files_max_bytes_per_user) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_FILES_MAX_BYTES_PER_USER = \"%s\": expected bytes, "
		         "such as 2G (GiB), 500M (MiB) or 0 for no cap",
		         v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_QUEUE_MAX_JOBS_PER_USER")) && *v &&
	    config_parse_big_count(v, &cfg->queue_max_jobs_per_user) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_QUEUE_MAX_JOBS_PER_USER = \"%s\": expected a number "
		         "of jobs, or 0 for no cap",
		         v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_DISK_MIN_FREE_MB")) && *v &&
	    config_parse_mb(v, &cfg->disk_min_free_bytes) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_DISK_MIN_FREE_MB = \"%s\": expected megabytes (MiB), "
		         "or 0 for no floor",
		         v);
		return -EINVAL;
	}

	for (i = 0; i < sizeof(fleet_keys) / sizeof(fleet_keys[0]); i++) {
		if (!(v = getenv(fleet_keys[i][1])) || !*v)
			continue;
		r = config_fleet_set(&cfg->fleet, fleet_keys[i][0], v, "environment",
		                     fleet_keys[i][1], err, errlen);
		if (r < 0)
			return r;
	}

	/*
	 * The prototype's variables shape the implicit lane. With a file, the
	 * lanes are the file's: a variable that would be silently ignored is
	 * refused instead, naming the key to set.
	 */
	if (cfg->config_file[0]) {
		r = refuse_lane_variables(cfg, err, errlen);
		if (r < 0)
			return r;
	}
	for (s = config_lane_settings; s->key; s++) {
		if (!s->env || !(v = getenv(s->env)) || !*v)
			continue;
		r = config_lane_apply(&cfg->lanes[0], s, v, "environment", s->env, err, errlen);
		if (r < 0)
			return r;
	}

	optind = 0;
	while ((c = getopt_long(argc, argv, "vhV", opts, &idx)) != -1) {
		if (c == 'S')
			snprintf(cfg->socket_path, sizeof(cfg->socket_path), "%s", optarg);
		else if (c == 'D')
			snprintf(cfg->db_path, sizeof(cfg->db_path), "%s", optarg);
		else if (c == 'M' && config_parse_mb(optarg, &cfg->db_max_bytes) < 0) {
			snprintf(err, errlen, "--db-max-mb %s: expected megabytes", optarg);
			return -EINVAL;
		} else if (c == 'v')
			cfg->log_level = LOG_DEBUG;
		else if (c == 'H')
			snprintf(cfg->http_addr, sizeof(cfg->http_addr), "%s", optarg);
		else if (c == 'U')
			snprintf(cfg->http_socket, sizeof(cfg->http_socket), "%s", optarg);
		else if (c == 'R' &&
		         (r = config_fleet_set(&cfg->fleet, "redis_url", optarg, "command line",
		                               "--redis", err, errlen)) < 0)
			return r;
		else if (c >= 1000) {
			if (cfg->config_file[0]) {
				snprintf(err, errlen,
				         "--%s sets the implicit lane, but lanes come from %s; "
				         "set %s there",
				         config_lane_settings[c - 1000].flag, cfg->config_file,
				         config_lane_settings[c - 1000].key);
				return -EINVAL;
			}
			snprintf(flag, sizeof(flag), "--%s", config_lane_settings[c - 1000].flag);
			r = config_lane_apply(&cfg->lanes[0], &config_lane_settings[c - 1000],
			                      optarg, "command line", flag, err, errlen);
			if (r < 0)
				return r;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s'; see llmqd --help", argv[optind]);
		return -EINVAL;
	}
	for (i = 0, c = 0; i < (size_t)cfg->n_lanes; i++)
		c += cfg->lanes[i].is_default;
	if (c > 1) {
		snprintf(err, errlen, "%s: more than one lane says default = yes",
		         cfg->config_file);
		return -EINVAL;
	}
	if (c == 0)
		cfg->lanes[0].is_default = 1;
	for (i = 0; i < (size_t)cfg->n_lanes; i++) {
		if (cfg->lanes[i].base_url[0])
			continue;
		snprintf(err, errlen,
		         "lane %s: base_url is empty; set it to the upstream's URL "
		         "(https://api.openai.com/v1 for OpenAI)",
		         cfg->lanes[i].name);
		return -EINVAL;
	}
	if (strcmp(cfg->http_addr, "off") != 0 &&
	    config_parse_http_addr(cfg->http_addr, NULL, 0, NULL) < 0) {
		snprintf(err, errlen,
		         "HTTP address \"%s\": expected HOST:PORT (e.g. 127.0.0.1:8411) or off",
		         cfg->http_addr);
		return -EINVAL;
	}
	return 0;
}

int config_parse_http_addr(const char *addr, char *host, size_t hostlen, int *ret_port)
{
	const char *colon = strrchr(addr, ':');
	char *end;
	long port;
	size_t n;

	if (!colon || colon == addr)
		return -EINVAL;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port < 0 || port > 65535)
		return -EINVAL;
	n = (size_t)(colon - addr);
	if (addr[0] == '[' && n >= 2 && addr[n - 1] == ']') {
		addr++;
		n -= 2;
	}
	if (host) {
		if (n >= hostlen)
			return -EINVAL;
		memcpy(host, addr, n);
		host[n] = '\0';
	}
	if (ret_port)
		*ret_port = (int)port;
	return 0;
}
