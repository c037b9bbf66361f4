/*
 * jsontext.c - see jsontext.h.
 */
#include "jsontext.h"

#include <errno.h>
#include <string.h>

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

#define MAX_DEPTH 512

static size_t skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && is_space(s[i]))
		i++;
	return i;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Each reader takes the token at *i and moves *i past it; 0 or -1. */
static int read_string(const char *s, size_t n, size_t *i)
{
	size_t k;

	if (*i >= n || s[*i] != '"')
		return -1;
	for ((*i)++; *i < n; (*i)++) {
		unsigned char c = (unsigned char)s[*i];

		if (c == '"') {
			(*i)++;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c != '\\')
			continue;
		if (++*i >= n)
			return -1;
		if (s[*i] == 'u') {
			for (k = 1; k <= 4; k++)
				if (*i + k >= n || !is_hex(s[*i + k]))
					return -1;
			*i += 4;
		} else if (!strchr("\"\\/bfnrt", s[*i]) || s[*i] == '\0') {
			return -1;
		}
	}
	return -1;
}

static int read_digits(const char *s, size_t n, size_t *i)
{
	size_t start = *i;

	while (*i < n && is_digit(s[*i]))
		(*i)++;
	return *i > start ? 0 : -1;
}

static int read_number(const char *s, size_t n, size_t *i)
{
	if (*i < n && s[*i] == '-')
		(*i)++;
	if (*i < n && s[*i] == '0')
		(*i)++;
	else if (read_digits(s, n, i) < 0)
		return -1;
	if (*i < n && s[*i] == '.') {
		(*i)++;
		if (read_digits(s, n, i) < 0)
			return -1;
	}
	if (*i < n && (s[*i] == 'e' || s[*i] == 'E')) {
		(*i)++;
		if (*i < n && (s[*i] == '+' || s[*i] == '-'))
			(*i)++;
		if (read_digits(s, n, i) < 0)
			return -1;
	}
	return 0;
}

static int read_word(const char *s, size_t n, size_t *i, const char *w)
{
	size_t k = strlen(w);

	if (n - *i < k || memcmp(s + *i, w, k) != 0)
		return -1;
	*i += k;
	return 0;
}

static int read_value(const char *s, size_t n, size_t *i, int depth);

/* An object or an array: its members, each a value (after a name in an object). */
static int read_container(const char *s, size_t n, size_t *i, int depth)
{
	char close = s[*i] == '{' ? '}' : ']';

	if (depth >= MAX_DEPTH)
		return -1;
	*i = skip_ws(s, n, *i + 1);
	if (*i < n && s[*i] == close) {
		(*i)++;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			if (read_string(s, n, i) < 0)
				return -1;
			*i = skip_ws(s, n, *i);
			if (*i >= n || s[*i] != ':')
				return -1;
			*i = skip_ws(s, n, *i + 1);
		}
		if (read_value(s, n, i, depth + 1) < 0)
			return -1;
		*i = skip_ws(s, n, *i);
		if (*i < n && s[*i] == close) {
			(*i)++;
			return 0;
		}
		if (*i >= n || s[*i] != ',')
			return -1;
		*i = skip_ws(s, n, *i + 1);
	}
}

static int read_value(const char *s, size_t n, size_t *i, int depth)
{
	if (*i >= n)
		return -1;
	switch (s[*i]) {
	case '{':
	case '[':
		return read_container(s, n, i, depth);
	case '"':
		return read_string(s, n, i);
	case 't':
		return read_word(s, n, i, "true");
	case 'f':
		return read_word(s, n, i, "false");
	case 'n':
		return read_word(s, n, i, "null");
	default:
		return read_number(s, n, i);
	}
}

int jsontext_valid(const char *s, size_t len)
{
	size_t i = skip_ws(s, len, 0);

	if (read_value(s, len, &i, 0) < 0)
		return 0;
	return skip_ws(s, len, i) == len;
}

int jsontext_compact(char *s, size_t *len)
{
	size_t i, o = 0;
	int in_str = 0;

	if (!jsontext_valid(s, *len))
		return -EINVAL;
	for (i = 0; i < *len; i++) {
		char c = s[i];

		if (in_str) {
			s[o++] = c;
			if (c == '\\' && i + 1 < *len)
				s[o++] = s[++i];
			else if (c == '"')
				in_str = 0;
		} else if (!is_space(c)) {
			in_str = c == '"';
			s[o++] = c;
		}
	}
	*len = o;
	return 0;
}

const char *jsontext_last_object(const char *s, size_t len, const char *key)
{
	size_t klen = strlen(key), i, j;

	if (len < klen + 2)
		return NULL;
	for (i = len - klen - 2 + 1; i-- > 0;) {
		if (s[i] != '"' || memcmp(s + i + 1, key, klen) != 0 || s[i + klen + 1] != '"')
			continue;
		if (i > 0 && s[i - 1] == '\\')
			continue; /* the name inside a string: \"key\" */
		for (j = i + klen + 2; j < len && is_space(s[j]); j++)
			;
		if (j == len || s[j] != ':')
			continue;
		for (j++; j < len && is_space(s[j]); j++)
			;
		if (j < len && s[j] == '{')
			return s + j;
	}
	return NULL;
}

int jsontext_member(const char *s, size_t len, const char *key, size_t *ret_off, size_t *ret_len)
{
	size_t klen = strlen(key), i = skip_ws(s, len, 0), name, value, off = 0, vlen = 0;
	int found = 0;

	if (i >= len || s[i] != '{')
		return -EINVAL;
	i = skip_ws(s, len, i + 1);
	if (i < len && s[i] == '}')
		return skip_ws(s, len, i + 1) == len ? -ENOENT : -EINVAL;
	for (;;) {
		name = i;
		if (read_string(s, len, &i) < 0 || memchr(s + name, '\\', i - name))
			return -EINVAL;
		value = skip_ws(s, len, i);
		if (value >= len || s[value] != ':')
			return -EINVAL;
		value = skip_ws(s, len, value + 1);
		if (i - name == klen + 2 && memcmp(s + name + 1, key, klen) == 0) {
			found = 1;
			off = value;
		}
		i = value;
		if (read_value(s, len, &i, 1) < 0)
			return -EINVAL;
		if (found && off == value)
			vlen = i - value;
		i = skip_ws(s, len, i);
		if (i < len && s[i] == '}')
			break;
		if (i >= len || s[i] != ',')
			return -EINVAL;
		i = skip_ws(s, len, i + 1);
	}
	if (skip_ws(s, len, i + 1) != len)
		return -EINVAL;
	if (!found)
		return -ENOENT;
	*ret_off = off;
	*ret_len = vlen;
	return 0;
}
