/*
 * fuzz_text.c - cleaning and escaping caller-given text (common/text.c),
 * fed any bytes as a file name, a batch's name or a log line's argument.
 *
 * Beyond not crashing: what text_clean() leaves and what text_escape()
 * writes hold no control character and no byte that is not UTF-8, on one
 * line; cleaning is idempotent and never lengthens; text that has no
 * control character is left as it is by both (escape doubling only its
 * backslashes); and an escape cut short by its buffer is a prefix of the
 * whole one.
 */
#include "fuzz.h"

#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *c = malloc(size + 1), *e = malloc(TEXT_ESCAPED_MAX(size));
	char small[17];
	size_t n, i, bs = 0;

	FUZZ_ASSERT(s && c && e, "out of memory");
	memcpy(s, data, size);
	s[size] = '\0'; /* text is a C string: it ends at the first NUL */
	n = strlen(s);
	memcpy(c, s, n + 1);
	FUZZ_ASSERT(text_clean(c) == strlen(c), "the length returned is the length");
	FUZZ_ASSERT(strlen(c) <= n, "cleaning lengthened %zu to %zu", n, strlen(c));
	FUZZ_ASSERT(!text_has_control(c), "a control byte survived cleaning");
	FUZZ_ASSERT(!strchr(c, '\n') && !strchr(c, '\x1b'), "a line break or ESC survived");
	memcpy(e, c, strlen(c) + 1);
	text_clean(e);
	FUZZ_ASSERT(strcmp(e, c) == 0, "cleaning twice changed the text");
	text_escape(s, e, TEXT_ESCAPED_MAX(n));
	FUZZ_ASSERT(!text_has_control(e), "a control byte survived escaping");
	for (i = 0; i < n; i++)
		bs += s[i] == '\\';
	if (!text_has_control(s)) {
		FUZZ_ASSERT(strcmp(c, s) == 0, "clean text was changed by cleaning");
		FUZZ_ASSERT(strlen(e) == n + bs, "clean text grew past its backslashes");
	}
	text_escape(s, small, sizeof(small));
	FUZZ_ASSERT(strncmp(small, e, strlen(small)) == 0, "a cut escape is not a prefix");
	FUZZ_ASSERT(!text_has_control(small), "a cut escape split a character");
	free(s);
	free(c);
	free(e);
	return 0;
}
