/*
 * bench.c - llmq's benchmark driver. Starts the mock upstream and a real
 * llmqd, submits a generated batch through the real llmq client, and prints
 * rates and ratios. Two modes:
 *
 *   --mode drain   run the batch to the end: jobs/s from submit to the last
 *                  result stored, daemon CPU per 1,000 jobs, peak RSS, and the
 *                  time the submit took (ingest);
 *   --mode gate    run for --warmup-s + --measure-s against a rate-limiting
 *                  mock: tokens/min actually served after the warm-up as a
 *                  share of the effective limit (and of what a second client
 *                  leaves), and the 429s.
 *
 *   --hosts N      (fleet) N llmqd sharing one key through a redis-server,
 *                  each draining its own copy of the batch: the 429s, the
 *                  time against the fastest the provider's buckets allow,
 *                  each host's share of the tokens while all are busy, the
 *                  grant round trips and Redis's CPU per 1,000 grants;
 *   --redis        one llmqd with its gate in a redis-server (drain mode):
 *                  the cost of sharing, against the same run without.
 *
 * Nothing here asserts: the figures go to stdout for people to read.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct cfg {
	const char *mode;
	int jobs, concurrency, latency_ms, max_tokens, prompt_chars;
	double stagger_s, headroom, burst_s;
	long long tpm, rpm, mock_tpm, mock_rpm, window_ms, external_tpm;
	long long enforce_ms; /* the mock enforces over fixed windows this long; 0: the minute */
	double completion_ratio;
	int warmup_s, measure_s;
	int interactive_every_ms; /* gate mode: one interactive call this often; 0 none */
	double reserve;           /* the lane's interactive_reserve; < 0: llmqd's default */
	int hosts;                /* > 1: that many llmqd sharing one key through Redis */
	int redis;                /* the one llmqd's gate in Redis */
};

static char dir[64], sock[96], db[96];

#define BENCH_MAX_HOSTS 32

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t spawn(char *const argv[], char *const envp[], const char *out, const char *err)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (out) {
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			dup2(fd, 1);
		}
		if (err) {
			int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			dup2(fd, 2);
		}
		if (envp)
			execve(argv[0], argv, envp);
		else
			execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Run llmq with args; its stdout into buf. Returns the exit status. */
static int llmq(char *buf, size_t len, const char *a1, const char *a2, const char *a3)
{
	char cmd[512];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd), "%s --socket %s %s %s %s 2>/dev/null", LLMQ_BIN, sock, a1,
	         a2 ? a2 : "", a3 ? a3 : "");
	p = popen(cmd, "r");
	n = fread(buf, 1, len - 1, p);
	buf[n] = '\0';
	return pclose(p);
}

static long long field(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	p = strstr(json, pat);
	return p ? atoll(p + strlen(pat)) : -1;
}

static void proc_usage(pid_t pid, double *cpu_s, long *rss_kb)
{
	char path[64], buf[4096], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f && fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		for (i = 0; p && i < 12; i++)
			p = strchr(p + 1, ' ');
		if (p)
			sscanf(p + 1, "%lu %lu", &ut, &st);
	}
	if (f)
		fclose(f);
	*cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	*rss_kb = 0;
	while (f && fgets(buf, sizeof(buf), f))
		if (strncmp(buf, "VmHWM:", 6) == 0)
			*rss_kb = atol(buf + 6);
	if (f)
		fclose(f);
}

static void write_batch(const char *path, const struct cfg *c)
{
	FILE *f = fopen(path, "w");
	char *pad = malloc((size_t)c->prompt_chars + 1);
	int i;

	memset(pad, 'a', (size_t)c->prompt_chars);
	pad[c->prompt_chars] = '\0';
	for (i = 0; i < c->jobs; i++)
		fprintf(
		    f,
		    "{\"custom_id\":\"j%d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
		    "\"body\":{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
		    "\"content\":\"%s\"}],\"max_tokens\":%d}}\n",
		    i, pad, c->max_tokens);
	fclose(f);
	free(pad);
}

static int wait_socket_at(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int i, fd, ok = 0;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	for (i = 0; i < 200 && !ok; i++) {
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
		if (!ok)
			usleep(25000);
	}
	return ok ? 0 : -1;
}

static int wait_socket(void)
{
	return wait_socket_at(sock);
}

