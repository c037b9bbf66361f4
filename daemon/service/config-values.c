/*
 * config-values.c - one value's checks, whichever source it comes from (the
 * file, the environment, a flag): counts, bytes, megabytes, durations, yes
 * or no, the [fleet] settings, and the message a bad value gets. Lane
 * settings are config-lane.c's.
 */
#include "service/config-private.h"
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int config_bad(char *err, size_t errlen, const char *where, const char *key, const char *value,
               const char *why)
{
	snprintf(err, errlen, "%s: %s = \"%s\": %s", where, key, value, why);
	return -EINVAL;
}

/* How long a client may take over one request, or a submit over its lines. */
int config_parse_client_timeout(const char *v, int64_t *ret)
{
	int64_t ms;

	if (time_parse_duration(v, &ms) < 0 || ms < 1000 || ms > 3600 * 1000)
		return -EINVAL;
	*ret = ms;
	return 0;
}

int config_parse_mb(const char *v, int64_t *ret)
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
int config_fleet_set(struct fleet_config *f, const char *key, const char *value, const char *where,
                     const char *shown, char *err, size_t errlen)
{
	struct fleet_addr a;
	char why[320];
	int64_t ms;

	if (strcmp(key, "redis_url") == 0) {
		if (*value && fleet_url_parse(value, &a, why, sizeof(why)) < 0) {
			explicit_bzero(&a, sizeof(a));
			return config_bad(err, errlen, where, shown,
			                  strchr(value, '@') ? "(not shown: it may hold a password)"
			                                     : value,
			                  why);
		}
		explicit_bzero(&a, sizeof(a));
		if (strlen(value) >= sizeof(f->redis_url))
			return config_bad(err, errlen, where, shown, "(not shown)", "too long");
		snprintf(f->redis_url, sizeof(f->redis_url), "%s", value);
	} else if (strcmp(key, "redis_password_file") == 0) {
		if (strlen(value) >= sizeof(f->redis_password_file))
			return config_bad(err, errlen, where, shown, value, "too long");
		snprintf(f->redis_password_file, sizeof(f->redis_password_file), "%s", value);
	} else if (strcmp(key, "redis_timeout") == 0) {
		if (time_parse_duration(value, &ms) < 0 || ms < 1 || ms > 60000)
			return config_bad(err, errlen, where, shown, value,
			                  "expected a duration from 1ms to 60s, such as 100ms");
		f->redis_timeout_ms = ms;
	} else if (strcmp(key, "host_id") == 0) {
		if (!*value || strlen(value) >= sizeof(f->host_id) ||
		    strspn(value,
		           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") !=
		        strlen(value))
			return config_bad(
			    err, errlen, where, shown, value,
			    "expected letters, digits, '.', '_', ':' and '-', at most 64");
		snprintf(f->host_id, sizeof(f->host_id), "%s", value);
	} else {
		return config_bad(
		    err, errlen, where, shown, value,
		    "unknown key (the [fleet] section takes redis_url, redis_password_file, "
		    "redis_timeout and host_id)");
	}
	return 0;
}

/* Bytes: digits, with K, M or G (KiB, MiB, GiB) after them or not. */
int config_parse_bytes(const char *v, int64_t *ret)
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
int config_parse_big_count(const char *v, int64_t *ret)
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
int config_parse_count(const char *v, int lo, int hi, int *ret)
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

int config_parse_upstream_client(const char *v, int *ret_curl)
{
	if (strcmp(v, "builtin") && strcmp(v, "curl"))
		return -EINVAL;
	*ret_curl = strcmp(v, "curl") == 0;
	return 0;
}

int config_parse_bool(const char *v, int *ret)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "on"))
		*ret = 1;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "off"))
		*ret = 0;
	else
		return -EINVAL;
	return 0;
}
