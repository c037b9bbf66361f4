/*
 * test_fleet.c - the fleet's shared gate: where its Redis is (URL parsing);
 * the connection to a real redis-server (connect, a wrong password, a Redis
 * that never answers, reconnecting); and the Lua library run against gate.c,
 * case by case, in a real redis-server.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "fleet.h"
#include "harness.h"
#include "timeutil.h"

struct url_case {
	const char *url;
	int ok;
	int is_unix;
	const char *where; /* path or host */
	int port, db;
	const char *user, *password;
	const char *shown; /* fleet_url_show(), or the error's words */
};

Test(fleet_url, parsed_by_libcurl_and_shown_without_credentials)
{
	static const struct url_case cases[] = {
	    {"redis://127.0.0.1:6379/0", 1, 0, "127.0.0.1", 6379, 0, "", "",
	     "redis://127.0.0.1:6379/0"},
	    {"redis://cache.internal", 1, 0, "cache.internal", 6379, 0, "", "",
	     "redis://cache.internal:6379/0"},
	    {"redis://:p%40ss@10.0.0.1:7000/3", 1, 0, "10.0.0.1", 7000, 3, "", "p@ss",
	     "redis://10.0.0.1:7000/3"},
	    {"redis://llmq:pw@[::1]:6380/", 1, 0, "::1", 6380, 0, "llmq", "pw",
	     "redis://[::1]:6380/0"},
	    {"unix:///run/redis/redis.sock", 1, 1, "/run/redis/redis.sock", 0, 0, "", "",
	     "unix:///run/redis/redis.sock"},
	    {"unix:///tmp/my%20redis.sock?db=5", 1, 1, "/tmp/my redis.sock", 0, 5, "", "",
	     "unix:///tmp/my redis.sock?db=5"},
	    {"redis://host:6379/db1", 0, 0, NULL, 0, 0, NULL, NULL, "database's number"},
	    {"redis://host/99999", 0, 0, NULL, 0, 0, NULL, NULL, "database's number"},
	    {"redis://host/0?x=1", 0, 0, NULL, 0, 0, NULL, NULL, "no query"},
	    {"unix:///run/r.sock?database=1", 0, 0, NULL, 0, 0, NULL, NULL, "?db=N"},
	    {"unix://u:pw@/run/r.sock", 0, 0, NULL, 0, 0, NULL, NULL, "redis_password_file"},
	    {"unix:///", 0, 0, NULL, 0, 0, NULL, NULL, "no socket path"},
	    {"rediss://host:6380", 0, 0, NULL, 0, 0, NULL, NULL, "stunnel"},
	    {"http://host:6379", 0, 0, NULL, 0, 0, NULL, NULL, "redis:// or unix://"},
	    {"127.0.0.1:6379", 0, 0, NULL, 0, 0, NULL, NULL, "not a URL"},
	};
	struct fleet_addr a;
	char why[512], shown[512];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct url_case *c = &cases[i];
		int r = fleet_url_parse(c->url, &a, why, sizeof(why));

		if (!c->ok) {
			cr_assert_eq(r, -EINVAL, "%s was taken", c->url);
			cr_assert(strstr(why, c->shown), "%s: %s", c->url, why);
			continue;
		}
		cr_assert_eq(r, 0, "%s: %s", c->url, why);
		cr_assert_eq(a.is_unix, c->is_unix, "%s", c->url);
		cr_assert_str_eq(c->is_unix ? a.path : a.host, c->where, "%s", c->url);
		if (!c->is_unix)
			cr_assert_eq(a.port, c->port, "%s", c->url);
		cr_assert_eq(a.db, c->db, "%s", c->url);
		cr_assert_str_eq(a.user, c->user, "%s", c->url);
		cr_assert_str_eq(a.password, c->password, "%s", c->url);
		cr_assert_str_eq(fleet_url_show(&a, shown, sizeof(shown)), c->shown, "%s", c->url);
	}
}

