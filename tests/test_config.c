/* Configuration precedence: defaults < file < environment < flags. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "service/config.h"

static char dir[] = "/tmp/llmq-test-config-XXXXXX";
static char file[256];
static struct config cfg;

static void setup(void)
{
	static const char *const vars[] = {"LLMQ_SOCKET",
	                                   "LLMQ_DB",
	                                   "LLMQ_CONFIG",
	                                   "OPENAI_BASE_URL",
	                                   "OPENAI_MAX_CONCURRENCY",
	                                   "OPENAI_STAGGER_SECONDS",
	                                   "OPENAI_TPM_LIMIT",
	                                   "OPENAI_TPM_HEADROOM",
	                                   "OPENAI_EST_TOKENS_PER_RUN",
	                                   "OPENAI_RETRY_MAX_ATTEMPTS",
	                                   "OPENAI_BACKOFF_BASE_SECONDS",
	                                   "OPENAI_RPM_LIMIT",
	                                   "OPENAI_BURST_SECONDS",
	                                   "OPENAI_API_KEY",
	                                   "LLMQ_RETENTION",
	                                   "LLMQ_HTTP_SOCKET",
	                                   "LLMQ_PRICES_FILE",
	                                   "LLMQ_FILES_MAX_BYTES_PER_USER",
	                                   "LLMQ_QUEUE_MAX_JOBS_PER_USER",
	                                   "LLMQ_DISK_MIN_FREE_MB",
	                                   "LLMQ_UPSTREAM_CLIENT",
	                                   NULL};
	int i;

	for (i = 0; vars[i]; i++)
		unsetenv(vars[i]);
	cr_assert_not_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/llmqd.conf", dir);
}

/* The test's file and directory go with it. */
static void teardown(void)
{
	unlink(file);
	rmdir(dir);
}

TestSuite(config, .init = setup, .fini = teardown);

static int load(char *err, size_t errlen, int argc, ...)
{
	char *argv[16] = {"llmqd"};
	va_list ap;
	int i;

	va_start(ap, argc);
	for (i = 0; i < argc; i++)
		argv[i + 1] = va_arg(ap, char *);
	va_end(ap);
	return config_load(&cfg, argc + 1, argv, err, errlen);
}

