/*
 * timeutil.c - clocks, duration parsing and formatting.
 */
#include "timeutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

int64_t time_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int time_parse_duration(const char *s, int64_t *ret_ms)
{
	double total = 0;
	int units = 0;
	char *end;

	if (!s || !*s)
		return -EINVAL;
	while (*s) {
		double v, mult;

		if (!(*s >= '0' && *s <= '9') && *s != '.')
			return -EINVAL;
		errno = 0;
		v = strtod(s, &end);
		if (errno || end == s || v < 0 || !isfinite(v))
			return -EINVAL;
		s = end;
		if (*s == '\0') {
			/* A bare number is seconds, but only on its own. */
			if (units)
				return -EINVAL;
			mult = 1000;
		} else if (strncmp(s, "ms", 2) == 0) {
			mult = 1;
			s += 2;
		} else if (*s == 's') {
			mult = 1000;
			s++;
		} else if (*s == 'm') {
			mult = 60000;
			s++;
		} else if (*s == 'h') {
			mult = 3600000;
			s++;
		} else if (*s == 'd') {
			mult = 86400000;
			s++;
		} else {
			return -EINVAL;
		}
		total += v * mult;
		units++;
	}
	if (total > 9.0e15)
		return -ERANGE;
	*ret_ms = (int64_t)llround(total);
	return 0;
}

int time_parse_http_date(const char *s, int64_t *ret_ms)
{
	struct tm tm;
	const char *end;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end || *end)
		return -EINVAL;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*ret_ms = (int64_t)t * 1000;
	return 0;
}

void time_format_duration(int64_t ms, char *buf, size_t len)
{
	int64_t s;

	if (ms < 0)
		ms = 0;
	s = ms / 1000;
	if (ms < 1000)
		snprintf(buf, len, "%lldms", (long long)ms);
	else if (s < 60)
		snprintf(buf, len, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600),
		         (long long)(s % 3600 / 60));
	else
		snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400),
		         (long long)(s % 86400 / 3600));
}

void time_to_timeval(int64_t ms, struct timeval *tv)
{
	if (ms < 0)
		ms = 0;
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}
