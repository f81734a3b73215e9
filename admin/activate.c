/* vdlvm admin: volume activation (vdlvm activate / deactivate) and the
 * host commands' entry point (vd_admin_host_cmd).
 *
 * tgt's stock tgt-admin (run by tgt.service from /etc/tgt/targets.conf)
 * exports a backing store only when its path exists as a file, and POOL/VOL
 * is no path.  As LVM's `vgchange -ay` makes /dev/VG/LV before the services
 * that use it start, `vdlvm activate` makes one empty regular file per
 * volume, RUNDIR/vol/POOL/VOL (RUNDIR: $VDLVM_RUNDIR or /run/vdlvm, a
 * tmpfs: nothing survives a reboot), and bs_vdlvm.so accepts that path as
 * the volume's name (vd_activation_parse).  vdlvm-activate.service runs it
 * before tgt.service; `deactivate` removes the files (it never opens a
 * pool, so it cannot hang at shutdown on a silent remote device).
 *
 * Host commands run in the vdlvm process only (never through a tgtd): they
 * write files of this host.  They read a pool's volumes through the run
 * callback the vdlvm main hands in (through the tgtd holding the pool, or by
 * opening it), so they see what `vdlvm vol list` sees.
 * No shared state: every function runs on its caller's thread; the file
 * system operations are each atomic (a file is created with O_EXCL or
 * replaced by rename), so two vdlvm processes activating at once leave the
 * same set of files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_int.h"

static const char *g_activate_help =
    "Usage: vdlvm [-c FILE] activate [POOL[/VOL]]\n"
    "\n"
    "Make the activation path RUNDIR/vol/POOL/VOL (an empty file; RUNDIR is\n"
    "/run/vdlvm, $VDLVM_RUNDIR) of every volume of POOL, or of one volume,\n"
    "and remove the paths of volumes POOL no longer has.  Without POOL:\n"
    "every known pool (see 'vdlvm pool list').  tgtd exports an activated\n"
    "volume given by that path (--backing-store /run/vdlvm/vol/POOL/VOL\n"
    "--bstype vdlvm), which is what /etc/tgt/targets.conf needs: tgt-admin\n"
    "exports only backing stores that exist as files.\n"
    "vdlvm-activate.service runs 'vdlvm activate' before tgt.service at\n"
    "boot; 'vdlvm export' activates the volume it exports.  While a pool\n"
    "is activated (RUNDIR/vol/POOL exists), 'vol create' activates the new\n"
    "volume and 'vol remove' removes its path.\n"
    "\n"
    "  -h, --help    show this help\n";

static const char *g_deactivate_help =
    "Usage: vdlvm deactivate [POOL[/VOL]]\n"
    "\n"
    "Remove the activation paths of POOL's volumes, of one volume, or (no\n"
    "argument) of every pool.  The pools are not opened, and LUNs already\n"
    "exported stay; only a later 'tgt-admin --execute' or '--update' no\n"
    "longer exports these volumes.\n"
    "\n"
    "  -h, --help    show this help\n";

/* ---- paths -------------------------------------------------------------- */

