/*
 * main.c - llmq, the thin client of llmqd: parses the command line (options
 * may stand before or after the subcommand) and runs one subcommand.
 */
#include "llmq.h"
#include "paths.h"
#include "protocol.h"
#include "timeutil.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each command's own options (the short letters of longopts below); --json,
 * --socket and --help go with every one. */
static const struct {
	const char *name;
	int (*fn)(const struct opts *);
	const char *flags;
	const char *usage;
} commands[] = {
    {"submit", cmd_submit, "wndrpk",
     "submit FILE.jsonl [--window 24h] [--priority N] [--name NAME] [--dry-run] [--retry] "
     "[--idempotency-key KEY]"},
    {"status", cmd_status, "", "status [BATCH]"},
    {"list", cmd_list, "l", "list [--limit N]"},
    {"wait", cmd_wait, "i", "wait BATCH [--interval SECONDS]"},
    {"results", cmd_results, "oe", "results BATCH [-o FILE] [--errors]"},
    {"cancel", cmd_cancel, "", "cancel BATCH"},
    {"ping", cmd_ping, "", "ping"},
    {"metrics", cmd_metrics, "", "metrics"},
};

static const char *flag_name(int c)
{
	switch (c) {
	case 'o':
		return "-o/--output";
	case 'e':
		return "--errors";
	case 'w':
		return "--window";
	case 'n':
		return "--name";
	case 'd':
		return "--dry-run";
	case 'r':
		return "--retry";
	case 'l':
		return "--limit";
	case 'i':
		return "--interval";
	case 'p':
		return "--priority";
	case 'k':
		return "--idempotency-key";
	default:
		return "?";
	}
}
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: llmq [--json] [--socket PATH] COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  llmq %s\n", commands[i].usage);
	fprintf(f, "\nThe socket is $LLMQ_SOCKET, else the one llmqd uses by default.\n"
	           "llmq COMMAND --help shows a command's options; man llmq tells more.\n"
	           "Exit codes: 0 ok, 64 usage, 65 bad input (or a batch that did not\n"
	           "complete, for wait), 66 cannot read the input, 69 llmqd unavailable,\n"
	           "70 internal error, 73/74 cannot write the output, 75 refused for now.\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"socket", required_argument, NULL, 's'},
	    {"output", required_argument, NULL, 'o'},
	    {"errors", no_argument, NULL, 'e'},
	    {"window", required_argument, NULL, 'w'},
	    {"name", required_argument, NULL, 'n'},
	    {"dry-run", no_argument, NULL, 'd'},
	    {"retry", no_argument, NULL, 'r'},
	    {"limit", required_argument, NULL, 'l'},
	    {"interval", required_argument, NULL, 'i'},
	    {"priority", required_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {"idempotency-key", required_argument, NULL, 'k'},
	    {NULL, 0, NULL, 0},
	};
	struct opts o;
	char seen[32] = "";
	size_t i, n_seen = 0;
	int c, help = 0;
	const char *p;

	memset(&o, 0, sizeof(o));
	o.limit = 50;
	o.interval = 0.5;
	signal(SIGPIPE, SIG_IGN);
	if (paths_socket(o.socket, sizeof(o.socket)) < 0) {
		fprintf(stderr, "llmq: socket path too long; set LLMQ_SOCKET or use --socket\n");
		return EX_USAGE_;
	}
	while ((c = getopt_long(argc, argv, "jo:hV", longopts, NULL)) != -1) {
		if (strchr("oewndrlipk", c) && !strchr(seen, c) && n_seen < sizeof(seen) - 1)
			seen[n_seen++] = (char)c;
		switch (c) {
		case 'j':
			o.json = 1;
			break;
		case 's':
			snprintf(o.socket, sizeof(o.socket), "%s", optarg);
			break;
		case 'o':
			o.output = optarg;
			break;
		case 'e':
			o.errors = 1;
			break;
		case 'w': {
			int64_t ms;

			if (time_parse_duration(optarg, &ms) < 0 || ms <= 0) {
				fprintf(stderr,
				        "llmq: --window wants a duration such as 24h, 90m or "
				        "3600s\n");
				return EX_USAGE_;
			}
			o.window = optarg;
			break;
		}
		case 'n':
			o.name = optarg;
			break;
		case 'k':
			if (!proto_valid_idempotency_key(optarg)) {
				fprintf(stderr,
				        "llmq: --idempotency-key wants 1 to %d letters, "
				        "digits, '-', '_', '.' or ':'\n",
				        LLMQ_MAX_IDEMPOTENCY_KEY);
				return EX_USAGE_;
			}
			o.idempotency_key = optarg;
			break;
		case 'd':
			o.dry_run = 1;
			break;
		case 'r':
			o.retry = 1;
			break;
		case 'l':
			o.limit = atoi(optarg);
			if (o.limit < 1) {
				fprintf(stderr, "llmq: --limit must be a positive number\n");
				return EX_USAGE_;
			}
			break;
		case 'i': {
			int64_t ms;

			if (time_parse_duration(optarg, &ms) < 0 || ms < 50 || ms > 3600000) {
				fprintf(stderr,
				        "llmq: --interval wants seconds between 0.05 and 3600 "
				        "(or a duration such as 500ms)\n");
				return EX_USAGE_;
			}
			o.interval = (double)ms / 1000.0;
			break;
		}
		case 'p': {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*optarg == '\0' || *end || v < -1000 || v > 1000) {
				fprintf(stderr,
				        "llmq: --priority must be a whole number, -1000..1000 "
				        "(higher runs first)\n");
				return EX_USAGE_;
			}
			o.priority = (int)v;
			o.priority_set = 1;
			break;
		}
		case 'h':
			help = 1;
			break;
		case 'V':
			printf("llmq %s\n", LLMQ_VERSION);
			return EX_OK_;
		default:
			usage(stderr);
			return EX_USAGE_;
		}
	}
	if (optind >= argc) {
		usage(help ? stdout : stderr);
		return help ? EX_OK_ : EX_USAGE_;
	}
	o.argc = argc - optind - 1;
	o.argv = argv + optind + 1;
	for (i = 0; i < N_COMMANDS; i++) {
		if (strcmp(argv[optind], commands[i].name) != 0)
			continue;
		if (help) {
			printf("usage: llmq %s\n(and --json, --socket PATH with every command; man "
			       "llmq)\n",
			       commands[i].usage);
			return EX_OK_;
		}
		for (p = seen; *p; p++) {
			if (!strchr(commands[i].flags, *p)) {
				fprintf(stderr, "llmq %s: %s does not apply here\nusage: llmq %s\n",
				        commands[i].name, flag_name(*p), commands[i].usage);
				return EX_USAGE_;
			}
		}
		return commands[i].fn(&o);
	}
	fprintf(stderr, "llmq: unknown command '%s'\n\n", argv[optind]);
	usage(stderr);
	return EX_USAGE_;
}
