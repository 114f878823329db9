/*
 * hf: copying a model folder's files (hf.h).
 */
#include "hf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_CHUNK (1u << 20)

/* What a copy is doing, for its messages. */
struct copy {
	const char *src, *dst;
	char *tmp;   /* the hidden file beside dst, while it exists */
	struct mq_error *err;
};

static int copy_fail(const struct copy *c, int code, const char *what, int e)
{
	return mq_fail(c->err, code, "cannot copy '%s' to '%s': %s: %s", c->src, c->dst, what,
		       e == ENOSPC ? "the disk is full" : strerror(e));
}

/* The folders above path (up to its last '/'), each made unless there. */
static int make_parents(const struct copy *c, const char *path)
{
	char *p = strdup(path);
	if (!p)
		return mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
	int rc = 0;
	for (char *s = strchr(p + 1, '/'); s && !rc; s = strchr(s + 1, '/')) {
		if (s[-1] == '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0777) && errno != EEXIST)
			rc = mq_fail(c->err, MQ_ERR_OUTPUT, "cannot copy '%s' to '%s': cannot make the folder '%s': %s",
				     c->src, c->dst, p, strerror(errno));
		*s = '/';
	}
	free(p);
	return rc;
}

/* A new hidden file beside dst, open for writing (c->tmp names it). */
static int open_tmp(struct copy *c, int *fd)
{
	const char *slash = strrchr(c->dst, '/');
	size_t dir_len = slash ? (size_t)(slash - c->dst) + 1 : 0;
	const char *base = c->dst + dir_len;
	size_t n = dir_len + strlen(base) + 16;
	if (!(c->tmp = malloc(n)))
		return mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
	/* A base name near NAME_MAX is cut short in the temporary name. */
	snprintf(c->tmp, n, "%.*s.%.200s.mq-XXXXXX", (int)dir_len, c->dst, base);
	*fd = mkstemp(c->tmp);
	if (*fd < 0) {
		int e = errno;
		free(c->tmp);
		c->tmp = NULL;
		return copy_fail(c, MQ_ERR_OUTPUT, "cannot create a file there", e);
	}
	return 0;
}

/* Every byte of in to out. */
static int copy_bytes(const struct copy *c, int in, int out)
{
	char *buf = malloc(COPY_CHUNK);
	if (!buf)
		return mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
	int rc = 0;
	for (;;) {
		ssize_t k = read(in, buf, COPY_CHUNK);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k < 0)
				rc = copy_fail(c, MQ_ERR_INPUT, "reading", errno);
			break;
		}
		for (ssize_t off = 0; off < k && !rc;) {
			ssize_t w = write(out, buf + off, (size_t)(k - off));
			if (w < 0 && errno != EINTR)
				rc = copy_fail(c, MQ_ERR_OUTPUT, "writing", errno);
			off += w > 0 ? w : 0;
		}
		if (rc)
			break;
	}
	free(buf);
	return rc;
}

