/*
 * hop.h - the hop header that keeps llmqds from forwarding a request in a
 * circle. Every request llmqd sends upstream carries "llmq-via: ID[, ID...]":
 * the instance ids (random, made at each start) of the llmqds it passed,
 * each appending its own. A request that arrives with our own id in it, or
 * that has already passed HOP_MAX llmqds, is a loop: it is answered 508 at
 * once instead of being sent on. A legitimate chain (a host's llmqd in front
 * of a central one) carries distinct ids and passes. Pure: no I/O but the
 * random draw of hop_new_id().
 */
#ifndef LLMQ_HOP_H
#define LLMQ_HOP_H

#include <stddef.h>

#define HOP_HEADER "llmq-via"
#define HOP_ID_LEN 16 /* hex digits */
/* More llmqds than this on one request's way is taken for a loop. */
#define HOP_MAX 8
/* The longest header value taken from a caller: HOP_MAX ids and separators. */
#define HOP_VIA_MAX (HOP_MAX * (HOP_ID_LEN + 2))
/* Room for what hop_append() makes of an accepted value. */
#define HOP_BUF_LEN (HOP_VIA_MAX + HOP_ID_LEN + 3)

/* A fresh instance id: HOP_ID_LEN hex digits. 0, or -errno. */
int hop_new_id(char ret[HOP_ID_LEN + 1]);

/*
 * Whether a request whose hop header is via (NULL: none) may be sent on by
 * the llmqd whose id is self: 0; -ELOOP when via already names self;
 * -EMLINK when it has passed HOP_MAX llmqds or more (or is longer than any
 * chain of them). *ret_hops (may be NULL) is the number of ids in via.
 */
int hop_check(const char *via, const char *self, int *ret_hops);

/* The header value to send on: via (NULL: none) with self appended. 0, or -E2BIG. */
int hop_append(const char *via, const char *self, char *buf, size_t len);

#endif
