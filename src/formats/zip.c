#include "zip.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define SIG_END64 0x06064b50u
#define SIG_LOCATOR 0x07064b50u
#define LOCAL_FIXED 30u
#define CENTRAL_FIXED 46u
#define END_LEN 22u
#define END64_LEN 56u
#define LOCATOR_LEN 20u
#define ZIP32_MAX 0xffffffffull
#define DOS_DATE_1980 0x0021u /* 1980-01-01: the earliest date a ZIP can hold */

static int size_is_large(uint64_t size)
{
	return size >= ZIP32_MAX;
}

/* Local header bytes of a record: fixed part, name, zip64 extra (sizes), then the alignment field. */
static uint64_t local_header_len(const char *name, uint64_t size, uint64_t offset)
{
	uint64_t start = offset + LOCAL_FIXED + strlen(name) + 4 + (size_is_large(size) ? 20 : 0);
	uint64_t pad = (MQ_ZIP_ALIGN - start % MQ_ZIP_ALIGN) % MQ_ZIP_ALIGN;
	return start + pad - offset;
}

static uint64_t central_len(const struct mq_zip_entry *e)
{
	uint64_t extra = (size_is_large(e->size) ? 16 : 0) + (e->header_offset >= ZIP32_MAX ? 8 : 0);
	return CENTRAL_FIXED + strlen(e->name) + (extra ? 4 + extra : 0);
}

void mq_zip_layout(struct mq_zip_entry *e, int n, uint64_t *directory_offset, uint64_t *file_size)
{
	uint64_t off = 0, dir = 0;
	for (int i = 0; i < n; i++) {
		e[i].header_offset = off;
		e[i].data_offset = off + local_header_len(e[i].name, e[i].size, off);
		e[i].method = 0;
		off = e[i].data_offset + e[i].size;
	}
	for (int i = 0; i < n; i++)
		dir += central_len(&e[i]);
	*directory_offset = off;
	*file_size = off + dir + END64_LEN + LOCATOR_LEN + END_LEN;
}

static void u16(struct mq_buf *b, uint64_t v)
{
	unsigned char c[2] = { (unsigned char)v, (unsigned char)(v >> 8) };
	mq_buf_add(b, c, 2);
}

static void u32(struct mq_buf *b, uint64_t v)
{
	unsigned char c[4];
	for (int i = 0; i < 4; i++)
		c[i] = (unsigned char)(v >> (8 * i));
	mq_buf_add(b, c, 4);
}

static void u64(struct mq_buf *b, uint64_t v)
{
	u32(b, v & ZIP32_MAX);
	u32(b, v >> 32);
}

static uint64_t clip32(uint64_t v)
{
	return v >= ZIP32_MAX ? ZIP32_MAX : v;
}

void mq_zip_local_header(const struct mq_zip_entry *e, struct mq_buf *b)
{
	size_t name_len = strlen(e->name);
	int large = size_is_large(e->size);
	uint64_t len = e->data_offset - e->header_offset;
	uint64_t pad = len - LOCAL_FIXED - name_len - 4 - (large ? 20 : 0);
	u32(b, SIG_LOCAL);
	u16(b, large ? 45 : 20); /* version needed: 4.5 for zip64 */
	u16(b, 0);               /* flags */
	u16(b, 0);               /* stored */
	u16(b, 0);               /* time */
	u16(b, DOS_DATE_1980);
	u32(b, e->crc);
	u32(b, clip32(e->size));
	u32(b, clip32(e->size));
	u16(b, name_len);
	u16(b, len - LOCAL_FIXED - name_len);
	mq_buf_add(b, e->name, name_len);
	if (large) {
		u16(b, 0x0001);
		u16(b, 16);
		u64(b, e->size);
		u64(b, e->size);
	}
	mq_buf_add(b, "FB", 2);
	u16(b, pad);
	for (uint64_t i = 0; i < pad; i++)
		mq_buf_add(b, "Z", 1);
}

