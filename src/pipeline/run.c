#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cblas.h>
#include <cjson/cJSON.h>
#include <zlib.h>

#include "calib.h"
#include "config.h"
#include "gather.h"
#include "journal.h"
#include "metadata.h"
#include "outmeta.h"
#include "plan.h"
#include "report.h"
#include "torch.h"

/* A unit's result as sent to rank 0; followed by n_digests SHA-256 digests. */
struct unit_record {
	int32_t unit;
	int32_t failed;      /* 1: failed or skipped (the error travels by agreement); 2: not started, interrupted */
	double signal, noise, max_abs;
	double out_signal, out_noise_w, out_noise_wa; /* calibrated layers */
	uint64_t crc_len[3];  /* .pt output: bytes written to the data, scale and zero-point tensors */
	uint32_t crc[3];      /* and their CRC-32 */
	uint32_t n_digests;
};

/* Output-space sums of a calibrated layer's unit. */
struct out_acc {
	double signal, noise_w, noise_wa;
};

struct run {
	struct mq_comm *comm;
	int rank, size;
	struct mq_options *opt;       /* the caller's: the output path is resolved into it */
	struct mq_manifest man;
	struct mq_plan plan;
	uint64_t header_len;          /* reserved: the safetensors header, or the .pt metadata record */
	int pt;                       /* the output is a torch .pt archive */
	struct mq_torch_out tout;     /* its layout */
	uint64_t *out_pos;            /* per output tensor: file offset of its first byte */
	uint64_t out_size;            /* of the whole output file */
	char *output, *tmp;           /* final and partial output paths (all ranks) */
	char *journal_path;           /* rank 0: the journal beside the partial output */
	int journal_fd;               /* rank 0, -1 if none */
	uint8_t identity[MQ_SHA256_LEN]; /* rank 0: what the journal must match to be resumed */
	unsigned char *done;          /* per unit: finished by an earlier run (all ranks) */
	int resuming;                 /* rank 0: an interrupted run's journal matched */
	void **pending;               /* rank 0, per unit: a journaled record whose output bytes check out */
	size_t *pending_len;
	int replaying;                /* rank 0: taking journaled records (not appended again) */
	int interrupted;              /* this rank stopped taking units on SIGUSR1 */
	int lock_fd;                  /* rank 0: holds the journal's flock for the run */
	int hash_only;                /* the up-to-date check: read and hash the sources, write nothing */
	char existing_fp[2 * MQ_SHA256_LEN + 1]; /* rank 0, job mode: the existing output's fingerprint */
	int skipped;                  /* job mode: the output was up to date */
	int *fds;                     /* per input file, opened on first use */
	struct mq_gather *gather;     /* reads of strided views */
	uint32_t ucrc[3];             /* .pt: the unit in progress, per data/scale/zero-point tensor */
	uint64_t ucrc_len[3];
	int ucrc_out[3];              /* its output tensors, -1 if none */
	unsigned char *arena;         /* tensor buffers, plan.arena_bytes */
	uint8_t *digests;             /* this unit's chunk digests, then the record */
	/* rank 0: what has come in */
	struct mq_tensor_result *res; /* per tensor */
	double *u_signal, *u_noise, *u_max; /* per unit */
	double *u_out;                /* per unit: output-space sums (3), with --calib */
	uint32_t *u_crc;              /* per unit: CRC-32 of its data, scale, zero-point bytes (.pt) */
	uint64_t *u_crc_len;          /* and their lengths */
	uint32_t *out_crc;            /* per output tensor (.pt) */
	uint8_t *chunk_digests;       /* 32 bytes per chunk of every tensor */
	uint64_t *chunk_base;         /* per tensor: index of its first chunk */
	int *units_left;              /* per tensor */
	int tensors_done, records_left;
	int units_taken;              /* rank 0: finished units whose records arrived (or were resumed) */
	int units_appended;           /* rank 0: records this run appended to the journal */
	int cancel_sent;              /* rank 0: told the others to stop */
	int cancelled;                /* stop working: a unit failed somewhere */
	double stats[MQ_STAT_COUNT];
	/* calibration */
	struct mq_calib *calib;       /* open on every rank with --calib */
	struct mq_calib_info *cinfo;  /* per manifest tensor */
	double *act;                  /* per tensor: threshold, scale, zero point (after the observers) */
	char calib_digest[2 * MQ_SHA256_LEN + 1]; /* rank 0 */
	struct mq_error err;
};

/* Set by SIGUSR1 (see catch_stop): finish the unit in hand and start no other. */
static volatile sig_atomic_t stop_requested;
/* Rank 0: the journal holds at least one finished unit (see on_fatal_signal). */
static volatile sig_atomic_t units_journaled;

/*
 * Test seam for the fault tests (tests/integration/test_faults.sh): with
 * MQ_TEST_STOP_AT=N in the environment, rank 0 stops itself (SIGSTOP) once N
 * units of this run are journaled, or with N = 0 as soon as the partial output
 * exists, so that a test fires its fault in the middle of a run without
 * guessing how long the run takes. The others wait for rank 0 meanwhile.
 */
static void test_stop_at(int n_journaled)
{
	static int stop_at = -2; /* -2: not read yet, -1: off or done */
	if (stop_at == -2) {
		const char *v = getenv("MQ_TEST_STOP_AT");
		stop_at = v && *v ? atoi(v) : -1;
	}
	if (stop_at >= 0 && n_journaled >= stop_at) {
		stop_at = -1;
		raise(SIGSTOP);
	}
}

/* ---- rank 0: records and progress ---- */

static void finish_tensor(struct run *r, int t)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	struct mq_tensor_result *res = &r->res[t];
	for (int k = 0; k < pt->n_units; k++) {
		int u = pt->first_unit + k;
		res->signal += r->u_signal[u];
		res->noise += r->u_noise[u];
		res->max_abs = r->u_max[u] > res->max_abs ? r->u_max[u] : res->max_abs;
		if (r->u_out) {
			res->out_signal += r->u_out[3 * u];
			res->out_noise_w += r->u_out[3 * u + 1];
			res->out_noise_wa += r->u_out[3 * u + 2];
		}
	}
	if (r->act) {
		res->act_threshold = r->act[3 * t];
		res->act_scale = r->act[3 * t + 1];
		res->act_zero_point = r->act[3 * t + 2];
	}
	if (!r->opt->no_checksum)
		mq_sha256(r->chunk_digests + r->chunk_base[t] * MQ_SHA256_LEN, pt->n_chunks * MQ_SHA256_LEN,
			  res->sha256);
	const int outs[3] = { pt->out_data, pt->out_scale, pt->out_zero_point };
	for (int k = 0; r->pt && k < 3; k++) { /* the units' CRCs joined in unit order */
		if (outs[k] < 0)
			continue;
		uLong crc = crc32(0L, Z_NULL, 0);
		for (int i = 0; i < pt->n_units; i++) {
			int u = pt->first_unit + i;
			crc = crc32_combine(crc, r->u_crc[3 * u + k], (z_off_t)r->u_crc_len[3 * u + k]);
		}
		r->out_crc[outs[k]] = (uint32_t)crc;
	}
	++r->tensors_done;
	if (!r->hash_only)
		mq_report_progress(&r->man, &r->plan, t, r->tensors_done, res);
}

/* Rank 0, after the first failed unit: stop everyone early. */
static void cancel_all(struct run *r)
{
	r->cancelled = 1;
	if (r->rank == 0 && !r->cancel_sent && r->size > 1) {
		mq_comm_cancel_send(r->comm);
		r->cancel_sent = 1;
	}
}

static void take_record(struct run *r, const struct unit_record *rec, size_t len)
{
	if (len < sizeof(*rec) || rec->unit < 0 || rec->unit >= r->plan.n_units)
		MQ_ASSERT(!"malformed unit record");
	if (rec->failed) {
		if (rec->failed != 2) /* an interrupted rank finished its unit in hand: the others go on */
			cancel_all(r);
		return;
	}
	const struct mq_unit *u = &r->plan.units[rec->unit];
	MQ_ASSERT(len == sizeof(*rec) + rec->n_digests * (size_t)MQ_SHA256_LEN &&
		  rec->n_digests == (r->opt->no_checksum ? 0 : u->chunk_end - u->chunk_begin));
	r->u_signal[rec->unit] = rec->signal;
	r->u_noise[rec->unit] = rec->noise;
	r->u_max[rec->unit] = rec->max_abs;
	if (r->u_out) {
		r->u_out[3 * rec->unit] = rec->out_signal;
		r->u_out[3 * rec->unit + 1] = rec->out_noise_w;
		r->u_out[3 * rec->unit + 2] = rec->out_noise_wa;
	}
	memcpy(r->chunk_digests + (r->chunk_base[u->tensor] + u->chunk_begin) * MQ_SHA256_LEN, rec + 1,
	       rec->n_digests * (size_t)MQ_SHA256_LEN);
	r->units_taken++;
	memcpy(r->u_crc + 3 * rec->unit, rec->crc, sizeof(rec->crc));
	memcpy(r->u_crc_len + 3 * rec->unit, rec->crc_len, sizeof(rec->crc_len));
	if (r->journal_fd >= 0 && !r->replaying && mq_journal_append(r->journal_fd, rec, (uint32_t)len)) {
		mq_warn("cannot write the journal '%s' (%s); this run cannot be resumed", r->journal_path,
			strerror(errno));
		close(r->journal_fd);
		r->journal_fd = -1;
	} else if (r->journal_fd >= 0) {
		units_journaled = 1;
		test_stop_at(++r->units_appended);
	}
	if (--r->units_left[u->tensor] == 0)
		finish_tensor(r, u->tensor);
}

/*
 * Between blocks: rank 0 takes the records that have arrived (blocking: waits
 * for all of them); the other ranks look for a cancel.
 */
