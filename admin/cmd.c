/* vdlvm admin: log routing, exit codes, the command table, argument
 * parsing and dispatch (vd_admin_parse, vd_admin_exec).
 *
 * The same code runs in the vdlvm process and inside tgtd, so arguments are
 * parsed by hand (no getopt state survives between calls) and every message
 * goes to the err stream handed in, never to stderr directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin_int.h"

/* ---- log routing -------------------------------------------------------- */

/* Both set once by vd_admin_log_init before other threads exist. */
static vd_log_fn g_log_next;
static int g_log_installed;
/* The err stream of the command running on this thread, and how many error
 * messages the library wrote to it (so that we add our own only when it
 * wrote none). */
static __thread FILE *t_cmd_err;
static __thread unsigned t_cmd_logged;

static void admin_log(int level, const char *msg)
{
    if (t_cmd_err && level <= VD_LOG_WARN) {
        fprintf(t_cmd_err, "vdlvm: %s%s\n",
                level == VD_LOG_WARN ? "warning: " : "", msg);
        if (level == VD_LOG_ERR)
            t_cmd_logged++;
        return;
    }
    if (g_log_next)
        g_log_next(level, msg);
    else if (level <= VD_LOG_WARN || getenv("VDLVM_DEBUG"))
        fprintf(stderr, "vdlvm: %s%s\n",
                level == VD_LOG_WARN ? "warning: " : "", msg);
}

void vd_admin_log_init(vd_log_fn next)
{
    g_log_next = next;
    g_log_installed = 1;
    vd_log_set_fn(admin_log);
}

__attribute__((format(printf, 2, 3)))
void admin_msg(FILE *err, const char *fmt, ...)
{
    va_list ap;

    fputs("vdlvm: ", err);
    va_start(ap, fmt);
    vfprintf(err, fmt, ap);
    va_end(ap);
    fputc('\n', err);
}

int vd_exit_code(int r)
{
    switch (r) {
    case 0:
        return VD_EXIT_OK;
    case -EINVAL:
    case -EFBIG:    /* a size above what the pool can hold */
        return VD_EXIT_USAGE;
    case -EBUSY:
        return VD_EXIT_BUSY;
    default:
        return VD_EXIT_FAIL;
    }
}

/* A library call failed with r: print our own message unless the library
 * already told the user (through admin_log).  -EINVAL is bad input (2). */
__attribute__((format(printf, 3, 4)))
int admin_lib_fail(FILE *err, int r, const char *fmt, ...)
{
    if (!g_log_installed || t_cmd_logged == 0) {
        va_list ap;
        fputs("vdlvm: ", err);
        va_start(ap, fmt);
        vfprintf(err, fmt, ap);
        va_end(ap);
        fprintf(err, ": %s\n", strerror(-r));
    }
    return vd_exit_code(r);
}

/* A volume call failed with r and the library's message did not reach the
 * caller (e.g. inside a tgtd whose module routes library messages to its
 * own log): say what we can from the errno. */
int admin_vol_fail(FILE *err, int r, const char *pool, const char *vol,
                    const char *verb)
{
    if (g_log_installed && t_cmd_logged > 0)
        return vd_exit_code(r);
    switch (r) {
    case -ENOENT:
        admin_msg(err, "volume '%s/%s': not found; list volumes with 'vdlvm vol "
            "list %s'", pool, vol, pool);
        break;
    case -EEXIST:
        admin_msg(err, "volume '%s/%s': already exists", pool, vol);
        break;
    case -EBUSY:
        admin_msg(err, "volume '%s/%s': in use (exported); delete its LUN first",
            pool, vol);
        return VD_EXIT_BUSY;
    case -ENOSPC:
        admin_msg(err, "volume '%s/%s': %s failed: not enough free space; see "
            "'vdlvm status %s'", pool, vol, verb, pool);
        break;
    case -ENOTSUP:
        admin_msg(err, "volume '%s/%s': %s failed: not supported by this build",
            pool, vol, verb);
        break;
    case -EFBIG:
        admin_msg(err, "volume '%s/%s': %s failed: the size is too large for "
            "this pool", pool, vol, verb);
        break;
    default:
        admin_msg(err, "volume '%s/%s': %s failed: %s", pool, vol, verb,
            strerror(-r));
    }
    return vd_exit_code(r);
}

