#define _GNU_SOURCE /* nftw, renameat2 */
#include "output.h"

#include <errno.h>
#include <ftw.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "outmeta.h"
#include "report.h"

volatile sig_atomic_t mq_stop_requested;
volatile sig_atomic_t mq_units_journaled;

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
static char parts_on_signal[1 << 16]; /* a partial folder's files: NUL-terminated paths, an empty one last */
static const int cleanup_signals[] = { SIGINT, SIGTERM, SIGHUP };

static void on_fatal_signal(int sig)
{
	if (sig != SIGTERM || !mq_units_journaled) {
		for (const char *p = parts_on_signal; *p; p += strlen(p) + 1)
			unlink(p);
		if (tmp_on_signal[0] && unlink(tmp_on_signal) != 0)
			rmdir(tmp_on_signal); /* a partial folder, emptied above */
		if (journal_on_signal[0])
			unlink(journal_on_signal);
	} else if (kept_on_signal[0]) {
		ssize_t w = write(STDERR_FILENO, kept_on_signal, strlen(kept_on_signal));
		(void)w; /* nothing to be done about a failed write here */
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

void output_guard_tmp(const char *path, const char *journal)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = path ? on_fatal_signal : SIG_DFL;
	sigemptyset(&sa.sa_mask);
	mq_units_journaled = 0;
	/* nothing of an earlier model's stays, also when these paths do not fit */
	tmp_on_signal[0] = journal_on_signal[0] = kept_on_signal[0] = parts_on_signal[0] = '\0';
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

void output_guard_parts(const struct run *r)
{
	size_t at = 0;
	parts_on_signal[0] = '\0';
	for (int f = 0; r->writer->folder && f < r->files.n_files; f++) {
		char *p = output_part_path(r, f);
		size_t n = p ? strlen(p) + 1 : 0;
		if (p && at + n + 1 <= sizeof(parts_on_signal)) {
			memcpy(parts_on_signal + at, p, n);
			at += n;
			parts_on_signal[at] = '\0';
		}
		free(p);
	}
}

/*
 * SIGUSR1 (what a Slurm script forwards before a time limit or preemption):
 * every rank finishes the unit in hand and starts no other; the partial
 * output and the journal stay for a resume.
 */
static void request_stop(int sig)
{
	(void)sig;
	mq_stop_requested = 1;
}

void output_catch_stop(void)
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

/* A model folder's first shard (its metadata is every shard's), malloc'd; NULL if it has none. */
static char *first_shard(const char *dir)
{
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_addf(&b, "%s/model.safetensors", dir);
	char *path = mq_buf_ok(&b) ? mq_buf_detach(&b, NULL) : NULL;
	if (path && access(path, F_OK) != 0) {
		glob_t g;
		mq_buf_release(&b);
		mq_buf_addf(&b, "%s/model-00001-of-*.safetensors", dir);
		free(path);
		path = mq_buf_ok(&b) && glob(b.data, 0, NULL, &g) == 0 ? (g.gl_pathc ? strdup(g.gl_pathv[0]) : NULL) : NULL;
		if (mq_buf_ok(&b))
			globfree(&g);
	}
	mq_buf_release(&b);
	return path;
}

/*
 * Rank 0, job mode: an existing output written by mq-dist is replaced unless
 * its fingerprint shows it up to date (checked later); any other file needs --force.
 */
static int existing_output(struct run *r)
{
	cJSON *meta = NULL;
	struct mq_error e = { 0 };
	char *file = r->writer->folder ? first_shard(r->output) : strdup(r->output);
	int unreadable = !file || mq_output_metadata(file, &meta, &e) != 0;
	free(file);
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

/*
 * Rank 0, --force onto an existing folder: it is replaced whole, so it must
 * be a model folder mq-dist wrote (a shard with its fingerprint) or empty;
 * any other folder is left to its owner.
 */
static int replaceable_folder(struct run *r)
{
	cJSON *meta = NULL;
	struct mq_error e = { 0 };
	char *file = first_shard(r->output);
	int ours = file && mq_output_metadata(file, &meta, &e) == 0 &&
		   cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "fingerprint")) != NULL;
	free(file);
	cJSON_Delete(meta);
	if (ours || rmdir(r->output) == 0)
		return 0;
	return mq_fail(&r->err, MQ_ERR_OUTPUT,
		"output '%s' is a folder that mq-dist did not write (no shard with its fingerprint); --force replaces model folders of mq-dist only: remove it yourself or choose another -o",
		r->output);
}

/* Rank 0: the folder the output goes in exists and may be written (before any work: a mixed choice reads the weights first). */
int output_check_dir(struct run *r)
{
	const char *out = r->output;
	if (r->opt->dry_run)
		return 0;
	size_t n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		n--;
	while (n > 0 && out[n - 1] != '/')
		n--;
	char *dir = n > 1 ? strndup(out, n - 1) : strdup(n ? "/" : ".");
	if (!dir)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (access(dir, W_OK | X_OK) != 0)
		mq_fail(&r->err, MQ_ERR_OUTPUT, "cannot create the output in folder '%s': %s", dir, strerror(errno));
	free(dir);
	return r->err.code;
}

/* Rank 0: refuse to overwrite the input or, without --force, an existing file. */
int output_check(struct run *r)
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
		if (S_ISDIR(st.st_mode) != (r->writer->folder != 0))
			return mq_fail(&r->err, MQ_ERR_OUTPUT, r->writer->folder
				? "output '%s' exists and is not a folder; remove it or choose another -o"
				: "output '%s' is a folder; give a file name", out);
		if (r->opt->job_mode && !r->opt->dry_run)
			return existing_output(r);
		if (!r->opt->force && !r->opt->dry_run)
			return mq_fail(&r->err, MQ_ERR_OUTPUT, "output '%s' exists; use --force to overwrite it", out);
		if (r->writer->folder && !r->opt->dry_run)
			return replaceable_folder(r);
	}
	return 0;
}