/* Tokens served per minute between t0 and t1 (ms since the mock started), from its log. */
static void served(const char *log, double t0, double t1, long long *ret_tokens, long long *ret_ok,
                   long long *ret_429)
{
	char line[256], what[16];
	long long t, n, a, b;
	FILE *f = fopen(log, "r");

	*ret_tokens = *ret_ok = *ret_429 = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lld %15s %lld %lld %lld", &t, what, &n, &a, &b) != 5)
			continue;
		if (!strcmp(what, "refuse") && a == 429)
			(*ret_429)++;
		if (t < t0 || t >= t1 || strcmp(what, "done") || a != 200)
			continue;
		*ret_tokens += b;
		(*ret_ok)++;
	}
	if (f)
		fclose(f);
}

/* One interactive call every c->interactive_every_ms through llmqd's HTTP face. */
static pid_t start_calls(const struct cfg *c, const char *out)
{
	char buf[4096], url[200], every[32], secs[32];
	const char *p;

	llmq(buf, sizeof(buf), "ping --json", NULL, NULL);
	p = strstr(buf, "\"http\": \"");
	if (!p)
		return 0;
	p += 9;
	snprintf(url, sizeof(url), "http://%.*s/v1/chat/completions", (int)strcspn(p, "\""), p);
	snprintf(every, sizeof(every), "%d", c->interactive_every_ms);
	snprintf(secs, sizeof(secs), "%d", c->warmup_s + c->measure_s);
	{
		char *argv[] = {
		    HTTP_LOAD_BIN, "--url", url, "--connections", "1", "--interval-ms", every,
		    "--seconds",   secs,    NULL};
		return spawn(argv, NULL, out, NULL);
	}
}

/* The calls' own figures, and their wait at the gate as llmqd recorded it. */
static void report_calls(pid_t calls, const char *out)
{
	char cmd[300], line[512];
	double w[100000];
	int n = 0;
	FILE *f;

	waitpid(calls, NULL, 0);
	f = fopen(out, "r");
	while (f && fgets(line, sizeof(line), f))
		printf("interactive calls (end to end): %s", line);
	if (f)
		fclose(f);
	snprintf(cmd, sizeof(cmd),
	         "sqlite3 %s \"SELECT gate_wait_ms FROM calls WHERE outcome = 'succeeded' "
	         "ORDER BY 1\"",
	         db);
	f = popen(cmd, "r");
	while (f && n < 100000 && fgets(line, sizeof(line), f))
		w[n++] = atof(line);
	if (f)
		pclose(f);
	if (n)
		printf("interactive gate wait: p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d calls)\n",
		       w[(n - 1) / 2], w[(int)ceil(0.99 * n) - 1], w[n - 1], n);
}

/* A redis-server on a Unix socket in the bench's folder, persistence off. */
static pid_t start_redis(char *url, size_t len)
{
	char path[128], *argv[] = {"/usr/bin/redis-server",
	                           "--save",
	                           "",
	                           "--appendonly",
	                           "no",
	                           "--port",
	                           "0",
	                           "--unixsocket",
	                           path,
	                           "--dir",
	                           dir,
	                           NULL};
	pid_t pid;

	snprintf(path, sizeof(path), "%s/redis.sock", dir);
	snprintf(url, len, "LLMQ_REDIS_URL=unix://%s", path);
	pid = spawn(argv, NULL, "/dev/null", NULL);
	if (wait_socket_at(path) < 0) {
		fprintf(stderr, "bench: redis-server did not start\n");
		return -1;
	}
	return pid;
}

static double proc_cpu_s(pid_t pid)
{
	double cpu;
	long rss;

	proc_usage(pid, &cpu, &rss);
	return cpu;
}

static long long sql_ll(const char *dbpath, const char *q)
{
	char cmd[512], out[64] = "";
	FILE *p;

	snprintf(cmd, sizeof(cmd), "sqlite3 %s \"%s\"", dbpath, q);
	p = popen(cmd, "r");
	if (p && !fgets(out, sizeof(out), p))
		out[0] = '\0';
	if (p)
		pclose(p);
	return atoll(out);
}

/*
 * --hosts N: N llmqd on one key, each draining its own batch from the same
 * moment, against the mock enforcing the key's limits. env holds the lanes'
 * settings (NULL-terminated, room for two more).
 */
