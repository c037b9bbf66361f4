/*
 * gate-grant.c - a lane's launches granted several at once, or how long to
 * wait: hosts of a fleet taking turns at a lane's batches, a waiting call's
 * claim on the next launch, a launch made elsewhere adopted; and the gate's
 * state as numbers, by name (what the fleet's shared gate keeps in Redis).
 * Pure, as gate.c: the clock is an argument.
 */
#include "gate/gate-private.h"

#include <stdio.h>
#include <string.h>

/* When a slot may be free: the oldest launch's expected end. */
static int64_t gate_slot_wait(const struct gate *g, int64_t oldest_at, int64_t now)
{
	int64_t w = GATE_SLOT_WAIT_UNKNOWN_MS;

	if (oldest_at != GATE_NEVER && g->lat_ms > 0)
		w = oldest_at + g->lat_ms - now;
	if (w < GATE_SLOT_WAIT_MIN_MS)
		w = GATE_SLOT_WAIT_MIN_MS;
	if (w > GATE_SLOT_WAIT_MAX_MS)
		w = GATE_SLOT_WAIT_MAX_MS;
	return w;
}

/* Turns past their time are given up. */
static void gate_turns_expire(struct gate *g, int64_t now)
{
	int i, k = 0;

	for (i = 0; i < g->n_turns; i++)
		if (g->turns[i].until > now)
			g->turns[k++] = g->turns[i];
	g->n_turns = k;
}

static int gate_turn_of(const struct gate *g, const char *host)
{
	int i;

	for (i = 0; i < g->n_turns; i++)
		if (strcmp(g->turns[i].host, host) == 0)
			return i;
	return -1;
}

/* The host waits until until: it keeps its place, or takes the last. */
static void gate_turn_wait(struct gate *g, const char *host, int64_t until)
{
	int i = gate_turn_of(g, host);

	if (i < 0) {
		if (g->n_turns == GATE_TURNS || strlen(host) > GATE_HOST_MAX)
			return;
		i = g->n_turns++;
		snprintf(g->turns[i].host, sizeof(g->turns[i].host), "%s", host);
	}
	g->turns[i].until = until;
}

void gate_grant(struct gate *g, const struct gate_ask *ask, int64_t now, struct gate_grant *ret)
{
	enum gate_block why = GATE_OK;
	int64_t t = now, until;
	int n = ask->n < 1 ? 1 : ask->n > GATE_GRANT_MAX ? GATE_GRANT_MAX : ask->n;
	int turns = ask->cls == GATE_BATCH && ask->host && ask->host[0], mine = -1;

	memset(ret, 0, sizeof(*ret));
	ret->probation = gate_probation(g, now);
	if (turns) {
		gate_turns_expire(g, now);
		mine = gate_turn_of(g, ask->host);
		if (g->n_turns > 0 && mine != 0) {
			/* Another host's batch was told to wait first: it goes first. */
			ret->why = GATE_TURN;
			ret->wait_ms = g->turns[0].until - now;
			gate_turn_wait(g, ask->host, now + ret->wait_ms + GATE_TURN_GRACE_MS);
			return;
		}
	}
	while (ret->granted < n) {
		t = gate_when(g, ask->cls, ask->cost, now, &why);
		if (t > now)
			break;
		gate_launch(g, ask->cls, ask->cost, now, ask->jitter01, &ret->marks[ret->granted]);
		ret->granted++;
	}
	if (ask->cls == GATE_INTERACTIVE && ask->claim && ret->granted > 0 &&
	    g->claim == ask->claim) {
		g->claim = 0;
		g->claim_until = 0;
	}
	/* Its turn taken: the next host's comes. */
	if (turns && mine == 0 && ret->granted > 0) {
		memmove(&g->turns[0], &g->turns[1], sizeof(g->turns[0]) * (size_t)(g->n_turns - 1));
		g->n_turns--;
	}
	if (ret->granted == n)
		return;
	ret->why = why;
	ret->wait_ms = t == GATE_NEVER ? gate_slot_wait(g, ask->oldest_at, now) : t - now;
	if (turns && ret->granted == 0)
		gate_turn_wait(g, ask->host, now + ret->wait_ms + GATE_TURN_GRACE_MS);
	if (ask->cls == GATE_INTERACTIVE && ask->claim && ret->granted == 0) {
		until = now + ret->wait_ms + GATE_CLAIM_GRACE_MS;
		if (g->claim_until <= now || g->claim == ask->claim || until > g->claim_until) {
			g->claim_until = until;
			g->claim = ask->claim;
		}
	}
}

void gate_adopt(struct gate *g, enum gate_class cls, int64_t cost, int64_t now)
{
	g->in_flight++;
	g->class_in_flight[cls]++;
	gate_charge(g, cost, 1, now);
}

