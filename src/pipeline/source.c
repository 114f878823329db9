#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fileio.h"
#include "gather.h"

/*
 * One process runs one quantization at a time, and a signal handler has no
 * argument: the window and the guard are this file's.
 */
static struct {
	int file;                  /* the window's file, -1 if none */
	unsigned char *base;       /* its mapped bytes [begin, begin + len) */
	uint64_t begin, len;
	int mode;                  /* 0: not read yet; 1: map; 2: pread (MQ_READ=pread) */
	unsigned char *unmappable; /* per input file: mmap refused it, so it is read */
	int handler;               /* on_bus is installed (old: what it replaced) */
	struct sigaction old;
	const struct mq_tensor *t; /* the tensor of the latest view, for the error */
	int adv_fd;                /* read-ahead asked for [.., adv_end) of adv_fd, -1 if none */
	uint64_t adv_end;
} S = { .file = -1, .adv_fd = -1 };

static sigjmp_buf bus_env;
static volatile sig_atomic_t bus_armed;
static unsigned char *volatile bus_addr;

static void on_bus(int sig, siginfo_t *si, void *ctx)
{
	unsigned char *a = si->si_addr;
	(void)sig;
	(void)ctx;
	if (bus_armed && S.base && a >= S.base && a < S.base + S.len) {
		bus_addr = a;
		bus_armed = 0;
		siglongjmp(bus_env, 1);
	}
	sigaction(SIGBUS, &S.old, NULL); /* not a page of the window: the faulting access retries under it */
}

static int input_fd(struct run *r, int file)
{
	if (r->fds[file] < 0) {
		const char *path = r->man.files[file].path;
		r->fds[file] = open(path, O_RDONLY | O_CLOEXEC);
		if (r->fds[file] < 0)
			return mq_fail(&r->err, MQ_ERR_INPUT, "cannot open '%s': %s", path, strerror(errno));
		(void)posix_fadvise(r->fds[file], 0, 0, POSIX_FADV_SEQUENTIAL); /* a hint: a larger read-ahead */
	}
	return r->fds[file];
}

/*
 * cachestat(2) (Linux 6.5): how many pages of a file range the page cache
 * holds, counted folio by folio, without mapping the range. Declared here
 * since the C library and kernel headers of older systems lack it; the
 * number is the same on every architecture that has the call.
 */
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#include <sys/syscall.h>
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct cache_range {
	uint64_t off, len;
};
struct cache_stat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};
#endif

/*
 * 1 if the page cache holds every page of [from, end) of fd (a file of
 * `size` bytes), 0 if not or if it cannot tell: an older kernel has no
 * cachestat (then it is not asked again), and a newer one refuses it on a
 * file this process may neither write nor owns (asked again for the next
 * file of a job: one call per 8 MiB window costs nothing to speak of).
 */
static int resident(int fd, uint64_t from, uint64_t end, uint64_t size)
{
	static int refused;
	end = end < size ? end : size;
	if (from >= end)
		return 1;
#ifdef __NR_cachestat
	const long page = sysconf(_SC_PAGESIZE);
	if (refused || page <= 0)
		return 0;
	const uint64_t pg = (uint64_t)page, first = from / pg, pages = (end + pg - 1) / pg - first;
	struct cache_range range = { first * pg, pages * pg };
	struct cache_stat cs;
	if (syscall(__NR_cachestat, fd, &range, &cs, 0) != 0) {
		refused = errno == ENOSYS;
		return 0;
	}
	return cs.nr_cache >= pages;
#else
	(void)fd;
	(void)refused;
	return 0;
#endif
}

/*
 * Each access that crosses a window boundary b asks for the two windows after
 * it, [b, b + 2 windows) (WILLNEED starts the disk reads), less what the last
 * request already asked for: reading on in order, each window is asked for
 * once. A request costs a walk of the page cache, page by page, even where
 * the pages are there (about 20 ms per GB here, a tenth of a hot run), so a
 * range the page cache already holds whole (resident(): one pass over its
 * folios) is not asked for at all. The bytes asked for are counted.
 */
