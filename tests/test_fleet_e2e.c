/*
 * test_fleet_e2e.c - several real llmqd sharing one key through a real
 * redis-server, against the mock upstream enforcing the key's limits: no
 * 429s and the key's slots held across hosts; a host killed with -9 gives
 * its slots back within its leases' deadline; Redis away for 20 s costs no
 * job; a wrong password or a Redis that never answers is said, and each
 * host gates alone meanwhile without its loop ever waiting.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* dir/NAME, made. */
static void subdir(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
	cr_assert_eq(mkdir(buf, 0700), 0);
}

static int64_t mock_stat(const struct mock_proc *m, const char *key)
{
	json_object *o = h_mock_stats(m);
	int64_t v;

	cr_assert_not_null(o);
	v = h_jint(o, key);
	json_object_put(o);
	return v;
}

/* "llmq status --json" of d. */
static json_object *status(const struct daemon_proc *d)
{
	static char out[1 << 16];
	json_object *o;

	cr_assert_eq(h_llmq(d, out, sizeof(out), NULL, 0, "status", "--json", NULL), 0);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%s", out);
	return o;
}

/* The first lane's fleet mode ("shared", "alone", ...) and the Redis's state. */
static void fleet_state(const struct daemon_proc *d, char *mode, size_t mlen, char *redis,
                        size_t rlen)
{
	json_object *o = status(d), *lanes, *lane, *f;

	cr_assert(json_object_object_get_ex(o, "lanes", &lanes));
	lane = json_object_array_get_idx(lanes, 0);
	cr_assert(json_object_object_get_ex(lane, "fleet", &f) && f, "no fleet in status");
	snprintf(mode, mlen, "%s", h_jstr(f, "mode"));
	cr_assert(json_object_object_get_ex(o, "fleet", &f) && f);
	snprintf(redis, rlen, "%s", h_jstr(f, "redis"));
	json_object_put(o);
}

static int wait_mode(const struct daemon_proc *d, const char *want, int timeout_ms)
{
	char mode[32], redis[16];
	int64_t end = mono_ms() + timeout_ms;

	do {
		fleet_state(d, mode, sizeof(mode), redis, sizeof(redis));
		if (strcmp(mode, want) == 0)
			return 1;
		msleep(50);
	} while (mono_ms() < end);
	return 0;
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	char *buf = ud;
	size_t have = strlen(buf), add = sz * n;

	if (have + add >= 65535)
		add = 65535 - have;
	memcpy(buf + have, p, add);
	buf[have + add] = '\0';
	return sz * n;
}

/* GET path from d's HTTP face into buf; the status. */
static long http_get(const struct daemon_proc *d, const char *path, char *buf)
{
	CURL *c = curl_easy_init();
	char url[128];
	long code = 0;

	cr_assert_not_null(c);
	buf[0] = '\0';
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", d->http_port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, buf);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	return code;
}

#define LIMITED(conc)                                                                              \
	"OPENAI_TPM_LIMIT=60000", "OPENAI_RPM_LIMIT=600", "OPENAI_MAX_CONCURRENCY=" conc,          \
	    "OPENAI_STAGGER_SECONDS=0", "OPENAI_BACKOFF_BASE_SECONDS=0.05",                        \
	    "OPENAI_BACKOFF_CAP_SECONDS=0.5"

/*
 * Three hosts, each told the key's limits, each with its own batch, against
 * a provider whose bucket holds one second of those limits: as one gate,
 * they draw no 429, and never have more than the key's slots in flight.
 * (Alone, each would spend the key's whole budget: a test run without
 * LLMQ_REDIS_URL draws hundreds of 429s.)
 */
