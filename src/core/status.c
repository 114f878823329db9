#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static int log_rank;
static int log_quiet;
static void (*abort_hook)(void);

int mq_fail(struct mq_error *err, int code, const char *fmt, ...)
{
	if (!err || err->code != MQ_OK)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->code = code;
	return code;
}

int mq_status_exit_code(int code)
{
	switch (code) {
	case MQ_OK: return 0;
	case MQ_ERR_USAGE: return 2;
	case MQ_ERR_INPUT: return 3;
	case MQ_ERR_DATA: return 4;
	case MQ_ERR_OUTPUT: return 5;
	case MQ_ERR_INTERRUPTED: return 7;
	case MQ_ERR_MODELS: return 8;
	case MQ_ERR_QUALITY: return 9;
	default: return 6;
	}
}

const char *mq_status_name(int code)
{
	switch (code) {
	case MQ_OK: return "ok";
	case MQ_ERR_USAGE: return "usage";
	case MQ_ERR_INPUT: return "input";
	case MQ_ERR_DATA: return "data";
	case MQ_ERR_OUTPUT: return "output";
	case MQ_ERR_INTERRUPTED: return "interrupted";
	case MQ_ERR_MODELS: return "models failed";
	case MQ_ERR_QUALITY: return "quality";
	default: return "internal";
	}
}

void mq_log_init(int rank, int quiet)
{
	log_rank = rank;
	log_quiet = quiet;
}

int mq_log_rank(void)
{
	return log_rank;
}

int mq_log_quiet(void)
{
	return log_quiet;
}

void mq_vprint(FILE *f, const char *fmt, va_list ap)
{
	struct mq_buf raw = MQ_BUF_INIT, out = MQ_BUF_INIT;
	mq_buf_vaddf(&raw, fmt, ap);
	size_t n = raw.len;
	int newline = n && raw.data[n - 1] == '\n' && fmt[0] && fmt[strlen(fmt) - 1] == '\n';
	mq_buf_add_escaped(&out, raw.data ? raw.data : "", n - (size_t)newline);
	if (newline)
		mq_buf_add(&out, "\n", 1);
	if (mq_buf_ok(&out))
		fwrite(out.data, 1, out.len, f);
	else if (raw.data) /* out of memory: the message is still worth more than nothing */
		fwrite(raw.data, 1, raw.len, f);
	mq_buf_release(&raw);
	mq_buf_release(&out);
}

void mq_print(FILE *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	mq_vprint(f, fmt, ap);
	va_end(ap);
}

void mq_print_lines(FILE *out, FILE *in)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	struct mq_buf b = MQ_BUF_INIT;
	while ((n = getline(&line, &cap, in)) > 0) {
		int newline = line[n - 1] == '\n';
		b.len = 0;
		mq_buf_add_escaped(&b, line, (size_t)n - (size_t)newline);
		if (newline)
			mq_buf_add(&b, "\n", 1);
		if (mq_buf_ok(&b))
			fwrite(b.data, 1, b.len, out);
	}
	mq_buf_release(&b);
	free(line);
}

void mq_info(const char *fmt, ...)
{
	if (log_rank != 0 || log_quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	mq_vprint(stdout, fmt, ap);
	va_end(ap);
	fflush(stdout);
}

void mq_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "mq-dist: warning: ");
	if (log_rank != 0)
		fprintf(stderr, "rank %d: ", log_rank);
	mq_vprint(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void mq_set_abort_hook(void (*hook)(void))
{
	abort_hook = hook;
}

void mq_assert_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "mq-dist: BUG: %s:%d: assertion failed: %s\n", file, line, expr);
	fflush(stderr);
	if (abort_hook)
		abort_hook();
	abort();
}