/*
 * Rank 0: the output must fit in the free space of its file system before
 * posix_fallocate reserves it (which glibc emulates by writing every block
 * where the file system cannot allocate, so a hostile size would otherwise
 * run until the disk is full). A resumed partial already holds its blocks.
 */
int output_check_space(struct run *r, int fd)
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

void output_sync_dir(const char *path)
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

/* Where every output tensor goes: after the safetensors header, or in its .pt record. */
int output_place(struct run *r)
{
	const struct mq_plan *p = &r->plan;
	uint64_t reserve = 0;
	if (mq_metadata_reserve(&r->man, p, r->opt, r->writer->meta == MQ_META_OBJECT, &reserve, &r->err) ||
	    r->writer->layout(p->out, p->n_out, reserve, r->opt->max_shard, &r->files, &r->err))
		return r->err.code;
	r->header_len = r->files.meta_reserve;
	r->out_pos = r->files.pos;
	r->out_size = 0;
	for (int f = 0; f < r->files.n_files; f++)
		r->out_size += r->files.file_size[f];
	if (r->out_size < p->bytes_out) /* the plan bounds bytes_out far below 2^64; a broken bound is a bug */
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "the output size overflows");
	return 0;
}

char *output_part_path(const struct run *r, int f)
{
	if (!r->writer->folder)
		return strdup(r->tmp);
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_addf(&b, "%s/%s", r->tmp, r->files.names[f]);
	return mq_buf_ok(&b) ? mq_buf_detach(&b, NULL) : NULL;
}

int output_open_parts(struct run *r)
{
	r->fh = calloc((size_t)r->files.n_files + 1, sizeof(*r->fh));
	if (!r->fh)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int f = 0; f < r->files.n_files && !mq_comm_agree(r->comm, &r->err); f++) {
		char *path = output_part_path(r, f);
		if (!path)
			mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
		else if (!mq_comm_agree(r->comm, &r->err))
			mq_comm_file_open(r->comm, path, &r->fh[f], &r->err);
		free(path);
	}
	return mq_comm_agree(r->comm, &r->err);
}

int output_close_parts(struct run *r, int sync)
{
	for (int f = 0; r->fh && f < r->files.n_files; f++) {
		if (sync && !r->err.code) { /* timed only when it runs: sync_s is exactly 0 with --no-sync */
			double t0 = mq_comm_time();
			mq_comm_file_sync(r->fh[f], &r->err);
			r->stats[MQ_STAT_T_SYNC] += mq_comm_time() - t0;
		}
		struct mq_error e = { 0 };
		mq_comm_file_close(&r->fh[f], r->err.code ? &e : &r->err);
	}
	free(r->fh);
	r->fh = NULL;
	return r->err.code;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int output_remove_partial(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path);
	return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int output_commit(struct run *r)
{
	if (r->writer->folder && !r->opt->no_sync) { /* the partial folder's own entries on disk first */
		int fd = open(r->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) != 0) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			return mq_fail(&r->err, MQ_ERR_OUTPUT, "cannot flush the folder '%s': %s", r->tmp, strerror(e));
		}
		close(fd);
	}
	if (rename(r->tmp, r->output) == 0)
		return 0;
	/* an existing folder (--force, or a stale job output): swapped with the new one at once, then removed */
	if (r->writer->folder && (errno == EEXIST || errno == ENOTEMPTY) &&
	    renameat2(AT_FDCWD, r->tmp, AT_FDCWD, r->output, RENAME_EXCHANGE) == 0) {
		output_remove_partial(r->tmp);
		return 0;
	}
	return mq_fail(&r->err, MQ_ERR_OUTPUT, "cannot rename '%s' to '%s': %s", r->tmp, r->output, strerror(errno));
}

void output_release(struct run *r)
{
	output_close_parts(r, 0); /* already closed on every path that opened them */
	if (r->writer)
		r->writer->release(&r->files);
	free(r->output);
	free(r->tmp);
}
