/*
 * peer.c - who is at the other end of a loopback TCP connection. The kernel
 * knows: the peer's socket is on this host, and NETLINK_SOCK_DIAG (inet_diag,
 * what ss(8) reads) tells its owner when asked for it by its four-tuple. A
 * connection from elsewhere has no owner here (-EADDRNOTAVAIL). Owns no state;
 * one request and one answer on a netlink socket opened for the question.
 */
#include "service/peer.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Whether addr is this host's loopback (127/8, ::1, or 127/8 mapped in v6). */
static int peer_loopback(const struct sockaddr_storage *a)
{
	const struct in6_addr *v6;

	if (a->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
	if (a->ss_family != AF_INET6)
		return 0;
	v6 = &((const struct sockaddr_in6 *)a)->sin6_addr;
	return IN6_IS_ADDR_LOOPBACK(v6) || (IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127);
}

/* The address (and port) as inet_diag wants it: v4-mapped v6 as v4. */
static int peer_diag_addr(const struct sockaddr_storage *a, __be32 out[4], __be16 *port)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)a;

	memset(out, 0, 4 * sizeof(__be32));
	if (a->ss_family == AF_INET) {
		out[0] = ((const struct sockaddr_in *)a)->sin_addr.s_addr;
		*port = ((const struct sockaddr_in *)a)->sin_port;
		return AF_INET;
	}
	*port = s6->sin6_port;
	if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		memcpy(out, &s6->sin6_addr.s6_addr[12], 4);
		return AF_INET;
	}
	memcpy(out, &s6->sin6_addr, 16);
	return AF_INET6;
}

int peer_tcp_uid(int fd, uid_t *ret_uid)
{
	struct sockaddr_storage local, remote;
	socklen_t ll = sizeof(local), rl = sizeof(remote);
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} q;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	struct timeval tv = {0, 200 * 1000};
	union {
		struct nlmsghdr nlh;
		char buf[8192];
	} a;
	struct inet_diag_msg *m;
	int nl = -1, r, family;
	__be16 lport, rport;
	ssize_t n;

	if (getsockname(fd, (struct sockaddr *)&local, &ll) < 0 ||
	    getpeername(fd, (struct sockaddr *)&remote, &rl) < 0)
		return -errno;
	if (!peer_loopback(&remote))
		return -EADDRNOTAVAIL;
	memset(&q, 0, sizeof(q));
	q.nlh.nlmsg_len = sizeof(q);
	q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	q.nlh.nlmsg_flags = NLM_F_REQUEST;
	q.nlh.nlmsg_seq = 1;
	/* The peer's socket, seen from its side: its source is our peer. */
	family = peer_diag_addr(&remote, q.req.id.idiag_src, &rport);
	if (peer_diag_addr(&local, q.req.id.idiag_dst, &lport) != family)
		return -EAFNOSUPPORT;
	q.req.sdiag_family = (__u8)family;
	q.req.sdiag_protocol = IPPROTO_TCP;
	q.req.idiag_states = ~0U;
	q.req.id.idiag_sport = rport;
	q.req.id.idiag_dport = lport;
	q.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	q.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return -errno;
	/* The kernel answers at once; the bound only guards against the unforeseen. */
	if (setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    sendto(nl, &q, sizeof(q), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
		r = -errno;
		goto out;
	}
	n = recv(nl, &a, sizeof(a), 0);
	if (n < 0) {
		r = -errno;
		goto out;
	}
	r = -ENOENT;
	if (!NLMSG_OK(&a.nlh, (size_t)n))
		goto out;
	if (a.nlh.nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = NLMSG_DATA(&a.nlh);

		if (a.nlh.nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error < 0)
			r = e->error;
		goto out;
	}
	if (a.nlh.nlmsg_type != SOCK_DIAG_BY_FAMILY || a.nlh.nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
		goto out;
	m = NLMSG_DATA(&a.nlh);
	*ret_uid = (uid_t)m->idiag_uid;
	r = 0;
out:
	close(nl);
	return r;
}
