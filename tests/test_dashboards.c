/*
 * The Grafana dashboard (contrib/grafana/llmq.json) and the alerting rules
 * (contrib/prometheus/llmq-rules.yml) ask only for metrics that a real
 * llmqd serves: every llmq_ name in their queries is in a /metrics scrape
 * of one that has had traffic (a batch, calls, 429s, prices, budgets), so that its
 * labelled series are there. promtool checks the rules and runs their
 * tests (llmq-rules.test.yml).
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define DASHBOARD SOURCE_DIR "/contrib/grafana/llmq.json"
#define RULES_DIR SOURCE_DIR "/contrib/prometheus"

static char scrape[1 << 21], err[1 << 16], text[1 << 20];

struct names {
	char name[128][96];
	int n;
};

/* Every llmq_ metric name in a query. */
static void names_in(const char *expr, struct names *ret)
{
	const char *p = expr;
	size_t len;
	int i;

	while ((p = strstr(p, "llmq_"))) {
		if (p > expr && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) {
			p++;
			continue;
		}
		len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
		for (i = 0; i < ret->n; i++)
			if (strlen(ret->name[i]) == len && !strncmp(ret->name[i], p, len))
				break;
		if (i == ret->n && ret->n < 128 && len < sizeof(ret->name[0]))
			snprintf(ret->name[ret->n++], sizeof(ret->name[0]), "%.*s", (int)len, p);
		p += len;
	}
}

/* The queries of the dashboard: every "expr" of its panels, and its variables' queries. */
static void walk(json_object *o, struct names *ret, int *exprs)
{
	size_t i;

	if (json_object_is_type(o, json_type_array)) {
		for (i = 0; i < json_object_array_length(o); i++)
			walk(json_object_array_get_idx(o, i), ret, exprs);
		return;
	}
	if (!json_object_is_type(o, json_type_object))
		return;
	json_object_object_foreach(o, key, v)
	{
		if (json_object_is_type(v, json_type_string) &&
		    (!strcmp(key, "expr") || !strcmp(key, "definition"))) {
			names_in(json_object_get_string(v), ret);
			*exprs += !strcmp(key, "expr");
		} else {
			walk(v, ret, exprs);
		}
	}
}

/* Names of ret missing from the scrape, as one line. */
static void missing(const struct names *n, char *buf, size_t len)
{
	char line[128];
	size_t used = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < n->n; i++) {
		snprintf(line, sizeof(line), "\n%s{", n->name[i]);
		if (strstr(scrape, line))
			continue;
		snprintf(line, sizeof(line), "\n%s ", n->name[i]);
		if (strstr(scrape, line))
			continue;
		used += (size_t)snprintf(buf + used, len - used, " %s", n->name[i]);
		if (used >= len)
			break;
	}
}

/* A llmqd that has seen a batch, calls (one of them streamed), 429s, priced
 * models and a user with budgets. */
static void traffic(void)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], conf[128], env[200], id[40], ret[4096];
	FILE *f;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--429-every", "4", "--cached-tokens", "1", NULL);
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	f = fopen(conf, "w");
	cr_assert_not_null(f);
	fprintf(f,
	        "[lane openai]\nbase_url = http://127.0.0.1:%d/v1\nstagger_seconds = 0\n"
	        "tpm_limit = 100000000\nbackoff_base_seconds = 0.05\nbackoff_cap_seconds = 0.5\n\n"
	        "[prices]\ngpt-4o-mini = 0.15 0.075 0.60\n\n"
	        "[user root]\ndaily_tokens = 1000000\nmonthly_usd = 100\n",
	        m.port);
	fclose(f);
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	h_daemon_start(&d, dir, &m, env, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 6, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));
	cr_assert_eq(h_http(d.http_port, "POST", "/v1/chat/completions",
	                    "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"stream_options\":"
	                    "{\"include_usage\":true},\"messages\":[{\"role\":\"user\","
	                    "\"content\":\"hi\"}]}",
	                    ret),
	             200, "%s", ret);
	/* Call records are written a moment after the call. */
	for (i = 0; i < 400 && h_sql_int(&d, "SELECT count(*) FROM calls") < 1; i++)
		usleep(25000);
	cr_assert_eq(h_llmq(&d, scrape + 1, sizeof(scrape) - 1, err, sizeof(err), "metrics", NULL),
	             0, "%s", err);
	scrape[0] = '\n'; /* every name then follows a line end */
	cr_assert(strstr(scrape, "\nllmq_usage_cost_usd_total{"), "the usage series are there");
	cr_assert(strstr(scrape, "\nllmq_budget_used_ratio{user=\"root\",budget=\"daily_tokens\"}"),
	          "the budget series are there");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(dashboards, every_metric_the_dashboard_asks_for_exists, .timeout = 60)
{
	json_object *dash, *panels, *p;
	struct names n = {.n = 0};
	char gone[2048];
	int exprs = 0, ids[256] = {0}, id;
	size_t i;

	traffic();
	dash = json_object_from_file(DASHBOARD);
	cr_assert_not_null(dash, "%s is not JSON", DASHBOARD);
	cr_assert_geq(h_jint(dash, "schemaVersion"), 36, "Grafana 10's schema");
	walk(dash, &n, &exprs);
	cr_assert_geq(exprs, 30, "the dashboard's queries were found (%d)", exprs);
	cr_assert_geq(n.n, 20, "and their metrics (%d)", n.n);
	missing(&n, gone, sizeof(gone));
	cr_assert_str_empty(gone, "not in a real scrape:%s", gone);
	/* Panels: each its own id, on the 24-column grid, its queries on the chosen source. */
	panels = json_object_object_get(dash, "panels");
	for (i = 0; i < json_object_array_length(panels); i++) {
		p = json_object_array_get_idx(panels, i);
		id = (int)h_jint(p, "id");
		cr_assert(id > 0 && id < 256 && !ids[id], "panel id %d", id);
		ids[id] = 1;
		cr_assert_leq(h_jint(p, "gridPos.x") + h_jint(p, "gridPos.w"), 24, "%s",
		              h_jstr(p, "title"));
		if (strcmp(h_jstr(p, "type"), "row") != 0)
			cr_assert_str_eq(h_jstr(json_object_object_get(p, "datasource"), "uid"),
			                 "${datasource}", "%s", h_jstr(p, "title"));
	}
	json_object_put(dash);
}

Test(dashboards, every_metric_the_rules_ask_for_exists_and_promtool_agrees, .timeout = 60)
{
	struct names n = {.n = 0};
	char gone[2048], cmd[512], *line, *save = NULL;
	int exprs = 0;

	traffic();
	h_read_file(RULES_DIR "/llmq-rules.yml", text, sizeof(text));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		line += strspn(line, " ");
		if (strncmp(line, "expr:", 5) == 0) {
			names_in(line + 5, &n);
			exprs++;
		}
	}
	cr_assert_geq(exprs, 4, "the rules' queries were found");
	missing(&n, gone, sizeof(gone));
	cr_assert_str_empty(gone, "not in a real scrape:%s", gone);
	snprintf(cmd, sizeof(cmd), "%s check rules %s/llmq-rules.yml", PROMTOOL_BIN, RULES_DIR);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	snprintf(cmd, sizeof(cmd), "cd %s && %s test rules llmq-rules.test.yml", RULES_DIR,
	         PROMTOOL_BIN);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}
