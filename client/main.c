/*
 * main.c - llmq, the thin client of llmqd: finds the command, parses the
 * command line with that command's option table (options may stand before
 * or after the command), and runs it. The same tables print the help: `llmq
 * --help` lists the commands, `llmq CMD --help` (or `llmq help CMD`) a
 * command's options. A bad option, value or argument is a two-line usage
 * error on stderr (what was wrong; where the help is) and exit 64.
 *
 * The command line is read twice: once with every command's options, to
 * find the command word whatever options stand before it, then with the
 * options of that command alone, which are the only ones it takes.
 */
#include "llmq.h"
#include "paths.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAIN_MAX_OPTIONS 64

static int main_version;

static int main_set_json(struct opts *o, const char *arg, char *why, size_t len)
{
	(void)arg, (void)why, (void)len;
	o->json = 1;
	return 0;
}

static int main_set_socket(struct opts *o, const char *arg, char *why, size_t len)
{
	if (strlen(arg) >= sizeof(o->socket)) {
		snprintf(why, len, "--socket: the path is longer than %zu bytes",
		         sizeof(o->socket) - 1);
		return -EINVAL;
	}
	snprintf(o->socket, sizeof(o->socket), "%s", arg);
	return 0;
}

static int main_set_help(struct opts *o, const char *arg, char *why, size_t len)
{
	(void)arg, (void)why, (void)len;
	o->help = 1;
	return 0;
}

static int main_set_version(struct opts *o, const char *arg, char *why, size_t len)
{
	(void)o, (void)arg, (void)why, (void)len;
	main_version = 1;
	return 0;
}

/* What every command takes. */
static const struct cli_option main_common_options[] = {
    {"json", 'j', NULL, "print llmqd's answer as one JSON document", main_set_json},
    {"socket", 0, "PATH", "llmqd's socket (default $LLMQ_SOCKET)", main_set_socket},
    {"help", 'h', NULL, "show the options and exit", main_set_help},
    {NULL, 0, NULL, NULL, NULL},
};

/* What only stands without a command. */
static const struct cli_option main_top_options[] = {
    {"version", 'V', NULL, "print llmq's version and exit", main_set_version},
    {NULL, 0, NULL, NULL, NULL},
};

static int main_help(const struct opts *o);

static const struct cli_command cli_help = {
    .name = "help",
    .args = "[COMMAND]",
    .max_args = 1,
    .about = "this list, or a command's options (llmq help submit)",
    .run = main_help,
};

static const struct cli_command *const main_commands[] = {
    &cli_submit, &cli_status, &cli_list,    &cli_wait,  &cli_results,
    &cli_cancel, &cli_ping,   &cli_metrics, &cli_usage, &cli_pause,
    &cli_resume, &cli_retry,  &cli_set,     &cli_help,  NULL,
};

static const struct cli_command *main_find_command(const char *name)
{
	int i;

	for (i = 0; name && main_commands[i]; i++)
		if (strcmp(main_commands[i]->name, name) == 0)
			return main_commands[i];
	return NULL;
}

/* The options getopt_long is given, and the table entry behind each. */
struct main_optset {
	const struct cli_option *opt[MAIN_MAX_OPTIONS];
	struct option longopts[MAIN_MAX_OPTIONS + 1];
	char shorts[2 + 2 * MAIN_MAX_OPTIONS + 1]; /* ":" first: a missing value is told apart */
	int n;
};

static void main_optset_add(struct main_optset *s, const struct cli_option *t)
{
	size_t k;
	int i;

	if (!s->shorts[0])
		s->shorts[0] = ':';
	for (; t && t->name && s->n < MAIN_MAX_OPTIONS; t++) {
		for (i = 0; i < s->n && strcmp(s->opt[i]->name, t->name) != 0; i++)
			;
		if (i < s->n)
			continue; /* the same option in two commands */
		s->opt[s->n] = t;
		s->longopts[s->n] = (struct option){
		    t->name, t->arg ? required_argument : no_argument, NULL, 256 + s->n};
		if (t->letter) {
			k = strlen(s->shorts);
			s->shorts[k++] = t->letter;
			if (t->arg)
				s->shorts[k++] = ':';
			s->shorts[k] = '\0';
		}
		s->n++;
	}
	memset(&s->longopts[s->n], 0, sizeof(s->longopts[s->n]));
}

/* The entry getopt_long's answer c stands for, or NULL. */
static const struct cli_option *main_optset_find(const struct main_optset *s, int c)
{
	int i;

	if (c >= 256 && c - 256 < s->n)
		return s->opt[c - 256];
	for (i = 0; c > 0 && i < s->n; i++)
		if (s->opt[i]->letter == c)
			return s->opt[i];
	return NULL;
}

/* "--name ARG", "-o, --output FILE": the left column of a help line. */
static void main_option_words(const struct cli_option *t, char *buf, size_t len)
{
	snprintf(buf, len, "%c%c%s--%s%s%s", t->letter ? '-' : ' ', t->letter ? t->letter : ' ',
	         t->letter ? ", " : "  ", t->name, t->arg ? " " : "", t->arg ? t->arg : "");
}