Test(fleet_e2e, three_hosts_on_one_key_draw_no_429, .timeout = 120)
{
	struct daemon_proc d[3];
	struct redis_proc r;
	struct mock_proc m;
	char dir[256], sub[300], batch[320], url[400], id[3][64], name[4];
	json_object *b;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	h_mock_start(&m, dir, "--tpm", "60000", "--rpm", "600", "--window-ms", "1000",
	             "--latency-ms", "200", NULL);
	snprintf(url, sizeof(url), "LLMQ_REDIS_URL=%s", r.url);
	snprintf(batch, sizeof(batch), "%s/batch.jsonl", dir);
	h_write_batch(batch, 40, "gpt-4o-mini", 100);
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "%c", 'a' + i);
		subdir(sub, sizeof(sub), dir, name);
		h_daemon_start(&d[i], sub, &m, url, LIMITED("8"), NULL);
	}
	for (i = 0; i < 3; i++)
		cr_assert(wait_mode(&d[i], "shared", 5000), "host %d does not share its gate", i);
	for (i = 0; i < 3; i++)
		h_submit(&d[i], batch, id[i], sizeof(id[i]));
	for (i = 0; i < 3; i++) {
		b = h_wait_for(&d[i], id[i], h_batch_completed, 90);
		cr_assert_eq(h_jint(b, "counts.succeeded"), 40, "host %d", i);
		json_object_put(b);
	}
	cr_assert_eq(mock_stat(&m, "r429"), 0, "the provider refused %lld requests",
	             (long long)mock_stat(&m, "r429"));
	cr_assert_eq(mock_stat(&m, "ok"), 120);
	cr_assert_leq(mock_stat(&m, "max_in_flight"), 8, "the key's 8 slots were exceeded");
	for (i = 0; i < 3; i++)
		h_daemon_signal(&d[i], SIGTERM);
	h_mock_stop(&m);
	h_redis_stop(&r);
}

/* The key's slots are one set across the hosts: the provider never sees more. */
Test(fleet_e2e, the_slots_are_shared_across_hosts, .timeout = 120)
{
	struct daemon_proc d[3];
	struct redis_proc r;
	struct mock_proc m;
	char dir[256], sub[300], batch[320], url[400], id[3][64], name[4];
	json_object *b;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	h_mock_start(&m, dir, "--latency-ms", "300", NULL);
	snprintf(url, sizeof(url), "LLMQ_REDIS_URL=%s", r.url);
	snprintf(batch, sizeof(batch), "%s/batch.jsonl", dir);
	h_write_batch(batch, 30, "gpt-4o-mini", 10);
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "%c", 'a' + i);
		subdir(sub, sizeof(sub), dir, name);
		h_daemon_start(&d[i], sub, &m, url, H_FAST, "OPENAI_MAX_CONCURRENCY=5", NULL);
	}
	for (i = 0; i < 3; i++)
		cr_assert(wait_mode(&d[i], "shared", 5000), "host %d does not share its gate", i);
	for (i = 0; i < 3; i++)
		h_submit(&d[i], batch, id[i], sizeof(id[i]));
	for (i = 0; i < 3; i++) {
		b = h_wait_for(&d[i], id[i], h_batch_completed, 60);
		cr_assert_eq(h_jint(b, "counts.succeeded"), 30, "host %d", i);
		json_object_put(b);
	}
	/* Alone, each host would have had its own 5 in flight: 15. */
	cr_assert_eq(mock_stat(&m, "max_in_flight"), 5, "max in flight %lld, the key has 5 slots",
	             (long long)mock_stat(&m, "max_in_flight"));
	for (i = 0; i < 3; i++)
		h_daemon_signal(&d[i], SIGTERM);
	h_mock_stop(&m);
	h_redis_stop(&r);
}

/*
 * A host killed with -9 while it holds every slot: its leases run out at
 * their deadline (the request timeout, 3 s, + the connect timeout, 1 s, + 2 s),
 * and the other host gets the slots then, not before and not much later.
 */