int vd_activation_path(const char *pool, const char *vol, char *buf, size_t len)
{
    int n;

    if (!vd_name_is_valid(pool) || (vol && !vd_name_is_valid(vol)))
        return -EINVAL;
    n = vol ? snprintf(buf, len, "%s/vol/%s/%s", vd_rundir(), pool, vol)
            : snprintf(buf, len, "%s/vol/%s", vd_rundir(), pool);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int vd_activation_parse(const char *path, char *name, size_t len)
{
    char prefix[4096], pool[VD_NAME_MAX + 1];
    const char *rest, *slash;
    struct stat st;
    size_t n;

    if (path[0] != '/')
        return 0;
    n = (size_t)snprintf(prefix, sizeof(prefix), "%s/vol/", vd_rundir());
    if (n >= sizeof(prefix) || strncmp(path, prefix, n))
        return -EINVAL;
    rest = path + n;
    slash = strchr(rest, '/');
    if (!slash || (size_t)(slash - rest) > VD_NAME_MAX)
        return -EINVAL;
    memcpy(pool, rest, slash - rest);
    pool[slash - rest] = 0;
    if (!vd_name_is_valid(pool) || strlen(slash + 1) > VD_NAME_MAX ||
        !vd_name_is_valid(slash + 1))
        return -EINVAL;
    if (stat(path, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    if ((size_t)snprintf(name, len, "%s", rest) >= len)
        return -ENAMETOOLONG;
    return 1;
}

static int mkdir_p(const char *dir)
{
    char buf[4096];
    size_t n = strlen(dir);

    if (n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, dir, n + 1);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int admin_activate_one(const char *pool, const char *vol, FILE *err)
{
    char dir[4096], path[4096];
    int fd, r;

    if ((r = vd_activation_path(pool, NULL, dir, sizeof(dir))) < 0 ||
        (r = vd_activation_path(pool, vol, path, sizeof(path))) < 0) {
        admin_msg(err, "volume '%s/%s': activation path too long in %s", pool,
                  vol, vd_rundir());
        return VD_EXIT_FAIL;
    }
    if ((r = mkdir_p(dir)) < 0) {
        admin_msg(err, "volume '%s/%s': cannot create %s: %s", pool, vol, dir,
                  strerror(-r));
        return VD_EXIT_FAIL;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST)
        return VD_EXIT_OK;
    if (fd < 0) {
        admin_msg(err, "volume '%s/%s': cannot create %s: %s", pool, vol, path,
                  strerror(errno));
        return VD_EXIT_FAIL;
    }
    close(fd);
    return VD_EXIT_OK;
}

/* ---- vol create / vol remove of an activated pool ----------------------- */
/* Decision: a pool is activated while its folder RUNDIR/vol/POOL exists
 * (made by `vdlvm activate` at boot, or by `vdlvm export`; removed by
 * `vdlvm deactivate POOL`).  A volume created in an activated pool is
 * activated at once, so that a targets.conf entry written for it before
 * (or tgt-admin --update right after) finds its path without another
 * `vdlvm activate`; a removed volume loses its path, so that tgt-admin no
 * longer tries to export it.  A pool that is not activated is left alone:
 * activation stays a decision of the administrator (or the boot unit).
 * Done here, in the vdlvm process after the command succeeded (through a
 * tgtd or not), like every host file; a failure to write the path is a
 * warning (the volume exists; `vdlvm activate POOL/VOL` retries), never a
 * failed `vol create`. */
static int find_vol_arg(int argc, char **argv, char *pool, char *vol)
{
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i], *slash = strchr(s, '/');
        size_t pl = slash ? (size_t)(slash - s) : 0;
        if (s[0] == '-' || !slash || pl == 0 || pl > VD_NAME_MAX ||
            strlen(slash + 1) > VD_NAME_MAX)
            continue;
        memcpy(pool, s, pl);
        pool[pl] = 0;
        strcpy(vol, slash + 1);
        if (vd_name_is_valid(pool) && vd_name_is_valid(vol))
            return 1;
    }
    return 0;
}

void vd_admin_after_cmd(int argc, char **argv, int code, FILE *out, FILE *err)
{
    char pool[VD_NAME_MAX + 1], vol[VD_NAME_MAX + 1], dir[4096], path[4096];
    struct stat st;
    int create;

    if (code != VD_EXIT_OK || argc < 3 || strcmp(argv[0], "vol"))
        return;
    create = !strcmp(argv[1], "create");
    if (!create && strcmp(argv[1], "remove"))
        return;
    if (!find_vol_arg(argc, argv, pool, vol) ||
        vd_activation_path(pool, NULL, dir, sizeof(dir)) < 0 ||
        vd_activation_path(pool, vol, path, sizeof(path)) < 0)
        return;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return; /* pool not activated */
    if (create) {
        if (admin_activate_one(pool, vol, err) == VD_EXIT_OK)
            fprintf(out,
                    "volume '%s/%s': activated (%s): its pool is "
                    "activated\n",
                    pool, vol, path);
        else
            admin_msg(err,
                      "warning: volume '%s/%s': created but not activated; "
                      "run 'vdlvm activate %s/%s'",
                      pool, vol, pool, vol);
        return;
    }
    if (unlink(path) == 0)
        fprintf(out, "volume '%s/%s': deactivated (%s removed)\n", pool, vol,
                path);
    else if (errno != ENOENT)
        admin_msg(err,
                  "warning: volume '%s/%s': removed, but its activation "
                  "path %s stays: %s; run 'vdlvm activate %s' to prune it",
                  pool, vol, path, strerror(errno), pool);
}

/* ---- pools and their volumes ------------------------------------------- */

static const char *confdir(void)
{
    const char *d = getenv("VDLVM_CONFDIR");
    return d && *d ? d : "/etc/vdlvm";
}

static int names_has(const struct names *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s))
            return 1;
    return 0;
}

