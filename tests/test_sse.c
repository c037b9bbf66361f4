/*
 * The usage a streamed answer reports, read from its bytes whatever the
 * pieces they come in.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "http/sse.h"

/* text fed in pieces of piece bytes: the usage the scanner ends with. */
static int64_t scan_in_pieces(const char *text, size_t len, size_t piece)
{
	struct sse_scan s;
	size_t i;
	int64_t used;

	sse_scan_init(&s);
	for (i = 0; i < len; i += piece)
		sse_scan_feed(&s, text + i, len - i < piece ? len - i : piece);
	used = s.used;
	sse_scan_clear(&s);
	return used;
}

Test(sse, the_last_usage_whatever_the_pieces)
{
	static const struct {
		const char *text;
		int64_t used;
	} cases[] = {
	    {"data: {\"choices\":[]}\n\ndata: {\"usage\":{\"total_tokens\":42}}\n\n"
	     "data: [DONE]\n\n",
	     42},
	    {"data: {\"usage\":{\"total_tokens\":7}}\r\n\r\n", 7},
	    {"event: response.completed\ndata: {\"response\":{\"usage\":{\"total_tokens\":9}}}\n\n",
	     9},
	    {"data: {\"usage\":{\"total_tokens\":1}}\ndata: {\"usage\":{\"total_tokens\":2}}\n", 2},
	    {"data: {\"usage\":null}\n", -1},
	    {"data: {\"usage\":{\"total_tokens\":-3}}\n", -1},
	    {"data: {\"usage\":{\"total_tokens\":5}}", -1}, /* no line end: not a whole line */
	    {"data:{\"usage\":{\"total_tokens\":5}}\n", -1},
	    {"data: {\"text\":\"\\\"usage\\\"\"}\n", -1},
	    {"\n\ndata: {\"usage\":{\"total_tokens\":4}}\n", 4}, /* empty lines first */
	};
	size_t i, piece, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = strlen(cases[i].text);
		for (piece = 1; piece <= len; piece++)
			cr_assert_eq(scan_in_pieces(cases[i].text, len, piece), cases[i].used,
			             "case %zu in pieces of %zu", i, piece);
	}
}

Test(sse, a_line_past_the_bound_is_skipped_and_the_next_read)
{
	static const char usage[] = "\ndata: {\"usage\":{\"total_tokens\":11}}\n";
	static const char long_head[] = "data: {\"usage\":{\"total_tokens\":99}, \"pad\":\"";
	size_t len = SSE_LINE_MAX + 100 + sizeof(usage) - 1;
	char *text = malloc(len);

	cr_assert(text);
	memset(text, 'x', len);
	/* One valid line of SSE_LINE_MAX + 100 bytes that reports 99. */
	memcpy(text, long_head, sizeof(long_head) - 1);
	memcpy(text + SSE_LINE_MAX + 98, "\"}", 2);
	memcpy(text + SSE_LINE_MAX + 100, usage, sizeof(usage) - 1);
	cr_assert_eq(scan_in_pieces(text, len, 4096), 11);
	/* Alone, the long line is not read. */
	cr_assert_eq(scan_in_pieces(text, SSE_LINE_MAX + 101, 4096), -1);
	free(text);
}

/* All of the usage, for its cost: prompt, cached, completion, whatever the pieces. */
Test(sse, the_whole_usage_for_its_cost)
{
	static const char text[] =
	    "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
	    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,"
	    "\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\n"
	    "data: [DONE]\n\n";
	static const char responses[] =
	    "event: response.completed\ndata: {\"response\":{\"usage\":{\"input_tokens\":4,"
	    "\"input_tokens_details\":{\"cached_tokens\":2},\"output_tokens\":3,"
	    "\"total_tokens\":7}}}\n\n";
	struct sse_scan s;
	size_t piece, i, len = strlen(text);

	for (piece = 1; piece <= len; piece++) {
		sse_scan_init(&s);
		for (i = 0; i < len; i += piece)
			sse_scan_feed(&s, text + i, len - i < piece ? len - i : piece);
		cr_assert(s.usage.prompt == 12 && s.usage.cached == 8 && s.usage.completion == 5 &&
		              s.usage.total == 17 && s.used == 17,
		          "in pieces of %zu", piece);
		sse_scan_clear(&s);
	}
	sse_scan_init(&s);
	sse_scan_feed(&s, responses, strlen(responses));
	cr_assert(s.usage.prompt == 4 && s.usage.cached == 2 && s.usage.completion == 3 &&
	          s.usage.total == 7);
	sse_scan_clear(&s);
	sse_scan_init(&s);
	cr_assert_eq(s.usage.total, -1, "none reported yet");
	sse_scan_clear(&s);
}
