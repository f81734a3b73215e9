/* vdlvm: the admin command.
 *
 * Every pool command but `pool create/list/remove/takeover` first goes to
 * the tgtd that holds the pool (control socket RUNDIR/POOL.sock); only when
 * none serves it does vdlvm load the definition, open the pool itself
 * (taking its lock) and run the same vd_admin_exec.  A definition is found
 * by -c FILE, CONFDIR/POOL.yaml, or the registry (admin/vdadmin.h).
 */
#include <errno.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../admin/vdadmin.h"

static const char *g_usage =
    "Usage: vdlvm [-c FILE] [--partial] COMMAND [ARGS]\n"
    "       vdlvm --version | --help | COMMAND --help\n"
    "\n"
    "vdlvm manages pools of storage devices (local files and block devices,\n"
    "and remote iSCSI LUNs of other servers), cut into extents, and volumes\n"
    "made of extents (linear, or mirrored across devices and nodes), that\n"
    "tgtd exports as iSCSI LUNs (tgtadm ... --bstype vdlvm --backing-store\n"
    "POOL/VOL).\n"
    "\n"
    "Pools:\n"
    "  pool create FILE [--force]      write a new pool defined in FILE\n"
    "  pool list [--json]              every known pool: definition, holder\n"
    "  pool remove POOL [--force] [--purge-definition]\n"
    "  pool takeover POOL              fence the dead owner of a pool of\n"
    "                                  remote devices and take it over\n"
    "  status [POOL[/VOL]] [--json]    devices, volumes, mirror state\n"
    "  stats [POOL[/VOL]] [--json | --prometheus]\n"
    "                                  I/O counters, latency, device state,\n"
    "                                  thin use, resync progress\n"
    "Volumes:\n"
    "  vol create POOL/VOL --size SIZE [--layout linear|mirror] [--copies N]\n"
    "             [--allow-same-node] [--region-size SIZE]\n"
    "  vol list POOL [--json]\n"
    "  vol remove POOL/VOL\n"
    "  vol extend POOL/VOL --size [+]SIZE\n"
    "  vol set POOL/VOL [--iops-limit N] [--bps-limit SIZE] [--burst SECONDS]\n"
    "          [--read-/--write-iops-limit N] [--read-/--write-bps-limit SIZE]\n"
    "  vol revert POOL/VOL@SNAP [--force]\n"
    "  vol import POOL/VOL FILE [--format FMT] [--size SIZE]\n"
    "                                  a thin volume from a disk image\n"
    "  vol export POOL/VOL[@SNAP] FILE [--format FMT] [--force]\n"
    "Snapshots of thin volumes:\n"
    "  snap create POOL/VOL@SNAP       read-only, crash-consistent, instant\n"
    "  snap list POOL/VOL [--json]\n"
    "  snap remove POOL/VOL@SNAP\n"
    "  pool check POOL [--repair]      verify thin chunk references\n"
    "Mirrors:\n"
    "  resync POOL/VOL [--rate LIMIT] [--wait]\n"
    "  verify POOL/VOL [--repair]\n"
    "  vol repair POOL/VOL --replace DEVICE --with DEVICE [--wait]\n"
    "Live pool operations:\n"
    "  pool apply POOL [--dry-run]     devices added to the definition join\n"
    "  dev evacuate POOL/DEV [--to DEV,...] [--rate LIMIT] [--wait]\n"
    "  pool rebalance POOL [--rate LIMIT] [--wait]\n"
    "Encryption (pools with encryption: {key_file: PATH}):\n"
    "  key add POOL --key-file NEW     let the key file NEW open the pool too\n"
    "  key remove POOL --key-file OLD  OLD no longer opens the pool\n"
    "  key rotate POOL --key-file NEW  NEW replaces the definition's key file\n"
    "  vol encrypt POOL/VOL [--rate LIMIT] [--wait]\n"
    "                                  move a volume to encrypted devices\n"
    "Tiering:\n"
    "  tier status POOL/VOL [--json] [--png FILE]\n"
    "  tier run POOL/VOL [--wait] [--dry-run]\n"
    "Boot and /etc/tgt/targets.conf:\n"
    "  activate [POOL[/VOL]]           make /run/vdlvm/vol/POOL/VOL, the path\n"
    "                                  tgt-admin needs, for every volume\n"
    "  deactivate [POOL[/VOL]]         remove those paths\n"
    "  export POOL/VOL --target IQN [--lun N] [--initiator-address ADDR]\n"
    "         [--conf FILE]            describe the volume as a LUN in\n"
    "                                  /etc/tgt/conf.d/vdlvm-POOL-VOL.conf\n"
    "  unexport POOL/VOL [--conf FILE] remove that file\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE  pool definition; default /etc/vdlvm/POOL.yaml\n"
    "                     ($VDLVM_CONFDIR), else the one remembered when the\n"
    "                     pool was created with -c (see 'pool list')\n"
    "  --partial          open a pool even when fewer than a majority of its\n"
    "                     metadata copies are readable (newest readable wins)\n"
    "  --version          vdlvm's version and the tgt it was built for\n"
    "  -h, --help         this help; 'vdlvm COMMAND --help' for a command\n"
    "\n"
    "Sizes: a number of bytes with an optional unit B, KiB, MiB, GiB, TiB\n"
    "(K, M, G, T: the same binary units), e.g. 512, 10GiB, 1.5GiB.\n"
    "Names of pools, volumes and devices: 1-63 of A-Z a-z 0-9 _ . -, not\n"
    "starting with . or -.\n"
    "\n"
    "While a tgtd exports volumes of the pool, commands run inside it through\n"
    "the control socket $VDLVM_RUNDIR/POOL.sock (default /run/vdlvm); else\n"
    "vdlvm opens the pool itself.\n"
    "\n" VD_EXIT_HELP;

