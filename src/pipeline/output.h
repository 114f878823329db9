/*
 * output: the output file's life. Its checks before any work (not the input,
 * not a folder, exists only with --force, or in a job an older output of
 * ours), where each output tensor lies in it, the free-space check, what a
 * fatal signal does to the partial file, SIGUSR1 as a request to stop, and
 * the folder's fsync after the rename.
 */
#ifndef MQ_OUTPUT_H
#define MQ_OUTPUT_H

#include <signal.h>

#include "state.h"

/* Set by SIGUSR1 (see output_catch_stop): finish the unit in hand and start no other. */
extern volatile sig_atomic_t mq_stop_requested;
/* Rank 0: the journal holds at least one finished unit (see output_guard_tmp). */
extern volatile sig_atomic_t mq_units_journaled;

/* Rank 0: refuse to overwrite the input or, without --force, an existing file. */
int output_check(struct run *r);
/* Rank 0: the output's folder exists and is writable (not checked for a dry run). */
int output_check_dir(struct run *r);
/* Every rank: the header reservation and each output tensor's file offset (r->out_pos, r->out_size). */
int output_place(struct run *r);
/* Rank 0: the output must fit in its file system's free space before it is reserved. */
int output_check_space(struct run *r, int fd);
/*
 * Rank 0: from now on a fatal signal removes the partial file and its journal
 * (or keeps both once a unit is journaled, on SIGTERM); NULL: back to the
 * default handlers.
 */
void output_guard_tmp(const char *path, const char *journal);
/*
 * Rank 0, after output_guard_tmp: a partial folder's files, removed by the
 * same signals (then the folder itself, if nothing else is in it yet).
 */
void output_guard_parts(const struct run *r);
/* Every rank: SIGUSR1 sets mq_stop_requested. */
void output_catch_stop(void);
/* fsync of the folder that holds path (after a rename). */
void output_sync_dir(const char *path);

/*
 * The partial output is a file, or for a folder row a folder holding the
 * shards (r->files.names). output_part_path: file f's path in it (malloc'd).
 */
char *output_part_path(const struct run *r, int f);
/* Every rank, collectively: opens every file of the partial output (r->fh). */
int output_open_parts(struct run *r);
/* Every rank, collectively: flushes them to stable storage (sync) and closes them. */
int output_close_parts(struct run *r, int sync);
/* Rank 0: removes a partial output: the file, or the folder and all it holds. 0, or -1 with errno. */
int output_remove_partial(const char *path);

/* Rank 0: the partial output becomes the output (an existing folder is swapped out and removed). */
int output_commit(struct run *r);

/* Frees the paths and the layout (the files are the run's to keep or remove). */
void output_release(struct run *r);

#endif
