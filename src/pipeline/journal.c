#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounds.h"
#include "crc.h"

#define MAGIC "mq-dist journal 1\n"
#define MAGIC_LEN (sizeof(MAGIC) - 1)
#define HEADER_LEN (MAGIC_LEN + MQ_SHA256_LEN + 8)

static void header(uint8_t *h, const uint8_t id[MQ_SHA256_LEN], uint64_t n_units)
{
	memcpy(h, MAGIC, MAGIC_LEN);
	memcpy(h + MAGIC_LEN, id, MQ_SHA256_LEN);
	memcpy(h + MAGIC_LEN + MQ_SHA256_LEN, &n_units, 8);
}

int mq_journal_read(const char *path, const uint8_t id[MQ_SHA256_LEN], uint64_t n_units,
		    struct mq_journal_load *out)
{
	memset(out, 0, sizeof(*out));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < HEADER_LEN || (uint64_t)st.st_size > MQ_JOURNAL_MAX_BYTES) {
		close(fd);
		return -1;
	}
	size_t size = (size_t)st.st_size;
	out->data = malloc(size + 1);
	size_t got = 0;
	while (out->data && got < size) {
		ssize_t k = read(fd, out->data + got, size - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(fd);
	uint8_t h[HEADER_LEN];
	header(h, id, n_units);
	if (!out->data || got != size || memcmp(out->data, h, HEADER_LEN) != 0) {
		mq_journal_load_release(out);
		return -1;
	}
	size_t pos = HEADER_LEN, cap = 0;
	out->valid_len = pos;
	while (pos + 8 <= size) {
		uint32_t len, crc;
		memcpy(&len, out->data + pos, 4);
		if (len > size - pos - 8)
			break;
		memcpy(&crc, out->data + pos + 4 + len, 4);
		if (mq_crc32(0, out->data + pos + 4, len) != crc)
			break;
		if ((size_t)out->n == cap) {
			cap = cap ? 2 * cap : 256;
			struct mq_journal_entry *e = realloc(out->entries, cap * sizeof(*e));
			if (!e)
				break;
			out->entries = e;
		}
		out->entries[out->n++] = (struct mq_journal_entry){ out->data + pos + 4, len };
		pos += 8 + len;
		out->valid_len = pos;
	}
	return 0;
}

void mq_journal_load_release(struct mq_journal_load *l)
{
	free(l->data);
	free(l->entries);
	memset(l, 0, sizeof(*l));
}

int mq_journal_start(const char *path, const uint8_t id[MQ_SHA256_LEN], uint64_t n_units, uint64_t keep_len,
		     struct mq_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (keep_len ? 0 : O_TRUNC), 0644);
	if (fd < 0) {
		mq_fail(err, MQ_ERR_OUTPUT, "cannot create the journal '%s': %s", path, strerror(errno));
		return -1;
	}
	uint8_t h[HEADER_LEN];
	header(h, id, n_units);
	int rc = keep_len ? ftruncate(fd, (off_t)keep_len) : (write(fd, h, HEADER_LEN) == (ssize_t)HEADER_LEN ? 0 : -1);
	if (rc == 0 && lseek(fd, 0, SEEK_END) < 0)
		rc = -1;
	if (rc) {
		mq_fail(err, MQ_ERR_OUTPUT, "cannot write the journal '%s': %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int mq_journal_append(int fd, const void *rec, uint32_t len)
{
	char *buf = malloc((size_t)len + 8);
	if (!buf)
		return -1;
	uint32_t crc = mq_crc32(0, rec, len);
	memcpy(buf, &len, 4);
	memcpy(buf + 4, rec, len);
	memcpy(buf + 4 + len, &crc, 4);
	size_t n = (size_t)len + 8, done = 0;
	while (done < n) {
		ssize_t k = write(fd, buf + done, n - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		done += (size_t)k;
	}
	free(buf);
	return done == n ? 0 : -1;
}
