#include "fileio.h"

#include <errno.h>
#include <unistd.h>

int mq_pread_full(int fd, void *buf, size_t n, uint64_t pos, size_t *done)
{
	char *p = buf;
	size_t got = 0;
	int rc = 0;
	while (got < n) {
		ssize_t k = pread(fd, p + got, n - got, (off_t)(pos + got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k == 0)
				errno = 0;
			rc = -1;
			break;
		}
		got += (size_t)k;
	}
	if (done)
		*done = got;
	return rc;
}