/* ---- commands and their arguments --------------------------------------- */

static const struct cmd_spec g_cmds[] = {
    { CMD_VOL_CREATE, "vol", "create", T_VOL,
      O_SIZE | O_LAYOUT | O_COPIES | O_SAME_NODE | O_REGION, O_SIZE,
      "vol create POOL/VOL --size SIZE [--layout linear|mirror] [--copies N] "
      "[--allow-same-node] [--region-size SIZE]",
      "Create a volume of SIZE, rounded up to whole extents (the output\n"
      "says so when it rounds).  A linear volume takes its extents from any\n"
      "devices with free space.\n"
      "\n"
      "  --size SIZE          bytes, or with a unit: B, KiB, MiB, GiB, TiB\n"
      "                       (K, M, G, T are the same binary units)\n"
      "  --layout LAYOUT      linear (default) or mirror\n"
      "  --copies N           legs of a mirror: 2 (default) or 3\n"
      "  --allow-same-node    let mirror legs share a node (a warning says\n"
      "                       when every leg is on one node)\n"
      "  --region-size SIZE   mirror: bytes per write-intent bitmap bit, a\n"
      "                       power of two from 64KiB to the extent size\n"
      "                       (default 1MiB)\n"
      "\n"
      "Mirror legs always go on distinct devices.  They must also go on\n"
      "distinct nodes: when the pool has fewer nodes with free space than\n"
      "copies, the command is refused unless --allow-same-node is given.\n"
      "Names: 1-63 of A-Z a-z 0-9 _ . -, not starting with . or -.\n" },
    { CMD_VOL_LIST, "vol", "list", T_POOL, O_JSON, 0,
      "vol list POOL [--json]",
      "List the volumes of POOL: name, size, layout, copies, exported.\n"
      "\n"
      "  --json               one JSON object {\"pool\":..., \"volumes\":[...]}\n" },
    { CMD_VOL_REMOVE, "vol", "remove", T_VOL, 0, 0,
      "vol remove POOL/VOL",
      "Remove a volume and free its extents.  Refused while the volume is\n"
      "exported (delete its LUN with tgtadm first).\n" },
    { CMD_VOL_EXTEND, "vol", "extend", T_VOL, O_SIZE, O_SIZE,
      "vol extend POOL/VOL --size [+]SIZE",
      "Grow a volume to SIZE, or by SIZE with a leading '+'.  Volumes only\n"
      "grow.  Works while the volume is exported: the LUN sees the new size\n"
      "at once (initiators learn it from a capacity-changed unit attention\n"
      "or a rescan).\n"
      "\n"
      "  --size [+]SIZE       new size, or growth with '+'\n" },
    { CMD_VOL_REPAIR, "vol", "repair", T_VOL, O_REPLACE | O_WITH | O_WAIT,
      O_REPLACE | O_WITH,
      "vol repair POOL/VOL --replace DEVICE --with DEVICE [--wait]",
      "Move the mirror leg on DEVICE to free extents of another device and\n"
      "rebuild it fully, online.\n"
      "\n"
      "  --replace DEVICE     the device whose leg moves\n"
      "  --with DEVICE        where it goes\n"
      "  --wait               return when the rebuild is done (always so when\n"
      "                       no tgtd holds the pool)\n" },
    { CMD_STATUS, "status", NULL, T_ANY_OPT, O_JSON, 0,
      "status [POOL[/VOL]] [--json]",
      "Show a pool (devices: node, path, state, size, used, free; volumes:\n"
      "size, layout and which extents sit on which device) or one volume.\n"
      "Without POOL: every known pool (see 'vdlvm pool list').\n"
      "\n"
      "  --json               machine-readable: a pool object for POOL, a\n"
      "                       volume object for POOL/VOL, {\"pools\":[...]}\n"
      "                       without an argument\n" },
    { CMD_RESYNC, "resync", NULL, T_VOL, O_RATE | O_WAIT, 0,
      "resync POOL/VOL [--rate LIMIT] [--wait]",
      "Start or resume the resync of a mirrored volume: copy the regions\n"
      "marked in the write-intent bitmap from an in-sync leg to the others.\n"
      "It runs in the background of the process holding the pool; follow it\n"
      "with 'vdlvm status POOL/VOL'.\n"
      "\n"
      "  --rate LIMIT         bytes per second, e.g. 50MiB (0: unlimited);\n"
      "                       stays until changed\n"
      "  --wait               return when the resync is done (always so when\n"
      "                       no tgtd holds the pool)\n" },
    { CMD_VERIFY, "verify", NULL, T_VOL, O_REPAIR, 0,
      "verify POOL/VOL [--repair]",
      "Read every leg of a mirrored volume, compare them region by region\n"
      "(SHA-256) and list the regions that differ.  Exit 0 when the legs are\n"
      "equal (or were repaired), 3 when differences remain.\n"
      "\n"
      "  --repair             copy differing regions from an in-sync leg\n" },
};
#define NCMDS (sizeof(g_cmds) / sizeof(g_cmds[0]))


