/*
 * config-lane.c - a lane's settings: the one table that maps each to its INI
 * key, its environment variable and its flag (so the three cannot drift
 * apart), the lane's defaults, each setting's checks (numbers in range,
 * durations, URLs, model patterns, windows, shares), and which lane serves a
 * model. Where the values come from is config.c's and config-file.c's.
 */
#include "service/config-private.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const struct setting config_lane_settings[] = {
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

void config_lane_defaults(struct lane_config *l, const char *name)
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

static int parse_models(struct lane_config *l, const char *value, char *err, size_t errlen,
                        const char *where, const char *shown)
{
	char buf[2048], *save = NULL, *tok;

	if (strlen(value) >= sizeof(buf))
		return config_bad(err, errlen, where, shown, value, "too long");
	memcpy(buf, value, strlen(value) + 1);
	l->n_models = 0;
	for (tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		if (l->n_models == CONFIG_MAX_MODELS)
			return config_bad(err, errlen, where, shown, value, "at most 16 patterns");
		if (strlen(tok) >= sizeof(l->models[0]))
			return config_bad(err, errlen, where, shown, value, "pattern too long");
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
int config_lane_apply(struct lane_config *l, const struct setting *s, const char *value,
                      const char *where, const char *shown, char *err, size_t errlen)
{
	char *p = (char *)l + s->off, *end, why[160];
	double d;
	int64_t ms;

	switch (s->kind) {
	case K_URL:
		if (check_url(value, why, sizeof(why)) < 0)
			return config_bad(err, errlen, where, shown, value, why);
		/* fall through */
	case K_STR:
		if (strlen(value) >= s->size)
			return config_bad(err, errlen, where, shown, value, "too long");
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
			return config_bad(
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
			return config_bad(err, errlen, where, shown, value,
			                  "expected auto, minute or second");
		return 0;
	case K_BOOL:
		if (!strcasecmp(value, "yes") || !strcasecmp(value, "true") || !strcmp(value, "1"))
			*(int *)p = 1;
		else if (!strcasecmp(value, "no") || !strcasecmp(value, "false") ||
		         !strcmp(value, "0"))
			*(int *)p = 0;
		else
			return config_bad(err, errlen, where, shown, value, "expected yes or no");
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
			return config_bad(err, errlen, where, shown, value,
			                  "expected a whole number");
		else if (s->size == sizeof(int))
			*(int *)p = (int)d;
		else
			*(int64_t *)p = (int64_t)d;
		return 0;
	case K_MS:
		if (time_parse_duration(value, &ms) < 0)
			return config_bad(err, errlen, where, shown, value,
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
	return config_bad(err, errlen, where, shown, value, why);
}

int config_lane_setting(struct lane_config *l, const char *key, const char *value,
                        const char *where, char *err, size_t errlen)
{
	const struct setting *s;

	for (s = config_lane_settings; s->key; s++)
		if (strcmp(s->key, key) == 0)
			return config_lane_apply(l, s, value, where, key, err, errlen);
	return config_bad(err, errlen, where, key, value, "unknown key");
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
