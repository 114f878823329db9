/*
 * mock_comm: comm.h for one rank, without MPI: the link-time seam that lets
 * the pipeline's tests run without mpirun (the library mq_pipeline_mock links
 * this file in place of src/pipeline/comm.c).
 *
 * What it models: rank 0 of a communicator of size 1.
 * - mq_comm_agree returns the caller's error code: one rank always agrees
 *   with itself, and its error is already the lowest failing rank's.
 * - mq_comm_bcast_blob keeps rank 0's blob (a NULL blob fails as it does
 *   under MPI: out of memory on some rank); allreduce and gather copy the
 *   rank's own values; mq_comm_split returns a new communicator of size 1.
 * - Records sent with mq_comm_send_record (rank 0 to itself) are queued and
 *   received back in the order sent. A blocking receive with nothing queued
 *   fails (MQ_ERR_INTERNAL) instead of waiting forever, which is what one
 *   rank waiting for a record of a rank that does not exist would do.
 * - Cancellation has nobody to reach: send and drain do nothing, poll
 *   returns 0.
 * - The output file is a real file written with pwrite, so that a test reads
 *   the output back; open does not create it (as MPI_MODE_WRONLY does not),
 *   sync is fsync, and the errors carry the messages of comm.c.
 * - mq_comm_time is CLOCK_MONOTONIC; mq_comm_abort_world calls abort().
 *
 * What it does not model: a second rank. No collective can disagree or
 * fail, no error comes from another rank (so none gets comm.c's "rank N: "
 * prefix), no record comes from another rank or arrives late or out of
 * order, no cancel reaches anyone, and no MPI error path of comm.c runs.
 * Tests of those go through mpirun (tests/integration).
 */
#include "mock_comm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct queued_record {
	struct queued_record *next;
	size_t len;
	unsigned char bytes[];
};

struct mq_comm {
	struct queued_record *head, *tail; /* sent, not received yet: oldest first */
	int n_queued;
};

struct mq_comm_file {
	int fd;
	char *path;
};

static mock_comm_write_hook write_hook;
static void *write_hook_ctx;

void mock_comm_set_write_hook(mock_comm_write_hook hook, void *ctx)
{
	write_hook = hook;
	write_hook_ctx = ctx;
}

int mock_comm_queued(const struct mq_comm *c)
{
	return c->n_queued;
}

static struct mq_comm *new_comm(void)
{
	return calloc(1, sizeof(struct mq_comm));
}

struct mq_comm *mq_comm_init(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return new_comm();
}

void mq_comm_finalize(struct mq_comm *world)
{
	mq_comm_free(world);
}

void mq_comm_free(struct mq_comm *c)
{
	if (!c)
		return;
	while (c->head) {
		struct queued_record *q = c->head;
		c->head = q->next;
		free(q);
	}
	free(c);
}

int mq_comm_rank(const struct mq_comm *c)
{
	(void)c;
	return 0;
}

int mq_comm_size(const struct mq_comm *c)
{
	(void)c;
	return 1;
}

double mq_comm_time(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int mq_comm_agree(struct mq_comm *c, struct mq_error *err)
{
	(void)c;
	return err->code;
}

int mq_comm_bcast_blob(struct mq_comm *c, char **blob, size_t *len, struct mq_error *err)
{
	(void)c;
	if (!*blob)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory receiving %llu bytes from rank 0",
			       (unsigned long long)*len);
	return 0;
}

int mq_comm_send_record(struct mq_comm *c, const void *rec, size_t len, struct mq_error *err)
{
	struct queued_record *q = malloc(sizeof(*q) + len);
	if (!q)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory queueing a record");
	q->next = NULL;
	q->len = len;
	memcpy(q->bytes, rec, len);
	if (c->tail)
		c->tail->next = q;
	else
		c->head = q;
	c->tail = q;
	c->n_queued++;
	return 0;
}

void *mq_comm_recv_record(struct mq_comm *c, int blocking, size_t *len, struct mq_error *err)
{
	struct queued_record *q = c->head;
	if (!q) {
		if (blocking)
			mq_fail(err, MQ_ERR_INTERNAL, "mock comm: a blocking receive with no record queued would wait forever");
		return NULL;
	}
	void *buf = malloc(q->len ? q->len : 1);
	if (!buf) {
		mq_fail(err, MQ_ERR_INTERNAL, "out of memory receiving a record");
		return NULL;
	}
	memcpy(buf, q->bytes, q->len);
	*len = q->len;
	c->head = q->next;
	if (!c->head)
		c->tail = NULL;
	c->n_queued--;
	free(q);
	return buf;
}