/* dst's folder on disk (after the rename). */
static int sync_parent(const struct copy *c)
{
	const char *slash = strrchr(c->dst, '/');
	char *dir = slash ? strndup(c->dst, slash == c->dst ? 1 : (size_t)(slash - c->dst)) : strdup(".");
	if (!dir)
		return mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	if (fd < 0 || fsync(fd))
		rc = copy_fail(c, MQ_ERR_OUTPUT, "syncing its folder", errno);
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

/* The temporary file written from in (whose status is st), then renamed to dst. */
static int write_copy(struct copy *c, int in, const struct stat *st, unsigned flags)
{
	int out = -1;
	int rc = make_parents(c, c->dst);
	if (!rc)
		rc = open_tmp(c, &out);
	if (!rc && fchmod(out, st->st_mode & 0777))
		rc = copy_fail(c, MQ_ERR_OUTPUT, "setting its permissions", errno);
	if (!rc)
		rc = copy_bytes(c, in, out);
	if (!rc && (flags & MQ_HF_COPY_FSYNC) && fsync(out))
		rc = copy_fail(c, MQ_ERR_OUTPUT, "syncing", errno);
	if (out >= 0 && close(out) && !rc)
		rc = copy_fail(c, MQ_ERR_OUTPUT, "closing", errno);
	if (!rc && rename(c->tmp, c->dst))
		rc = copy_fail(c, MQ_ERR_OUTPUT, "renaming the copy into place", errno);
	if (rc && c->tmp)
		unlink(c->tmp);
	if (!rc && (flags & MQ_HF_COPY_FSYNC))
		rc = sync_parent(c);
	return rc;
}

int mq_hf_copy_file(const char *src, const char *dst, unsigned flags, struct mq_error *err)
{
	struct copy c = { src, dst, NULL, err };
	int in = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK); // a FIFO must not block the open
	if (in < 0)
		return copy_fail(&c, MQ_ERR_INPUT, "cannot open it", errno);
	struct stat st;
	int rc = 0;
	if (fstat(in, &st))
		rc = copy_fail(&c, MQ_ERR_INPUT, "cannot read it", errno);
	else if (!S_ISREG(st.st_mode))
		rc = mq_fail(err, MQ_ERR_INPUT, "cannot copy '%s' to '%s': it is not a regular file", src, dst);
	else
		rc = write_copy(&c, in, &st, flags);
	close(in);
	free(c.tmp);
	return rc;
}

/* The existing part of a path: its first cut bytes ("." for none, "/" for the root alone). */
static char *head_of(const char *path, size_t cut)
{
	if (cut == 0)
		return strdup(path[0] == '/' ? "/" : ".");
	return strndup(path, cut);
}

/* real with the components of tail (each after a '/', or tail whole) applied as written, into a new string. */
static char *apply_tail(const char *real, const char *tail)
{
	size_t n = strlen(real);
	char *out = malloc(n + strlen(tail) + 2);
	if (!out)
		return NULL;
	memcpy(out, real, n + 1);
	for (const char *s = tail; *s;) {
		while (*s == '/')
			s++;
		size_t k = strcspn(s, "/");
		if (k == 2 && memcmp(s, "..", 2) == 0) {
			char *slash = strrchr(out, '/');
			if (slash)
				slash[slash == out ? 1 : 0] = '\0';
		} else if (k && !(k == 1 && s[0] == '.')) {
			size_t len = strlen(out);
			if (len > 1)
				out[len++] = '/';
			memcpy(out + len, s, k);
			out[len + k] = '\0';
		}
		s += k;
	}
	return out;
}

/* path resolved (as hf.h says), malloc'd, or NULL with errno set. */
static char *resolve(const char *path)
{
	size_t cut = strlen(path);
	if (!cut) {
		errno = ENOENT;
		return NULL;
	}
	for (;;) {
		char *head = head_of(path, cut);
		if (!head)
			return NULL;
		char *real = realpath(head, NULL);
		int e = errno;
		struct stat st;
		int dangling = !real && e == ENOENT && lstat(head, &st) == 0;
		free(head);
		if (real) {
			char *out = apply_tail(real, path + cut);
			free(real);
			return out;
		}
		if (e != ENOENT || dangling || cut == 0) {
			errno = e;
			return NULL;
		}
		while (cut > 1 && path[cut - 1] == '/')
			cut--;
		while (cut > 0 && path[cut - 1] != '/')
			cut--;
		if (cut > 1)
			cut--; /* the '/' before the component goes with the tail */
	}
}

int mq_hf_path_inside(const char *dir, const char *path)
{
	char *d = realpath(dir, NULL);
	if (!d)
		return -1;
	char *p = resolve(path);
	int inside = -1;
	if (p) {
		size_t n = strlen(d);
		inside = strcmp(d, "/") == 0 || (strncmp(p, d, n) == 0 && (p[n] == '\0' || p[n] == '/'));
	}
	free(d);
	free(p);
	return inside;
}
