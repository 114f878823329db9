/*
 * fileio: the one "read n bytes at an offset" loop of the project: short
 * reads are continued and EINTR retried, so a caller sees all the bytes or
 * a reason.
 */
#ifndef MQ_FILEIO_H
#define MQ_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/*
 * Reads n bytes at byte pos of fd into buf. Returns 0, or -1 with errno set
 * (errno 0: the file ended first). *done (may be NULL): the bytes read.
 */
int mq_pread_full(int fd, void *buf, size_t n, uint64_t pos, size_t *done);

/*
 * The whole of the file at path, at most max bytes, into *text (malloc'd,
 * NUL-terminated, *len bytes before the NUL; the caller frees it). 0, or -1
 * with errno: the open's or read's, EFBIG when larger than max, ENOMEM, or 0
 * when the file ended before its size (it shrank while read).
 */
int mq_read_small(const char *path, size_t max, char **text, size_t *len);

#endif
