/*
 * models.c - the upstreams' model lists: fetched, kept, filtered by what
 * each lane routes. Ownership: a lane's list and its transfer are the
 * module's; a wait is the module's until its done() is called or it is
 * cancelled.
 */
#include "engine/models.h"
#include "gate/lane.h"
#include "log.h"
#include "engine/scheduler.h"
#include "timeutil.h"
#include "upstream/upstream.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct models_lane {
	struct models *m;
	int idx;
	json_object *list;     /* the upstream's models (array); NULL: none given yet */
	struct up_transfer *t; /* the fetch under way */
	int64_t asked_at;      /* monotonic ms the last fetch started; 0: never */
	int failing;           /* the last fetch failed (logged once until one succeeds) */
	struct event *timer;   /* the hourly refresh */
};

struct models_wait {
	struct models *m;
	void (*done)(void *ud, json_object *list);
	void *ud;
	struct event *timer; /* MODELS_WAIT_MS */
	TAILQ_ENTRY(models_wait) link;
};

struct models {
	struct llmqd *d;
	struct upstream *up;
	struct models_lane lanes[CONFIG_MAX_LANES];
	int n_lanes;
	TAILQ_HEAD(, models_wait) waits;
};

static void models_arm(struct models_lane *ml, int64_t ms)
{
	struct timeval tv;

	time_to_timeval(ms, &tv);
	evtimer_add(ml->timer, &tv);
}

/* The upstream's "data" entries that name a model, as OpenAI's model objects. */
static int models_parse(const char *body, size_t len, json_object **ret)
{
	json_object *root, *data, *list = NULL, *e, *id, *v, *o;
	size_t i, n;
	int r = -EBADMSG;

	if (len > MODELS_BODY_MAX)
		return -E2BIG;
	root = json_tokener_parse(body);
	if (!root || !json_object_object_get_ex(root, "data", &data) ||
	    !json_object_is_type(data, json_type_array))
		goto out;
	r = -ENOMEM;
	list = json_object_new_array();
	if (!list)
		goto out;
	n = json_object_array_length(data);
	for (i = 0; i < n && json_object_array_length(list) < MODELS_MAX; i++) {
		e = json_object_array_get_idx(data, i);
		if (!json_object_object_get_ex(e, "id", &id) ||
		    !json_object_is_type(id, json_type_string))
			continue;
		o = json_object_new_object();
		if (!o || json_object_array_add(list, o) < 0) {
			json_object_put(o);
			goto out;
		}
		json_object_object_add(o, "id", json_object_get(id));
		json_object_object_add(o, "object", json_object_new_string("model"));
		json_object_object_add(o, "created",
		                       json_object_object_get_ex(e, "created", &v) &&
		                               json_object_is_type(v, json_type_int)
		                           ? json_object_get(v)
		                           : json_object_new_int64(0));
		json_object_object_add(o, "owned_by",
		                       json_object_object_get_ex(e, "owned_by", &v) &&
		                               json_object_is_type(v, json_type_string)
		                           ? json_object_get(v)
		                           : json_object_new_string("unknown"));
	}
	if (json_object_array_length(list) == 0) {
		/* Nothing to show (an llmqd upstream without a list yet answers so):
		 * the patterns say more, and it is asked again. */
		r = -ENODATA;
		goto out;
	}
	*ret = list;
	list = NULL;
	r = 0;
out:
	json_object_put(list);
	json_object_put(root);
	return r;
}

static int models_pending(const struct models *m)
{
	int i;

	for (i = 0; i < m->n_lanes; i++)
		if (m->lanes[i].t && !m->lanes[i].list)
			return 1;
	return 0;
}

/* Whether the lane lc shows model id: it routes it, and its patterns (if any) match. */
static int models_shown(const struct config *cfg, const struct lane_config *lc, const char *id)
{
	int j;

	if (config_lane_for_model(cfg, id) != lc)
		return 0; /* an earlier lane's patterns take it */
	for (j = 0; j < lc->n_models; j++)
		if (fnmatch(lc->models[j], id, 0) == 0)
			return 1;
	return lc->n_models == 0;
}

