/*
 * test_fleet.c - the fleet's shared gate: where its Redis is (URL parsing);
 * the connection to a real redis-server (connect, a wrong password, a Redis
 * that never answers, reconnecting); and the Lua library run against gate.c,
 * case by case, in a real redis-server.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
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

#include "fleet/fleet.h"
#include "gate/gate.h"
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

/*
 * The shared gate's table: each case is a run of steps (grants, answers,
 * a host's reconciling, new limits) at given times, done by gate.c on a
 * struct gate and by the library in a real redis-server, the time given to
 * both. After every step the decisions and the whole state must agree.
 */

enum step_op { GRANT, SETTLE, RECONCILE, END };

#define FB_NONE                                                                                    \
	{                                                                                          \
		-1, -1, -1, -1, -1, -1                                                             \
	}

struct step {
	enum step_op op;
	int64_t at; /* ms into the case */
	int cls;
	int64_t cost;
	int n;
	double jitter;
	uint64_t claim;
	const char *host; /* NULL: "a" */
	/* SETTLE: the lease (its number in grant order, from 0); the answer */
	int lease;
	int also; /* a second lease's number + 1, its answer the same, in the same call */
	int64_t used;
	int succeeded, resends;
	struct gate_feedback fb;
	int event;
	int64_t pause_ms;
	int learn;
	int64_t retry_after;
	/* RECONCILE: the leases the host has in flight (numbers, -1 ends), and new ones */
	int live[4];
	int adopt; /* new launches made while away, each of cost */
	/* GRANT: what gate.c must decide, when check (both must agree anyway) */
	int check, want_granted, want_why;
};

struct table_case {
	const char *what;
	struct gate_limits lim;
	int64_t deadline_ms;
	struct step steps[24];
};

#define LIM(c_, s_, t_, r_, h_, b_, i_, w_, p_)                                                    \
	{                                                                                          \
		.max_concurrency = (c_), .stagger_ms = (s_), .tpm = (t_), .rpm = (r_),             \
		.headroom = (h_), .burst_ms = (b_), .interactive_reserve = (i_),                   \
		.provider_window = (w_), .probation_ms = (p_)                                      \
	}
#define G(t_, c_, k_, n_)                                                                          \
	{                                                                                          \
		.op = GRANT, .at = (t_), .cls = (c_), .cost = (k_), .n = (n_)                      \
	}
/* A grant whose decision is checked: granted g_, or none and why. */
#define GW(t_, c_, k_, n_, g_, w_)                                                                 \
	{                                                                                          \
		.op = GRANT, .at = (t_), .cls = (c_), .cost = (k_), .n = (n_), .check = 1,         \
		.want_granted = (g_), .want_why = (w_)                                             \
	}
/* A batch's grant of one launch of 500 for another host, checked. */
#define HW(t_, h_, g_, w_)                                                                         \
	{                                                                                          \
		.op = GRANT, .at = (t_), .cls = GATE_BATCH, .cost = 500, .n = 1, .host = (h_),     \
		.check = 1, .want_granted = (g_), .want_why = (w_)                                 \
	}
#define CALL(t_, k_, id_, g_, w_)                                                                  \
	{                                                                                          \
		.op = GRANT, .at = (t_), .cls = GATE_INTERACTIVE, .cost = (k_), .n = 1,            \
		.claim = (id_), .host = "b", .check = 1, .want_granted = (g_), .want_why = (w_)    \
	}
#define OK_(t_, l_, u_)                                                                            \
	{                                                                                          \
		.op = SETTLE, .at = (t_), .lease = (l_), .used = (u_), .succeeded = 1,             \
		.fb = FB_NONE, .event = GATE_EV_ANSWERED, .retry_after = -1                        \
	}
#define FB(t_, l_, u_, lt, rt, rst, lr, rr, rsr)                                                   \
	{                                                                                          \
		.op = SETTLE, .at = (t_), .lease = (l_), .used = (u_), .succeeded = 1,             \
		.fb = {(lt), (rt), (rst), (lr), (rr), (rsr)}, .event = GATE_EV_ANSWERED,           \
		.retry_after = -1                                                                  \
	}