static void print_cmd_help(const struct cmd_spec *c, FILE *out)
{
    fprintf(out, "Usage: vdlvm [-c FILE] %s\n\n%s", c->synopsis, c->help);
    fprintf(out, "\n  -c FILE              pool definition (default "
                 "/etc/vdlvm/POOL.yaml, else the\n"
                 "                       one remembered by 'pool create -c "
                 "FILE'); read and\n"
                 "                       checked even while a tgtd holds the "
                 "pool\n"
                 "  -h, --help           show this help\n"
                 "\nExit status: 0 ok, 1 failed, 2 bad usage or "
                 "configuration, 3 verify found\ndifferences, 4 in use or "
                 "busy; see 'vdlvm --help'.\n");
}

static void print_group_help(const char *w1, FILE *out)
{
    fprintf(out, "Usage:\n");
    if (!strcmp(w1, "pool"))
        fprintf(out, "  vdlvm pool create FILE [--force]\n"
                     "  vdlvm pool list [--json]\n"
                     "  vdlvm [-c FILE] pool remove POOL [--force] "
                     "[--purge-definition]\n"
                     "  vdlvm [-c FILE] pool takeover POOL\n");
    for (size_t i = 0; i < NCMDS; i++)
        if (!strcmp(g_cmds[i].w1, w1))
            fprintf(out, "  vdlvm [-c FILE] %s\n", g_cmds[i].synopsis);
    fprintf(out, "\nRun 'vdlvm %s COMMAND --help' for details.\n", w1);
}

static int is_help(const char *s)
{
    return !strcmp(s, "-h") || !strcmp(s, "--help");
}

static int split_target(const struct cmd_spec *c, const char *s,
                        struct cmd_args *a, FILE *err)
{
    const char *slash = strchr(s, '/');
    size_t plen = slash ? (size_t)(slash - s) : strlen(s);
    const char *what = c->w2 ? c->w2 : "";

    if (plen == 0 || plen > VD_NAME_MAX) {
        admin_msg(err, "%s%s%s: '%s' is not a pool name; names are 1-63 of "
            "A-Z a-z 0-9 _ . -, not starting with . or -", c->w1, *what ? " " : "", what, s);
        return -1;
    }
    memcpy(a->pool, s, plen);
    a->pool[plen] = 0;
    if (!vd_name_is_valid(a->pool)) {
        admin_msg(err, "%s%s%s: '%s' is not a pool name; names are 1-63 of "
            "A-Z a-z 0-9 _ . -, not starting with . or -", c->w1, *what ? " " : "", what, a->pool);
        return -1;
    }
    if (!slash) {
        if (c->target == T_VOL) {
            admin_msg(err, "%s%s%s: '%s' names no volume; give POOL/VOL, e.g. "
                "'%s/vol0'", c->w1, *what ? " " : "", what, s, a->pool);
            return -1;
        }
        a->vol[0] = 0;
    } else {
        if (c->target == T_POOL) {
            admin_msg(err, "%s%s%s: give a pool, not '%s'; e.g. 'vdlvm %s%s%s %s'",
                c->w1, *what ? " " : "", what, s, c->w1, *what ? " " : "",
                what, a->pool);
            return -1;
        }
        if (strlen(slash + 1) > VD_NAME_MAX || !vd_name_is_valid(slash + 1)) {
            admin_msg(err, "%s%s%s: '%s' is not a volume name; names are 1-63 of "
                "A-Z a-z 0-9 _ . -, not starting with . or -", c->w1, *what ? " " : "", what, slash + 1);
            return -1;
        }
        strcpy(a->vol, slash + 1);
    }
    a->has_target = 1;
    return 0;
}

