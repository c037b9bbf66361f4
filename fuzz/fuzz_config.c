/*
 * fuzz_config.c - the configuration file (daemon/service/config-file.c, through libinih),
 * fed as an INI file's text through the real config_load() path: written to
 * a memfd (no file on disk) and passed as --config /proc/self/fd/N.
 *
 * Beyond not crashing: the same text loads twice to the same configuration
 * (nothing read uninitialised); a loaded configuration holds what the
 * daemon relies on: 1..16 lanes, exactly one default, each with a base URL
 * and limits within their documented ranges (no NaN), and every model
 * finds a lane; users' budgets within theirs; a refused one says why.
 */
#include "fuzz.h"

#include "service/config.h"

#include <errno.h>
#include <math.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char name[256];
	size_t n;
	int i;

	/* Only the file speaks: the variables that would override it are unset, and
	 * the keys the example configuration names are set. */
	for (i = 0; environ[i];) {
		n = strcspn(environ[i], "=");
		if ((strncmp(environ[i], "LLMQ_", 5) != 0 &&
		     strncmp(environ[i], "OPENAI_", 7) != 0) ||
		    n >= sizeof(name)) {
			i++;
			continue;
		}
		memcpy(name, environ[i], n);
		name[n] = '\0';
		FUZZ_ASSERT(unsetenv(name) == 0, "unsetenv %s", name);
	}
	FUZZ_ASSERT(setenv("OPENAI_API_KEY", "sk-fuzz", 1) == 0 &&
	                setenv("LOCAL_LLM_KEY", "fuzz", 1) == 0,
	            "setenv");
	return 0;
}

static int load(int fd, struct config *cfg, char *err, size_t errlen)
{
	char path[64], *argv[4];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	argv[0] = "llmqd";
	argv[1] = "--config";
	argv[2] = path;
	argv[3] = NULL;
	err[0] = '\0';
	return config_load(cfg, 3, argv, err, errlen);
}

#define IN(v, lo, hi) ((v) >= (lo) && (v) <= (hi))