#define R429(t_, l_, p_, w_, a_)                                                                   \
	{                                                                                          \
		.op = SETTLE, .at = (t_), .lease = (l_), .used = -1, .fb = FB_NONE,                \
		.event = GATE_EV_RATE_LIMITED, .pause_ms = (p_), .learn = (w_),                    \
		.retry_after = (a_)                                                                \
	}
#define DOWN(t_, l_)                                                                               \
	{                                                                                          \
		.op = SETTLE, .at = (t_), .lease = (l_), .used = -1, .fb = FB_NONE,                \
		.event = GATE_EV_UNREACHABLE, .retry_after = -1                                    \
	}

static const struct table_case table[] = {
    {"a fresh share paces from (nearly) nothing: tokens, then requests",
     LIM(8, 0, 60000, 600, 0, 0, 0, GATE_WINDOW_MINUTE, 0),
     60000,
     {G(0, GATE_BATCH, 500, 1),
      G(300, GATE_BATCH, 500, 1),
      G(500, GATE_BATCH, 500, 4),
      G(2000, GATE_BATCH, 50, 8),
      G(2100, GATE_BATCH, 50, 8),
      OK_(2200, 0, 200),
      OK_(2200, 0, 200),
      G(2250, GATE_BATCH, 50, 3),
      {.op = END}}},
    {"the slots are shared: all-or-nothing, a wait for the oldest's end",
     LIM(2, 0, 0, 0, 0, 0, 0, GATE_WINDOW_MINUTE, 0),
     60000,
     {GW(0, GATE_BATCH, 10, 3, 2, GATE_CONCURRENCY),
      GW(10, GATE_BATCH, 10, 1, 0, GATE_CONCURRENCY),
      OK_(300, 0, 10),
      GW(310, GATE_BATCH, 10, 2, 1, GATE_CONCURRENCY),
      G(320, GATE_BATCH, 10, 1),
      OK_(600, 1, 5),
      GW(650, GATE_BATCH, 10, 1, 1, GATE_OK),
      {.op = END}}},
    {"a stagger with its jitter spaces batch launches, not calls",
     {.max_concurrency = 8,
      .stagger_ms = 1000,
      .stagger_jitter = 0.5,
      .tpm = 0,
      .provider_window = GATE_WINDOW_MINUTE},
     60000,
     {{.op = GRANT, .at = 0, .cls = GATE_BATCH, .cost = 10, .n = 2, .jitter = 0.25},
      G(500, GATE_BATCH, 10, 1),
      G(600, GATE_INTERACTIVE, 10, 1),
      {.op = GRANT, .at = 1125, .cls = GATE_BATCH, .cost = 10, .n = 1, .jitter = 0.9},
      G(1200, GATE_BATCH, 10, 1),
      {.op = END}}},
    {"the reserve holds while callers are about, and is the batches' once they are not",
     LIM(10, 0, 60000, 0, 0, 2000, 0.2, GATE_WINDOW_MINUTE, 0),
     120000,
     {G(0, GATE_INTERACTIVE, 100, 1),
      GW(0, GATE_BATCH, 100, 10, 8, GATE_CONCURRENCY),
      G(100, GATE_BATCH, 100, 10),
      GW(2000, GATE_INTERACTIVE, 100, 2, 1, GATE_CONCURRENCY),
      OK_(3000, 0, 100),
      GW(62000, GATE_BATCH, 100, 10, 1, GATE_CONCURRENCY),
      G(63100, GATE_BATCH, 100, 10),
      {.op = END}}},
    {"a call waiting on one host claims the next launch from every host's batches",
     LIM(4, 0, 60000, 0, 0, 0, 0, GATE_WINDOW_MINUTE, 0),
     60000,
     {GW(0, GATE_BATCH, 500, 1, 1, GATE_OK),
      CALL(100, 400, 7, 0, GATE_TOKENS),
      GW(490, GATE_BATCH, 50, 1, 0, GATE_CLAIMED),
      CALL(500, 400, 7, 1, GATE_OK),
      GW(510, GATE_BATCH, 50, 1, 0, GATE_TOKENS),
      GW(900, GATE_BATCH, 50, 1, 1, GATE_OK),
      {.op = END}}},
    {"the provider's figures: its bucket spent through a slow start",
     LIM(16, 0, 60000, 600, 0.03, 0, 0, GATE_WINDOW_AUTO, 600000),
     60000,
     {G(0, GATE_BATCH, 400, 2),
      FB(300, 0, 300, 60000, 59200, 800, 600, 598, 200),
      G(320, GATE_BATCH, 400, 8),
      FB(640, 1, 300, 60000, 58800, 1200, 600, 597, 300),
      FB(645, 2, 350, 60000, 58000, 2000, 600, 596, 400),
      G(650, GATE_BATCH, 400, 16),
      FB(960, 3, 400, 60000, 56000, 4000, 600, 590, 1000),
      G(970, GATE_BATCH, 400, 16),
      FB(1300, 6, 400, 60000, 50000, 10000, 600, 580, 2000),
      G(1310, GATE_BATCH, 400, 16),
      {.op = END}}},
    {"a 429 despite room pauses every host, drains, teaches the short window, aligns it",
     LIM(16, 0, 60000, 600, 0, 0, 0, GATE_WINDOW_AUTO, 600000),
     60000,
     {G(0, GATE_BATCH, 400, 2),
      FB(300, 0, 300, 60000, 59000, 1000, 600, 598, 200),
      G(310, GATE_BATCH, 400, 4),
      R429(400, 1, 600, 1, 600),
      GW(500, GATE_BATCH, 400, 2, 0, GATE_PAUSED),
      G(1010, GATE_BATCH, 400, 4),
      OK_(1300, 2, 100),
      G(1310, GATE_BATCH, 400, 4),
      G(2020, GATE_BATCH, 400, 4),
      {.op = END}}},
    {"a learned window not confirmed for the probation goes back to the minute",
     LIM(16, 0, 60000, 0, 0, 0, 0, GATE_WINDOW_AUTO, 10000),
     60000,
     {G(0, GATE_BATCH, 400, 1),
      R429(100, 0, 200, 1, 200),
      G(5000, GATE_BATCH, 400, 1),
      R429(5200, 1, 200, 0, 150),
      G(14000, GATE_BATCH, 400, 1),
      G(16000, GATE_BATCH, 400, 1),
      R429(16100, 3, 300, 1, 300),
      {.op = END}}},
    {"an unreachable upstream opens the breaker for every host; one probe, then resumed",
     LIM(8, 0, 0, 0, 0, 0, 0, GATE_WINDOW_MINUTE, 0),
     60000,
     {G(0, GATE_BATCH, 10, 3),
      DOWN(50, 0),
      DOWN(60, 1),
      DOWN(70, 2),
      GW(100, GATE_BATCH, 10, 2, 0, GATE_PAUSED),
      GW(1100, GATE_BATCH, 10, 2, 1, GATE_CONCURRENCY),
      G(1150, GATE_BATCH, 10, 1),
      DOWN(1200, 3),
      G(3300, GATE_BATCH, 10, 1),
      OK_(3400, 4, 10),
      G(3410, GATE_BATCH, 10, 2),
      {.op = END}}},
    {"no credit pauses and probes",
     LIM(8, 0, 0, 0, 0, 0, 0, GATE_WINDOW_MINUTE, 0),
     60000,
     {G(0, GATE_BATCH, 10, 2),
      {.op = SETTLE,
       .at = 50,
       .lease = 0,
       .used = -1,
       .fb = FB_NONE,
       .event = GATE_EV_QUOTA,
       .pause_ms = 300000,
       .retry_after = -1},
      G(100, GATE_BATCH, 10, 1),
      OK_(200, 1, 10),
      G(300100, GATE_BATCH, 10, 2),
      {.op = END}}},
    {"in fixed windows a refund never reopens the window it was charged to",
     LIM(16, 0, 60000, 0, 0, 0, 0, GATE_WINDOW_SECOND, 0),
     60000,
     {G(0, GATE_BATCH, 400, 1),
      GW(1010, GATE_BATCH, 400, 4, 2, GATE_TOKENS),
      OK_(1300, 0, 100),
      GW(1310, GATE_BATCH, 400, 2, 0, GATE_TOKENS),
      OK_(2100, 1, 500),
      G(2100, GATE_BATCH, 400, 4),
      {.op = END}}},
    {"an answer settles its lease once; a lease past its deadline gives its slot back",
     LIM(2, 0, 0, 0, 0, 0, 0, GATE_WINDOW_MINUTE, 0),
     2000,
     {G(0, GATE_BATCH, 50, 2),
      OK_(100, 0, 20),
      OK_(150, 0, 20),
      GW(200, GATE_BATCH, 50, 2, 1, GATE_CONCURRENCY),
      GW(2100, GATE_BATCH, 50, 2, 1, GATE_CONCURRENCY),
      OK_(2200, 1, 10),
      GW(2300, GATE_BATCH, 50, 1, 1, GATE_OK),
      {.op = END}}},
    {"answers of one turn settled together; a launch taken back, and a caller who left",
     LIM(4, 0, 60000, 0, 0, 1000, 0, GATE_WINDOW_MINUTE, 0),
     60000,
     {G(0, GATE_BATCH, 200, 4),
      {.op = SETTLE,
       .at = 300,
       .lease = 0,
       .also = 2,
       .used = 150,
       .succeeded = 1,
       .fb = FB_NONE,
       .event = GATE_EV_ANSWERED,
       .retry_after = -1},
      /* taken back before it went: all of it refunded, the lane untouched */
      {.op = SETTLE,
       .at = 310,
       .lease = 2,
       .used = 0,
       .succeeded = 1,
       .fb = FB_NONE,
       .event = GATE_EV_NONE,
       .retry_after = -1},
      /* its caller left: the slot back, the cost spent */
      {.op = SETTLE,
       .at = 320,
       .lease = 3,
       .used = -1,
       .fb = FB_NONE,
       .event = GATE_EV_NONE,
       .retry_after = -1},
      GW(330, GATE_BATCH, 200, 4, 4, GATE_OK),
      {.op = END}}},
    {"hosts' batches take turns: the one told to wait first goes first",
     LIM(8, 0, 60000, 0, 0, 0, 0, GATE_WINDOW_MINUTE, 0),
     60000,
     {GW(0, GATE_BATCH, 500, 1, 1, GATE_OK),
      /* b is told to wait for the tokens, and takes the first place */
      HW(10, "b", 0, GATE_TOKENS),
      /* a comes back first when they are there: b's turn */
      GW(490, GATE_BATCH, 500, 1, 0, GATE_TURN),
      HW(500, "b", 1, GATE_OK),
      /* c joins behind a, whose turn it now is */
      HW(505, "c", 0, GATE_TURN),
      GW(580, GATE_BATCH, 500, 1, 0, GATE_TOKENS),
      HW(985, "c", 0, GATE_TURN),
      GW(990, GATE_BATCH, 500, 1, 1, GATE_OK),
      HW(1000, "b", 0, GATE_TURN),
      /* c never came back: past its place's time, b goes */
      HW(2600, "b", 1, GATE_OK),
      {.op = END}}},
    {"no debt beyond a minute's budget; the provider's word that its bucket is full clears it",
     LIM(4, 0, 6000, 60, 0, 0, 0, GATE_WINDOW_MINUTE, 0),
     60000,
     {G(0, GATE_BATCH, 20000, 1),
      GW(1000, GATE_BATCH, 100, 1, 0, GATE_TOKENS),
      FB(1200, 0, 0, 6000, 6000, 0, 60, 60, 0),
      GW(1300, GATE_BATCH, 100, 1, 1, GATE_OK),
      {.op = END}}},
    {"a host back from gating alone: its leases become its launches in flight",
     LIM(8, 0, 0, 0, 0, 0, 0, GATE_WINDOW_MINUTE, 0),
     60000,
     {G(0, GATE_BATCH, 100, 3),
      {.op = GRANT, .at = 10, .cls = GATE_BATCH, .cost = 100, .n = 1, .host = "b"},
      {.op = RECONCILE, .at = 5000, .live = {1, -1}, .adopt = 2, .cost = 150},
      G(5010, GATE_BATCH, 100, 8),
      OK_(5100, 1, 50),
      OK_(5100, 4, 50),
      OK_(5200, 3, 100),
      {.op = END}}},
};