static void poll_records(struct run *r, int blocking)
{
	if (r->rank != 0) {
		if (!r->cancelled && mq_comm_cancel_poll(r->comm))
			r->cancelled = 1;
		return;
	}
	while (r->records_left > 0) {
		size_t len;
		struct mq_error e = { 0 };
		void *rec = mq_comm_recv_record(r->comm, blocking, &len, &e);
		if (!rec) {
			if (e.code)
				MQ_ASSERT(!"cannot receive a unit record");
			return;
		}
		r->records_left--;
		take_record(r, rec, len);
		free(rec);
	}
}

static void release_collect(struct run *r)
{
	free(r->res);
	free(r->chunk_base);
	free(r->units_left);
	free(r->u_signal);
	free(r->u_noise);
	free(r->u_max);
	free(r->chunk_digests);
	free(r->u_out);
	free(r->u_crc);
	free(r->u_crc_len);
	free(r->out_crc);
	r->res = NULL;
	r->chunk_base = NULL;
	r->units_left = NULL;
	r->u_signal = r->u_noise = r->u_max = r->u_out = NULL;
	r->chunk_digests = NULL;
	r->u_crc = r->out_crc = NULL;
	r->u_crc_len = NULL;
	r->tensors_done = r->records_left = r->units_taken = 0;
}

static int setup_collect(struct run *r)
{
	const struct mq_plan *p = &r->plan;
	r->res = calloc((size_t)p->n_tensors + 1, sizeof(*r->res));
	r->chunk_base = calloc((size_t)p->n_tensors + 1, sizeof(*r->chunk_base));
	r->units_left = calloc((size_t)p->n_tensors + 1, sizeof(*r->units_left));
	r->u_signal = calloc((size_t)p->n_units + 1, sizeof(double));
	r->u_noise = calloc((size_t)p->n_units + 1, sizeof(double));
	r->u_max = calloc((size_t)p->n_units + 1, sizeof(double));
	uint64_t chunks = 0;
	for (int t = 0; t < p->n_tensors; t++) {
		r->chunk_base[t] = chunks;
		chunks += p->tensors[t].n_chunks;
		r->units_left[t] = p->tensors[t].n_units;
	}
	r->chunk_digests = malloc((size_t)chunks * MQ_SHA256_LEN + 1);
	if (r->opt->calib && !(r->u_out = calloc(3 * (size_t)p->n_units + 1, sizeof(double))))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (!(r->u_crc = calloc(3 * (size_t)p->n_units + 1, sizeof(uint32_t))) ||
	    !(r->u_crc_len = calloc(3 * (size_t)p->n_units + 1, sizeof(uint64_t))) ||
	    !(r->out_crc = calloc((size_t)p->n_out + 1, sizeof(uint32_t))))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (!r->res || !r->chunk_base || !r->units_left || !r->u_signal || !r->u_noise || !r->u_max ||
	    !r->chunk_digests)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int u = 0; u < p->n_units; u++)
		r->records_left += p->units[u].rank != 0;
	for (int t = 0; t < p->n_tensors; t++)
		if (p->tensors[t].n_units == 0)
			finish_tensor(r, t);
	return 0;
}

/* ---- reading ---- */

static int input_fd(struct run *r, int file)
{
	if (r->fds[file] < 0) {
		const char *path = r->man.files[file].path;
		r->fds[file] = open(path, O_RDONLY | O_CLOEXEC);
		if (r->fds[file] < 0)
			return mq_fail(&r->err, MQ_ERR_INPUT, "cannot open '%s': %s", path, strerror(errno));
	}
	return r->fds[file];
}

struct reading {
	struct run *r;
	const struct mq_tensor *t;
	int fd;
};

/* n bytes at file position pos of the tensor's file (the gather module's reader too). */
static int read_file_at(void *ctx, void *buf, size_t n, uint64_t pos)
{
	struct reading *rd = ctx;
	struct run *r = rd->r;
	char *p = buf;
	while (n) {
		ssize_t k = pread(rd->fd, p, n, (off_t)pos);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return mq_fail(&r->err, MQ_ERR_INPUT, "'%s': tensor '%s': cannot read bytes at %llu: %s",
				       r->man.files[rd->t->file].path, rd->t->name, (unsigned long long)pos,
				       k == 0 ? "unexpected end of file (was the file truncated?)" : strerror(errno));
		p += k;
		n -= (size_t)k;
		pos += (uint64_t)k;
		r->stats[MQ_STAT_BYTES_READ] += (double)k;
	}
	return 0;
}

/* Bytes [off, off + n) of the tensor in row-major order: one read, or a gather of a strided view. */
static int read_at(struct run *r, const struct mq_tensor *t, uint64_t off, void *buf, size_t n)
{
	double t0 = mq_comm_time();
	struct reading rd = { r, t, input_fd(r, t->file) };
	if (rd.fd < 0)
		return r->err.code;
	int rc = t->contiguous ? read_file_at(&rd, buf, n, t->offset + off)
			       : mq_gather_read(&r->gather, t, off, buf, n, read_file_at, &rd);
	if (rc && !r->err.code)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory reading tensor '%s'", t->name);
	r->stats[MQ_STAT_T_READ] += mq_comm_time() - t0;
	return r->err.code;
}

/* n bytes at absolute offset pos of the output file. */
static int write_at(struct run *r, uint64_t pos, const void *buf, size_t n)
{
	double t0 = mq_comm_time();
	int rc = mq_comm_file_write(r->comm, pos, buf, n, &r->err);
	r->stats[MQ_STAT_T_WRITE] += mq_comm_time() - t0;
	r->stats[MQ_STAT_BYTES_WRITTEN] += (double)n;
	return rc;
}

/* Bytes of output tensor o from its byte off on, in order within a unit (the unit's CRC follows them). */
static int write_out(struct run *r, int o, uint64_t off, const void *buf, size_t n)
{
	for (int k = 0; k < 3; k++)
		if (r->ucrc_out[k] == o) {
			r->ucrc[k] = (uint32_t)crc32(r->ucrc[k], buf, (uInt)n);
			r->ucrc_len[k] += n;
		}
	return write_at(r, r->out_pos[o] + off, buf, n);
}

/* Hashes one block and closes the chunk digest when the block ends its chunk. */
struct chunk_hasher {
	struct mq_sha256 h;
	int open;
	uint8_t *out;     /* digests of the unit's chunks */
	int next;         /* index of the chunk being hashed */
};

static int hash_block(struct run *r, struct chunk_hasher *ch, const void *p, size_t n, int ends_chunk)
{
	if (!ch->out)
		return 0; /* --no-checksum */
	double t0 = mq_comm_time();
	if (!ch->open) {
		if (mq_sha256_init(&ch->h))
			return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
		ch->open = 1;
	}
	mq_sha256_update(&ch->h, p, n);
	if (ends_chunk) {
		mq_sha256_final(&ch->h, ch->out + (size_t)ch->next++ * MQ_SHA256_LEN);
		ch->open = 0;
	}
	r->stats[MQ_STAT_T_HASH] += mq_comm_time() - t0;
	return 0;
}

/* ---- the work on one unit ---- */

static int copy_unit(struct run *r, const struct mq_unit *u, struct chunk_hasher *ch)
{
	const struct mq_tensor *t = &r->man.tensors[u->tensor];
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	uint64_t begin = u->row_begin * pt->row_bytes, end = u->row_end * pt->row_bytes;
	for (uint64_t off = begin; off < end;) {
		size_t n = (size_t)(end - off < r->plan.arena_bytes ? end - off : r->plan.arena_bytes);
		n -= n % mq_dtype_size(t->dtype); /* whole elements, for strided views */
		if (read_at(r, t, off, r->arena, n) || hash_block(r, ch, r->arena, n, off + n == end) ||
		    write_out(r, pt->out_data, off, r->arena, n))
			return r->err.code;
		off += n;
		poll_records(r, 0);
		if (r->cancelled)
			return MQ_ERR_INTERNAL; /* stopped: someone else failed */
	}
	return 0;
}

struct blocks {
	void *src;         /* source rows as stored */
	float *x;          /* the same rows as float32 (aliases src for F32) */
	void *q;           /* quantized rows */
	float *scale;      /* per row */
	int8_t *zp;        /* per row */
	float *what;       /* calibrated layers: the rows dequantized */
};

static struct blocks carve(struct run *r, const struct mq_plan_tensor *pt, enum mq_dtype dt)
{
	struct blocks b;
	uint64_t rows = pt->block_rows;
	unsigned char *p = r->arena;
	size_t src = (size_t)(rows * pt->row_bytes + 63) & ~(size_t)63;
	size_t f32 = (size_t)(rows * pt->row_elems * 4 + 63) & ~(size_t)63;
	size_t q = (size_t)(rows * pt->row_elems * mq_dtype_size(mq_scheme_get(r->plan.scheme)->out_dtype) + 63) &
		   ~(size_t)63;
	b.src = p;
	b.x = dt == MQ_DTYPE_F32 ? (float *)(void *)p : (float *)(void *)(p + src);
	b.q = p + src + f32;
	b.scale = (float *)(void *)(p + src + f32 + q);
	b.zp = (int8_t *)(b.scale + rows);
	b.what = (float *)(void *)(p + src + f32 + q + ((rows * 5 + 63) & ~(uint64_t)63));
	return b;
}

static int data_error(struct run *r, const struct mq_tensor *t, uint64_t row, const float *x, size_t col)
{
	const char *what = x[col] != x[col] ? "NaN" : "Inf";
	if ((mq_f32_bits(x[col]) & 0x7fffffffu) < 0x7f800000u)
		what = "a value beyond the float16 range (|x| >= 65520)";
	return mq_fail(&r->err, MQ_ERR_DATA,
		"'%s': tensor '%s': %s at row %llu, element %zu; repair the checkpoint, or keep the tensor unquantized with --exclude '%s'",
		r->man.files[t->file].path, t->name, what, (unsigned long long)row, col, t->name);
}