Test(fleet_url, the_password_from_a_file_or_a_credential)
{
	char dir[] = "/tmp/llmq-test-fleet-XXXXXX", path[300], cmd[400], *pw = NULL;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/redis-password", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("s3cret\n", f);
	fclose(f);
	cr_assert_eq(fleet_read_password(path, &pw), 0);
	cr_assert_str_eq(pw, "s3cret", "the first line, without its end");
	free(pw);
	unsetenv("CREDENTIALS_DIRECTORY");
	cr_assert_eq(fleet_read_password("redis-password", &pw), -ENOKEY,
	             "a bare name is a credential: none without $CREDENTIALS_DIRECTORY");
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	cr_assert_eq(fleet_read_password("redis-password", &pw), 0);
	cr_assert_str_eq(pw, "s3cret");
	free(pw);
	cr_assert_eq(fleet_read_password("", &pw), 0);
	cr_assert_null(pw, "no file, no password");
	f = fopen(path, "w");
	fclose(f);
	cr_assert_eq(fleet_read_password(path, &pw), -ENODATA, "an empty file is an error");
	cr_assert_eq(fleet_read_password("/nonexistent/pw", &pw), -ENOENT);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

/* The connection, against a real redis-server on a Unix socket. */

struct loop {
	struct event_base *base;
	int own_base;
	struct fleet *f;
	int ups, downs;        /* fleet_state_fn calls */
	int answers, failures; /* fleet_call answers */
	char err[512];         /* the last failure's words */
	int64_t worst_late_ms; /* of a 10 ms tick: whether anything blocked the loop */
	int64_t tick_due;
	struct event *tick;
};

static void on_state(void *ud, int up)
{
	struct loop *l = ud;

	if (up)
		l->ups++;
	else
		l->downs++;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;
	struct timeval tv = {0, 10000};
	int64_t now = time_mono_ms();

	if (l->tick_due && now - l->tick_due > l->worst_late_ms)
		l->worst_late_ms = now - l->tick_due;
	l->tick_due = now + 10;
	evtimer_add(l->tick, &tv);
}

static void on_answer(void *ud, struct redisReply *r, const char *err)
{
	struct loop *l = ud;

	if (r && r->type != REDIS_REPLY_ERROR) {
		l->answers++;
		return;
	}
	l->failures++;
	snprintf(l->err, sizeof(l->err), "%s", r ? r->str : err);
}

/* Turn the loop until pred holds or ms pass; whether it held. */
static int run_until(struct loop *l, int (*pred)(struct loop *), int64_t ms)
{
	int64_t end = time_mono_ms() + ms;

	while (!pred(l) && time_mono_ms() < end)
		event_base_loop(l->base, EVLOOP_ONCE);
	return pred(l);
}

static const char *error_of(struct loop *l)
{
	static struct fleet_stats st;

	fleet_stats(l->f, &st);
	return st.error;
}

static int is_up(struct loop *l)
{
	return fleet_up(l->f);
}

/* Down, and it has said why. */
static int is_down(struct loop *l)
{
	return !fleet_up(l->f) && error_of(l)[0];
}

/* A fleet on base (NULL: a loop of its own) with one share. */
static void loop_open_on(struct loop *l, struct event_base *base, const char *url,
                         const char *password_file, const char *share)
{
	struct fleet_config cfg = {.redis_timeout_ms = 100};
	const char *shares[] = {share};
	char err[512];

	/* hiredis writes with write(2): llmqd ignores SIGPIPE, and so does the test. */
	signal(SIGPIPE, SIG_IGN);
	memset(l, 0, sizeof(*l));
	l->own_base = !base;
	l->base = base ? base : event_base_new();
	cr_assert_not_null(l->base);
	snprintf(cfg.redis_url, sizeof(cfg.redis_url), "%s", url);
	snprintf(cfg.redis_password_file, sizeof(cfg.redis_password_file), "%s",
	         password_file ? password_file : "");
	cr_assert_eq(fleet_new(l->base, &cfg, shares, 1, &l->f, err, sizeof(err)), 0, "%s", err);
	l->tick = evtimer_new(l->base, on_tick, l);
	on_tick(-1, 0, l);
	fleet_start(l->f, on_state, l);
}

static void loop_open(struct loop *l, const char *url, const char *password_file, const char *share)
{
	loop_open_on(l, NULL, url, password_file, share);
}

static void loop_close(struct loop *l)
{
	fleet_free(l->f);
	event_free(l->tick);
	if (l->own_base)
		event_base_free(l->base);
}

/* A beat through fleet_call, as any other function: counts an answer. */
static int call_beat(struct loop *l)
{
	const char *argv[] = {"1", "llmq:{test}:hosts", "", "probe", "3500", "test"};

	return fleet_call(l->f, FLEET_FN_BEAT, 6, argv, NULL, on_answer, l);
}

static void write_secret(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static int answered(struct loop *l)
{
	return l->answers + l->failures > 0;
}

static int two_hosts(struct loop *l)
{
	return fleet_hosts(l->f, "shared") == 2;
}

static int one_host(struct loop *l)
{
	return fleet_hosts(l->f, "shared") == 1;
}

Test(fleet, connects_loads_its_library_and_counts_the_hosts, .timeout = 30)
{
	struct redis_proc r;
	struct loop a, b;
	char dir[256];

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	/* Two hosts on one loop, so that both beat while the test waits. */
	loop_open(&a, r.url, NULL, "shared");
	loop_open_on(&b, a.base, r.url, NULL, "shared");
	cr_assert(run_until(&a, is_up, 2000), "not up: %s", error_of(&a));
	cr_assert(run_until(&b, is_up, 2000), "not up: %s", error_of(&b));
	cr_assert_eq(a.ups, 1);
	cr_assert_str_neq(fleet_host_id(a.f), fleet_host_id(b.f), "each host has its own id");
	/* Each counts both, by the other's heartbeat. */
	cr_assert(run_until(&a, two_hosts, 3000) && run_until(&b, two_hosts, 3000),
	          "hosts: %d and %d", fleet_hosts(a.f, "shared"), fleet_hosts(b.f, "shared"));
	cr_assert_eq(call_beat(&a), 0);
	cr_assert(run_until(&a, answered, 1000));
	cr_assert_eq(a.answers, 1, "%s", a.err);
	/* A host that stops beating is no longer counted once its TTL runs out. */
	loop_close(&b);
	cr_assert(run_until(&a, one_host, FLEET_HOST_TTL_MS + 2500), "hosts: %d",
	          fleet_hosts(a.f, "shared"));
	cr_assert_lt(a.worst_late_ms, 50, "the loop was held up %lld ms",
	             (long long)a.worst_late_ms);
	loop_close(&a);
	h_redis_stop(&r);
}

/* A wrong password, or none where one is wanted: said so, never up, never shown. */
Test(fleet, a_wrong_or_missing_password_is_said_and_never_shown, .timeout = 30)
{
	struct redis_proc r;
	struct loop l;
	char dir[256], pw[300], url[400];

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, "right-horse-battery");
	snprintf(pw, sizeof(pw), "%s/pw", dir);
	write_secret(pw, "wrong-staple\n");
	loop_open(&l, r.url, pw, "s");
	cr_assert(run_until(&l, is_down, 2000));
	cr_assert(strstr(error_of(&l), "refused the password") &&
	              strstr(error_of(&l), "redis_password_file"),
	          "%s", error_of(&l));
	cr_assert_null(strstr(error_of(&l), "wrong-staple"), "%s", error_of(&l));
	cr_assert_eq(call_beat(&l), -ENOTCONN, "nothing is sent while down");
	cr_assert_eq(l.ups, 0);
	loop_close(&l);

	loop_open(&l, r.url, NULL, "s");
	cr_assert(run_until(&l, is_down, 2000));
	cr_assert(strstr(error_of(&l), "wants a password"), "%s", error_of(&l));
	loop_close(&l);

	/* The right one, in the URL's place for a TCP Redis: a file here. */
	write_secret(pw, "right-horse-battery\n");
	loop_open(&l, r.url, pw, "s");
	cr_assert(run_until(&l, is_up, 2000), "%s", error_of(&l));
	loop_close(&l);
	snprintf(url, sizeof(url), "%s?db=3", r.url);
	loop_open(&l, url, pw, "s");
	cr_assert(run_until(&l, is_up, 2000), "SELECT 3: %s", error_of(&l));
	loop_close(&l);
	h_redis_stop(&r);
}

/* A socket that accepts and never answers: down after redis_timeout, the loop never held. */
Test(fleet, a_redis_that_never_answers_times_out_without_holding_the_loop, .timeout = 30)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[256], url[400];
	struct loop l;
	int64_t t0;
	int fd;

	h_tmpdir(dir, sizeof(dir));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.80s/silent.sock", dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 16), 0); /* connections wait in the backlog, unanswered */
	snprintf(url, sizeof(url), "unix://%s", sa.sun_path);
	t0 = time_mono_ms();
	loop_open(&l, url, NULL, "s");
	cr_assert(run_until(&l, is_down, 2000));
	cr_assert_lt(time_mono_ms() - t0, 500, "down after the 100 ms timeout, not later");
	cr_assert(strstr(error_of(&l), "no answer within 100ms"), "%s", error_of(&l));
	/* It keeps trying, backing off, and the loop keeps its time meanwhile. */
	run_until(&l, is_up, 1500);
	cr_assert_eq(l.ups, 0);
	cr_assert_lt(l.worst_late_ms, 50, "the loop was held up %lld ms",
	             (long long)l.worst_late_ms);
	loop_close(&l);
	close(fd);

	/* Nothing listens there at all. */
	unlink(sa.sun_path);
	loop_open(&l, url, NULL, "s");
	cr_assert(run_until(&l, is_down, 2000));
	cr_assert(strstr(error_of(&l), "cannot connect to Redis at unix://") &&
	              strstr(error_of(&l), "No such file"),
	          "%s", error_of(&l));
	loop_close(&l);
}