void mq_zip_directory(const struct mq_zip_entry *e, int n, uint64_t directory_offset, struct mq_buf *b)
{
	size_t start = b->len;
	for (int i = 0; i < n; i++) {
		size_t name_len = strlen(e[i].name);
		int large = size_is_large(e[i].size), far = e[i].header_offset >= ZIP32_MAX;
		uint64_t extra = (large ? 16 : 0) + (far ? 8 : 0);
		u32(b, SIG_CENTRAL);
		u16(b, (3u << 8) | 45); /* made by: Unix, 4.5 */
		u16(b, large || far ? 45 : 20);
		u16(b, 0);
		u16(b, 0);
		u16(b, 0);
		u16(b, DOS_DATE_1980);
		u32(b, e[i].crc);
		u32(b, clip32(e[i].size));
		u32(b, clip32(e[i].size));
		u16(b, name_len);
		u16(b, extra ? 4 + extra : 0);
		u16(b, 0);                 /* comment */
		u16(b, 0);                 /* disk */
		u16(b, 0);                 /* internal attributes */
		u32(b, 0100644u << 16);    /* external: a regular file, rw-r--r-- */
		u32(b, clip32(e[i].header_offset));
		mq_buf_add(b, e[i].name, name_len);
		if (extra) { /* only the fields that overflow, in this order */
			u16(b, 0x0001);
			u16(b, extra);
			if (large) {
				u64(b, e[i].size);
				u64(b, e[i].size);
			}
			if (far)
				u64(b, e[i].header_offset);
		}
	}
	uint64_t dir_len = b->len - start, end64 = directory_offset + dir_len;
	u32(b, SIG_END64);
	u64(b, END64_LEN - 12);
	u16(b, (3u << 8) | 45);
	u16(b, 45);
	u32(b, 0);
	u32(b, 0);
	u64(b, (uint64_t)n);
	u64(b, (uint64_t)n);
	u64(b, dir_len);
	u64(b, directory_offset);
	u32(b, SIG_LOCATOR);
	u32(b, 0);
	u64(b, end64);
	u32(b, 1);
	u32(b, SIG_END);
	u16(b, 0);
	u16(b, 0);
	u16(b, n > 0xffff ? 0xffff : (uint64_t)n);
	u16(b, n > 0xffff ? 0xffff : (uint64_t)n);
	u32(b, clip32(dir_len));
	u32(b, clip32(directory_offset));
	u16(b, 0);
}

/* ---- reader ---- */

static uint64_t rd16(const unsigned char *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8;
}

static uint64_t rd32(const unsigned char *p)
{
	return rd16(p) | rd16(p + 2) << 16;
}

static uint64_t rd64(const unsigned char *p)
{
	return rd32(p) | rd32(p + 4) << 32;
}

static int read_exact(const char *path, int fd, void *buf, size_t n, uint64_t off, struct mq_error *err)
{
	size_t done;
	if (mq_pread_full(fd, buf, n, off, &done)) /* the bytes still missing, where they start */
		return mq_fail(err, MQ_ERR_INPUT, "'%s': cannot read %zu bytes at offset %llu: %s", path, n - done,
			       (unsigned long long)(off + done), errno == 0 ? "unexpected end of file" : strerror(errno));
	return 0;
}

