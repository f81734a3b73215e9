/* vdlvm: the admin command.
 *
 * Every command but `pool create` first goes to the tgtd that holds the pool
 * (control socket RUNDIR/POOL.sock); only when none serves it does vdlvm
 * load the definition, open the pool itself (taking its lock) and run the
 * same vd_admin_exec.
 */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vdadmin.h"

static const char *g_usage =
    "Usage: vdlvm [-c FILE] COMMAND [ARGS]\n"
    "\n"
    "Pools of local devices cut into extents, volumes made of extents,\n"
    "exported as iSCSI LUNs by tgtd (--bstype vdlvm).\n"
    "\n"
    "Commands:\n"
    "  pool create FILE [--force]\n"
    "  vol create POOL/VOL --size SIZE [--layout linear|mirror] [--copies N]\n"
    "             [--allow-same-node] [--region-size SIZE]\n"
    "  vol list POOL [--json]\n"
    "  vol remove POOL/VOL\n"
    "  vol extend POOL/VOL --size [+]SIZE\n"
    "  status [POOL[/VOL]] [--json]\n"
    "  resync POOL/VOL [--rate LIMIT] [--wait]\n"
    "  verify POOL/VOL [--repair]\n"
    "  vol repair POOL/VOL --replace DEVICE --with DEVICE [--wait]\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE  pool definition (default: /etc/vdlvm/POOL.yaml,\n"
    "                     directory overridden by $VDLVM_CONFDIR)\n"
    "  -h, --help         this help; 'vdlvm COMMAND --help' for a command\n"
    "\n"
    "While a tgtd exports volumes of the pool, commands run inside it through\n"
    "the control socket $VDLVM_RUNDIR/POOL.sock (default /run/vdlvm); else\n"
    "vdlvm opens the pool itself.  Exit status: 0 success, 1 failure,\n"
    "2 bad usage or bad configuration, 3 verify found differing legs.\n";

static const char *g_pool_create_help =
    "Usage: vdlvm pool create FILE [--force]\n"
    "       vdlvm -c FILE pool create [--force]\n"
    "\n"
    "Write a new pool, defined by the YAML file FILE, to every device it\n"
    "lists: device headers and metadata.  Files that do not exist are\n"
    "created sparse with the size given in FILE.  Every device is checked\n"
    "before any is written; on failure nothing is changed.\n"
    "\n"
    "  --force       overwrite devices that already belong to a vdlvm pool\n"
    "                (destroys that pool's data)\n"
    "  -h, --help    show this help\n";

static const char *confdir(void)
{
    const char *d = getenv("VDLVM_CONFDIR");
    return d && *d ? d : "/etc/vdlvm";
}

