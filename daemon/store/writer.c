/*
 * writer.c - the writer thread: a queue of items under one mutex, a thread
 * that runs them one at a time on its own connection, and an eventfd that
 * wakes the loop to take them back. It knows nothing of what the items
 * write (writeback.c makes them); between items it checkpoints the WAL, so
 * that the checkpoint's fsync is not the loop's either.
 */
#include "store/writer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Idle this long, the writer checkpoints what the loop's connection wrote. */
#define WRITER_IDLE_MS 1000
/* A write of the loop's waits at most this for the writer's transaction. */
#define WRITER_LOCK_WAIT_MS 100
/* Having made the loop wait, the writer lets it have the lock first. */
#define WRITER_YIELD_NS 1000000

struct writer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t work;     /* to the writer: an item, or stop */
	pthread_cond_t answered; /* to a draining loop: an item is done */
	pthread_cond_t released; /* to a loop's write: the writer let go of the database */
	/* Under lock: all that the two threads share. */
	struct writer_item *in, **in_tail;
	struct writer_item *out, **out_tail;
	int stop;
	int locked;       /* the writer's connection holds the write lock */
	int loop_waiting; /* a write of the loop's waited for it */
	/* The writer thread's alone while it runs. */
	struct store *st;
	/* The loop's alone. */
	struct store *loop_st; /* the loop's connection: it checkpoints again once we stop */
	int efd;
	struct event *ev;
	int pending; /* handed over, their done() not yet run */
	int started;
};

static void writer_push(struct writer_item ***tail, struct writer_item *it)
{
	it->next = NULL;
	**tail = it;
	*tail = &it->next;
}