/* gate.c's side: the gate, and the leases the library would keep. */
struct ref_lease {
	char id[16];
	int cls;
	int64_t cost, at, deadline;
	char host[8];
	int live;
	struct gate_mark mark; /* what the grant said (both agree: compared there) */
	int marked;            /* 0: adopted, no mark of this gate's */
};

struct ref {
	struct gate g;
	int init;
	struct ref_lease leases[64];
	int n;
};

static int ref_limits_differ(const struct gate_limits *a, const struct gate_limits *b)
{
	return a->max_concurrency != b->max_concurrency || a->stagger_ms != b->stagger_ms ||
	       a->stagger_jitter != b->stagger_jitter || a->tpm != b->tpm || a->rpm != b->rpm ||
	       a->headroom != b->headroom || a->burst_ms != b->burst_ms ||
	       a->interactive_reserve != b->interactive_reserve ||
	       a->stagger_interactive != b->stagger_interactive ||
	       a->provider_window != b->provider_window || a->probation_ms != b->probation_ms;
}

static void ref_load(struct ref *r, const struct gate_limits *lim, int64_t now)
{
	if (!r->init) {
		gate_init(&r->g, lim, now);
		if (lim->provider_window != GATE_WINDOW_AUTO)
			gate_set_window(&r->g, lim->provider_window, now);
		r->init = 1;
	} else if (ref_limits_differ(&r->g.lim, lim)) {
		gate_set_limits(&r->g, lim, now);
	}
}

