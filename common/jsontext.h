/*
 * jsontext.h - JSON text handled as bytes, for answers too large to parse
 * into objects: making it one line, finding one member near its end, and
 * the bytes of a member's value (a batch line's body, kept as it came).
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

/*
 * Where the value of the member named key of the object that is the JSON
 * text s[0..len) lies, as bytes of s: *ret_off and *ret_len, of the last
 * such member (as a parser that keeps the last of a name reads it). 0;
 * -ENOENT when there is none; -EINVAL when s is not one valid object, or
 * when one of its names is written with an escape (it might be key).
 */
int jsontext_member(const char *s, size_t len, const char *key, size_t *ret_off, size_t *ret_len);

#endif
