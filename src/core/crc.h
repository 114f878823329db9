/*
 * crc: CRC-32 (the reflected IEEE polynomial of zip and gzip) of byte runs,
 * and the CRC of two runs joined. The bulk CRC is ISA-L's folded one
 * (PCLMULQDQ where the CPU has it), the join zlib's crc32_combine: both give
 * zlib's crc32 values, and chain as it does (mq_crc32(mq_crc32(0, a), b) is
 * the CRC of a then b).
 */
#ifndef MQ_CRC_H
#define MQ_CRC_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of the bytes [p, p + n) continuing crc (0 to start). */
uint32_t mq_crc32(uint32_t crc, const void *p, size_t n);
/* The CRC of a run a followed by a run b of len_b bytes, from the two runs' CRCs. */
uint32_t mq_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

#endif