static void writer_deadline(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += WRITER_IDLE_MS / 1000;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct writer_item *it;
	struct timespec until;
	struct timespec pause = {0, WRITER_YIELD_NS};
	uint64_t one = 1;
	int yield;
	ssize_t n;

	/* Before the first item: its transaction does not read the schema. A
	 * failure costs nothing: each statement is prepared at its first use. */
	(void)store_prepare_all(w->st);
	pthread_mutex_lock(&w->lock);
	for (;;) {
		writer_deadline(&until);
		while (!w->in && !w->stop) {
			if (pthread_cond_timedwait(&w->work, &w->lock, &until) != ETIMEDOUT)
				continue;
			pthread_mutex_unlock(&w->lock);
			/* Passive: it waits for nobody, and a failure is retried next time. */
			store_checkpoint(w->st);
			pthread_mutex_lock(&w->lock);
			writer_deadline(&until);
		}
		if (!w->in)
			break; /* stopping, and nothing left */
		it = w->in;
		w->in = it->next;
		if (!w->in)
			w->in_tail = &w->in;
		yield = w->loop_waiting;
		w->loop_waiting = 0;
		pthread_mutex_unlock(&w->lock);
		if (yield)
			nanosleep(&pause, NULL);

		it->r = it->run(w->st, it);

		pthread_mutex_lock(&w->lock);
		writer_push(&w->out_tail, it);
		pthread_cond_signal(&w->answered);
		/* The loop drains the eventfd whole: a failed write (it is full, at
		 * 2^64 - 2) leaves it readable all the same. */
		n = write(w->efd, &one, sizeof(one));
		(void)n;
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

void writer_holds_lock(struct writer_item *it, int held)
{
	struct writer *w = it->w;

	if (!w)
		return; /* run on the loop (no writer): nothing to tell */
	pthread_mutex_lock(&w->lock);
	w->locked = held;
	if (!held)
		pthread_cond_broadcast(&w->released);
	pthread_mutex_unlock(&w->lock);
}

/* The loop's connection met the lock (store_on_sibling): was it ours? */
static int writer_sibling(void *userdata)
{
	struct writer *w = userdata;
	struct timespec until;
	int ours;

	pthread_mutex_lock(&w->lock);
	ours = w->locked;
	if (ours) {
		w->loop_waiting = 1;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += WRITER_LOCK_WAIT_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (w->locked &&
		       pthread_cond_timedwait(&w->released, &w->lock, &until) != ETIMEDOUT)
			;
		ours = !w->locked;
	}
	pthread_mutex_unlock(&w->lock);
	return ours;
}

/* On the loop: run done() for every item the writer finished. */
static void writer_take(struct writer *w)
{
	struct writer_item *it, *next;

	pthread_mutex_lock(&w->lock);
	it = w->out;
	w->out = NULL;
	w->out_tail = &w->out;
	pthread_mutex_unlock(&w->lock);
	for (; it; it = next) {
		next = it->next;
		w->pending--;
		it->done(it, it->r);
	}
}

static void writer_answered_cb(evutil_socket_t fd, short what, void *arg)
{
	struct writer *w = arg;
	uint64_t n;

	if (read(w->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return; /* cannot be: an eventfd's read fails only when it is zero */
	writer_take(w);
}

int writer_new(struct event_base *base, struct store *store, struct writer **ret)
{
	struct writer *w;
	sigset_t all, old;
	int r;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->efd = -1;
	w->in_tail = &w->in;
	w->out_tail = &w->out;
	r = pthread_mutex_init(&w->lock, NULL);
	if (r) {
		free(w);
		return -r;
	}
	r = -pthread_cond_init(&w->answered, NULL);
	if (r == 0) {
		pthread_condattr_t ca;

		r = -pthread_condattr_init(&ca);
		if (r == 0)
			r = -pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		if (r == 0)
			r = -pthread_cond_init(&w->work, &ca);
		if (r == 0) {
			r = -pthread_cond_init(&w->released, &ca);
			if (r < 0)
				pthread_cond_destroy(&w->work);
		}
		pthread_condattr_destroy(&ca);
		if (r < 0)
			pthread_cond_destroy(&w->answered);
	}
	if (r < 0) {
		pthread_mutex_destroy(&w->lock);
		free(w);
		return r;
	}
	w->started = 0;
	r = store_open_writer(store, &w->st);
	if (r < 0)
		goto out;
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		r = -errno;
		goto out;
	}
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, writer_answered_cb, w);
	if (!w->ev || event_add(w->ev, NULL) < 0) {
		r = -ENOMEM;
		goto out;
	}
	/* Signals are the loop's (libevent's handlers): the writer takes none. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&w->thread, NULL, writer_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r == 0) {
		w->started = 1;
		/* As top -H and /proc/PID/task show it. */
		pthread_setname_np(w->thread, "llmqd-writer");
	}
out:
	if (r < 0) {
		writer_free(w);
		return r;
	}
	/* The writer commits the outcomes: its connection checkpoints, not the loop's. */
	w->loop_st = store;
	store_autocheckpoint(store, 0);
	store_on_sibling(store, writer_sibling, w);
	*ret = w;
	return 0;
}

void writer_submit(struct writer *w, struct writer_item *it)
{
	it->w = w;
	w->pending++;
	pthread_mutex_lock(&w->lock);
	writer_push(&w->in_tail, it);
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->lock);
}

void writer_drain(struct writer *w)
{
	while (w->pending > 0) {
		pthread_mutex_lock(&w->lock);
		while (!w->out)
			pthread_cond_wait(&w->answered, &w->lock);
		pthread_mutex_unlock(&w->lock);
		writer_take(w);
	}
}

int writer_pending(const struct writer *w)
{
	return w->pending;
}

void writer_free(struct writer *w)
{
	if (!w)
		return;
	if (w->started) {
		writer_drain(w);
		pthread_mutex_lock(&w->lock);
		w->stop = 1;
		pthread_cond_signal(&w->work);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	if (w->loop_st) {
		store_autocheckpoint(w->loop_st, STORE_AUTOCHECKPOINT);
		store_on_sibling(w->loop_st, NULL, NULL);
	}
	if (w->ev)
		event_free(w->ev);
	if (w->efd >= 0)
		close(w->efd);
	store_free(w->st);
	pthread_cond_destroy(&w->work);
	pthread_cond_destroy(&w->released);
	pthread_cond_destroy(&w->answered);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