/* Adds s unless present; -ENOMEM. */
static int names_add(struct names *l, const char *s)
{
    if (names_has(l, s))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        void *v = realloc(l->v, cap * sizeof(*l->v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    snprintf(l->v[l->n++], sizeof(l->v[0]), "%s", s);
    return 0;
}

static int names_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Pool names of dir's entries: "NAME<ext>" (ext "" for any name). */
static void scan_dir(struct names *l, const char *dir, const char *ext)
{
    size_t e = strlen(ext);
    struct dirent *d;
    DIR *dp = opendir(dir);

    if (!dp)
        return;
    while ((d = readdir(dp))) {
        char name[VD_NAME_MAX + 1];
        size_t n = strlen(d->d_name);
        if (n <= e || n - e > VD_NAME_MAX || strcmp(d->d_name + n - e, ext))
            continue;
        memcpy(name, d->d_name, n - e);
        name[n - e] = 0;
        if (vd_name_is_valid(name))
            names_add(l, name);
    }
    closedir(dp);
}

/* Every known pool, as `vdlvm pool list` finds them: definitions in
 * CONFDIR, the registry, pools held by a tgtd (control sockets). */
static void known_pools(struct names *l)
{
    char dir[4096];

    scan_dir(l, confdir(), ".yaml");
    snprintf(dir, sizeof(dir), "%s/pools", vd_statedir());
    scan_dir(l, dir, "");
    scan_dir(l, vd_rundir(), ".sock");
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), names_cmp);
}

int admin_pool_volumes(const char *pool, const char *conf_opt,
                       vd_admin_run_fn run, struct names *vols, FILE *err)
{
    char *argv[] = { "vol", "list", (char *)pool, NULL };
    char *text = NULL, *line, *save = NULL;
    size_t len = 0, plen = strlen(pool);
    FILE *f = open_memstream(&text, &len);
    int code;

    vols->n = 0;
    if (!f) {
        admin_msg(err, "pool '%s': out of memory", pool);
        return VD_EXIT_FAIL;
    }
    code = run(pool, conf_opt, 3, argv, f);
    fclose(f);
    /* "POOL/VOL  SIZE ..." per volume, after a header line. */
    for (line = strtok_r(text, "\n", &save); code == VD_EXIT_OK && line;
         line = strtok_r(NULL, "\n", &save)) {
        char *end;
        if (strncmp(line, pool, plen) || line[plen] != '/')
            continue;
        line += plen + 1;
        end = line + strcspn(line, " \t");
        *end = 0;
        if (!vd_name_is_valid(line))
            continue;
        if (names_add(vols, line) < 0) {
            admin_msg(err, "pool '%s': out of memory", pool);
            code = VD_EXIT_FAIL;
        }
    }
    free(text);
    return code;
}

/* Remove RUNDIR/vol/POOL/VOL for every VOL not in keep (NULL: all), and the
 * folder once empty.  Returns how many it could not remove. */