static void write_file(const char *text)
{
	FILE *f = fopen(file, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

Test(config, prototype_defaults)
{
	char err[512];

	cr_assert_eq(load(err, sizeof(err), 2, "--config", "/nonexistent/llmqd.conf"), -EINVAL,
	             "an explicit --config must exist");
	setenv("LLMQ_CONFIG", "", 1);
	cr_assert_eq(load(err, sizeof(err), 0), 0, "%s", err);
	cr_assert_eq(cfg.n_lanes, 1);
	cr_assert_str_eq(cfg.lanes[0].name, "openai");
	cr_assert_eq(cfg.lanes[0].limits.max_concurrency, 3);
	cr_assert_eq(cfg.lanes[0].limits.stagger_ms, 15000);
	cr_assert_eq(cfg.lanes[0].limits.tpm, 30000);
	cr_assert_float_eq(cfg.lanes[0].limits.headroom, 0.15, 1e-9);
	cr_assert_eq(cfg.lanes[0].est_tokens_per_run, 7000);
	cr_assert_eq(cfg.lanes[0].retry_max_attempts, 5);
	cr_assert_eq(cfg.lanes[0].backoff_base_ms, 2000);
	cr_assert_eq(cfg.lanes[0].limits.rpm, 0);
	cr_assert_str_eq(cfg.lanes[0].base_url, "https://api.openai.com/v1");
}

Test(config, env_then_flags)
{
	char err[512];

	setenv("OPENAI_MAX_CONCURRENCY", "7", 1);
	setenv("OPENAI_STAGGER_SECONDS", "0.5", 1);
	setenv("OPENAI_TPM_LIMIT", "60000", 1);
	setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1", 1);
	setenv("LLMQ_SOCKET", "/tmp/from-env.sock", 1);
	cr_assert_eq(load(err, sizeof(err), 0), 0, "%s", err);
	cr_assert_eq(cfg.lanes[0].limits.max_concurrency, 7);
	cr_assert_eq(cfg.lanes[0].limits.stagger_ms, 500);
	cr_assert_eq(cfg.lanes[0].limits.tpm, 60000);
	cr_assert_str_eq(cfg.lanes[0].base_url, "http://127.0.0.1:9/v1");
	cr_assert_str_eq(cfg.socket_path, "/tmp/from-env.sock");

	cr_assert_eq(
	    load(err, sizeof(err), 4, "--max-concurrency", "9", "--socket", "/tmp/flag.sock"), 0,
	    "%s", err);
	cr_assert_eq(cfg.lanes[0].limits.max_concurrency, 9, "flag beats environment");
	cr_assert_str_eq(cfg.socket_path, "/tmp/flag.sock");
	cr_assert_eq(cfg.lanes[0].limits.tpm, 60000, "environment kept where no flag");
}

Test(config, bad_values_are_named)
{
	char err[512];

	/* By the name the user set: the variable, the flag, the file key. */
	setenv("OPENAI_MAX_CONCURRENCY", "zero", 1);
	cr_assert_eq(load(err, sizeof(err), 0), -EINVAL);
	cr_assert(strstr(err, "environment: OPENAI_MAX_CONCURRENCY = \"zero\""), "%s", err);
	unsetenv("OPENAI_MAX_CONCURRENCY");
	cr_assert_eq(load(err, sizeof(err), 2, "--headroom", "1.5"), -EINVAL);
	cr_assert(strstr(err, "command line: --headroom = \"1.5\""), "%s", err);
	cr_assert_eq(load(err, sizeof(err), 1, "--bogus"), -EINVAL);
	write_file("[lane a]\nbase_url = http://127.0.0.1:1/v1\ntpm_limit = lots\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "[lane a]: tpm_limit = \"lots\""), "%s", err);
}

/* base_url is an http(s) URL with a host, wherever it comes from (libcurl parses it). */
Test(config, base_url_must_be_an_http_url)
{
	static const char *const bad_urls[] = {"ftp://x",    "api.openai.com",     "https://",
	                                       "http//x/v1", "file:///etc/passwd", NULL};
	char err[512], text[256];
	int i;

	for (i = 0; bad_urls[i]; i++) {
		snprintf(text, sizeof(text), "[lane mine]\nbase_url = %s\n", bad_urls[i]);
		write_file(text);
		cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL, "%s",
		             bad_urls[i]);
		cr_assert(strstr(err, "[lane mine]: base_url = ") && strstr(err, bad_urls[i]), "%s",
		          err);
		setenv("OPENAI_BASE_URL", bad_urls[i], 1);
		cr_assert_eq(load(err, sizeof(err), 0), -EINVAL, "%s", bad_urls[i]);
		cr_assert(strstr(err, "environment: OPENAI_BASE_URL = "), "%s", err);
		unsetenv("OPENAI_BASE_URL");
		cr_assert_eq(load(err, sizeof(err), 2, "--base-url", bad_urls[i]), -EINVAL);
		cr_assert(strstr(err, "command line: --base-url = "), "%s", err);
	}
	cr_assert(strstr(err, "http:// or https://") || strstr(err, "not a URL"), "%s", err);
	setenv("OPENAI_BASE_URL", "http://[::1]:8080/v1", 1);
	cr_assert_eq(load(err, sizeof(err), 0), 0, "%s", err);
}

/* Every lane variable set beside a file is named, in one message. */
Test(config, mixed_sources_name_every_variable)
{
	char err[1024];

	write_file("[lane a]\nbase_url = http://127.0.0.1:1/v1\n");
	setenv("OPENAI_BASE_URL", "https://api.openai.com/v1", 1);
	setenv("OPENAI_TPM_LIMIT", "30000", 1);
	setenv("OPENAI_STAGGER_SECONDS", "15", 1);
	setenv("OPENAI_API_KEY", "sk-allowed-beside-a-file", 1);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "OPENAI_BASE_URL, OPENAI_STAGGER_SECONDS, OPENAI_TPM_LIMIT are set"),
	          "%s", err);
	cr_assert(strstr(err, "base_url, stagger_seconds, tpm_limit"), "%s", err);
	cr_assert_null(strstr(err, "OPENAI_API_KEY"), "%s", err);
}

