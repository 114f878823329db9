/*
 * journal: the record of finished work units kept beside a partial output,
 * so that an interrupted or crashed run can be resumed.
 *
 * Rank 0 appends one entry per finished unit as its record arrives:
 * u32 length, the record, u32 CRC-32 of the record. The file starts with a
 * magic line, the run's identity (SHA-256 of everything that decides the
 * output bytes: tool version, options, output format, the inputs' names,
 * sizes, modification times and headers) and the unit count. A resume reads
 * the entries whose identity matches and whose CRC is intact; the caller
 * then checks each unit's output bytes against the CRCs in its record before
 * trusting it. A torn last entry (a crash mid-write) is cut off.
 */
#ifndef MQ_JOURNAL_H
#define MQ_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "status.h"

struct mq_journal_entry {
	const void *rec; /* into the loaded file */
	uint32_t len;
};

struct mq_journal_load {
	char *data;                       /* the whole file */
	int n;
	struct mq_journal_entry *entries; /* in file order */
	uint64_t valid_len;               /* bytes up to the end of the last intact entry */
};

/* 0 and the entries if path holds a journal of this identity and unit count; -1 otherwise. */
int mq_journal_read(const char *path, const uint8_t id[MQ_SHA256_LEN], uint64_t n_units,
		    struct mq_journal_load *out);
void mq_journal_load_release(struct mq_journal_load *l);

/*
 * Opens the journal for appending: keep_len > 0 keeps that many bytes of an
 * existing one (cutting a torn tail), otherwise a new journal is written.
 * Returns the fd, or -1 with err set.
 */
int mq_journal_start(const char *path, const uint8_t id[MQ_SHA256_LEN], uint64_t n_units, uint64_t keep_len,
		     struct mq_error *err);
/* Appends one entry with a single write. */
int mq_journal_append(int fd, const void *rec, uint32_t len);

#endif