/* The live lease that comes first in the library's sorted set (deadline, then id). */
static struct ref_lease *ref_first(struct ref *r, int64_t upto)
{
	struct ref_lease *best = NULL;
	int i;

	for (i = 0; i < r->n; i++)
		if (r->leases[i].live && r->leases[i].deadline <= upto &&
		    (!best || r->leases[i].deadline < best->deadline ||
		     (r->leases[i].deadline == best->deadline &&
		      strcmp(r->leases[i].id, best->id) < 0)))
			best = &r->leases[i];
	return best;
}

static void ref_sweep(struct ref *r, int64_t now)
{
	struct ref_lease *l;

	while ((l = ref_first(r, now))) {
		gate_done(&r->g, l->cls, l->cost, -1, now);
		l->live = 0;
	}
}

static void ref_add(struct ref *r, int cls, int64_t cost, int64_t now, int64_t deadline_ms,
                    const char *host)
{
	struct ref_lease *l = &r->leases[r->n];

	cr_assert_lt(r->n, 64);
	snprintf(l->id, sizeof(l->id), "L%02d", r->n);
	l->cls = cls;
	l->cost = cost;
	l->at = now;
	l->deadline = now + deadline_ms;
	snprintf(l->host, sizeof(l->host), "%s", host);
	l->live = 1;
	r->n++;
}

