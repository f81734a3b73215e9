/* vdlvm admin: internals of the host commands (activate.c, export.c) only.
 *
 * Host commands (activate, deactivate, export, unexport) run in the vdlvm
 * process, never through a tgtd: they write files of this host (activation
 * paths under RUNDIR/vol, tgt configuration files).  Nothing here is shared
 * state; every function runs on its caller's thread.
 */
#ifndef VD_ADMIN_HOST_INT_H
#define VD_ADMIN_HOST_INT_H

#include <stdio.h>

#include "admin_int.h"

/* Public in vdadmin.h; repeated here (identical) so that admin/ needs no
 * more of it. */
typedef int (*vd_admin_run_fn)(const char *pool, const char *conf_opt, int argc,
                               char **argv, FILE *out);
int vd_admin_host_cmd(const char *conf_opt, int argc, char **argv,
                      vd_admin_run_fn run, FILE *out, FILE *err);
int vd_activation_path(const char *pool, const char *vol, char *buf,
                       size_t len);
int vd_activation_parse(const char *path, char *name, size_t len);

/* A list of names (pools or volumes), malloc'd; free(v). */
struct names {
    char (*v)[VD_NAME_MAX + 1];
    size_t n, cap;
};

/* The volumes of pool, from `vol list POOL` run through run (the tgtd
 * holding the pool, or the pool opened here).  A VD_EXIT_* code; the
 * command's messages went to stderr (run's err). */
int admin_pool_volumes(const char *pool, const char *conf_opt,
                       vd_admin_run_fn run, struct names *vols, FILE *err);
/* Create RUNDIR/vol/POOL/VOL (and its folders); VD_EXIT_* after a message. */
int admin_activate_one(const char *pool, const char *vol, FILE *err);

/* export.c */
int admin_cmd_export(const char *conf_opt, int argc, char **argv,
                     vd_admin_run_fn run, FILE *out, FILE *err);
int admin_cmd_unexport(int argc, char **argv, FILE *out, FILE *err);

#endif
