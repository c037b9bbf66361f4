/*
 * files.h - where uploaded files keep their bytes: a directory beside the
 * database, named after it with "-files" appended (mode 0700). An upload
 * is written to a temporary file there and renamed to its id once whole
 * and on disk; its row in the files table comes after that. A temporary
 * file, or a file without a row, is what a crash left: files_sweep()
 * removes both at start-up, so an interrupted upload leaves nothing.
 * Deleting frees the bytes first, through a tombstone (below).
 */
#ifndef LLMQ_FILES_H
#define LLMQ_FILES_H

#include <stddef.h>

struct files;
struct store;

int files_open(const char *db_path, struct files **ret);
void files_free(struct files *f);
const char *files_dir(const struct files *f);

/* A new file id, file-<24 hex>. */
int files_new_id(char buf[static 30]);

/* A new temporary file: its fd, and its path into tmp. */
int files_create_temp(struct files *f, char *tmp, size_t len, int *ret_fd);
/* Make tmp (written through fd, closed here) the file id, durably. */
int files_commit(struct files *f, int fd, const char *tmp, const char *id);
/* Give up on tmp: close fd and remove it. */
void files_discard(struct files *f, int fd, const char *tmp);
/* Open file id for reading: an fd, or -errno. */
int files_open_read(struct files *f, const char *id);
int files_remove(struct files *f, const char *id);

/*
 * Deleting a file works on a full disk and survives a crash at any point:
 * files_tombstone() renames it to a tombstone (no data block needed) and
 * truncates it, which frees its bytes and decides the deletion; then the
 * row is deleted (there is room now); then files_unlink_tombstone()
 * removes the tombstone. A tombstone left - by a crash, or while the
 * database refused the row's deletion - has its row deleted, then itself,
 * by files_finish_deletes() or files_sweep(). From files_delete_begin()
 * files_deleting() says the file is gone; files_delete_end() says whether
 * a tombstone was left for files_finish_deletes(), which leaves alone the
 * folder while a deletion is under way. files_tombstone() and
 * files_unlink_tombstone() touch only the folder's descriptor, which never
 * changes: the writer thread may call them; the others are the loop's.
 */
/* 1: the bytes are freed now; 0: they go with the tombstone; -errno: nothing changed. */
int files_tombstone(struct files *f, const char *id);
int files_unlink_tombstone(struct files *f, const char *id);
void files_delete_begin(struct files *f);
void files_delete_end(struct files *f, int left);
int files_deleting(const struct files *f, const char *id);
/* Tombstones whose row is still to be deleted. */
int files_pending(const struct files *f);

/*
 * Remove temporary files and files the store has no row for, and finish
 * the deletions tombstones stand for. *ret_removed.
 */
int files_sweep(struct files *f, struct store *st, int *ret_removed);
/* The tombstones alone (while llmqd runs: uploads under way are left alone). */
int files_finish_deletes(struct files *f, struct store *st, int *ret_removed);

#endif