/* The library's side: one FCALL with the time given; the reply as strings. */
static redisReply *lua_call(redisContext *c, const char *fn, const char *share, int nargs,
                            const char **args)
{
	const char *argv[96];
	char name[96], k1[96], k2[96], k3[96];
	redisReply *rep;
	int i, n = 0;

	snprintf(name, sizeof(name), "%s_%s", fleet_lua_lib, fn);
	snprintf(k1, sizeof(k1), "llmq:{%s}:gate", share);
	snprintf(k2, sizeof(k2), "llmq:{%s}:leases", share);
	snprintf(k3, sizeof(k3), "llmq:{%s}:lease", share);
	argv[n++] = "FCALL";
	argv[n++] = name;
	argv[n++] = "3";
	argv[n++] = k1;
	argv[n++] = k2;
	argv[n++] = k3;
	for (i = 0; i < nargs; i++)
		argv[n++] = args[i];
	rep = redisCommandArgv(c, n, argv, NULL);
	cr_assert_not_null(rep, "%s", c->errstr);
	cr_assert_neq(rep->type, REDIS_REPLY_ERROR, "%s: %s", fn, rep->str);
	cr_assert_eq(rep->type, REDIS_REPLY_ARRAY);
	return rep;
}

static double rep_num(const redisReply *r, size_t i)
{
	cr_assert_lt(i, r->elements);
	if (r->element[i]->type == REDIS_REPLY_INTEGER)
		return (double)r->element[i]->integer;
	cr_assert_eq(r->element[i]->type, REDIS_REPLY_STRING, "element %zu", i);
	return strtod(r->element[i]->str, NULL);
}

