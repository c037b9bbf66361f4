/*
 * cmd-usage.c - "llmq usage [--since WHEN] [--until WHEN] [--by KEYS]
 * [--utc] [--csv]": requests, tokens, cost, 429s and failures over a span,
 * as a table, CSV or (--json) llmqd's answer. Times and days are this
 * host's local time (--utc: UTC's): the client turns them into instants and
 * sends the starts of the days within the span, so that llmqd sums by the
 * caller's days whatever its own time zone.
 */
#include "llmq.h"
#include "protocol.h"
#include "timeutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define USAGE_MAX_DAYS 4000
#define USAGE_DAY_S (24 * 3600)

static time_t usage_mktime(struct tm *tm, int utc)
{
	tm->tm_isdst = -1;
	return utc ? timegm(tm) : mktime(tm);
}

/* Midnight of the day t is in (local or UTC), plus add days. */
static time_t usage_midnight(time_t t, int add, int utc)
{
	struct tm tm;

	if (!(utc ? gmtime_r(&t, &tm) : localtime_r(&t, &tm)))
		return (time_t)-1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_mday += add;
	return usage_mktime(&tm, utc);
}

/*
 * WHEN: a duration back from now (24h), now, today, yesterday, a day
 * (2026-05-01: its midnight) or a time (2026-05-01T13:30). -EINVAL if not.
 */
static int usage_when(const char *s, int utc, int64_t now, int64_t *ret)
{
	const char *forms[] = {"%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"};
	struct tm tm;
	int64_t ms;
	size_t i;
	time_t t = (time_t)-1;
	char *end;

	if (time_parse_duration(s, &ms) == 0 && ms > 0) {
		*ret = now - ms;
		return 0;
	}
	if (!strcmp(s, "now")) {
		*ret = now;
		return 0;
	}
	if (!strcmp(s, "today") || !strcmp(s, "yesterday"))
		t = usage_midnight((time_t)(now / 1000), s[0] == 'y' ? -1 : 0, utc);
	for (i = 0; t == (time_t)-1 && i < sizeof(forms) / sizeof(forms[0]); i++) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, forms[i], &tm);
		if (end && !*end)
			t = usage_mktime(&tm, utc);
	}
	if (t == (time_t)-1 || t < 0)
		return -EINVAL;
	*ret = (int64_t)t * 1000;
	return 0;
}

static int usage_opt_since(struct opts *o, const char *arg, char *why, size_t len)
{
	o->since = arg;
	return 0;
}

static int usage_opt_until(struct opts *o, const char *arg, char *why, size_t len)
{
	o->until = arg;
	return 0;
}

static int usage_opt_by(struct opts *o, const char *arg, char *why, size_t len)
{
	static const char *const keys[] = {"user", "model", "lane", "class", "day", "none"};
	const char *p = arg;
	size_t n, k;

	do {
		n = strcspn(p, ",");
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (strlen(keys[k]) == n && !strncmp(keys[k], p, n))
				break;
		if (k == sizeof(keys) / sizeof(keys[0])) {
			snprintf(why, len,
			         "--by: '%.*s' is not a key; the keys are user, model, lane, class "
			         "and day (or none)",
			         (int)n, p);
			return -EINVAL;
		}
		p += n;
	} while (*p++ == ',');
	o->by = arg;
	return 0;
}

static int usage_opt_utc(struct opts *o, const char *arg, char *why, size_t len)
{
	o->utc = 1;
	return 0;
}

static int usage_opt_csv(struct opts *o, const char *arg, char *why, size_t len)
{
	o->csv = 1;
	return 0;
}

/* The request: the span, the keys and, by day, the starts of the days in it. */
static int usage_request(const struct opts *o, json_object **ret)
{
	const char *by = o->by ? o->by : "user", *p;
	int64_t now = time_wall_ms(), since = 0, until = 0;
	json_object *req, *keys, *days = NULL;
	const char *bad = NULL, *text = NULL;
	time_t d;
	size_t n;
	int i;

	if (usage_when(o->until ? o->until : "now", o->utc, now, &until) < 0)
		bad = "until", text = o->until;
	else if (usage_when(o->since ? o->since : "24h", o->utc, now, &since) < 0)
		bad = "since", text = o->since;
	if (bad) {
		fprintf(stderr,
		        "llmq usage: --%s '%s' is not a time: give a duration back from now (24h, "
		        "7d), now, today, yesterday, a day (2026-05-01) or a time "
		        "(2026-05-01T13:30)\nTry 'llmq usage --help'.\n",
		        bad, text);
		return EX_USAGE_;
	}
	if (until <= since) {
		fprintf(stderr, "llmq usage: --since must come before --until\nTry 'llmq usage "
		                "--help'.\n");
		return EX_USAGE_;
	}
	req = proto_request(OP_USAGE);
	keys = json_object_new_array();
	for (p = by; *p; p += n + (p[n] == ',')) {
		n = strcspn(p, ",");
		if (n == 3 && !strncmp(p, "day", 3) && !days)
			days = json_object_new_array();
		if (n != 4 || strncmp(p, "none", 4))
			json_object_array_add(keys, json_object_new_string_len(p, (int)n));
	}
	/* The starts of the days after since's, up to until: local midnights, DST and all. */
	for (i = 1, d = usage_midnight((time_t)(since / 1000), 1, o->utc);
	     days && d != (time_t)-1 && (int64_t)d * 1000 < until && i < USAGE_MAX_DAYS; i++) {
		json_object_array_add(days, json_object_new_int64((int64_t)d * 1000));
		d = usage_midnight((time_t)(since / 1000), i + 1, o->utc);
	}
	json_object_object_add(req, "since", json_object_new_int64(since));
	json_object_object_add(req, "until", json_object_new_int64(until));
	json_object_object_add(req, "by", keys);
	if (days)
		json_object_object_add(req, "days", days);
	*ret = req;
	return 0;
}

