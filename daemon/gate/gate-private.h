/*
 * gate-private.h - what the gate's files share and nobody else sees: the
 * limits in force (the lane's, or the provider's when lower), the buckets'
 * sizes now, and the bound on debt (gate.c), for the provider's figures and
 * windows (gate-provider.c).
 */
#ifndef LLMQ_GATE_PRIVATE_H
#define LLMQ_GATE_PRIVATE_H

#include "gate/gate.h"

#include <stdint.h>

/* The per-minute limits in force: the lane's, or the provider's when lower. */
int64_t gate_tpm_limit(const struct gate *g);
int64_t gate_rpm_limit(const struct gate *g);

/* The request bucket's capacity: its burst (one at least), slack and pocket. */
double gate_req_capacity(const struct gate *g);

/* Whether the provider's latest figures are believed (see gate.c). */
int gate_provider_fresh(const struct gate *g, int64_t now);

/* Whether the lane counts its budget in fixed windows (GATE_WINDOW_SECOND). */
int gate_fixed(const struct gate *g);

/* What the buckets may hold now. */
double gate_tok_cap_now(const struct gate *g, int64_t now);
double gate_req_cap_now(const struct gate *g, int64_t now);

/* The buckets' debt kept to a minute of the budget (see gate.c). */
void gate_bound_debt(struct gate *g);

#endif