/* Strings for the limits, then the rest, into args. */
static int lua_args(char buf[][40], const char **args, int64_t now, const struct gate_limits *lim)
{
	int n = 0;

	snprintf(buf[n], 40, "%lld", (long long)now);
	args[n] = buf[n];
	n++;
	args[n++] = "1"; /* the state with every answer */
#define ARG(fmt, v)                                                                                \
	do {                                                                                       \
		snprintf(buf[n], 40, fmt, v);                                                      \
		args[n] = buf[n];                                                                  \
		n++;                                                                               \
	} while (0)
	ARG("%d", lim->max_concurrency);
	ARG("%lld", (long long)lim->stagger_ms);
	ARG("%.17g", lim->stagger_jitter);
	ARG("%lld", (long long)lim->tpm);
	ARG("%lld", (long long)lim->rpm);
	ARG("%.17g", lim->headroom);
	ARG("%lld", (long long)lim->burst_ms);
	ARG("%.17g", lim->interactive_reserve);
	ARG("%d", lim->stagger_interactive);
	ARG("%d", lim->provider_window);
	ARG("%lld", (long long)lim->probation_ms);
	return n;
}

/* The state both keep, field by field; the library's starts at from. */
static void compare_state(const struct table_case *tc, int k, const struct ref *r,
                          const redisReply *rep, size_t from)
{
	double mine[GATE_FIELDS];
	int i;

	const char *p;
	char *end;

	gate_pack(&r->g, mine);
	/* The tail: Redis's time (the one given), the epoch, the state as text. */
	cr_assert_eq(rep->elements, from + 3, "%s, step %d: %zu elements", tc->what, k,
	             rep->elements);
	cr_assert_eq(rep->element[from + 2]->type, REDIS_REPLY_STRING);
	p = rep->element[from + 2]->str;
	for (i = 0; i < GATE_FIELDS; i++) {
		double theirs = strtod(p, &end);

		cr_assert(end != p && *end == '\n', "%s, step %d: %s is not a number", tc->what, k,
		          gate_field_names[i]);
		/* Exact: both keep the same doubles (the library's text has every digit). */
		cr_assert(theirs == mine[i] || fabs(theirs - mine[i]) <= 1e-12 * fabs(mine[i]),
		          "%s, step %d: %s is %.17g in gate.c, %.17g in the library", tc->what, k,
		          gate_field_names[i], mine[i], theirs);
		p = end + 1;
	}
	cr_assert_str_eq(p, r->g.pause_reason, "%s, step %d: the pause's reason", tc->what, k);
}

