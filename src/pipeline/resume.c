#include "resume.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collect.h"
#include "crc.h"
#include "fileio.h"
#include "journal.h"
#include "metadata.h"
#include "output.h"
#include "unit.h"

#define VERIFY_BLOCK (1u << 20) /* bytes of a journaled unit's output read at a time to check its CRC */

/* Rank 0: SHA-256 of everything that decides the output bytes; a journal must match it to be resumed. */
static void compute_identity(struct run *r)
{
	struct mq_sha256 h;
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_addf(&b, "mq-dist partial 2\nversion %s\nformat %s\nunits %d\nsize %llu\noptions ", MQ_VERSION,
		    r->writer->name, r->plan.n_units, (unsigned long long)r->out_size);
	mq_options_json(r->opt, &b);
	/* the output's files: a folder's shards (--max-shard-size is not in the options: it changes no byte) */
	for (int f = 0; f < r->files.n_files; f++)
		mq_buf_addf(&b, "\nout %d %llu", f, (unsigned long long)r->files.file_size[f]);
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
	int outs[UNIT_OUTPUTS];
	unit_outputs(pt, outs);
	if (k > 0 && pt->q.per_tensor) /* one scale (and zero point) for the whole tensor, at its start */
		return 0;
	const struct mq_out_tensor *o = &r->plan.out[outs[k]];
	/* the bytes of row_align rows (one row, or a word of packed zero points) times the unit's first */
	uint64_t align = outs[k] == pt->out_zero_point ? pt->row_align : 1, blocks = pt->n_rows / align;
	return u->row_begin / align * ((o->end - o->begin) / (blocks ? blocks : 1));
}

/* Rank 0: a journaled unit is trusted only if its output bytes still have the CRCs it recorded. */
static int verify_unit(struct run *r, const int *fds, const struct unit_record *rec, size_t len, unsigned char *buf)
{
	const struct mq_plan *p = &r->plan;
	if (len < sizeof(*rec) || rec->unit < 0 || rec->unit >= p->n_units || rec->failed || r->done[rec->unit])
		return 0;
	const struct mq_unit *u = &p->units[rec->unit];
	const struct mq_plan_tensor *pt = &p->tensors[u->tensor];
	if (rec->n_digests != (r->opt->no_checksum ? 0 : u->chunk_end - u->chunk_begin) ||
	    len != sizeof(*rec) + rec->n_digests * (size_t)MQ_SHA256_LEN)
		return 0;
	int outs[UNIT_OUTPUTS];
	unit_outputs(pt, outs);
	for (int k = 0; k < UNIT_OUTPUTS; k++) {
		if (outs[k] < 0) {
			if (rec->crc_len[k])
				return 0;
			continue;
		}
		const struct mq_out_tensor *o = &p->out[outs[k]];
		uint64_t off = slot_offset(r, u, k), n = rec->crc_len[k];
		if (off > o->end - o->begin || n > o->end - o->begin - off)
			return 0;
		uint32_t crc = 0;
		for (uint64_t done = 0; done < n;) {
			size_t step = (size_t)(n - done < VERIFY_BLOCK ? n - done : VERIFY_BLOCK);
			if (mq_pread_full(fds[r->files.file_of[outs[k]]], buf, step, r->out_pos[outs[k]] + off + done, NULL))
				return 0;
			crc = mq_crc32(crc, buf, step);
			done += step;
		}
		if (crc != rec->crc[k])
			return 0;
	}
	return 1;
}

/* Rank 0: the journaled units whose output bytes still match their CRCs (r->done, r->pending). */
static void resume_units(struct run *r, const struct mq_journal_load *jl)
{
	int *fds = malloc((size_t)r->files.n_files * sizeof(int)), fd = fds ? 0 : -1;
	for (int f = 0; fds && f < r->files.n_files; f++) {
		char *path = output_part_path(r, f);
		fds[f] = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
		fd = fds[f] < 0 ? -1 : fd;
		free(path);
	}
	unsigned char *buf = malloc(VERIFY_BLOCK);
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
		if (verify_unit(r, fds, whole, jl->entries[i].len, buf)) {
			r->done[copy.unit] = 1;
			r->pending[copy.unit] = whole;
			r->pending_len[copy.unit] = jl->entries[i].len;
			whole = NULL;
		}
		free(whole);
	}
	for (int f = 0; fds && f < r->files.n_files; f++)
		if (fds[f] >= 0)
			close(fds[f]);
	free(fds);
	free(buf);
}

/* Rank 0: whether the partial output on disk has every file of the layout, at its size (a resume's start). */
static int partial_matches(const struct run *r)
{
	for (int f = 0; f < r->files.n_files; f++) {
		struct stat st;
		char *path = output_part_path(r, f);
		int ok = path && lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == r->files.file_size[f];
		free(path);
		if (!ok)
			return 0;
	}
	return 1;
}