/* Dollars from nano-dollars, exact, at least two decimals: 0.00045, 12.50. */
static void usage_usd(int64_t nusd, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%lld.%09lld", (long long)(nusd / 1000000000),
	                 (long long)(nusd % 1000000000));
	char *dot = strchr(buf, '.');

	while (n > 0 && dot && buf + n - 1 > dot + 2 && buf[n - 1] == '0')
		buf[--n] = '\0';
}

/* A local (or UTC) "YYYY-MM-DD HH:MM" of wall ms; the date alone with date_only. */
static void usage_time(int64_t ms, int utc, int date_only, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!(utc ? gmtime_r(&t, &tm) : localtime_r(&t, &tm)) ||
	    !strftime(buf, len, date_only ? "%Y-%m-%d" : "%Y-%m-%d %H:%M", &tm))
		snprintf(buf, len, "?");
}

/* The keys a row was summed by, in the order the table shows them. */
static const char *const usage_cols[] = {"day", "user", "model", "lane", "class"};
#define USAGE_NCOLS (sizeof(usage_cols) / sizeof(usage_cols[0]))

static const char *usage_key(const struct opts *o, json_object *row, size_t k, char *buf,
                             size_t len)
{
	if (k == 0) {
		usage_time(jint(row, "from"), o->utc, 1, buf, len);
		return buf;
	}
	return jtext(row, usage_cols[k]);
}

/* A CSV field, quoted when it must be. */
static void usage_csv_field(const char *s, int last)
{
	if (strpbrk(s, ",\"\n\r")) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else {
		fputs(s, stdout);
	}
	putchar(last ? '\n' : ',');
}

static void usage_csv(const struct opts *o, json_object *reply, const int *shown)
{
	static const char *const figs[] = {"requests",          "prompt_tokens", "cached_tokens",
	                                   "completion_tokens", "total_tokens",  "cost_usd",
	                                   "rate_limited",      "failed"};
	json_object *rows = jget(reply, "rows"), *row;
	char buf[64];
	size_t i, k, f;

	for (k = 0; k < USAGE_NCOLS; k++)
		if (shown[k])
			printf("%s%s", usage_cols[k], k == 1 ? ",uid," : ",");
	for (f = 0; f < sizeof(figs) / sizeof(figs[0]); f++)
		printf("%s%c", figs[f], f + 1 < sizeof(figs) / sizeof(figs[0]) ? ',' : '\n');
	for (i = 0; rows && i < json_object_array_length(rows); i++) {
		row = json_object_array_get_idx(rows, i);
		for (k = 0; k < USAGE_NCOLS; k++) {
			if (!shown[k])
				continue;
			usage_csv_field(usage_key(o, row, k, buf, sizeof(buf)), 0);
			if (k == 1) {
				snprintf(buf, sizeof(buf), "%lld", (long long)jint(row, "uid"));
				usage_csv_field(jget(row, "uid") ? buf : "", 0);
			}
		}
		for (f = 0; f < sizeof(figs) / sizeof(figs[0]); f++) {
			if (f == 5)
				usage_usd(jint(row, "cost_nusd"), buf, sizeof(buf));
			else
				snprintf(buf, sizeof(buf), "%lld", (long long)jint(row, figs[f]));
			usage_csv_field(buf, f + 1 == sizeof(figs) / sizeof(figs[0]));
		}
	}
}

/* One line of the table; label: the TOTAL line's, in its first key column. */
static void usage_table_row(const struct opts *o, json_object *row, const int *shown,
                            const int *width, const char *label)
{
	char buf[64], cost[72];
	size_t k;

	for (k = 0; k < USAGE_NCOLS; k++) {
		if (!shown[k])
			continue;
		printf("%-*s  ", width[k], label ? label : usage_key(o, row, k, buf, sizeof(buf)));
		if (label)
			label = "";
	}
	usage_usd(jint(row, "cost_nusd"), buf, sizeof(buf));
	snprintf(cost, sizeof(cost), "$%s", buf);
	printf("%8lld  %10lld  %9lld  %10lld  %10lld  %12s  %6lld  %6lld\n",
	       (long long)jint(row, "requests"), (long long)jint(row, "prompt_tokens"),
	       (long long)jint(row, "cached_tokens"), (long long)jint(row, "completion_tokens"),
	       (long long)jint(row, "total_tokens"), cost, (long long)jint(row, "rate_limited"),
	       (long long)jint(row, "failed"));
}