static void run_case(redisContext *c, const struct table_case *tc, int index)
{
	const int64_t t0 = 1000000;
	struct ref *r = calloc(1, sizeof(*r));
	char share[32], buf[96][40];
	const char *args[96];
	int k, i, n, lua_leases = 0;

	cr_assert_not_null(r);
	snprintf(share, sizeof(share), "case%d", index);
	for (k = 0; tc->steps[k].op != END; k++) {
		const struct step *st = &tc->steps[k];
		const char *host = st->host ? st->host : "a";
		int64_t now = t0 + st->at;
		redisReply *rep;

		n = lua_args(buf, args, now, &tc->lim);
		ref_load(r, &tc->lim, now);
		if (st->op == GRANT) {
			struct gate_ask ask = {st->cls,   st->cost,   st->n, st->jitter,
			                       st->claim, GATE_NEVER, host};
			struct ref_lease *first;
			struct gate_grant g;

			ARG("%d", st->cls);
			ARG("%lld", (long long)st->cost);
			ARG("%d", st->n);
			ARG("%.17g", st->jitter);
			ARG("%llu", (unsigned long long)st->claim);
			ARG("%lld", (long long)tc->deadline_ms);
			ARG("%s", host);
			for (i = 0; i < st->n; i++)
				ARG("L%02d", lua_leases + i);
			ref_sweep(r, now);
			first = ref_first(r, INT64_MAX);
			ask.oldest_at = first ? first->at : GATE_NEVER;
			gate_grant(&r->g, &ask, now, &g);
			for (i = 0; i < g.granted; i++) {
				ref_add(r, st->cls, st->cost, now, tc->deadline_ms, host);
				r->leases[r->n - 1].mark = g.marks[i];
				r->leases[r->n - 1].marked = 1;
			}
			rep = lua_call(c, "grant", share, n, args);
			cr_assert_eq(rep_num(rep, 0), g.granted, "%s, step %d: granted", tc->what,
			             k);
			cr_assert_eq(rep_num(rep, 2), g.why, "%s, step %d: why", tc->what, k);
			cr_assert_eq(rep_num(rep, 1), g.wait_ms,
			             "%s, step %d: wait %lld ms in gate.c", tc->what, k,
			             (long long)g.wait_ms);
			cr_assert_eq(rep_num(rep, 3), g.probation, "%s, step %d: probation",
			             tc->what, k);
			for (i = 0; i < g.granted; i++) {
				cr_assert_eq(rep_num(rep, 4 + 5 * (size_t)i), g.marks[i].tokens);
				cr_assert_eq(rep_num(rep, 5 + 5 * (size_t)i), g.marks[i].requests);
				cr_assert_eq(rep_num(rep, 6 + 5 * (size_t)i), g.marks[i].refunds);
				cr_assert_eq(rep_num(rep, 7 + 5 * (size_t)i), g.marks[i].at);
				cr_assert_eq(rep_num(rep, 8 + 5 * (size_t)i), g.marks[i].room);
			}
			lua_leases += g.granted;
			if (st->check)
				cr_assert(
				    g.granted == st->want_granted && (int)g.why == st->want_why,
				    "%s, step %d: granted %d (why %d), expected %d (why %d)",
				    tc->what, k, g.granted, g.why, st->want_granted, st->want_why);
			compare_state(tc, k, r, rep, 4 + 5 * (size_t)g.granted);
		} else if (st->op == SETTLE) {
			/* One answer, or two settled by one call (a loop turn's). */
			int which[2] = {st->lease, st->also - 1}, count = st->also ? 2 : 1, j;
			struct gate_news news[2];
			int done[2];

			for (j = 0; j < count; j++) {
				struct ref_lease *l = &r->leases[which[j]];
				struct gate_answer a = {
				    .cls = l->cls,
				    .charged = l->cost,
				    .used = st->used,
				    .succeeded = st->succeeded,
				    .resends = st->resends,
				    .done = l->live,
				    .observe = l->marked,
				    .mark = l->mark,
				    .fb = st->fb,
				    .event = st->event,
				    .pause_ms = st->pause_ms,
				    .learn = st->learn,
				    .retry_after_ms = st->retry_after,
				};

				cr_assert_lt(which[j], r->n, "%s: no lease %d", tc->what, which[j]);
				ARG("%s", l->id);
				ARG("%d", l->cls);
				ARG("%lld", (long long)l->cost);
				ARG("%lld", (long long)st->used);
				ARG("%d", st->succeeded);
				ARG("%d", st->resends);
				ARG("%d", a.observe);
				ARG("%lld", (long long)st->fb.limit_tokens);
				ARG("%lld", (long long)st->fb.remaining_tokens);
				ARG("%lld", (long long)st->fb.reset_tokens_ms);
				ARG("%lld", (long long)st->fb.limit_requests);
				ARG("%lld", (long long)st->fb.remaining_requests);
				ARG("%lld", (long long)st->fb.reset_requests_ms);
				ARG("%lld", (long long)a.mark.tokens);
				ARG("%lld", (long long)a.mark.requests);
				ARG("%lld", (long long)a.mark.refunds);
				ARG("%lld", (long long)a.mark.at);
				ARG("%d", st->event);
				ARG("%lld", (long long)st->pause_ms);
				ARG("%d", st->learn);
				ARG("%lld", (long long)st->retry_after);
				l->live = 0;
				done[j] = a.done;
				gate_settle(&r->g, &a, now, &news[j]);
			}
			rep = lua_call(c, "settle", share, n, args);
			for (j = 0; j < count; j++) {
				size_t at = 8 * (size_t)j;

				cr_assert_eq(rep_num(rep, at), done[j], "%s, step %d: done",
				             tc->what, k);
				cr_assert_eq(rep_num(rep, at + 1), news[j].breaker_open,
				             "%s, step %d", tc->what, k);
				cr_assert_eq(rep_num(rep, at + 2), news[j].resumed, "%s, step %d",
				             tc->what, k);
				cr_assert_eq(rep_num(rep, at + 3), news[j].no_credit, "%s, step %d",
				             tc->what, k);
				cr_assert_eq(rep_num(rep, at + 4), news[j].rate_limited,
				             "%s, step %d", tc->what, k);
				cr_assert_eq(rep_num(rep, at + 5), news[j].learned, "%s, step %d",
				             tc->what, k);
				cr_assert_eq(rep_num(rep, at + 6), news[j].probation_ended,
				             "%s, step %d", tc->what, k);
				cr_assert_eq(rep_num(rep, at + 7), news[j].aligned, "%s, step %d",
				             tc->what, k);
			}
			compare_state(tc, k, r, rep, 8 * (size_t)count);
		} else {
			int adopted = 0, dropped = 0, j, live;

			ARG("%s", "a");
			ARG("%lld", (long long)tc->deadline_ms);
			ref_sweep(r, now);
			for (i = 0; i < r->n; i++) {
				if (!r->leases[i].live || strcmp(r->leases[i].host, "a") != 0)
					continue;
				for (j = 0, live = 0; j < 4 && st->live[j] >= 0; j++)
					live |= st->live[j] == i;
				if (live)
					continue;
				gate_done(&r->g, r->leases[i].cls, r->leases[i].cost, -1, now);
				r->leases[i].live = 0;
				dropped++;
			}
			for (j = 0; j < 4 && st->live[j] >= 0; j++) {
				struct ref_lease *l = &r->leases[st->live[j]];

				cr_assert_lt(st->live[j], r->n, "%s: no lease %d", tc->what,
				             st->live[j]);
				ARG("%s", l->id);
				ARG("%d", l->cls);
				ARG("%lld", (long long)l->cost);
				if (!l->live) {
					/* Swept as expired while it flew: taken in again. */
					gate_adopt(&r->g, l->cls, l->cost, now);
					l->live = 1;
					l->marked = 0;
					adopted++;
				}
			}
			for (j = 0; j < st->adopt; j++) {
				ARG("L%02d", r->n);
				ARG("%d", GATE_BATCH);
				ARG("%lld", (long long)st->cost);
				gate_adopt(&r->g, GATE_BATCH, st->cost, now);
				ref_add(r, GATE_BATCH, st->cost, now, tc->deadline_ms, "a");
				adopted++;
			}
			lua_leases = r->n;
			rep = lua_call(c, "reconcile", share, n, args);
			cr_assert_eq(rep_num(rep, 0), adopted, "%s, step %d: adopted", tc->what, k);
			cr_assert_eq(rep_num(rep, 1), dropped, "%s, step %d: dropped", tc->what, k);
			compare_state(tc, k, r, rep, 2);
		}
		freeReplyObject(rep);
	}
	free(r);
}

Test(fleet, the_library_decides_as_gate_c_does, .timeout = 60)
{
	struct redis_proc r;
	redisContext *c;
	redisReply *rep;
	char dir[256];
	size_t i;

	h_tmpdir(dir, sizeof(dir));
	h_redis_start(&r, dir, NULL);
	c = redisConnectUnix(r.sock);
	cr_assert(c && !c->err);
	rep = redisCommand(c, "FUNCTION LOAD %s", fleet_lua);
	cr_assert(rep && rep->type == REDIS_REPLY_STRING, "%s", rep ? rep->str : c->errstr);
	freeReplyObject(rep);
	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		run_case(c, &table[i], (int)i);
	redisFree(c);
	h_redis_stop(&r);
}
