/*
 * samples.h - a lane's last hour in memory: one sample per 10-second
 * period (tokens launched and used, requests, 429s, and the levels at its
 * end: in flight, queued, the effective limits), in a ring of an hour, and
 * the per-minute figures the live page draws from it. Pure: the clock is an
 * argument, no I/O. live.c reads the lanes and feeds it; it knows nothing of
 * lanes, gates or the store.
 *
 * A reading holds counters that only grow (since llmqd started) and levels;
 * a sample is the difference between two readings. It covers the time since
 * the previous reading and belongs to the period that holds the middle of
 * that time, so that a timer firing just after a period's end still fills
 * the period that ended, and a reading taken now (the running period,
 * shown as a provisional last point) never lands on it.
 */
#ifndef LLMQ_SAMPLES_H
#define LLMQ_SAMPLES_H

#include <stdint.h>

#define SAMPLES_PERIOD_MS 10000
#define SAMPLES_KEPT 360 /* an hour of periods */
#define SAMPLES_MINUTE 6 /* periods in a minute: the per-minute sums */
#define SAMPLES_NONE INT64_MIN

/* One moment on both clocks: the monotonic one places it in a period, the
 * wall one is what people are shown. */
struct samples_time {
	int64_t mono_ms;
	int64_t wall_ms;
};

/* What a lane counted since llmqd started, and its levels now. */
struct samples_reading {
	uint64_t tokens_launched; /* reserved by the gate at launch */
	uint64_t tokens_used;     /* as the answers reported */
	uint64_t requests;        /* launched */
	uint64_t r429;            /* 429s from the provider */
	int64_t in_flight;
	int64_t queued;    /* jobs queued (not running) and calls waiting */
	int64_t tpm_limit; /* effective tokens per minute; 0: none */
	int64_t rpm_limit; /* effective requests per minute; 0: none */
};

/* One period: what happened in it, and the levels at its end. */
struct sample {
	int64_t period;  /* mono_ms / SAMPLES_PERIOD_MS; SAMPLES_NONE: an empty slot */
	int64_t wall_ms; /* when its last reading was taken */
	int64_t tokens_launched, tokens_used, requests, r429;
	int64_t in_flight, queued, tpm_limit, rpm_limit;
};

struct samples {
	struct sample ring[SAMPLES_KEPT];
	struct samples_reading last; /* the reading the samples count up to */
	int64_t last_mono;           /* when it was taken */
};

/* An empty hour whose counting starts from reading r, taken at now. */
void samples_init(struct samples *s, const struct samples_time *now,
                  const struct samples_reading *r);

/*
 * Count reading r, taken at now: what grew since the last reading goes to
 * the period holding the middle of the time between them (added to what it
 * has), the levels replace its levels. A counter that went down (a launch
 * taken back) counts as nothing and is counted from again.
 */
void samples_record(struct samples *s, const struct samples_time *now,
                    const struct samples_reading *r);

/* One point of the hour: a period, and the minute that ends with it. */
struct samples_point {
	int64_t period;
	int64_t wall_ms;
	int provisional; /* the running period, counted up to now */
	int64_t tokens_launched, tokens_used, requests, r429;                 /* in the period */
	int64_t tokens_per_min, used_per_min, requests_per_min, r429_per_min; /* in its minute */
	int64_t in_flight, queued, tpm_limit, rpm_limit;                      /* at its end */
};

/*
 * The periods of the hour up to now that have a sample, oldest first, into
 * ret (at most max; SAMPLES_KEPT + 1 holds them all), and with cur (NULL:
 * none) the running period as a provisional last point: what grew since
 * the last reading, cur's levels, now's wall time. A point's per-minute
 * figures are the sums over the SAMPLES_MINUTE periods that end with it.
 * Returns how many points were written.
 */
int samples_series(const struct samples *s, const struct samples_time *now,
                   const struct samples_reading *cur, struct samples_point *ret, int max);

#endif