static int main_options_width(const struct cli_option *t, int width)
{
	char words[96];

	for (; t && t->name; t++) {
		main_option_words(t, words, sizeof(words));
		if ((int)strlen(words) > width)
			width = (int)strlen(words);
	}
	return width;
}

static void main_print_options(FILE *f, const struct cli_option *t, int width)
{
	char words[96];

	for (; t && t->name; t++) {
		main_option_words(t, words, sizeof(words));
		fprintf(f, "  %-*s  %s\n", width, words, t->help);
	}
}

static void main_command_help(FILE *f, const struct cli_command *cmd)
{
	int width = main_options_width(main_common_options, 0);

	width = main_options_width(cmd->options, width);
	fprintf(f, "usage: llmq %s%s%s%s\n%s\n", cmd->name,
	        cmd->options && cmd->options->name ? " [OPTIONS]" : "", cmd->args[0] ? " " : "",
	        cmd->args, cmd->about);
	if (cmd->options && cmd->options->name) {
		fprintf(f, "\nOptions:\n");
		main_print_options(f, cmd->options, width);
	}
	fprintf(f, "\nOptions of every command:\n");
	main_print_options(f, main_common_options, width);
	fprintf(f, "\n%s%sman llmq tells more.\n", cmd->notes ? cmd->notes : "",
	        cmd->notes ? "\n" : "");
}

static void main_usage(FILE *f)
{
	char words[64];
	int i, width = 0;

	for (i = 0; main_commands[i]; i++) {
		snprintf(words, sizeof(words), "%s %s", main_commands[i]->name,
		         main_commands[i]->args);
		if ((int)strlen(words) > width)
			width = (int)strlen(words);
	}
	fprintf(f, "usage: llmq [--json] [--socket PATH] COMMAND [OPTIONS] [ARGS]\n\nCommands:\n");
	for (i = 0; main_commands[i]; i++) {
		snprintf(words, sizeof(words), "%s %s", main_commands[i]->name,
		         main_commands[i]->args);
		fprintf(f, "  %-*s  %s\n", width, words, main_commands[i]->about);
	}
	width = main_options_width(main_top_options, main_options_width(main_common_options, 0));
	fprintf(f, "\nOptions:\n");
	main_print_options(f, main_common_options, width);
	main_print_options(f, main_top_options, width);
	fprintf(f, "\n'llmq COMMAND --help' lists a command's options; man llmq tells more.\n"
	           "The socket is $LLMQ_SOCKET, else the one llmqd uses by default.\n"
	           "Exit codes: 0 ok, 64 usage, 65 bad input (or a batch that did not\n"
	           "complete, for wait), 66 cannot read the input, 69 llmqd unavailable,\n"
	           "70 internal error, 73/74 cannot write the output, 75 refused for now,\n"
	           "77 not allowed (an operator's command, or a socket that is not llmqd's).\n");
}

static int main_help(const struct opts *o)
{
	const struct cli_command *cmd;

	if (o->argc == 0) {
		main_usage(stdout);
		return EX_OK_;
	}
	cmd = main_find_command(o->argv[0]);
	if (!cmd) {
		fprintf(stderr, "llmq help: there is no command '%s'\nTry 'llmq --help'.\n",
		        o->argv[0]);
		return EX_USAGE_;
	}
	main_command_help(stdout, cmd);
	return EX_OK_;
}

/* The two lines of a usage error: what was wrong, and where the help is. */
static int main_usage_error(const struct cli_command *cmd, const char *what)
{
	if (cmd)
		fprintf(stderr, "llmq %s: %s\nTry 'llmq %s --help'.\n", cmd->name, what, cmd->name);
	else
		fprintf(stderr, "llmq: %s\nTry 'llmq --help'.\n", what);
	return EX_USAGE_;
}

/* An option the command does not have: another command's, ambiguous, or unknown. */
static void main_unknown_option(const struct main_optset *s, const struct cli_command *cmd,
                                const char *written, char *why, size_t len)
{
	char name[64], others[256] = "";
	const struct cli_option *t;
	size_t nlen;
	int i, matches = 0;

	snprintf(name, sizeof(name), "%s", written + strspn(written, "-"));
	name[strcspn(name, "=")] = '\0';
	nlen = strlen(name);
	for (i = 0; nlen > 0 && written[1] == '-' && i < s->n; i++) {
		if (strncmp(s->opt[i]->name, name, nlen) == 0) {
			snprintf(others + strlen(others), sizeof(others) - strlen(others), "%s--%s",
			         matches++ ? ", " : "", s->opt[i]->name);
		}
	}
	if (matches > 1) {
		snprintf(why, len, "--%s is ambiguous: %s?", name, others);
		return;
	}
	others[0] = '\0';
	for (i = 0; nlen > 0 && main_commands[i]; i++) {
		for (t = main_commands[i]->options; t && t->name; t++) {
			if (main_commands[i] != cmd &&
			    (written[1] == '-' ? !strcmp(t->name, name) : t->letter == name[0]))
				snprintf(others + strlen(others), sizeof(others) - strlen(others),
				         "%s%s", others[0] ? ", " : "", main_commands[i]->name);
		}
	}
	if (others[0])
		snprintf(why, len, "%.*s does not apply %s%s (it is an option of: %s)",
		         (int)strcspn(written, "="), written, cmd ? "to " : "without a command",
		         cmd ? cmd->name : "", others);
	else
		snprintf(why, len, "unknown option %.*s", (int)strcspn(written, "="), written);
}

