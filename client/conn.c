/*
 * conn.c - the client's end of the socket: connect, send a request, read
 * answer lines, and turn an error answer into a message and an exit code.
 */
#include "llmq.h"
#include "paths.h"
#include "protocol.h"
#include "text.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Whom llmqd may run as: this user, root, or the service's own user. */
static int trusted_owners(uid_t *owners)
{
	struct passwd *pw = getpwnam(LLMQ_SERVICE_USER);
	int n = 0;

	owners[n++] = geteuid();
	owners[n++] = 0;
	if (pw)
		owners[n++] = pw->pw_uid;
	return n;
}

static int trusted(uid_t uid, const uid_t *owners, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (owners[i] == uid)
			return 1;
	return 0;
}

/*
 * Before a byte goes out: the socket, its directory and the process that
 * listens on it must all belong to a trusted owner, or whoever answers may
 * be an impostor collecting the prompts. -EPERM with the reason in why.
 */
static int check_peer(int fd, const char *path, char *why, size_t len)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	uid_t owners[3];
	struct stat st;
	int n = trusted_owners(owners), r;

	r = paths_check_parent(path, owners, n, why, len);
	if (r < 0)
		return r == -EPERM ? r : 0; /* a path that moved: the peer check decides */
	if (lstat(path, &st) == 0 && !trusted(st.st_uid, owners, n)) {
		snprintf(why, len, "the socket belongs to uid %u", (unsigned)st.st_uid);
		return -EPERM;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		snprintf(why, len, "cannot tell who listens on it: %s", strerror(errno));
		return -EPERM;
	}
	if (!trusted(cred.uid, owners, n)) {
		snprintf(why, len, "the process listening on it runs as uid %u (pid %d)",
		         (unsigned)cred.uid, (int)cred.pid);
		return -EPERM;
	}
	return 0;
}

static int try_connect(const char *path, int *ret_fd, char *why, size_t len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, e;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	e = check_peer(fd, path, why, len);
	if (e < 0) {
		close(fd);
		return e;
	}
	*ret_fd = fd;
	return 0;
}

static int quiet; /* a caller that handles llmqd's absence itself */

static int plain;

void conn_set_plain(int p)
{
	plain = p;
}

/* Every string of o (values and keys) with its control characters escaped. */
static json_object *conn_escape_tree(json_object *o)
{
	char *buf;
	size_t i, n;

	switch (json_object_get_type(o)) {
	case json_type_string:
		if (!text_has_control(json_object_get_string(o)))
			return o;
		n = TEXT_ESCAPED_MAX((size_t)json_object_get_string_len(o));
		buf = malloc(n);
		if (buf) {
			text_escape(json_object_get_string(o), buf, n);
			json_object_set_string(o, buf);
			free(buf);
		}
		return o;
	case json_type_array:
		n = json_object_array_length(o);
		for (i = 0; i < n; i++)
			conn_escape_tree(json_object_array_get_idx(o, i));
		return o;
	case json_type_object: {
		json_object_object_foreach(o, k, v)
		{
			(void)k; /* keys are llmqd's own names */
			conn_escape_tree(v);
		}
		return o;
	}
	default:
		return o;
	}
}

void conn_set_quiet(int q)
{
	quiet = q;
}

int conn_open(const struct opts *o, struct conn *c)
{
	const char *env = getenv("LLMQ_SOCKET");
	char why[512] = "";
	int r, fd = -1;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	r = try_connect(o->socket, &fd, why, sizeof(why));
	/* A per-user client falls back to the system daemon's socket. */
	if (r < 0 && r != -EPERM && (!env || !*env) && strcmp(o->socket, LLMQ_SYSTEM_SOCKET) != 0 &&
	    try_connect(LLMQ_SYSTEM_SOCKET, &fd, why, sizeof(why)) == 0)
		r = 0;
	if (r == -EPERM) {
		fprintf(stderr,
		        "llmq: refusing to talk to %s: %s, not you, root or the %s service user; "
		        "another user may be impersonating llmqd. Nothing was sent.\n"
		        "llmq: remove that socket's directory (or ask root to), or point --socket "
		        "/ LLMQ_SOCKET at the real llmqd\n",
		        o->socket, why, LLMQ_SERVICE_USER);
		return EX_NOPERM_;
	}
	if (r < 0) {
		if (quiet)
			return EX_UNAVAILABLE_;
		fprintf(stderr,
		        "llmq: cannot reach llmqd at %s: %s\n"
		        "llmq: start it with 'llmqd &' (or 'systemctl start llmqd'), or point "
		        "--socket / LLMQ_SOCKET at its socket\n",
		        o->socket, strerror(-r));
		return EX_UNAVAILABLE_;
	}
	c->fd = fd;
	c->in = fdopen(dup(fd), "r");
	if (!c->in) {
		fprintf(stderr, "llmq: %s\n", strerror(errno));
		conn_close(c);
		return EX_SOFTWARE_;
	}
	return 0;
}

