/*
 * Helpers shared by the libFuzzer targets: the entry points' prototypes and
 * in-memory files for the parsers that read through a file descriptor or a
 * path. Each target runs the real parser of one module on the fuzz input and
 * releases everything it got, so that LeakSanitizer sees any leak. No target
 * needs MPI: the parsers are pure functions of bytes (and of files).
 */
#ifndef MQ_FUZZ_H
#define MQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * One anonymous in-memory file per process (memfd), rewritten to hold exactly
 * data[0..size) on each call. Returns its fd (owned by the helper) and, if
 * path is not NULL, a path that opens it ("/proc/self/fd/N").
 */
int mq_fuzz_memfile(const uint8_t *data, size_t size, const char **path);

/* A private folder for the process's files, removed at exit (with the files named by mq_fuzz_write). */
const char *mq_fuzz_dir(void);
/* Writes data to mq_fuzz_dir()/name and returns the full path (static storage, one per name slot). */
const char *mq_fuzz_write(const char *name, const void *data, size_t size);

/* Aborts with a message: a broken invariant of the harness or of the parser's contract. */
_Noreturn void mq_fuzz_abort(const char *what);

#endif
