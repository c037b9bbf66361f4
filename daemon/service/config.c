/*
 * config.c - defaults, the INI file (libinih), the environment and flags, in
 * that order of precedence. One table maps each lane setting to its INI key,
 * its environment variable and its flag, so the three cannot drift apart.
 */
#include "service/config.h"
#include "paths.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

enum kind { K_STR, K_URL, K_INT, K_FRAC, K_MS, K_BOOL, K_MODELS, K_WINDOW, K_SHARE };

struct setting {
	const char *key;  /* INI key in a [lane NAME] section */
	const char *env;  /* environment variable (implicit lane only), or NULL */
	const char *flag; /* long option, or NULL */
	enum kind kind;
	size_t off;
	size_t size;
	double min, max;
};

#define LC(field) offsetof(struct lane_config, field), sizeof(((struct lane_config *)0)->field)

static const struct setting settings[] = {
    {"base_url", "OPENAI_BASE_URL", "base-url", K_URL, LC(base_url), 0, 0},
    {"key_env", NULL, NULL, K_STR, LC(key_env), 0, 0},
    {"key_credential", NULL, NULL, K_STR, LC(key_credential), 0, 0},
    {"models", NULL, NULL, K_MODELS, LC(models), 0, 0},
    {"default", NULL, NULL, K_BOOL, LC(is_default), 0, 1},
    {"max_concurrency", "OPENAI_MAX_CONCURRENCY", "max-concurrency", K_INT,
     LC(limits.max_concurrency), 1, 4096},
    {"stagger_seconds", "OPENAI_STAGGER_SECONDS", "stagger", K_MS, LC(limits.stagger_ms), 0,
     3600e3},
    {"stagger_jitter", "OPENAI_STAGGER_JITTER", NULL, K_FRAC, LC(limits.stagger_jitter), 0, 1},
    {"tpm_limit", "OPENAI_TPM_LIMIT", "tpm", K_INT, LC(limits.tpm), 0, 1e12},
    {"rpm_limit", "OPENAI_RPM_LIMIT", "rpm", K_INT, LC(limits.rpm), 0, 1e9},
    {"headroom", "OPENAI_TPM_HEADROOM", "headroom", K_FRAC, LC(limits.headroom), 0, 0.9},
    {"burst_seconds", "OPENAI_BURST_SECONDS", "burst", K_MS, LC(limits.burst_ms), 0, 3600e3},
    {"est_tokens_per_run", "OPENAI_EST_TOKENS_PER_RUN", "est-tokens", K_INT, LC(est_tokens_per_run),
     1, 1e9},
    {"retry_max_attempts", "OPENAI_RETRY_MAX_ATTEMPTS", "retry-max-attempts", K_INT,
     LC(retry_max_attempts), 1, 1000},
    {"backoff_base_seconds", "OPENAI_BACKOFF_BASE_SECONDS", "backoff-base", K_MS,
     LC(backoff_base_ms), 1, 3600e3},
    {"backoff_cap_seconds", "OPENAI_BACKOFF_CAP_SECONDS", NULL, K_MS, LC(backoff_cap_ms), 1,
     86400e3},
    {"retry_after_max_seconds", "LLMQ_RETRY_AFTER_MAX_SECONDS", NULL, K_MS, LC(retry_after_max_ms),
     1, 86400e3},
    {"quota_pause_seconds", "LLMQ_QUOTA_PAUSE_SECONDS", NULL, K_MS, LC(quota_pause_ms), 0, 86400e3},
    {"queue_max_jobs", "LLMQ_QUEUE_MAX_JOBS", NULL, K_INT, LC(queue_max_jobs), 0, 1e12},
    {"queue_max_tokens", "LLMQ_QUEUE_MAX_TOKENS", NULL, K_INT, LC(queue_max_tokens), 0, 1e15},
    {"connect_timeout_seconds", "LLMQ_CONNECT_TIMEOUT_SECONDS", NULL, K_MS, LC(connect_timeout_ms),
     1, 600e3},
    {"request_timeout_seconds", "LLMQ_REQUEST_TIMEOUT_SECONDS", NULL, K_MS, LC(request_timeout_ms),
     1, 86400e3},
    {"interactive_reserve", "LLMQ_INTERACTIVE_RESERVE", "interactive-reserve", K_FRAC,
     LC(limits.interactive_reserve), 0, 0.9},
    {"interactive_stagger", "LLMQ_INTERACTIVE_STAGGER", NULL, K_BOOL,
     LC(limits.stagger_interactive), 0, 1},
    {"interactive_max_wait_seconds", "LLMQ_INTERACTIVE_MAX_WAIT_SECONDS", "interactive-max-wait",
     K_MS, LC(interactive_max_wait_ms), 0, 3600e3},
    {"lane_wait_max_seconds", "LLMQ_LANE_WAIT_MAX_SECONDS", NULL, K_MS, LC(lane_wait_max_ms), 0,
     7 * 86400e3},
    {"provider_window", "LLMQ_PROVIDER_WINDOW", "provider-window", K_WINDOW, LC(provider_window), 0,
     0},
    {"window_probation_seconds", "LLMQ_WINDOW_PROBATION_SECONDS", NULL, K_MS,
     LC(window_probation_ms), 1000, 30 * 86400e3},
    {"share", NULL, NULL, K_SHARE, LC(share), 0, 0},
    {NULL, NULL, NULL, 0, 0, 0, 0, 0},
};

