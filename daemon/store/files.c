/*
 * files.c - see files.h.
 */
#include "store/files.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEMP_PREFIX ".upload-"
/* A file whose deletion was decided: its bytes freed, its row still to go. */
#define DELETE_PREFIX ".delete-"

struct files {
	char dir[PATH_MAX];
	int dfd;
	int deleting;  /* tombstones whose row is still to be deleted */
	int in_flight; /* deletions under way (on the writer thread) */
};

static void hex(char *out, const unsigned char *in, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int files_new_id(char buf[static 30])
{
	unsigned char rnd[12];

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -errno;
	memcpy(buf, "file-", 5);
	hex(buf + 5, rnd, sizeof(rnd));
	return 0;
}

/* An id as files_new_id makes them: nothing else names a file here. */
static int valid_id(const char *id)
{
	size_t i;

	if (strncmp(id, "file-", 5) != 0 || strlen(id) != 29)
		return 0;
	for (i = 5; i < 29; i++)
		if (!strchr("0123456789abcdef", id[i]))
			return 0;
	return 1;
}

int files_open(const char *db_path, struct files **ret)
{
	struct files *f = calloc(1, sizeof(*f));
	struct stat st;
	int r;

	if (!f)
		return -ENOMEM;
	f->dfd = -1;
	if (snprintf(f->dir, sizeof(f->dir), "%s-files", db_path) >= (int)sizeof(f->dir)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	if (mkdir(f->dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		goto fail;
	}
	f->dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (f->dfd < 0 || fstat(f->dfd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 0077)) {
		r = -EPERM; /* another user's, or readable by others: not ours to fill */
		goto fail;
	}
	*ret = f;
	return 0;
fail:
	files_free(f);
	return r;
}

void files_free(struct files *f)
{
	if (!f)
		return;
	if (f->dfd >= 0)
		close(f->dfd);
	free(f);
}

const char *files_dir(const struct files *f)
{
	return f->dir;
}

int files_create_temp(struct files *f, char *tmp, size_t len, int *ret_fd)
{
	unsigned char rnd[8];
	char name[40];
	int fd;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -errno;
	memcpy(name, TEMP_PREFIX, sizeof(TEMP_PREFIX) - 1);
	hex(name + sizeof(TEMP_PREFIX) - 1, rnd, sizeof(rnd));
	fd = openat(f->dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	snprintf(tmp, len, "%s", name);
	*ret_fd = fd;
	return 0;
}

int files_commit(struct files *f, int fd, const char *tmp, const char *id)
{
	int r = 0;

	if (fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && renameat(f->dfd, tmp, f->dfd, id) < 0)
		r = -errno;
	if (r == 0 && fsync(f->dfd) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(f->dfd, tmp, 0);
	return r;
}

void files_discard(struct files *f, int fd, const char *tmp)
{
	if (fd >= 0)
		close(fd);
	unlinkat(f->dfd, tmp, 0);
}

int files_open_read(struct files *f, const char *id)
{
	int fd;

	if (!valid_id(id))
		return -ENOENT;
	fd = openat(f->dfd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	return fd < 0 ? -errno : fd;
}

int files_remove(struct files *f, const char *id)
{
	if (!valid_id(id))
		return -ENOENT;
	return unlinkat(f->dfd, id, 0) < 0 ? -errno : 0;
}

static void files_tombstone_name(const char *id, char *buf, size_t len)
{
	snprintf(buf, len, DELETE_PREFIX "%s", id);
}

int files_tombstone(struct files *f, const char *id)
{
	char name[64];
	int fd, freed = 0;

	if (!valid_id(id))
		return -ENOENT;
	files_tombstone_name(id, name, sizeof(name));
	/* A rename takes no data block: it works on a full disk. From here the
	 * deletion is decided; what follows only frees the bytes sooner. */
	if (renameat(f->dfd, id, f->dfd, name) < 0)
		return -errno;
	fsync(f->dfd);
	fd = openat(f->dfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		freed = ftruncate(fd, 0) == 0;
		close(fd);
	}
	return freed;
}

int files_unlink_tombstone(struct files *f, const char *id)
{
	char name[64];

	files_tombstone_name(id, name, sizeof(name));
	return unlinkat(f->dfd, name, 0) < 0 ? -errno : 0;
}

void files_delete_begin(struct files *f)
{
	f->in_flight++;
}

void files_delete_end(struct files *f, int left)
{
	f->in_flight--;
	if (left)
		f->deleting++;
}

int files_deleting(const struct files *f, const char *id)
{
	char name[64];

	if ((!f->deleting && !f->in_flight) || !valid_id(id))
		return 0;
	files_tombstone_name(id, name, sizeof(name));
	return faccessat(f->dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

int files_pending(const struct files *f)
{
	return f->deleting && !f->in_flight; /* a deletion under way is not swept */
}

/* all: at start, temporary files and files without a row too; else tombstones alone. */
static int files_scan(struct files *f, struct store *st, int all, int *ret_removed)
{
	struct store_file row;
	struct dirent *e;
	DIR *d;
	int fd, r = 0, gone;

	*ret_removed = 0;
	f->deleting = 0;
	fd = dup(f->dfd);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, DELETE_PREFIX, strlen(DELETE_PREFIX)) == 0) {
			/* A deletion a crash or a full disk interrupted: its row goes, then it. */
			const char *id = e->d_name + strlen(DELETE_PREFIX);
			int k = valid_id(id) ? store_file_delete(st, id) : 0;

			if (k < 0 && k != -ENOENT) {
				f->deleting++; /* tried again later */
				continue;
			}
			if (unlinkat(f->dfd, e->d_name, 0) == 0)
				(*ret_removed)++;
			continue;
		}
		if (!all ||
		    (e->d_name[0] == '.' && strncmp(e->d_name, TEMP_PREFIX, strlen(TEMP_PREFIX))))
			continue; /* . and .. */
		gone = strncmp(e->d_name, TEMP_PREFIX, strlen(TEMP_PREFIX)) == 0;
		if (!gone && valid_id(e->d_name)) {
			r = store_file_get(st, e->d_name, &row);
			if (r < 0 && r != -ENOENT)
				break;
			gone = r == -ENOENT;
			r = 0;
		}
		if (gone && unlinkat(f->dfd, e->d_name, 0) == 0)
			(*ret_removed)++;
	}
	closedir(d);
	return r;
}

int files_sweep(struct files *f, struct store *st, int *ret_removed)
{
	return files_scan(f, st, 1, ret_removed);
}

int files_finish_deletes(struct files *f, struct store *st, int *ret_removed)
{
	return files_scan(f, st, 0, ret_removed);
}
