/*
 * route-files.h - what the Files API's two files share (route-files.c: the
 * routes, listings, downloads and deletion; route-files-upload.c: POST
 * /v1/files). Never included outside them.
 */
#ifndef LLMQ_HTTP_ROUTE_FILES_H
#define LLMQ_HTTP_ROUTE_FILES_H

#include <stdint.h>
#include <json-c/json.h>

struct llmqd;
struct hreq;
struct store_file;

/* The file object of the hosted API, for a stored file. */
json_object *route_files_object(const struct store_file *f);
/* POST /v1/files for uid (the route checked the caller): the form streamed to disk. */
void route_files_upload(struct llmqd *d, struct hreq *req, int64_t uid);

#endif