/* Range of one row with the NaN/Inf (and fp16 overflow) checks. */
static int row_range(struct run *r, const struct mq_tensor *t, const struct mq_plan_tensor *pt, uint64_t row,
		     const float *x, struct mq_range *rg)
{
	size_t bad;
	if (mq_range_update(rg, x, (size_t)pt->row_elems, &bad))
		return data_error(r, t, row, x, bad);
	float limit = mq_scheme_limit(r->plan.scheme);
	if (mq_f32_from_bits(rg->absmax_bits) > limit) {
		for (size_t k = 0; k < pt->row_elems; k++)
			if (x[k] > limit || x[k] < -limit)
				return data_error(r, t, row, x, k);
	}
	return 0;
}

static int load_block(struct run *r, const struct mq_tensor *t, const struct mq_plan_tensor *pt,
		      const struct blocks *b, uint64_t row, uint64_t n, struct chunk_hasher *ch)
{
	size_t bytes = (size_t)(n * pt->row_bytes);
	if (read_at(r, t, row * pt->row_bytes, b->src, bytes))
		return r->err.code;
	if (ch) {
		uint64_t chunk_end = (row / pt->chunk_rows + 1) * pt->chunk_rows;
		if (hash_block(r, ch, b->src, bytes, row + n == chunk_end || row + n == pt->n_rows))
			return r->err.code;
	}
	double t0 = mq_comm_time();
	if (t->dtype != MQ_DTYPE_F32)
		mq_dtype_widen(t->dtype, b->src, b->x, (size_t)(n * pt->row_elems));
	r->stats[MQ_STAT_T_QUANT] += mq_comm_time() - t0;
	return 0;
}

/* ---- output-space error of calibrated layers ---- */

/* x -> dequant(quant(x)) with the layer's static activation parameters. */
static void fake_quant(const struct run *r, int t, const float *x, float *out, size_t n)
{
	float s = (float)r->act[3 * t + 1], inv = 1.0f / s, zp = (float)r->act[3 * t + 2];
	for (size_t i = 0; i < n; i++) { /* int8 and int8-asym alike: codes in [-128, 127] */
		float q = nearbyintf(x[i] * inv) + zp;
		q = q < -128.0f ? -128.0f : q > 127.0f ? 127.0f : q;
		out[i] = (q - zp) * s;
	}
}

/* Conv input [c, h, w] to rows of patches [oh * ow, c * kh * kw], zero padding. */
static void im2col(const float *x, const struct mq_calib_info *ci, const struct mq_tensor *t, uint64_t oh,
		   uint64_t ow, float *out)
{
	uint64_t c_in = t->shape[1], kh = t->shape[2], kw = t->shape[3];
	int64_t h = (int64_t)ci->shape.shape[2], w = (int64_t)ci->shape.shape[3];
	uint64_t k_len = c_in * kh * kw;
	for (uint64_t oy = 0; oy < oh; oy++)
		for (uint64_t ox = 0; ox < ow; ox++) {
			float *row = out + (oy * ow + ox) * k_len;
			for (uint64_t c = 0; c < c_in; c++)
				for (uint64_t ki = 0; ki < kh; ki++)
					for (uint64_t kj = 0; kj < kw; kj++) {
						int64_t iy = (int64_t)oy * ci->stride[0] - ci->padding[0] + (int64_t)ki * ci->dilation[0];
						int64_t ix = (int64_t)ox * ci->stride[1] - ci->padding[1] + (int64_t)kj * ci->dilation[1];
						*row++ = iy >= 0 && iy < h && ix >= 0 && ix < w ? x[(c * (uint64_t)h + (uint64_t)iy) * (uint64_t)w + (uint64_t)ix] : 0.0f;
					}
		}
}

/* Y = X W^T for m rows of X (k wide) and n rows of W: sums of Y^2 and of the errors, in order. */
static void gemm_sums(const float *x, const float *xh, const float *w, const float *wh, uint64_t m, uint64_t n,
		      uint64_t k, float *y, float *yw, float *ywa, struct out_acc *acc)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k, w, (int)k, 0.0f,
		    y, (int)n);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k, wh, (int)k, 0.0f,
		    yw, (int)n);
	if (xh)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, xh, (int)k, wh, (int)k,
			    0.0f, ywa, (int)n);
	for (uint64_t i = 0; i < m * n; i++) {
		double v = (double)y[i], e1 = v - (double)yw[i], e2 = xh ? v - (double)ywa[i] : 0.0;
		acc->signal += v * v;
		acc->noise_w += e1 * e1;
		acc->noise_wa += e2 * e2;
	}
}

/*
 * Output-space sums of n weight rows (w, and wh dequantized) over the layer's
 * calibration rows, read in fixed blocks: 1 MiB of Linear rows, or one Conv
 * sample. The order of the sums depends on the shapes only.
 */
static int output_space(struct run *r, int t, const float *w, const float *wh, uint64_t n, struct out_acc *acc)
{
	const struct mq_tensor *tt = &r->man.tensors[t];
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	const struct mq_calib_info *ci = &pt->cinfo;
	int conv = tt->ndim == 4, act = pt->act_rank >= 0;
	uint64_t k = pt->row_elems, in_row = ci->shape.row_elems, xb, m_rows, oh = 1, ow = 1;
	if (conv) {
		oh = (uint64_t)(((int64_t)ci->shape.shape[2] + 2 * ci->padding[0] - ci->dilation[0] * ((int64_t)tt->shape[2] - 1) - 1) / ci->stride[0] + 1);
		ow = (uint64_t)(((int64_t)ci->shape.shape[3] + 2 * ci->padding[1] - ci->dilation[1] * ((int64_t)tt->shape[3] - 1) - 1) / ci->stride[1] + 1);
		xb = 1;
		m_rows = oh * ow;
	} else {
		uint64_t chunk = ci->shape.chunk_rows ? ci->shape.chunk_rows : 1;
		xb = (1u << 20) / (k * 4) / chunk * chunk; /* whole HDF5 chunks of rows */
		xb = xb ? xb : chunk;
		uint64_t y_cap = (8u << 20) / (n * 12); /* and at most 8 MiB of outputs */
		y_cap = y_cap ? y_cap : 1;
		xb = xb < y_cap ? xb : y_cap;
		m_rows = xb;
	}
	char *layer = mq_plan_layer_name(tt->name);
	struct mq_calib_layer *l = NULL;
	struct mq_calib_shape sh;
	float *x = malloc(xb * in_row * sizeof(float)), *xh = malloc(xb * in_row * sizeof(float));
	float *xc = conv ? malloc(m_rows * k * sizeof(float)) : NULL, *xhc = conv ? malloc(m_rows * k * sizeof(float)) : NULL;
	float *y = malloc(m_rows * n * sizeof(float) * 3);
	int rc = 0;
	if (!layer || !x || !xh || !y || (conv && (!xc || !xhc)))
		rc = mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the output-space error of '%s'", tt->name);
	if (!rc)
		rc = mq_calib_layer_open(r->calib, layer, &l, &sh, &r->err);
	for (uint64_t row = 0; !rc && row < pt->calib_rows; row += xb) {
		uint64_t nx = pt->calib_rows - row < xb ? pt->calib_rows - row : xb;
		size_t bad;
		struct mq_range rg;
		mq_range_init(&rg);
		double t0 = mq_comm_time();
		if ((rc = mq_calib_layer_read(l, row, nx, x, &r->err)))
			break;
		r->stats[MQ_STAT_T_READ] += mq_comm_time() - t0;
		if (mq_range_update(&rg, x, (size_t)(nx * in_row), &bad)) {
			rc = mq_calib_layer_nonfinite(l, row, x, bad, &r->err);
			break;
		}
		t0 = mq_comm_time();
		if (act)
			fake_quant(r, t, x, xh, (size_t)(nx * in_row));
		if (conv) {
			im2col(x, ci, tt, oh, ow, xc);
			if (act)
				im2col(xh, ci, tt, oh, ow, xhc);
			gemm_sums(xc, act ? xhc : NULL, w, wh, m_rows, n, k, y, y + m_rows * n, y + 2 * m_rows * n, acc);
		} else {
			gemm_sums(x, act ? xh : NULL, w, wh, nx, n, k, y, y + nx * n, y + 2 * nx * n, acc);
		}
		r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t0;
		poll_records(r, 0);
	}
	mq_calib_layer_close(l);
	free(layer);
	free(x);
	free(xh);
	free(xc);
	free(xhc);
	free(y);
	return rc;
}

