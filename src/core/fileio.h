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

#endif