static const char *g_pool_create_help =
    "Usage: vdlvm pool create FILE [--force]\n"
    "       vdlvm -c FILE pool create [--force]\n"
    "\n"
    "Write a new pool, defined by the YAML file FILE, to every device it\n"
    "lists: device headers and metadata.  Files that do not exist are\n"
    "created sparse with the size given in FILE.  Every device is checked\n"
    "before any is written; on failure nothing is changed.\n"
    "\n"
    "A device is refused when it holds anything: a file system, partition\n"
    "table, RAID or LVM signature (libblkid), non-zero bytes in its first\n"
    "MiB, or another vdlvm pool.  The message says what was found.\n"
    "\n"
    "A FILE outside /etc/vdlvm is remembered (a link in\n"
    "/var/lib/vdlvm/pools, $VDLVM_STATEDIR), so that later commands find\n"
    "the pool by name without -c.\n"
    "\n"
    "  --force       overwrite what was found (destroys that data)\n"
    "  -h, --help    show this help\n";

static const char *g_pool_list_help =
    "Usage: vdlvm pool list [--json]\n"
    "\n"
    "List every known pool: those defined in /etc/vdlvm ($VDLVM_CONFDIR),\n"
    "those remembered from 'pool create -c FILE' or an export with\n"
    "--bsopts conf=FILE (/var/lib/vdlvm/pools), and those a running tgtd\n"
    "holds.  Columns: pool, definition file, holder (the tgtd serving it).\n"
    "\n"
    "  --json        {\"pools\":[{\"pool\":..,\"definition\":..,\"held_by\":..}]}\n";

static const char *g_pool_remove_help =
    "Usage: vdlvm [-c FILE] pool remove POOL [--force] [--purge-definition]\n"
    "\n"
    "Remove a pool: zero the vdlvm header and metadata of every device, so\n"
    "that the devices are free for a new pool (data areas are not\n"
    "overwritten; files are not deleted), and forget the pool.  Refused\n"
    "while a tgtd holds the pool (delete its LUNs first) and while the\n"
    "pool has volumes.\n"
    "\n"
    "  --force             remove the pool with its volumes (their data is\n"
    "                      lost)\n"
    "  --purge-definition  also delete the definition file\n"
    "  -h, --help          show this help\n";

static const char *g_pool_takeover_help =
    "Usage: vdlvm [-c FILE] pool takeover POOL\n"
    "\n"
    "For a pool of remote devices whose owner (the host that held it) is\n"
    "dead: preempt the owner's persistent reservation on every remote\n"
    "device and take the devices for this host, so that the old owner's\n"
    "writes fail from now on (fencing).  The pool is not opened; export\n"
    "its volumes here afterwards.  Never use it while the owner runs.\n";

/* Set once in main. */
static unsigned g_open_flags; /* VD_OPEN_PARTIAL with --partial */

static const char *confdir(void)
{
    const char *d = getenv("VDLVM_CONFDIR");
    return d && *d ? d : "/etc/vdlvm";
}

/* Load a definition; prints the config library's message.  2 on error. */
static int load_conf(const char *path, struct vd_conf_pool **conf)
{
    char err[1024] = "";
    int r = vd_conf_load(path, conf, err, sizeof(err));

    if (r < 0) {
        if (!*err)
            snprintf(err, sizeof(err), "%s: %s", path, strerror(-r));
        fprintf(stderr, "vdlvm: %s\n", err);
        return VD_EXIT_USAGE;
    }
    return 0;
}

static int open_pool(const struct vd_conf_pool *conf, vd_pool **pool)
{
    int r = vd_pool_open_flags(conf, g_open_flags, pool);
    /* tiering: the definition's device tiers and settings (pool/tier.c);
     * a failure is logged and leaves the pool as it was */
    if (r == 0)
        vd_tier_configure(*pool, conf);
    return r;
}

/* ---- pools known by name ------------------------------------------------ */

struct known {
    char name[VD_NAME_MAX + 1];
    char def[4096]; /* definition file, "" when unknown */
    char where[16]; /* "confdir", "registry", "" */
};

struct known_list {
    struct known *v;
    size_t n, cap;
};

static struct known *known_find(struct known_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name))
            return &l->v[i];
    return NULL;
}

static struct known *known_add(struct known_list *l, const char *name)
{
    struct known *k = known_find(l, name);

    if (k)
        return k;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        struct known *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    k = &l->v[l->n++];
    memset(k, 0, sizeof(*k));
    snprintf(k->name, sizeof(k->name), "%s", name);
    return k;
}

static int known_cmp(const void *a, const void *b)
{
    return strcmp(((const struct known *)a)->name,
                  ((const struct known *)b)->name);
}

/* name.ext in dir -> name when ext matches and name is a valid pool name */
static int entry_name(const char *ent, const char *ext, char *name, size_t len)
{
    size_t n = strlen(ent), e = strlen(ext);

    if (n <= e || strcmp(ent + n - e, ext) || n - e >= len)
        return 0;
    memcpy(name, ent, n - e);
    name[n - e] = 0;
    return vd_name_is_valid(name);
}