/* Load a definition; prints the config library's message.  2 on error. */
static int load_conf(const char *path, int defaulted, struct vd_conf_pool **conf)
{
    char err[1024] = "";
    int r = vd_conf_load(path, conf, err, sizeof(err));

    if (r < 0) {
        if (!*err)
            snprintf(err, sizeof(err), "%s: %s", path, strerror(-r));
        if (defaulted && r == -ENOENT)
            fprintf(stderr, "vdlvm: %s; give the pool definition with "
                    "-c FILE\n", err);
        else
            fprintf(stderr, "vdlvm: %s\n", err);
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
    else
        return 0;
    for (; i < argc; i++)
        if (!strcmp(argv[i], "--wait") || !strcmp(argv[i], "--"))
            return 0;
    return 1;
}

/* Run argv (starting at the command word) against pool `name`: through the
 * control socket when a tgtd serves it, else locally with the definition
 * conf_path (NULL: confdir/NAME.yaml).  Returns a VD_EXIT_* code. */
static int run_on_pool(const char *name, const char *conf_path, int argc,
                       char **argv, FILE *out)
{
    struct vd_conf_pool *conf = NULL;
    vd_pool *pool = NULL;
    char path[4096], sock[256];
    int code, r;

    r = vd_ctl_call(name, argc, argv, out, stderr, &code);
    if (r == 0)
        return code;
    if (r != -ENOENT && r != -ECONNREFUSED) {
        if (vd_ctl_path(name, sock, sizeof(sock)) < 0)
            snprintf(sock, sizeof(sock), "%s/%s.sock", vd_rundir(), name);
        if (r == -EACCES || r == -EPERM)
            fprintf(stderr, "vdlvm: pool '%s': control socket %s: %s; run "
                    "vdlvm as root\n", name, sock, strerror(-r));
        else if (r == -ETIMEDOUT)
            fprintf(stderr, "vdlvm: pool '%s': control socket %s: no answer "
                    "from the tgtd holding the pool; check that it runs\n",
                    name, sock);
        else if (r == -EPROTO || r == -EPIPE || r == -ECONNRESET)
            fprintf(stderr, "vdlvm: pool '%s': control socket %s: the tgtd "
                    "holding the pool closed the connection without a "
                    "complete reply; see its log\n", name, sock);
        else
            fprintf(stderr, "vdlvm: pool '%s': control socket %s: %s\n", name,
                    sock, strerror(-r));
        return VD_EXIT_FAIL;
    }

    /* Nobody serves the pool: open it here. */
    if (!conf_path) {
        snprintf(path, sizeof(path), "%s/%s.yaml", confdir(), name);
        if ((r = load_conf(path, 1, &conf)) != 0)
            return r;
    } else if ((r = load_conf(conf_path, 0, &conf)) != 0) {
        return r;
    }
    if (strcmp(conf->name, name)) {
        fprintf(stderr, "vdlvm: %s: defines pool '%s', not '%s'; give the "
                "definition of '%s' with -c FILE\n",
                conf->file ? conf->file : conf_path, conf->name, name, name);
        vd_conf_free(conf);
        return VD_EXIT_USAGE;
    }
    r = vd_pool_open(conf, &pool);
    if (r < 0) {
        vd_conf_free(conf);
        return r == -EINVAL ? VD_EXIT_USAGE : VD_EXIT_FAIL;
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
            fprintf(stderr, "vdlvm: pool '%s': no tgtd holds the pool, so "
                    "this command waits for the resync it starts\n", name);
        }
    }
    code = vd_admin_exec(pool, argc, argv, out, stderr);
    free(wargv);
    vd_pool_close(pool);
    vd_conf_free(conf);
    return code;
}

static int socket_is_live(const char *name)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, live;

    if (vd_ctl_path(name, sa.sun_path, sizeof(sa.sun_path)) < 0)
        return 0;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
           errno == EAGAIN || errno == EACCES;
    close(fd);
    return live;
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
            fprintf(stderr, "vdlvm: pool create: unknown option '%s'; see "
                    "'vdlvm pool create --help'\n", argv[i]);
            return VD_EXIT_USAGE;
        } else if (file) {
            fprintf(stderr, "vdlvm: pool create: unexpected argument '%s'; "
                    "see 'vdlvm pool create --help'\n", argv[i]);
            return VD_EXIT_USAGE;
        } else {
            file = argv[i];
        }
    }
    if (file && conf_opt && strcmp(file, conf_opt)) {
        fprintf(stderr, "vdlvm: pool create: both FILE '%s' and -c '%s' "
                "given; give one\n", file, conf_opt);
        return VD_EXIT_USAGE;
    }
    if (!file)
        file = conf_opt;
    if (!file) {
        fprintf(stderr, "vdlvm: pool create: missing FILE (the pool "
                "definition); see 'vdlvm pool create --help'\n");
        return VD_EXIT_USAGE;
    }
    if ((r = load_conf(file, 0, &conf)) != 0)
        return r;
    if (socket_is_live(conf->name)) {
        char sock[256] = "";
        vd_ctl_path(conf->name, sock, sizeof(sock));
        fprintf(stderr, "vdlvm: pool '%s': in use by a running tgtd (control "
                "socket %s); delete its LUNs and stop it before re-creating "
                "the pool\n", conf->name, sock);
        vd_conf_free(conf);
        return VD_EXIT_FAIL;
    }
    r = vd_pool_create(conf, force);
    if (r < 0) {
        vd_conf_free(conf);
        return r == -EINVAL ? VD_EXIT_USAGE : VD_EXIT_FAIL;
    }
    if (vd_pool_open(conf, &pool) == 0) {
        struct vd_pool_info pi;
        char sz[32], es[32];
        if (vd_pool_get_info(pool, &pi) == 0) {
            vd_size_format(pi.total_bytes, sz, sizeof(sz));
            vd_size_format(pi.extent_size, es, sizeof(es));
            printf("pool '%s': created on %u devices, %s in %llu extents of "
                   "%s\n", pi.name, pi.ndevs, sz,
                   (unsigned long long)(pi.total_bytes / pi.extent_size), es);
        }
        vd_pool_close(pool);
    } else {
        printf("pool '%s': created on %zu devices\n", conf->name, conf->ndevs);
    }
    vd_conf_free(conf);
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