static void lane_defaults(struct lane_config *l, const char *name)
{
	memset(l, 0, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->base_url, sizeof(l->base_url), "https://api.openai.com/v1");
	snprintf(l->key_env, sizeof(l->key_env), "OPENAI_API_KEY");
	/* The prototype's defaults, same names, same meaning. */
	l->limits.max_concurrency = 3;
	l->limits.stagger_ms = 15000;
	l->limits.stagger_jitter = 0;
	l->limits.tpm = 30000;
	l->limits.rpm = 0;
	l->limits.headroom = 0.15;
	l->limits.burst_ms = 0;
	l->est_tokens_per_run = 7000;
	l->retry_max_attempts = 5;
	l->backoff_base_ms = 2000;
	l->backoff_cap_ms = 300000;
	l->retry_after_max_ms = 900000;
	l->quota_pause_ms = 300000;
	l->connect_timeout_ms = 10000;
	l->request_timeout_ms = 600000;
	l->limits.interactive_reserve = 0.2;
	l->interactive_max_wait_ms = 30000;
	l->lane_wait_max_ms = 3600000;
	l->provider_window = GATE_WINDOW_AUTO;
	l->window_probation_ms = 600000;
}

static int bad(char *err, size_t errlen, const char *where, const char *key, const char *value,
               const char *why)
{
	snprintf(err, errlen, "%s: %s = \"%s\": %s", where, key, value, why);
	return -EINVAL;
}

static int parse_models(struct lane_config *l, const char *value, char *err, size_t errlen,
                        const char *where, const char *shown)
{
	char buf[2048], *save = NULL, *tok;

	if (strlen(value) >= sizeof(buf))
		return bad(err, errlen, where, shown, value, "too long");
	memcpy(buf, value, strlen(value) + 1);
	l->n_models = 0;
	for (tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		if (l->n_models == CONFIG_MAX_MODELS)
			return bad(err, errlen, where, shown, value, "at most 16 patterns");
		if (strlen(tok) >= sizeof(l->models[0]))
			return bad(err, errlen, where, shown, value, "pattern too long");
		snprintf(l->models[l->n_models++], sizeof(l->models[0]), "%s", tok);
	}
	return 0;
}