/* Per layout (by name, see vd_layout_name): the vol create options it
 * takes and its default number of copies.  A layout missing here takes no
 * layout option and has one copy. */
#define LAYOUT_OPTS (O_COPIES | O_SAME_NODE | O_REGION)
struct layout_opts {
    const char *name;
    unsigned opts;      /* of LAYOUT_OPTS */
    uint32_t copies;    /* default */
};
static const struct layout_opts g_layout_opts[] = {
    { .name = "linear", .opts = 0, .copies = 1 },
    { .name = "mirror", .opts = LAYOUT_OPTS, .copies = 2 },
};
#define NLAYOUT_OPTS (sizeof(g_layout_opts) / sizeof(g_layout_opts[0]))

static const struct layout_opts *layout_opts(enum vd_layout layout)
{
    static const struct layout_opts none = { .name = "", .opts = 0,
                                             .copies = 1 };
    const char *name = vd_layout_name(layout);

    for (size_t i = 0; i < NLAYOUT_OPTS; i++)
        if (!strcmp(g_layout_opts[i].name, name))
            return &g_layout_opts[i];
    return &none;
}

/* The first layout taking one of the options in bits (for messages). */
static const char *layout_opts_owner(unsigned bits)
{
    for (size_t i = 0; i < NLAYOUT_OPTS; i++)
        if (g_layout_opts[i].opts & bits)
            return g_layout_opts[i].name;
    return "?";
}

/* Returns -1 when a holds a well-formed command, else a VD_EXIT_* code
 * (help printed, or usage error printed). */