/* Finds the end record; returns the directory's offset, length and entry count (zip64 aware). */
static int find_directory(const char *path, int fd, uint64_t size, uint64_t *dir_off, uint64_t *dir_len,
			  uint64_t *count, struct mq_error *err)
{
	uint64_t tail = size < END_LEN + 65535 ? size : END_LEN + 65535;
	unsigned char *buf = malloc((size_t)tail + 1);
	if (!buf)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	int rc = read_exact(path, fd, buf, (size_t)tail, size - tail, err);
	int64_t at = -1;
	for (int64_t i = (int64_t)tail - END_LEN; !rc && i >= 0; i--) {
		if (rd32(buf + i) == SIG_END && (uint64_t)i + END_LEN + rd16(buf + i + 20) == tail) {
			at = i;
			break;
		}
	}
	if (!rc && at < 0)
		rc = mq_fail(err, MQ_ERR_INPUT, "'%s': no ZIP end record; the file is truncated or not a torch.save checkpoint", path);
	if (rc) {
		free(buf);
		return rc;
	}
	uint64_t end_pos = size - tail + (uint64_t)at;
	*count = rd16(buf + at + 10);
	*dir_len = rd32(buf + at + 12);
	*dir_off = rd32(buf + at + 16);
	uint64_t limit = end_pos; /* the directory ends where the next record begins */
	if (end_pos >= LOCATOR_LEN) {
		unsigned char loc[LOCATOR_LEN], e64[END64_LEN];
		if (read_exact(path, fd, loc, LOCATOR_LEN, end_pos - LOCATOR_LEN, err) == 0 && rd32(loc) == SIG_LOCATOR) {
			uint64_t p64 = rd64(loc + 8);
			if (p64 > end_pos - LOCATOR_LEN || end_pos - LOCATOR_LEN - p64 < END64_LEN)
				rc = mq_fail(err, MQ_ERR_INPUT, "'%s': the zip64 locator points outside the file", path);
			else if (!(rc = read_exact(path, fd, e64, END64_LEN, p64, err)) && rd32(e64) != SIG_END64)
				rc = mq_fail(err, MQ_ERR_INPUT, "'%s': no zip64 end record where the locator points", path);
			if (!rc) {
				*count = rd64(e64 + 32);
				*dir_len = rd64(e64 + 40);
				*dir_off = rd64(e64 + 48);
				limit = p64;
			}
		}
	}
	free(buf);
	if (rc)
		return rc;
	if (*dir_off > limit || *dir_len > limit - *dir_off)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': the ZIP central directory (offset %llu, %llu bytes) points outside the file; it is truncated or corrupt",
			path, (unsigned long long)*dir_off, (unsigned long long)*dir_len);
	if (*dir_len > MQ_ZIP_MAX_DIRECTORY)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': the ZIP central directory is %llu bytes, more than the limit of mq-dist (%llu MiB, MQ_ZIP_MAX_DIRECTORY in src/core/bounds.h); the file is corrupt or not a torch.save checkpoint",
			path, (unsigned long long)*dir_len, (unsigned long long)(MQ_ZIP_MAX_DIRECTORY >> 20));
	if (*count > *dir_len / CENTRAL_FIXED)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': the ZIP end record claims %llu entries, more than its directory holds",
			       path, (unsigned long long)*count);
	if (*count > MQ_ZIP_MAX_RECORDS)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': the ZIP directory lists %llu records, more than the limit of mq-dist (%d, MQ_ZIP_MAX_RECORDS in src/core/bounds.h: one per tensor and a few more); the file is corrupt, or a model beyond that limit needs a rebuild with a larger one",
			path, (unsigned long long)*count, MQ_ZIP_MAX_RECORDS);
	return 0;
}

/* The zip64 extra field of a directory entry: the fields whose 32-bit slots overflowed. */
static int zip64_fields(const unsigned char *x, uint64_t xlen, uint64_t *usize, uint64_t *csize, uint64_t *off)
{
	uint64_t *want[3] = { *usize == ZIP32_MAX ? usize : NULL, *csize == ZIP32_MAX ? csize : NULL,
			      *off == ZIP32_MAX ? off : NULL };
	if (!want[0] && !want[1] && !want[2])
		return 0;
	for (uint64_t i = 0; i + 4 <= xlen;) {
		uint64_t id = rd16(x + i), len = rd16(x + i + 2);
		if (i + 4 + len > xlen)
			return -1;
		if (id == 0x0001) {
			uint64_t k = 0;
			for (int f = 0; f < 3; f++) {
				if (!want[f])
					continue;
				if (k + 8 > len)
					return -1;
				*want[f] = rd64(x + i + 4 + k);
				k += 8;
			}
			return 0;
		}
		i += 4 + len;
	}
	return -1;
}

/* Bytes of the directory entry at c: its fixed part, name, extra field and comment. */
static uint64_t central_entry_len(const unsigned char *c)
{
	return CENTRAL_FIXED + rd16(c + 28) + rd16(c + 30) + rd16(c + 32);
}

/* Directory entry i, at byte pos of the dir_len-byte directory: a signature, and all of it inside. */
static int check_central(const char *path, const unsigned char *dir, uint64_t dir_len, uint64_t pos, uint64_t i,
			 struct mq_error *err)
{
	const unsigned char *c = dir + pos;
	if (pos + CENTRAL_FIXED > dir_len || rd32(c) != SIG_CENTRAL)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': ZIP directory entry %llu is malformed", path,
			       (unsigned long long)i);
	if (pos + central_entry_len(c) > dir_len)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': ZIP directory entry %llu runs past the directory", path,
			       (unsigned long long)i);
	return 0;
}

