/* vdlvm admin: vdlvm export / unexport, the tgt configuration of a LUN.
 *
 * `vdlvm export POOL/VOL --target IQN` writes a file for tgt's stock
 * tgt-admin (default /etc/tgt/conf.d/vdlvm-POOL-VOL.conf, included by
 * Debian's /etc/tgt/targets.conf) describing the volume as a LUN with
 * bs-type vdlvm and its activation path RUNDIR/vol/POOL/VOL as backing
 * store (see activate.c: tgt-admin exports only paths that exist), and
 * activates the volume.  tgt.service then creates the LUN at every start;
 * `tgt-admin --update` applies it to a running tgtd.
 *
 * The first line of every file written here says which volume, target and
 * LUN it holds ("# vdlvm export POOL/VOL: target IQN lun N"): unexport
 * removes only such a file of that volume, and export picks a LUN number
 * no other such file in the folder uses for the same target (tgt-admin
 * merges blocks of one target from several files).  A file is written
 * whole under a temporary name, then renamed.  Runs in the vdlvm process
 * only (host command); no shared state.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host_int.h"

#define TGT_CONFDIR "/etc/tgt/conf.d"
#define LUN_MAX     16383 /* flat addressing: what every initiator reaches */

static const char *g_export_help =
    "Usage: vdlvm [-c FILE] export POOL/VOL --target IQN [--lun N]\n"
    "             [--initiator-address ADDR] [--conf FILE]\n"
    "\n"
    "Describe volume POOL/VOL as LUN N of iSCSI target IQN in a tgt\n"
    "configuration file (default /etc/tgt/conf.d/vdlvm-POOL-VOL.conf,\n"
    "read by tgt-admin through /etc/tgt/targets.conf), and activate the\n"
    "volume (see 'vdlvm activate --help').  tgt.service exports it at\n"
    "every start; apply it to the running tgtd with\n"
    "'tgt-admin --update IQN' (or 'systemctl reload tgt').  The backing\n"
    "store is the activation path /run/vdlvm/vol/POOL/VOL, with\n"
    "bsopts conf=FILE when the pool's definition is not\n"
    "/etc/vdlvm/POOL.yaml.  Exporting the volume again rewrites its file.\n"
    "\n"
    "  --target IQN                 the target's name (iqn.YYYY-MM.domain:id)\n"
    "  --lun N                      LUN number, 1-16383 (default: the lowest\n"
    "                               one other vdlvm files in the folder do\n"
    "                               not use for IQN)\n"
    "  --initiator-address ADDR     accept only this initiator address\n"
    "                               (default: every initiator)\n"
    "  --conf FILE                  the file to write\n"
    "  -h, --help                   show this help\n";

static const char *g_unexport_help =
    "Usage: vdlvm unexport POOL/VOL [--conf FILE]\n"
    "\n"
    "Remove the tgt configuration file 'vdlvm export' wrote for POOL/VOL\n"
    "(default /etc/tgt/conf.d/vdlvm-POOL-VOL.conf).  The running tgtd keeps\n"
    "the LUN until 'tgt-admin --update IQN' (refused while initiators use\n"
    "the target; -f drops their sessions) or the next start of tgt.service.\n"
    "\n"
    "  --conf FILE    the file to remove\n"
    "  -h, --help     show this help\n";

static const char *confdir(void)
{
    const char *d = getenv("VDLVM_CONFDIR");
    return d && *d ? d : "/etc/vdlvm";
}

static int only_chars(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || strchr(extra, *s)))
            return 0;
    return 1;
}

/* The header of a file written by export: 1 with its fields, else 0. */
static int read_header(const char *path, char *name, size_t nlen, char *iqn,
                       size_t ilen, unsigned *lun)
{
    char line[1024], fmt[64];
    FILE *f = fopen(path, "r");
    int ok = 0;

    if (!f)
        return 0;
    snprintf(fmt, sizeof(fmt),
             "# vdlvm export %%%zu[^:]: target %%%zus lun %%u", nlen - 1,
             ilen - 1);
    if (fgets(line, sizeof(line), f) && sscanf(line, fmt, name, iqn, lun) == 3)
        ok = 1;
    fclose(f);
    return ok;
}