void mq_comm_cancel_send(struct mq_comm *c)
{
	(void)c; /* there are no other ranks to tell */
}

/* One rank has nobody to send bulk data to: a call is a broken invariant of the caller. */
int mq_comm_send_start(struct mq_comm *c, struct mq_comm_sends **s, const void *buf, size_t len, int dest,
		       struct mq_error *err)
{
	(void)c, (void)s, (void)buf, (void)len, (void)dest;
	return mq_fail(err, MQ_ERR_INTERNAL, "no other rank to send to");
}

int mq_comm_sends_wait(struct mq_comm_sends **s, void (*poll)(void *), void *ctx, struct mq_error *err)
{
	(void)poll, (void)ctx, (void)err;
	*s = NULL;
	return 0;
}

int mq_comm_recv_wait(struct mq_comm *c, void *buf, size_t len, int src, void (*poll)(void *), void *ctx,
		      struct mq_error *err)
{
	(void)c, (void)buf, (void)len, (void)src, (void)poll, (void)ctx;
	return mq_fail(err, MQ_ERR_INTERNAL, "no other rank to receive from");
}

int mq_comm_cancel_poll(struct mq_comm *c)
{
	(void)c;
	return 0;
}

void mq_comm_cancel_drain(struct mq_comm *c, int sent, int taken)
{
	(void)c;
	(void)sent;
	(void)taken;
}

int mq_comm_allreduce_sum(struct mq_comm *c, const double *in, double *out, int n, struct mq_error *err)
{
	(void)c;
	(void)err;
	if (n > 0)
		memmove(out, in, (size_t)n * sizeof(*out));
	return 0;
}

int mq_comm_allreduce_max_bytes(struct mq_comm *c, const unsigned char *in, unsigned char *out, size_t n,
				struct mq_error *err)
{
	(void)c;
	(void)err;
	if (n)
		memmove(out, in, n);
	return 0;
}

struct mq_comm *mq_comm_split(struct mq_comm *c, int color)
{
	(void)c;
	(void)color;
	return new_comm();
}

int mq_comm_gather(struct mq_comm *c, const double *mine, int n, double *all, struct mq_error *err)
{
	(void)c;
	(void)err;
	if (all && n > 0) /* rank 0 receives its own n values */
		memmove(all, mine, (size_t)n * sizeof(*all));
	return 0;
}

static int file_fail(const char *path, struct mq_error *err, int e, const char *what)
{
	if (e == ENOSPC || e == EDQUOT)
		return mq_fail(err, MQ_ERR_OUTPUT, "'%s': no space left on device while writing the output (%s)", path,
			       strerror(e));
	return mq_fail(err, MQ_ERR_OUTPUT, "'%s': %s failed: %s", path, what, strerror(e));
}

int mq_comm_file_open(struct mq_comm *c, const char *path, struct mq_comm_file **out, struct mq_error *err)
{
	(void)c;
	*out = NULL;
	struct mq_comm_file *f = calloc(1, sizeof(*f));
	if (!f || !(f->path = strdup(path))) {
		free(f);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	f->fd = open(path, O_WRONLY | O_CLOEXEC);
	if (f->fd < 0) {
		file_fail(path, err, errno, "opening the output");
		free(f->path);
		free(f);
		return err->code;
	}
	*out = f;
	return 0;
}

int mq_comm_file_write(struct mq_comm_file *f, uint64_t offset, const void *p, size_t n, struct mq_error *err)
{
	const char *b = p;
	uint64_t at = offset;
	size_t left = n;
	while (left) {
		ssize_t done = pwrite(f->fd, b, left, (off_t)at);
		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0)
			return file_fail(f->path, err, errno, "writing");
		if (done == 0)
			return mq_fail(err, MQ_ERR_OUTPUT, "'%s': short write at offset %llu (disk full?)", f->path,
				       (unsigned long long)at);
		b += done;
		left -= (size_t)done;
		at += (uint64_t)done;
	}
	if (write_hook)
		write_hook(write_hook_ctx, offset, n);
	return 0;
}

int mq_comm_file_sync(struct mq_comm_file *f, struct mq_error *err)
{
	if (fsync(f->fd) != 0)
		return file_fail(f->path, err, errno, "flushing");
	return 0;
}

int mq_comm_file_close(struct mq_comm_file **fp, struct mq_error *err)
{
	struct mq_comm_file *f = *fp;
	if (!f)
		return 0;
	*fp = NULL;
	int rc = close(f->fd);
	if (rc != 0)
		file_fail(f->path, err, errno, "closing");
	free(f->path);
	free(f);
	return rc != 0 ? err->code : 0;
}

void mq_comm_abort_world(void)
{
	abort();
}
