/*
 * source: this rank's reads of the input files. A contiguous range of a
 * tensor is seen in place through a read-only window mapped over its file
 * (no copy: the hash and the kernels read the page cache), and everything
 * else is copied into the caller's buffer: strided views are gathered, and
 * a file that cannot be mapped, a range not aligned for its dtype, or every
 * range with MQ_READ=pread, is read with pread. At most one window of
 * SOURCE_WINDOW bytes (or of one block, if larger) is mapped at a time, so
 * the mapping adds a bounded amount to the rank's resident set whatever the
 * model's size. A read that crosses a window boundary also asks the kernel
 * for the next two windows (POSIX_FADV_WILLNEED), so cold input streams
 * from the disk while this rank computes.
 *
 * A mapped file that shrinks under the run raises SIGBUS on the next touch
 * of a page past its new end; source_guarded turns that into an input error
 * naming the file and the tensor, as a short pread does.
 */
#ifndef MQ_SOURCE_H
#define MQ_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"

#define SOURCE_WINDOW (8u << 20)

/*
 * Bytes [off, off + n) of tensor t in row-major order: *p points at them,
 * in the mapped window or in buf (n bytes, which a copy fills). The view
 * stays valid until the next call. Timed and counted as read.
 */
int source_view(struct run *r, const struct mq_tensor *t, uint64_t off, size_t n, void *buf, const void **p);
/* The same bytes copied into buf, always (a buffer the caller changes, or keeps past the next view). */
int source_read(struct run *r, const struct mq_tensor *t, uint64_t off, void *buf, size_t n);
/*
 * fn(r, arg), with a SIGBUS from the window turned into an input error
 * (then fn is abandoned where it was: fn holds no lock and allocates
 * nothing that is not owned by its caller's state).
 */
int source_guarded(struct run *r, int (*fn)(struct run *r, void *arg), void *arg);
/* Unmaps the window, closes the input files, restores the SIGBUS handler. */
void source_release(struct run *r);

#endif