/* Every known pool: definitions in confdir, the registry, live sockets. */
static void known_pools(struct known_list *l)
{
    char dir[4096], name[VD_NAME_MAX + 2];
    DIR *d;
    struct dirent *e;

    if ((d = opendir(confdir()))) {
        while ((e = readdir(d)))
            if (entry_name(e->d_name, ".yaml", name, sizeof(name))) {
                struct known *k = known_add(l, name);
                if (k) {
                    snprintf(k->def, sizeof(k->def), "%s/%s", confdir(),
                             e->d_name);
                    snprintf(k->where, sizeof(k->where), "confdir");
                }
            }
        closedir(d);
    }
    snprintf(dir, sizeof(dir), "%s/pools", vd_statedir());
    if ((d = opendir(dir))) {
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || !vd_name_is_valid(e->d_name))
                continue;
            struct known *k = known_find(l, e->d_name);
            if (k && k->def[0])
                continue; /* confdir first */
            k = known_add(l, e->d_name);
            if (k && vd_registry_get(e->d_name, k->def, sizeof(k->def)) == 0)
                snprintf(k->where, sizeof(k->where), "registry");
        }
        closedir(d);
    }
    if ((d = opendir(vd_rundir()))) {
        while ((e = readdir(d)))
            if (entry_name(e->d_name, ".sock", name, sizeof(name)) &&
                !known_find(l, name)) {
                /* held by a tgtd, definition not remembered */
                struct stat st;
                char path[4096 + 300];
                snprintf(path, sizeof(path), "%s/%s", vd_rundir(), e->d_name);
                if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                    known_add(l, name);
            }
        closedir(d);
    }
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), known_cmp);
}

/* "a, b, c" of the known pools, or "none". */
static void known_names(char *buf, size_t len)
{
    struct known_list l = { 0 };
    size_t n = 0;

    known_pools(&l);
    buf[0] = 0;
    for (size_t i = 0; i < l.n && n < len; i++)
        n += snprintf(buf + n, len - n, "%s%s", i ? ", " : "", l.v[i].name);
    if (!l.n)
        snprintf(buf, len, "none");
    free(l.v);
}

/* pid of the process serving pool name's control socket, 0 if none. */
static pid_t socket_holder(const char *name)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    pid_t pid = 0;
    int fd;

    if (vd_ctl_path(name, sa.sun_path, sizeof(sa.sun_path)) < 0)
        return 0;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
        pid = cred.pid > 0 ? cred.pid : 1;
    else if (errno == EAGAIN || errno == EACCES)
        pid = 1; /* somebody serves it; we cannot tell who */
    close(fd);
    return pid;
}

static void holder_str(pid_t pid, char *buf, size_t len)
{
    char path[64], comm[64] = "";
    FILE *f;

    if (pid <= 1) {
        snprintf(buf, len, pid ? "a running process" : "-");
        return;
    }
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    if ((f = fopen(path, "r"))) {
        if (fgets(comm, sizeof(comm), f))
            comm[strcspn(comm, "\n")] = 0;
        fclose(f);
    }
    snprintf(buf, len, "%s pid %d", comm[0] ? comm : "process", (int)pid);
}

/* The definition of pool name: -c FILE, else confdir/NAME.yaml, else the
 * registry.  Loads it into *conf and checks that it defines name.  Returns
 * 0, or an exit code with a message printed ("no such pool" names the
 * known ones). */
static int find_conf(const char *name, const char *conf_opt,
                     struct vd_conf_pool **conf)
{
    char path[4096], names[1024];
    int r;

    if (conf_opt) {
        if ((r = load_conf(conf_opt, conf)) != 0)
            return r;
    } else {
        snprintf(path, sizeof(path), "%s/%s.yaml", confdir(), name);
        if (access(path, F_OK) < 0 &&
            vd_registry_get(name, path, sizeof(path)) < 0) {
            known_names(names, sizeof(names));
            fprintf(stderr,
                    "vdlvm: pool '%s': no such pool (no %s/%s.yaml, "
                    "none remembered, no tgtd holds it); known pools: %s; "
                    "give its definition with -c FILE\n",
                    name, confdir(), name, names);
            return VD_EXIT_FAIL;
        }
        if ((r = load_conf(path, conf)) != 0)
            return r;
    }
    if (strcmp((*conf)->name, name)) {
        fprintf(stderr,
                "vdlvm: %s: defines pool '%s', not '%s'; give the "
                "definition of '%s' with -c FILE\n",
                (*conf)->file ? (*conf)->file : conf_opt, (*conf)->name, name,
                name);
        vd_conf_free(*conf);
        *conf = NULL;
        return VD_EXIT_USAGE;
    }
    return 0;
}

/* resync and vol repair without --wait: they start background work. */
static int needs_wait(int argc, char **argv)
{
    int i = 0;

    if (!strcmp(argv[0], "resync"))
        i = 1;
    else if (argc > 1 && !strcmp(argv[0], "vol") && !strcmp(argv[1], "repair"))
        i = 2;
    else if (argc > 1 && !strcmp(argv[0], "dev") &&
             !strcmp(argv[1], "evacuate"))
        i = 2;
    else if (argc > 1 && !strcmp(argv[0], "pool") &&
             !strcmp(argv[1], "rebalance"))
        i = 2;
    else if (argc > 1 && !strcmp(argv[0], "tier") && !strcmp(argv[1], "run"))
        i = 2; /* the pass's moves run in this process's background */
    else if (argc > 1 && !strcmp(argv[0], "vol") && !strcmp(argv[1], "encrypt"))
        i = 2; /* vol encrypt's moves too */
    else
        return 0;
    for (; i < argc; i++)
        if (!strcmp(argv[i], "--wait") || !strcmp(argv[i], "--") ||
            !strcmp(argv[i], "--dry-run"))
            return 0;
    return 1;
}

