/*
 * store-prune.c - retention's side of the store: one bounded prune step
 * (old jobs with their attempts, old calls, the batches left empty, then
 * free pages given back), and the batches held from it while their results
 * are read. When to prune is retention.c's.
 */
#include "store/store-private.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int prune_step(struct store *s, enum stmt_id id, int64_t before, int limit, const char *held,
                      int64_t *ret_n)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, id, &st);

	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, before);
	if (id != S_PRUNE_BATCHES)
		sqlite3_bind_int(st, 2, limit);
	if (id != S_PRUNE_CALLS)
		sqlite3_bind_text(st, 3, held ? held : "[]", -1, SQLITE_STATIC);
	return store_run(s, st, ret_n);
}

/* The held batches as a JSON array, for the prune statements. */
static int store_reading_text(struct store *s)
{
	json_object *a = json_object_new_array();
	char *text = NULL;
	int i;

	if (!a)
		return -ENOMEM;
	for (i = 0; i < s->n_held; i++)
		json_object_array_add(a, json_object_new_string(s->held[i].id));
	text = strdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
	json_object_put(a);
	if (!text)
		return -ENOMEM;
	free(s->reading);
	s->reading = text;
	return 0;
}

int store_batch_hold(struct store *s, const char *id)
{
	struct store_held *h;
	int i;

	for (i = 0; i < s->n_held; i++)
		if (strcmp(s->held[i].id, id) == 0) {
			s->held[i].n++;
			return 0;
		}
	if (s->n_held == s->cap_held) {
		int cap = s->cap_held ? s->cap_held * 2 : 8;

		h = realloc(s->held, (size_t)cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		s->held = h;
		s->cap_held = cap;
	}
	h = &s->held[s->n_held++];
	snprintf(h->id, sizeof(h->id), "%s", id);
	h->n = 1;
	return store_reading_text(s);
}

void store_batch_unhold(struct store *s, const char *id)
{
	int i;

	for (i = 0; i < s->n_held; i++) {
		if (strcmp(s->held[i].id, id) != 0)
			continue;
		if (--s->held[i].n == 0) {
			s->held[i] = s->held[--s->n_held];
			if (store_reading_text(s) < 0) {
				free(s->reading); /* "[]" then: the next hold builds it again */
				s->reading = NULL;
			}
		}
		return;
	}
}

char *store_held_copy(const struct store *s)
{
	return strdup(s->reading ? s->reading : "[]");
}

int store_prune_held(struct store *s, int64_t before, int limit, const char *held,
                     int64_t *ret_rows)
{
	int64_t jobs = 0, calls = 0, batches = 0;
	int r, own = !s->in_tx;

	if (own) {
		r = store_tx_begin(s);
		if (r < 0)
			return r;
	}
	r = prune_step(s, S_PRUNE_JOBS, before, limit, held, &jobs);
	if (r == 0)
		r = prune_step(s, S_PRUNE_CALLS, before, limit, held, &calls);
	if (r == 0 && jobs < limit)
		r = prune_step(s, S_PRUNE_BATCHES, before, limit, held, &batches);
	if (!own) {
		if (r == 0)
			*ret_rows = jobs + calls + batches;
		return r;
	}
	if (r == 0)
		r = store_tx_commit(s);
	if (r < 0) {
		store_tx_rollback(s);
		return r;
	}
	/* Refused (a full disk), the pages are given back at a later step. */
	if (jobs + calls + batches > 0)
		(void)store_vacuum_step(s, limit);
	*ret_rows = jobs + calls + batches;
	return 0;
}

int store_vacuum_step(struct store *s, int pages)
{
	char sql[64];

	snprintf(sql, sizeof(sql), "PRAGMA incremental_vacuum(%d)", pages);
	return store_exec(s, sql);
}

int store_prune(struct store *s, int64_t before, int limit, int64_t *ret_rows)
{
	return store_prune_held(s, before, limit, s->reading, ret_rows);
}