/*
 * Parse argv with the options of s into o. The first error is kept in why
 * (the parse goes on, so that --help anywhere still shows the help).
 */
static int main_parse(const struct main_optset *s, const struct cli_command *cmd, int argc,
                      char **argv, struct opts *o, char *why, size_t len)
{
	const struct cli_option *t;
	char written[64], err[512];
	int c, bad = 0;

	optind = 0; /* glibc: start afresh */
	opterr = 0;
	while ((c = getopt_long(argc, argv, s->shorts, s->longopts, NULL)) != -1) {
		err[0] = '\0';
		if (c == ':') {
			t = main_optset_find(s, optopt);
			snprintf(err, sizeof(err), "--%s needs a value (%s)", t ? t->name : "?",
			         t && t->arg ? t->arg : "?");
		} else if (c == '?') {
			if (optopt >= 256 && (t = main_optset_find(s, optopt)))
				snprintf(err, sizeof(err), "--%s takes no value", t->name);
			else if (optopt > 0) {
				snprintf(written, sizeof(written), "-%c", optopt);
				main_unknown_option(s, cmd, written, err, sizeof(err));
			} else
				main_unknown_option(s, cmd, argv[optind - 1], err, sizeof(err));
		} else if ((t = main_optset_find(s, c))) {
			t->set(o, t->arg ? optarg : NULL, err, sizeof(err));
		}
		if (err[0] && !bad++)
			snprintf(why, len, "%s", err);
	}
	return bad ? -EINVAL : 0;
}

int main(int argc, char **argv)
{
	const struct cli_command *cmd = NULL;
	struct main_optset all = {0}, mine = {0};
	char why[512] = "", scratch[512];
	struct opts o, ignored;
	char **copy;
	int i, r;

	memset(&o, 0, sizeof(o));
	o.limit = 50;
	o.interval = 0.5;
	signal(SIGPIPE, SIG_IGN);
	if (paths_socket(o.socket, sizeof(o.socket)) < 0) {
		fprintf(stderr, "llmq: socket path too long; set LLMQ_SOCKET or use --socket\n");
		return EX_USAGE_;
	}
	/* Find the command: the first word that is no option nor an option's value. */
	main_optset_add(&all, main_common_options);
	main_optset_add(&all, main_top_options);
	for (i = 0; main_commands[i]; i++)
		main_optset_add(&all, main_commands[i]->options);
	/* On a copy: getopt_long reorders what it reads, and a value missing
	 * here must not take the command word as its value below. */
	copy = calloc((size_t)argc + 1, sizeof(*copy));
	if (!copy) {
		fprintf(stderr, "llmq: out of memory\n");
		return EX_SOFTWARE_;
	}
	memcpy(copy, argv, (size_t)argc * sizeof(*copy));
	ignored = o;
	main_parse(&all, NULL, argc, copy, &ignored, scratch, sizeof(scratch));
	if (optind < argc && !(cmd = main_find_command(copy[optind]))) {
		snprintf(why, sizeof(why), "unknown command '%s'", copy[optind]);
		free(copy);
		return main_usage_error(NULL, why);
	}
	free(copy);
	/* Then read it again with the options of that command alone. */
	main_optset_add(&mine, main_common_options);
	if (cmd)
		main_optset_add(&mine, cmd->options);
	else
		main_optset_add(&mine, main_top_options);
	r = main_parse(&mine, cmd, argc, argv, &o, why, sizeof(why));
	if (!cmd) {
		if (r < 0 && !o.help)
			return main_usage_error(NULL, why);
		if (main_version) {
			printf("llmq %s\n", LLMQ_VERSION);
			return EX_OK_;
		}
		main_usage(o.help ? stdout : stderr);
		return o.help ? EX_OK_ : EX_USAGE_;
	}
	if (o.help) {
		main_command_help(stdout, cmd);
		return EX_OK_;
	}
	if (r < 0)
		return main_usage_error(cmd, why);
	o.argc = argc - optind - 1;
	o.argv = argv + optind + 1;
	if (o.argc < cmd->min_args) {
		snprintf(why, sizeof(why), "missing %s", cmd->args);
		return main_usage_error(cmd, why);
	}
	if (o.argc > cmd->max_args) {
		if (cmd->max_args == 0)
			snprintf(why, sizeof(why), "takes no arguments, but was given '%s'",
			         o.argv[0]);
		else
			snprintf(why, sizeof(why), "takes %s, but was given one more: '%s'",
			         cmd->args, o.argv[cmd->max_args]);
		return main_usage_error(cmd, why);
	}
	conn_set_plain(!o.json);
	return cmd->run(&o);
}
