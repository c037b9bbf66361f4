/*
 * text.c - see text.h.
 */
#include "text.h"

#include <stdint.h>
#include <string.h>

/*
 * The length of the character at s when it may be shown as it is (1..4), or
 * 0 when it is a control character or not UTF-8 (one byte then goes).
 */
static size_t text_char_ok(const unsigned char *s)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80)
		return s[0] < 0x20 && s[0] != '\t' ? 0 : s[0] == 0x7f ? 0 : 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0; /* also stops at the NUL */
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates, past U+10FFFF, and the C1 controls. */
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
		return 0;
	return n;
}

int text_has_control(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	while (*p) {
		n = text_char_ok(p);
		if (!n)
			return 1;
		p += n;
	}
	return 0;
}

size_t text_clean(char *s)
{
	unsigned char *p = (unsigned char *)s, *o = p;
	size_t n, bad;

	while (*p) {
		n = text_char_ok(p);
		if (n) {
			memmove(o, p, n);
			o += n;
			p += n;
			continue;
		}
		/* A C1 control is two bytes of UTF-8: one '?' for the character. */
		bad = p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f ? 2 : 1;
		*o++ = '?';
		p += bad;
	}
	*o = '\0';
	return (size_t)(o - (unsigned char *)s);
}

char *text_escape(const char *s, char *buf, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0, n;

	if (len == 0)
		return buf;
	while (*p) {
		n = text_char_ok(p);
		if (n && *p == '\\') {
			if (o + 2 >= len)
				break;
			buf[o++] = '\\';
			buf[o++] = '\\';
			p++;
		} else if (n) {
			if (o + n >= len)
				break;
			memcpy(buf + o, p, n);
			o += n;
			p += n;
		} else {
			if (o + 4 >= len)
				break;
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = digits[*p >> 4];
			buf[o++] = digits[*p & 15];
			p++;
		}
	}
	buf[o] = '\0';
	return buf;
}