/* Rank 0: creates file f of the partial output and reserves its blocks; a posix_fallocate error, or 0. */
static int reserve_part(struct run *r, int f, const char *dir)
{
	char *path = output_part_path(r, f);
	int fd = path ? open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666) : -1;
	free(path);
	if (fd < 0)
		return mq_fail(&r->err, MQ_ERR_OUTPUT, "cannot create the output in folder '%s': %s", dir,
			       strerror(errno)), 0;
	uint64_t size = r->files.file_size[f];
	int rc = size && (f > 0 || !output_check_space(r, fd)) ? posix_fallocate(fd, 0, (off_t)size) : 0;
	close(fd);
	return rc;
}

/*
 * Rank 0: the partial output beside the output (".NAME.tmp") and its journal.
 * An interrupted run's pair is resumed when the journal's identity matches;
 * otherwise it is discarded and a new partial file is created and reserved.
 */
/* Rank 0: the partial output's and the journal's paths beside the output (".NAME.tmp"); *dir its folder. */
static int partial_paths(struct run *r, char **dir)
{
	char *copy = strdup(r->output), *copy2 = strdup(r->output);
	*dir = NULL;
	if (copy && copy2) {
		const char *d = dirname(copy), *base = basename(copy2);
		size_t n = strlen(d) + strlen(base) + 32;
		r->tmp = malloc(n);
		r->journal_path = malloc(n + 8);
		*dir = strdup(d);
		if (r->tmp && r->journal_path) {
			snprintf(r->tmp, n, "%s/.%s.tmp", d, base);
			snprintf(r->journal_path, n + 8, "%s.journal", r->tmp);
		}
	}
	free(copy);
	free(copy2);
	if (!*dir || !r->tmp || !r->journal_path)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	return 0;
}

/* Rank 0: one run at a time per output: the journal's lock, held until the run ends. */
static int lock_journal(struct run *r)
{
	r->lock_fd = open(r->journal_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (r->lock_fd >= 0 && flock(r->lock_fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
		close(r->lock_fd);
		r->lock_fd = -1;
		mq_fail(&r->err, MQ_ERR_OUTPUT, "another mq-dist run is writing '%s' (its journal '%s' is locked)", r->output,
			r->journal_path);
		free(r->tmp); /* not ours: the failure path must leave them alone */
		free(r->journal_path);
		r->tmp = r->journal_path = NULL;
	}
	return r->err.code;
}

/* Rank 0: creates and reserves the partial output's files (a folder's first); the errors name the output. */
static int reserve_parts(struct run *r, const char *dir)
{
	if (r->writer->folder && mkdir(r->tmp, 0777) != 0 && errno != EEXIST)
		return mq_fail(&r->err, MQ_ERR_OUTPUT, "cannot create the output in folder '%s': %s", dir, strerror(errno));
	output_guard_tmp(r->tmp, r->journal_path);
	output_guard_parts(r);
	int rc = 0;
	for (int f = 0; f < r->files.n_files && !rc && !r->err.code; f++)
		rc = reserve_part(r, f, dir);
	char need[32];
	if (rc == ENOSPC || rc == EDQUOT) /* rc stays 0 when output_check_space failed: it said why */
		mq_fail(&r->err, MQ_ERR_OUTPUT, "'%s': no space left on device for the %s (%llu-byte) output", r->output,
			mq_report_size(r->out_size, need, sizeof(need)), (unsigned long long)r->out_size);
	else if (rc && rc != EOPNOTSUPP && rc != EINVAL)
		mq_fail(&r->err, MQ_ERR_OUTPUT, "'%s': cannot reserve %llu bytes: %s", r->output,
			(unsigned long long)r->out_size, strerror(rc));
	return r->err.code;
}

int resume_open_partial(struct run *r)
{
	char *dir = NULL;
	if (partial_paths(r, &dir)) {
		free(dir);
		return r->err.code;
	}
	compute_identity(r);
	int had_journal = access(r->journal_path, F_OK) == 0;
	if (lock_journal(r)) {
		free(dir);
		return r->err.code;
	}
	struct stat st;
	struct mq_journal_load jl;
	int had = lstat(r->tmp, &st) == 0;
	int resume = had && partial_matches(r) &&
		     mq_journal_read(r->journal_path, r->identity, (uint64_t)r->plan.n_units, &jl) == 0;
	if (resume) {
		resume_units(r, &jl);
		r->resuming = 1;
	} else {
		if (had || had_journal)
			mq_info("discarding '%s' (left by a run with other inputs or options, or without a journal)\n", r->tmp);
		output_remove_partial(r->tmp); /* the journal is truncated in place, keeping its lock */
	}
	if (!reserve_parts(r, dir))
		r->journal_fd = mq_journal_start(r->journal_path, r->identity, (uint64_t)r->plan.n_units,
						 resume ? jl.valid_len : 0, &r->err);
	free(dir);
	for (int u = 0; r->journal_fd >= 0 && u < r->plan.n_units; u++)
		if (r->done[u])
			mq_units_journaled = 1; /* an earlier run's units, kept in the journal */
	if (resume)
		mq_journal_load_release(&jl);
	if (!r->err.code)
		run_test_stop_at(0);
	return r->err.code;
}

/* Rank 0: the journaled chunk digests of the resumed units, in unit order (NUL-terminated blob). */
static char *resumed_digests(struct run *r, size_t *len)
{
	const struct mq_plan *p = &r->plan;
	struct mq_buf b = MQ_BUF_INIT;
	for (int u = 0; u < p->n_units; u++)
		if (r->done[u]) {
			const struct unit_record *rec = r->pending[u];
			mq_buf_add(&b, rec + 1, rec->n_digests * (size_t)MQ_SHA256_LEN);
		}
	mq_buf_add(&b, "", 1);
	if (!mq_buf_ok(&b))
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	return mq_buf_detach(&b, len);
}

/* Every rank: re-hashes the resumed units the plan gives it; bad[u] = 1 where a source changed. */
static void rehash_resumed(struct run *r, const char *dig, size_t len, unsigned char *bad)
{
	const struct mq_plan *p = &r->plan;
	double t0 = mq_comm_time();
	size_t max = 0;
	for (int u = 0; u < p->n_units; u++)
		max = (size_t)(p->units[u].chunk_end - p->units[u].chunk_begin) > max
			      ? (size_t)(p->units[u].chunk_end - p->units[u].chunk_begin) : max;
	uint8_t *mine = malloc(max * MQ_SHA256_LEN + 1);
	free(r->arena);
	r->arena = malloc((size_t)p->arena_bytes + UNIT_ARENA_SLACK);
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
			if (unit_hash(r, &p->units[u], &ch) == 0)
				bad[u] = memcmp(mine, dig + at, n) != 0;
			if (ch.open)
				mq_hasher_release(&ch.h);
		}
		at += n;
	}
	free(mine);
	r->stats[MQ_STAT_T_HASH] += mq_comm_time() - t0;
}

