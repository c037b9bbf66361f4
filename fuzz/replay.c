/*
 * replay.c - a fuzz target without libFuzzer: every file of the directories
 * (or the files) named on the command line, in name order, through the
 * target's LLVMFuzzerTestOneInput(). The test suite runs it over each
 * target's regression inputs (fuzz/regress/<target>/) and seed corpus
 * (fuzz/corpus/<target>/), so a crash once found stays fixed in every
 * build, the sanitizer build included. A directory that does not exist is
 * skipped (a target without regressions has none); no input at all is an
 * error.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

/* Weak: only the targets that need it define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long len;
	int r = -1;

	if (!f) {
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "replay: cannot size %s: %s\n", path, strerror(errno));
		goto out;
	}
	buf = malloc(len ? (size_t)len : 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		fprintf(stderr, "replay: cannot read %s\n", path);
		goto out;
	}
	fprintf(stderr, "replay: %s (%ld bytes)\n", path, len);
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	r = 0;
out:
	free(buf);
	fclose(f);
	return r;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* The files of dir, or -1; how many into *ret_n. */
static int replay_dir(const char *dir, int *ret_n)
{
	struct dirent **names;
	char path[4096];
	struct stat st;
	int n, i, r = 0;

	n = scandir(dir, &names, NULL, by_name);
	if (n < 0) {
		fprintf(stderr, "replay: cannot list %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (r == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    names[i]->d_name[0] != '.') {
			r = replay_file(path);
			(*ret_n)++;
		}
		free(names[i]);
	}
	free(names);
	return r;
}

int main(int argc, char **argv)
{
	struct stat st;
	int i, n = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...: replay each input through the target\n",
		        argv[0]);
		return 64;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) < 0) {
			if (errno == ENOENT)
				continue;
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (S_ISDIR(st.st_mode) ? replay_dir(argv[i], &n) < 0
		                        : (n++, replay_file(argv[i]) < 0))
			return 1;
	}
	if (n == 0) {
		fprintf(stderr, "replay: no input in %s...: the seed corpus is missing\n", argv[1]);
		return 1;
	}
	printf("replay: %d inputs, no failure\n", n);
	return 0;
}
