/*
 * hop.c - the llmq-via hop header: instance ids, loop and length checks.
 */
#include "upstream/hop.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int hop_new_id(char ret[HOP_ID_LEN + 1])
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		return -errno;
	snprintf(ret, HOP_ID_LEN + 1, "%016llx", (unsigned long long)v);
	return 0;
}

int hop_check(const char *via, const char *self, int *ret_hops)
{
	size_t n, slen = strlen(self);
	int hops = 0, seen = 0;
	const char *p = via;

	while (p && *p) {
		p += strspn(p, " \t,");
		n = strcspn(p, " \t,");
		if (n == 0)
			break;
		hops++;
		if (n == slen && strncmp(p, self, n) == 0)
			seen = 1;
		p += n;
	}
	if (ret_hops)
		*ret_hops = hops;
	if (seen)
		return -ELOOP;
	if (hops >= HOP_MAX || (via && strlen(via) > HOP_VIA_MAX))
		return -EMLINK;
	return 0;
}

int hop_append(const char *via, const char *self, char *buf, size_t len)
{
	int n =
	    via && *via ? snprintf(buf, len, "%s, %s", via, self) : snprintf(buf, len, "%s", self);

	return n < 0 || (size_t)n >= len ? -E2BIG : 0;
}
