/*
 * protocol.h - the llmq wire protocol, in one place.
 *
 * Client and daemon speak newline-delimited JSON over a SOCK_STREAM Unix
 * socket. Every request is one object carrying "v" (the protocol version) and
 * "op"; every answer is {"ok": true, ...} or
 * {"ok": false, "error": {"code", "message", ...}}. A submit header is
 * followed by exactly "lines" raw input lines (OpenAI Batch API JSONL).
 *
 * This file owns names, limits and the validation of one input line. It does
 * no I/O and does not log.
 */
#ifndef LLMQ_PROTOCOL_H
#define LLMQ_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#define LLMQ_PROTO_VERSION 1

/* Limits. Every user-controlled resource has one. */
#define LLMQ_MAX_LINE (8u * 1024 * 1024)    /* one request or input line */
#define LLMQ_MAX_BATCH_LINES 50000          /* as the hosted Batch API */
#define LLMQ_MAX_BATCH_BYTES (200ull << 20) /* as the hosted Batch API */
#define LLMQ_MAX_CUSTOM_ID 512
#define LLMQ_MAX_MODEL 256 /* a body's "model": stored with every job and call */
#define LLMQ_MAX_NAME 255  /* a batch's name, an uploaded file's name (NAME_MAX) */
#define LLMQ_MAX_CONNECTIONS 64
#define LLMQ_MAX_INGESTS 4         /* submits being received at once */
#define LLMQ_MAX_INGESTS_PER_UID 2 /* ... by one user: the others keep a share */
#define LLMQ_RESULTS_PAGE 256
#define LLMQ_RESULTS_PAGE_BYTES (4u << 20) /* a page ends after the line that passes this */
#define LLMQ_MAX_REPORTED_ERRORS 20
#define LLMQ_MAX_PRIORITY 1000 /* a submit's priority is -this..this */

/* Operations. */
#define OP_PING "ping"
#define OP_SUBMIT "submit"
#define OP_STATUS "status"
#define OP_LIST "list"
#define OP_CANCEL "cancel"
#define OP_RESULTS "results"
#define OP_METRICS "metrics"
#define OP_USAGE "usage"
#define OP_PAUSE "pause"
#define OP_RESUME "resume"
#define OP_RETRY "retry"
#define OP_SET "set"

/* Error codes. */
#define ERR_BAD_REQUEST "BAD_REQUEST"
#define ERR_UNKNOWN_OP "UNKNOWN_OP"
#define ERR_VERSION "PROTOCOL_VERSION"
#define ERR_LINE_TOO_LONG "LINE_TOO_LONG"
#define ERR_BATCH_TOO_LARGE "BATCH_TOO_LARGE"
#define ERR_INVALID_BATCH "INVALID_BATCH"
#define ERR_NOT_FOUND "NOT_FOUND"
#define ERR_BUSY "BUSY"
#define ERR_RATE_LIMITED "BATCH_RATE_LIMITED"
#define ERR_STORAGE "STORAGE"      /* the database or its disk cannot take it now */
#define ERR_QUOTA "QUOTA_EXCEEDED" /* the user holds what a per-user bound allows */
#define ERR_INTERNAL "INTERNAL"
#define ERR_TIMEOUT "TIMEOUT"              /* a request or its lines came too slowly */
#define ERR_PERMISSION "PERMISSION_DENIED" /* an operator's op, asked by someone else */

/* A submit's idempotency key: 1..64 of [A-Za-z0-9._:-]. */
#define LLMQ_MAX_IDEMPOTENCY_KEY 64
int proto_valid_idempotency_key(const char *key);

/* The URLs the Batch API accepts on an input line. */
extern const char *const proto_batch_urls[];

/* The states a batch may be in (the schema's CHECK), NULL-terminated; the
 * list op filters by them. */
extern const char *const proto_batch_states[];
/* Its index in proto_batch_states, or -EINVAL. */
int proto_batch_state_index(const char *state);

/*
 * One validated input line. root owns everything; the pointers borrow from it.
 */
struct proto_input {
	json_object *root;
	const char *custom_id;
	const char *url;
	const char *model;
	json_object *body;
};

/*
 * Parse and validate one Batch API input line. On failure returns -EINVAL and
 * writes a reason (without the line number) to err.
 */
int proto_parse_input(const char *line, size_t len, struct proto_input *ret, char *err,
                      size_t errlen);
void proto_input_clear(struct proto_input *in);

/* Parse text (exactly len bytes) as one JSON object; -EINVAL with a reason. */
int proto_parse_object(const char *text, size_t len, json_object **ret, char *err, size_t errlen);

/* 1 when url is one of proto_batch_urls. */
int proto_known_url(const char *url);

/*
 * Check a request body (a batch line's "body", or an HTTP call's): it names
 * a model; "stream" only where stream_ok. The model borrows from body.
 */
int proto_check_body(json_object *body, int stream_ok, const char **ret_model, char *err,
                     size_t errlen);

/* Build a request object {"v":1,"op":op}. */
json_object *proto_request(const char *op);

/* Build {"ok":false,"error":{"code":code,"message":message}}. */
json_object *proto_error(const char *code, const char *message);

/* Build {"ok":true}. */
json_object *proto_ok(void);

/* Check a request's version and op; on failure returns a ready error reply. */
json_object *proto_check_request(json_object *req, const char **ret_op);

/* Batch ids look like b_<16 hex>. */
int proto_valid_batch_id(const char *id);

#endif