/* A lane without a list: its patterns, owned by the lane (as before lists were asked for). */
static int models_add_patterns(const struct lane_config *lc, json_object *data)
{
	char owner[80];
	json_object *o;
	int j;

	snprintf(owner, sizeof(owner), "llmq:%s", lc->name);
	for (j = 0; j < lc->n_models; j++) {
		o = json_object_new_object();
		if (!o || json_object_array_add(data, o) < 0) {
			json_object_put(o);
			return -ENOMEM;
		}
		json_object_object_add(o, "id", json_object_new_string(lc->models[j]));
		json_object_object_add(o, "object", json_object_new_string("model"));
		json_object_object_add(o, "created", json_object_new_int64(0));
		json_object_object_add(o, "owned_by", json_object_new_string(owner));
	}
	return 0;
}

static json_object *models_render(const struct models *m)
{
	const struct config *cfg = m->d->cfg;
	json_object *o = json_object_new_object(), *data = json_object_new_array(), *e;
	size_t k, n;
	int i;

	if (!o || !data)
		goto fail;
	for (i = 0; i < m->n_lanes; i++) {
		const struct models_lane *ml = &m->lanes[i];

		if (!ml->list) {
			if (models_add_patterns(&cfg->lanes[i], data) < 0)
				goto fail;
			continue;
		}
		n = json_object_array_length(ml->list);
		for (k = 0; k < n; k++) {
			e = json_object_array_get_idx(ml->list, k);
			if (!models_shown(cfg, &cfg->lanes[i],
			                  json_object_get_string(json_object_object_get(e, "id"))))
				continue;
			if (json_object_array_add(data, json_object_get(e)) < 0) {
				json_object_put(e);
				goto fail;
			}
		}
	}
	json_object_object_add(o, "object", json_object_new_string("list"));
	json_object_object_add(o, "data", data);
	return o;
fail:
	json_object_put(o);
	json_object_put(data);
	return NULL;
}

static void models_wait_free(struct models_wait *w)
{
	TAILQ_REMOVE(&w->m->waits, w, link);
	if (w->timer)
		event_free(w->timer);
	free(w);
}

static void models_answer(struct models_wait *w)
{
	void (*done)(void *ud, json_object *list) = w->done;
	void *ud = w->ud;
	json_object *list = models_render(w->m);

	models_wait_free(w);
	done(ud, list);
}

/* A fetch ended: whoever waited for it is answered, unless another is still under way. */
static void models_wake(struct models *m)
{
	struct models_wait *w;

	if (models_pending(m))
		return;
	while ((w = TAILQ_FIRST(&m->waits)))
		models_answer(w);
}

static void models_failed(struct models_lane *ml, const char *why)
{
	const struct lane_config *lc = &ml->m->d->cfg->lanes[ml->idx];

	if (!ml->failing)
		log_warn("lane %s: cannot list the upstream's models (%s); GET /v1/models shows "
		         "%s; asked again within %llds of the next request for it",
		         lc->name, why,
		         ml->list ? "the list it gave before" : "the lane's model patterns instead",
		         (long long)(MODELS_RETRY_MS / 1000));
	ml->failing = 1;
}

static void models_done(void *ud, const struct up_response *resp)
{
	struct models_lane *ml = ud;
	json_object *list = NULL;
	char why[160];
	int r;

	ml->t = NULL;
	models_arm(ml, MODELS_REFRESH_MS);
	if (resp->status == 0) {
		models_failed(ml, resp->error ? resp->error : "no answer");
	} else if (resp->status < 200 || resp->status > 299) {
		snprintf(why, sizeof(why), "HTTP %d", resp->status);
		models_failed(ml, why);
	} else if ((r = models_parse(resp->body, resp->body_len, &list)) < 0) {
		models_failed(ml, r == -ENOMEM    ? "out of memory"
		                  : r == -E2BIG   ? "the answer is too large"
		                  : r == -ENODATA ? "the list is empty"
		                                  : "the answer is not a model list");
	} else {
		if (ml->failing || !ml->list)
			log_info("lane %s: the upstream lists %zu models",
			         ml->m->d->cfg->lanes[ml->idx].name,
			         json_object_array_length(list));
		json_object_put(ml->list);
		ml->list = list;
		ml->failing = 0;
	}
	models_wake(ml->m);
}