/* The shipped environment file, then the shipped config file added to it: starts. */
Test(config, adding_the_example_config_keeps_the_example_env_working)
{
	char err[1024], line[512], *eq;
	FILE *f = fopen(SOURCE_DIR "/systemd/llmqd.env.example", "r");
	int assignments = 0;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '#' || !(eq = strchr(line, '=')))
			continue;
		*eq = '\0';
		setenv(line, eq + 1, 1);
		assignments++;
	}
	fclose(f);
	setenv("OPENAI_API_KEY", "sk-test", 1); /* the user's key, however they set it */
	cr_assert_eq(load(err, sizeof(err), 0), 0, "the env file alone: %s", err);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", SOURCE_DIR "/examples/llmqd.conf"), 0,
	             "the env file with the example config (%d assignments): %s", assignments, err);
	cr_assert_eq(cfg.n_lanes, 2);
}

Test(config, file_lanes_and_precedence)
{
	char err[512];

	write_file("# lanes for the test\n"
	           "[daemon]\n"
	           "socket = /tmp/from-file.sock\n"
	           "db = /tmp/from-file.db\n"
	           "\n"
	           "[lane openai]\n"
	           "base_url = https://api.openai.com/v1\n"
	           "models = gpt-*, o*\n"
	           "tpm_limit = 90000 ; inline comment\n"
	           "max_concurrency = 12\n"
	           "\n"
	           "[lane local]\n"
	           "base_url = http://127.0.0.1:8080/v1\n"
	           "key_env = LOCAL_KEY\n"
	           "models = llama-*\n"
	           "tpm_limit = 0\n"
	           "default = yes\n");
	setenv("LOCAL_KEY", "k", 1); /* key_env names a variable that is set */
	/* A lane variable with a file would be ignored: it is refused, naming the key. */
	setenv("OPENAI_TPM_LIMIT", "1", 1);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "OPENAI_TPM_LIMIT is set") && strstr(err, "tpm_limit"), "%s", err);
	unsetenv("OPENAI_TPM_LIMIT");
	setenv("LLMQ_DB", "/tmp/from-env.db", 1);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_eq(cfg.n_lanes, 2);
	cr_assert_str_eq(cfg.socket_path, "/tmp/from-file.sock", "file beats default");
	cr_assert_str_eq(cfg.db_path, "/tmp/from-env.db", "environment beats file");
	cr_assert_eq(cfg.lanes[0].limits.tpm, 90000);
	cr_assert_eq(cfg.lanes[0].limits.max_concurrency, 12);
	cr_assert_eq(cfg.lanes[0].limits.stagger_ms, 15000, "unset keys keep the defaults");
	cr_assert_str_eq(config_lane_for_model(&cfg, "gpt-4o")->name, "openai");
	cr_assert_str_eq(config_lane_for_model(&cfg, "o3-mini")->name, "openai");
	cr_assert_str_eq(config_lane_for_model(&cfg, "llama-3")->name, "local");
	cr_assert_str_eq(config_lane_for_model(&cfg, "claude")->name, "local", "default lane");
	cr_assert_eq(load(err, sizeof(err), 4, "--config", file, "--tpm", "5"), -EINVAL,
	             "lane flags conflict with a config file");
	/* A lane without base_url does not silently go to api.openai.com. */
	write_file("[lane y]\nbase_url = http://127.0.0.1:1/v1\nkey_env = LLMQ_TEST_UNSET_KEY\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "LLMQ_TEST_UNSET_KEY is not set"), "%s", err);
	write_file("[lane x]\nmodels = *\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "[lane x] has no base_url"), "%s", err);
}

Test(config, file_errors_name_the_place)
{
	char err[512];

	write_file("[lane a]\nmax_concurrency = -3\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "max_concurrency") && strstr(err, "[lane a]"), "%s", err);
	write_file("[lane a]\nfrobnicate = 1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "unknown key"), "%s", err);
	write_file("[daemon]\nsocket = /tmp/x\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "no [lane"), "%s", err);
	write_file("[lane a]\nthis line is wrong\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "line 2"), "%s", err);
}

/* Found by fuzz_config: "base_url =" loaded a lane that sends to no URL. */
Test(config, an_empty_base_url_is_refused)
{
	char err[512];

	write_file("[lane a]\nbase_url =\nmodels = *\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "[lane a]: base_url = \"\": empty"), "%s", err);
	cr_assert_eq(load(err, sizeof(err), 2, "--base-url", ""), -EINVAL);
	cr_assert(strstr(err, "command line: --base-url = \"\": empty"), "%s", err);
}

/* Found by fuzz_config: "nan" passed every range check (each comparison with
 * NaN is false) and was stored, or converted to an integer (undefined). */
Test(config, nan_is_out_of_every_range)
{
	char err[512];

	write_file("[daemon]\ndb_max_mb = nan\n[lane a]\nbase_url = http://127.0.0.1:1/v1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "db_max_mb"), "%s", err);
	write_file("[lane a]\nbase_url = http://127.0.0.1:1/v1\nheadroom = NaN\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "headroom"), "%s", err);
	cr_assert_eq(load(err, sizeof(err), 2, "--tpm", "-nan"), -EINVAL);
	cr_assert(strstr(err, "--tpm"), "%s", err);
	cr_assert_eq(load(err, sizeof(err), 2, "--db-max-mb", "nan"), -EINVAL);
}

/* atoi() read "4294967360" as 64 and "8x" as 8: a count is all digits, in range. */
Test(config, a_connection_count_is_read_whole)
{
	static const char *const bad[] = {"max_connections = 4294967360",
	                                  "max_connections_per_user = 8x",
	                                  "http_max_connections = 18446744073709551617",
	                                  "http_max_connections_per_user = 0x10", NULL};
	char err[512], text[256];
	int i;

	for (i = 0; bad[i]; i++) {
		snprintf(text, sizeof(text), "[daemon]\n%s\n[lane a]\nbase_url = http://x/v1\n",
		         bad[i]);
		write_file(text);
		cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL, "%s", bad[i]);
		cr_assert(strstr(err, "out of range"), "%s: %s", bad[i], err);
	}
	write_file("[daemon]\nmax_connections = 100\n[lane a]\nbase_url = http://x/v1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_eq(cfg.max_connections, 100);
	setenv("LLMQ_HTTP_MAX_CONNECTIONS_PER_USER", "4294967297", 1);
	cr_assert_eq(load(err, sizeof(err), 0), -EINVAL);
	unsetenv("LLMQ_HTTP_MAX_CONNECTIONS_PER_USER");
}

Test(config, http_listener_and_interactive_settings)
{
	char err[512], host[64];
	int port;

	cr_assert_eq(load(err, sizeof(err), 0), 0, "%s", err);
	cr_assert_str_eq(cfg.http_addr, CONFIG_DEFAULT_HTTP);
	cr_assert_float_eq(cfg.lanes[0].limits.interactive_reserve, 0.2, 1e-9);
	cr_assert_eq(cfg.lanes[0].interactive_max_wait_ms, 30000);
	setenv("LLMQ_HTTP_ADDR", "off", 1);
	setenv("LLMQ_INTERACTIVE_RESERVE", "0.5", 1);
	cr_assert_eq(load(err, sizeof(err), 2, "--interactive-max-wait", "2s"), 0, "%s", err);
	cr_assert_str_eq(cfg.http_addr, "off");
	cr_assert_float_eq(cfg.lanes[0].limits.interactive_reserve, 0.5, 1e-9);
	cr_assert_eq(cfg.lanes[0].interactive_max_wait_ms, 2000);
	cr_assert_eq(load(err, sizeof(err), 2, "--http", "127.0.0.1:99999"), -EINVAL);
	cr_assert(strstr(err, "HOST:PORT"), "%s", err);
	cr_assert_eq(config_parse_http_addr("[::1]:8411", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "::1");
	cr_assert_eq(port, 8411);
	cr_assert_eq(config_parse_http_addr("localhost", host, sizeof(host), &port), -EINVAL);
	unsetenv("LLMQ_HTTP_ADDR");
	unsetenv("LLMQ_INTERACTIVE_RESERVE");
}

Test(config, the_provider_window_and_the_lane_wait)
{
	char err[512];

	setenv("LLMQ_CONFIG", "", 1);
	cr_assert_eq(load(err, sizeof(err), 0), 0, "%s", err);
	cr_assert_eq(cfg.lanes[0].provider_window, GATE_WINDOW_AUTO, "learned by default");
	cr_assert_eq(cfg.lanes[0].lane_wait_max_ms, 3600000, "an hour of the lane's waiting");
	setenv("LLMQ_PROVIDER_WINDOW", "second", 1);
	setenv("LLMQ_LANE_WAIT_MAX_SECONDS", "10m", 1);
	cr_assert_eq(load(err, sizeof(err), 0), 0, "%s", err);
	cr_assert_eq(cfg.lanes[0].provider_window, GATE_WINDOW_SECOND);
	cr_assert_eq(cfg.lanes[0].lane_wait_max_ms, 600000);
	cr_assert_eq(load(err, sizeof(err), 2, "--provider-window", "minute"), 0, "%s", err);
	cr_assert_eq(cfg.lanes[0].provider_window, GATE_WINDOW_MINUTE, "the flag pins it");
	cr_assert_eq(load(err, sizeof(err), 2, "--provider-window", "hour"), -EINVAL);
	cr_assert(strstr(err, "--provider-window") && strstr(err, "auto, minute or second"), "%s",
	          err);
	unsetenv("LLMQ_PROVIDER_WINDOW");
	unsetenv("LLMQ_LANE_WAIT_MAX_SECONDS");
}

/* [fleet] < LLMQ_REDIS_URL and its kin < --redis; a lane shares by its name. */
Test(config, the_fleet_settings_and_their_precedence)
{
	char err[512];

	setenv("LLMQ_CONFIG", "", 1);
	cr_assert_eq(load(err, sizeof(err), 0), 0, "%s", err);
	cr_assert_str_eq(cfg.fleet.redis_url, "", "no Redis unless told");
	cr_assert_eq(cfg.fleet.redis_timeout_ms, 100);
	cr_assert_str_eq(config_lane_share(&cfg.lanes[0]), "openai", "shared by the lane's name");
	unsetenv("LLMQ_CONFIG");
	write_file("[fleet]\nredis_url = unix:///run/redis/redis.sock?db=2\nredis_timeout = 250ms\n"
	           "host_id = web-1\nredis_password_file = redis-password\n"
	           "[lane a]\nbase_url = http://127.0.0.1:1/v1\nshare = org-key.1\n"
	           "[lane b]\nbase_url = http://127.0.0.1:2/v1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_str_eq(cfg.fleet.redis_url, "unix:///run/redis/redis.sock?db=2");
	cr_assert_eq(cfg.fleet.redis_timeout_ms, 250);
	cr_assert_str_eq(cfg.fleet.host_id, "web-1");
	cr_assert_str_eq(cfg.fleet.redis_password_file, "redis-password");
	cr_assert_str_eq(config_lane_share(&cfg.lanes[0]), "org-key.1");
	cr_assert_str_eq(config_lane_share(&cfg.lanes[1]), "b");
	setenv("LLMQ_REDIS_URL", "redis://10.0.0.5:6380/1", 1);
	setenv("LLMQ_REDIS_TIMEOUT", "0.5", 1);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_str_eq(cfg.fleet.redis_url, "redis://10.0.0.5:6380/1", "the environment wins");
	cr_assert_eq(cfg.fleet.redis_timeout_ms, 500);
	cr_assert_eq(load(err, sizeof(err), 4, "--config", file, "--redis", "unix:///x.sock"), 0,
	             "%s", err);
	cr_assert_str_eq(cfg.fleet.redis_url, "unix:///x.sock", "the flag wins");
	unsetenv("LLMQ_REDIS_URL");
	unsetenv("LLMQ_REDIS_TIMEOUT");
}

/* A bad Redis URL is refused by the name it was set under, its password never echoed. */
Test(config, a_bad_redis_url_is_named_and_its_password_never_shown)
{
	char err[1024];

	setenv("LLMQ_CONFIG", "", 1);
	setenv("LLMQ_REDIS_URL", "redis://admin:s3cret@/0", 1);
	cr_assert_eq(load(err, sizeof(err), 0), -EINVAL);
	cr_assert(strstr(err, "environment: LLMQ_REDIS_URL = "), "%s", err);
	cr_assert_null(strstr(err, "s3cret"), "%s", err);
	cr_assert(strstr(err, "not shown"), "%s", err);
	unsetenv("LLMQ_REDIS_URL");
	cr_assert_eq(load(err, sizeof(err), 2, "--redis", "http://127.0.0.1:6379"), -EINVAL);
	cr_assert(strstr(err, "command line: --redis = \"http://127.0.0.1:6379\"") &&
	              strstr(err, "redis:// or unix://"),
	          "%s", err);
	cr_assert_eq(load(err, sizeof(err), 2, "--redis", "rediss://cache:6380"), -EINVAL);
	cr_assert(strstr(err, "stunnel"), "TLS is pointed to a tunnel: %s", err);
	unsetenv("LLMQ_CONFIG");
	write_file(
	    "[fleet]\nredis_timeout = forever\n[lane a]\nbase_url = http://127.0.0.1:1/v1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "[fleet]: redis_timeout = \"forever\""), "%s", err);
	write_file("[fleet]\nredis = x\n[lane a]\nbase_url = http://127.0.0.1:1/v1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "unknown key") && strstr(err, "redis_url"), "%s", err);
	write_file("[lane a]\nbase_url = http://127.0.0.1:1/v1\nshare = {tag}\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "[lane a]: share = \"{tag}\""), "%s", err);
}

/* Prices: [prices] lines, a prices file (prices_file, or LLMQ_PRICES_FILE). */
Test(config, prices_from_the_file_and_a_prices_file)
{
	char err[1024], prices[300];
	const struct price *p;
	FILE *f;

	snprintf(prices, sizeof(prices), "%s/prices.conf", dir);
	f = fopen(prices, "w");
	cr_assert_not_null(f);
	fputs("[prices]\no3* = 2 0.5 8\n", f);
	fclose(f);
	f = fopen(file, "w");
	cr_assert_not_null(f);
	fprintf(f,
	        "[daemon]\nprices_file = %s\n\n[prices]\ngpt-4o-mini = 0.15 0.075 0.60 ; the mini\n"
	        "text-embedding-3-small = 0.02 0\n\n[lane a]\nbase_url = http://127.0.0.1:1/v1\n",
	        prices);
	fclose(f);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_eq(cfg.prices.n, 3, "the file's two, then the prices file's one");
	p = price_find(&cfg.prices, "gpt-4o-mini");
	cr_assert(p && p->input == 150000 && p->cached == 75000 && p->output == 600000);
	p = price_find(&cfg.prices, "o3-2025-04-16");
	cr_assert(p && p->output == 8000000, "from the prices file");
	cr_assert_null(price_find(&cfg.prices, "gpt-5"));
	/* The variable names another file. */
	f = fopen(prices, "w");
	fputs("[prices]\ngpt-5* = 1.25 0.125 10\n", f);
	fclose(f);
	setenv("LLMQ_PRICES_FILE", prices, 1);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_not_null(price_find(&cfg.prices, "gpt-5"));
	/* A pattern in both is one too many. */
	f = fopen(prices, "w");
	fputs("[prices]\ngpt-4o-mini = 1 2\n", f);
	fclose(f);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "prices.conf [prices]") && strstr(err, "once"), "%s", err);
	/* A file of something else. */
	f = fopen(prices, "w");
	fputs("[lane x]\nbase_url = http://127.0.0.1:1/v1\n", f);
	fclose(f);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "holds [prices] alone"), "%s", err);
	unlink(prices);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "cannot open the prices file") && strstr(err, "LLMQ_PRICES_FILE"),
	          "%s", err);
	unsetenv("LLMQ_PRICES_FILE");
}

Test(config, a_bad_price_names_the_place_and_the_fix)
{
	char err[1024];

	write_file("[prices]\ngpt-4o = 2.50 ten\n\n[lane a]\nbase_url = http://127.0.0.1:1/v1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "[prices]: gpt-4o = \"2.50 ten\"") && strstr(err, "USD per 1M"), "%s",
	          err);
	write_file("[prices]\ngpt-4o = 2.50\n\n[lane a]\nbase_url = http://127.0.0.1:1/v1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "INPUT [CACHED_INPUT] OUTPUT"), "%s", err);
	write_file("[price]\ngpt-4o = 2.50 10\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "unknown section [price]") && strstr(err, "[prices]"), "%s", err);
}

/* The example prices file loads, and prices each family by its own pattern. */
Test(config, the_example_prices_load)
{
	static const struct {
		const char *model, *pattern;
	} cases[] = {
	    {"gpt-4o-mini-2024-07-18", "gpt-4o-mini*"},
	    {"gpt-4o-2024-08-06", "gpt-4o*"},
	    {"gpt-4o-2024-05-13", "gpt-4o-2024-05-13"},
	    {"gpt-5-mini", "gpt-5-mini*"},
	    {"o3-mini", "o3-mini*"},
	    {"o3", "o3*"},
	    {"text-embedding-3-small", "text-embedding-3-small"},
	};
	const struct price *p;
	char err[1024];
	size_t i;

	setenv("LLMQ_PRICES_FILE", SOURCE_DIR "/examples/prices-openai.conf", 1);
	cr_assert_eq(load(err, sizeof(err), 0), 0, "%s", err);
	unsetenv("LLMQ_PRICES_FILE");
	cr_assert_gt(cfg.prices.n, 10);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p = price_find(&cfg.prices, cases[i].model);
		cr_assert(p && !strcmp(p->pattern, cases[i].pattern), "%s: %s", cases[i].model,
		          p ? p->pattern : "no price");
	}
	p = price_find(&cfg.prices, "gpt-4o-2024-05-13");
	cr_assert_eq(p->cached, p->input, "no cached price: input's");
}

/* What a user may keep and the disk's floor: defaults, the file, the environment over it. */
Test(config, quotas_and_the_free_space_floor)
{
	static const char *const bad[] = {
	    "files_max_bytes_per_user = 2T", "files_max_bytes_per_user = -1",
	    "queue_max_jobs_per_user = 1e6", "disk_min_free_mb = nan", NULL};
	char err[512], text[256];
	int i;

	setenv("LLMQ_CONFIG", "", 1);
	cr_assert_eq(load(err, sizeof(err), 0), 0, "%s", err);
	cr_assert_eq(cfg.files_max_bytes_per_user, 2LL << 30);
	cr_assert_eq(cfg.queue_max_jobs_per_user, 1000000);
	cr_assert_eq(cfg.disk_min_free_bytes, 256LL << 20);
	unsetenv("LLMQ_CONFIG");
	write_file("[daemon]\nfiles_max_bytes_per_user = 500M\nqueue_max_jobs_per_user = 10\n"
	           "disk_min_free_mb = 0\n[lane a]\nbase_url = http://x/v1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_eq(cfg.files_max_bytes_per_user, 500LL << 20);
	cr_assert_eq(cfg.queue_max_jobs_per_user, 10);
	cr_assert_eq(cfg.disk_min_free_bytes, 0);
	setenv("LLMQ_FILES_MAX_BYTES_PER_USER", "1GiB", 1);
	setenv("LLMQ_QUEUE_MAX_JOBS_PER_USER", "0", 1);
	setenv("LLMQ_DISK_MIN_FREE_MB", "1.5", 1);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_eq(cfg.files_max_bytes_per_user, 1LL << 30, "the environment over the file");
	cr_assert_eq(cfg.queue_max_jobs_per_user, 0);
	cr_assert_eq(cfg.disk_min_free_bytes, 3LL << 19);
	setenv("LLMQ_FILES_MAX_BYTES_PER_USER", "lots", 1);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "LLMQ_FILES_MAX_BYTES_PER_USER") && strstr(err, "GiB"), "%s", err);
	unsetenv("LLMQ_FILES_MAX_BYTES_PER_USER");
	unsetenv("LLMQ_QUEUE_MAX_JOBS_PER_USER");
	unsetenv("LLMQ_DISK_MIN_FREE_MB");
	for (i = 0; bad[i]; i++) {
		snprintf(text, sizeof(text), "[daemon]\n%s\n[lane a]\nbase_url = http://x/v1\n",
		         bad[i]);
		write_file(text);
		cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL, "%s", bad[i]);
		cr_assert(strstr(err, "out of range"), "%s: %s", bad[i], err);
	}
}

