#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
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

int mq_read_small(const char *path, size_t max, char **text, size_t *len)
{
	*text = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	int rc = fstat(fd, &st);
	if (!rc && (uint64_t)st.st_size > max) {
		errno = EFBIG;
		rc = -1;
	}
	if (!rc && !(*text = malloc((size_t)st.st_size + 1))) {
		errno = ENOMEM;
		rc = -1;
	}
	if (!rc && mq_pread_full(fd, *text, (size_t)st.st_size, 0, NULL))
		rc = -1; /* errno 0: it ended early */
	int e = errno;
	close(fd);
	if (rc) {
		free(*text);
		*text = NULL;
		errno = e;
		return -1;
	}
	(*text)[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	return 0;
}