Test(fleet_e2e, a_host_killed_gives_its_slots_back_within_a_deadline, .timeout = 120)
{
	struct daemon_proc a, b;
	struct redis_proc r;
	struct mock_proc m;
	char dir[256], sub[300], batch[320], url[400], id[64];
	int64_t killed, first;
	json_object *o;
	int tries;

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	h_mock_start(&m, dir, "--latency-ms", "2500", NULL);
	snprintf(url, sizeof(url), "LLMQ_REDIS_URL=%s", r.url);
	snprintf(batch, sizeof(batch), "%s/batch.jsonl", dir);
	h_write_batch(batch, 8, "gpt-4o-mini", 10);
	subdir(sub, sizeof(sub), dir, "a");
	h_daemon_start(&a, sub, &m, url, H_FAST, "OPENAI_MAX_CONCURRENCY=4",
	               "LLMQ_REQUEST_TIMEOUT_SECONDS=3", "LLMQ_CONNECT_TIMEOUT_SECONDS=1", NULL);
	subdir(sub, sizeof(sub), dir, "b");
	h_daemon_start(&b, sub, &m, url, H_FAST, "OPENAI_MAX_CONCURRENCY=4",
	               "LLMQ_REQUEST_TIMEOUT_SECONDS=3", "LLMQ_CONNECT_TIMEOUT_SECONDS=1", NULL);
	cr_assert(wait_mode(&a, "shared", 5000) && wait_mode(&b, "shared", 5000));
	h_submit(&a, batch, id, sizeof(id));
	for (tries = 0; tries < 100 && mock_stat(&m, "in_flight") < 4; tries++)
		msleep(20);
	cr_assert_eq(mock_stat(&m, "in_flight"), 4, "host a did not take the 4 slots");
	kill(a.pid, SIGKILL);
	cr_assert_eq(waitpid(a.pid, NULL, 0), a.pid);
	a.pid = 0;
	killed = wall_ms();
	h_submit(&b, batch, id, sizeof(id));
	o = h_wait_for(&b, id, h_batch_completed, 60);
	cr_assert_eq(h_jint(o, "counts.succeeded"), 8);
	json_object_put(o);
	first = h_sql_int(&b, "SELECT min(started_at) FROM attempts");
	/* a's leases were granted just before the kill: due 6 s later at the most. */
	cr_assert_leq(first - killed, 6000 + 1500, "b waited %lld ms for the slots",
	              (long long)(first - killed));
	cr_assert_geq(first - killed, 2500, "b launched while a's leases still held the slots");
	cr_assert_leq(mock_stat(&m, "max_in_flight"), 4);
	h_daemon_signal(&b, SIGTERM);
	h_mock_stop(&m);
	h_redis_stop(&r);
}

/*
 * Redis stopped for 20 s in the middle of three hosts' batches, then
 * started again, empty: the hosts gate alone meanwhile (1/3 of the key
 * each), share again after, and no job fails.
 */
Test(fleet_e2e, redis_away_for_20s_costs_no_job, .timeout = 180)
{
	struct daemon_proc d[3];
	struct redis_proc r;
	struct mock_proc m;
	char dir[256], sub[300], batch[320], url[400], id[3][64], mode[32], redis[16], name[4];
	static char text[1 << 16];
	json_object *b;
	int64_t before;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	h_mock_start(&m, dir, "--rpm", "300", "--window-ms", "1000", "--latency-ms", "200", NULL);
	snprintf(url, sizeof(url), "LLMQ_REDIS_URL=%s", r.url);
	snprintf(batch, sizeof(batch), "%s/batch.jsonl", dir);
	h_write_batch(batch, 60, "gpt-4o-mini", 10);
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "%c", 'a' + i);
		subdir(sub, sizeof(sub), dir, name);
		h_daemon_start(&d[i], sub, &m, url, H_FAST, "OPENAI_RPM_LIMIT=300",
		               "OPENAI_MAX_CONCURRENCY=6", NULL);
	}
	for (i = 0; i < 3; i++)
		cr_assert(wait_mode(&d[i], "shared", 5000), "host %d does not share its gate", i);
	for (i = 0; i < 3; i++)
		h_submit(&d[i], batch, id[i], sizeof(id[i]));
	msleep(4000);
	h_redis_stop(&r);
	cr_assert(wait_mode(&d[0], "alone", 3000), "host a did not fall back");
	fleet_state(&d[0], mode, sizeof(mode), redis, sizeof(redis));
	cr_assert_str_eq(redis, "down");
	/* Gating alone, a host still sends (503 only if a 429 paused it just now). */
	http_get(&d[0], "/readyz", text);
	cr_assert(strstr(text, "\"fleet\"") && strstr(text, "\"down\"") &&
	              strstr(text, "\"alone\""),
	          "%s", text);
	before = h_sql_int(&d[1], "SELECT count(*) FROM jobs WHERE state = 'succeeded'");
	msleep(20000);
	cr_assert_gt(h_sql_int(&d[1], "SELECT count(*) FROM jobs WHERE state = 'succeeded'"),
	             before, "nothing went while Redis was away");
	h_redis_start(&r, dir, NULL); /* empty: the hosts hand their launches over */
	for (i = 0; i < 3; i++)
		cr_assert(wait_mode(&d[i], "shared", 10000), "host %d does not share again", i);
	for (i = 0; i < 3; i++) {
		b = h_wait_for(&d[i], id[i], h_batch_completed, 90);
		cr_assert_eq(h_jint(b, "counts.succeeded"), 60, "host %d", i);
		cr_assert_eq(h_jint(b, "counts.failed"), 0, "host %d", i);
		json_object_put(b);
	}
	cr_assert_eq(http_get(&d[0], "/metrics", text), 200);
	cr_assert(strstr(text, "llmq_fleet_redis_up 1"), "%s", text);
	cr_assert(strstr(text, "llmq_fleet_fallbacks_total 1"), "%s", text);
	cr_assert(strstr(text, "llmq_fleet_hosts{lane=\"openai\",share=\"openai\"} 3"), "%s", text);
	cr_assert(strstr(text, "llmq_fleet_grant_seconds_count"), "%s", text);
	cr_assert(strstr(h_read_file(d[0].log, text, sizeof(text)), "gates alone"));
	cr_assert(strstr(text, "answers again"), "the way back is logged");
	for (i = 0; i < 3; i++)
		h_daemon_signal(&d[i], SIGTERM);
	h_mock_stop(&m);
	h_redis_stop(&r);
}