static int prune(const char *pool, const struct names *keep, FILE *err)
{
    char dir[4096], path[4096 + 300];
    struct dirent *d;
    DIR *dp;
    int failed = 0;

    if (vd_activation_path(pool, NULL, dir, sizeof(dir)) < 0)
        return 0;
    if (!(dp = opendir(dir)))
        return 0;
    while ((d = readdir(dp))) {
        if (d->d_name[0] == '.' || (keep && names_has(keep, d->d_name)))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
        if (unlink(path) < 0 && errno != ENOENT) {
            admin_msg(err, "pool '%s': cannot remove %s: %s", pool, path,
                      strerror(errno));
            failed++;
        }
    }
    closedir(dp);
    if (!keep)
        rmdir(dir);
    return failed;
}

/* Activate pool (or one volume of it). */
static int activate_pool(const char *pool, const char *vol,
                         const char *conf_opt, vd_admin_run_fn run, FILE *out,
                         FILE *err)
{
    struct names vols = { 0 };
    int code = admin_pool_volumes(pool, conf_opt, run, &vols, err);
    size_t done = 0;

    if (code != VD_EXIT_OK) {
        admin_msg(err, "pool '%s': not activated", pool);
        free(vols.v);
        return code;
    }
    if (vol && !names_has(&vols, vol)) {
        admin_msg(err,
                  "volume '%s/%s': not found; list volumes with 'vdlvm vol "
                  "list %s'",
                  pool, vol, pool);
        free(vols.v);
        return VD_EXIT_FAIL;
    }
    for (size_t i = 0; i < vols.n; i++) {
        if (vol && strcmp(vol, vols.v[i]))
            continue;
        int r = admin_activate_one(pool, vols.v[i], err);
        if (r != VD_EXIT_OK)
            code = r;
        else
            done++;
    }
    if (!vol && prune(pool, &vols, err))
        code = VD_EXIT_FAIL;
    if (code == VD_EXIT_OK) {
        char dir[4096];
        vd_activation_path(pool, NULL, dir, sizeof(dir));
        fprintf(out, "pool '%s': %zu volume%s activated in %s\n", pool, done,
                done == 1 ? "" : "s", dir);
    }
    free(vols.v);
    return code;
}

/* [POOL[/VOL]] of a host command into pool and vol ("" when absent):
 * 0, or VD_EXIT_USAGE after a message. */
static int split_name(const char *cmd, const char *s, char *pool, char *vol,
                      FILE *err)
{
    const char *slash = strchr(s, '/');
    size_t plen = slash ? (size_t)(slash - s) : strlen(s);

    vol[0] = 0;
    if (plen == 0 || plen > VD_NAME_MAX) {
        admin_msg(err, "%s: '%s' is not a pool name; see 'vdlvm %s --help'",
                  cmd, s, cmd);
        return VD_EXIT_USAGE;
    }
    memcpy(pool, s, plen);
    pool[plen] = 0;
    if (!vd_name_is_valid(pool)) {
        admin_msg(err, "%s: '%s' is not a pool name; see 'vdlvm %s --help'",
                  cmd, pool, cmd);
        return VD_EXIT_USAGE;
    }
    if (slash) {
        if (strlen(slash + 1) > VD_NAME_MAX || !vd_name_is_valid(slash + 1)) {
            admin_msg(err,
                      "%s: '%s' is not a volume name; names are 1-63 of "
                      "A-Z a-z 0-9 _ . -, not starting with . or -",
                      cmd, slash + 1);
            return VD_EXIT_USAGE;
        }
        strcpy(vol, slash + 1);
    }
    return 0;
}

/* activate and deactivate: [POOL[/VOL]] and --help only. */
static int parse_target(int argc, char **argv, const char *help, char *pool,
                        char *vol, FILE *out, FILE *err)
{
    int seen = 0;

    pool[0] = vol[0] = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(help, out);
            return VD_EXIT_OK;
        }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            admin_msg(err, "%s: unknown option '%s'; see 'vdlvm %s --help'",
                      argv[0], argv[i], argv[0]);
            return VD_EXIT_USAGE;
        }
        if (seen++) {
            admin_msg(err,
                      "%s: unexpected argument '%s'; see 'vdlvm %s --help'",
                      argv[0], argv[i], argv[0]);
            return VD_EXIT_USAGE;
        }
        int r = split_name(argv[0], argv[i], pool, vol, err);
        if (r)
            return r;
    }
    return -1;
}