/* The directory entry at c into z: name, flags, method, CRC, size and local header offset (zip64 aware). */
static int read_central(const char *path, const unsigned char *c, struct mq_zip_entry *z, struct mq_error *err)
{
	uint64_t nlen = rd16(c + 28), xlen = rd16(c + 30);
	z->name = malloc(nlen + 1);
	if (!z->name)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	memcpy(z->name, c + CENTRAL_FIXED, nlen);
	z->name[nlen] = '\0';
	z->flags = (uint16_t)rd16(c + 8);
	z->method = (uint16_t)rd16(c + 10);
	z->crc = (uint32_t)rd32(c + 16);
	uint64_t csize = rd32(c + 20), usize = rd32(c + 24), off = rd32(c + 42);
	if (strlen(z->name) != nlen || zip64_fields(c + CENTRAL_FIXED + nlen, xlen, &usize, &csize, &off))
		return mq_fail(err, MQ_ERR_INPUT, "'%s': ZIP directory entry '%s' is malformed", path, z->name);
	z->size = csize;
	z->header_offset = off;
	if (z->flags & 1)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': record '%s' is encrypted", path, z->name);
	if (z->method == 0 && csize != usize)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': stored record '%s' has two different sizes", path, z->name);
	return 0;
}

/* The local header's copy of z's name must be z's name. */
static int check_local_name(const char *path, int fd, const struct mq_zip_entry *z, struct mq_error *err)
{
	size_t nlen = strlen(z->name);
	char *lname = malloc(nlen + 1);
	if (!lname)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	int rc = read_exact(path, fd, lname, nlen, z->header_offset + LOCAL_FIXED, err);
	if (!rc && memcmp(lname, z->name, nlen) != 0)
		rc = mq_fail(err, MQ_ERR_INPUT, "'%s': record '%s': its local header names another record", path,
			     z->name);
	free(lname);
	return rc;
}

/*
 * The local header of z: before the directory (which starts at dir_off), of
 * the same name; it gives z's data_offset, and the data must end before the
 * directory too.
 */
static int read_local(const char *path, int fd, struct mq_zip_entry *z, uint64_t dir_off, struct mq_error *err)
{
	uint64_t off = z->header_offset, nlen = strlen(z->name);
	unsigned char lh[LOCAL_FIXED];
	if (off > dir_off || dir_off - off < LOCAL_FIXED)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': record '%s' has its header at offset %llu, outside the file's records (the directory starts at %llu)",
			path, z->name, (unsigned long long)off, (unsigned long long)dir_off);
	int rc = read_exact(path, fd, lh, LOCAL_FIXED, off, err);
	if (rc)
		return rc;
	uint64_t lnlen = rd16(lh + 26), lxlen = rd16(lh + 28);
	z->data_offset = off + LOCAL_FIXED + lnlen + lxlen;
	if (rd32(lh) != SIG_LOCAL || lnlen != nlen)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': record '%s': no matching local header at offset %llu", path,
			       z->name, (unsigned long long)off);
	if (z->data_offset > dir_off || z->size > dir_off - z->data_offset)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': record '%s' (%llu bytes at offset %llu) runs outside the file's records; the file is truncated or corrupt",
			path, z->name, (unsigned long long)z->size, (unsigned long long)z->data_offset);
	return check_local_name(path, fd, z, err);
}

int mq_zip_read(const char *path, int fd, uint64_t file_size, struct mq_zip_entry **out, int *n_out,
		struct mq_error *err)
{
	uint64_t dir_off = 0, dir_len = 0, count = 0;
	*out = NULL;
	*n_out = 0;
	int rc = find_directory(path, fd, file_size, &dir_off, &dir_len, &count, err);
	if (rc)
		return rc;
	unsigned char *dir = malloc((size_t)dir_len + 1);
	struct mq_zip_entry *e = calloc((size_t)count + 1, sizeof(*e));
	if (!dir || !e) {
		free(dir);
		free(e);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory for a %llu-byte ZIP directory", (unsigned long long)dir_len);
	}
	rc = read_exact(path, fd, dir, (size_t)dir_len, dir_off, err);
	uint64_t pos = 0;
	int n = 0;
	for (uint64_t i = 0; !rc && i < count; i++) {
		rc = check_central(path, dir, dir_len, pos, i, err);
		if (rc)
			break;
		struct mq_zip_entry *z = &e[n++];
		rc = read_central(path, dir + pos, z, err);
		if (!rc)
			rc = read_local(path, fd, z, dir_off, err);
		pos += central_entry_len(dir + pos);
	}
	free(dir);
	if (rc) {
		mq_zip_entries_free(e, n);
		return rc;
	}
	*out = e;
	*n_out = n;
	return 0;
}

void mq_zip_entries_free(struct mq_zip_entry *e, int n)
{
	if (!e)
		return;
	for (int i = 0; i < n; i++)
		free(e[i].name);
	free(e);
}