/* A batch of 5 on a host whose Redis will not do, and the loop answering meanwhile. */
static void gates_alone_and_answers(const struct daemon_proc *d, const char *dir)
{
	char batch[320], id[64];
	json_object *b;
	int64_t t0;
	int i;

	cr_assert(wait_mode(d, "alone", 3000), "the lane does not gate alone");
	snprintf(batch, sizeof(batch), "%s/batch.jsonl", dir);
	h_write_batch(batch, 5, "gpt-4o-mini", 10);
	h_submit(d, batch, id, sizeof(id));
	b = h_wait_for(d, id, h_batch_completed, 30);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 5);
	json_object_put(b);
	/* It keeps trying to connect, backing off; the loop never waits on it. */
	for (i = 0; i < 20; i++) {
		t0 = mono_ms();
		cr_assert_eq(h_llmq(d, NULL, 0, NULL, 0, "ping", NULL), 0);
		cr_assert_lt(mono_ms() - t0, 500, "a ping took %lld ms",
		             (long long)(mono_ms() - t0));
		msleep(50);
	}
}

Test(fleet_e2e, a_wrong_password_is_said_never_shown_and_the_host_gates_alone, .timeout = 60)
{
	struct daemon_proc d;
	struct redis_proc r;
	struct mock_proc m;
	char dir[256], url[400], pw[320], env_pw[400];
	static char text[1 << 16];
	json_object *o, *f;
	int fd;

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, "the-right-one");
	h_mock_start(&m, dir, NULL);
	snprintf(pw, sizeof(pw), "%s/redis.pass", dir);
	fd = open(pw, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "hunter2-wrong\n", 14), 14);
	close(fd);
	snprintf(url, sizeof(url), "LLMQ_REDIS_URL=%s", r.url);
	snprintf(env_pw, sizeof(env_pw), "LLMQ_REDIS_PASSWORD_FILE=%s", pw);
	h_daemon_start(&d, dir, &m, url, env_pw, H_FAST, NULL);
	gates_alone_and_answers(&d, dir);
	o = status(&d);
	cr_assert(json_object_object_get_ex(o, "fleet", &f));
	cr_assert_str_eq(h_jstr(f, "redis"), "down");
	cr_assert(strstr(h_jstr(f, "error"), "refused the password") &&
	              strstr(h_jstr(f, "error"), "redis_password_file"),
	          "%s", h_jstr(f, "error"));
	json_object_put(o);
	cr_assert(strstr(h_read_file(d.log, text, sizeof(text)), "refused the password"));
	cr_assert_null(strstr(text, "hunter2"), "the password is in the log");
	cr_assert_eq(h_llmq(&d, text, sizeof(text), NULL, 0, "status", "--json", NULL), 0);
	cr_assert_null(strstr(text, "hunter2"), "the password is in status");
	cr_assert_eq(http_get(&d, "/metrics", text), 200);
	cr_assert_null(strstr(text, "hunter2"), "the password is in the metrics");
	cr_assert(strstr(text, "llmq_fleet_redis_up 0"), "%s", text);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
	h_redis_stop(&r);
}