/* Every rank: the units whose source changed are redone; rank 0 takes the others' records and says so. */
static void replay_resumed(struct run *r, const unsigned char *all_bad)
{
	const struct mq_plan *p = &r->plan;
	int kept = 0, changed = 0;
	for (int u = 0; u < p->n_units; u++) {
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
			collect_take(r, r->pending[u], r->pending_len[u]);
			r->replaying = 0;
		}
	}
	if (r->rank == 0) {
		mq_info("resuming an interrupted run: %d of %d work units verified in '%s'\n", kept, p->n_units, r->tmp);
		if (changed)
			mq_info("  %d more were journaled, but their source data changed since: redoing them\n", changed);
	}
}

/*
 * Every rank: the resumed units' sources must still be what the journal
 * hashed. Each rank re-hashes the sources of the resumed units the plan gives
 * it (the journaled chunk digests come from rank 0); a unit whose source
 * changed is redone. Then rank 0 takes the records of the units that stay done.
 * Without checksums (--no-checksum) the journal's identity (sizes,
 * modification times, headers) is all there is to go by.
 */
int resume_confirm(struct run *r)
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
	if (!r->opt->no_checksum && r->rank == 0 && bad)
		dig = resumed_digests(r, &len);
	if (!mq_comm_agree(r->comm, &r->err) && !r->opt->no_checksum &&
	    !mq_comm_bcast_blob(r->comm, &dig, &len, &r->err))
		rehash_resumed(r, dig, len, bad);
	free(dig);
	if (!mq_comm_agree(r->comm, &r->err))
		mq_comm_allreduce_max_bytes(r->comm, bad, all_bad, (size_t)p->n_units, &r->err);
	if (!r->err.code)
		replay_resumed(r, all_bad);
	free(bad);
	free(all_bad);
	return mq_comm_agree(r->comm, &r->err);
}

/* After SIGUSR1: the finished units' bytes reach the disk and the journal stays, for a resume. */
void resume_keep_partial(struct run *r)
{
	struct mq_error e = r->err; /* the run's error (the interruption) stays */
	output_close_parts(r, 1);
	r->err = e;
	if (r->rank != 0)
		return;
	if (r->journal_fd >= 0) {
		fsync(r->journal_fd);
		close(r->journal_fd);
		r->journal_fd = -1;
	}
	output_guard_tmp(NULL, NULL);
	mq_info("%d of %d work units are finished and journaled in '%s'\n", r->units_taken, r->plan.n_units, r->tmp);
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
int resume_up_to_date(struct run *r, int *yes)
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
		collect_setup(r);
	if (!mq_comm_agree(r->comm, &r->err)) {
		unit_work(r);
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
		collect_release(r);
	free(r->done);
	r->done = NULL;
	r->hash_only = 0;
	r->cancelled = r->cancel_sent = 0;
	if (r->err.code)
		return r->err.code;
	return bcast_flag(r, yes);
}

void resume_release(struct run *r)
{
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
}