static int has_arg(int argc, char **argv, const char *a)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], a))
            return 1;
    return 0;
}

/* Run argv (starting at the command word) against pool `name`: through the
 * control socket when a tgtd serves it, else locally with the definition
 * (find_conf).  A -c FILE is checked first, even when a tgtd serves the
 * pool.  Returns a VD_EXIT_* code. */
static int run_on_pool(const char *name, const char *conf_opt, int argc,
                       char **argv, FILE *out)
{
    struct vd_conf_pool *conf = NULL;
    vd_pool *pool = NULL;
    char sock[256];
    int code, r;

    if (conf_opt) {
        if ((r = find_conf(name, conf_opt, &conf)) != 0)
            return r;
    }
    r = vd_ctl_call_progress(name, argc, argv, out, stderr, &code);
    if (r == 0) {
        vd_conf_free(conf);
        return code;
    }
    if (r != -ENOENT && r != -ECONNREFUSED) {
        vd_conf_free(conf);
        if (vd_ctl_path(name, sock, sizeof(sock)) < 0)
            snprintf(sock, sizeof(sock), "%s/%s.sock", vd_rundir(), name);
        if (r == -EACCES || r == -EPERM)
            fprintf(stderr,
                    "vdlvm: pool '%s': control socket %s: %s; run "
                    "vdlvm as root\n",
                    name, sock, strerror(-r));
        else if (r == -ETIMEDOUT)
            fprintf(stderr,
                    "vdlvm: pool '%s': control socket %s: no answer "
                    "from the tgtd holding the pool; check that it runs\n",
                    name, sock);
        else if (r == -EPROTO || r == -EPIPE || r == -ECONNRESET)
            fprintf(stderr,
                    "vdlvm: pool '%s': control socket %s: the tgtd "
                    "holding the pool closed the connection without a "
                    "complete reply; see its log\n",
                    name, sock);
        else
            fprintf(stderr, "vdlvm: pool '%s': control socket %s: %s\n", name,
                    sock, strerror(-r));
        return VD_EXIT_FAIL;
    }

    /* Nobody serves the pool: open it here. */
    if (!conf && (r = find_conf(name, NULL, &conf)) != 0)
        return r;
    r = open_pool(conf, &pool);
    if (r < 0) {
        vd_conf_free(conf);
        return vd_exit_code(r);
    }
    /* The resync runs in the background of the process holding the pool,
     * and this one closes it on exit: wait for it here. */
    char **wargv = NULL;
    if (needs_wait(argc, argv)) {
        wargv = calloc(argc + 2, sizeof(*wargv));
        if (wargv) {
            memcpy(wargv, argv, argc * sizeof(*wargv));
            wargv[argc++] = "--wait";
            argv = wargv;
            fprintf(
                stderr,
                "vdlvm: pool '%s': no tgtd holds the pool, so "
                "this command waits for the %s it starts%s\n",
                name,
                strcmp(argv[0], "tier") && strcmp(argv[1], "encrypt") ? "resync"
                                                                      : "moves",
                has_arg(argc, argv, "--rate") || has_arg(argc, argv, "--rate=")
                    ? " (the rate limit applies to it only: it is not "
                      "kept once vdlvm exits)"
                    : "");
        }
    }
    code = vd_admin_exec(pool, argc, argv, out, stderr);
    free(wargv);
    vd_pool_close(pool);
    vd_conf_free(conf);
    return code;
}

/* What a device definition names, for messages: path, URL or RBD image. */
static const char *dev_where(const struct vd_conf_dev *c)
{
    return c->path        ? c->path
           : c->iscsi_url ? c->iscsi_url
           : c->rbd_image ? c->rbd_image
                          : "?";
}

/* Local device paths must be files or block devices (or not exist yet):
 * 2 with FILE:LINE otherwise. */
static int check_dev_types(const struct vd_conf_pool *conf)
{
    for (size_t i = 0; i < conf->ndevs; i++) {
        const struct vd_conf_dev *c = &conf->devs[i];
        struct stat st;
        if (!c->path || stat(c->path, &st) < 0)
            continue;
        if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
            continue;
        fprintf(stderr,
                "vdlvm: %s:%d:%d: device '%s': %s is %s, not a file "
                "or block device; fix its path\n",
                conf->file, c->line, c->column, c->name, c->path,
                S_ISDIR(st.st_mode)    ? "a directory"
                : S_ISCHR(st.st_mode)  ? "a character device"
                : S_ISFIFO(st.st_mode) ? "a FIFO"
                : S_ISSOCK(st.st_mode) ? "a socket"
                                       : "a special file");
        return VD_EXIT_USAGE;
    }
    return 0;
}

/* Foreign data on the devices: refuse without --force (nothing written),
 * say what is overwritten with it.  0 or an exit code. */