static void usage_table(const struct opts *o, json_object *reply, const int *shown)
{
	static const char *const heads[] = {"DAY", "USER", "MODEL", "LANE", "CLASS"};
	json_object *rows = jget(reply, "rows"), *un = jget(reply, "unpriced");
	size_t i, k, n = rows ? json_object_array_length(rows) : 0;
	int width[USAGE_NCOLS], any = 0;
	char from[32], until[32], buf[64];

	usage_time(jint(reply, "since"), o->utc, 0, from, sizeof(from));
	usage_time(jint(reply, "until"), o->utc, 0, until, sizeof(until));
	printf("usage from %s to %s (%s)%s\n\n", from, until, o->utc ? "UTC" : "local time",
	       !strcmp(jtext(reply, "sees"), "own") ? ", yours" : ", everyone's");
	for (k = 0; k < USAGE_NCOLS; k++) {
		width[k] = (int)strlen(heads[k]);
		for (i = 0; shown[k] && i < n; i++) {
			size_t w = strlen(
			    usage_key(o, json_object_array_get_idx(rows, i), k, buf, sizeof(buf)));
			if ((int)w > width[k])
				width[k] = (int)w;
		}
		if (shown[k] && width[k] < 5)
			width[k] = 5; /* the TOTAL line's label */
		if (shown[k]) {
			printf("%-*s  ", width[k], heads[k]);
			any = 1;
		}
	}
	printf("%8s  %10s  %9s  %10s  %10s  %12s  %6s  %6s\n", "REQUESTS", "PROMPT", "CACHED",
	       "COMPLETION", "TOTAL", "COST", "429S", "FAILED");
	for (i = 0; i < n; i++)
		usage_table_row(o, json_object_array_get_idx(rows, i), shown, width, NULL);
	if (n == 0)
		printf("(no requests in this span)\n");
	if (any && n > 1)
		usage_table_row(o, jget(reply, "total"), shown, width, "TOTAL");
	if (json_object_get_boolean(jget(reply, "truncated")))
		printf("(only the first %zu rows; the TOTAL line counts them all)\n", n);
	for (i = 0; un && i < json_object_array_length(un); i++)
		printf("%s%s (%lld tokens)%s", i ? ", " : "\nno price for: ",
		       jtext(json_object_array_get_idx(un, i), "model"),
		       (long long)jint(json_object_array_get_idx(un, i), "tokens"),
		       i + 1 == json_object_array_length(un)
		           ? "\n  they count as costing nothing: add them under [prices] in "
		             "llmqd.conf (see examples/)\n"
		           : "");
}

static int usage_run(const struct opts *o)
{
	json_object *req = NULL, *reply, *by;
	int shown[USAGE_NCOLS] = {0}, r;
	size_t i, k;

	r = usage_request(o, &req);
	if (r)
		return r;
	by = jget(req, "by");
	for (i = 0; i < json_object_array_length(by); i++)
		for (k = 0; k < USAGE_NCOLS; k++)
			if (!strcmp(json_object_get_string(json_object_array_get_idx(by, i)),
			            usage_cols[k]))
				shown[k] = 1;
	r = conn_request(o, req, &reply);
	if (r)
		return r;
	if (o->json)
		print_json(reply);
	else if (o->csv)
		usage_csv(o, reply, shown);
	else
		usage_table(o, reply, shown);
	json_object_put(reply);
	return EX_OK_;
}

static const struct cli_option usage_options[] = {
    {"since", 0, "WHEN", "from WHEN (default 24h ago)", usage_opt_since},
    {"until", 0, "WHEN", "up to WHEN, not included (default now)", usage_opt_until},
    {"by", 0, "KEYS", "sum by user,model,lane,class,day (default user; none: one line)",
     usage_opt_by},
    {"utc", 0, NULL, "times and days in UTC rather than local time", usage_opt_utc},
    {"csv", 0, NULL, "comma-separated values with a header line", usage_opt_csv},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_command cli_usage = {
    .name = "usage",
    .args = "",
    .about = "requests, tokens, cost, 429s and failures, by user, model, lane or day",
    .options = usage_options,
    .notes = "WHEN: a duration back from now (24h, 7d), now, today, yesterday, a day\n"
             "(2026-05-01, from its midnight) or a time (2026-05-01T13:30); local time\n"
             "unless --utc. Usage is kept per quarter hour: the span is widened to whole\n"
             "quarters. Root and the admin group see everyone's; others their own.\n"
             "Example: llmq usage --since yesterday --until today --by user,model\n",
    .run = usage_run,
};