/* An upstream's base URL: absolute, http or https, with a host (libcurl's parser). */
static int check_url(const char *value, char *why, size_t whylen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	CURLUcode uc;
	int r = -EINVAL;

	if (!u) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if (!*value) {
		snprintf(why, whylen,
		         "empty; set it to the upstream's URL (e.g. https://api.openai.com/v1)");
		goto out;
	}
	uc = curl_url_set(u, CURLUPART_URL, value, 0);
	if (uc == CURLUE_BAD_SCHEME && !strstr(value, "://")) {
		snprintf(why, whylen,
		         "no scheme; write https:// (or http:// for a server on this host) before "
		         "it, e.g. https://api.openai.com/v1");
		goto out;
	}
	if (uc != CURLUE_OK) {
		snprintf(why, whylen, "not a URL (%s); expected e.g. https://api.openai.com/v1",
		         curl_url_strerror(uc));
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		snprintf(why, whylen,
		         "the scheme must be http:// or https:// (e.g. https://api.openai.com/v1)");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
		snprintf(why, whylen, "no host; expected e.g. https://api.openai.com/v1");
		goto out;
	}
	r = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return r;
}

/*
 * Set setting s of lane l from value. where and shown name the place and the
 * setting as the user wrote them: "llmqd.conf [lane a]" and "tpm_limit",
 * "environment" and "OPENAI_TPM_LIMIT", "command line" and "--tpm".
 */
static int apply(struct lane_config *l, const struct setting *s, const char *value,
                 const char *where, const char *shown, char *err, size_t errlen)
{
	char *p = (char *)l + s->off, *end, why[160];
	double d;
	int64_t ms;

	switch (s->kind) {
	case K_URL:
		if (check_url(value, why, sizeof(why)) < 0)
			return bad(err, errlen, where, shown, value, why);
		/* fall through */
	case K_STR:
		if (strlen(value) >= s->size)
			return bad(err, errlen, where, shown, value, "too long");
		memcpy(p, value, strlen(value) + 1);
		return 0;
	case K_MODELS:
		return parse_models(l, value, err, errlen, where, shown);
	case K_SHARE:
		/* It names keys in the fleet's Redis: llmq:{SHARE}:gate. */
		if (!*value || strlen(value) >= s->size ||
		    strspn(value,
		           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
		        strlen(value))
			return bad(
			    err, errlen, where, shown, value,
			    "expected a name of letters, digits, '.', '_' and '-', at most 63");
		memcpy(p, value, strlen(value) + 1);
		return 0;
	case K_WINDOW:
		if (!strcasecmp(value, "auto"))
			*(int *)p = GATE_WINDOW_AUTO;
		else if (!strcasecmp(value, "minute"))
			*(int *)p = GATE_WINDOW_MINUTE;
		else if (!strcasecmp(value, "second"))
			*(int *)p = GATE_WINDOW_SECOND;
		else
			return bad(err, errlen, where, shown, value,
			           "expected auto, minute or second");
		return 0;
	case K_BOOL:
		if (!strcasecmp(value, "yes") || !strcasecmp(value, "true") || !strcmp(value, "1"))
			*(int *)p = 1;
		else if (!strcasecmp(value, "no") || !strcasecmp(value, "false") ||
		         !strcmp(value, "0"))
			*(int *)p = 0;
		else
			return bad(err, errlen, where, shown, value, "expected yes or no");
		return 0;
	case K_INT:
	case K_FRAC:
		errno = 0;
		d = strtod(value, &end);
		/* Written so that NaN, which no comparison holds for, is out of range. */
		if (errno || end == value || *end || !(d >= s->min && d <= s->max))
			goto range;
		if (s->kind == K_FRAC)
			*(double *)p = d;
		else if (d != (double)(int64_t)d)
			return bad(err, errlen, where, shown, value, "expected a whole number");
		else if (s->size == sizeof(int))
			*(int *)p = (int)d;
		else
			*(int64_t *)p = (int64_t)d;
		return 0;
	case K_MS:
		if (time_parse_duration(value, &ms) < 0)
			return bad(err, errlen, where, shown, value,
			           "expected seconds, or a duration like 500ms, 2s, 1m");
		d = (double)ms;
		if (d < s->min || d > s->max)
			goto range;
		*(int64_t *)p = ms;
		return 0;
	}
range:
	snprintf(why, sizeof(why), "expected a number from %g to %g",
	         s->kind == K_MS ? s->min / 1000 : s->min,
	         s->kind == K_MS ? s->max / 1000 : s->max);
	return bad(err, errlen, where, shown, value, why);
}

int config_lane_setting(struct lane_config *l, const char *key, const char *value,
                        const char *where, char *err, size_t errlen)
{
	const struct setting *s;

	for (s = settings; s->key; s++)
		if (strcmp(s->key, key) == 0)
			return apply(l, s, value, where, key, err, errlen);
	return bad(err, errlen, where, key, value, "unknown key");
}

/* How long a client may take over one request, or a submit over its lines. */
static int parse_client_timeout(const char *v, int64_t *ret)
{
	int64_t ms;

	if (time_parse_duration(v, &ms) < 0 || ms < 1000 || ms > 3600 * 1000)
		return -EINVAL;
	*ret = ms;
	return 0;
}

static int parse_mb(const char *v, int64_t *ret)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !(d >= 0 && d <= 1e9)) /* NaN too */
		return -EINVAL;
	*ret = (int64_t)(d * 1024 * 1024);
	return 0;
}

