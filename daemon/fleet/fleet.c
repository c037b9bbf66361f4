/*
 * fleet.c - a fleet of llmqd sharing their lanes' gates in Redis: its making
 * (the address, the password, this host's id, the shares) and freeing, the
 * heartbeat that tells how many hosts share each key, and what it tells the
 * rest of llmqd (up or not, hosts, the grants' round trips). The connection
 * is fleet-conn.c's, the commands fleet-cmd.c's.
 *
 * It knows nothing of lanes: the scheduler calls the library's functions
 * through fleet_call() and falls back when the answer is an error.
 */
#include "fleet/fleet-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/dns.h>
#include <hiredis/hiredis.h>

static const char *const fleet_fn_suffix[FLEET_FN__COUNT] = {
    [FLEET_FN_BEAT] = "beat",           [FLEET_FN_GRANT] = "grant", [FLEET_FN_SETTLE] = "settle",
    [FLEET_FN_RECONCILE] = "reconcile", [FLEET_FN_STATE] = "state",
};

const double fleet_rtt_le[FLEET_RTT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
};

static void fleet_beat_reply(void *ud, struct redisReply *r, const char *err)
{
	struct fleet *f = ud;
	size_t i;

	f->beating = 0;
	if (!r)
		return;
	if (r->type != REDIS_REPLY_ARRAY) {
		char why[sizeof(f->st.error)];

		fleet_explain(f, "the heartbeat", r->type == REDIS_REPLY_ERROR ? r->str : "?", why,
		              sizeof(why));
		fleet_drop(f, "%s", why);
		return;
	}
	for (i = 0; i < r->elements && i < (size_t)f->n_shares; i++)
		if (r->element[i]->type == REDIS_REPLY_INTEGER)
			f->hosts[i] = r->element[i]->integer > 0 ? (int)r->element[i]->integer : 1;
}

/* Every FLEET_HEARTBEAT_MS: this host is alive; how many share each key. */
void fleet_beat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	const char *argv[3 + 1 + FLEET_MAX_SHARES + 4];
	char keys[FLEET_MAX_SHARES + 1][96], nkeys[16], ttl[16], info[128];
	int i, n = 0;

	if (f->state != FLEET_UP)
		return;
	fleet_arm_us(f->beat, FLEET_HEARTBEAT_MS * 1000);
	if (f->beating)
		return;
	snprintf(keys[0], sizeof(keys[0]), "llmq:host:%s", f->host_id);
	for (i = 0; i < f->n_shares; i++)
		snprintf(keys[i + 1], sizeof(keys[i + 1]), "llmq:{%s}:hosts", f->shares[i]);
	snprintf(nkeys, sizeof(nkeys), "%d", f->n_shares + 1);
	snprintf(ttl, sizeof(ttl), "%d", FLEET_HOST_TTL_MS);
	snprintf(info, sizeof(info), "llmqd %s pid %d", LLMQ_VERSION, (int)getpid());
	argv[n++] = nkeys;
	for (i = 0; i <= f->n_shares; i++)
		argv[n++] = keys[i];
	argv[n++] = "";
	argv[n++] = f->host_id;
	argv[n++] = ttl;
	argv[n++] = info;
	if (fleet_call(f, FLEET_FN_BEAT, n, argv, NULL, fleet_beat_reply, f) == 0)
		f->beating = 1;
}

