/*
 * peer.h - the owner of the other end of a loopback TCP connection, as the
 * kernel reports it (NETLINK_SOCK_DIAG): a TCP caller on this host is known
 * by uid exactly as a Unix-socket caller is by SO_PEERCRED.
 */
#ifndef LLMQ_PEER_H
#define LLMQ_PEER_H

#include <sys/types.h>

/*
 * The uid owning the peer socket of the connected TCP socket fd: 0, or
 * -EADDRNOTAVAIL when the peer is not on this host's loopback, -ENOENT when
 * the kernel knows no such socket (it closed meanwhile), or -errno.
 */
int peer_tcp_uid(int fd, uid_t *ret_uid);

#endif
