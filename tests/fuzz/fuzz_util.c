#define _GNU_SOURCE /* memfd_create */
#include "fuzz.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Noreturn void mq_fuzz_abort(const char *what)
{
	fprintf(stderr, "fuzz harness: %s\n", what);
	abort();
}

static int write_all(int fd, const uint8_t *data, size_t size)
{
	size_t done = 0;
	while (done < size) {
		ssize_t k = pwrite(fd, data + done, size - done, (off_t)done);
		if (k <= 0)
			return -1;
		done += (size_t)k;
	}
	return 0;
}

int mq_fuzz_memfile(const uint8_t *data, size_t size, const char **path)
{
	static int fd = -1;
	static char name[64];
	if (fd < 0) {
		fd = memfd_create("mq-fuzz", MFD_CLOEXEC);
		if (fd < 0)
			mq_fuzz_abort("memfd_create failed");
		snprintf(name, sizeof(name), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || write_all(fd, data, size) != 0)
		mq_fuzz_abort("cannot write the in-memory file");
	if (path)
		*path = name;
	return fd;
}

#define MAX_FILES 16
static char dir[PATH_MAX];
static char files[MAX_FILES][PATH_MAX];
static int n_files;

static void remove_dir(void)
{
	for (int i = 0; i < n_files; i++)
		unlink(files[i]);
	if (dir[0])
		rmdir(dir);
}

const char *mq_fuzz_dir(void)
{
	if (dir[0])
		return dir;
	struct stat st;
	const char *base = getenv("TMPDIR");
	if (!base || !*base)
		base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/mq-fuzz-XXXXXX", base);
	if (!mkdtemp(dir))
		mq_fuzz_abort("mkdtemp failed");
	atexit(remove_dir);
	return dir;
}

const char *mq_fuzz_write(const char *name, const void *data, size_t size)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", mq_fuzz_dir(), name);
	int slot = -1;
	for (int i = 0; i < n_files; i++)
		if (strcmp(files[i], path) == 0)
			slot = i;
	if (slot < 0) {
		if (n_files == MAX_FILES)
			mq_fuzz_abort("too many harness files");
		slot = n_files++;
		memcpy(files[slot], path, sizeof(path));
	}
	int fd = open(files[slot], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, data, size) != 0)
		mq_fuzz_abort("cannot write a harness file");
	close(fd);
	return files[slot];
}