int admin_parse_cmd(int argc, char **argv, struct cmd_args *a, FILE *out,
                     FILE *err)
{
    const struct cmd_spec *c = NULL;
    int i, words;
    char cmdname[32];

    memset(a, 0, sizeof(*a));
    vd_layout_from_name("linear", &a->layout);
    if (argc < 1 || !argv[0]) {
        admin_msg(err, "no command given; see 'vdlvm --help'");
        return VD_EXIT_USAGE;
    }
    if (!strcmp(argv[0], "vol") || !strcmp(argv[0], "pool")) {
        if (argc < 2 || is_help(argv[1])) {
            if (argc >= 2) {
                print_group_help(argv[0], out);
                return VD_EXIT_OK;
            }
            admin_msg(err, "%s: no command given; see 'vdlvm %s --help'", argv[0],
                argv[0]);
            return VD_EXIT_USAGE;
        }
        for (size_t k = 0; k < NCMDS; k++)
            if (g_cmds[k].w2 && !strcmp(g_cmds[k].w1, argv[0]) &&
                !strcmp(g_cmds[k].w2, argv[1]))
                c = &g_cmds[k];
        words = 2;
        if (!c) {
            admin_msg(err, "%s: unknown command '%s'; see 'vdlvm %s --help'",
                argv[0], argv[1], argv[0]);
            return VD_EXIT_USAGE;
        }
    } else {
        for (size_t k = 0; k < NCMDS; k++)
            if (!g_cmds[k].w2 && !strcmp(g_cmds[k].w1, argv[0]))
                c = &g_cmds[k];
        words = 1;
        if (!c) {
            admin_msg(err, "unknown command '%s'; see 'vdlvm --help'", argv[0]);
            return VD_EXIT_USAGE;
        }
    }
    a->spec = c;
    snprintf(cmdname, sizeof(cmdname), "%s%s%s", c->w1, c->w2 ? " " : "",
             c->w2 ? c->w2 : "");

    for (i = words; i < argc; i++)
        if (is_help(argv[i])) {
            print_cmd_help(c, out);
            return VD_EXIT_OK;
        }

    int opts_done = 0;
    for (i = words; i < argc; i++) {
        const char *s = argv[i];
        char name[32];
        const char *val = NULL;
        unsigned bit = 0;
        int takes_val = 0;

        if (opts_done || s[0] != '-' || !s[1]) {
            if (a->has_target) {
                admin_msg(err, "%s: unexpected argument '%s'; see 'vdlvm %s --help'",
                    cmdname, s, cmdname);
                return VD_EXIT_USAGE;
            }
            if (split_target(c, s, a, err) < 0)
                return VD_EXIT_USAGE;
            continue;
        }
        if (!strcmp(s, "--")) {
            opts_done = 1;
            continue;
        }
        const char *eq = strchr(s, '=');
        size_t nlen = eq ? (size_t)(eq - s) : strlen(s);
        if (nlen >= sizeof(name))
            nlen = sizeof(name) - 1;
        memcpy(name, s, nlen);
        name[nlen] = 0;
        if (!strcmp(name, "--size")) bit = O_SIZE, takes_val = 1;
        else if (!strcmp(name, "--layout")) bit = O_LAYOUT, takes_val = 1;
        else if (!strcmp(name, "--copies")) bit = O_COPIES, takes_val = 1;
        else if (!strcmp(name, "--allow-same-node")) bit = O_SAME_NODE;
        else if (!strcmp(name, "--json")) bit = O_JSON;
        else if (!strcmp(name, "--rate")) bit = O_RATE, takes_val = 1;
        else if (!strcmp(name, "--replace")) bit = O_REPLACE, takes_val = 1;
        else if (!strcmp(name, "--with")) bit = O_WITH, takes_val = 1;
        else if (!strcmp(name, "--repair")) bit = O_REPAIR;
        else if (!strcmp(name, "--wait")) bit = O_WAIT;
        else if (!strcmp(name, "--region-size")) bit = O_REGION, takes_val = 1;
        if (!bit || !(c->opts & bit)) {
            admin_msg(err, "%s: unknown option '%s'; see 'vdlvm %s --help'", cmdname,
                name, cmdname);
            return VD_EXIT_USAGE;
        }
        if (a->given & bit) {
            admin_msg(err, "%s: option '%s' given twice", cmdname, name);
            return VD_EXIT_USAGE;
        }
        a->given |= bit;
        if (takes_val) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else {
                admin_msg(err, "%s: option '%s' needs a value; see 'vdlvm %s --help'",
                    cmdname, name, cmdname);
                return VD_EXIT_USAGE;
            }
        } else if (eq) {
            admin_msg(err, "%s: option '%s' takes no value", cmdname, name);
            return VD_EXIT_USAGE;
        }
        switch (bit) {
        case O_SIZE: {
            const char *v = val;
            if (*v == '+' && c->id == CMD_VOL_EXTEND) {
                a->size_rel = 1;
                v++;
            }
            char m[384];
            if (vd_size_parse_max(v, UINT64_MAX, &a->size, m, sizeof(m)) < 0) {
                admin_msg(err, "%s: --size %s", cmdname, m);
                return VD_EXIT_USAGE;
            }
            if (a->size == 0) {
                admin_msg(err, "%s: --size '%s' is not a size for a volume: it is "
                    "0 bytes; give at least 512", cmdname, val);
                return VD_EXIT_USAGE;
            }
            break;
        }
        case O_LAYOUT:
            if (vd_layout_from_name(val, &a->layout) < 0) {
                admin_msg(err, "%s: --layout '%s' is unknown; use linear or mirror",
                    cmdname, val);
                return VD_EXIT_USAGE;
            }
            break;
        case O_COPIES: {
            char *end;
            errno = 0;
            unsigned long n = strtoul(val, &end, 10);
            if (errno || end == val || *end || n < 2 || n > 3) {
                admin_msg(err, "%s: --copies '%s' is not 2 or 3", cmdname, val);
                return VD_EXIT_USAGE;
            }
            a->copies = (uint32_t)n;
            break;
        }
        case O_REGION:
            if (vd_size_parse(val, &a->region_size) < 0 ||
                a->region_size < (64u << 10) ||
                (a->region_size & (a->region_size - 1))) {
                admin_msg(err, "%s: --region-size '%s' is not a power of two of at "
                    "least 64KiB", cmdname, val);
                return VD_EXIT_USAGE;
            }
            break;
        case O_RATE:
            if (vd_size_parse(val, &a->rate) < 0) {
                admin_msg(err, "%s: --rate '%s' is not a rate; use bytes per second "
                    "with a unit, e.g. 50MiB", cmdname, val);
                return VD_EXIT_USAGE;
            }
            break;
        case O_REPLACE:
        case O_WITH:
            if (!vd_name_is_valid(val)) {
                admin_msg(err, "%s: %s '%s' is not a device name", cmdname, name, val);
                return VD_EXIT_USAGE;
            }
            if (bit == O_REPLACE)
                a->replace = val;
            else
                a->with = val;
            break;
        }
    }

    if (!a->has_target && c->target != T_ANY_OPT) {
        admin_msg(err, "%s: missing %s; see 'vdlvm %s --help'", cmdname,
            c->target == T_POOL ? "POOL" : "POOL/VOL", cmdname);
        return VD_EXIT_USAGE;
    }
    unsigned missing = c->required & ~a->given;
    if (missing) {
        admin_msg(err, "%s: missing %s; see 'vdlvm %s --help'", cmdname,
            missing & O_SIZE ? "--size SIZE"
            : missing & O_REPLACE ? "--replace DEVICE" : "--with DEVICE",
            cmdname);
        return VD_EXIT_USAGE;
    }
    if (c->id == CMD_VOL_CREATE) {
        /* the options a layout takes, by its name (the layout id is
         * tested in the pool's registry only) */
        const struct layout_opts *lo = layout_opts(a->layout);
        unsigned bad = a->given & LAYOUT_OPTS & ~lo->opts;
        if (bad) {
            const char *opt = bad & O_COPIES ? "--copies"
                              : bad & O_SAME_NODE ? "--allow-same-node"
                                                  : "--region-size";
            admin_msg(err, "%s: %s applies to --layout %s", cmdname, opt,
                      layout_opts_owner(bad));
            return VD_EXIT_USAGE;
        }
        if (!a->copies)
            a->copies = lo->copies;
    }
    if (c->id == CMD_VOL_REPAIR && !strcmp(a->replace, a->with)) {
        admin_msg(err, "%s: --replace and --with name the same device '%s'",
            cmdname, a->with);
        return VD_EXIT_USAGE;
    }
    return -1;
}