static void read_ahead(struct run *r, int f, int fd, uint64_t pos, size_t n)
{
	for (uint64_t b = (pos / SOURCE_WINDOW + 1) * SOURCE_WINDOW; b <= pos + n; b += SOURCE_WINDOW) {
		const uint64_t end = b + 2 * (uint64_t)SOURCE_WINDOW;
		uint64_t from = b;
		if (fd == S.adv_fd && S.adv_end > b && S.adv_end <= end)
			from = S.adv_end;
		if (from < end && !resident(fd, from, end, r->man.files[f].size)) {
			(void)posix_fadvise(fd, (off_t)from, (off_t)(end - from), POSIX_FADV_WILLNEED);
			r->stats[MQ_STAT_READ_AHEAD] += (double)(end - from);
		}
		S.adv_fd = fd;
		S.adv_end = end;
	}
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
	size_t done;
	read_ahead(r, rd->t->file, rd->fd, pos, n);
	int rc = mq_pread_full(rd->fd, buf, n, pos, &done);
	r->stats[MQ_STAT_BYTES_READ] += (double)done;
	if (rc) /* where the bytes stopped */
		return mq_fail(&r->err, MQ_ERR_INPUT, "'%s': tensor '%s': cannot read bytes at %llu: %s",
			       r->man.files[rd->t->file].path, rd->t->name, (unsigned long long)(pos + done),
			       errno == 0 ? "unexpected end of file (was the file truncated?)" : strerror(errno));
	return 0;
}

int source_read(struct run *r, const struct mq_tensor *t, uint64_t off, void *buf, size_t n)
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

static void unmap_window(void)
{
	if (S.base)
		munmap(S.base, (size_t)S.len);
	S.base = NULL;
	S.file = -1;
}

/* Maps the window of file f that holds [pos, pos + n), if it can; 0 if the range is to be read instead. */
static int map_window(struct run *r, int f, int fd, uint64_t pos, size_t n)
{
	const uint64_t size = r->man.files[f].size;
	if (pos + n > size) /* the manifest's checks make this rare: let pread say what is wrong */
		return 0;
	if (!S.handler) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_bus;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, &S.old) != 0)
			return 0;
		S.handler = 1;
	}
	if (!S.unmappable) {
		S.unmappable = calloc((size_t)r->man.n_files, 1);
		if (!S.unmappable)
			return 0;
	}
	unmap_window();
	uint64_t begin = pos / SOURCE_WINDOW * SOURCE_WINDOW, end = begin + SOURCE_WINDOW;
	end = end > pos + n ? end : pos + n;
	end = end < size ? end : size;
	void *p = mmap(NULL, (size_t)(end - begin), PROT_READ, MAP_SHARED, fd, (off_t)begin);
	if (p == MAP_FAILED) { /* a file system without mmap: this file is read from now on */
		S.unmappable[f] = 1;
		return 0;
	}
	S.base = p;
	S.begin = begin;
	S.len = end - begin;
	S.file = f;
	return 1;
}

int source_view(struct run *r, const struct mq_tensor *t, uint64_t off, size_t n, void *buf, const void **p)
{
	if (!S.mode) {
		const char *v = getenv("MQ_READ");
		S.mode = v && strcmp(v, "pread") == 0 ? 2 : 1;
	}
	const uint64_t pos = t->offset + off;
	const int f = t->file;
	if (S.mode == 1 && t->contiguous && n && pos % mq_dtype_size(t->dtype) == 0 && !(S.unmappable && S.unmappable[f])) {
		double t0 = mq_comm_time();
		int fd = input_fd(r, f);
		if (fd < 0)
			return r->err.code;
		if ((S.file == f && pos >= S.begin && pos + n <= S.begin + S.len) || map_window(r, f, fd, pos, n)) {
			read_ahead(r, f, fd, pos, n);
			S.t = t;
			*p = S.base + (pos - S.begin);
			r->stats[MQ_STAT_BYTES_READ] += (double)n;
			r->stats[MQ_STAT_T_READ] += mq_comm_time() - t0;
			return 0;
		}
	}
	*p = buf;
	return source_read(r, t, off, buf, n);
}

int source_guarded(struct run *r, int (*fn)(struct run *r, void *arg), void *arg)
{
	if (sigsetjmp(bus_env, 1)) { /* a page of the window is gone: the file shrank */
		const uint64_t at = S.begin + (uint64_t)(bus_addr - S.base);
		const struct mq_tensor *t = S.t;
		unmap_window();
		return mq_fail(&r->err, MQ_ERR_INPUT,
			"'%s': tensor '%s': cannot read bytes at %llu: the file is shorter than when the run began (was it truncated or replaced during the run?)",
			r->man.files[t->file].path, t->name, (unsigned long long)at);
	}
	bus_armed = 1;
	int rc = fn(r, arg);
	bus_armed = 0;
	return rc;
}

void source_release(struct run *r)
{
	unmap_window();
	if (S.handler)
		sigaction(SIGBUS, &S.old, NULL);
	S.handler = 0;
	free(S.unmappable);
	S.unmappable = NULL;
	S.t = NULL;
	S.adv_fd = -1; /* the fds close: a number may come back for another file */
	if (r->fds)
		for (int f = 0; f < r->man.n_files; f++)
			if (r->fds[f] >= 0)
				close(r->fds[f]);
	free(r->fds);
	r->fds = NULL;
}