/* Who sends plain http to an address: llmqd's own client unless told curl. */
Test(config, the_upstream_client)
{
	char err[512];

	setenv("LLMQ_CONFIG", "", 1);
	cr_assert_eq(load(err, sizeof(err), 0), 0, "%s", err);
	cr_assert_eq(cfg.upstream_curl, 0);
	unsetenv("LLMQ_CONFIG");
	write_file("[daemon]\nupstream_client = curl\n[lane a]\nbase_url = http://x/v1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_eq(cfg.upstream_curl, 1);
	setenv("LLMQ_UPSTREAM_CLIENT", "builtin", 1);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_eq(cfg.upstream_curl, 0, "the environment over the file");
	setenv("LLMQ_UPSTREAM_CLIENT", "libcurl", 1);
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "LLMQ_UPSTREAM_CLIENT") && strstr(err, "builtin or curl"), "%s", err);
	unsetenv("LLMQ_UPSTREAM_CLIENT");
	write_file("[daemon]\nupstream_client = own\n[lane a]\nbase_url = http://x/v1\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "upstream_client") && strstr(err, "builtin or curl"), "%s", err);
}

/* Budgets: [user NAME] and [group NAME] sections, in the file's order. */
Test(config, user_and_group_budgets)
{
	char err[1024];
	struct budget_user u;
	const char *groups[] = {"staff"};

	write_file("[lane a]\nbase_url = http://127.0.0.1:1/v1\n\n"
	           "[group staff]\ndaily_tokens = 200000\nmonthly_usd = 25.50 ; dollars\n\n"
	           "[user alice]\ntpm_share = 0.25\ndaily_tokens = 1000\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), 0, "%s", err);
	cr_assert_eq(cfg.budgets.n, 2);
	budget_resolve(&cfg.budgets, "alice", groups, 1, &u);
	cr_expect_eq(u.lim.allowed[BUDGET_DAILY_TOKENS], 1000, "her own wins");
	cr_expect_eq(u.lim.allowed[BUDGET_MONTHLY_USD], 25500000000, "the group's for the rest");
	cr_expect(u.lim.tpm_share == 0.25);
	budget_resolve(&cfg.budgets, "bob", groups, 1, &u);
	cr_expect_eq(u.lim.allowed[BUDGET_DAILY_TOKENS], 200000);
	cr_expect(u.lim.tpm_share == 1, "no share set: the whole lane");
}

Test(config, a_bad_budget_names_the_place_and_the_fix)
{
	char err[1024];

	write_file(
	    "[lane a]\nbase_url = http://127.0.0.1:1/v1\n\n[user alice]\ndaily_tokens = lots\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "[user alice]: daily_tokens = \"lots\"") &&
	              strstr(err, "number of tokens"),
	          "%s", err);
	write_file("[lane a]\nbase_url = http://127.0.0.1:1/v1\n\n[group staff]\ntpm_share = 2\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "[group staff]: tpm_share = \"2\"") && strstr(err, "from 0 to 1"),
	          "%s", err);
	write_file("[lane a]\nbase_url = http://127.0.0.1:1/v1\n\n[group staff]\nweekly_usd = 2\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "unknown key") && strstr(err, "monthly_usd"), "%s", err);
	write_file("[lane a]\nbase_url = http://127.0.0.1:1/v1\n\n[users]\ndaily_tokens = 2\n");
	cr_assert_eq(load(err, sizeof(err), 2, "--config", file), -EINVAL);
	cr_assert(strstr(err, "unknown section [users]") && strstr(err, "[user NAME]"), "%s", err);
}