static int quant_unit(struct run *r, const struct mq_unit *u, struct chunk_hasher *ch, struct mq_err_acc *acc,
		      struct out_acc *oacc)
{
	const struct mq_tensor *t = &r->man.tensors[u->tensor];
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	const struct mq_plan *p = &r->plan;
	const struct mq_scheme_info *si = mq_scheme_get(p->scheme);
	size_t out_row = (size_t)pt->row_elems * mq_dtype_size(si->out_dtype);
	struct blocks b = carve(r, pt, t->dtype);
	struct mq_range whole;
	mq_range_init(&whole);
	if (p->per_tensor) { /* pass 1: the exact range of the whole tensor (and the digests) */
		for (uint64_t row = u->row_begin; row < u->row_end;) {
			uint64_t n = u->row_end - row < pt->block_rows ? u->row_end - row : pt->block_rows;
			uint64_t to_chunk_end = (row / pt->chunk_rows + 1) * pt->chunk_rows - row;
			n = n < to_chunk_end ? n : to_chunk_end; /* a block never straddles two chunk digests */
			if (load_block(r, t, pt, &b, row, n, ch))
				return r->err.code;
			for (uint64_t k = 0; k < n; k++)
				if (row_range(r, t, pt, row + k, b.x + k * pt->row_elems, &whole))
					return r->err.code;
			row += n;
			poll_records(r, 0);
			if (r->cancelled)
				return MQ_ERR_INTERNAL;
		}
	}
	struct mq_qparams tensor_qp = mq_quant_params(p->scheme, &whole);
	for (uint64_t row = u->row_begin; row < u->row_end;) {
		uint64_t n = u->row_end - row < pt->block_rows ? u->row_end - row : pt->block_rows;
		if (load_block(r, t, pt, &b, row, n, p->per_tensor ? NULL : ch))
			return r->err.code;
		double t0 = mq_comm_time();
		for (uint64_t k = 0; k < n; k++) {
			const float *x = b.x + k * pt->row_elems;
			struct mq_qparams qp = tensor_qp;
			if (!p->per_tensor) {
				struct mq_range rg;
				mq_range_init(&rg);
				if (row_range(r, t, pt, row + k, x, &rg))
					return r->err.code;
				qp = mq_quant_params(p->scheme, &rg);
			}
			mq_quant_row(p->scheme, x, (size_t)pt->row_elems, qp, (char *)b.q + k * out_row, acc);
			b.scale[k] = qp.scale;
			b.zp[k] = (int8_t)qp.zero_point;
		}
		r->stats[MQ_STAT_T_QUANT] += mq_comm_time() - t0;
		if (write_out(r, pt->out_data, row * out_row, b.q, n * out_row))
			return r->err.code;
		if (pt->calib == MQ_CALIB_STATIC) {
			for (uint64_t k = 0; k < n; k++) {
				const struct mq_qparams qp = { b.scale[k], b.zp[k] };
				const void *q = (const char *)b.q + k * out_row;
				float *wh = b.what + k * pt->row_elems;
				for (uint64_t j = 0; j < pt->row_elems; j++)
					wh[j] = mq_dequant(qp, ((const int8_t *)q)[j]);
			}
			if (output_space(r, u->tensor, b.x, b.what, n, oacc))
				return r->err.code;
		}
		if (!p->per_tensor && pt->out_scale >= 0 && write_out(r, pt->out_scale, row * 4, b.scale, n * 4))
			return r->err.code;
		if (!p->per_tensor && pt->out_zero_point >= 0 && write_out(r, pt->out_zero_point, row, b.zp, n))
			return r->err.code;
		row += n;
		poll_records(r, 0);
		if (r->cancelled)
			return MQ_ERR_INTERNAL;
	}
	if (p->per_tensor) {
		int8_t zp = (int8_t)tensor_qp.zero_point;
		if (write_out(r, pt->out_scale, 0, &tensor_qp.scale, 4) ||
		    (pt->out_zero_point >= 0 && write_out(r, pt->out_zero_point, 0, &zp, 1)))
			return r->err.code;
	}
	return 0;
}

/* The up-to-date check's work on one unit: its source chunks' digests, nothing written. */
static int hash_unit(struct run *r, const struct mq_unit *u, struct chunk_hasher *ch)
{
	const struct mq_tensor *t = &r->man.tensors[u->tensor];
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	size_t es = mq_dtype_size(t->dtype);
	for (uint64_t c = u->chunk_begin; c < u->chunk_end; c++) {
		uint64_t r1 = (c + 1) * pt->chunk_rows < pt->n_rows ? (c + 1) * pt->chunk_rows : pt->n_rows;
		uint64_t end = r1 * pt->row_bytes;
		for (uint64_t off = c * pt->chunk_rows * pt->row_bytes; off < end;) {
			size_t n = (size_t)(end - off < r->plan.arena_bytes ? end - off : r->plan.arena_bytes);
			n -= n % es;
			if (read_at(r, t, off, r->arena, n) || hash_block(r, ch, r->arena, n, off + n == end))
				return r->err.code;
			off += n;
			poll_records(r, 0);
			if (r->cancelled)
				return MQ_ERR_INTERNAL;
		}
	}
	return 0;
}

static int do_unit(struct run *r, int id, struct unit_record *rec)
{
	const struct mq_unit *u = &r->plan.units[id];
	struct chunk_hasher ch = { .out = r->opt->no_checksum ? NULL : (uint8_t *)(rec + 1) };
	struct mq_err_acc acc = { 0, 0, 0 };
	struct out_acc oacc = { 0, 0, 0 };
	memset(rec, 0, sizeof(*rec));
	rec->unit = id;
	rec->n_digests = r->opt->no_checksum ? 0 : (uint32_t)(u->chunk_end - u->chunk_begin);
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	r->ucrc_out[0] = pt->out_data;
	r->ucrc_out[1] = pt->out_scale;
	r->ucrc_out[2] = pt->out_zero_point;
	for (int k = 0; k < 3; k++) {
		r->ucrc[k] = (uint32_t)crc32(0L, Z_NULL, 0);
		r->ucrc_len[k] = 0;
	}
	int rc = r->hash_only ? hash_unit(r, u, &ch)
		 : r->plan.tensors[u->tensor].action == MQ_ACT_QUANT ? quant_unit(r, u, &ch, &acc, &oacc)
								      : copy_unit(r, u, &ch);
	if (ch.open)
		mq_sha256_release(&ch.h);
	rec->failed = rc != 0;
	rec->signal = acc.signal;
	rec->noise = acc.noise;
	rec->max_abs = acc.max_abs;
	rec->out_signal = oacc.signal;
	rec->out_noise_w = oacc.noise_w;
	rec->out_noise_wa = oacc.noise_wa;
	memcpy(rec->crc, r->ucrc, sizeof(rec->crc));
	memcpy(rec->crc_len, r->ucrc_len, sizeof(rec->crc_len));
	for (int k = 0; k < 3; k++)
		r->ucrc_out[k] = -1;
	return rc;
}

static int work(struct run *r)
{
	const struct mq_plan *p = &r->plan;
	uint64_t max_digests = 0;
	for (int u = 0; u < p->n_units; u++)
		if (p->units[u].chunk_end - p->units[u].chunk_begin > max_digests)
			max_digests = p->units[u].chunk_end - p->units[u].chunk_begin;
	size_t rec_len = sizeof(struct unit_record) + (size_t)max_digests * MQ_SHA256_LEN;
	struct unit_record *full = malloc(rec_len), skip;
	free(r->arena);
	r->arena = malloc((size_t)p->arena_bytes + 4 * 64);
	/* Without buffers this rank still reports every unit (as skipped), or rank 0 would wait forever. */
	int failed = 0;
	if (!full || !r->arena)
		failed = mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for %llu bytes of buffers",
				 (unsigned long long)p->arena_bytes) != 0;
	for (int id = 0; id < p->n_units; id++) {
		if (p->units[id].rank != r->rank || r->done[id])
			continue;
		struct unit_record *rec = &skip;
		if (stop_requested && !r->interrupted) { /* finish the unit in hand, start no other */
			r->interrupted = 1;
			mq_info("SIGUSR1: stopping after the units in hand\n");
		}
		if (!failed && !r->cancelled && !r->interrupted) {
			rec = full;
			failed = do_unit(r, id, rec) != 0;
			r->stats[MQ_STAT_UNITS]++;
			if (failed && r->rank == 0)
				cancel_all(r);
		} else { /* after a failure anywhere, the remaining units are only reported as skipped */
			memset(rec, 0, sizeof(*rec));
			rec->unit = id;
			rec->failed = failed || r->cancelled ? 1 : 2;
		}
		if (rec->failed)
			rec->n_digests = 0;
		size_t len = sizeof(*rec) + rec->n_digests * (size_t)MQ_SHA256_LEN;
		if (r->rank == 0) {
			take_record(r, rec, len);
		} else {
			struct mq_error e = { 0 };
			if (mq_comm_send_record(r->comm, rec, len, &e))
				MQ_ASSERT(!"cannot send a unit record");
		}
	}
	free(full);
	double t0 = mq_comm_time();
	poll_records(r, 1);
	r->stats[MQ_STAT_T_WAIT] += mq_comm_time() - t0;
	if (r->interrupted && r->hash_only)
		mq_fail(&r->err, MQ_ERR_INTERRUPTED, "interrupted by SIGUSR1 while checking whether '%s' is up to date",
			r->output);
	else if (r->interrupted)
		mq_fail(&r->err, MQ_ERR_INTERRUPTED,
			"interrupted by SIGUSR1; the finished work units are kept in '%s' with their journal: run the same command again to resume",
			r->tmp);
	return r->err.code;
}

/* ---- the output file ---- */

/*
 * Rank 0, while the partial output exists: what a fatal signal does to it
 * and its journal (README, "Resuming"). SIGINT and SIGHUP reach the ranks
 * only from a user (Open MPI puts each rank in a process group of its own
 * and tears a job down with SIGCONT, SIGTERM and SIGKILL), so they remove
 * both: the run was cancelled. SIGTERM is also how mpirun and Slurm stop the
 * survivors after one rank crashed, and a rank cannot tell the two apart in
 * the second before SIGKILL; so once the journal holds a finished unit,
 * SIGTERM keeps both as a crash does, and the next run resumes or discards
 * them. Before that there is nothing to lose and SIGTERM removes them too.
 * The handler only reads flags and calls unlink(), strlen() and write() (a
 * message prepared beforehand): all async-signal-safe.
 */
static char tmp_on_signal[4096], journal_on_signal[4096], kept_on_signal[4096 + 160];
static const int cleanup_signals[] = { SIGINT, SIGTERM, SIGHUP };

