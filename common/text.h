/*
 * text.h - caller-given text made safe to store, log and print: control
 * characters (C0 but tab, DEL, C1 such as U+009B CSI) and bytes that are
 * not UTF-8 are what turn a file name into a terminal escape sequence
 * (`\e]0;title\a`, `\e[2J`) or a forged log line (an LF). One helper for
 * every boundary: what is stored is cleaned (each such character becomes
 * '?'); what is logged or printed is escaped (\xNN), so nothing is lost
 * from sight. Pure: no I/O, no allocation.
 */
#ifndef LLMQ_TEXT_H
#define LLMQ_TEXT_H

#include <stddef.h>

/* 1 when s holds a control character or a byte that is not UTF-8. */
int text_has_control(const char *s);

/* Each control character or stray byte of s becomes '?', in place; returns the new length. */
size_t text_clean(char *s);

/*
 * s with each control character or stray byte written as \xNN (a
 * backslash as \\), into buf of len bytes (cut short, on a character,
 * when it does not fit); returns buf.
 */
char *text_escape(const char *s, char *buf, size_t len);

/* The most bytes text_escape writes for n bytes of s, with the NUL. */
#define TEXT_ESCAPED_MAX(n) (4 * (n) + 1)

#endif
