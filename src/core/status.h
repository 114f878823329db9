/*
 * status: error codes, the first-failure record, and rank-aware logging.
 *
 * Fallible functions return 0 (MQ_OK) or a negative enum mq_status and take a
 * `struct mq_error *err` last (NULL allowed). mq_fail() records the first
 * failure only, so the message a user sees is the root cause. The logging
 * state (rank, verbosity) is written once at start-up and read everywhere.
 */
#ifndef MQ_STATUS_H
#define MQ_STATUS_H

#include <stdarg.h>
#include <stdio.h>

enum mq_status {
	MQ_OK = 0,
	MQ_ERR_USAGE = -2,    /* bad option or argument */
	MQ_ERR_INPUT = -3,    /* missing, unreadable or malformed input file */
	MQ_ERR_DATA = -4,     /* values that cannot be quantized (NaN, Inf, overflow) */
	MQ_ERR_OUTPUT = -5,   /* output exists, same as input, unwritable, disk full */
	MQ_ERR_INTERNAL = -6, /* MPI failure, out of memory, broken invariant */
	MQ_ERR_INTERRUPTED = -7, /* stopped by SIGUSR1 (preemption); the partial output can be resumed */
	MQ_ERR_MODELS = -8,   /* job: at least one model failed (the others ran) */
	MQ_ERR_QUALITY = -9,  /* a layer's SQNR is below --fail-below (nothing is written) */
};

#define MQ_ERROR_MAX 1024

struct mq_error {
	int code;                  /* enum mq_status; MQ_OK while nothing failed */
	char msg[MQ_ERROR_MAX];    /* one line, no trailing newline */
};

/* Records code and message unless err already holds a failure; returns code. */
int mq_fail(struct mq_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Process exit code for a status: 0, 2, 3, 4, 5, 6, 7 or 8 (see README). */
int mq_status_exit_code(int code);

/* Short name of a status ("usage", "input", ...). */
const char *mq_status_name(int code);

/*
 * Printing of anything that may hold file-supplied names or paths: what fmt
 * formats goes out escaped (mq_buf_add_escaped: control characters, C1 and
 * invalid UTF-8 as \n, \x1b, ...), so a tensor name cannot move the cursor or
 * split a line. A newline that ends fmt itself is kept: one call, one line
 * (or a part of one). mq_info and mq_warn print through it.
 */
void mq_vprint(FILE *f, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void mq_print(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies in to out line by line, each line escaped as mq_print does (for listings written to a FILE). */
void mq_print_lines(FILE *out, FILE *in);

/* Logging: only rank 0 prints info; warnings print on any rank with a prefix. */
void mq_log_init(int rank, int quiet);
int mq_log_rank(void);
int mq_log_quiet(void);
void mq_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mq_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Invariant check: prints the location and aborts (MPI_Abort under MPI). */
#define MQ_ASSERT(x) \
	do { \
		if (!(x)) \
			mq_assert_fail(__FILE__, __LINE__, #x); \
	} while (0)
_Noreturn void mq_assert_fail(const char *file, int line, const char *expr);

/* Hook so that MQ_ASSERT can reach MPI_Abort without status.c including mpi.h. */
void mq_set_abort_hook(void (*hook)(void));

#endif