static void on_fatal_signal(int sig)
{
	if (sig != SIGTERM || !units_journaled) {
		if (tmp_on_signal[0])
			unlink(tmp_on_signal);
		if (journal_on_signal[0])
			unlink(journal_on_signal);
	} else if (kept_on_signal[0]) {
		ssize_t w = write(STDERR_FILENO, kept_on_signal, strlen(kept_on_signal));
		(void)w; /* nothing to be done about a failed write here */
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void guard_tmp(const char *path, const char *journal)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = path ? on_fatal_signal : SIG_DFL;
	sigemptyset(&sa.sa_mask);
	units_journaled = 0;
	/* nothing of an earlier model's stays, also when these paths do not fit */
	tmp_on_signal[0] = journal_on_signal[0] = kept_on_signal[0] = '\0';
	if (path && strlen(path) < sizeof(tmp_on_signal) && strlen(journal) < sizeof(journal_on_signal)) {
		memcpy(tmp_on_signal, path, strlen(path) + 1);
		memcpy(journal_on_signal, journal, strlen(journal) + 1);
		struct mq_buf b = MQ_BUF_INIT;
		mq_buf_adds(&b, "mq-dist: SIGTERM: the finished work units are kept in '");
		mq_buf_add_escaped(&b, path, strlen(path));
		mq_buf_adds(&b, "' with its journal; the same command resumes\n");
		kept_on_signal[0] = '\0';
		if (mq_buf_ok(&b) && b.len < sizeof(kept_on_signal))
			memcpy(kept_on_signal, b.data, b.len + 1);
		mq_buf_release(&b);
	}
	for (size_t i = 0; i < sizeof(cleanup_signals) / sizeof(cleanup_signals[0]); i++)
		sigaction(cleanup_signals[i], &sa, NULL);
}

/*
 * SIGUSR1 (what a Slurm script forwards before a time limit or preemption):
 * every rank finishes the unit in hand and starts no other; the partial
 * output and the journal stay for a resume.
 */
static void request_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void catch_stop(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = request_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
}

static int same_file(const char *a, const char *b)
{
	struct stat x, y;
	return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/*
 * Rank 0, job mode: an existing output written by mq-dist is replaced unless
 * its fingerprint shows it up to date (checked later); any other file needs --force.
 */
static int existing_output(struct run *r)
{
	cJSON *meta = NULL;
	struct mq_error e = { 0 };
	int unreadable = mq_output_metadata(r->output, &meta, &e) != 0;
	const char *fp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "fingerprint"));
	int ours = fp != NULL;
	if (fp && strlen(fp) == 2 * MQ_SHA256_LEN && !r->opt->force)
		memcpy(r->existing_fp, fp, 2 * MQ_SHA256_LEN + 1);
	cJSON_Delete(meta);
	if (r->opt->force || ours)
		return 0;
	if (unreadable)
		return mq_fail(&r->err, MQ_ERR_OUTPUT,
			"output '%s' exists but cannot be read as a model file (%s); use --force to replace it", r->output,
			e.msg);
	return mq_fail(&r->err, MQ_ERR_OUTPUT,
		"output '%s' exists and was not written by mq-dist (no fingerprint in its metadata); use --force to replace it",
		r->output);
}

