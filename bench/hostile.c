/*
 * hostile.c - what a misbehaving client or an outside program costs a
 * running llmqd, measured from outside it (bench/run.sh hostile starts the
 * daemon). Prints figures; asserts nothing.
 *
 *   hostile conns    --socket S --http HOST:PORT --pid P --n N
 *       N idle connections on the llmq socket and N on the HTTP face, held
 *       for 3 s: how many were taken, the daemon's RSS, a ping's round trip.
 *   hostile pipeline --socket S --pid P --batch ID --seconds T
 *       one client pipelines "results" requests for T seconds and never
 *       reads: requests taken, the daemon's peak RSS, the slowest ping of
 *       another client meanwhile.
 *   hostile lock     --socket S --db D --seconds T
 *       sqlite3's BEGIN EXCLUSIVE held on the live database for T seconds
 *       while another client pings every 10 ms: the slowest and the 99th
 *       percentile round trip.
 *   hostile depth    --socket S --http HOST:PORT --seconds T
 *       with a deep queue (bench/run.sh depth stores a million jobs): the
 *       round trips of ping, status, list, a /metrics scrape and the live
 *       page's figures, then /healthz every 10 ms for T seconds while four
 *       clients scrape in a loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *sock_path, *http_addr, *db_path, *batch;
static int pid, n_conns = 1000, seconds = 20;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long rss_kib(const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, n) == 0)
			v = atol(line + n);
	fclose(f);
	return v;
}

static int unix_connect(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || strlen(sock_path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int tcp_connect(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char host[64];
	const char *colon = strrchr(http_addr, ':');
	int fd;

	if (!colon || (size_t)(colon - http_addr) >= sizeof(host))
		return -1;
	memcpy(host, http_addr, (size_t)(colon - http_addr));
	host[colon - http_addr] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A ping on a fresh connection: its round trip in ms, or -1. */
