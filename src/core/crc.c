#include "crc.h"

#include <isa-l/crc.h>
#include <zlib.h>

uint32_t mq_crc32(uint32_t crc, const void *p, size_t n)
{
	return n ? crc32_gzip_refl(crc, p, (uint64_t)n) : crc;
}

uint32_t mq_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	return (uint32_t)crc32_combine(crc_a, crc_b, (z_off_t)len_b);
}
