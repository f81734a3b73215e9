/* vdlvm: admin commands and the control socket (tools/).
 *
 * The same command code runs in the `vdlvm` process (pool opened directly)
 * and inside tgtd (bs_vdlvm.so, pool held by the module), so a command
 * behaves the same whether or not a tgtd holds the pool.
 * Not thread-safe: call from one admin thread per pool (tgtd's main thread
 * in the module).
 */
#ifndef VDADMIN_H
#define VDADMIN_H

#include <stdio.h>
#include "../pool/vdpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exit codes of vdlvm. */
enum { VD_EXIT_OK = 0, VD_EXIT_FAIL = 1, VD_EXIT_USAGE = 2, VD_EXIT_DIFF = 3 };

/* Run one command (argv[0] is the command word, e.g. "vol", "create",
 * "pool0/vol0", "--size", "1GiB") against an open pool.  Output goes to out,
 * messages to err.  Returns a VD_EXIT_* code. */
int vd_admin_exec(vd_pool *pool, int argc, char **argv, FILE *out, FILE *err);

/* ---- control socket: RUNDIR/POOL.sock, mode 0600, root only ----------- */
/* Create and listen; returns the fd (close() it and unlink the path with
 * vd_ctl_unlisten) or a negative errno. */
int vd_ctl_listen(const char *pool_name);
void vd_ctl_unlisten(const char *pool_name, int fd);

/* Accept one client on listen_fd, read its request (bounded by a short
 * timeout), run it with vd_admin_exec against pool, send the reply.
 * Called from the event loop when listen_fd is readable. */
int vd_ctl_serve_one(int listen_fd, vd_pool *pool);

/* Client: send argv to the tgtd holding pool_name and copy its output to
 * out/err.  Returns 0 with *exit_code set, -ENOENT/-ECONNREFUSED when no
 * live process serves the pool, other negative errno on failure. */
int vd_ctl_call(const char *pool_name, int argc, char **argv, FILE *out,
                FILE *err, int *exit_code);

#ifdef __cplusplus
}
#endif
#endif
