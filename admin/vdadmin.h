/* vdlvm: admin commands and the control socket (admin/).
 *
 * The same command code runs in the `vdlvm` process (pool opened directly)
 * and inside tgtd (bs_vdlvm.so, pool held by the module), so a command
 * behaves the same whether or not a tgtd holds the pool.
 * vd_admin_exec may run on several threads at once (the library serialises
 * its admin calls with the pool's admin lock).  vd_ctl_listen,
 * vd_ctl_serve_one and vd_ctl_unlisten are called from one thread per pool
 * (tgtd's main thread in the module); vd_ctl_serve_one never waits there on
 * a device, the network or the pool's locks: every command runs on a thread
 * of its own (see vd_ctl_serve_one).
 */
#ifndef VDADMIN_H
#define VDADMIN_H

#include <stdio.h>
#include "../pool/vdpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exit codes of vdlvm. */
enum {
    VD_EXIT_OK = 0,    /* success */
    VD_EXIT_FAIL = 1,  /* well-formed, but failed: I/O, no space, not found */
    VD_EXIT_USAGE = 2, /* bad usage or bad configuration; nothing changed */
    VD_EXIT_DIFF = 3,  /* verify: the legs differ */
    VD_EXIT_BUSY = 4,  /* in use: held by another process, exported, or the
                          holding tgtd is busy; retry later */
};
/* The exit code of a library failure r (negative errno): -EINVAL 2,
 * -EBUSY 4, other 1; 0 for 0. */
int vd_exit_code(int r);

/* The table of exit codes, as printed by `vdlvm --help` (and README). */
#define VD_EXIT_HELP                                                          \
    "Exit status:\n"                                                          \
    "  0  success\n"                                                          \
    "  1  the command failed: an I/O error, not found, already exists, not\n" \
    "     enough free space, foreign data on a device, a peer unreachable\n"  \
    "  2  bad usage or bad configuration (command line, pool definition,\n"   \
    "     names, sizes, a device path that is no file or block device);\n"    \
    "     nothing was changed\n"                                              \
    "  3  verify: the legs of a mirror differ\n"                              \
    "  4  in use: the pool is held by another process, the volume is\n"       \
    "     exported, or the tgtd holding the pool is busy; retry later\n"

/* Version of vdlvm, and of tgt the module was built against. */
#ifndef VD_VERSION
#define VD_VERSION "0.9.0"
#endif
#ifndef VD_TGT_VERSION
#define VD_TGT_VERSION "unknown"
#endif

/* ---- pools known by name ---------------------------------------------- */
/* A pool whose definition is not CONFDIR/POOL.yaml (created with -c FILE,
 * or exported with --bsopts conf=FILE) is remembered in the registry:
 * STATEDIR/pools/POOL is a symbolic link to the definition's absolute path
 * (STATEDIR: $VDLVM_STATEDIR or /var/lib/vdlvm).  The definition itself
 * stays where the administrator keeps it, so there is one copy to edit.
 * Thread-safe (file system operations only). */
const char *vd_statedir(void);
/* Remember path as the definition of pool name (replaces an older entry);
 * 0 or a negative errno. */
int vd_registry_add(const char *name, const char *path);
/* The remembered definition of name into buf; 0, -ENOENT, other errno. */
int vd_registry_get(const char *name, char *buf, size_t len);
/* Forget name; 0 or a negative errno (-ENOENT: was not known). */
int vd_registry_remove(const char *name);

/* ---- activation and tgt configuration (activate.c, export.c) --------- */
/* Host commands: activate, deactivate, export, unexport (see
 * `vdlvm COMMAND --help`).  They write files of this host (activation
 * paths RUNDIR/vol/POOL/VOL, /etc/tgt/conf.d/vdlvm-POOL-VOL.conf), so
 * they run in the vdlvm process, never through a tgtd.  run executes an
 * admin command (e.g. "vol list POOL") on a pool, through the tgtd holding
 * it or by opening it, writing its output to out; a VD_EXIT_* code.
 * vd_admin_host_cmd returns -1 when argv[0] is no host command, else a
 * VD_EXIT_* code.  Not thread-safe (the vdlvm main thread). */
typedef int (*vd_admin_run_fn)(const char *pool, const char *conf_opt, int argc,
                               char **argv, FILE *out);
int vd_admin_host_cmd(const char *conf_opt, int argc, char **argv,
                      vd_admin_run_fn run, FILE *out, FILE *err);
/* After an admin command (argv as for vd_admin_exec) returned code: when
 * `vol create` or `vol remove` succeeded on an activated pool (its folder
 * RUNDIR/vol/POOL exists), activate the new volume or deactivate the
 * removed one, saying so on out (warnings on err).  The vdlvm process
 * only. */
void vd_admin_after_cmd(int argc, char **argv, int code, FILE *out, FILE *err);
/* RUNDIR/vol/POOL/VOL (vol NULL: RUNDIR/vol/POOL) into buf; 0, -EINVAL
 * (bad name), -ENAMETOOLONG. */
int vd_activation_path(const char *pool, const char *vol, char *buf,
                       size_t len);
/* A backing-store path for the module: 0 when path is no absolute path (it
 * is POOL/VOL itself); 1 when it is an activation path RUNDIR/vol/POOL/VOL
 * that exists as a regular file, with "POOL/VOL" in name; -EINVAL when it
 * is absolute but not of that form, -ENOENT when the volume is not
 * activated, other negative errno.  Thread-safe (one stat). */
int vd_activation_parse(const char *path, char *name, size_t len);