/*
 * One [fleet] setting (LLMQ_REDIS_URL and its kin, --redis). The URL is
 * checked here and never echoed in an error when it may hold a password.
 */
static int fleet_set(struct fleet_config *f, const char *key, const char *value, const char *where,
                     const char *shown, char *err, size_t errlen)
{
	struct fleet_addr a;
	char why[320];
	int64_t ms;

	if (strcmp(key, "redis_url") == 0) {
		if (*value && fleet_url_parse(value, &a, why, sizeof(why)) < 0) {
			explicit_bzero(&a, sizeof(a));
			return bad(err, errlen, where, shown,
			           strchr(value, '@') ? "(not shown: it may hold a password)"
			                              : value,
			           why);
		}
		explicit_bzero(&a, sizeof(a));
		if (strlen(value) >= sizeof(f->redis_url))
			return bad(err, errlen, where, shown, "(not shown)", "too long");
		snprintf(f->redis_url, sizeof(f->redis_url), "%s", value);
	} else if (strcmp(key, "redis_password_file") == 0) {
		if (strlen(value) >= sizeof(f->redis_password_file))
			return bad(err, errlen, where, shown, value, "too long");
		snprintf(f->redis_password_file, sizeof(f->redis_password_file), "%s", value);
	} else if (strcmp(key, "redis_timeout") == 0) {
		if (time_parse_duration(value, &ms) < 0 || ms < 1 || ms > 60000)
			return bad(err, errlen, where, shown, value,
			           "expected a duration from 1ms to 60s, such as 100ms");
		f->redis_timeout_ms = ms;
	} else if (strcmp(key, "host_id") == 0) {
		if (!*value || strlen(value) >= sizeof(f->host_id) ||
		    strspn(value,
		           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") !=
		        strlen(value))
			return bad(err, errlen, where, shown, value,
			           "expected letters, digits, '.', '_', ':' and '-', at most 64");
		snprintf(f->host_id, sizeof(f->host_id), "%s", value);
	} else {
		return bad(err, errlen, where, shown, value,
		           "unknown key (the [fleet] section takes redis_url, redis_password_file, "
		           "redis_timeout and host_id)");
	}
	return 0;
}

/* The [fleet] keys and the variables that override them. */
static const char *const fleet_keys[][2] = {
    {"redis_url", "LLMQ_REDIS_URL"},
    {"redis_password_file", "LLMQ_REDIS_PASSWORD_FILE"},
    {"redis_timeout", "LLMQ_REDIS_TIMEOUT"},
    {"host_id", "LLMQ_HOST_ID"},
};

static const char *fleet_env(const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(fleet_keys) / sizeof(fleet_keys[0]); i++)
		if (strcmp(fleet_keys[i][0], key) == 0)
			return fleet_keys[i][1];
	return NULL;
}