static int went_down(struct loop *l)
{
	return l->downs > 0;
}

static int back_up(struct loop *l)
{
	return l->ups >= 2;
}

/* Redis stopped: down, calls refused at once; started again: back, with the library. */
Test(fleet, reconnects_when_redis_comes_back, .timeout = 30)
{
	struct redis_proc r;
	struct loop l;
	char dir[256];

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	loop_open(&l, r.url, NULL, "s");
	cr_assert(run_until(&l, is_up, 2000), "%s", error_of(&l));
	h_redis_stop(&r);
	cr_assert(run_until(&l, went_down, 3000), "the drop was not noticed");
	cr_assert(strstr(error_of(&l), "closed the connection") ||
	              strstr(error_of(&l), "cannot connect"),
	          "%s", error_of(&l));
	cr_assert_eq(call_beat(&l), -ENOTCONN);
	run_until(&l, back_up, 1000); /* a few tries against nothing */
	h_redis_start(&r, dir, NULL); /* empty: the library must be loaded again */
	cr_assert(run_until(&l, back_up, FLEET_BACKOFF_MAX_MS + 2000), "not back: %s",
	          error_of(&l));
	cr_assert_eq(call_beat(&l), 0);
	cr_assert(run_until(&l, answered, 1000));
	cr_assert_eq(l.answers, 1, "%s", l.err);
	loop_close(&l);
	h_redis_stop(&r);
}

