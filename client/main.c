/*
 * main.c - llmq, the thin client of llmqd: parses the command line (options
 * may stand before or after the subcommand) and runs one subcommand.
 */
#include "llmq.h"
#include "paths.h"
#include "timeutil.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	int (*fn)(const struct opts *);
	const char *usage;
} commands[] = {
    {"submit", cmd_submit, "submit FILE.jsonl [--window 24h] [--priority N] [--dry-run] [--retry]"},
    {"status", cmd_status, "status [BATCH]"},
    {"list", cmd_list, "list [--limit N]"},
    {"wait", cmd_wait, "wait BATCH"},
    {"results", cmd_results, "results BATCH [-o FILE] [--errors]"},
    {"cancel", cmd_cancel, "cancel BATCH"},
    {"ping", cmd_ping, "ping"},
    {"metrics", cmd_metrics, "metrics"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: llmq [--json] [--socket PATH] COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  llmq %s\n", commands[i].usage);
	fprintf(f, "\nThe socket is $LLMQ_SOCKET, else the one llmqd uses by default.\n"
	           "Exit codes: 0 ok, 64 usage, 65 bad input, 69 llmqd unavailable,\n"
	           "70 internal error, 75 refused for now (try again later).\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},           {"socket", required_argument, NULL, 's'},
	    {"output", required_argument, NULL, 'o'},   {"errors", no_argument, NULL, 'e'},
	    {"window", required_argument, NULL, 'w'},   {"name", required_argument, NULL, 'n'},
	    {"dry-run", no_argument, NULL, 'd'},        {"retry", no_argument, NULL, 'r'},
	    {"limit", required_argument, NULL, 'l'},    {"interval", required_argument, NULL, 'i'},
	    {"priority", required_argument, NULL, 'p'}, {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0},
	};
	struct opts o;
	size_t i;
	int c;

	memset(&o, 0, sizeof(o));
	o.limit = 50;
	o.interval = 0.5;
	signal(SIGPIPE, SIG_IGN);
	if (paths_socket(o.socket, sizeof(o.socket)) < 0) {
		fprintf(stderr, "llmq: socket path too long; set LLMQ_SOCKET or use --socket\n");
		return EX_USAGE_;
	}
	while ((c = getopt_long(argc, argv, "jo:hV", longopts, NULL)) != -1) {
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
			usage(stdout);
			return EX_OK_;
		case 'V':
			printf("llmq %s\n", LLMQ_VERSION);
			return EX_OK_;
		default:
			usage(stderr);
			return EX_USAGE_;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EX_USAGE_;
	}
	o.argc = argc - optind - 1;
	o.argv = argv + optind + 1;
	for (i = 0; i < N_COMMANDS; i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			return commands[i].fn(&o);
	fprintf(stderr, "llmq: unknown command '%s'\n\n", argv[optind]);
	usage(stderr);
	return EX_USAGE_;
}