static void models_fetch(struct models_lane *ml)
{
	struct models *m = ml->m;
	const struct lane_config *lc = &m->d->cfg->lanes[ml->idx];
	struct up_request req;
	char url[1024];
	int r;

	if (ml->t)
		return;
	ml->asked_at = time_mono_ms();
	r = lane_url(lc, "/v1/models", url, sizeof(url));
	if (r == 0) {
		req = (struct up_request){
		    .url = url,
		    .api_key = sched_lane_key(m->d->sched, ml->idx),
		    .get = 1,
		    .connect_timeout_ms = (long)lc->connect_timeout_ms,
		    .timeout_ms = MODELS_TIMEOUT_MS,
		    .done = models_done,
		    .userdata = ml,
		};
		r = upstream_start(m->up, &req, &ml->t);
	}
	if (r < 0) {
		ml->t = NULL;
		models_arm(ml, MODELS_REFRESH_MS);
		models_failed(ml, strerror(-r));
	}
}

static void models_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	models_fetch(arg);
}

static void models_wait_cb(evutil_socket_t fd, short what, void *arg)
{
	models_answer(arg); /* what there is, after MODELS_WAIT_MS */
}

struct models_wait *models_get(struct models *m, void (*done)(void *ud, json_object *list),
                               void *ud)
{
	int64_t now = time_mono_ms();
	struct models_wait *w;
	struct timeval tv;
	int i;

	for (i = 0; i < m->n_lanes; i++) {
		struct models_lane *ml = &m->lanes[i];

		if (!ml->list && !ml->t && (!ml->asked_at || now - ml->asked_at >= MODELS_RETRY_MS))
			models_fetch(ml); /* first need */
	}
	w = models_pending(m) ? calloc(1, sizeof(*w)) : NULL;
	if (w)
		w->timer = evtimer_new(m->d->base, models_wait_cb, w);
	if (!w || !w->timer) {
		free(w); /* nothing to wait for; or no memory to wait: answer with what there is */
		done(ud, models_render(m));
		return NULL;
	}
	w->m = m;
	w->done = done;
	w->ud = ud;
	TAILQ_INSERT_TAIL(&m->waits, w, link);
	time_to_timeval(MODELS_WAIT_MS, &tv);
	evtimer_add(w->timer, &tv);
	return w;
}

void models_cancel(struct models_wait *w)
{
	if (w)
		models_wait_free(w);
}

void models_refresh(struct models *m)
{
	int i;

	for (i = 0; i < m->n_lanes; i++)
		models_fetch(&m->lanes[i]);
}

int models_new(struct llmqd *d, struct models **ret)
{
	struct models *m;
	int i, r;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->d = d;
	TAILQ_INIT(&m->waits);
	r = upstream_new(d->base, sched_instance_id(d->sched), &m->up);
	if (r < 0)
		goto fail;
	upstream_use_builtin(m->up, !d->cfg->upstream_curl);
	for (i = 0; i < d->cfg->n_lanes; i++) {
		struct models_lane *ml = &m->lanes[i];

		ml->m = m;
		ml->idx = i;
		ml->timer = evtimer_new(d->base, models_timer_cb, ml);
		if (!ml->timer) {
			r = -ENOMEM;
			goto fail;
		}
		m->n_lanes++;
	}
	models_refresh(m); /* at start */
	*ret = m;
	return 0;
fail:
	models_free(m);
	return r;
}

void models_free(struct models *m)
{
	struct models_wait *w;
	int i;

	if (!m)
		return;
	while ((w = TAILQ_FIRST(&m->waits)))
		models_wait_free(w);
	for (i = 0; i < m->n_lanes; i++) {
		struct models_lane *ml = &m->lanes[i];

		if (ml->t)
			upstream_abort(m->up, ml->t);
		if (ml->timer)
			event_free(ml->timer);
		json_object_put(ml->list);
	}
	upstream_free(m->up);
	free(m);
}