/* Run one command (argv[0] is the command word, e.g. "vol", "create",
 * "pool0/vol0", "--size", "1GiB") against an open pool.  Output goes to out,
 * messages to err.  Returns a VD_EXIT_* code. */
int vd_admin_exec(vd_pool *pool, int argc, char **argv, FILE *out, FILE *err);

/* Check a command's usage without a pool (help, options, names, sizes).
 * Returns -1 when the command is well-formed and must run against a pool:
 * pool_name then holds the pool of its POOL or POOL/VOL argument, or "" when
 * it names none (`status`).  Otherwise the command was handled here and the
 * VD_EXIT_* code is returned: help printed on out (0) or a usage error
 * printed on err (2).  `pool create` is not an admin command (it runs in the
 * vdlvm process only): it is reported as unknown. */
int vd_admin_parse(int argc, char **argv, char *pool_name, size_t len,
                   FILE *out, FILE *err);

/* vol import / vol export name a FILE that the process holding the pool
 * opens, whose working folder is not the caller's: make a relative FILE
 * in argv (as for vd_admin_exec) absolute, from the working folder.
 * argv[i] then points to *to_free (malloc'd; free() it after the command;
 * NULL when nothing changed).  0 or a negative errno. */
int vd_admin_abs_file(int argc, char **argv, char **to_free);

/* Route library messages (vd_log) so that a command's own failures reach
 * its caller: ERR/WARN messages logged on a thread while it runs
 * vd_admin_exec are written as "vdlvm: msg" to that command's err stream;
 * every other message goes to next (NULL: the library's default, stderr).
 * Call once at start-up, before other threads exist, in place of
 * vd_log_set_fn.  Without it, vd_admin_exec still prints a message of its
 * own for every failure, only less precise. */
void vd_admin_log_init(vd_log_fn next);

/* `stats --prometheus` of several pools (texts[i]: one pool's output)
 * as one exposition: families of the same name joined under the first
 * one's HELP and TYPE lines.  0 or -ENOMEM (nothing printed).  Any
 * thread. */
int vd_prom_merge(char *const *texts, size_t n, FILE *out);

/* Path of the control socket of pool_name into buf: RUNDIR/POOL.sock.
 * Returns 0 or -ENAMETOOLONG / -EINVAL (not a valid pool name). */
int vd_ctl_path(const char *pool_name, char *buf, size_t len);

/* ---- control socket: RUNDIR/POOL.sock, mode 0600, root only ----------- */
/* Create and listen; returns the fd (close() it and unlink the path with
 * vd_ctl_unlisten) or a negative errno. */
int vd_ctl_listen(const char *pool_name);
/* Closes fd, removes the socket file, and waits for the pool's commands
 * still running (call it before closing the pool, off tgtd's main thread:
 * a command may wait on a device).  = vd_ctl_close + vd_ctl_wait. */
void vd_ctl_unlisten(const char *pool_name, int fd);
/* Closes fd and removes the socket file; never waits (main thread). */
void vd_ctl_close(const char *pool_name, int fd);
/* Waits until no command of pool_name runs (not on the main thread). */
void vd_ctl_wait(const char *pool_name);

/* Hooks of the process that serves the control socket, run on a command's
 * own thread.  before: just before the command runs (e.g. wait until
 * volumes being closed in the background are closed, so that `vol remove`
 * right after a LUN was deleted finds the volume unused).  after: once the
 * command ran, before its reply is sent (e.g. let the main thread publish
 * a new volume size to its LUNs, so that the caller sees it when vdlvm
 * returns).  Either may be NULL; the struct must outlive the socket. */
struct vd_ctl_hooks {
    void (*before)(void *arg);
    void (*after)(void *arg);
    void *arg;
};

/* At most this many commands of one pool run at once; a client beyond it
 * gets exit VD_EXIT_BUSY and "busy" at once. */
#define VD_CTL_MAX_JOBS 8

/* Accept one client on listen_fd and hand it to a thread of its own, which
 * reads the request (bounded by a short timeout), checks the caller, runs
 * it with vd_admin_exec against pool and sends the reply.  Called from the
 * event loop when listen_fd is readable; never waits on the client, a
 * device or a lock held across device I/O.  Returns 0 (handed over or
 * nothing to accept), -EBUSY when VD_CTL_MAX_JOBS commands of the pool
 * already run (the client got a "busy" reply, exit VD_EXIT_BUSY), or
 * another negative errno (accept or thread creation failed; the client, if
 * any, got a reply saying so).  hooks may be NULL. */
int vd_ctl_serve_one(int listen_fd, vd_pool *pool,
                     const struct vd_ctl_hooks *hooks);

/* Client: send argv to the tgtd holding pool_name and copy its output to
 * out/err.  Returns 0 with *exit_code set, -ENOENT/-ECONNREFUSED when no
 * live process serves the pool, other negative errno on failure. */
int vd_ctl_call(const char *pool_name, int argc, char **argv, FILE *out,
                FILE *err, int *exit_code);

/* vd_ctl_call, except for the long commands (verify, resync/vol repair/
 * vol encrypt/dev evacuate/pool rebalance/tier run with --wait, vol
 * import/export): the command runs on a thread while this one polls the
 * tgtd (`status --json`, `tier status --json`, or the "jobs" of `stats
 * --json`) and draws the progress on err: a bar on a terminal, a line per
 * 10 % otherwise (progress.c). */
int vd_ctl_call_progress(const char *pool_name, int argc, char **argv,
                         FILE *out, FILE *err, int *exit_code);

#ifdef __cplusplus
}
#endif
#endif
