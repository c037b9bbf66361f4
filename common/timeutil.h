/*
 * timeutil.h - clocks and the duration forms llmq reads and prints.
 * Parsing is pure; only time_*_ms() read a clock.
 */
#ifndef LLMQ_TIMEUTIL_H
#define LLMQ_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

struct timeval;

int64_t time_mono_ms(void);
int64_t time_wall_ms(void);

/* ms (clamped at 0) as a struct timeval, for libevent's timers. */
void time_to_timeval(int64_t ms, struct timeval *tv);

/*
 * Parse a duration: "24h", "90m", "1h30m", "6m0s", "1.5s", "20ms", "2d", or a
 * bare number of seconds ("30", "0.5"). Returns 0 or -EINVAL.
 */
int time_parse_duration(const char *s, int64_t *ret_ms);

/* Parse an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") to unix ms. */
int time_parse_http_date(const char *s, int64_t *ret_ms);

/* Format ms as a short human duration: "850ms", "12s", "3m05s", "2h04m", "1d02h". */
void time_format_duration(int64_t ms, char *buf, size_t len);

#endif