/* Rank 0: refuse to overwrite the input or, without --force, an existing file. */
static int check_output(struct run *r)
{
	const char *out = r->output;
	for (int f = 0; f < r->man.n_files; f++)
		if (same_file(out, r->man.files[f].path))
			return mq_fail(&r->err, MQ_ERR_OUTPUT, "output '%s' is the input file '%s'; choose another -o",
				       out, r->man.files[f].path);
	if (same_file(out, r->opt->input))
		return mq_fail(&r->err, MQ_ERR_OUTPUT, "output '%s' is the input; choose another -o", out);
	struct stat st;
	if (stat(out, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return mq_fail(&r->err, MQ_ERR_OUTPUT, "output '%s' is a folder; give a file name", out);
		if (r->opt->job_mode && !r->opt->dry_run)
			return existing_output(r);
		if (!r->opt->force && !r->opt->dry_run)
			return mq_fail(&r->err, MQ_ERR_OUTPUT, "output '%s' exists; use --force to overwrite it", out);
	}
	return 0;
}

/* Rank 0: SHA-256 of everything that decides the output bytes; a journal must match it to be resumed. */
static void compute_identity(struct run *r)
{
	struct mq_sha256 h;
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_addf(&b, "mq-dist partial 1\nversion %s\nformat %s\nunits %d\nsize %llu\noptions ", MQ_VERSION,
		    r->pt ? "pt" : "safetensors", r->plan.n_units, (unsigned long long)r->out_size);
	mq_options_json(r->opt, &b);
	for (int f = 0; f < r->man.n_files; f++) {
		struct stat st;
		memset(&st, 0, sizeof(st));
		stat(r->man.files[f].path, &st);
		mq_buf_addf(&b, "\nfile %s %llu %lld.%09ld ", r->man.files[f].name, (unsigned long long)r->man.files[f].size,
			    (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
		mq_buf_add(&b, r->man.files[f].raw, (size_t)r->man.files[f].raw_len);
	}
	if (r->opt->calib) {
		struct stat st;
		memset(&st, 0, sizeof(st));
		stat(r->opt->calib, &st);
		mq_buf_addf(&b, "\ncalibration %s %llu %lld.%09ld", r->opt->calib, (unsigned long long)st.st_size,
			    (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
	}
	memset(r->identity, 0, sizeof(r->identity));
	if (mq_buf_ok(&b) && mq_sha256_init(&h) == 0) {
		mq_sha256_update(&h, b.data, b.len);
		mq_sha256_final(&h, r->identity);
	}
	mq_buf_release(&b);
}

/* Where unit u's bytes of its k-th output (data, scale, zero point) start within that tensor. */
static uint64_t slot_offset(const struct run *r, const struct mq_unit *u, int k)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	if (k == 0)
		return u->row_begin * (r->plan.out[pt->out_data].end - r->plan.out[pt->out_data].begin) /
		       (pt->n_rows ? pt->n_rows : 1);
	return r->plan.per_tensor ? 0 : u->row_begin * (k == 1 ? 4 : 1);
}

/* Rank 0: a journaled unit is trusted only if its output bytes still have the CRCs it recorded. */
static int verify_unit(struct run *r, int fd, const struct unit_record *rec, size_t len, unsigned char *buf)
{
	const struct mq_plan *p = &r->plan;
	if (len < sizeof(*rec) || rec->unit < 0 || rec->unit >= p->n_units || rec->failed || r->done[rec->unit])
		return 0;
	const struct mq_unit *u = &p->units[rec->unit];
	const struct mq_plan_tensor *pt = &p->tensors[u->tensor];
	if (rec->n_digests != (r->opt->no_checksum ? 0 : u->chunk_end - u->chunk_begin) ||
	    len != sizeof(*rec) + rec->n_digests * (size_t)MQ_SHA256_LEN)
		return 0;
	const int outs[3] = { pt->out_data, pt->out_scale, pt->out_zero_point };
	for (int k = 0; k < 3; k++) {
		if (outs[k] < 0) {
			if (rec->crc_len[k])
				return 0;
			continue;
		}
		const struct mq_out_tensor *o = &p->out[outs[k]];
		uint64_t off = slot_offset(r, u, k), n = rec->crc_len[k];
		if (off > o->end - o->begin || n > o->end - o->begin - off)
			return 0;
		uLong crc = crc32(0L, Z_NULL, 0);
		for (uint64_t done = 0; done < n;) {
			size_t step = (size_t)(n - done < (1u << 20) ? n - done : (1u << 20));
			if (pread(fd, buf, step, (off_t)(r->out_pos[outs[k]] + off + done)) != (ssize_t)step)
				return 0;
			crc = crc32(crc, buf, (uInt)step);
			done += step;
		}
		if ((uint32_t)crc != rec->crc[k])
			return 0;
	}
	return 1;
}

/* Rank 0: the journaled units whose output bytes still match their CRCs (r->done, r->pending). */
static void resume_units(struct run *r, const struct mq_journal_load *jl)
{
	int fd = open(r->tmp, O_RDONLY | O_CLOEXEC);
	unsigned char *buf = malloc(1u << 20);
	r->pending = calloc((size_t)r->plan.n_units + 1, sizeof(void *));
	r->pending_len = calloc((size_t)r->plan.n_units + 1, sizeof(size_t));
	if (!r->pending || !r->pending_len) {
		free(buf);
		buf = NULL;
	}
	for (int i = 0; fd >= 0 && buf && i < jl->n; i++) {
		const struct unit_record *rec = jl->entries[i].rec;
		struct unit_record copy; /* the entry may be unaligned in the file's buffer */
		if (jl->entries[i].len < sizeof(copy))
			continue;
		memcpy(&copy, rec, sizeof(copy));
		void *whole = malloc(jl->entries[i].len);
		if (!whole)
			break;
		memcpy(whole, rec, jl->entries[i].len);
		if (verify_unit(r, fd, whole, jl->entries[i].len, buf)) {
			r->done[copy.unit] = 1;
			r->pending[copy.unit] = whole;
			r->pending_len[copy.unit] = jl->entries[i].len;
			whole = NULL;
		}
		free(whole);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
}

/*
 * Rank 0: the output must fit in the free space of its file system before
 * posix_fallocate reserves it (which glibc emulates by writing every block
 * where the file system cannot allocate, so a hostile size would otherwise
 * run until the disk is full). A resumed partial already holds its blocks.
 */
static int check_space(struct run *r, int fd)
{
	struct statvfs vfs;
	struct stat st;
	if (fstatvfs(fd, &vfs) != 0 || fstat(fd, &st) != 0 || vfs.f_blocks == 0)
		return 0; /* posix_fallocate will tell (some FUSE and object stores report no sizes at all) */
	uint64_t frsize = vfs.f_frsize ? vfs.f_frsize : vfs.f_bsize;
	uint64_t blocks = geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail; /* root may use the reserved blocks */
	uint64_t avail = blocks > UINT64_MAX / frsize ? UINT64_MAX : blocks * frsize;
	uint64_t have = (uint64_t)st.st_blocks * 512;
	uint64_t need = r->out_size > have ? r->out_size - have : 0;
	if (need <= avail)
		return 0;
	char a[32], b[32];
	char *dir = strdup(r->tmp);
	mq_fail(&r->err, MQ_ERR_OUTPUT,
		"'%s': no space left for the output on the file system of '%s': it needs %s (%llu bytes), %s are free; free some space or choose another -o",
		r->output, dir ? dirname(dir) : ".", mq_report_size(need, a, sizeof(a)), (unsigned long long)need,
		mq_report_size(avail, b, sizeof(b)));
	free(dir);
	return r->err.code;
}

/*
 * Rank 0: the partial output beside the output (".NAME.tmp") and its journal.
 * An interrupted run's pair is resumed when the journal's identity matches;
 * otherwise it is discarded and a new partial file is created and reserved.
 */
static int open_partial(struct run *r)
{
	char *copy = strdup(r->output), *copy2 = strdup(r->output);
	if (!copy || !copy2) {
		free(copy);
		free(copy2);
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	}
	const char *dir = dirname(copy), *base = basename(copy2);
	size_t n = strlen(dir) + strlen(base) + 32;
	r->tmp = malloc(n);
	r->journal_path = malloc(n + 8);
	if (r->tmp && r->journal_path) {
		snprintf(r->tmp, n, "%s/.%s.tmp", dir, base);
		snprintf(r->journal_path, n + 8, "%s.journal", r->tmp);
	}
	free(copy2);
	if (!r->tmp || !r->journal_path) {
		free(copy);
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	}
	compute_identity(r);
	/* one run at a time per output: the journal's lock is held until the run ends */
	int had_journal = access(r->journal_path, F_OK) == 0;
	r->lock_fd = open(r->journal_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (r->lock_fd >= 0 && flock(r->lock_fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
		free(copy);
		close(r->lock_fd);
		r->lock_fd = -1;
		mq_fail(&r->err, MQ_ERR_OUTPUT, "another mq-dist run is writing '%s' (its journal '%s' is locked)", r->output,
			r->journal_path);
		free(r->tmp); /* not ours: the failure path must leave them alone */
		free(r->journal_path);
		r->tmp = r->journal_path = NULL;
		return r->err.code;
	}
	struct stat st;
	struct mq_journal_load jl;
	int had = stat(r->tmp, &st) == 0;
	int resume = had && S_ISREG(st.st_mode) && (uint64_t)st.st_size == r->out_size &&
		     mq_journal_read(r->journal_path, r->identity, (uint64_t)r->plan.n_units, &jl) == 0;
	if (resume) {
		resume_units(r, &jl);
		r->resuming = 1;
	} else {
		if (had || had_journal)
			mq_info("discarding '%s' (left by a run with other inputs or options, or without a journal)\n", r->tmp);
		unlink(r->tmp); /* the journal is truncated in place, keeping its lock */
	}
	int fd = open(r->tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0) {
		mq_fail(&r->err, MQ_ERR_OUTPUT, "cannot create the output in folder '%s': %s", dir, strerror(errno));
		free(copy);
		if (resume)
			mq_journal_load_release(&jl);
		return r->err.code;
	}
	free(copy);
	guard_tmp(r->tmp, r->journal_path);
	int rc = r->out_size && !check_space(r, fd) ? posix_fallocate(fd, 0, (off_t)r->out_size) : 0;
	close(fd);
	char need[32];
	if (rc == ENOSPC || rc == EDQUOT) /* rc stays 0 when check_space failed: it said why */
		mq_fail(&r->err, MQ_ERR_OUTPUT, "'%s': no space left on device for the %s (%llu-byte) output", r->output,
			mq_report_size(r->out_size, need, sizeof(need)), (unsigned long long)r->out_size);
	else if (rc && rc != EOPNOTSUPP && rc != EINVAL)
		mq_fail(&r->err, MQ_ERR_OUTPUT, "'%s': cannot reserve %llu bytes: %s", r->output,
			(unsigned long long)r->out_size, strerror(rc));
	if (!r->err.code)
		r->journal_fd = mq_journal_start(r->journal_path, r->identity, (uint64_t)r->plan.n_units,
						 resume ? jl.valid_len : 0, &r->err);
	for (int u = 0; r->journal_fd >= 0 && u < r->plan.n_units; u++)
		if (r->done[u])
			units_journaled = 1; /* an earlier run's units, kept in the journal */
	if (resume)
		mq_journal_load_release(&jl);
	if (!r->err.code)
		test_stop_at(0);
	return r->err.code;
}

/* Rank 0: the static activation parameters, a few bytes per layer. */
static int write_act_params(struct run *r)
{
	for (int t = 0; r->act && t < r->plan.n_tensors; t++) {
		const struct mq_plan_tensor *pt = &r->plan.tensors[t];
		float s = (float)r->act[3 * t + 1];
		int8_t zp = (int8_t)r->act[3 * t + 2];
		if (pt->out_input_scale >= 0) {
			if (r->pt)
				r->out_crc[pt->out_input_scale] = (uint32_t)crc32(0L, (const Bytef *)&s, 4);
			if (write_at(r, r->out_pos[pt->out_input_scale], &s, 4))
				return r->err.code;
		}
		if (pt->out_input_zero_point >= 0) {
			if (r->pt)
				r->out_crc[pt->out_input_zero_point] = (uint32_t)crc32(0L, (const Bytef *)&zp, 1);
			if (write_at(r, r->out_pos[pt->out_input_zero_point], &zp, 1))
				return r->err.code;
		}
	}
	return 0;
}

/* Rank 0: the safetensors header, padded with spaces to its reserved length. */
static int write_st_header(struct run *r)
{
	struct mq_buf b = MQ_BUF_INIT;
	unsigned char prefix[8];
	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char)(r->header_len >> (8 * i));
	mq_buf_add(&b, prefix, 8);
	int rc = mq_metadata_header(&r->man, &r->plan, r->opt, r->res, r->calib_digest[0] ? r->calib_digest : NULL,
				    0, &b, &r->err);
	if (!rc && b.len - 8 > r->header_len)
		rc = mq_fail(&r->err, MQ_ERR_INTERNAL, "header exceeds its reservation");
	while (!rc && b.len - 8 < r->header_len)
		mq_buf_add(&b, " ", 1);
	if (!rc)
		rc = write_at(r, 0, b.data, b.len);
	mq_buf_release(&b);
	return rc;
}

/*
 * Rank 0: the rest of a .pt archive once every CRC is known: the local
 * headers, data.pkl, version, the metadata record and the directory.
 */
static int write_pt_archive(struct run *r)
{
	struct mq_torch_out *t = &r->tout;
	struct mq_buf meta = MQ_BUF_INIT, b = MQ_BUF_INIT;
	int rc = mq_metadata_object(&r->man, &r->plan, r->opt, r->res, r->calib_digest[0] ? r->calib_digest : NULL,
				    r->header_len, &meta, &r->err);
	const void *payload[3] = { t->pickle.data, "3\n", meta.data };
	int fixed[3] = { 0, t->n_entries - 2, t->meta_entry };
	for (int k = 0; !rc && k < 3; k++)
		t->entries[fixed[k]].crc = (uint32_t)crc32(0L, payload[k], (uInt)t->entries[fixed[k]].size);
	for (int o = 0; !rc && o < r->plan.n_out; o++)
		t->entries[t->entry_of_out[o]].crc = r->out_crc[o];
	for (int i = 0; !rc && i < t->n_entries; i++) {
		const struct mq_zip_entry *e = &t->entries[i];
		b.len = 0;
		mq_zip_local_header(e, &b);
		for (int k = 0; k < 3; k++)
			if (fixed[k] == i)
				mq_buf_add(&b, payload[k], (size_t)e->size);
		rc = mq_buf_ok(&b) ? write_at(r, e->header_offset, b.data, b.len)
				   : mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	}
	if (!rc) {
		b.len = 0;
		mq_zip_directory(t->entries, t->n_entries, t->directory_offset, &b);
		rc = mq_buf_ok(&b) ? write_at(r, t->directory_offset, b.data, b.len)
				   : mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	}
	mq_buf_release(&meta);
	mq_buf_release(&b);
	return rc;
}

static int write_header(struct run *r)
{
	if (write_act_params(r))
		return r->err.code;
	return r->pt ? write_pt_archive(r) : write_st_header(r);
}

static void sync_dir(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return;
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(copy);
}

/* Rank 0: SHA-256 of a whole file (the calibration file), 4 MiB at a time. */
static int hash_file(struct run *r, const char *path)
{
	FILE *f = fopen(path, "rb");
	struct mq_sha256 h;
	char *buf = malloc(4u << 20);
	if (!f || !buf || mq_sha256_init(&h)) {
		if (f)
			fclose(f);
		free(buf);
		return mq_fail(&r->err, MQ_ERR_INPUT, "cannot read '%s' to checksum it", path);
	}
	size_t n;
	while ((n = fread(buf, 1, 4u << 20, f)) > 0)
		mq_sha256_update(&h, buf, n);
	uint8_t d[MQ_SHA256_LEN];
	mq_sha256_final(&h, d);
	mq_hex(d, MQ_SHA256_LEN, r->calib_digest);
	int bad = ferror(f);
	fclose(f);
	free(buf);
	return bad ? mq_fail(&r->err, MQ_ERR_INPUT, "cannot read '%s'", path) : 0;
}

/* ---- phases ---- */

static int phase_manifest(struct run *r)
{
	double t0 = mq_comm_time();
	char *blob = NULL;
	size_t len = 0;
	if (r->rank == 0 && !mq_manifest_load(r->opt->input, &r->man, &r->err))
		mq_manifest_pack(&r->man, &blob, &len, &r->err);
	if (mq_comm_agree(r->comm, &r->err))
		goto out;
	if (mq_comm_bcast_blob(r->comm, &blob, &len, &r->err) == 0 && r->rank != 0)
		mq_manifest_unpack(blob, len, &r->man, &r->err);
	mq_comm_agree(r->comm, &r->err);
out:
	free(blob);
	r->stats[MQ_STAT_T_MANIFEST] = mq_comm_time() - t0;
	return r->err.code;
}

/* Every rank: what the calibration file holds for each weight; rank 0: the file's digest. */
static int phase_calib(struct run *r)
{
	if (!r->opt->calib)
		return 0;
	double t0 = mq_comm_time();
	openblas_set_num_threads(1); /* one thread per rank, and the same sums every time */
	r->cinfo = calloc((size_t)r->man.n_tensors + 1, sizeof(*r->cinfo));
	if (!r->cinfo)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	else if (!mq_calib_open(r->opt->calib, &r->calib, &r->err)) {
		for (int i = 0; i < r->man.n_tensors && !r->err.code; i++) {
			const struct mq_tensor *t = &r->man.tensors[i];
			if (!mq_dtype_is_float(t->dtype) || (t->ndim != 2 && t->ndim != 4))
				continue;
			char *layer = mq_plan_layer_name(t->name);
			if (!layer)
				mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
			else
				mq_calib_describe(r->calib, layer, &r->cinfo[i], &r->err);
			free(layer);
		}
	}
	if (!r->err.code && r->rank == 0 && !r->opt->no_checksum && !r->opt->dry_run)
		hash_file(r, r->opt->calib);
	r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t0;
	return mq_comm_agree(r->comm, &r->err);
}

/* The activation observers, each layer on the rank the plan chose; every rank gets every result. */
static int phase_act(struct run *r)
{
	if (!r->opt->calib)
		return 0;
	double t0 = mq_comm_time();
	size_t n = 3 * (size_t)r->plan.n_tensors;
	double *mine = calloc(n + 1, sizeof(double));
	r->act = calloc(n + 1, sizeof(double));
	if (!mine || !r->act)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int i = 0; i < r->plan.n_tensors && !r->err.code; i++) {
		const struct mq_plan_tensor *pt = &r->plan.tensors[i];
		if (pt->act_rank != r->rank || pt->calib != MQ_CALIB_STATIC)
			continue;
		char *layer = mq_plan_layer_name(r->man.tensors[i].name);
		struct mq_obs_result res;
		uint64_t rows;
		if (!layer) {
			mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
		} else if (!mq_calib_observe(r->calib, layer, &r->opt->observer, !r->opt->act_asymmetric, pt->calib_rows,
					     &res, &rows, &r->err)) {
			mine[3 * i] = r->opt->act_asymmetric ? (double)(res.hi - res.lo) : (double)res.threshold;
			mine[3 * i + 1] = (double)res.qp.scale;
			mine[3 * i + 2] = (double)res.qp.zero_point;
		}
		free(layer);
	}
	/* one rank holds each value and the others zero, so the sum is exact */
	if (!mq_comm_agree(r->comm, &r->err))
		mq_comm_allreduce_sum(r->comm, mine, r->act, (int)n, &r->err);
	free(mine);
	r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t0;
	return mq_comm_agree(r->comm, &r->err);
}

/* Where every output tensor goes: after the safetensors header, or in its .pt record. */
static int place_outputs(struct run *r)
{
	const struct mq_plan *p = &r->plan;
	if (mq_metadata_reserve(&r->man, p, r->opt, r->pt, &r->header_len, &r->err))
		return r->err.code;
	if (r->pt && mq_torch_out_plan(p->out, p->n_out, r->header_len, &r->tout, &r->err))
		return r->err.code;
	if (!(r->out_pos = malloc(((size_t)p->n_out + 1) * sizeof(uint64_t))))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int o = 0; o < p->n_out; o++)
		r->out_pos[o] = r->pt ? r->tout.entries[r->tout.entry_of_out[o]].data_offset
				      : 8 + r->header_len + p->out[o].begin;
	r->out_size = r->pt ? r->tout.file_size : 8 + r->header_len + p->bytes_out;
	if (r->out_size < p->bytes_out) /* the plan bounds bytes_out far below 2^64; a broken bound is a bug */
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "the output size overflows");
	return 0;
}

static int phase_plan(struct run *r)
{
	double t0 = mq_comm_time();
	r->output = r->opt->output ? strdup(r->opt->output) : mq_options_default_output(r->opt, r->man.n_files &&
						r->man.files[0].kind == MQ_SOURCE_TORCH && !r->man.index_name);
	if (!r->output)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	else
		r->pt = r->opt->pt_output = mq_options_output_format(r->output) == MQ_OUT_TORCH;
	if (!r->err.code && r->rank == 0)
		check_output(r);
	if (!r->err.code && !mq_plan_build(&r->man, r->opt, r->size, r->cinfo, &r->plan, &r->err))
		place_outputs(r);
	r->stats[MQ_STAT_T_PLAN] = mq_comm_time() - t0;
	return mq_comm_agree(r->comm, &r->err);
}

/*
 * Every rank: the resumed units' sources must still be what the journal
 * hashed. Each rank re-hashes the sources of the resumed units the plan gives
 * it (the journaled chunk digests come from rank 0); a unit whose source
 * changed is redone. Then rank 0 takes the records of the units that stay done.
 * Without checksums (--no-checksum) the journal's identity (sizes,
 * modification times, headers) is all there is to go by.
 */
static int confirm_resumed(struct run *r)
{
	const struct mq_plan *p = &r->plan;
	int any = 0;
	for (int u = 0; u < p->n_units; u++)
		any |= r->done[u];
	if (!any) {
		if (r->resuming)
			mq_info("resuming an interrupted run: 0 of %d work units verified in '%s'\n", p->n_units, r->tmp);
		return 0;
	}
	char *dig = NULL;
	size_t len = 0;
	unsigned char *bad = calloc((size_t)p->n_units + 1, 1), *all_bad = calloc((size_t)p->n_units + 1, 1);
	if (!bad || !all_bad)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (!r->opt->no_checksum && r->rank == 0 && bad) { /* the digests of the resumed units, in unit order */
		struct mq_buf b = MQ_BUF_INIT;
		for (int u = 0; u < p->n_units; u++)
			if (r->done[u]) {
				const struct unit_record *rec = r->pending[u];
				mq_buf_add(&b, rec + 1, rec->n_digests * (size_t)MQ_SHA256_LEN);
			}
		mq_buf_add(&b, "", 1);
		if (!mq_buf_ok(&b))
			mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
		dig = mq_buf_detach(&b, &len);
	}
	if (!mq_comm_agree(r->comm, &r->err) && !r->opt->no_checksum &&
	    !mq_comm_bcast_blob(r->comm, &dig, &len, &r->err)) {
		double t0 = mq_comm_time();
		size_t max = 0;
		for (int u = 0; u < p->n_units; u++)
			max = (size_t)(p->units[u].chunk_end - p->units[u].chunk_begin) > max
				      ? (size_t)(p->units[u].chunk_end - p->units[u].chunk_begin) : max;
		uint8_t *mine = malloc(max * MQ_SHA256_LEN + 1);
		free(r->arena);
		r->arena = malloc((size_t)p->arena_bytes + 4 * 64);
		if (!mine || !r->arena)
			mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
		size_t at = 0;
		for (int u = 0; u < p->n_units && !r->err.code; u++) {
			if (!r->done[u])
				continue;
			size_t n = (size_t)(p->units[u].chunk_end - p->units[u].chunk_begin) * MQ_SHA256_LEN;
			if (at + n > len) {
				mq_fail(&r->err, MQ_ERR_INTERNAL, "corrupt resume digests");
				break;
			}
			if (p->units[u].rank == r->rank) {
				struct chunk_hasher ch = { .out = mine };
				if (hash_unit(r, &p->units[u], &ch) == 0)
					bad[u] = memcmp(mine, dig + at, n) != 0;
				if (ch.open)
					mq_sha256_release(&ch.h);
			}
			at += n;
		}
		free(mine);
		r->stats[MQ_STAT_T_HASH] += mq_comm_time() - t0;
	}
	free(dig);
	if (!mq_comm_agree(r->comm, &r->err))
		mq_comm_allreduce_max_bytes(r->comm, bad, all_bad, (size_t)p->n_units, &r->err);
	int kept = 0, changed = 0;
	for (int u = 0; !r->err.code && u < p->n_units; u++) {
		if (!r->done[u])
			continue;
		if (all_bad[u]) {
			r->done[u] = 0;
			changed++;
			continue;
		}
		kept++;
		if (r->rank == 0) {
			r->records_left -= p->units[u].rank != 0;
			r->replaying = 1;
			take_record(r, r->pending[u], r->pending_len[u]);
			r->replaying = 0;
		}
	}
	if (!r->err.code && r->rank == 0) {
		mq_info("resuming an interrupted run: %d of %d work units verified in '%s'\n", kept, p->n_units, r->tmp);
		if (changed)
			mq_info("  %d more were journaled, but their source data changed since: redoing them\n", changed);
	}
	free(bad);
	free(all_bad);
	return mq_comm_agree(r->comm, &r->err);
}

static int phase_open(struct run *r)
{
	char *name = NULL, *done = NULL;
	size_t len = 0, done_len = 0;
	r->done = calloc((size_t)r->plan.n_units + 1, 1);
	if (!r->done)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	else if (r->rank == 0 && !open_partial(r) && !(name = strdup(r->tmp))) {
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	} else if (r->rank == 0 && name) {
		len = strlen(name) + 1;
		done = malloc((size_t)r->plan.n_units + 1);
		if (done)
			memcpy(done, r->done, (size_t)r->plan.n_units + 1);
		done_len = (size_t)r->plan.n_units + 1;
	}
	if (mq_comm_agree(r->comm, &r->err)) {
		free(name);
		free(done);
		return r->err.code;
	}
	if (!mq_comm_bcast_blob(r->comm, &name, &len, &r->err) && r->rank != 0)
		r->tmp = name;
	else
		free(name);
	if (!mq_comm_bcast_blob(r->comm, &done, &done_len, &r->err) && r->rank != 0 &&
	    done_len == (size_t)r->plan.n_units + 1)
		memcpy(r->done, done, done_len);
	free(done);
	if (mq_comm_agree(r->comm, &r->err) || confirm_resumed(r))
		return r->err.code;
	mq_comm_file_open(r->comm, r->tmp, &r->err);
	return mq_comm_agree(r->comm, &r->err);
}

/* After SIGUSR1: the finished units' bytes reach the disk and the journal stays, for a resume. */
static void keep_partial(struct run *r)
{
	struct mq_error e = { 0 };
	mq_comm_file_sync(r->comm, &e);
	mq_comm_file_close(r->comm, &e);
	if (r->rank != 0)
		return;
	if (r->journal_fd >= 0) {
		fsync(r->journal_fd);
		close(r->journal_fd);
		r->journal_fd = -1;
	}
	guard_tmp(NULL, NULL);
	mq_info("%d of %d work units are finished and journaled in '%s'\n", r->units_taken, r->plan.n_units, r->tmp);
}

static int phase_finish(struct run *r)
{
	double t0 = mq_comm_time();
	if (r->rank == 0)
		write_header(r);
	mq_comm_agree(r->comm, &r->err);
	if (!r->err.code && !r->opt->no_sync)
		mq_comm_file_sync(r->comm, &r->err);
	mq_comm_file_close(r->comm, &r->err);
	if (!mq_comm_agree(r->comm, &r->err) && r->rank == 0) {
		if (rename(r->tmp, r->output) != 0)
			mq_fail(&r->err, MQ_ERR_OUTPUT, "cannot rename '%s' to '%s': %s", r->tmp, r->output,
				strerror(errno));
		else if (!r->opt->no_sync)
			sync_dir(r->output);
		if (!r->err.code) {
			guard_tmp(NULL, NULL);
			close(r->journal_fd);
			r->journal_fd = -1;
			unlink(r->journal_path);
		}
	}
	r->stats[MQ_STAT_T_FINISH] = mq_comm_time() - t0;
	return mq_comm_agree(r->comm, &r->err);
}

static void report(struct run *r)
{
	r->stats[MQ_STAT_PEAK_RSS] = mq_report_peak_rss();
	mq_calib_io(r->calib, &r->stats[MQ_STAT_CALIB_BYTES], &r->stats[MQ_STAT_T_CALIB_READ]);
	double *all = r->rank == 0 ? calloc((size_t)r->size * MQ_STAT_COUNT, sizeof(double)) : NULL;
	struct mq_error e = { 0 };
	if (mq_comm_gather(r->comm, r->stats, MQ_STAT_COUNT, all, &e) == 0 && r->rank == 0 && all) {
		mq_report_summary(&r->man, &r->plan, r->res, all, r->output);
		if (r->opt->report && mq_report_write(r->opt->report, &r->man, &r->plan, r->opt, r->res, all,
						     r->output, &e))
			mq_print(stderr, "mq-dist: warning: %s\n", e.msg);
	}
	free(all);
}

static void release(struct run *r)
{
	mq_calib_close(r->calib);
	free(r->cinfo);
	free(r->act);
	free(r->u_out);
	free(r->u_crc);
	free(r->u_crc_len);
	free(r->out_crc);
	free(r->out_pos);
	mq_torch_out_release(&r->tout);
	mq_gather_free(r->gather);
	if (r->fds)
		for (int f = 0; f < r->man.n_files; f++)
			if (r->fds[f] >= 0)
				close(r->fds[f]);
	free(r->fds);
	free(r->arena);
	free(r->res);
	free(r->u_signal);
	free(r->u_noise);
	free(r->u_max);
	free(r->chunk_digests);
	free(r->chunk_base);
	free(r->units_left);
	free(r->output);
	free(r->tmp);
	free(r->journal_path);
	free(r->done);
	for (int u = 0; r->pending && u < r->plan.n_units; u++)
		free(r->pending[u]);
	free(r->pending);
	free(r->pending_len);
	if (r->journal_fd >= 0)
		close(r->journal_fd);
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	mq_plan_release(&r->plan);
	mq_manifest_release(&r->man);
}

/* Every rank: a one-byte decision of rank 0. */
static int bcast_flag(struct run *r, int *flag)
{
	char *b = NULL;
	size_t len = 0;
	if (r->rank == 0 && (b = malloc(1))) {
		b[0] = (char)*flag;
		len = 1;
	}
	if (mq_comm_bcast_blob(r->comm, &b, &len, &r->err) == 0 && len == 1)
		*flag = b[0];
	free(b);
	return r->err.code;
}

/*
 * Job mode: whether the existing output is up to date. The sources are read
 * and hashed by all ranks (no output is written), and rank 0 compares the
 * fingerprint they give with the one the output records.
 */
static int up_to_date(struct run *r, int *yes)
{
	int check = r->rank == 0 && r->existing_fp[0];
	*yes = 0;
	if (bcast_flag(r, &check) || !check)
		return r->err.code;
	double t0 = mq_comm_time();
	r->hash_only = 1;
	r->done = calloc((size_t)r->plan.n_units + 1, 1);
	if (!r->done)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (!r->err.code && r->rank == 0)
		setup_collect(r);
	if (!mq_comm_agree(r->comm, &r->err)) {
		work(r);
		if (mq_comm_agree(r->comm, &r->err))
			mq_comm_cancel_drain(r->comm, r->cancel_sent, r->cancelled);
	}
	if (!r->err.code && r->rank == 0) {
		char fp[2 * MQ_SHA256_LEN + 1];
		mq_metadata_fingerprint(&r->plan, r->opt, r->res, r->calib_digest[0] ? r->calib_digest : NULL, fp);
		*yes = strcmp(fp, r->existing_fp) == 0;
		mq_info("%s: %s (checked in %.2f s)\n", r->output,
			*yes ? "up to date, skipped" : "out of date (the inputs, options or tool changed), redoing it",
			mq_comm_time() - t0);
	}
	if (r->rank == 0)
		release_collect(r);
	free(r->done);
	r->done = NULL;
	r->hash_only = 0;
	r->cancelled = r->cancel_sent = 0;
	if (r->err.code)
		return r->err.code;
	return bcast_flag(r, yes);
}

static int quantize(struct run *r)
{
	double t_start = mq_comm_time();
	catch_stop();
	if (phase_manifest(r) || phase_calib(r) || phase_plan(r))
		return r->err.code;
	if (r->opt->dry_run) {
		if (r->rank == 0)
			mq_report_plan(&r->man, &r->plan, r->opt, r->out_size, r->output);
		return 0;
	}
	r->fds = malloc((size_t)r->man.n_files * sizeof(int) + 1);
	if (!r->fds || !mq_f16_table())
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int f = 0; r->fds && f < r->man.n_files; f++)
		r->fds[f] = -1;
	int skip = 0;
	if (mq_comm_agree(r->comm, &r->err) || (r->opt->job_mode && up_to_date(r, &skip)))
		return r->err.code;
	if (skip) {
		r->skipped = 1;
		return 0;
	}
	if (phase_act(r))
		return r->err.code;
	if (!r->err.code && r->rank == 0)
		setup_collect(r);
	if (mq_comm_agree(r->comm, &r->err) || phase_open(r))
		goto fail;
	double t0 = mq_comm_time();
	work(r);
	r->stats[MQ_STAT_T_WORK] = mq_comm_time() - t0;
	if (mq_comm_agree(r->comm, &r->err)) {
		mq_comm_cancel_drain(r->comm, r->cancel_sent, r->cancelled);
		if (r->err.code == MQ_ERR_INTERRUPTED) {
			keep_partial(r);
			return r->err.code;
		}
		goto fail;
	}
	if (phase_finish(r))
		goto fail;
	r->stats[MQ_STAT_T_TOTAL] = mq_comm_time() - t_start;
	report(r);
	return 0;
fail:
	mq_comm_file_close(r->comm, &(struct mq_error){ 0 });
	if (r->rank == 0 && r->tmp && r->err.code == MQ_ERR_INTERNAL && units_journaled && r->journal_fd >= 0) {
		/* an MPI failure is how a peer's crash may surface: keep the finished units as a crash does */
		fsync(r->journal_fd);
		guard_tmp(NULL, NULL);
		mq_info("the finished work units are kept in '%s' with its journal: run the same command again to resume\n",
			r->tmp);
	} else if (r->rank == 0 && r->tmp) {
		unlink(r->tmp);
		if (r->journal_path)
			unlink(r->journal_path);
		guard_tmp(NULL, NULL);
	}
	return r->err.code;
}

int mq_run_model(struct mq_comm *c, struct mq_options *o, int *skipped, struct mq_error *err)
{
	struct run r;
	memset(&r, 0, sizeof(r));
	r.comm = c;
	r.rank = mq_comm_rank(c);
	r.size = mq_comm_size(c);
	r.opt = o;
	r.ucrc_out[0] = r.ucrc_out[1] = r.ucrc_out[2] = -1;
	r.journal_fd = r.lock_fd = -1;
	quantize(&r);
	*skipped = r.skipped;
	*err = r.err;
	release(&r);
	return err->code;
}