/* Is LUN lun of target iqn used by a file in dir other than self? */
static int lun_taken(const char *dir, const char *self, const char *iqn,
                     unsigned lun, char *who, size_t wlen)
{
    struct dirent *d;
    DIR *dp = opendir(dir);
    int taken = 0;

    if (!dp)
        return 0;
    while (!taken && (d = readdir(dp))) {
        char path[PATH_MAX], rp[PATH_MAX], rself[PATH_MAX], name[160],
            other[256];
        unsigned n;
        size_t len = strlen(d->d_name);
        if (d->d_name[0] == '.' || len < 5 ||
            strcmp(d->d_name + len - 5, ".conf"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
        if (realpath(path, rp) && realpath(self, rself) && !strcmp(rp, rself))
            continue;
        if (read_header(path, name, sizeof(name), other, sizeof(other), &n) &&
            !strcmp(other, iqn) && n == lun) {
            snprintf(who, wlen, "%s (%s)", path, name);
            taken = 1;
        }
    }
    closedir(dp);
    return taken;
}

/* Parses "--opt VALUE" / "--opt=VALUE" at argv[*i] when it names opt:
 * 1 with *val set, 0 when it is another argument, -1 after a message. */
static int opt_val(int argc, char **argv, int *i, const char *opt,
                   const char **val, FILE *err)
{
    size_t n = strlen(opt);
    const char *s = argv[*i];

    if (strncmp(s, opt, n) || (s[n] && s[n] != '='))
        return 0;
    if (*val) {
        admin_msg(err, "%s: option '%s' given twice", argv[0], opt);
        return -1;
    }
    if (s[n] == '=')
        *val = s + n + 1;
    else if (*i + 1 < argc)
        *val = argv[++*i];
    else {
        admin_msg(err, "%s: option '%s' needs a value; see 'vdlvm %s --help'",
                  argv[0], opt, argv[0]);
        return -1;
    }
    return 1;
}

/* POOL/VOL into pool, vol: 0 or VD_EXIT_USAGE after a message. */
static int split_vol(const char *cmd, const char *s, char *pool, char *vol,
                     FILE *err)
{
    const char *slash = strchr(s, '/');

    if (!slash || slash == s || (size_t)(slash - s) > VD_NAME_MAX ||
        strlen(slash + 1) > VD_NAME_MAX) {
        admin_msg(err, "%s: '%s' is not POOL/VOL; see 'vdlvm %s --help'", cmd,
                  s, cmd);
        return VD_EXIT_USAGE;
    }
    memcpy(pool, s, slash - s);
    pool[slash - s] = 0;
    strcpy(vol, slash + 1);
    if (!vd_name_is_valid(pool) || !vd_name_is_valid(vol)) {
        admin_msg(err,
                  "%s: '%s' is not POOL/VOL; names are 1-63 of A-Z a-z 0-9 "
                  "_ . -, not starting with . or -",
                  cmd, s);
        return VD_EXIT_USAGE;
    }
    return 0;
}

/* The definition the module must be told about (bsopts conf=FILE), or ""
 * when it finds it itself (CONFDIR/POOL.yaml).  0 or an exit code. */
static int definition(const char *pool, const char *conf_opt, char *buf,
                      size_t len, FILE *err)
{
    char dflt[PATH_MAX], a[PATH_MAX];

    buf[0] = 0;
    snprintf(dflt, sizeof(dflt), "%s/%s.yaml", confdir(), pool);
    if (conf_opt) {
        if (!realpath(conf_opt, a)) {
            admin_msg(err, "export: -c %s: %s", conf_opt, strerror(errno));
            return VD_EXIT_USAGE;
        }
    } else if (access(dflt, F_OK) == 0) {
        return 0;
    } else if (vd_registry_get(pool, a, sizeof(a)) < 0) {
        /* the pool was found through a tgtd holding it only */
        admin_msg(err,
                  "export: pool '%s': its definition is neither %s nor "
                  "remembered; give it with -c FILE",
                  pool, dflt);
        return VD_EXIT_FAIL;
    }
    char rd[PATH_MAX];
    if (realpath(dflt, rd) && !strcmp(rd, a))
        return 0;
    /* tgt-admin hands bsopts to a shell unquoted and tgt cuts it at ','. */
    if (!only_chars(a, "/._-+@:")) {
        admin_msg(err,
                  "export: pool '%s': definition %s: tgt-admin cannot pass "
                  "this path (only A-Z a-z 0-9 / . _ - + @ : are safe); "
                  "move it, or to %s",
                  pool, a, dflt);
        return VD_EXIT_USAGE;
    }
    if ((size_t)snprintf(buf, len, "%s", a) >= len)
        return VD_EXIT_USAGE;
    return 0;
}

static int write_file(const char *path, const char *text, FILE *err)
{
    char tmp[PATH_MAX + 32];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    f = fopen(tmp, "w");
    if (!f) {
        admin_msg(err, "export: cannot write %s: %s", tmp, strerror(errno));
        return VD_EXIT_FAIL;
    }
    fputs(text, f);
    if (fflush(f) || fsync(fileno(f)) || ferror(f)) {
        admin_msg(err, "export: cannot write %s: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        return VD_EXIT_FAIL;
    }
    fclose(f);
    if (rename(tmp, path) < 0) {
        admin_msg(err, "export: cannot rename %s to %s: %s", tmp, path,
                  strerror(errno));
        unlink(tmp);
        return VD_EXIT_FAIL;
    }
    return VD_EXIT_OK;
}

int admin_cmd_export(const char *conf_opt, int argc, char **argv,
                     vd_admin_run_fn run, FILE *out, FILE *err)
{
    const char *target = NULL, *lun_s = NULL, *addr = NULL, *file = NULL;
    char pool[VD_NAME_MAX + 1] = "", vol[VD_NAME_MAX + 1];
    char path[PATH_MAX], dir[PATH_MAX], def[PATH_MAX], ap[PATH_MAX];
    char name[160], iqn[256], who[PATH_MAX + 200];
    struct names vols = { 0 };
    unsigned lun = 0, old_lun;
    int code, r;

    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(g_export_help, out);
            return VD_EXIT_OK;
        }
    for (int i = 1; i < argc; i++) {
        if ((r = opt_val(argc, argv, &i, "--target", &target, err)) ||
            (r = opt_val(argc, argv, &i, "--lun", &lun_s, err)) ||
            (r = opt_val(argc, argv, &i, "--initiator-address", &addr, err)) ||
            (r = opt_val(argc, argv, &i, "--conf", &file, err))) {
            if (r < 0)
                return VD_EXIT_USAGE;
            continue;
        }
        if (argv[i][0] == '-') {
            admin_msg(err,
                      "export: unknown option '%s'; see 'vdlvm export "
                      "--help'",
                      argv[i]);
            return VD_EXIT_USAGE;
        }
        if (pool[0]) {
            admin_msg(err, "export: unexpected argument '%s'", argv[i]);
            return VD_EXIT_USAGE;
        }
        if ((code = split_vol("export", argv[i], pool, vol, err)))
            return code;
    }
    if (!pool[0] || !target) {
        admin_msg(err, "export: missing %s; see 'vdlvm export --help'",
                  pool[0] ? "--target IQN" : "POOL/VOL");
        return VD_EXIT_USAGE;
    }
    if (strlen(target) > 223 || !only_chars(target, ".:-") ||
        (strncmp(target, "iqn.", 4) && strncmp(target, "eui.", 4) &&
         strncmp(target, "naa.", 4))) {
        admin_msg(err,
                  "export: --target '%s' is not an iSCSI name; give "
                  "iqn.YYYY-MM.reversed.domain:name (a-z 0-9 . : -)",
                  target);
        return VD_EXIT_USAGE;
    }
    if (lun_s) {
        char *end;
        unsigned long n;
        errno = 0;
        n = strtoul(lun_s, &end, 10);
        if (errno || end == lun_s || *end || n < 1 || n > LUN_MAX) {
            admin_msg(err,
                      "export: --lun '%s' is not a LUN number from 1 to %d "
                      "(LUN 0 is tgt's controller)",
                      lun_s, LUN_MAX);
            return VD_EXIT_USAGE;
        }
        lun = (unsigned)n;
    }
    if (addr && (strlen(addr) > 64 || !*addr ||
                 (strcmp(addr, "ALL") && !only_chars(addr, ".:/")))) {
        admin_msg(err,
                  "export: --initiator-address '%s' is not an address; "
                  "give an IPv4 or IPv6 address or network (ADDR/BITS), or "
                  "ALL",
                  addr);
        return VD_EXIT_USAGE;
    }
    if (file)
        snprintf(path, sizeof(path), "%s", file);
    else
        snprintf(path, sizeof(path), "%s/vdlvm-%s-%s.conf", TGT_CONFDIR, pool,
                 vol);
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    if (access(dir, W_OK) < 0) {
        admin_msg(err, "export: cannot write in %s: %s%s", dir, strerror(errno),
                  errno == ENOENT ? "; is tgt installed?" : "");
        return VD_EXIT_FAIL;
    }
    if (access(path, F_OK) == 0) {
        char want[2 * VD_NAME_MAX + 2];
        snprintf(want, sizeof(want), "%s/%s", pool, vol);
        if (!read_header(path, name, sizeof(name), iqn, sizeof(iqn),
                         &old_lun) ||
            strcmp(name, want)) {
            admin_msg(err,
                      "export: %s exists and was not written by 'vdlvm "
                      "export %s'; give another --conf FILE or remove it",
                      path, want);
            return VD_EXIT_FAIL;
        }
    }

    /* The volume must exist; the definition decides the bsopts. */
    code = admin_pool_volumes(pool, conf_opt, run, &vols, err);
    if (code == VD_EXIT_OK) {
        int found = 0;
        for (size_t i = 0; i < vols.n; i++)
            found |= !strcmp(vols.v[i], vol);
        if (!found) {
            admin_msg(err,
                      "volume '%s/%s': not found; list volumes with 'vdlvm "
                      "vol list %s'",
                      pool, vol, pool);
            code = VD_EXIT_FAIL;
        }
    }
    free(vols.v);
    if (code != VD_EXIT_OK)
        return code;
    if ((code = definition(pool, conf_opt, def, sizeof(def), err)))
        return code;

    if (lun && lun_taken(dir, path, target, lun, who, sizeof(who))) {
        admin_msg(err, "export: LUN %u of target %s is already used by %s", lun,
                  target, who);
        return VD_EXIT_FAIL;
    }
    for (unsigned n = 1; !lun && n <= LUN_MAX; n++)
        if (!lun_taken(dir, path, target, n, who, sizeof(who)))
            lun = n;

    if ((code = admin_activate_one(pool, vol, err)))
        return code;
    vd_activation_path(pool, vol, ap, sizeof(ap));

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        admin_msg(err, "export: out of memory");
        return VD_EXIT_FAIL;
    }
    fprintf(f,
            "# vdlvm export %s/%s: target %s lun %u\n"
            "# Written by 'vdlvm export'; 'vdlvm unexport %s/%s' removes it.\n"
            "# The backing store is the volume's activation path (vdlvm "
            "activate,\n"
            "# vdlvm-activate.service); apply: tgt-admin --update %s\n"
            "<target %s>\n"
            "    <backing-store %s>\n"
            "        bs-type vdlvm\n",
            pool, vol, target, lun, pool, vol, target, target, ap);
    if (def[0])
        fprintf(f, "        bsopts conf=%s\n", def);
    fprintf(f, "        lun %u\n    </backing-store>\n", lun);
    if (addr && strcmp(addr, "ALL"))
        fprintf(f, "    initiator-address %s\n", addr);
    fprintf(f, "</target>\n");
    fclose(f);
    if (!text)
        return VD_EXIT_FAIL;
    code = write_file(path, text, err);
    free(text);
    if (code)
        return code;
    fprintf(out,
            "volume '%s/%s': exported as LUN %u of target %s in %s\n"
            "apply it now with 'tgt-admin --update %s' (tgt.service: "
            "'systemctl reload tgt'); a target already in use is updated "
            "only with -f, which drops its sessions\n",
            pool, vol, lun, target, path, target);
    return VD_EXIT_OK;
}

int admin_cmd_unexport(int argc, char **argv, FILE *out, FILE *err)
{
    const char *file = NULL;
    char pool[VD_NAME_MAX + 1] = "", vol[VD_NAME_MAX + 1], path[PATH_MAX];
    char name[160], iqn[256], want[2 * VD_NAME_MAX + 2];
    unsigned lun;
    int code, r;

    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(g_unexport_help, out);
            return VD_EXIT_OK;
        }
    for (int i = 1; i < argc; i++) {
        if ((r = opt_val(argc, argv, &i, "--conf", &file, err))) {
            if (r < 0)
                return VD_EXIT_USAGE;
            continue;
        }
        if (argv[i][0] == '-') {
            admin_msg(err,
                      "unexport: unknown option '%s'; see 'vdlvm "
                      "unexport --help'",
                      argv[i]);
            return VD_EXIT_USAGE;
        }
        if (pool[0]) {
            admin_msg(err, "unexport: unexpected argument '%s'", argv[i]);
            return VD_EXIT_USAGE;
        }
        if ((code = split_vol("unexport", argv[i], pool, vol, err)))
            return code;
    }
    if (!pool[0]) {
        admin_msg(err, "unexport: missing POOL/VOL; see 'vdlvm unexport "
                       "--help'");
        return VD_EXIT_USAGE;
    }
    if (file)
        snprintf(path, sizeof(path), "%s", file);
    else
        snprintf(path, sizeof(path), "%s/vdlvm-%s-%s.conf", TGT_CONFDIR, pool,
                 vol);
    snprintf(want, sizeof(want), "%s/%s", pool, vol);
    if (access(path, F_OK) < 0) {
        admin_msg(err, "volume '%s': not exported in %s: %s", want, path,
                  strerror(errno));
        return VD_EXIT_FAIL;
    }
    if (!read_header(path, name, sizeof(name), iqn, sizeof(iqn), &lun) ||
        strcmp(name, want)) {
        admin_msg(err,
                  "unexport: %s was not written by 'vdlvm export %s'; left "
                  "as it is",
                  path, want);
        return VD_EXIT_FAIL;
    }
    if (unlink(path) < 0) {
        admin_msg(err, "unexport: cannot remove %s: %s", path, strerror(errno));
        return VD_EXIT_FAIL;
    }
    fprintf(out,
            "volume '%s': removed %s (LUN %u of target %s)\n"
            "apply it now with 'tgt-admin --update %s' (refused while "
            "initiators use the target; -f drops their sessions)\n",
            want, path, lun, iqn, iqn);
    return VD_EXIT_OK;
}