/* HOSTNAME-PID-RANDOM: unique among the live hosts, kept nowhere. */
static void fleet_make_id(char *buf, size_t len)
{
	char host[64] = "host";
	unsigned r = 0;
	FILE *u;

	if (gethostname(host, sizeof(host)) < 0 || !host[0])
		snprintf(host, sizeof(host), "host");
	host[sizeof(host) - 1] = '\0';
	host[strspn(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")] =
	    '\0';
	u = fopen("/dev/urandom", "re");
	if (!u || fread(&r, sizeof(r), 1, u) != 1)
		r = (unsigned)fleet_now_us();
	if (u)
		fclose(u);
	snprintf(buf, len, "%.40s-%d-%06x", host, (int)getpid(), r & 0xffffff);
}

int fleet_new(struct event_base *base, const struct fleet_config *cfg, const char *const *shares,
              int n_shares, struct fleet **ret, char *err, size_t errlen)
{
	struct fleet *f;
	int i, j, r;

	f = calloc(1, sizeof(*f));
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f->base = base;
	f->state = FLEET_DOWN;
	f->told = -1;
	f->timeout_ms =
	    cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : FLEET_DEFAULT_TIMEOUT_MS;
	f->backoff_ms = FLEET_BACKOFF_FIRST_MS;
	TAILQ_INIT(&f->pending);
	r = fleet_url_parse(cfg->redis_url, &f->addr, err, errlen);
	if (r < 0)
		goto fail;
	fleet_url_show(&f->addr, f->shown, sizeof(f->shown));
	snprintf(f->st.url, sizeof(f->st.url), "%s", f->shown);
	r = fleet_read_password(cfg->redis_password_file, &f->password);
	if (r < 0) {
		snprintf(err, errlen,
		         "cannot read the Redis password from redis_password_file %s: %s%s",
		         cfg->redis_password_file,
		         r == -ENOKEY ? "a bare name is a systemd credential, and "
		                        "$CREDENTIALS_DIRECTORY is not set"
		                      : strerror(-r),
		         r == -ENOKEY ? "; give a path, or LoadCredential= it" : "");
		goto fail;
	}
	if (!f->password && f->addr.password[0] && !(f->password = strdup(f->addr.password))) {
		r = -ENOMEM;
		goto fail;
	}
	explicit_bzero(f->addr.password, sizeof(f->addr.password));
	if (cfg->host_id[0])
		snprintf(f->host_id, sizeof(f->host_id), "%s", cfg->host_id);
	else
		fleet_make_id(f->host_id, sizeof(f->host_id));
	snprintf(f->st.host_id, sizeof(f->st.host_id), "%s", f->host_id);
	for (i = 0; i < n_shares; i++) {
		for (j = 0; j < f->n_shares && strcmp(f->shares[j], shares[i]) != 0; j++)
			;
		if (j < f->n_shares)
			continue;
		if (f->n_shares == FLEET_MAX_SHARES) {
			snprintf(err, errlen, "more than %d shares", FLEET_MAX_SHARES);
			r = -E2BIG;
			goto fail;
		}
		snprintf(f->shares[f->n_shares], sizeof(f->shares[0]), "%s", shares[i]);
		f->hosts[f->n_shares++] = 1;
	}
	for (i = 1; i < FLEET_FN__COUNT; i++)
		snprintf(f->fn_names[i], sizeof(f->fn_names[i]), "%s_%s", fleet_lua_lib,
		         fleet_fn_suffix[i]);
	f->timer = evtimer_new(base, fleet_timer_cb, f);
	f->retry = evtimer_new(base, fleet_retry_cb, f);
	f->teardown = event_new(base, -1, 0, fleet_teardown_cb, f);
	f->beat = evtimer_new(base, fleet_beat_cb, f);
	if (!f->timer || !f->retry || !f->teardown || !f->beat) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	*ret = f;
	return 0;
fail:
	fleet_free(f);
	return r;
}

void fleet_start(struct fleet *f, fleet_state_fn *cb, void *ud)
{
	f->on_state = cb;
	f->state_ud = ud;
	fleet_connect(f);
}

void fleet_flush(struct fleet *f)
{
	int done = 0, i;

	/* What is queued goes out now, without waiting for the answers. */
	for (i = 0; f->ac && f->state == FLEET_UP && !done && i < 16; i++)
		if (redisBufferWrite(&f->ac->c, &done) != REDIS_OK)
			break;
}

void fleet_free(struct fleet *f)
{
	struct fleet_cmd *c;

	if (!f)
		return;
	f->stopping = 1;
	f->on_state = NULL;
	while ((c = TAILQ_FIRST(&f->pending))) {
		TAILQ_REMOVE(&f->pending, c, link);
		fleet_cmd_free(c);
	}
	if (f->lookup) {
		f->lookup->f = NULL;
		f->lookup = NULL;
	}
	if (f->dead) {
		redisAsyncContext *ac = f->dead;

		f->dead = NULL;
		redisAsyncFree(ac);
	}
	if (f->ac) {
		redisAsyncContext *ac = f->ac;

		f->ac = NULL;
		redisAsyncFree(ac);
	}
	if (f->dns)
		evdns_base_free(f->dns, 1); /* lookups in flight are answered, and freed */
	if (f->timer)
		event_free(f->timer);
	if (f->retry)
		event_free(f->retry);
	if (f->teardown)
		event_free(f->teardown);
	if (f->beat)
		event_free(f->beat);
	if (f->password) {
		explicit_bzero(f->password, strlen(f->password));
		free(f->password);
	}
	explicit_bzero(&f->addr, sizeof(f->addr));
	free(f);
}

int fleet_up(const struct fleet *f)
{
	return f && f->state == FLEET_UP;
}

int fleet_hosts(const struct fleet *f, const char *share)
{
	int i;

	for (i = 0; f && i < f->n_shares; i++)
		if (strcmp(f->shares[i], share) == 0)
			return f->hosts[i] > 0 ? f->hosts[i] : 1;
	return 1;
}

const char *fleet_host_id(const struct fleet *f)
{
	return f->host_id;
}

static int fleet_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

void fleet_stats(const struct fleet *f, struct fleet_stats *ret)
{
	int64_t v[FLEET_RTT_RING];
	size_t n = f->st.grants < FLEET_RTT_RING ? (size_t)f->st.grants : FLEET_RTT_RING;

	*ret = f->st;
	ret->rtt_p50_us = ret->rtt_p99_us = -1;
	if (n == 0)
		return;
	memcpy(v, f->rtt_ring, n * sizeof(v[0]));
	qsort(v, n, sizeof(v[0]), fleet_cmp_i64);
	ret->rtt_p50_us = v[(n - 1) / 2];
	ret->rtt_p99_us = v[(n * 99 + 99) / 100 - 1];
}
