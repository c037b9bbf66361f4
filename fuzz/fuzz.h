/*
 * fuzz.h - what the fuzz targets share: the libFuzzer entry points, a
 * deterministic stream of piece sizes drawn from the input itself (so a
 * crash replays from its file alone), a transcript of what a parser
 * reported (two feeds of the same bytes must write the same one), and an
 * assertion that aborts with a message, which libFuzzer and the replay
 * both report as a failure.
 *
 * Each fuzz_<name>.c defines LLVMFuzzerTestOneInput(); built with clang
 * -fsanitize=fuzzer it is a libFuzzer target, built with any compiler and
 * replay.c it replays files (the regression inputs and the seed corpus).
 */
#ifndef LLMQ_FUZZ_H
#define LLMQ_FUZZ_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_ASSERT(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);                 \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Piece sizes: 1 to 64 bytes mostly, now and then up to 4 KiB. */
struct fuzz_rng {
	uint64_t s;
};

static inline void fuzz_rng_seed(struct fuzz_rng *r, const uint8_t *data, size_t size)
{
	size_t i;

	r->s = 1469598103934665603ull; /* FNV-1a of the input */
	for (i = 0; i < size; i++)
		r->s = (r->s ^ data[i]) * 1099511628211ull;
	if (!r->s)
		r->s = 1;
}

static inline uint64_t fuzz_rng_next(struct fuzz_rng *r)
{
	r->s ^= r->s << 13; /* xorshift64 */
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return r->s;
}

/* The size of the next piece of left bytes (left > 0). */
static inline size_t fuzz_piece(struct fuzz_rng *r, size_t left)
{
	uint64_t x = fuzz_rng_next(r);
	size_t n = (x & 7) == 0 ? 1 + (size_t)(x >> 3) % 4096 : 1 + (size_t)(x >> 3) % 64;

	return n < left ? n : left;
}

/* A transcript: what a parser reported, in order. */
struct fuzz_log {
	char *p;
	size_t len, cap;
};

static inline void fuzz_log_add(struct fuzz_log *l, const void *p, size_t n)
{
	char *q;

	if (l->len + n > l->cap) {
		l->cap = (l->len + n) * 2 + 64;
		q = realloc(l->p, l->cap);
		FUZZ_ASSERT(q, "out of memory");
		l->p = q;
	}
	if (n)
		memcpy(l->p + l->len, p, n);
	l->len += n;
}

__attribute__((format(printf, 2, 3))) static inline void fuzz_log_printf(struct fuzz_log *l,
                                                                         const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	FUZZ_ASSERT(n >= 0 && (size_t)n < sizeof(buf), "a transcript line too long");
	fuzz_log_add(l, buf, (size_t)n);
}

/* Strings of any length, each followed by sep. */
static inline void fuzz_log_strs(struct fuzz_log *l, char sep, const char *const *strs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		fuzz_log_add(l, strs[i], strlen(strs[i]));
		fuzz_log_add(l, &sep, 1);
	}
}

static inline void fuzz_log_free(struct fuzz_log *l)
{
	free(l->p);
	memset(l, 0, sizeof(*l));
}

/* The same transcript from both feeds, or abort showing where they part. */
static inline void fuzz_log_same(const struct fuzz_log *a, const struct fuzz_log *b,
                                 const char *what)
{
	size_t i;

	if (a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0))
		return;
	for (i = 0; i < a->len && i < b->len && a->p[i] == b->p[i]; i++)
		;
	fprintf(stderr,
	        "%s: the transcripts part at byte %zu:\n--- whole:\n%.*s\n--- pieces:\n%.*s\n",
	        what, i, (int)(a->len < 2000 ? a->len : 2000), a->p ? a->p : "",
	        (int)(b->len < 2000 ? b->len : 2000), b->p ? b->p : "");
	abort();
}

#endif