static int run_fleet(const struct cfg *c, char **env, const char *batch, const char *mlog,
                     pid_t redis)
{
	char hsock[BENCH_MAX_HOSTS][80], hdb[BENCH_MAX_HOSTS][80], hlog[128];
	char ids[BENCH_MAX_HOSTS][64], buf[1 << 16];
	double t_done[BENCH_MAX_HOSTS], t0, first = 0, last = 0, wall, fastest, fr = 0;
	long long tokens, ok, r429, tok_host[BENCH_MAX_HOSTS], tok_sum = 0, grants = 0;
	long long busy_until;
	pid_t pids[BENCH_MAX_HOSTS];
	int i, n = c->hosts, left, done[BENCH_MAX_HOSTS] = {0};
	double lo = 1e9, hi = 0, cpu_redis, cpu_hosts = 0;

	if (n > BENCH_MAX_HOSTS)
		n = BENCH_MAX_HOSTS;
	for (i = 0; i < n; i++) {
		char hdir[72], *dargv[] = {LLMQD_BIN, "--socket", hsock[i], "--db", hdb[i], NULL};

		snprintf(hdir, sizeof(hdir), "%s/h%d", dir, i);
		mkdir(hdir, 0700);
		snprintf(hsock[i], sizeof(hsock[i]), "%s/s", hdir);
		snprintf(hdb[i], sizeof(hdb[i]), "%s/db", hdir);
		snprintf(hlog, sizeof(hlog), "%s/log", hdir);
		pids[i] = spawn(dargv, env, NULL, hlog);
		if (wait_socket_at(hsock[i]) < 0) {
			fprintf(stderr, "bench: llmqd %d did not start, see %s\n", i, hlog);
			return 1;
		}
	}
	/* Each shares its gate before anything is submitted. */
	for (i = 0; i < n; i++) {
		snprintf(sock, sizeof(sock), "%.80s", hsock[i]);
		for (left = 0; left < 100; left++) {
			llmq(buf, sizeof(buf), "--json status", NULL, NULL);
			if (strstr(buf, "\"mode\": \"shared\""))
				break;
			usleep(50000);
		}
	}
	t0 = now_s();
	for (i = 0; i < n; i++) {
		snprintf(sock, sizeof(sock), "%.80s", hsock[i]);
		if (llmq(buf, sizeof(buf), "submit", batch, NULL) != 0) {
			fprintf(stderr, "bench: submit to host %d failed\n", i);
			return 1;
		}
		buf[strcspn(buf, "\n")] = '\0';
		snprintf(ids[i], sizeof(ids[i]), "%.63s", buf);
	}
	for (left = n; left > 0;) {
		usleep(200000);
		for (i = 0; i < n; i++) {
			if (done[i])
				continue;
			snprintf(sock, sizeof(sock), "%.80s", hsock[i]);
			llmq(buf, sizeof(buf), "--json status", ids[i], NULL);
			if (!strstr(buf, "\"state\": \"completed\""))
				continue;
			done[i] = 1;
			t_done[i] = now_s();
			left--;
		}
	}
	first = last = t_done[0];
	for (i = 1; i < n; i++) {
		first = t_done[i] < first ? t_done[i] : first;
		last = t_done[i] > last ? t_done[i] : last;
	}
	wall = last - t0;
	served(mlog, 0, 1e18, &tokens, &ok, &r429);
	fastest =
	    tokens > c->mock_tpm ? (double)(tokens - c->mock_tpm) * 60.0 / (double)c->mock_tpm : 0;
	if (c->mock_rpm > 0 && ok > c->mock_rpm)
		fr = (double)(ok - c->mock_rpm) * 60.0 / (double)c->mock_rpm;
	fastest = fr > fastest ? fr : fastest;
	/* While all were busy: until the first host's batch was done. */
	busy_until = (long long)((double)time(NULL) * 1000.0 - (now_s() - first) * 1000.0);
	for (i = 0; i < n; i++) {
		char q[200];

		snprintf(
		    q, sizeof(q),
		    "SELECT coalesce(sum(tokens_used), 0) FROM attempts WHERE ended_at <= %lld",
		    busy_until);
		tok_host[i] = sql_ll(hdb[i], q);
		tok_sum += tok_host[i];
	}
	printf("hosts %d, each %d jobs; lane: tpm %lld rpm %lld headroom %.2f concurrency %d; "
	       "mock: tpm %lld rpm %lld, latency %d ms, completion ratio %.2f\n",
	       n, c->jobs, c->tpm, c->rpm, c->headroom, c->concurrency, c->mock_tpm, c->mock_rpm,
	       c->latency_ms, c->completion_ratio);
	printf("429s: %lld of %lld requests answered (%.2f%%)\n", r429, ok + r429,
	       100.0 * (double)r429 / (double)(ok + r429 ? ok + r429 : 1));
	printf("against the limits: %lld tokens used in %lld requests; %.1f s, the buckets allow "
	       "%.1f s: efficiency %.1f%%\n",
	       tokens, ok, wall, fastest, 100.0 * fastest / wall);
	for (i = 0; i < n; i++) {
		double share = tok_sum ? (double)tok_host[i] * n / (double)tok_sum : 0;

		lo = share < lo ? share : lo;
		hi = share > hi ? share : hi;
	}
	printf("while all were busy (%.1f s): each host's tokens against 1/%d: from %+.1f%% to "
	       "%+.1f%%\n",
	       first - t0, n, 100.0 * (lo - 1), 100.0 * (hi - 1));
	for (i = 0; i < n; i++) {
		snprintf(sock, sizeof(sock), "%.80s", hsock[i]);
		llmq(buf, sizeof(buf), "--json status", NULL, NULL);
		grants += field(buf, "grants");
		printf(
		    "host %d: done after %.1f s, %lld tokens while all were busy, grant round trip "
		    "p50 %.3f ms, p99 %.3f ms (%lld grants)\n",
		    i, t_done[i] - t0, tok_host[i], field(buf, "grant_rtt_p50_us") / 1000.0,
		    field(buf, "grant_rtt_p99_us") / 1000.0, field(buf, "grants"));
		cpu_hosts += proc_cpu_s(pids[i]);
	}
	cpu_redis = proc_cpu_s(redis);
	printf("Redis CPU: %.3f s in all, %.3f s per 1,000 grants (with their settles and the "
	       "heartbeats); llmqd CPU: %.3f s per 1,000 jobs\n",
	       cpu_redis, grants ? cpu_redis * 1000.0 / (double)grants : 0,
	       cpu_hosts * 1000.0 / ((double)c->jobs * n));
	for (i = 0; i < n; i++) {
		kill(pids[i], SIGTERM);
		waitpid(pids[i], NULL, 0);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"mode", 1, 0, 'm'},
	    {"jobs", 1, 0, 'n'},
	    {"concurrency", 1, 0, 'c'},
	    {"latency-ms", 1, 0, 'l'},
	    {"max-tokens", 1, 0, 'x'},
	    {"prompt-chars", 1, 0, 'p'},
	    {"stagger", 1, 0, 's'},
	    {"headroom", 1, 0, 'h'},
	    {"burst", 1, 0, 'b'},
	    {"tpm", 1, 0, 't'},
	    {"rpm", 1, 0, 'r'},
	    {"mock-tpm", 1, 0, 'T'},
	    {"mock-rpm", 1, 0, 'R'},
	    {"window-ms", 1, 0, 'w'},
	    {"enforce-window-ms", 1, 0, 'E'},
	    {"external-tpm", 1, 0, 'e'},
	    {"completion-ratio", 1, 0, 'C'},
	    {"warmup-s", 1, 0, 'W'},
	    {"measure-s", 1, 0, 'M'},
	    {"interactive-every-ms", 1, 0, 'I'},
	    {"reserve", 1, 0, 'Z'},
	    {"hosts", 1, 0, 'H'},
	    {"redis", 0, 0, 'S'},
	    {0, 0, 0, 0},
	};
	struct cfg c = {.mode = "drain",
	                .reserve = -1,
	                .jobs = 20000,
	                .concurrency = 256,
	                .latency_ms = 0,
	                .max_tokens = 16,
	                .prompt_chars = 64,
	                .headroom = 0.0,
	                .tpm = 0,
	                .rpm = 0,
	                .window_ms = 60000,
	                .completion_ratio = 1.0,
	                .warmup_s = 60,
	                .measure_s = 120};
	char batch[128], mlog[128], dlog[128], mport[128], url[160], buf[1 << 16], a[64];
	char e_conc[64], e_stag[64], e_tpm[64], e_rpm[64], e_head[64], e_burst[64], e_reserve[64],
	    e_url[200];
	char m_lat[32], m_tpm[32], m_rpm[32], m_win[32], m_ext[32], m_ratio[32];
	double t_submit, t_accepted, t_done, cpu, eff, avail;
	long long tokens, ok, r429, tok_all, ok_all;
	long rss;
	pid_t mock, daemon, calls = 0, redis = 0;
	char e_redis[160];
	char iout[128];
	int o;
	FILE *f;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'm':
			c.mode = optarg;
			break;
		case 'n':
			c.jobs = atoi(optarg);
			break;
		case 'c':
			c.concurrency = atoi(optarg);
			break;
		case 'l':
			c.latency_ms = atoi(optarg);
			break;
		case 'x':
			c.max_tokens = atoi(optarg);
			break;
		case 'p':
			c.prompt_chars = atoi(optarg);
			break;
		case 's':
			c.stagger_s = atof(optarg);
			break;
		case 'h':
			c.headroom = atof(optarg);
			break;
		case 'b':
			c.burst_s = atof(optarg);
			break;
		case 't':
			c.tpm = atoll(optarg);
			break;
		case 'r':
			c.rpm = atoll(optarg);
			break;
		case 'T':
			c.mock_tpm = atoll(optarg);
			break;
		case 'R':
			c.mock_rpm = atoll(optarg);
			break;
		case 'w':
			c.window_ms = atoll(optarg);
			break;
		case 'E':
			c.enforce_ms = atoll(optarg);
			break;
		case 'e':
			c.external_tpm = atoll(optarg);
			break;
		case 'C':
			c.completion_ratio = atof(optarg);
			break;
		case 'W':
			c.warmup_s = atoi(optarg);
			break;
		case 'M':
			c.measure_s = atoi(optarg);
			break;
		case 'I':
			c.interactive_every_ms = atoi(optarg);
			break;
		case 'Z':
			c.reserve = atof(optarg);
			break;
		case 'H':
			c.hosts = atoi(optarg);
			break;
		case 'S':
			c.redis = 1;
			break;
		default:
			return 64;
		}
	}
	snprintf(dir, sizeof(dir), "/tmp/llmq-bench-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock, sizeof(sock), "%s/llmq.sock", dir);
	snprintf(db, sizeof(db), "%s/llmq.db", dir);
	snprintf(batch, sizeof(batch), "%s/batch.jsonl", dir);
	snprintf(mlog, sizeof(mlog), "%s/mock.log", dir);
	snprintf(dlog, sizeof(dlog), "%s/llmqd.log", dir);
	snprintf(mport, sizeof(mport), "%s/mock.port", dir);
	snprintf(iout, sizeof(iout), "%s/calls.out", dir);
	write_batch(batch, &c);

	snprintf(m_lat, sizeof(m_lat), "%d", c.latency_ms);
	snprintf(m_tpm, sizeof(m_tpm), "%lld", c.mock_tpm);
	snprintf(m_rpm, sizeof(m_rpm), "%lld", c.mock_rpm);
	snprintf(m_win, sizeof(m_win), "%lld", c.window_ms);
	snprintf(m_ext, sizeof(m_ext), "%lld", c.external_tpm);
	snprintf(m_ratio, sizeof(m_ratio), "%g", c.completion_ratio);
	{
		char m_enf[32];
		char *margv[] = {MOCK_BIN, "--latency-ms",
		                 m_lat,    "--tpm",
		                 m_tpm,    "--rpm",
		                 m_rpm,    "--window-ms",
		                 m_win,    "--external-tpm",
		                 m_ext,    "--completion-ratio",
		                 m_ratio,  "--log",
		                 mlog,     "--enforce-window-ms",
		                 m_enf,    NULL};

		snprintf(m_enf, sizeof(m_enf), "%lld", c.enforce_ms);
		mock = spawn(margv, NULL, mport, NULL);
	}
	for (o = 0; o < 100; o++) {
		struct stat st;
		if (stat(mport, &st) == 0 && st.st_size > 0)
			break;
		usleep(20000);
	}
	f = fopen(mport, "r");
	if (!f || !fgets(a, sizeof(a), f))
		return 1;
	fclose(f);
	a[strcspn(a, "\n")] = '\0';
	snprintf(url, sizeof(url), "http://127.0.0.1:%s/v1", a);
	snprintf(e_url, sizeof(e_url), "OPENAI_BASE_URL=%s", url);
	snprintf(e_conc, sizeof(e_conc), "OPENAI_MAX_CONCURRENCY=%d", c.concurrency);
	snprintf(e_stag, sizeof(e_stag), "OPENAI_STAGGER_SECONDS=%g", c.stagger_s);
	snprintf(e_tpm, sizeof(e_tpm), "OPENAI_TPM_LIMIT=%lld", c.tpm);
	snprintf(e_rpm, sizeof(e_rpm), "OPENAI_RPM_LIMIT=%lld", c.rpm);
	snprintf(e_head, sizeof(e_head), "OPENAI_TPM_HEADROOM=%g", c.headroom);
	snprintf(e_burst, sizeof(e_burst), "OPENAI_BURST_SECONDS=%g", c.burst_s);
	snprintf(e_reserve, sizeof(e_reserve), "LLMQ_INTERACTIVE_RESERVE=%g", c.reserve);
	{
		char *denv[] = {e_url,
		                e_conc,
		                e_stag,
		                e_tpm,
		                e_rpm,
		                e_head,
		                e_burst,
		                "OPENAI_EST_TOKENS_PER_RUN=16",
		                "OPENAI_RETRY_MAX_ATTEMPTS=20",
		                "OPENAI_BACKOFF_BASE_SECONDS=0.5",
		                "LLMQ_CONFIG=",
		                "LLMQ_HTTP_ADDR=127.0.0.1:0",
		                NULL,
		                NULL,
		                NULL};
		char *dargv[] = {LLMQD_BIN, "--socket", sock, "--db", db, NULL};
		int k = 12;

		if (c.reserve >= 0)
			denv[k++] = e_reserve;
		if (c.hosts > 1 || c.redis) {
			redis = start_redis(e_redis, sizeof(e_redis));
			if (redis < 0)
				return 1;
			denv[k++] = e_redis;
		}
		if (c.hosts > 1) {
			o = run_fleet(&c, denv, batch, mlog, redis);
			kill(redis, SIGTERM);
			waitpid(redis, NULL, 0);
			kill(mock, SIGTERM);
			waitpid(mock, NULL, 0);
			snprintf(buf, sizeof(buf), "rm -rf %s", dir);
			if (!getenv("BENCH_KEEP") && system(buf) != 0)
				return 1;
			return o;
		}
		daemon = spawn(dargv, denv, NULL, dlog);
	}
	if (wait_socket() < 0) {
		fprintf(stderr, "bench: llmqd did not start, see %s\n", dlog);
		return 1;
	}

	if (c.interactive_every_ms > 0)
		calls = start_calls(&c, iout);
	t_submit = now_s();
	if (llmq(buf, sizeof(buf), "submit", batch, NULL) != 0) {
		fprintf(stderr, "bench: submit failed\n");
		return 1;
	}
	t_accepted = now_s();
	buf[strcspn(buf, "\n")] = '\0';
	snprintf(a, sizeof(a), "%.63s", buf);

	if (!strcmp(c.mode, "drain")) {
		for (;;) {
			llmq(buf, sizeof(buf), "--json status", a, NULL);
			if (strstr(buf, "\"state\": \"completed\""))
				break;
			usleep(
			    200000); /* polling costs the daemon CPU too: poll as llmq wait does */
		}
		t_done = now_s();
		proc_usage(daemon, &cpu, &rss);
		printf("jobs %d, concurrency %d, mock latency %d ms\n", c.jobs, c.concurrency,
		       c.latency_ms);
		printf("ingest: %.3f s to submit and commit %d lines (%.0f lines/s)\n",
		       t_accepted - t_submit, c.jobs, c.jobs / (t_accepted - t_submit));
		printf(
		    "throughput: %.0f jobs/s end to end (submit to last result stored, %.2f s)\n",
		    c.jobs / (t_done - t_submit), t_done - t_submit);
		printf("daemon CPU: %.3f s per 1,000 jobs (%.2f s in all)\n", cpu * 1000 / c.jobs,
		       cpu);
		printf("daemon peak RSS: %.1f MiB\n", rss / 1024.0);
		if (redis > 0) {
			llmq(buf, sizeof(buf), "--json status", NULL, NULL);
			printf("fleet: %lld grants, round trip p50 %.3f ms, p99 %.3f ms; Redis CPU "
			       "%.3f s per 1,000 grants (with their settles)\n",
			       field(buf, "grants"), field(buf, "grant_rtt_p50_us") / 1000.0,
			       field(buf, "grant_rtt_p99_us") / 1000.0,
			       field(buf, "grants") > 0
			           ? proc_cpu_s(redis) * 1000.0 / (double)field(buf, "grants")
			           : 0);
		}
		if (c.mock_tpm > 0) {
			/* Against a rate limit: how near the fastest the provider's buckets
			 * allow (a full minute's bucket at the start, then its refill). */
			double wall = t_done - t_submit, fastest, fr = 0;

			served(mlog, 0, 1e18, &tok_all, &ok_all, &r429);
			fastest = tok_all > c.mock_tpm
			              ? (double)(tok_all - c.mock_tpm) * 60.0 / (double)c.mock_tpm
			              : 0;
			if (c.mock_rpm > 0 && ok_all > c.mock_rpm)
				fr = (double)(ok_all - c.mock_rpm) * 60.0 / (double)c.mock_rpm;
			fastest = fr > fastest ? fr : fastest;
			printf("against the limits: %lld tokens used in %lld requests; %.1f s, the "
			       "buckets allow %.1f s: efficiency %.1f%%; net budget used over the "
			       "run %.1f%%; 429s %lld\n",
			       tok_all, ok_all, wall, fastest, 100.0 * fastest / wall,
			       100.0 * (double)tok_all / ((double)c.mock_tpm * (1.0 + wall / 60.0)),
			       r429);
		}
	} else {
		double end = c.warmup_s + c.measure_s;

		while (now_s() - t_submit < end + 1)
			sleep(1);
		proc_usage(daemon, &cpu, &rss);
		llmq(buf, sizeof(buf), "--json status", a, NULL);
		served(mlog, c.warmup_s * 1000.0, end * 1000.0, &tokens, &ok, &r429);
		served(mlog, 0, c.warmup_s * 1000.0, &tok_all, &ok_all, &r429);
		printf("first %ds: %.0f tokens/min, %.1f%% of the effective limit\n", c.warmup_s,
		       tok_all * 60.0 / c.warmup_s,
		       100.0 * tok_all * 60.0 / c.warmup_s / ((double)c.tpm * (1 - c.headroom)));
		served(mlog, 0, 1e18, &tok_all, &ok_all, &r429);
		eff = (double)c.tpm * (1 - c.headroom);
		avail = (double)(c.mock_tpm - c.external_tpm);
		printf("lane: tpm %lld rpm %lld headroom %.2f burst %.2fs concurrency %d stagger "
		       "%.2fs; mock: tpm %lld rpm %lld window %lld ms, latency %d ms, "
		       "external %lld tpm, completion ratio %.2f\n",
		       c.tpm, c.rpm, c.headroom, c.burst_s, c.concurrency, c.stagger_s, c.mock_tpm,
		       c.mock_rpm, c.window_ms, c.latency_ms, c.external_tpm, c.completion_ratio);
		printf(
		    "served after the first %ds: %.0f tokens/min, %.1f%% of the effective "
		    "limit (%.0f), %.1f%% of what the provider leaves llmq (%.0f); %.0f req/min\n",
		    c.warmup_s, tokens * 60.0 / c.measure_s,
		    100.0 * tokens * 60.0 / c.measure_s / eff, eff,
		    100.0 * tokens * 60.0 / c.measure_s / avail, avail, ok * 60.0 / c.measure_s);
		printf("429s: %lld of %lld requests answered (%.2f%%)\n", r429, ok_all + r429,
		       100.0 * r429 / (double)(ok_all + r429 ? ok_all + r429 : 1));
		printf("daemon CPU: %.3f s per 1,000 jobs; peak RSS %.1f MiB\n",
		       ok_all ? cpu * 1000 / ok_all : 0, rss / 1024.0);
		printf("batch: succeeded %lld, failed %lld, queued %lld\n", field(buf, "succeeded"),
		       field(buf, "failed"), field(buf, "queued"));
		if (calls > 0)
			report_calls(calls, iout);
	}
	kill(daemon, SIGTERM);
	waitpid(daemon, NULL, 0);
	kill(mock, SIGTERM);
	waitpid(mock, NULL, 0);
	if (redis > 0) {
		snprintf(buf, sizeof(buf), "--json status");
		kill(redis, SIGTERM);
		waitpid(redis, NULL, 0);
	}
	snprintf(buf, sizeof(buf), "rm -rf %s", dir);
	if (!getenv("BENCH_KEEP") && system(buf) != 0)
		return 1;
	return 0;
}