static int cmd_activate(const char *conf_opt, int argc, char **argv,
                        vd_admin_run_fn run, FILE *out, FILE *err)
{
    char pool[VD_NAME_MAX + 1], vol[VD_NAME_MAX + 1];
    struct names pools = { 0 };
    int code = parse_target(argc, argv, g_activate_help, pool, vol, out, err);

    if (code >= 0)
        return code;
    if (pool[0])
        return activate_pool(pool, vol[0] ? vol : NULL, conf_opt, run, out,
                             err);
    if (conf_opt) {
        struct vd_conf_pool *conf = NULL;
        char m[1024] = "";
        int r = vd_conf_load(conf_opt, &conf, m, sizeof(m));
        if (r < 0) {
            admin_msg(err, "%s", m[0] ? m : strerror(-r));
            return VD_EXIT_USAGE;
        }
        snprintf(pool, sizeof(pool), "%s", conf->name);
        vd_conf_free(conf);
        return activate_pool(pool, NULL, conf_opt, run, out, err);
    }
    known_pools(&pools);
    code = VD_EXIT_OK;
    for (size_t i = 0; i < pools.n; i++) {
        int r = activate_pool(pools.v[i], NULL, NULL, run, out, err);
        if (r != VD_EXIT_OK && code != VD_EXIT_USAGE)
            code = r;
    }
    if (!pools.n)
        fprintf(out, "no pools to activate\n");
    free(pools.v);
    return code;
}

static int cmd_deactivate(int argc, char **argv, FILE *out, FILE *err)
{
    char pool[VD_NAME_MAX + 1], vol[VD_NAME_MAX + 1], path[4096];
    struct names pools = { 0 };
    int code = parse_target(argc, argv, g_deactivate_help, pool, vol, out, err);

    if (code >= 0)
        return code;
    code = VD_EXIT_OK;
    if (vol[0]) {
        vd_activation_path(pool, vol, path, sizeof(path));
        if (unlink(path) < 0 && errno != ENOENT) {
            admin_msg(err, "volume '%s/%s': cannot remove %s: %s", pool, vol,
                      path, strerror(errno));
            return VD_EXIT_FAIL;
        }
        fprintf(out, "volume '%s/%s': deactivated\n", pool, vol);
        return VD_EXIT_OK;
    }
    if (pool[0]) {
        names_add(&pools, pool);
    } else {
        snprintf(path, sizeof(path), "%s/vol", vd_rundir());
        scan_dir(&pools, path, "");
    }
    for (size_t i = 0; i < pools.n; i++) {
        if (prune(pools.v[i], NULL, err))
            code = VD_EXIT_FAIL;
        else
            fprintf(out, "pool '%s': deactivated\n", pools.v[i]);
    }
    if (!pool[0]) {
        snprintf(path, sizeof(path), "%s/vol", vd_rundir());
        rmdir(path);
    }
    free(pools.v);
    return code;
}

int vd_admin_host_cmd(const char *conf_opt, int argc, char **argv,
                      vd_admin_run_fn run, FILE *out, FILE *err)
{
    int code;

    if (argc < 1)
        return -1;
    if (!strcmp(argv[0], "activate"))
        code = cmd_activate(conf_opt, argc, argv, run, out, err);
    else if (!strcmp(argv[0], "deactivate"))
        code = cmd_deactivate(argc, argv, out, err);
    else if (!strcmp(argv[0], "export"))
        code = admin_cmd_export(conf_opt, argc, argv, run, out, err);
    else if (!strcmp(argv[0], "unexport"))
        code = admin_cmd_unexport(argc, argv, out, err);
    else
        return -1;
    fflush(out);
    fflush(err);
    return code;
}