static int check_foreign(const struct vd_conf_pool *conf, int force)
{
    int found = 0, failed = 0;

    for (size_t i = 0; i < conf->ndevs; i++) {
        const struct vd_conf_dev *c = &conf->devs[i];
        const char *where = dev_where(c);
        char what[512];
        int r = vd_dev_probe_foreign(c, what, sizeof(what));
        if (r < 0) {
            fprintf(stderr,
                    "vdlvm: device '%s' (%s): cannot check it for "
                    "data: %s\n",
                    c->name, where, what[0] ? what : strerror(-r));
            /* e.g. -EBUSY: another host holds the remote LUN (4) */
            if (vd_exit_code(r) > failed)
                failed = vd_exit_code(r);
        } else if (r > 0 && force) {
            fprintf(stderr,
                    "vdlvm: warning: device '%s' (%s): overwriting "
                    "%s (--force)\n",
                    c->name, where, what);
        } else if (r > 0) {
            fprintf(stderr,
                    "vdlvm: %s:%d:%d: device '%s' (%s) holds %s; "
                    "refusing to overwrite it; check the path, wipe the "
                    "device (wipefs -a, or zero its first MiB) or give "
                    "--force\n",
                    conf->file, c->line, c->column, c->name, where, what);
            found++;
        }
    }
    if (failed)
        return failed;
    if (found) {
        fprintf(stderr,
                "vdlvm: pool '%s': not created; nothing was "
                "written\n",
                conf->name);
        return VD_EXIT_FAIL;
    }
    return 0;
}

/* Remember a definition outside confdir (pool create -c FILE). */
static void remember(const struct vd_conf_pool *conf, const char *file)
{
    char path[4096], a[4096], b[4096];
    int r;

    snprintf(path, sizeof(path), "%s/%s.yaml", confdir(), conf->name);
    if (realpath(path, a) && realpath(file, b) && !strcmp(a, b)) {
        vd_registry_remove(conf->name);
        return;
    }
    if (access(path, F_OK) == 0)
        fprintf(stderr,
                "vdlvm: warning: pool '%s': %s also exists; commands "
                "without -c use that one\n",
                conf->name, path);
    r = vd_registry_add(conf->name, file);
    if (r < 0)
        fprintf(stderr,
                "vdlvm: warning: pool '%s': cannot remember its "
                "definition in %s/pools: %s; give -c %s to later commands\n",
                conf->name, vd_statedir(), strerror(-r), file);
}

static int cmd_pool_create(const char *conf_opt, int argc, char **argv)
{
    const char *file = NULL;
    struct vd_conf_pool *conf = NULL;
    vd_pool *pool = NULL;
    int force = 0, r;

    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(g_pool_create_help, stdout);
            return VD_EXIT_OK;
        }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--force")) {
            force = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr,
                    "vdlvm: pool create: unknown option '%s'; see "
                    "'vdlvm pool create --help'\n",
                    argv[i]);
            return VD_EXIT_USAGE;
        } else if (file) {
            fprintf(stderr,
                    "vdlvm: pool create: unexpected argument '%s'; "
                    "see 'vdlvm pool create --help'\n",
                    argv[i]);
            return VD_EXIT_USAGE;
        } else {
            file = argv[i];
        }
    }
    if (file && conf_opt && strcmp(file, conf_opt)) {
        fprintf(stderr,
                "vdlvm: pool create: both FILE '%s' and -c '%s' "
                "given; give one\n",
                file, conf_opt);
        return VD_EXIT_USAGE;
    }
    if (!file)
        file = conf_opt;
    if (!file) {
        fprintf(stderr, "vdlvm: pool create: missing FILE (the pool "
                        "definition); see 'vdlvm pool create --help'\n");
        return VD_EXIT_USAGE;
    }
    if ((r = load_conf(file, &conf)) != 0)
        return r;
    pid_t holder = socket_holder(conf->name);
    if (holder) {
        char sock[256] = "", h[128];
        vd_ctl_path(conf->name, sock, sizeof(sock));
        holder_str(holder, h, sizeof(h));
        fprintf(stderr,
                "vdlvm: pool '%s': in use by a running tgtd (%s, "
                "control socket %s); delete its LUNs and stop it before "
                "re-creating the pool\n",
                conf->name, h, sock);
        vd_conf_free(conf);
        return VD_EXIT_BUSY;
    }
    if ((r = check_dev_types(conf)) != 0 ||
        (r = check_foreign(conf, force)) != 0) {
        vd_conf_free(conf);
        return r;
    }
    r = vd_pool_create(conf, force);
    if (r < 0) {
        vd_conf_free(conf);
        return vd_exit_code(r);
    }
    remember(conf, file);
    if (vd_pool_open(conf, &pool) == 0) {
        vd_tier_configure(pool, conf); /* tiering: device tiers */
        struct vd_pool_info pi;
        char sz[32], es[32];
        if (vd_pool_get_info(pool, &pi) == 0) {
            vd_size_format(pi.total_bytes, sz, sizeof(sz));
            vd_size_format(pi.extent_size, es, sizeof(es));
            printf("pool '%s': created on %u devices, %s in %llu extents of "
                   "%s\n",
                   pi.name, pi.ndevs, sz,
                   (unsigned long long)(pi.total_bytes / pi.extent_size), es);
        }
        vd_pool_close(pool);
    } else {
        printf("pool '%s': created on %zu devices\n", conf->name, conf->ndevs);
    }
    vd_conf_free(conf);
    return VD_EXIT_OK;
}