/* `status` without POOL: the -c pool, or every pool in confdir. */
static int cmd_status_all(const char *conf_opt, int argc, char **argv)
{
    int json = 0, worst = VD_EXIT_OK, shown = 0;
    glob_t g = { 0 };
    char pattern[4096];

    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--json"))
            json = 1;
    if (conf_opt) {
        g.gl_pathc = 1;
    } else {
        snprintf(pattern, sizeof(pattern), "%s/*.yaml", confdir());
        int gr = glob(pattern, 0, NULL, &g);
        if (gr != 0 && gr != GLOB_NOMATCH) {
            fprintf(stderr, "vdlvm: %s: cannot list pool definitions\n",
                    confdir());
            return VD_EXIT_FAIL;
        }
        if (gr == GLOB_NOMATCH)
            g.gl_pathc = 0;
    }
    if (json)
        fputs("{\"pools\":[", stdout);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *path = conf_opt ? conf_opt : g.gl_pathv[i];
        struct vd_conf_pool *conf = NULL;
        char *text = NULL;
        int code = load_conf(path, 0, &conf);

        if (code == 0) {
            code = status_one(conf->name, path, argc, argv, &text);
            vd_conf_free(conf);
        }
        if (code > worst)
            worst = code;
        if (code == 0 && text && *text) {
            size_t l = strlen(text);
            if (json) {
                while (l && text[l - 1] == '\n')
                    l--;
                printf("%s%.*s", shown ? "," : "", (int)l, text);
            } else {
                printf("%s%s", shown ? "\n" : "", text);
            }
            shown++;
        }
        free(text);
    }
    if (json)
        fputs("]}\n", stdout);
    else if (g.gl_pathc == 0)
        printf("no pools: %s has no pool definitions (*.yaml)\n", confdir());
    if (!conf_opt)
        globfree(&g);
    return worst;
}

int main(int argc, char **argv)
{
    const char *conf_opt = NULL;
    char **args = calloc(argc + 1, sizeof(*args));
    char pool_name[VD_NAME_MAX + 1];
    int n = 0, i, code, cmd_seen = 0;

    if (!args) {
        fprintf(stderr, "vdlvm: out of memory\n");
        return VD_EXIT_FAIL;
    }
    vd_admin_log_init(NULL);
    /* -c may stand before or after the command: it is never a command
     * option, so it is taken out here and not passed on. */
    for (i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--")) {
            while (i < argc)
                args[n++] = argv[i++];
            break;
        }
        if (!strcmp(s, "-c") || !strcmp(s, "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vdlvm: option '%s' needs a FILE; see 'vdlvm "
                        "--help'\n", s);
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

    if (!strcmp(args[0], "pool")) {
        if (n >= 2 && !strcmp(args[1], "create"))
            return cmd_pool_create(conf_opt, n, args);
        /* `pool --help` and unknown pool commands */
        code = vd_admin_parse(n, args, pool_name, sizeof(pool_name), stdout,
                              stderr);
        return code < 0 ? VD_EXIT_USAGE : code;
    }

    code = vd_admin_parse(n, args, pool_name, sizeof(pool_name), stdout,
                          stderr);
    if (code >= 0)
        return code;
    if (!*pool_name) {
        /* Only `status` names no pool. */
        return cmd_status_all(conf_opt, n, args);
    }
    code = run_on_pool(pool_name, conf_opt, n, args, stdout);
    fflush(stdout);
    return code;
}