static double ping(void)
{
	static const char req[] = "{\"v\":1,\"op\":\"ping\"}\n";
	struct timeval tv = {10, 0};
	double t0 = now_ms();
	char buf[1024];
	ssize_t n;
	int fd = unix_connect();

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = write(fd, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1
	        ? read(fd, buf, sizeof(buf) - 1)
	        : -1;
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return strstr(buf, "\"ok\":true") ? now_ms() - t0 : -1;
}

/* Whether the daemon kept fd: a refused one gets a line and EOF at once. */
static int held(int fd)
{
	char buf[512];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static int run_conns(void)
{
	int *ufd = calloc((size_t)n_conns, sizeof(int)),
	    *hfd = calloc((size_t)n_conns, sizeof(int));
	int i, u_open = 0, h_open = 0, u_held = 0, h_held = 0;
	long before = rss_kib("VmRSS:");
	struct rlimit rl;

	if (!ufd || !hfd)
		return 1;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (i = 0; i < n_conns; i++) {
		ufd[i] = unix_connect();
		u_open += ufd[i] >= 0;
		hfd[i] = http_addr ? tcp_connect() : -1;
		h_open += hfd[i] >= 0;
	}
	sleep(3);
	for (i = 0; i < n_conns; i++) {
		u_held += ufd[i] >= 0 && held(ufd[i]);
		h_held += hfd[i] >= 0 && held(hfd[i]);
	}
	printf("%d socket connections opened, %d held by llmqd (the rest refused: one user's "
	       "cap); %d HTTP connections opened, %d held\n",
	       u_open, u_held, h_open, h_held);
	printf("llmqd RSS %ld KiB before, %ld KiB with them (peak %ld KiB)\n", before,
	       rss_kib("VmRSS:"), rss_kib("VmHWM:"));
	/* This user is at its cap: the ping waits for its own connections to go. */
	for (i = 0; i < n_conns; i++)
		if (ufd[i] >= 0)
			close(ufd[i]);
	usleep(100 * 1000);
	printf("a ping with the HTTP connections still held: %.1f ms\n", ping());
	for (i = 0; i < n_conns; i++)
		if (hfd[i] >= 0)
			close(hfd[i]);
	free(ufd);
	free(hfd);
	return 0;
}

static int run_pipeline(void)
{
	char req[128];
	long before = rss_kib("VmRSS:"), peak = 0, r;
	double t0 = now_ms(), worst = 0, t, next_ping = 0;
	size_t len, sent = 0;
	int fd = unix_connect(), pings = 0, failed = 0, closed = 0;

	if (fd < 0 || !batch)
		return 1;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	len = (size_t)snprintf(req, sizeof(req), "{\"v\":1,\"op\":\"results\",\"batch\":\"%s\"}\n",
	                       batch);
	while (now_ms() - t0 < seconds * 1000.0) {
		ssize_t n = closed ? -1 : send(fd, req, len, MSG_NOSIGNAL);

		if (n == (ssize_t)len)
			sent++;
		else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			closed = 1;
		else
			usleep(1000);
		if (now_ms() >= next_ping) {
			t = ping();
			if (t < 0)
				failed++;
			else if (t > worst)
				worst = t;
			pings++;
			next_ping = now_ms() + 100;
			r = rss_kib("VmRSS:");
			if (r > peak)
				peak = r;
		}
	}
	printf("pipelining client: %zu results requests taken in %d s (each answer ~ one page), "
	       "%s\n",
	       sent, seconds,
	       closed ? "then dropped by llmqd (its answers did not move)" : "still connected");
	printf("llmqd RSS %ld KiB before, peak %ld KiB during; %d pings by another client, %d "
	       "failed, the slowest %.1f ms\n",
	       before, peak, pings, failed, worst);
	close(fd);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int run_lock(void)
{
	size_t cap = (size_t)seconds * 200 + 16, n = 0;
	double *rtt = calloc(cap, sizeof(double)), t0, t;
	sqlite3 *db;
	int failed = 0;

	/* llmqd writes all the time while a batch runs: wait for a gap, as sqlite3 does. */
	if (!rtt || sqlite3_open(db_path, &db) != SQLITE_OK ||
	    sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
	    sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "hostile: cannot lock %s\n", db_path);
		free(rtt);
		return 1;
	}
	t0 = now_ms();
	while (now_ms() - t0 < seconds * 1000.0 && n < cap) {
		t = ping();
		if (t < 0)
			failed++;
		else
			rtt[n++] = t;
		usleep(10 * 1000);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	qsort(rtt, n, sizeof(double), cmp_double);
	printf("BEGIN EXCLUSIVE held %d s: %zu pings answered, %d failed; round trip p50 %.1f "
	       "ms, p99 %.1f ms, slowest %.1f ms\n",
	       seconds, n, failed, n ? rtt[n / 2] : 0, n ? rtt[n * 99 / 100] : 0,
	       n ? rtt[n - 1] : 0);
	free(rtt);
	return 0;
}

/* One request on a fresh socket connection, its answer line read whole: ms, or -1. */
static double op_rtt(const char *req)
{
	static char buf[1 << 20];
	struct timeval tv = {30, 0};
	double t0 = now_ms();
	size_t have = 0;
	ssize_t n = 0;
	int fd = unix_connect();

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		n = -1;
	while (n >= 0 && have + 1 < sizeof(buf) && !memchr(buf, '\n', have) &&
	       (n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0)
		have += (size_t)n;
	close(fd);
	buf[have] = '\0';
	return have && strstr(buf, "\"ok\":true") ? now_ms() - t0 : -1;
}

/* GET path on the HTTP face, read until the server closes: ms, or -1. */
static double http_rtt(const char *path)
{
	char req[256], buf[1 << 16];
	struct timeval tv = {30, 0};
	double t0 = now_ms();
	ssize_t n;
	long got = 0;
	int fd = tcp_connect(), ok = 0;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	if (write(fd, req, strlen(req)) == (ssize_t)strlen(req))
		while ((n = read(fd, buf, sizeof(buf))) > 0) {
			if (got == 0)
				ok = strncmp(buf, "HTTP/1.1 200", 12) == 0;
			got += n;
		}
	close(fd);
	return ok ? now_ms() - t0 : -1;
}

static void report(const char *what, double *v, size_t n)
{
	qsort(v, n, sizeof(double), cmp_double);
	printf("%-28s p50 %7.2f ms, p99 %7.2f ms, slowest %7.2f ms (%zu)\n", what, n ? v[n / 2] : 0,
	       n ? v[n * 99 / 100] : 0, n ? v[n - 1] : 0, n);
}

static int run_depth(void)
{
	static const struct {
		const char *what, *req;
	} ops[] = {
	    {"ping", "{\"v\":1,\"op\":\"ping\"}\n"},
	    {"status", "{\"v\":1,\"op\":\"status\"}\n"},
	    {"list", "{\"v\":1,\"op\":\"list\",\"limit\":20}\n"},
	};
	size_t cap = (size_t)seconds * 100 + 16, n = 0, i, k;
	double v[20], *hz = calloc(cap, sizeof(double)), t0;
	pid_t scrapers[4];
	int failed = 0;

	if (!hz || !http_addr)
		return 1;
	for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
		for (i = 0; i < 20; i++)
			v[i] = op_rtt(ops[k].req);
		report(ops[k].what, v, 20);
	}
	for (i = 0; i < 20; i++)
		v[i] = http_rtt("/metrics");
	report("GET /metrics", v, 20);
	for (i = 0; i < 20; i++)
		v[i] = http_rtt("/v1/llmq/live");
	report("GET /v1/llmq/live", v, 20);
	for (k = 0; k < 4; k++) {
		scrapers[k] = fork();
		if (scrapers[k] == 0) {
			t0 = now_ms();
			while (now_ms() - t0 < seconds * 1000.0)
				http_rtt("/metrics");
			_exit(0);
		}
	}
	t0 = now_ms();
	while (now_ms() - t0 < seconds * 1000.0 && n < cap) {
		double t = http_rtt("/healthz");

		if (t < 0)
			failed++;
		else
			hz[n++] = t;
		usleep(10 * 1000);
	}
	for (k = 0; k < 4; k++)
		waitpid(scrapers[k], NULL, 0);
	report("/healthz, 4 clients scraping", hz, n);
	if (failed)
		printf("%d /healthz failed\n", failed);
	free(hz);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'}, {"http", required_argument, NULL, 'h'},
	    {"pid", required_argument, NULL, 'p'},    {"n", required_argument, NULL, 'n'},
	    {"batch", required_argument, NULL, 'b'},  {"seconds", required_argument, NULL, 't'},
	    {"db", required_argument, NULL, 'd'},     {NULL, 0, NULL, 0},
	};
	const char *mode;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock_path = optarg;
			break;
		case 'h':
			http_addr = optarg;
			break;
		case 'p':
			pid = atoi(optarg);
			break;
		case 'n':
			n_conns = atoi(optarg);
			break;
		case 'b':
			batch = optarg;
			break;
		case 't':
			seconds = atoi(optarg);
			break;
		case 'd':
			db_path = optarg;
			break;
		default:
			return 64;
		}
	}
	if (optind >= argc || !sock_path) {
		fprintf(stderr,
		        "usage: hostile conns|pipeline|lock|depth --socket PATH [options]\n");
		return 64;
	}
	mode = argv[optind];
	if (strcmp(mode, "conns") == 0 && n_conns > 0)
		return run_conns();
	if (strcmp(mode, "pipeline") == 0)
		return run_pipeline();
	if (strcmp(mode, "lock") == 0 && db_path)
		return run_lock();
	if (strcmp(mode, "depth") == 0)
		return run_depth();
	fprintf(stderr, "hostile: unknown mode or missing option\n");
	return 64;
}