static void jstr(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = *s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int cmd_pool_list(int argc, char **argv)
{
    struct known_list l = { 0 };
    int json = 0;

    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(g_pool_list_help, stdout);
            return VD_EXIT_OK;
        }
        if (!strcmp(argv[i], "--json")) {
            json = 1;
            continue;
        }
        fprintf(stderr,
                "vdlvm: pool list: unexpected argument '%s'; see "
                "'vdlvm pool list --help'\n",
                argv[i]);
        return VD_EXIT_USAGE;
    }
    known_pools(&l);
    if (json)
        fputs("{\"pools\":[", stdout);
    else if (l.n)
        printf("%-20s %-10s %-24s %s\n", "POOL", "FROM", "HELD BY",
               "DEFINITION");
    else
        printf("no pools: none defined in %s, none remembered in %s/pools, "
               "none held by a tgtd\n",
               confdir(), vd_statedir());
    for (size_t i = 0; i < l.n; i++) {
        struct known *k = &l.v[i];
        char h[128];
        pid_t pid = socket_holder(k->name);
        holder_str(pid, h, sizeof(h));
        if (json) {
            fputs(i ? ",{\"pool\":" : "{\"pool\":", stdout);
            jstr(stdout, k->name);
            fputs(",\"definition\":", stdout);
            if (k->def[0])
                jstr(stdout, k->def);
            else
                fputs("null", stdout);
            fputs(",\"from\":", stdout);
            jstr(stdout, k->where[0] ? k->where : "tgtd");
            fputs(",\"held_by\":", stdout);
            if (pid)
                jstr(stdout, h);
            else
                fputs("null", stdout);
            fputs(pid > 1 ? "," : "", stdout);
            if (pid > 1)
                printf("\"holder_pid\":%d", (int)pid);
            fputs("}", stdout);
        } else {
            printf("%-20s %-10s %-24s %s\n", k->name,
                   k->where[0] ? k->where : "tgtd", h,
                   k->def[0] ? k->def : "(not known: held by a tgtd)");
        }
    }
    if (json)
        fputs("]}\n", stdout);
    free(l.v);
    return VD_EXIT_OK;
}

static int cmd_pool_remove(const char *conf_opt, int argc, char **argv)
{
    const char *name = NULL;
    int force = 0, purge = 0, r, code = VD_EXIT_OK;
    struct vd_conf_pool *conf = NULL;
    vd_pool *pool = NULL;
    char def[4096] = "", h[128];

    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(g_pool_remove_help, stdout);
            return VD_EXIT_OK;
        }
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--force"))
            force = 1;
        else if (!strcmp(argv[i], "--purge-definition"))
            purge = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr,
                    "vdlvm: pool remove: unknown option '%s'; see "
                    "'vdlvm pool remove --help'\n",
                    argv[i]);
            return VD_EXIT_USAGE;
        } else if (name) {
            fprintf(stderr, "vdlvm: pool remove: unexpected argument '%s'\n",
                    argv[i]);
            return VD_EXIT_USAGE;
        } else
            name = argv[i];
    }
    if (!name || !vd_name_is_valid(name)) {
        fprintf(stderr,
                "vdlvm: pool remove: %s%s%s; see 'vdlvm pool remove "
                "--help'\n",
                name ? "'" : "missing POOL", name ? name : "",
                name ? "' is not a pool name" : "");
        return VD_EXIT_USAGE;
    }
    pid_t pid = socket_holder(name);
    if (pid) {
        holder_str(pid, h, sizeof(h));
        fprintf(stderr,
                "vdlvm: pool '%s': held by %s, which exports its "
                "volumes; delete those LUNs (tgtadm --op delete) before "
                "removing the pool\n",
                name, h);
        return VD_EXIT_BUSY;
    }
    if ((r = find_conf(name, conf_opt, &conf)) != 0)
        return r;
    r = open_pool(conf, &pool);
    if (r < 0) {
        if (r != -EBUSY && force) {
            fprintf(stderr,
                    "vdlvm: warning: pool '%s': cannot be opened; "
                    "wiping its devices anyway (--force)\n",
                    name);
        } else {
            vd_conf_free(conf);
            return vd_exit_code(r);
        }
    } else {
        int n = vd_pool_vol_count(pool);
        if (n > 0 && !force) {
            fprintf(stderr,
                    "vdlvm: pool '%s': has %d volume%s; remove them "
                    "('vdlvm vol list %s') or give --force (their data is "
                    "lost)\n",
                    name, n, n == 1 ? "" : "s", name);
            vd_pool_close(pool);
            vd_conf_free(conf);
            return VD_EXIT_FAIL;
        }
        vd_pool_close(pool);
    }
    int wiped = 0;
    for (size_t i = 0; i < conf->ndevs; i++) {
        const struct vd_conf_dev *c = &conf->devs[i];
        char m[512];
        r = vd_dev_wipe_header(c, m, sizeof(m));
        if (r == 0)
            wiped++;
        else if (r == -ENODATA || r == -ENOENT)
            fprintf(stderr,
                    "vdlvm: warning: device '%s' (%s): %s; left as "
                    "it is\n",
                    c->name, dev_where(c), m);
        else {
            fprintf(stderr, "vdlvm: device '%s' (%s): %s\n", c->name,
                    dev_where(c), m);
            code = vd_exit_code(r);
        }
    }
    if (code != VD_EXIT_OK) {
        fprintf(stderr,
                "vdlvm: pool '%s': not every device was wiped; "
                "run the command again when they are reachable\n",
                name);
        vd_conf_free(conf);
        return code;
    }
    if (conf->file)
        snprintf(def, sizeof(def), "%s", conf->file);
    vd_registry_remove(name);
    /* Leftovers of the pool in the run directory. */
    char p[4096 + 80];
    snprintf(p, sizeof(p), "%s/%s.lock", vd_rundir(), name);
    unlink(p);
    if (purge && def[0]) {
        if (unlink(def) < 0)
            fprintf(stderr,
                    "vdlvm: warning: pool '%s': cannot delete its "
                    "definition %s: %s\n",
                    name, def, strerror(errno));
    }
    printf("pool '%s': removed; vdlvm header and metadata zeroed on %d "
           "device%s; definition %s %s\n",
           name, wiped, wiped == 1 ? "" : "s", def[0] ? def : "(none)",
           purge ? "deleted" : "kept (delete it or give --purge-definition)");
    vd_conf_free(conf);
    return VD_EXIT_OK;
}