/* A Redis that stops answering while up: the call fails after redis_timeout, not later. */
Test(fleet, a_call_redis_does_not_answer_in_time_fails_and_drops, .timeout = 30)
{
	struct redis_proc r;
	struct loop l;
	char dir[256];
	int64_t t0;

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	loop_open(&l, r.url, NULL, "s");
	cr_assert(run_until(&l, is_up, 2000), "%s", error_of(&l));
	kill(r.pid, SIGSTOP);
	t0 = time_mono_ms();
	cr_assert_eq(call_beat(&l), 0);
	cr_assert(run_until(&l, answered, 2000));
	cr_assert_eq(l.failures, 1);
	cr_assert_lt(time_mono_ms() - t0, 400, "failed after the 100 ms timeout");
	cr_assert(strstr(l.err, "did not answer within 100ms"), "%s", l.err);
	cr_assert(!fleet_up(l.f) && l.downs == 1);
	kill(r.pid, SIGCONT);
	cr_assert(run_until(&l, back_up, FLEET_BACKOFF_MAX_MS + 2000), "%s", error_of(&l));
	cr_assert_lt(l.worst_late_ms, 50, "the loop was held up %lld ms",
	             (long long)l.worst_late_ms);
	loop_close(&l);
	h_redis_stop(&r);
}

/* FUNCTION FLUSH under a live connection: the next call loads it again and goes on. */
Test(fleet, a_lost_library_is_loaded_again, .timeout = 30)
{
	struct redis_proc r;
	redisContext *c;
	redisReply *rep;
	struct loop l;
	char dir[256];

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	loop_open(&l, r.url, NULL, "s");
	cr_assert(run_until(&l, is_up, 2000), "%s", error_of(&l));
	c = redisConnectUnix(r.sock);
	cr_assert(c && !c->err);
	rep = redisCommand(c, "FUNCTION FLUSH");
	cr_assert(rep && rep->type == REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	redisFree(c);
	cr_assert_eq(call_beat(&l), 0);
	cr_assert(run_until(&l, answered, 1000));
	cr_assert_eq(l.answers, 1, "%s", l.err);
	cr_assert_eq(l.downs, 0, "it stayed up");
	loop_close(&l);
	h_redis_stop(&r);
}