Test(fleet_e2e, a_redis_that_never_answers_is_said_and_nothing_hangs, .timeout = 60)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct daemon_proc d;
	struct mock_proc m;
	char dir[256], url[400];
	json_object *o, *f;
	int fd;

	h_tmpdir(dir, sizeof(dir));
	/* It accepts (the backlog) and never says a word. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.80s/silent.sock", dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 64), 0);
	h_mock_start(&m, dir, NULL);
	snprintf(url, sizeof(url), "LLMQ_REDIS_URL=unix://%s", sa.sun_path);
	h_daemon_start(&d, dir, &m, url, H_FAST, NULL);
	gates_alone_and_answers(&d, dir);
	o = status(&d);
	cr_assert(json_object_object_get_ex(o, "fleet", &f));
	cr_assert_str_eq(h_jstr(f, "redis"), "down");
	cr_assert(strstr(h_jstr(f, "error"), "no answer within 100ms"), "%s", h_jstr(f, "error"));
	json_object_put(o);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
	close(fd);
}

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
	return sz * n;
}

/* A chat call through d's HTTP face; its status. */
static long http_call(const struct daemon_proc *d)
{
	static const char body[] = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,"
	                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	CURL *c = curl_easy_init();
	char url[128];
	long code = 0;

	cr_assert_not_null(c);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", d->http_port);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	return code;
}

/* The shortest time between two arrivals at the mock, from its log. */
static int64_t min_gap_ms(const char *log)
{
	char line[256], what[16];
	long long t, n, x, y, prev = -1, gap = INT64_MAX;
	FILE *f = fopen(log, "r");

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lld %15s %lld %lld %lld", &t, what, &n, &x, &y) != 5 ||
		    strcmp(what, "arrive") != 0)
			continue;
		if (prev >= 0 && t - prev < gap)
			gap = t - prev;
		prev = t;
	}
	fclose(f);
	return gap;
}

/*
 * Interactive calls go first fleet-wide: host b drains a batch on a lane
 * that can launch about once a second; a call on host a is not queued
 * behind b's batch but takes the next launch. Every call waits at the gate
 * less than one launch's interval; b's batch gets the rest.
 */
Test(fleet_e2e, a_call_on_one_host_goes_ahead_of_another_hosts_batch, .timeout = 120)
{
	struct daemon_proc a, b;
	struct redis_proc r;
	struct mock_proc m;
	char dir[256], sub[300], batch[320], url[400], id[64];
	int64_t worst, closest;
	json_object *o;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	h_mock_start(&m, dir, "--latency-ms", "100", NULL);
	snprintf(url, sizeof(url), "LLMQ_REDIS_URL=%s", r.url);
	snprintf(batch, sizeof(batch), "%s/batch.jsonl", dir);
	h_write_batch(batch, 12, "gpt-4o-mini", 10);
	subdir(sub, sizeof(sub), dir, "a");
	h_daemon_start(&a, sub, &m, url, H_FAST, "OPENAI_RPM_LIMIT=60", "OPENAI_TPM_HEADROOM=0",
	               NULL);
	subdir(sub, sizeof(sub), dir, "b");
	h_daemon_start(&b, sub, &m, url, H_FAST, "OPENAI_RPM_LIMIT=60", "OPENAI_TPM_HEADROOM=0",
	               NULL);
	cr_assert(wait_mode(&a, "shared", 5000) && wait_mode(&b, "shared", 5000));
	h_submit(&b, batch, id, sizeof(id));
	msleep(2500); /* b's batch holds the key's one launch a second */
	for (i = 0; i < 3; i++) {
		cr_assert_eq(http_call(&a), 200);
		msleep(300);
	}
	/* Alone, each call would have waited for a's own gate only; shared, for
	 * the key's next launch at the most: not behind b's whole batch. */
	worst = h_sql_int(&a, "SELECT max(gate_wait_ms) FROM calls WHERE outcome = 'succeeded'");
	cr_assert_eq(h_sql_int(&a, "SELECT count(*) FROM calls WHERE outcome = 'succeeded'"), 3);
	cr_assert_lt(worst, 1100, "a call waited %lld ms at the gate", (long long)worst);
	o = h_wait_for(&b, id, h_batch_completed, 60);
	cr_assert_eq(h_jint(o, "counts.succeeded"), 12);
	json_object_put(o);
	cr_assert_eq(mock_stat(&m, "ok"), 15);
	/* And the key's pace held across both: a launch a second (a bucket of
	 * one request, and the refill a loop turn late at the most). */
	closest = min_gap_ms(m.log);
	cr_assert_geq(closest, 750, "two launches %lld ms apart on a key of one a second",
	              (long long)closest);
	h_daemon_signal(&a, SIGTERM);
	h_daemon_signal(&b, SIGTERM);
	h_mock_stop(&m);
	h_redis_stop(&r);
}