void conn_close(struct conn *c)
{
	if (c->in)
		fclose(c->in);
	if (c->fd >= 0)
		close(c->fd);
	free(c->line);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

int conn_write(struct conn *c, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int conn_send(struct conn *c, json_object *req)
{
	const char *s;
	size_t len;
	int r;

	s = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &len);
	r = conn_write(c, s, len);
	if (r == 0)
		r = conn_write(c, "\n", 1);
	json_object_put(req);
	return r;
}

ssize_t conn_read_line(struct conn *c, const char **ret)
{
	ssize_t n = getline(&c->line, &c->cap, c->in);

	if (n < 0)
		return -1;
	if (n > 0 && c->line[n - 1] == '\n')
		c->line[--n] = '\0';
	*ret = c->line;
	return n;
}

int conn_read(struct conn *c, json_object **ret)
{
	const char *line;
	ssize_t n = conn_read_line(c, &line);

	*ret = NULL;
	if (n < 0)
		return -EPIPE;
	*ret = json_tokener_parse(line);
	if (*ret && plain)
		conn_escape_tree(*ret);
	return *ret ? 0 : -EBADMSG;
}

int report_error(const struct opts *o, json_object *reply)
{
	json_object *err = jget(reply, "error"), *lines;
	const char *code = jstr(err, "code"), *msg = jstr(err, "message");
	size_t i, n;

	if (o->json) {
		print_json(reply);
	} else {
		fprintf(stderr, "llmq: %s\n", msg ? msg : "llmqd refused the request");
		lines = jget(err, "lines");
		n = lines ? json_object_array_length(lines) : 0;
		for (i = 0; i < n; i++) {
			json_object *l = json_object_array_get_idx(lines, i);

			fprintf(stderr, "  line %lld: %s\n", (long long)jint(l, "line"),
			        jtext(l, "error"));
		}
		if (n > 0 && jint(err, "bad_lines") > (int64_t)n)
			fprintf(stderr, "  ... and %lld more\n",
			        (long long)(jint(err, "bad_lines") - (int64_t)n));
		if (code && strcmp(code, ERR_RATE_LIMITED) == 0 && jint(err, "retry_after") > 0 &&
		    json_object_get_boolean(jget(err, "retryable")))
			fprintf(stderr,
			        "llmq: retry after %llds (llmq submit --retry waits and "
			        "tries again)\n",
			        (long long)jint(err, "retry_after"));
	}
	if (!code)
		return EX_SOFTWARE_;
	if (!strcmp(code, ERR_INVALID_BATCH) || !strcmp(code, ERR_LINE_TOO_LONG) ||
	    !strcmp(code, ERR_BATCH_TOO_LARGE) || !strcmp(code, ERR_NOT_FOUND))
		return EX_DATAERR_;
	/* A batch that can never fit is the input's fault, not a "try later". */
	if ((!strcmp(code, ERR_RATE_LIMITED) || !strcmp(code, ERR_QUOTA)) &&
	    jget(err, "retryable") && !json_object_get_boolean(jget(err, "retryable")))
		return EX_DATAERR_;
	if (!strcmp(code, ERR_PERMISSION))
		return EX_NOPERM_;
	if (!strcmp(code, ERR_BAD_REQUEST))
		return EX_USAGE_; /* a value llmqd refuses: a bad value on the command line */
	if (!strcmp(code, ERR_RATE_LIMITED) || !strcmp(code, ERR_BUSY) ||
	    !strcmp(code, ERR_STORAGE) || !strcmp(code, ERR_TIMEOUT) || !strcmp(code, ERR_QUOTA))
		return EX_TEMPFAIL_;
	return EX_SOFTWARE_;
}

int conn_call(struct conn *c, const struct opts *o, json_object *req, json_object **ret)
{
	json_object *reply = NULL, *ok;
	int r;

	*ret = NULL;
	r = conn_send(c, req);
	if (r == 0 || r == -EPIPE || r == -ECONNRESET)
		r = conn_read(c, &reply);
	if (r < 0 || !reply) {
		if (quiet)
			return EX_UNAVAILABLE_;
		fprintf(stderr,
		        "llmq: llmqd closed the connection without an answer (%s); "
		        "see its log\n",
		        strerror(-r));
		return EX_UNAVAILABLE_;
	}
	if (!json_object_object_get_ex(reply, "ok", &ok) || !json_object_get_boolean(ok)) {
		r = report_error(o, reply);
		json_object_put(reply);
		return r;
	}
	*ret = reply;
	return 0;
}

int conn_request(const struct opts *o, json_object *req, json_object **ret)
{
	struct conn c;
	int r;

	*ret = NULL;
	r = conn_open(o, &c);
	if (r) {
		json_object_put(req);
		return r;
	}
	r = conn_call(&c, o, req, ret);
	conn_close(&c);
	return r;
}