int vd_admin_parse(int argc, char **argv, char *pool_name, size_t len,
                   FILE *out, FILE *err)
{
    struct cmd_args a;
    int rc = admin_parse_cmd(argc, argv, &a, out, err);

    if (rc < 0 && pool_name && len)
        snprintf(pool_name, len, "%s", a.has_target ? a.pool : "");
    fflush(out);
    fflush(err);
    return rc;
}


int vd_admin_exec(vd_pool *pool, int argc, char **argv, FILE *out, FILE *err)
{
    struct cmd_args a;
    FILE *saved_err = t_cmd_err;
    unsigned saved_logged = t_cmd_logged;
    int rc = admin_parse_cmd(argc, argv, &a, out, err);

    if (rc >= 0)
        goto done;
    if (!pool) {
        admin_msg(err, "%s: no pool is open", argv[0]);
        rc = VD_EXIT_FAIL;
        goto done;
    }
    if (!a.has_target) {
        snprintf(a.pool, sizeof(a.pool), "%s", vd_pool_name(pool));
    } else if (strcmp(a.pool, vd_pool_name(pool))) {
        admin_msg(err, "pool '%s': not served here (this is pool '%s')", a.pool,
            vd_pool_name(pool));
        rc = VD_EXIT_USAGE;
        goto done;
    }
    t_cmd_err = err;
    t_cmd_logged = 0;
    switch (a.spec->id) {
    case CMD_VOL_CREATE: rc = admin_cmd_vol_create(pool, &a, out, err); break;
    case CMD_VOL_LIST: rc = admin_cmd_vol_list(pool, &a, out, err); break;
    case CMD_VOL_REMOVE: rc = admin_cmd_vol_remove(pool, &a, out, err); break;
    case CMD_VOL_EXTEND: rc = admin_cmd_vol_extend(pool, &a, out, err); break;
    case CMD_STATUS:
        rc = a.vol[0] ? admin_status_vol(pool, &a, out, err)
                      : admin_status_pool(pool, &a, out, err);
        break;
    case CMD_VOL_REPAIR: rc = admin_cmd_vol_repair(pool, &a, out, err); break;
    case CMD_RESYNC: rc = admin_cmd_resync(pool, &a, out, err); break;
    case CMD_VERIFY: rc = admin_cmd_verify(pool, &a, out, err); break;
    }
    t_cmd_err = saved_err;
    t_cmd_logged = saved_logged;
done:
    fflush(out);
    fflush(err);
    return rc;
}
