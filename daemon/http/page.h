/*
 * page.h - the live page's files (daemon/http/page/: index.html, page.css,
 * page.js, icon.svg), compiled into llmqd at build time by
 * daemon/http/page/embed.cmake: the page needs nothing from the disk, and
 * nothing from elsewhere. route-page.c serves them.
 */
#ifndef LLMQ_PAGE_H
#define LLMQ_PAGE_H

#include <stddef.h>

struct page_asset {
	const char *path; /* what it is served at: "/" for index.html, else "/NAME" */
	const char *type; /* its Content-Type */
	const unsigned char *data;
	size_t len;
};

extern const struct page_asset page_assets[];
extern const size_t page_assets_count;

#endif