static int cmd_pool_takeover(const char *conf_opt, int argc, char **argv)
{
    const char *name = NULL;
    struct vd_conf_pool *conf = NULL;
    int r;

    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(g_pool_takeover_help, stdout);
            return VD_EXIT_OK;
        }
        if (argv[i][0] == '-' || name) {
            fprintf(stderr,
                    "vdlvm: pool takeover: unexpected argument '%s'; "
                    "see 'vdlvm pool takeover --help'\n",
                    argv[i]);
            return VD_EXIT_USAGE;
        }
        name = argv[i];
    }
    if (!name || !vd_name_is_valid(name)) {
        fprintf(stderr, "vdlvm: pool takeover: missing or bad POOL; see "
                        "'vdlvm pool takeover --help'\n");
        return VD_EXIT_USAGE;
    }
    if ((r = find_conf(name, conf_opt, &conf)) != 0)
        return r;
    if (socket_holder(name)) {
        fprintf(stderr,
                "vdlvm: pool '%s': a tgtd on this host holds it; "
                "takeover is for a pool whose owner is another, dead host\n",
                name);
        vd_conf_free(conf);
        return VD_EXIT_BUSY;
    }
    r = vd_pool_takeover(conf);
    vd_conf_free(conf);
    if (r < 0)
        return vd_exit_code(r);
    printf("pool '%s': taken over; the previous owner can no longer write "
           "to its remote devices\n",
           name);
    return VD_EXIT_OK;
}

/* Runs one pool's status into a buffer, so that several pools make one
 * document. */
static int status_one(const char *name, const char *conf_path, int argc,
                      char **argv, char **text)
{
    size_t len = 0;
    FILE *f = open_memstream(text, &len);
    int code;

    if (!f) {
        fprintf(stderr, "vdlvm: status: out of memory\n");
        return VD_EXIT_FAIL;
    }
    code = run_on_pool(name, conf_path, argc, argv, f);
    fclose(f);
    return code;
}

/* `status` or `stats` without POOL: the -c pool, or every known pool. */
static int cmd_status_all(const char *conf_opt, int argc, char **argv)
{
    struct known_list l = { 0 };
    int json = 0, prom = 0, worst = VD_EXIT_OK, shown = 0;
    char **proms = NULL;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        if (!strcmp(argv[i], "--prometheus"))
            prom = 1;
    }
    if (conf_opt) {
        struct vd_conf_pool *conf = NULL;
        int r = load_conf(conf_opt, &conf);
        if (r)
            return r;
        struct known *k = known_add(&l, conf->name);
        if (k)
            snprintf(k->def, sizeof(k->def), "%s", conf_opt);
        vd_conf_free(conf);
    } else {
        known_pools(&l);
    }
    if (prom && !(proms = calloc(l.n + 1, sizeof(*proms)))) {
        fprintf(stderr, "vdlvm: stats: out of memory\n");
        free(l.v);
        return VD_EXIT_FAIL;
    }
    if (json)
        fputs("{\"pools\":[", stdout);
    for (size_t i = 0; i < l.n; i++) {
        struct known *k = &l.v[i];
        char *text = NULL;
        int code =
            status_one(k->name, k->def[0] ? k->def : NULL, argc, argv, &text);
        if (code > worst && worst != VD_EXIT_USAGE)
            worst = code;
        if (prom) {
            proms[i] = code == 0 ? text : NULL;
            if (code != 0)
                free(text);
            continue; /* joined below: one block per metric */
        }
        if (code == 0 && text && *text) {
            size_t n = strlen(text);
            if (json) {
                while (n && text[n - 1] == '\n')
                    n--;
                printf("%s%.*s", shown ? "," : "", (int)n, text);
            } else {
                printf("%s%s", shown ? "\n" : "", text);
            }
            shown++;
        }
        free(text);
    }
    if (prom) {
        size_t k = 0;
        for (size_t i = 0; i < l.n; i++)
            if (proms[i])
                proms[k++] = proms[i];
        if (vd_prom_merge(proms, k, stdout) < 0) {
            fprintf(stderr, "vdlvm: stats: out of memory\n");
            worst = VD_EXIT_FAIL;
        }
        for (size_t i = 0; i < k; i++)
            free(proms[i]);
        free(proms);
    }
    if (json)
        fputs("]}\n", stdout);
    else if (l.n == 0 && !prom)
        printf("no pools: none defined in %s, none remembered in %s/pools, "
               "none held by a tgtd\n",
               confdir(), vd_statedir());
    free(l.v);
    return worst;
}