/* Bytes: digits, with K, M or G (KiB, MiB, GiB) after them or not. */
static int parse_bytes(const char *v, int64_t *ret)
{
	char *end;
	long long n;
	int shift = 0;

	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || end == v || n < 0 || !(*v >= '0' && *v <= '9'))
		return -EINVAL;
	if (*end == 'K' || *end == 'M' || *end == 'G') {
		shift = *end == 'K' ? 10 : *end == 'M' ? 20 : 30;
		end++;
		if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
			end += strlen(end);
	}
	if (*end || n > (INT64_MAX >> shift))
		return -EINVAL;
	*ret = (int64_t)n << shift;
	return 0;
}

/* A count of at most 10^12, all digits. */
static int parse_big_count(const char *v, int64_t *ret)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < 0 || n > 1000000000000LL || !(*v >= '0' && *v <= '9'))
		return -EINVAL;
	*ret = n;
	return 0;
}

/* A count from lo to hi, all digits (atoi() would wrap 4294967360 to 64). */
static int parse_count(const char *v, int lo, int hi, int *ret)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi)
		return -EINVAL;
	*ret = (int)n;
	return 0;
}

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

static int parse_bool(const char *v, int *ret)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "on"))
		*ret = 1;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "off"))
		*ret = 0;
	else
		return -EINVAL;
	return 0;
}

/* One "PATTERN = INPUT [CACHED] OUTPUT" line of a [prices] section. */
static int config_price_line(struct ini_state *st, const char *where, const char *name,
                             const char *value)
{
	char why[256];

	if (price_table_add(&st->cfg->prices, name, value, why, sizeof(why)) == 0)
		return 1;
	bad(st->err, st->errlen, where, name, value, why);
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
	bad(st->err, st->errlen, where, name, value, why);
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
		const char *env = fleet_env(name);

		/* The environment wins: a value it replaces is not checked. */
		if (env && getenv(env) && *getenv(env))
			return 1;
		if (fleet_set(&cfg->fleet, name, value, where, name, st->err, st->errlen) < 0)
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
			if (parse_mb(value, &cfg->db_max_bytes) < 0)
				goto fail_range;
		} else if (strcmp(name, "files_max_bytes_per_user") == 0) {
			if (!getenv("LLMQ_FILES_MAX_BYTES_PER_USER") &&
			    parse_bytes(value, &cfg->files_max_bytes_per_user) < 0)
				goto fail_range;
		} else if (strcmp(name, "queue_max_jobs_per_user") == 0) {
			if (!getenv("LLMQ_QUEUE_MAX_JOBS_PER_USER") &&
			    parse_big_count(value, &cfg->queue_max_jobs_per_user) < 0)
				goto fail_range;
		} else if (strcmp(name, "disk_min_free_mb") == 0) {
			if (!getenv("LLMQ_DISK_MIN_FREE_MB") &&
			    parse_mb(value, &cfg->disk_min_free_bytes) < 0)
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
			    parse_client_timeout(value, &cfg->client_timeout_ms) < 0)
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
			if (parse_bool(value, &cfg->http_log_bodies) < 0)
				goto fail_range;
		} else if (strcmp(name, "http_anonymous") == 0) {
			if (!getenv("LLMQ_HTTP_ANONYMOUS") &&
			    parse_bool(value, &cfg->http_anonymous) < 0)
				goto fail_range;
		} else if (strcmp(name, "max_connections") == 0) {
			if (parse_count(value, 1, 4096, &cfg->max_connections) < 0)
				goto fail_range;
		} else if (strcmp(name, "http_max_connections") == 0) {
			if (parse_count(value, 1, 65536, &cfg->http_max_connections) < 0)
				goto fail_range;
		} else if (strcmp(name, "http_max_connections_per_user") == 0) {
			if (getenv("LLMQ_HTTP_MAX_CONNECTIONS_PER_USER"))
				return 1;
			if (parse_count(value, 1, 65536, &cfg->http_max_connections_per_user) < 0)
				goto fail_range;
		} else if (strcmp(name, "max_connections_per_user") == 0) {
			if (parse_count(value, 1, 4096, &cfg->max_connections_per_user) < 0)
				goto fail_range;
		} else if (strcmp(name, "prices_file") == 0) {
			if (!getenv("LLMQ_PRICES_FILE"))
				snprintf(cfg->prices_file, sizeof(cfg->prices_file), "%s", value);
		} else {
			bad(st->err, st->errlen, where, name, value, "unknown key");
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
			lane_defaults(st->lane, section + 5);
		}
		snprintf(st->section, sizeof(st->section), "%s", section);
	}
	for (s = settings; s->key; s++)
		if (strcmp(s->key, name) == 0)
			break;
	if (!s->key) {
		bad(st->err, st->errlen, where, name, value, "unknown key");
		goto fail;
	}
	if (apply(st->lane, s, value, where, s->key, st->err, st->errlen) < 0)
		goto fail;
	if (strcmp(name, "base_url") == 0)
		st->has_base_url[st->lane - cfg->lanes] = 1;
	if (strcmp(name, "key_env") == 0)
		st->has_key_env[st->lane - cfg->lanes] = 1;
	return 1;