static int log_says(const struct daemon_proc *d, const char *what)
{
	static char text[1 << 16];

	return strstr(h_read_file(d->log, text, sizeof(text)), what) != NULL;
}

/* A lane's share names its keys in Redis: a reload does not move it (a restart does). */
Test(fleet_e2e, a_reload_keeps_a_lanes_share, .timeout = 60)
{
	struct daemon_proc d;
	struct mock_proc m;
	char dir[256], conf[320], env[340], text[512];
	json_object *o, *lanes, *f;
	FILE *cf;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	cf = fopen(conf, "w");
	cr_assert_not_null(cf);
	fprintf(cf,
	        "[fleet]\nredis_url = unix://%s/none.sock\n[lane a]\nbase_url = "
	        "http://127.0.0.1:%d/v1\nshare = org-key\n",
	        dir, m.port);
	fclose(cf);
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	h_daemon_start(&d, dir, &m, env, NULL);
	cf = fopen(conf, "w");
	cr_assert_not_null(cf);
	fprintf(cf,
	        "[fleet]\nredis_url = unix://%s/none.sock\n[lane a]\nbase_url = "
	        "http://127.0.0.1:%d/v1\nshare = other-key\n",
	        dir, m.port);
	fclose(cf);
	h_daemon_signal_only(&d, SIGHUP);
	for (i = 0; i < 100 && !log_says(&d, "needs a restart"); i++)
		msleep(50);
	cr_assert(log_says(&d, "lane a's share became other-key; moving a lane to another share "
	                       "needs a restart"));
	o = status(&d);
	cr_assert(json_object_object_get_ex(o, "lanes", &lanes));
	cr_assert(json_object_object_get_ex(json_object_array_get_idx(lanes, 0), "fleet", &f));
	snprintf(text, sizeof(text), "%s", h_jstr(f, "share"));
	cr_assert_str_eq(text, "org-key");
	json_object_put(o);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* Limits set live (llmq set) are what a host sends the shared gate. */
Test(fleet_e2e, limits_set_live_reach_the_shared_gate, .timeout = 120)
{
	struct daemon_proc d[2];
	struct redis_proc r;
	struct mock_proc m;
	char dir[256], sub[300], batch[320], url[400], id[2][64], name[4], out[4096];
	json_object *b;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	h_mock_start(&m, dir, "--latency-ms", "300", NULL);
	snprintf(url, sizeof(url), "LLMQ_REDIS_URL=%s", r.url);
	snprintf(batch, sizeof(batch), "%s/batch.jsonl", dir);
	h_write_batch(batch, 20, "gpt-4o-mini", 10);
	for (i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "%c", 'a' + i);
		subdir(sub, sizeof(sub), dir, name);
		h_daemon_start(&d[i], sub, &m, url, H_FAST, "OPENAI_MAX_CONCURRENCY=8", NULL);
		cr_assert(wait_mode(&d[i], "shared", 5000));
		cr_assert_eq(h_llmq(&d[i], out, sizeof(out), NULL, 0, "set", "openai",
		                    "max_concurrency=2", NULL),
		             0, "%s", out);
	}
	for (i = 0; i < 2; i++)
		h_submit(&d[i], batch, id[i], sizeof(id[i]));
	for (i = 0; i < 2; i++) {
		b = h_wait_for(&d[i], id[i], h_batch_completed, 60);
		cr_assert_eq(h_jint(b, "counts.succeeded"), 20);
		json_object_put(b);
	}
	cr_assert_eq(mock_stat(&m, "max_in_flight"), 2, "the key's 2 slots, set live: %lld",
	             (long long)mock_stat(&m, "max_in_flight"));
	for (i = 0; i < 2; i++)
		h_daemon_signal(&d[i], SIGTERM);
	h_mock_stop(&m);
	h_redis_stop(&r);
}

