/*
 * params.h - parameters for Criterion's ParameterizedTest. Each test runs in
 * a fresh worker process, so parameters (and the strings they point to) must
 * live in Criterion's shared memory: copy them there with cr_malloc.
 */
#ifndef LLMQ_TEST_PARAMS_H
#define LLMQ_TEST_PARAMS_H

#include <criterion/alloc.h>
#include <criterion/parameterized.h>
#include <string.h>

static inline char *params_strdup(const char *s)
{
	size_t n;
	char *p;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	p = cr_malloc(n);
	memcpy(p, s, n);
	return p;
}

/* Copy n structs of size sz into shared memory; dup_strings fixes up each. */
static inline void *params_copy(const void *src, size_t n, size_t sz, void (*dup_strings)(void *))
{
	char *dst = cr_malloc(n * sz);
	size_t i;

	memcpy(dst, src, n * sz);
	for (i = 0; i < n; i++)
		dup_strings(dst + i * sz);
	return dst;
}

#endif