static void print_version(void)
{
    char line[128] = "";
    FILE *f;

    printf("vdlvm %s\n", VD_VERSION);
    printf("bs_vdlvm.so built for tgt %s\n", VD_TGT_VERSION);
    /* What is installed now (a tgt upgrade needs a rebuild). */
    f = popen("tgtd --version 2>/dev/null", "r");
    if (f) {
        if (fgets(line, sizeof(line), f))
            line[strcspn(line, "\n")] = 0;
        pclose(f);
    }
    printf("installed tgtd: %s\n", line[0] ? line : "not found");
}

int main(int argc, char **argv)
{
    const char *conf_opt = NULL;
    char *args[argc + 1]; /* argv is bounded by the kernel's ARG_MAX */
    char pool_name[VD_NAME_MAX + 1];
    int n = 0, i, code, cmd_seen = 0;

    memset(args, 0, sizeof(args));
    vd_admin_log_init(NULL);
    /* -c and --partial may stand before or after the command: they are
     * never command options, so they are taken out here. */
    for (i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--")) {
            while (i < argc)
                args[n++] = argv[i++];
            break;
        }
        if (!strcmp(s, "-c") || !strcmp(s, "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr,
                        "vdlvm: option '%s' needs a FILE; see 'vdlvm "
                        "--help'\n",
                        s);
                return VD_EXIT_USAGE;
            }
            if (conf_opt) {
                fprintf(stderr, "vdlvm: option -c given twice\n");
                return VD_EXIT_USAGE;
            }
            conf_opt = argv[++i];
            continue;
        }
        if (!strncmp(s, "--config=", 9) || (!strncmp(s, "-c", 2) && s[2])) {
            if (conf_opt) {
                fprintf(stderr, "vdlvm: option -c given twice\n");
                return VD_EXIT_USAGE;
            }
            conf_opt = s[1] == '-' ? s + 9 : s + 2;
            continue;
        }
        if (!strcmp(s, "--partial")) {
            g_open_flags |= VD_OPEN_PARTIAL;
            continue;
        }
        if (!cmd_seen && (!strcmp(s, "--version") || !strcmp(s, "-V"))) {
            print_version();
            return VD_EXIT_OK;
        }
        if (!cmd_seen && s[0] == '-') {
            if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
                fputs(g_usage, stdout);
                return VD_EXIT_OK;
            }
            fprintf(stderr, "vdlvm: unknown option '%s'; see 'vdlvm --help'\n",
                    s);
            return VD_EXIT_USAGE;
        }
        cmd_seen = 1;
        args[n++] = argv[i];
    }
    if (conf_opt && !*conf_opt) {
        fprintf(stderr, "vdlvm: option -c needs a FILE\n");
        return VD_EXIT_USAGE;
    }
    if (n == 0) {
        fputs(g_usage, stderr);
        return VD_EXIT_USAGE;
    }
    if (!strcmp(args[0], "help")) {
        if (n == 1) {
            fputs(g_usage, stdout);
            return VD_EXIT_OK;
        }
        /* `vdlvm help vol create` = `vdlvm vol create --help` */
        args[0] = args[1];
        args[1] = n > 2 ? args[2] : "--help";
        args[2] = n > 2 ? "--help" : NULL;
        n = n > 2 ? 3 : 2;
    }
    if (!strcmp(args[0], "version")) {
        print_version();
        return VD_EXIT_OK;
    }

    /* activate, deactivate, export, unexport: files of this host */
    code = vd_admin_host_cmd(conf_opt, n, args, run_on_pool, stdout, stderr);
    if (code >= 0)
        return code;

    /* pool apply and rebalance run on the pool like the volume commands */
    if (!strcmp(args[0], "pool") &&
        !(n >= 2 &&
          (!strcmp(args[1], "apply") || !strcmp(args[1], "rebalance")))) {
        if (n >= 2 && !strcmp(args[1], "create"))
            return cmd_pool_create(conf_opt, n, args);
        if (n >= 2 && !strcmp(args[1], "list"))
            return cmd_pool_list(n, args);
        if (n >= 2 && !strcmp(args[1], "remove"))
            return cmd_pool_remove(conf_opt, n, args);
        if (n >= 2 && !strcmp(args[1], "takeover"))
            return cmd_pool_takeover(conf_opt, n, args);
        /* `pool --help` and unknown pool commands; `pool check` runs on
         * the pool like the volume commands */
        code = vd_admin_parse(n, args, pool_name, sizeof(pool_name), stdout,
                              stderr);
        if (code >= 0 || !(n >= 2 && !strcmp(args[1], "check")))
            return code < 0 ? VD_EXIT_USAGE : code;
        code = run_on_pool(pool_name, conf_opt, n, args, stdout);
        fflush(stdout);
        return code;
    }

    code =
        vd_admin_parse(n, args, pool_name, sizeof(pool_name), stdout, stderr);
    if (code >= 0)
        return code;
    if (!*pool_name) {
        /* Only `status` names no pool. */
        return cmd_status_all(conf_opt, n, args);
    }
    char *abs_file = NULL; /* vol import/export: FILE made absolute */
    int ar = vd_admin_abs_file(n, args, &abs_file);
    if (ar < 0) {
        fprintf(stderr, "vdlvm: cannot make FILE an absolute path: %s\n",
                strerror(-ar));
        return VD_EXIT_FAIL;
    }
    code = run_on_pool(pool_name, conf_opt, n, args, stdout);
    free(abs_file);
    /* vol create/remove of an activated pool: its activation paths */
    vd_admin_after_cmd(n, args, code, stdout, stderr);
    fflush(stdout);
    return code;
}
