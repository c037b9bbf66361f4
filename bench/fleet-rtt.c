/*
 * fleet-rtt.c - the cost of the fleet's shared gate alone: the round trip
 * of a grant to a redis-server on a Unix socket, and Redis's CPU per 1,000
 * grants. Loads llmqd's Lua library into the Redis at --socket and asks it
 * for one launch after another on a lane without limits, settling each (as
 * a host does), with no other work in between.
 *
 *   fleet-rtt --socket PATH [--grants N]
 *
 * Prints p50, p99 and max of the grants' round trips, and what Redis's
 * INFO commandstats says FCALL cost it. Asserts nothing.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>

#include "fleet/fleet.h"

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The limits of a lane without them: concurrency 32, no budget. */
#define LIMITS "32", "0", "0", "0", "0", "0", "0", "0.2", "0", "0", "600000"

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", 1, 0, 's'}, {"grants", 1, 0, 'n'}, {0, 0, 0, 0}};
	const char *sock = NULL;
	char fn_grant[96], fn_settle[96], id[32];
	double *rtt, t0, usec = 0;
	redisContext *c;
	redisReply *r;
	int n = 10000, i, o;
	long long calls = 0;
	char *p;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 's')
			sock = optarg;
		else if (o == 'n')
			n = atoi(optarg);
		else
			return 64;
	}
	if (!sock || n < 1) {
		fprintf(stderr, "usage: fleet-rtt --socket PATH [--grants N]\n");
		return 64;
	}
	c = redisConnectUnix(sock);
	if (!c || c->err) {
		fprintf(stderr, "fleet-rtt: cannot connect to %s\n", sock);
		return 1;
	}
	r = redisCommand(c, "FUNCTION LOAD REPLACE %s", fleet_lua);
	freeReplyObject(r);
	freeReplyObject(redisCommand(c, "CONFIG RESETSTAT"));
	snprintf(fn_grant, sizeof(fn_grant), "%s_grant", fleet_lua_lib);
	snprintf(fn_settle, sizeof(fn_settle), "%s_settle", fleet_lua_lib);
	rtt = calloc((size_t)n, sizeof(*rtt));
	for (i = 0; i < n; i++) {
		const char *g[] = {"FCALL",
		                   fn_grant,
		                   "3",
		                   "llmq:{rtt}:gate",
		                   "llmq:{rtt}:leases",
		                   "llmq:{rtt}:lease",
		                   "",
		                   "",
		                   LIMITS,
		                   "0",
		                   "100",
		                   "1",
		                   "0.5",
		                   "0",
		                   "20000",
		                   "rtt-host",
		                   id};
		const char *s[] = {"FCALL",
		                   fn_settle,
		                   "3",
		                   "llmq:{rtt}:gate",
		                   "llmq:{rtt}:leases",
		                   "llmq:{rtt}:lease",
		                   "",
		                   "",
		                   LIMITS,
		                   id,
		                   "0",
		                   "100",
		                   "80",
		                   "1",
		                   "0",
		                   "0",
		                   "-1",
		                   "-1",
		                   "-1",
		                   "-1",
		                   "-1",
		                   "-1",
		                   "0",
		                   "0",
		                   "0",
		                   "0",
		                   "0",
		                   "0",
		                   "0",
		                   "-1"};

		snprintf(id, sizeof(id), "rtt/%d", i);
		t0 = now_us();
		r = redisCommandArgv(c, (int)(sizeof(g) / sizeof(g[0])), g, NULL);
		rtt[i] = now_us() - t0;
		if (!r || r->type == REDIS_REPLY_ERROR) {
			fprintf(stderr, "fleet-rtt: grant: %s\n", r ? r->str : c->errstr);
			return 1;
		}
		freeReplyObject(r);
		r = redisCommandArgv(c, (int)(sizeof(s) / sizeof(s[0])), s, NULL);
		freeReplyObject(r);
	}
	qsort(rtt, (size_t)n, sizeof(*rtt), cmp);
	r = redisCommand(c, "INFO commandstats");
	if (r && r->type == REDIS_REPLY_STRING && (p = strstr(r->str, "cmdstat_fcall:")))
		sscanf(p, "cmdstat_fcall:calls=%lld,usec=%lf", &calls, &usec);
	freeReplyObject(r);
	printf("%d grants (each followed by its settle) on a local Unix socket: round trip p50 "
	       "%.3f ms, p99 %.3f ms, max %.3f ms\n",
	       n, rtt[(n - 1) / 2] / 1000, rtt[(n * 99 + 99) / 100 - 1] / 1000, rtt[n - 1] / 1000);
	if (calls > 0)
		printf(
		    "Redis: %lld FCALLs, %.1f us each; %.3f s of Redis per 1,000 grants with their "
		    "settles\n",
		    calls, usec / (double)calls, usec / 1e6 * 1000.0 / n);
	free(rtt);
	redisFree(c);
	return 0;
}