static int five_done(json_object *b)
{
	return h_jint(b, "counts.succeeded") == 5;
}

/*
 * Budgets are a host's (its users'), and its lanes' launches through the
 * shared gate hold and settle them as alone: grants of four launches at a
 * time run no job past the budget, nothing stays held, and a call over it
 * is refused.
 */
Test(fleet_e2e, the_shared_gates_launches_keep_a_users_budget, .timeout = 120)
{
	struct daemon_proc d;
	struct redis_proc r;
	struct mock_proc m;
	char dir[256], conf[320], env[340], url[400], batch[320], id[64], body[65536];
	json_object *o, *b, *arr;
	FILE *cf;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	h_mock_start(&m, dir, "--latency-ms", "50", NULL);
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	cf = fopen(conf, "w");
	cr_assert_not_null(cf);
	/* Each line costs 13 tokens (h_write_batch, max_tokens 10): five fit 65. */
	fprintf(cf,
	        "[lane a]\nbase_url = http://127.0.0.1:%d/v1\nstagger_seconds = 0\n"
	        "tpm_limit = 0\nmax_concurrency = 4\n\n[user root]\ndaily_tokens = 65\n",
	        m.port);
	fclose(cf);
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	snprintf(url, sizeof(url), "LLMQ_REDIS_URL=%s", r.url);
	h_daemon_start(&d, dir, &m, env, url, NULL);
	cr_assert(wait_mode(&d, "shared", 5000), "the lane does not share its gate");
	snprintf(batch, sizeof(batch), "%s/batch.jsonl", dir);
	h_write_batch(batch, 8, "gpt-4o-mini", 10);
	h_submit(&d, batch, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, five_done, 30));
	msleep(500); /* what a grant of more would have launched by now */
	o = status(&d);
	cr_assert(json_object_object_get_ex(o, "budgets", &arr));
	b = json_object_array_get_idx(arr, 0);
	cr_assert_eq(h_jint(b, "daily_tokens.used"), 65, "%s", json_object_to_json_string(o));
	cr_assert_eq(h_jint(b, "daily_tokens.held"), 0, "%s", json_object_to_json_string(o));
	json_object_put(o);
	cr_assert_eq(mock_stat(&m, "ok"), 5, "no job past the budget went upstream");
	for (i = 0;
	     i < 100 && h_sql_int(&d, "SELECT coalesce(sum(tokens), 0) FROM usage_daily") != 65;
	     i++)
		msleep(50);
	cr_assert_eq(h_sql_int(&d, "SELECT coalesce(sum(tokens), 0) FROM usage_daily"), 65);
	b = h_wait_for(&d, id, five_done, 1);
	cr_assert_eq(h_jint(b, "counts.queued"), 3, "the rest wait, queued");
	cr_assert_str_eq(h_jstr(json_object_object_get(b, "waiting"), "reason"), "budget");
	json_object_put(b);
	body[0] = '\0';
	{
		CURL *c = curl_easy_init();
		struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
		char u[128];
		long code = 0;

		snprintf(u, sizeof(u), "http://127.0.0.1:%d/v1/chat/completions", d.http_port);
		curl_easy_setopt(c, CURLOPT_URL, u);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(
		    c, CURLOPT_POSTFIELDS,
		    "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[{\"role\":"
		    "\"user\",\"content\":\"hi\"}]}");
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
		cr_assert_eq(curl_easy_perform(c), CURLE_OK);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		curl_slist_free_all(h);
		curl_easy_cleanup(c);
		cr_assert_eq(code, 429, "%s", body);
		cr_assert(strstr(body, "budget_exceeded"), "%s", body);
	}
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
	h_redis_stop(&r);
}
