/*
 * zip: the subset of the ZIP format that torch.save archives use, both ways.
 *
 * Every record is STORED (no compression). The writer places each record's
 * data on a multiple of MQ_ZIP_ALIGN bytes by padding the local header with
 * an extra field ('F','B', u16 length, then 'Z' bytes), as torch does. Sizes
 * are known before any data is written, so local headers carry the real size
 * and CRC-32 (no data descriptors); they are written once the CRCs are known.
 * The zip64 end record and locator are always written; a record of 4 GiB or
 * more, or one placed past 4 GiB, carries a zip64 extra field.
 *
 * Layout of a written archive: for each record, local header + padding +
 * data; then the central directory, the zip64 end record, its locator, and
 * the end record. mq_zip_layout() is a pure function of the names and sizes.
 *
 * The reader trusts nothing: every offset and size in the end records, the
 * central directory and the local headers is checked against the file.
 */
#ifndef MQ_ZIP_H
#define MQ_ZIP_H

#include <stdint.h>

#include "buf.h"
#include "bounds.h"
#include "status.h"

#define MQ_ZIP_ALIGN 64

struct mq_zip_entry {
	char *name;              /* owned */
	uint64_t header_offset;  /* the local header */
	uint64_t data_offset;    /* first data byte */
	uint64_t size;           /* data bytes (stored: compressed = uncompressed) */
	uint32_t crc;            /* CRC-32 of the data */
	uint16_t method;         /* 0: stored */
	uint16_t flags;
};

/*
 * Writer: fills header_offset and data_offset of e[0..n) (name and size set),
 * records in the given order from offset 0. Sets *directory_offset and
 * *file_size (the end of the end record).
 */
void mq_zip_layout(struct mq_zip_entry *e, int n, uint64_t *directory_offset, uint64_t *file_size);

/* Appends the local header of e (with its padding) to b: exactly data_offset - header_offset bytes. */
void mq_zip_local_header(const struct mq_zip_entry *e, struct mq_buf *b);

/* Appends the central directory and the end records to b. */
void mq_zip_directory(const struct mq_zip_entry *e, int n, uint64_t directory_offset, struct mq_buf *b);

/*
 * Reader: the entries of the archive in the open file fd (path for messages),
 * in directory order, with data_offset taken from each local header. Checks
 * that every header and every record lies inside the file and before the
 * central directory. On failure returns MQ_ERR_INPUT with a message naming
 * the file and the record.
 */
int mq_zip_read(const char *path, int fd, uint64_t file_size, struct mq_zip_entry **out, int *n,
		struct mq_error *err);
void mq_zip_entries_free(struct mq_zip_entry *e, int n);

#endif