fail_range:
	bad(st->err, st->errlen, where, name, value, "out of range");
fail:
	st->failed = 1;
	return 0;
}

static int load_file(struct config *cfg, int required, char *err, size_t errlen)
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

static int load_prices(struct config *cfg, char *err, size_t errlen)
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

static const struct option base_options[] = {
    {"socket", required_argument, NULL, 'S'},      {"db", required_argument, NULL, 'D'},
    {"db-max-mb", required_argument, NULL, 'M'},   {"config", required_argument, NULL, 'c'},
    {"verbose", no_argument, NULL, 'v'},           {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},           {"http", required_argument, NULL, 'H'},
    {"http-socket", required_argument, NULL, 'U'}, {"redis", required_argument, NULL, 'R'},
};
#define N_BASE (sizeof(base_options) / sizeof(base_options[0]))
#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

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
	for (s = settings; s->key; s++)
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

	for (s = settings; s->key; s++) {
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
	for (s = settings; s->key; s++)
		if (s->flag)
			opts[n++] = (struct option){s->flag, required_argument, NULL,
			                            1000 + (int)(s - settings)};
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
	lane_defaults(&cfg->lanes[0], "openai");
	cfg->lanes[0].is_default = 1;
	cfg->n_lanes = 1;

	if (!file && (v = getenv("LLMQ_CONFIG")) && *v) {
		file = v;
		file_required = 1;
	}
	snprintf(cfg->config_file, sizeof(cfg->config_file), "%s",
	         file ? file : CONFIG_DEFAULT_FILE);
	r = load_file(cfg, file_required, err, errlen);
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
	    parse_client_timeout(v, &cfg->client_timeout_ms) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_CLIENT_TIMEOUT = \"%s\": expected a duration from 1s "
		         "to 1h, such as 60s",
		         v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_HTTP_MAX_CONNECTIONS_PER_USER")) && *v) {
		if (parse_count(v, 1, 65536, &cfg->http_max_connections_per_user) < 0) {
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
	    parse_bool(v, &cfg->http_log_bodies) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_HTTP_LOG_BODIES = \"%s\": expected yes or no", v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_HTTP_ANONYMOUS")) && *v && parse_bool(v, &cfg->http_anonymous) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_HTTP_ANONYMOUS = \"%s\": expected yes or no", v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_PRICES_FILE")) && *v)
		snprintf(cfg->prices_file, sizeof(cfg->prices_file), "%s", v);
	r = load_prices(cfg, err, errlen);
	if (r < 0)
		return r;
	if ((v = getenv("LLMQ_DB_MAX_MB")) && *v && parse_mb(v, &cfg->db_max_bytes) < 0) {
		snprintf(err, errlen, "environment: LLMQ_DB_MAX_MB = \"%s\": expected megabytes",
		         v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_FILES_MAX_BYTES_PER_USER")) && *v &&
	    parse_bytes(v, &cfg->files_max_bytes_per_user) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_FILES_MAX_BYTES_PER_USER = \"%s\": expected bytes, "
		         "such as 2G (GiB), 500M (MiB) or 0 for no cap",
		         v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_QUEUE_MAX_JOBS_PER_USER")) && *v &&
	    parse_big_count(v, &cfg->queue_max_jobs_per_user) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_QUEUE_MAX_JOBS_PER_USER = \"%s\": expected a number "
		         "of jobs, or 0 for no cap",
		         v);
		return -EINVAL;
	}
	if ((v = getenv("LLMQ_DISK_MIN_FREE_MB")) && *v &&
	    parse_mb(v, &cfg->disk_min_free_bytes) < 0) {
		snprintf(err, errlen,
		         "environment: LLMQ_DISK_MIN_FREE_MB = \"%s\": expected megabytes (MiB), "
		         "or 0 for no floor",
		         v);
		return -EINVAL;
	}

	for (i = 0; i < sizeof(fleet_keys) / sizeof(fleet_keys[0]); i++) {
		if (!(v = getenv(fleet_keys[i][1])) || !*v)
			continue;
		r = fleet_set(&cfg->fleet, fleet_keys[i][0], v, "environment", fleet_keys[i][1],
		              err, errlen);
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
	for (s = settings; s->key; s++) {
		if (!s->env || !(v = getenv(s->env)) || !*v)
			continue;
		r = apply(&cfg->lanes[0], s, v, "environment", s->env, err, errlen);
		if (r < 0)
			return r;
	}

	optind = 0;
	while ((c = getopt_long(argc, argv, "vhV", opts, &idx)) != -1) {
		if (c == 'S')
			snprintf(cfg->socket_path, sizeof(cfg->socket_path), "%s", optarg);
		else if (c == 'D')
			snprintf(cfg->db_path, sizeof(cfg->db_path), "%s", optarg);
		else if (c == 'M' && parse_mb(optarg, &cfg->db_max_bytes) < 0) {
			snprintf(err, errlen, "--db-max-mb %s: expected megabytes", optarg);
			return -EINVAL;
		} else if (c == 'v')
			cfg->log_level = LOG_DEBUG;
		else if (c == 'H')
			snprintf(cfg->http_addr, sizeof(cfg->http_addr), "%s", optarg);
		else if (c == 'U')
			snprintf(cfg->http_socket, sizeof(cfg->http_socket), "%s", optarg);
		else if (c == 'R' && (r = fleet_set(&cfg->fleet, "redis_url", optarg,
		                                    "command line", "--redis", err, errlen)) < 0)
			return r;
		else if (c >= 1000) {
			if (cfg->config_file[0]) {
				snprintf(err, errlen,
				         "--%s sets the implicit lane, but lanes come from %s; "
				         "set %s there",
				         settings[c - 1000].flag, cfg->config_file,
				         settings[c - 1000].key);
				return -EINVAL;
			}
			snprintf(flag, sizeof(flag), "--%s", settings[c - 1000].flag);
			r = apply(&cfg->lanes[0], &settings[c - 1000], optarg, "command line", flag,
			          err, errlen);
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

const char *config_lane_share(const struct lane_config *l)
{
	return l->share[0] ? l->share : l->name;
}

const struct lane_config *config_lane_for_model(const struct config *cfg, const char *model)
{
	const struct lane_config *def = &cfg->lanes[0];
	int i, j;

	for (i = 0; i < cfg->n_lanes; i++) {
		const struct lane_config *l = &cfg->lanes[i];

		if (l->is_default)
			def = l;
		for (j = 0; j < l->n_models; j++)
			if (fnmatch(l->models[j], model, 0) == 0)
				return l;
	}
	return def;
}
