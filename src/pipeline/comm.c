#include "comm.h"

#include <limits.h>
#include <stdio.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#define TAG_RECORD 17
#define TAG_CANCEL 18
#define TAG_BULK 19
#define MAX_IO (1u << 30) /* bytes per MPI call: counts are int */

struct mq_comm {
	MPI_Comm comm;
	int rank, size;
};

struct mq_comm_file {
	MPI_File fh;
	char *path;
};

static int mpi_fail(struct mq_error *err, int rc, const char *what)
{
	char s[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(rc, s, &len);
	return mq_fail(err, MQ_ERR_INTERNAL, "%s failed: %s", what, s);
}

#define MQ_MPI_CHECK(call, what) \
	do { \
		int rc_ = (call); \
		if (rc_ != MPI_SUCCESS) \
			return mpi_fail(err, rc_, what); \
	} while (0)

static void abort_hook(void)
{
	MPI_Abort(MPI_COMM_WORLD, mq_status_exit_code(MQ_ERR_INTERNAL));
}

static struct mq_comm *wrap(MPI_Comm from)
{
	struct mq_comm *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (MPI_Comm_dup(from, &c->comm) != MPI_SUCCESS) {
		free(c);
		return NULL;
	}
	MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
	MPI_Comm_rank(c->comm, &c->rank);
	MPI_Comm_size(c->comm, &c->size);
	mq_set_abort_hook(abort_hook);
	return c;
}

struct mq_comm *mq_comm_init(int *argc, char ***argv)
{
	MPI_Init(argc, argv);
	return wrap(MPI_COMM_WORLD);
}

void mq_comm_finalize(struct mq_comm *world)
{
	mq_comm_free(world);
	MPI_Finalize();
}

void mq_comm_free(struct mq_comm *c)
{
	if (!c)
		return;
	MPI_Comm_free(&c->comm);
	free(c);
}

int mq_comm_rank(const struct mq_comm *c)
{
	return c->rank;
}

int mq_comm_size(const struct mq_comm *c)
{
	return c->size;
}

double mq_comm_time(void)
{
	return MPI_Wtime();
}

void mq_comm_abort_world(void)
{
	abort_hook();
}

int mq_comm_agree(struct mq_comm *c, struct mq_error *err)
{
	/* the lowest failing rank wins, but a real failure goes before an interruption (SIGUSR1) */
	int mine = err->code == MQ_OK ? INT_MAX : err->code == MQ_ERR_INTERRUPTED ? c->size + c->rank : c->rank, key;
	if (MPI_Allreduce(&mine, &key, 1, MPI_INT, MPI_MIN, c->comm) != MPI_SUCCESS)
		abort_hook(); /* the ranks can no longer agree on anything */
	if (key == INT_MAX)
		return MQ_OK;
	int first = key >= c->size ? key - c->size : key;
	struct mq_error e = *err;
	if (MPI_Bcast(&e, (int)sizeof(e), MPI_BYTE, first, c->comm) != MPI_SUCCESS)
		abort_hook();
	if (c->rank != first) {
		*err = e;
		if (first != 0 && c->rank == 0) {
			/* say which rank saw it first when it was not rank 0 */
			char prefix[32];
			int k = snprintf(prefix, sizeof(prefix), "rank %d: ", first);
			memmove(err->msg + k, e.msg, sizeof(e.msg) - (size_t)k);
			memcpy(err->msg, prefix, (size_t)k);
			err->msg[sizeof(err->msg) - 1] = '\0';
		}
	}
	return err->code;
}

int mq_comm_bcast_blob(struct mq_comm *c, char **blob, size_t *len, struct mq_error *err)
{
	uint64_t n = c->rank == 0 ? (uint64_t)*len : 0;
	MQ_MPI_CHECK(MPI_Bcast(&n, 1, MPI_UINT64_T, 0, c->comm), "MPI_Bcast");
	if (c->rank != 0) {
		*blob = malloc(n ? (size_t)n : 1);
		*len = (size_t)n;
	}
	int ok = *blob != NULL, all;
	MQ_MPI_CHECK(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, c->comm), "MPI_Allreduce");
	if (!all)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory receiving %llu bytes from rank 0", (unsigned long long)n);
	for (uint64_t off = 0; off < n;) {
		uint64_t part = n - off > MAX_IO ? MAX_IO : n - off;
		MQ_MPI_CHECK(MPI_Bcast(*blob + off, (int)part, MPI_BYTE, 0, c->comm), "MPI_Bcast");
		off += part;
	}
	return 0;
}

int mq_comm_send_record(struct mq_comm *c, const void *rec, size_t len, struct mq_error *err)
{
	MQ_MPI_CHECK(MPI_Send(rec, (int)len, MPI_BYTE, 0, TAG_RECORD, c->comm), "MPI_Send");
	return 0;
}

