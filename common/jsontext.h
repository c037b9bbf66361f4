/*
 * jsontext.h - JSON text handled as bytes, for answers too large to parse
 * into objects: making it one line, and finding one member near its end.
 * Pure: no allocation, no I/O.
 */
#ifndef LLMQ_JSONTEXT_H
#define LLMQ_JSONTEXT_H

#include <stddef.h>

/* Whether s[0..len) is one JSON text (RFC 8259; nesting up to 512 deep). */
int jsontext_valid(const char *s, size_t len);

/*
 * Remove the whitespace between the tokens of the JSON text s[0..*len), in
 * place (strings are kept byte for byte), so that it fits on one line.
 * Returns 0, or -EINVAL and leaves s untouched when s is not valid JSON.
 */
int jsontext_compact(char *s, size_t *len);

/*
 * The value of the last member named key in the JSON text s[0..len) that is
 * an object: a pointer to its '{', or NULL. A name inside a string value is
 * escaped (\") and is not taken for a member.
 */
const char *jsontext_last_object(const char *s, size_t len, const char *key);

#endif
