/*
 * upload.c - the Batch API's way in, measured from outside a running llmqd
 * (bench/run.sh upload starts it): a JSONL file of N request lines uploaded
 * with POST /v1/files (multipart, as the SDK sends it), then POST
 * /v1/batches on it, which answers once the batch is stored and
 * in_progress. Prints the seconds of each step, the daemon's peak RSS, and
 * the slowest GET /healthz of another client meanwhile (how long the loop
 * was held). Asserts nothing.
 *
 *   upload --http HOST:PORT --pid P [--lines N] [--prompt-chars C]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BOUNDARY "llmqBenchForm"

static char host[64] = "127.0.0.1";
static int port, pid, lines = 50000, prompt_chars = 100;
static atomic_int stop;
static double slowest_ms, slowest_at, t_start;
static long probes;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long status_kib(const char *field)
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

static int tcp_connect(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_port = htons((uint16_t)port);
	if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(1);
	}
	return fd;
}

static void send_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0) {
			perror("send");
			exit(1);
		}
		p += n;
		len -= (size_t)n;
	}
}

/* The whole answer (Connection: close); its status, the body into buf. */
static int request(const char *head, const char *body, size_t blen, char *buf, size_t len)
{
	int fd = tcp_connect(), status = 0;
	size_t got = 0;
	ssize_t n;
	char *b;

	send_all(fd, head, strlen(head));
	if (blen)
		send_all(fd, body, blen);
	while (got + 1 < len && (n = recv(fd, buf + got, len - 1 - got, 0)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(fd);
	sscanf(buf, "HTTP/1.1 %d", &status);
	b = strstr(buf, "\r\n\r\n");
	if (b)
		memmove(buf, b + 4, strlen(b + 4) + 1);
	return status;
}

static void *prober(void *arg)
{
	static const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char buf[4096];
	double t;

	(void)arg;
	while (!atomic_load(&stop)) {
		t = now_ms();
		request(get, NULL, 0, buf, sizeof(buf));
		t = now_ms() - t;
		if (t > slowest_ms) {
			slowest_ms = t;
			slowest_at = now_ms() - t - t_start;
		}
		probes++;
		usleep(10000);
	}
	return NULL;
}

static const char *field(const char *json, const char *key, char *out, size_t len)
{
	char pat[64];
	const char *p;
	size_t n;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	p = strstr(json, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	n = strcspn(p, "\"");
	snprintf(out, len, "%.*s", (int)n, p);
	return out;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"http", required_argument, NULL, 'h'},
	    {"pid", required_argument, NULL, 'p'},
	    {"lines", required_argument, NULL, 'n'},
	    {"prompt-chars", required_argument, NULL, 'c'},
	    {NULL, 0, NULL, 0},
	};
	static char buf[1 << 20];
	char head[512], id[64], status[32], *form, *prompt, *colon;
	size_t cap, len = 0;
	double t0, t1, t2;
	long rss0;
	pthread_t th;
	int c, i, st;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			snprintf(host, sizeof(host), "%s", optarg);
			colon = strrchr(host, ':');
			if (!colon)
				return 2;
			*colon = '\0';
			port = atoi(colon + 1);
			break;
		case 'p':
			pid = atoi(optarg);
			break;
		case 'n':
			lines = atoi(optarg);
			break;
		case 'c':
			prompt_chars = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (!port || !pid) {
		fprintf(stderr, "usage: upload --http HOST:PORT --pid P [--lines N]\n");
		return 2;
	}
	prompt = malloc((size_t)prompt_chars + 1);
	cap = (size_t)lines * ((size_t)prompt_chars + 200) + 1024;
	form = malloc(cap);
	if (!prompt || !form)
		return 1;
	memset(prompt, 'a', (size_t)prompt_chars);
	prompt[prompt_chars] = '\0';
	len += (size_t)snprintf(form + len, cap - len,
	                        "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"purpose\""
	                        "\r\n\r\nbatch\r\n--" BOUNDARY "\r\nContent-Disposition: form-data;"
	                        " name=\"file\"; filename=\"big.jsonl\"\r\n"
	                        "Content-Type: application/octet-stream\r\n\r\n");
	for (i = 0; i < lines; i++)
		len += (size_t)snprintf(
		    form + len, cap - len,
		    "{\"custom_id\":\"r%d\",\"method\":\"POST\",\"url\":\"/v1/chat/"
		    "completions\",\"body\":{\"model\":\"gpt-4o-mini\",\"messages\":"
		    "[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":50}}\n",
		    i, prompt);
	len += (size_t)snprintf(form + len, cap - len, "\r\n--" BOUNDARY "--\r\n");

	rss0 = status_kib("VmRSS:");
	pthread_create(&th, NULL, prober, NULL);
	usleep(100000);
	t0 = t_start = now_ms();
	snprintf(head, sizeof(head),
	         "POST /v1/files HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
	         "multipart/form-data; boundary=" BOUNDARY "\r\nContent-Length: %zu\r\n\r\n",
	         len);
	st = request(head, form, len, buf, sizeof(buf));
	t1 = now_ms();
	if (st != 200 || !field(buf, "id", id, sizeof(id))) {
		fprintf(stderr, "upload: HTTP %d: %.300s\n", st, buf);
		return 1;
	}
	snprintf(buf, sizeof(buf),
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
	         "\"completion_window\":\"24h\"}",
	         id);
	form[0] = '\0';
	snprintf(form, cap, "%s", buf);
	snprintf(head, sizeof(head),
	         "POST /v1/batches HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
	         "application/json\r\nContent-Length: %zu\r\n\r\n",
	         strlen(form));
	st = request(head, form, strlen(form), buf, sizeof(buf));
	t2 = now_ms();
	usleep(100000);
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	if (st != 200 || !field(buf, "status", status, sizeof(status))) {
		fprintf(stderr, "create: HTTP %d: %.300s\n", st, buf);
		return 1;
	}
	printf("%d lines, %.1f MB: upload %.2f s (%.0f MB/s), create to %s %.2f s, "
	       "start of upload to %s %.2f s\n",
	       lines, (double)len / 1e6, (t1 - t0) / 1e3, (double)len / 1e3 / (t1 - t0), status,
	       (t2 - t1) / 1e3, status, (t2 - t0) / 1e3);
	printf("llmqd RSS: %.1f MiB before, peak %.1f MiB; /healthz meanwhile: %ld answered, the "
	       "slowest %.1f ms (sent %.2f s after the upload began)\n",
	       (double)rss0 / 1024, (double)status_kib("VmHWM:") / 1024, probes, slowest_ms,
	       slowest_at / 1e3);
	free(form);
	free(prompt);
	return 0;
}