static void check(const struct config *cfg, const uint8_t *data, size_t size)
{
	const struct lane_config *l;
	char model[64];
	int i, defaults = 0;

	FUZZ_ASSERT(IN(cfg->n_lanes, 1, CONFIG_MAX_LANES), "%d lanes", cfg->n_lanes);
	for (i = 0; i < cfg->n_lanes; i++) {
		l = &cfg->lanes[i];
		defaults += l->is_default;
		FUZZ_ASSERT(l->name[0] && l->base_url[0], "lane %d: no name or base_url", i);
		FUZZ_ASSERT(IN(l->n_models, 0, CONFIG_MAX_MODELS), "%d models", l->n_models);
		FUZZ_ASSERT(IN(l->limits.max_concurrency, 1, 4096), "max_concurrency %d",
		            l->limits.max_concurrency);
		FUZZ_ASSERT(IN(l->limits.headroom, 0, 0.9), "headroom %g", l->limits.headroom);
		FUZZ_ASSERT(IN(l->limits.stagger_jitter, 0, 1), "stagger_jitter %g",
		            l->limits.stagger_jitter);
		FUZZ_ASSERT(IN(l->limits.interactive_reserve, 0, 0.9), "interactive_reserve %g",
		            l->limits.interactive_reserve);
		FUZZ_ASSERT(
		    IN(l->limits.tpm, 0, (int64_t)1e12) && IN(l->limits.rpm, 0, (int64_t)1e9),
		    "tpm %lld rpm %lld", (long long)l->limits.tpm, (long long)l->limits.rpm);
		FUZZ_ASSERT(IN(l->limits.stagger_ms, 0, 3600000) &&
		                IN(l->limits.burst_ms, 0, 3600000),
		            "stagger %lld burst %lld", (long long)l->limits.stagger_ms,
		            (long long)l->limits.burst_ms);
		FUZZ_ASSERT(IN(l->est_tokens_per_run, 1, (int64_t)1e9), "est %lld",
		            (long long)l->est_tokens_per_run);
		FUZZ_ASSERT(IN(l->retry_max_attempts, 1, 1000) &&
		                IN(l->backoff_base_ms, 1, 3600000) &&
		                IN(l->backoff_cap_ms, 1, 86400000) &&
		                IN(l->retry_after_max_ms, 1, 86400000) &&
		                IN(l->quota_pause_ms, 0, 86400000),
		            "retry settings");
		FUZZ_ASSERT(IN(l->queue_max_jobs, 0, (int64_t)1e12) &&
		                IN(l->queue_max_tokens, 0, (int64_t)1e15),
		            "queue caps");
		FUZZ_ASSERT(IN(l->connect_timeout_ms, 1, 600000) &&
		                IN(l->request_timeout_ms, 1, 86400000) &&
		                IN(l->interactive_max_wait_ms, 0, 3600000) &&
		                IN(l->lane_wait_max_ms, 0, 7 * 86400000LL),
		            "timeouts");
	}
	FUZZ_ASSERT(defaults == 1, "%d default lanes", defaults);
	FUZZ_ASSERT(IN(cfg->client_timeout_ms, 1000, 3600000), "client_timeout %lld",
	            (long long)cfg->client_timeout_ms);
	FUZZ_ASSERT(cfg->db_max_bytes >= 0 && cfg->retention_ms >= 0, "db_max / retention");
	FUZZ_ASSERT(IN(cfg->max_connections, 1, 4096) && IN(cfg->max_connections_per_user, 1, 4096),
	            "connections");
	FUZZ_ASSERT(IN(cfg->http_max_connections, 1, 65536) &&
	                IN(cfg->http_max_connections_per_user, 1, 65536),
	            "http connections");
	FUZZ_ASSERT(IN(cfg->budgets.n, 0, BUDGET_SECTIONS_MAX), "%d budget sections",
	            cfg->budgets.n);
	for (i = 0; i < cfg->budgets.n; i++) {
		const struct budget_limits *b = &cfg->budgets.s[i].lim;

		FUZZ_ASSERT(cfg->budgets.s[i].name[0], "a budget section without a name");
		FUZZ_ASSERT(b->tpm_share == BUDGET_UNSET || IN(b->tpm_share, 0, 1), "tpm_share %g",
		            b->tpm_share);
		FUZZ_ASSERT(IN(b->allowed[BUDGET_DAILY_TOKENS], BUDGET_UNSET, BUDGET_TOKENS_MAX) &&
		                IN(b->allowed[BUDGET_MONTHLY_USD], BUDGET_UNSET, BUDGET_NUSD_MAX),
		            "budgets %lld %lld", (long long)b->allowed[BUDGET_DAILY_TOKENS],
		            (long long)b->allowed[BUDGET_MONTHLY_USD]);
	}
	snprintf(model, sizeof(model), "%.*s", (int)(size < 40 ? size : 40), (const char *)data);
	FUZZ_ASSERT(config_lane_for_model(cfg, model), "no lane for a model");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config a, b;
	char err_a[512], err_b[512];
	int fd, ra, rb;

	fd = memfd_create("llmqd.conf", MFD_CLOEXEC);
	FUZZ_ASSERT(fd >= 0, "memfd_create: %s", strerror(errno));
	FUZZ_ASSERT(write(fd, data, size) == (ssize_t)size, "write: %s", strerror(errno));
	ra = load(fd, &a, err_a, sizeof(err_a));
	rb = load(fd, &b, err_b, sizeof(err_b));
	close(fd);
	FUZZ_ASSERT(ra == 0 || ra == -EINVAL, "config_load %d", ra);
	FUZZ_ASSERT(ra == rb && strcmp(err_a, err_b) == 0, "loaded twice: %d \"%s\", %d \"%s\"", ra,
	            err_a, rb, err_b);
	if (ra < 0) {
		FUZZ_ASSERT(err_a[0], "refused without a reason");
		return 0;
	}
	FUZZ_ASSERT(memcmp(&a, &b, sizeof(a)) == 0, "the same text, another configuration");
	check(&a, data, size);
	return 0;
}