const char *const gate_field_names[GATE_FIELDS] = {
    "in_flight",
    "in_flight_batch",
    "in_flight_interactive",
    "share_batch",
    "share_interactive",
    "share_at",
    "caller_seen_at",
    "callers_seen",
    "next_launch",
    "tok",
    "req",
    "refilled_at",
    "paused_until",
    "seq_tokens",
    "seq_requests",
    "seq_refunds",
    "provider_tpm",
    "provider_rpm",
    "window",
    "probe",
    "prov_tok_bucket",
    "prov_req_bucket",
    "prov_tok_cap",
    "prov_req_cap",
    "prov_seen_at",
    "prov_mark_tokens",
    "win_end",
    "allow_ms",
    "allow_mark",
    "faults",
    "fault_since",
    "breaker_ms",
    "no_credit_since",
    "learned",
    "learned_at",
    "confirmed_at",
    "probation_since",
    "lat_ms",
    "claim_until",
};

const unsigned char gate_field_is_time[GATE_FIELDS] = {
    [5] = 1,  [6] = 1,  [8] = 1,  [11] = 1, [12] = 1, [24] = 1, [26] = 1,
    [30] = 1, [32] = 1, [34] = 1, [35] = 1, [36] = 1, [38] = 1,
};

void gate_pack(const struct gate *g, double out[GATE_FIELDS])
{
	const double v[GATE_FIELDS] = {
	    g->in_flight,
	    g->class_in_flight[GATE_BATCH],
	    g->class_in_flight[GATE_INTERACTIVE],
	    g->share[GATE_BATCH],
	    g->share[GATE_INTERACTIVE],
	    (double)g->share_at,
	    (double)g->caller_seen_at,
	    g->callers_seen,
	    (double)g->next_launch,
	    g->tok,
	    g->req,
	    (double)g->refilled_at,
	    (double)g->paused_until,
	    (double)g->seq_tokens,
	    (double)g->seq_requests,
	    (double)g->seq_refunds,
	    (double)g->provider_tpm,
	    (double)g->provider_rpm,
	    g->window,
	    g->probe,
	    g->prov_tok_bucket,
	    g->prov_req_bucket,
	    g->prov_tok_cap,
	    g->prov_req_cap,
	    (double)g->prov_seen_at,
	    (double)g->prov_mark_tokens,
	    (double)g->win_end,
	    (double)g->allow_ms,
	    (double)g->allow_mark,
	    g->faults,
	    (double)g->fault_since,
	    (double)g->breaker_ms,
	    (double)g->no_credit_since,
	    g->learned,
	    (double)g->learned_at,
	    (double)g->confirmed_at,
	    (double)g->probation_since,
	    (double)g->lat_ms,
	    (double)g->claim_until,
	};

	memcpy(out, v, sizeof(v));
}

void gate_unpack(struct gate *g, const double in[GATE_FIELDS])
{
	g->in_flight = (int)in[0];
	g->class_in_flight[GATE_BATCH] = (int)in[1];
	g->class_in_flight[GATE_INTERACTIVE] = (int)in[2];
	g->share[GATE_BATCH] = in[3];
	g->share[GATE_INTERACTIVE] = in[4];
	g->share_at = (int64_t)in[5];
	g->caller_seen_at = (int64_t)in[6];
	g->callers_seen = (int)in[7];
	g->next_launch = (int64_t)in[8];
	g->tok = in[9];
	g->req = in[10];
	g->refilled_at = (int64_t)in[11];
	g->paused_until = (int64_t)in[12];
	g->seq_tokens = (int64_t)in[13];
	g->seq_requests = (int64_t)in[14];
	g->seq_refunds = (int64_t)in[15];
	g->provider_tpm = (int64_t)in[16];
	g->provider_rpm = (int64_t)in[17];
	g->window = (int)in[18];
	g->probe = (int)in[19];
	g->prov_tok_bucket = in[20];
	g->prov_req_bucket = in[21];
	g->prov_tok_cap = in[22];
	g->prov_req_cap = in[23];
	g->prov_seen_at = (int64_t)in[24];
	g->prov_mark_tokens = (int64_t)in[25];
	g->win_end = (int64_t)in[26];
	g->allow_ms = (int64_t)in[27];
	g->allow_mark = (int64_t)in[28];
	g->faults = (int)in[29];
	g->fault_since = (int64_t)in[30];
	g->breaker_ms = (int64_t)in[31];
	g->no_credit_since = (int64_t)in[32];
	g->learned = (int)in[33];
	g->learned_at = (int64_t)in[34];
	g->confirmed_at = (int64_t)in[35];
	g->probation_since = (int64_t)in[36];
	g->lat_ms = (int64_t)in[37];
	g->claim_until = (int64_t)in[38];
}
