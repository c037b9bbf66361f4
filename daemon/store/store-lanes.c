/*
 * store-lanes.c - what is kept of a lane across restarts: the window its
 * upstream was learned to count in (lane_state), and an operator's pause
 * (lane_paused). A lane's live state is the engine's.
 */
#include "store/store-private.h"

#include <stdint.h>
#include <stdio.h>

int store_lane_window_get(struct store *s, const char *lane, const char *base_url, char *window,
                          size_t len, int64_t *ret_at, int64_t *ret_phase)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *v;
	int r = store_prep(s, S_LANE_WINDOW_GET, &st), rc;

	if (r < 0)
		return r;
	store_bind_text(st, 1, lane);
	store_bind_text(st, 2, base_url);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		v = sqlite3_column_text(st, 0);
		snprintf(window, len, "%s", v ? (const char *)v : "");
		*ret_at = sqlite3_column_int64(st, 1);
		*ret_phase =
		    sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 2);
		r = 1;
	} else {
		r = store_errno(rc);
	}
	sqlite3_reset(st);
	return r;
}

int store_lane_window_set(struct store *s, const char *lane, const char *base_url,
                          const char *window, int64_t at, int64_t phase)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_LANE_WINDOW_SET, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, lane);
	store_bind_text(st, 2, base_url);
	store_bind_text(st, 3, window);
	sqlite3_bind_int64(st, 4, at);
	store_bind_opt_int(st, 5, phase);
	return store_run(s, st, NULL);
}

int store_lane_paused_get(struct store *s, const char *lane, int64_t *ret_at, int64_t *ret_by)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_LANE_PAUSED_GET, &st), rc;

	if (r < 0)
		return r;
	store_bind_text(st, 1, lane);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret_at = sqlite3_column_int64(st, 0);
		*ret_by =
		    sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : store_errno(rc);
}

int store_lane_paused_set(struct store *s, const char *lane, int64_t at, int64_t by)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, at > 0 ? S_LANE_PAUSED_SET : S_LANE_PAUSED_DEL, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, lane);
	if (at > 0) {
		sqlite3_bind_int64(st, 2, at);
		store_bind_opt_int(st, 3, by);
	}
	return store_run(s, st, NULL);
}