struct mq_comm_sends {
	int n, cap;
	MPI_Request *req;
};

int mq_comm_send_start(struct mq_comm *c, struct mq_comm_sends **s, const void *buf, size_t len, int dest,
		       struct mq_error *err)
{
	if (!*s && !(*s = calloc(1, sizeof(**s))))
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	struct mq_comm_sends *q = *s;
	size_t off = 0;
	do {
		size_t n = len - off < MAX_IO ? len - off : MAX_IO;
		if (q->n == q->cap) {
			int cap = q->cap ? 2 * q->cap : 8;
			MPI_Request *r = realloc(q->req, (size_t)cap * sizeof(*r));
			if (!r)
				return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
			q->req = r;
			q->cap = cap;
		}
		MQ_MPI_CHECK(MPI_Isend((const char *)buf + off, (int)n, MPI_BYTE, dest, TAG_BULK, c->comm, &q->req[q->n]),
			     "MPI_Isend");
		q->n++;
		off += n;
	} while (off < len);
	return 0;
}

/* Tests requests until all are done, polling between tests. */
static int wait_polling(int n, MPI_Request *req, void (*poll)(void *), void *ctx, struct mq_error *err)
{
	for (;;) {
		int done = 0;
		MQ_MPI_CHECK(MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
		if (done)
			return 0;
		if (poll)
			poll(ctx);
	}
}

int mq_comm_sends_wait(struct mq_comm_sends **s, void (*poll)(void *), void *ctx, struct mq_error *err)
{
	int rc = 0;
	if (*s && (*s)->n)
		rc = wait_polling((*s)->n, (*s)->req, poll, ctx, err);
	if (*s)
		free((*s)->req);
	free(*s);
	*s = NULL;
	return rc;
}

int mq_comm_recv_wait(struct mq_comm *c, void *buf, size_t len, int src, void (*poll)(void *), void *ctx,
		      struct mq_error *err)
{
	size_t off = 0;
	do {
		size_t n = len - off < MAX_IO ? len - off : MAX_IO;
		MPI_Request req;
		MQ_MPI_CHECK(MPI_Irecv((char *)buf + off, (int)n, MPI_BYTE, src, TAG_BULK, c->comm, &req), "MPI_Irecv");
		if (wait_polling(1, &req, poll, ctx, err))
			return err->code;
		off += n;
	} while (off < len);
	return 0;
}

void *mq_comm_recv_record(struct mq_comm *c, int blocking, size_t *len, struct mq_error *err)
{
	MPI_Status st;
	int flag = 1, n;
	int rc = blocking ? MPI_Probe(MPI_ANY_SOURCE, TAG_RECORD, c->comm, &st)
			  : MPI_Iprobe(MPI_ANY_SOURCE, TAG_RECORD, c->comm, &flag, &st);
	if (rc != MPI_SUCCESS) {
		mpi_fail(err, rc, "MPI_Probe");
		return NULL;
	}
	if (!flag)
		return NULL;
	MPI_Get_count(&st, MPI_BYTE, &n);
	void *buf = malloc(n > 0 ? (size_t)n : 1);
	if (!buf) {
		mq_fail(err, MQ_ERR_INTERNAL, "out of memory receiving a record");
		return NULL;
	}
	rc = MPI_Recv(buf, n, MPI_BYTE, st.MPI_SOURCE, TAG_RECORD, c->comm, MPI_STATUS_IGNORE);
	if (rc != MPI_SUCCESS) {
		free(buf);
		mpi_fail(err, rc, "MPI_Recv");
		return NULL;
	}
	*len = (size_t)n;
	return buf;
}

void mq_comm_cancel_send(struct mq_comm *c)
{
	static const int one = 1;
	for (int r = 1; r < c->size; r++)
		if (MPI_Send(&one, 1, MPI_INT, r, TAG_CANCEL, c->comm) != MPI_SUCCESS)
			abort_hook();
}

int mq_comm_cancel_poll(struct mq_comm *c)
{
	int flag = 0, v;
	if (MPI_Iprobe(0, TAG_CANCEL, c->comm, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS)
		abort_hook();
	if (flag && MPI_Recv(&v, 1, MPI_INT, 0, TAG_CANCEL, c->comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
		abort_hook();
	return flag;
}

void mq_comm_cancel_drain(struct mq_comm *c, int sent, int taken)
{
	int v;
	if (MPI_Bcast(&sent, 1, MPI_INT, 0, c->comm) != MPI_SUCCESS)
		abort_hook();
	if (c->rank != 0 && sent && !taken &&
	    MPI_Recv(&v, 1, MPI_INT, 0, TAG_CANCEL, c->comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
		abort_hook();
}

int mq_comm_allreduce_sum(struct mq_comm *c, const double *in, double *out, int n, struct mq_error *err)
{
	MQ_MPI_CHECK(MPI_Allreduce(in, out, n, MPI_DOUBLE, MPI_SUM, c->comm), "MPI_Allreduce");
	return 0;
}

int mq_comm_allreduce_max_bytes(struct mq_comm *c, const unsigned char *in, unsigned char *out, size_t n,
				struct mq_error *err)
{
	MQ_MPI_CHECK(MPI_Allreduce(in, out, (int)n, MPI_UNSIGNED_CHAR, MPI_MAX, c->comm), "MPI_Allreduce");
	return 0;
}

struct mq_comm *mq_comm_split(struct mq_comm *c, int color)
{
	MPI_Comm sub;
	if (MPI_Comm_split(c->comm, color, c->rank, &sub) != MPI_SUCCESS)
		return NULL;
	struct mq_comm *g = wrap(sub);
	MPI_Comm_free(&sub);
	return g;
}

int mq_comm_gather(struct mq_comm *c, const double *mine, int n, double *all, struct mq_error *err)
{
	MQ_MPI_CHECK(MPI_Gather(mine, n, MPI_DOUBLE, all, n, MPI_DOUBLE, 0, c->comm), "MPI_Gather");
	return 0;
}

static int file_fail(const char *path, struct mq_error *err, int rc, const char *what)
{
	char s[MPI_MAX_ERROR_STRING];
	int len = 0, cls = 0;
	MPI_Error_string(rc, s, &len);
	MPI_Error_class(rc, &cls);
	if (cls == MPI_ERR_NO_SPACE || cls == MPI_ERR_QUOTA)
		return mq_fail(err, MQ_ERR_OUTPUT, "'%s': no space left on device while writing the output (%s)",
			       path, s);
	return mq_fail(err, MQ_ERR_OUTPUT, "'%s': %s failed: %s", path, what, s);
}

int mq_comm_file_open(struct mq_comm *c, const char *path, struct mq_comm_file **out, struct mq_error *err)
{
	*out = NULL;
	MPI_File fh;
	int rc = MPI_File_open(c->comm, path, MPI_MODE_WRONLY, MPI_INFO_NULL, &fh);
	struct mq_comm_file *f = rc == MPI_SUCCESS ? calloc(1, sizeof(*f)) : NULL;
	if (f && !(f->path = strdup(path))) {
		free(f);
		f = NULL;
	}
	/*
	 * Every rank learns whether every rank holds its handle. If one does not,
	 * the others close theirs here, together (closing is collective; where the
	 * open itself failed somewhere, a handle cannot be closed and is left), and
	 * return no handle and no error: the agreement after the open carries the
	 * failing rank's error to all.
	 */
	int mine[2] = { rc == MPI_SUCCESS, f != NULL }, all[2] = { 0, 0 };
	MQ_MPI_CHECK(MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MIN, c->comm), "MPI_Allreduce");
	if (!all[1]) {
		if (all[0])
			MPI_File_close(&fh);
		if (f)
			free(f->path);
		free(f);
		if (rc != MPI_SUCCESS)
			return file_fail(path, err, rc, "opening the output");
		return mine[1] ? 0 : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	f->fh = fh;
	MPI_File_set_errhandler(f->fh, MPI_ERRORS_RETURN);
	*out = f;
	return 0;
}

int mq_comm_file_write(struct mq_comm_file *f, uint64_t offset, const void *p, size_t n, struct mq_error *err)
{
	const char *b = p;
	while (n) {
		int part = n > MAX_IO ? (int)MAX_IO : (int)n;
		MPI_Status st;
		int rc = MPI_File_write_at(f->fh, (MPI_Offset)offset, b, part, MPI_BYTE, &st);
		if (rc != MPI_SUCCESS)
			return file_fail(f->path, err, rc, "writing");
		int done = 0;
		MPI_Get_count(&st, MPI_BYTE, &done);
		if (done <= 0)
			return mq_fail(err, MQ_ERR_OUTPUT,
				"'%s': short write at offset %llu (disk full?)", f->path, (unsigned long long)offset);
		b += done;
		n -= (size_t)done;
		offset += (uint64_t)done;
	}
	return 0;
}

int mq_comm_file_sync(struct mq_comm_file *f, struct mq_error *err)
{
	int rc = MPI_File_sync(f->fh);
	if (rc != MPI_SUCCESS)
		return file_fail(f->path, err, rc, "flushing");
	return 0;
}

int mq_comm_file_close(struct mq_comm_file **fp, struct mq_error *err)
{
	struct mq_comm_file *f = *fp;
	if (!f)
		return 0;
	*fp = NULL;
	int rc = MPI_File_close(&f->fh);
	if (rc != MPI_SUCCESS)
		file_fail(f->path, err, rc, "closing");
	free(f->path);
	free(f);
	return rc != MPI_SUCCESS ? err->code : 0;
}
