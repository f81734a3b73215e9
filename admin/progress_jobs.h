/* vdlvm admin: long commands running in this process, for `stats` and the
 * client's progress bar (admin/progress.c).
 *
 * A command run inside tgtd (through the control socket) writes its
 * messages into a memory stream that reaches the vdlvm client only when
 * the command returns, so a progress bar drawn there would come too late.
 * Instead admin_progress_start publishes such a progress (f without a
 * file descriptor, tty -1, a label "WHAT POOL/OBJ") as a job and draws
 * nothing; `vdlvm stats POOL --json` lists the jobs, and the client
 * (vd_ctl_call_progress) polls them and draws the bar or the step lines
 * on its own terminal or log.
 *
 * The table is owned by progress.c, protected by its own leaf mutex
 * (g_jobs_lock: held only to copy a few fields, never across I/O or
 * another lock).
 */
#ifndef VDLVM_ADMIN_PROGRESS_JOBS_H
#define VDLVM_ADMIN_PROGRESS_JOBS_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#define ADMIN_JOBS_MAX 32

struct admin_job {
    char what[32];        /* "import", "export", "encrypt", "resync" ... */
    char object[200];     /* "POOL/VOL" */
    uint64_t done, total; /* bytes */
    uint64_t rate;        /* bytes/s over the last seconds; 0: not known */
    uint64_t elapsed_ms;
};

/* The jobs running in this process on pool (NULL: all) and object
 * "POOL/VOL" (vol NULL: any of the pool's), at most max into jobs; the
 * number copied. */
size_t admin_jobs_list(const char *pool, const char *vol,
                       struct admin_job *jobs, size_t max);

/* One job: "{\"job\":...,\"object\":...,\"done_bytes\":N,\"total_bytes\":N,
 * \"rate_bytes_per_s\":N,\"elapsed_ms\":N,\"eta_s\":N|null}" (JSON), or
 * "  WHAT POOL/OBJ: [###...]  45%  ..." and a newline (text: the bar the
 * client draws). */
void admin_job_json(FILE *out, const struct admin_job *j);
void admin_job_text(FILE *out, const struct admin_job *j);
/* The jobs of pool (vol NULL: all of the pool's): "\"jobs\":[...]" and
 * text lines, for `status` (admin/status.c) as stats shows them. */
void admin_jobs_json(FILE *out, const char *pool, const char *vol);
void admin_jobs_text(FILE *out, const char *pool, const char *vol);

#endif
