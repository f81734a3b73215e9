/* vdlvm: admin commands (vd_admin_exec) and the control socket.
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

#include "../replica/vdreplica.h"
#include "vdadmin.h"

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
static void msg(FILE *err, const char *fmt, ...)
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
static int lib_fail(FILE *err, int r, const char *fmt, ...)
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
static int vol_fail(FILE *err, int r, const char *pool, const char *vol,
                    const char *verb)
{
    if (g_log_installed && t_cmd_logged > 0)
        return vd_exit_code(r);
    switch (r) {
    case -ENOENT:
        msg(err, "volume '%s/%s': not found; list volumes with 'vdlvm vol "
            "list %s'", pool, vol, pool);
        break;
    case -EEXIST:
        msg(err, "volume '%s/%s': already exists", pool, vol);
        break;
    case -EBUSY:
        msg(err, "volume '%s/%s': in use (exported); delete its LUN first",
            pool, vol);
        return VD_EXIT_BUSY;
    case -ENOSPC:
        msg(err, "volume '%s/%s': %s failed: not enough free space; see "
            "'vdlvm status %s'", pool, vol, verb, pool);
        break;
    case -ENOTSUP:
        msg(err, "volume '%s/%s': %s failed: not supported by this build",
            pool, vol, verb);
        break;
    case -EFBIG:
        msg(err, "volume '%s/%s': %s failed: the size is too large for "
            "this pool", pool, vol, verb);
        break;
    default:
        msg(err, "volume '%s/%s': %s failed: %s", pool, vol, verb,
            strerror(-r));
    }
    return vd_exit_code(r);
}

/* ---- commands and their arguments --------------------------------------- */

enum cmd_id {
    CMD_VOL_CREATE, CMD_VOL_LIST, CMD_VOL_REMOVE, CMD_VOL_EXTEND,
    CMD_VOL_REPAIR, CMD_STATUS, CMD_RESYNC, CMD_VERIFY,
};

/* Which target argument a command takes. */
enum { T_POOL, T_VOL, T_ANY_OPT /* [POOL[/VOL]] */ };

enum {
    O_SIZE = 1u << 0, O_LAYOUT = 1u << 1, O_COPIES = 1u << 2,
    O_SAME_NODE = 1u << 3, O_JSON = 1u << 4, O_RATE = 1u << 5,
    O_REPLACE = 1u << 6, O_WITH = 1u << 7, O_REPAIR = 1u << 8,
    O_WAIT = 1u << 9, O_REGION = 1u << 10,
};

struct cmd_spec {
    enum cmd_id id;
    const char *w1, *w2;   /* command words; w2 NULL for one word */
    int target;
    unsigned opts;         /* O_* allowed */
    unsigned required;     /* O_* required */
    const char *synopsis;  /* after "vdlvm " */
    const char *help;
};

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

struct cmd_args {
    const struct cmd_spec *spec;
    char pool[VD_NAME_MAX + 1];
    char vol[VD_NAME_MAX + 1];  /* "" when the target names no volume */
    int has_target;
    uint64_t size;
    int size_rel;               /* --size +SIZE */
    enum vd_layout layout;
    uint32_t copies;
    unsigned given;             /* O_* seen */
    uint64_t rate;
    uint64_t region_size;
    const char *replace, *with;
};

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
        msg(err, "%s%s%s: '%s' is not a pool name; names are 1-63 of "
            "A-Z a-z 0-9 _ . -, not starting with . or -", c->w1, *what ? " " : "", what, s);
        return -1;
    }
    memcpy(a->pool, s, plen);
    a->pool[plen] = 0;
    if (!vd_name_is_valid(a->pool)) {
        msg(err, "%s%s%s: '%s' is not a pool name; names are 1-63 of "
            "A-Z a-z 0-9 _ . -, not starting with . or -", c->w1, *what ? " " : "", what, a->pool);
        return -1;
    }
    if (!slash) {
        if (c->target == T_VOL) {
            msg(err, "%s%s%s: '%s' names no volume; give POOL/VOL, e.g. "
                "'%s/vol0'", c->w1, *what ? " " : "", what, s, a->pool);
            return -1;
        }
        a->vol[0] = 0;
    } else {
        if (c->target == T_POOL) {
            msg(err, "%s%s%s: give a pool, not '%s'; e.g. 'vdlvm %s%s%s %s'",
                c->w1, *what ? " " : "", what, s, c->w1, *what ? " " : "",
                what, a->pool);
            return -1;
        }
        if (strlen(slash + 1) > VD_NAME_MAX || !vd_name_is_valid(slash + 1)) {
            msg(err, "%s%s%s: '%s' is not a volume name; names are 1-63 of "
                "A-Z a-z 0-9 _ . -, not starting with . or -", c->w1, *what ? " " : "", what, slash + 1);
            return -1;
        }
        strcpy(a->vol, slash + 1);
    }
    a->has_target = 1;
    return 0;
}

/* Returns -1 when a holds a well-formed command, else a VD_EXIT_* code
 * (help printed, or usage error printed). */
static int parse_cmd(int argc, char **argv, struct cmd_args *a, FILE *out,
                     FILE *err)
{
    const struct cmd_spec *c = NULL;
    int i, words;
    char cmdname[32];

    memset(a, 0, sizeof(*a));
    a->layout = VD_LAYOUT_LINEAR;
    if (argc < 1 || !argv[0]) {
        msg(err, "no command given; see 'vdlvm --help'");
        return VD_EXIT_USAGE;
    }
    if (!strcmp(argv[0], "vol") || !strcmp(argv[0], "pool")) {
        if (argc < 2 || is_help(argv[1])) {
            if (argc >= 2) {
                print_group_help(argv[0], out);
                return VD_EXIT_OK;
            }
            msg(err, "%s: no command given; see 'vdlvm %s --help'", argv[0],
                argv[0]);
            return VD_EXIT_USAGE;
        }
        for (size_t k = 0; k < NCMDS; k++)
            if (g_cmds[k].w2 && !strcmp(g_cmds[k].w1, argv[0]) &&
                !strcmp(g_cmds[k].w2, argv[1]))
                c = &g_cmds[k];
        words = 2;
        if (!c) {
            msg(err, "%s: unknown command '%s'; see 'vdlvm %s --help'",
                argv[0], argv[1], argv[0]);
            return VD_EXIT_USAGE;
        }
    } else {
        for (size_t k = 0; k < NCMDS; k++)
            if (!g_cmds[k].w2 && !strcmp(g_cmds[k].w1, argv[0]))
                c = &g_cmds[k];
        words = 1;
        if (!c) {
            msg(err, "unknown command '%s'; see 'vdlvm --help'", argv[0]);
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
                msg(err, "%s: unexpected argument '%s'; see 'vdlvm %s --help'",
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
            msg(err, "%s: unknown option '%s'; see 'vdlvm %s --help'", cmdname,
                name, cmdname);
            return VD_EXIT_USAGE;
        }
        if (a->given & bit) {
            msg(err, "%s: option '%s' given twice", cmdname, name);
            return VD_EXIT_USAGE;
        }
        a->given |= bit;
        if (takes_val) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else {
                msg(err, "%s: option '%s' needs a value; see 'vdlvm %s --help'",
                    cmdname, name, cmdname);
                return VD_EXIT_USAGE;
            }
        } else if (eq) {
            msg(err, "%s: option '%s' takes no value", cmdname, name);
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
                msg(err, "%s: --size %s", cmdname, m);
                return VD_EXIT_USAGE;
            }
            if (a->size == 0) {
                msg(err, "%s: --size '%s' is not a size for a volume: it is "
                    "0 bytes; give at least 512", cmdname, val);
                return VD_EXIT_USAGE;
            }
            break;
        }
        case O_LAYOUT:
            if (!strcmp(val, "linear"))
                a->layout = VD_LAYOUT_LINEAR;
            else if (!strcmp(val, "mirror"))
                a->layout = VD_LAYOUT_MIRROR;
            else {
                msg(err, "%s: --layout '%s' is unknown; use linear or mirror",
                    cmdname, val);
                return VD_EXIT_USAGE;
            }
            break;
        case O_COPIES: {
            char *end;
            errno = 0;
            unsigned long n = strtoul(val, &end, 10);
            if (errno || end == val || *end || n < 2 || n > 3) {
                msg(err, "%s: --copies '%s' is not 2 or 3", cmdname, val);
                return VD_EXIT_USAGE;
            }
            a->copies = (uint32_t)n;
            break;
        }
        case O_REGION:
            if (vd_size_parse(val, &a->region_size) < 0 ||
                a->region_size < (64u << 10) ||
                (a->region_size & (a->region_size - 1))) {
                msg(err, "%s: --region-size '%s' is not a power of two of at "
                    "least 64KiB", cmdname, val);
                return VD_EXIT_USAGE;
            }
            break;
        case O_RATE:
            if (vd_size_parse(val, &a->rate) < 0) {
                msg(err, "%s: --rate '%s' is not a rate; use bytes per second "
                    "with a unit, e.g. 50MiB", cmdname, val);
                return VD_EXIT_USAGE;
            }
            break;
        case O_REPLACE:
        case O_WITH:
            if (!vd_name_is_valid(val)) {
                msg(err, "%s: %s '%s' is not a device name", cmdname, name, val);
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
        msg(err, "%s: missing %s; see 'vdlvm %s --help'", cmdname,
            c->target == T_POOL ? "POOL" : "POOL/VOL", cmdname);
        return VD_EXIT_USAGE;
    }
    unsigned missing = c->required & ~a->given;
    if (missing) {
        msg(err, "%s: missing %s; see 'vdlvm %s --help'", cmdname,
            missing & O_SIZE ? "--size SIZE"
            : missing & O_REPLACE ? "--replace DEVICE" : "--with DEVICE",
            cmdname);
        return VD_EXIT_USAGE;
    }
    if (c->id == CMD_VOL_CREATE) {
        if ((a->given & O_COPIES) && a->layout != VD_LAYOUT_MIRROR) {
            msg(err, "%s: --copies applies to --layout mirror", cmdname);
            return VD_EXIT_USAGE;
        }
        if ((a->given & O_SAME_NODE) && a->layout != VD_LAYOUT_MIRROR) {
            msg(err, "%s: --allow-same-node applies to --layout mirror",
                cmdname);
            return VD_EXIT_USAGE;
        }
        if ((a->given & O_REGION) && a->layout != VD_LAYOUT_MIRROR) {
            msg(err, "%s: --region-size applies to --layout mirror", cmdname);
            return VD_EXIT_USAGE;
        }
        if (a->layout == VD_LAYOUT_MIRROR && !a->copies)
            a->copies = 2;
        if (a->layout == VD_LAYOUT_LINEAR)
            a->copies = 1;
    }
    if (c->id == CMD_VOL_REPAIR && !strcmp(a->replace, a->with)) {
        msg(err, "%s: --replace and --with name the same device '%s'",
            cmdname, a->with);
        return VD_EXIT_USAGE;
    }
    return -1;
}

int vd_admin_parse(int argc, char **argv, char *pool_name, size_t len,
                   FILE *out, FILE *err)
{
    struct cmd_args a;
    int rc = parse_cmd(argc, argv, &a, out, err);

    if (rc < 0 && pool_name && len)
        snprintf(pool_name, len, "%s", a.has_target ? a.pool : "");
    fflush(out);
    fflush(err);
    return rc;
}

/* ---- output helpers ----------------------------------------------------- */

static void fmt_size(uint64_t b, char *buf, size_t len)
{
    vd_size_format(b, buf, len);
}

static const char *layout_str(enum vd_layout l)
{
    return l == VD_LAYOUT_MIRROR ? "mirror" : "linear";
}

static const char *dev_state_str(enum vd_dev_state s)
{
    switch (s) {
    case VD_DEV_OK: return "ok";
    case VD_DEV_MISSING: return "missing";
    case VD_DEV_FAILED: return "failed";
    }
    return "unknown";
}

/* JSON string with escapes; bytes that are not valid UTF-8 become U+FFFD so
 * the document stays well-formed whatever a path contains. */
static void jstr(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");

    fputc('"', f);
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            default: fprintf(f, "\\u%04x", c);
            }
            p++;
        } else if (c < 0x80) {
            fputc(c, f);
            p++;
        } else {
            int n = c >= 0xf0 && c <= 0xf4 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : -1;
            int ok = n > 0;
            for (int k = 1; ok && k <= n; k++)
                ok = (p[k] & 0xc0) == 0x80;
            if (ok && n == 2) /* no overlongs, no surrogates */
                ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
            if (ok && n == 3)
                ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
            if (ok) {
                fwrite(p, 1, n + 1, f);
                p += n + 1;
            } else {
                fputs("\\ufffd", f);
                p++;
            }
        }
    }
    fputc('"', f);
}

/* A text table: columns padded to their widest cell, last one unpadded. */
#define TBL_MAXCOLS 10
struct table {
    int ncols;
    size_t nrows, cap;
    char **cells;   /* nrows * ncols, malloc'd */
};

__attribute__((format(printf, 3, 4)))
static void tbl_cell(struct table *t, int col, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    if (col == 0) {
        if (t->nrows == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 16;
            char **n = realloc(t->cells, cap * t->ncols * sizeof(*n));
            if (!n)
                return;
            memset(n + t->cap * t->ncols, 0,
                   (cap - t->cap) * t->ncols * sizeof(*n));
            t->cells = n;
            t->cap = cap;
        }
        t->nrows++;
    }
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    free(t->cells[(t->nrows - 1) * t->ncols + col]);
    t->cells[(t->nrows - 1) * t->ncols + col] = s;
}

static void tbl_print(struct table *t, FILE *out, const char *indent)
{
    size_t w[TBL_MAXCOLS] = { 0 };

    for (size_t r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            size_t l = s ? strlen(s) : 0;
            if (l > w[c])
                w[c] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        fputs(indent, out);
        for (int c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c == t->ncols - 1)
                fprintf(out, "%s\n", s ? s : "");
            else
                fprintf(out, "%-*s  ", (int)w[c], s ? s : "");
        }
    }
}

static void tbl_free(struct table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

static void dev_name(const vd_pool *pool, uint32_t i, char *buf, size_t len)
{
    struct vd_dev_info di;

    if (vd_pool_dev_get_info(pool, i, &di) == 0)
        snprintf(buf, len, "%s", di.name);
    else
        snprintf(buf, len, "#%u", i);
}

/* "le 0-47 -> d0 pe 0-47, le 48-60 -> d1 pe 0-12" (legs prefixed for
 * mirrors).  Returns a malloc'd string or NULL. */
static char *runs_brief(const vd_pool *pool, const struct vd_run *runs,
                        size_t n, uint32_t copies)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (!f)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const struct vd_run *r = &runs[i];
        char dn[VD_NAME_MAX + 8];
        dev_name(pool, r->dev, dn, sizeof(dn));
        if (i)
            fputs(", ", f);
        if (copies > 1)
            fprintf(f, "leg %u: ", r->leg);
        if (r->count == 1)
            fprintf(f, "le %llu -> %s pe %llu", (unsigned long long)r->le_start,
                    dn, (unsigned long long)r->pe_start);
        else
            fprintf(f, "le %llu-%llu -> %s pe %llu-%llu",
                    (unsigned long long)r->le_start,
                    (unsigned long long)(r->le_start + r->count - 1), dn,
                    (unsigned long long)r->pe_start,
                    (unsigned long long)(r->pe_start + r->count - 1));
    }
    if (!n)
        fputs("-", f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void json_runs(FILE *out, const vd_pool *pool, const struct vd_run *runs,
                      size_t n)
{
    fputs("[", out);
    for (size_t i = 0; i < n; i++) {
        struct vd_dev_info di;
        const struct vd_run *r = &runs[i];
        int ok = vd_pool_dev_get_info(pool, r->dev, &di) == 0;
        fprintf(out, "%s{\"leg\":%u,\"le\":%llu,\"count\":%llu,\"device\":",
                i ? "," : "", r->leg, (unsigned long long)r->le_start,
                (unsigned long long)r->count);
        jstr(out, ok ? di.name : "");
        fputs(",\"node\":", out);
        jstr(out, ok ? di.node : "");
        fprintf(out, ",\"pe\":%llu}", (unsigned long long)r->pe_start);
    }
    fputs("]", out);
}

static void json_mirror(FILE *out, const struct vd_mirror_info *mi);
static void mirror_brief(const struct vd_mirror_info *mi, char *buf,
                         size_t len);

static void json_vol(FILE *out, const vd_pool *pool,
                     const struct vd_vol_info *vi, const struct vd_run *runs,
                     size_t nruns, const struct vd_mirror_info *mi)
{
    fputs("{\"volume\":", out);
    char full[2 * VD_NAME_MAX + 2];
    snprintf(full, sizeof(full), "%s/%s", vd_pool_name(pool), vi->name);
    jstr(out, full);
    fputs(",\"pool\":", out);
    jstr(out, vd_pool_name(pool));
    fputs(",\"name\":", out);
    jstr(out, vi->name);
    fprintf(out, ",\"size\":%llu,\"layout\":\"%s\",\"copies\":%u,\"open\":%u,"
            "\"exported\":%s,\"state\":",
            (unsigned long long)vi->size, layout_str(vi->layout), vi->copies,
            vi->open_count, vi->open_count ? "true" : "false");
    if (mi) {
        char st[128];
        mirror_brief(mi, st, sizeof(st));
        jstr(out, st);
    } else {
        jstr(out, "ok");
    }
    if (runs) {
        fputs(",\"extents\":", out);
        json_runs(out, pool, runs, nruns);
    }
    if (mi)
        json_mirror(out, mi);
    fputs("}", out);
}

/* ---- the commands ------------------------------------------------------- */

static int cmd_vol_create(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err)
{
    struct vd_vol_opts o;
    struct vd_vol_info vi;
    struct vd_pool_info pi;
    char sz[32], es[32];
    int r;

    vd_vol_opts_init(&o);
    o.layout = a->layout;
    o.copies = a->copies;
    o.allow_same_node = !!(a->given & O_SAME_NODE);
    o.region_size = a->region_size;
    r = vd_vol_create(pool, a->vol, a->size, &o);
    if (r < 0)
        return vol_fail(err, r, a->pool, a->vol, "create");
    if (vd_vol_get_info(pool, a->vol, &vi) < 0 ||
        vd_pool_get_info(pool, &pi) < 0) {
        fprintf(out, "volume '%s/%s': created\n", a->pool, a->vol);
        return VD_EXIT_OK;
    }
    fmt_size(vi.size, sz, sizeof(sz));
    fmt_size(pi.extent_size, es, sizeof(es));
    uint64_t next = vi.size / pi.extent_size;
    fprintf(out, "volume '%s/%s': created, %s (%llu extent%s of %s), %s",
            a->pool, a->vol, sz, (unsigned long long)next,
            next == 1 ? "" : "s", es, layout_str(vi.layout));
    if (vi.layout == VD_LAYOUT_MIRROR)
        fprintf(out, ", %u copies", vi.copies);
    fputc('\n', out);
    if (vi.size != a->size) {
        char asked[32];
        fmt_size(a->size, asked, sizeof(asked));
        fprintf(out, "  note: %llu bytes (%s) asked, rounded up to whole "
                "extents of %s\n", (unsigned long long)a->size, asked, es);
    }
    if (vi.layout == VD_LAYOUT_MIRROR) {
        struct vd_mirror_info mi;
        if (vd_mirror_get_info(pool, a->vol, &mi) == 0) {
            int same = 1;
            for (uint32_t k = 1; k < mi.copies && k < 3; k++)
                if (strcmp(mi.legs[k].node, mi.legs[0].node))
                    same = 0;
            if (same && mi.copies > 1)
                msg(err, "warning: volume '%s/%s': every leg is on node "
                    "'%s' (--allow-same-node): the mirror survives the loss "
                    "of a device, not of that node; legs on devices of the "
                    "same disk protect nothing", a->pool, a->vol,
                    mi.legs[0].node);
        }
    }
    return VD_EXIT_OK;
}

static int cmd_vol_list(vd_pool *pool, struct cmd_args *a, FILE *out,
                        FILE *err)
{
    int n = vd_pool_vol_count(pool);
    struct table t = { .ncols = 5 };

    if (n < 0)
        return lib_fail(err, n, "pool '%s': listing volumes failed", a->pool);
    if (a->given & O_JSON) {
        fputs("{\"pool\":", out);
        jstr(out, vd_pool_name(pool));
        fputs(",\"volumes\":[", out);
    } else if (n == 0) {
        fprintf(out, "pool '%s' has no volumes\n", a->pool);
        return VD_EXIT_OK;
    } else {
        tbl_cell(&t, 0, "VOLUME");
        tbl_cell(&t, 1, "SIZE");
        tbl_cell(&t, 2, "LAYOUT");
        tbl_cell(&t, 3, "COPIES");
        tbl_cell(&t, 4, "EXPORTED");
    }
    for (int i = 0; i < n; i++) {
        struct vd_vol_info vi;
        char sz[32];
        int r = vd_pool_vol_get_info(pool, i, &vi);
        if (r < 0) {
            tbl_free(&t);
            return lib_fail(err, r, "pool '%s': listing volumes failed",
                            a->pool);
        }
        if (a->given & O_JSON) {
            if (i)
                fputc(',', out);
            json_vol(out, pool, &vi, NULL, 0, NULL);
            continue;
        }
        fmt_size(vi.size, sz, sizeof(sz));
        tbl_cell(&t, 0, "%s/%s", a->pool, vi.name);
        tbl_cell(&t, 1, "%s", sz);
        tbl_cell(&t, 2, "%s", layout_str(vi.layout));
        tbl_cell(&t, 3, "%u", vi.copies);
        tbl_cell(&t, 4, "%s", vi.open_count ? "yes" : "no");
    }
    if (a->given & O_JSON)
        fputs("]}\n", out);
    else
        tbl_print(&t, out, "");
    tbl_free(&t);
    return VD_EXIT_OK;
}

static int cmd_vol_remove(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err)
{
    int r = vd_vol_remove(pool, a->vol);

    if (r < 0)
        return vol_fail(err, r, a->pool, a->vol, "remove");
    fprintf(out, "volume '%s/%s': removed\n", a->pool, a->vol);
    return VD_EXIT_OK;
}

static int cmd_vol_extend(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err)
{
    struct vd_vol_info vi;
    uint64_t new_size = a->size;
    char from[32], to[32];
    int r;

    r = vd_vol_get_info(pool, a->vol, &vi);
    if (r < 0)
        return vol_fail(err, r, a->pool, a->vol, "lookup");
    if (a->size_rel) {
        if (UINT64_MAX - vi.size < a->size) {
            msg(err, "volume '%s/%s': --size +%llu overflows", a->pool,
                a->vol, (unsigned long long)a->size);
            return VD_EXIT_USAGE;
        }
        new_size = vi.size + a->size;
    }
    fmt_size(vi.size, from, sizeof(from));
    r = vd_vol_extend(pool, a->vol, new_size);
    if (r < 0)
        return vol_fail(err, r, a->pool, a->vol, "extend");
    if (vd_vol_get_info(pool, a->vol, &vi) == 0)
        new_size = vi.size;
    fmt_size(new_size, to, sizeof(to));
    fprintf(out, "volume '%s/%s': extended from %s to %s\n", a->pool, a->vol,
            from, to);
    return VD_EXIT_OK;
}

/* The mirror info of a volume, or an exit code with a message. */
static int mirror_info(vd_pool *pool, struct cmd_args *a, const char *what,
                       struct vd_mirror_info *mi, FILE *err)
{
    struct vd_vol_info vi;
    int r = vd_mirror_get_info(pool, a->vol, mi);

    if (r == -EINVAL && vd_vol_get_info(pool, a->vol, &vi) == 0) {
        msg(err, "volume '%s/%s': %s applies to mirrored volumes; this one is "
            "%s", a->pool, a->vol, what, layout_str(vi.layout));
        return VD_EXIT_FAIL;
    }
    if (r < 0)
        return vol_fail(err, r, a->pool, a->vol, what);
    return -1;
}

static void fmt_rate(uint64_t bps, char *buf, size_t len)
{
    char s[32];
    if (!bps) {
        snprintf(buf, len, "unlimited");
        return;
    }
    fmt_size(bps, s, sizeof(s));
    snprintf(buf, len, "%s/s", s);
}

static int cmd_resync(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vd_mirror_info mi;
    char rate[40], rs[32];
    int r = mirror_info(pool, a, "resync", &mi, err);

    if (r >= 0)
        return r;
    uint64_t limit = a->given & O_RATE ? a->rate : mi.rate_limit;
    r = vd_mirror_resync_start(pool, a->vol, limit);
    if (r < 0)
        return vol_fail(err, r, a->pool, a->vol, "resync");
    fmt_rate(limit, rate, sizeof(rate));
    fmt_size(mi.region_size, rs, sizeof(rs));
    if (!(a->given & O_WAIT)) {
        if (mi.dirty_regions == 0 && mi.resync_state != VD_RESYNC_RUNNING)
            fprintf(out, "volume '%s/%s': nothing to resync (no region "
                    "marked); rate limit %s for later resyncs of this "
                    "volume while this tgtd holds the pool\n", a->pool,
                    a->vol, rate);
        else
            fprintf(out, "volume '%s/%s': resync started, %llu regions of "
                    "%s marked, rate %s; follow it with 'vdlvm status "
                    "%s/%s'\n", a->pool, a->vol,
                    (unsigned long long)mi.dirty_regions, rs, rate, a->pool,
                    a->vol);
        return VD_EXIT_OK;
    }
    r = vd_mirror_resync_wait(pool, a->vol, 0);
    if (r < 0)
        return vol_fail(err, r, a->pool, a->vol, "resync");
    if (vd_mirror_get_info(pool, a->vol, &mi) == 0) {
        int insync = 1;
        for (uint32_t k = 0; k < mi.copies; k++)
            if (mi.legs[k].state != VD_LEG_INSYNC)
                insync = 0;
        if (!insync) {
            msg(err, "volume '%s/%s': resync ended but not every leg is "
                "in-sync; see 'vdlvm status %s/%s'", a->pool, a->vol,
                a->pool, a->vol);
            return VD_EXIT_FAIL;
        }
    }
    fprintf(out, "volume '%s/%s': resync done, legs in-sync\n", a->pool,
            a->vol);
    return VD_EXIT_OK;
}

static int cmd_verify(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vd_mirror_info mi;
    struct vd_verify_result res;
    int repair = !!(a->given & O_REPAIR);
    char rs[32];
    int r = mirror_info(pool, a, "verify", &mi, err);

    if (r >= 0)
        return r;
    memset(&res, 0, sizeof(res));
    r = vd_mirror_verify(pool, a->vol, repair, &res);
    if (r < 0)
        return vol_fail(err, r, a->pool, a->vol, "verify");
    fmt_size(res.region_size, rs, sizeof(rs));
    if (res.ndiff == 0) {
        fprintf(out, "volume '%s/%s': legs equal (%llu regions of %s "
                "compared)\n", a->pool, a->vol,
                (unsigned long long)res.regions, rs);
        vd_verify_result_free(&res);
        return VD_EXIT_OK;
    }
    fprintf(out, "volume '%s/%s': %zu of %llu regions of %s differ\n",
            a->pool, a->vol, res.ndiff, (unsigned long long)res.regions, rs);
    for (size_t i = 0; i < res.ndiff && i < 100; i++) {
        uint64_t b = res.diff[i] * res.region_size;
        fprintf(out, "  region %llu: bytes %llu-%llu\n",
                (unsigned long long)res.diff[i], (unsigned long long)b,
                (unsigned long long)(b + res.region_size - 1));
    }
    if (res.ndiff > 100)
        fprintf(out, "  ... and %zu more\n", res.ndiff - 100);
    if (repair)
        fprintf(out, "volume '%s/%s': %zu of %zu regions repaired\n", a->pool,
                a->vol, res.repaired, res.ndiff);
    r = repair && res.repaired >= res.ndiff ? VD_EXIT_OK : VD_EXIT_DIFF;
    if (r == VD_EXIT_DIFF && !repair)
        msg(err, "volume '%s/%s': legs differ; repair with 'vdlvm verify "
            "%s/%s --repair'", a->pool, a->vol, a->pool, a->vol);
    vd_verify_result_free(&res);
    return r;
}

static int cmd_vol_repair(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err)
{
    struct vd_mirror_info mi;
    int r = mirror_info(pool, a, "repair", &mi, err);

    if (r >= 0)
        return r;
    r = vd_mirror_replace_leg(pool, a->vol, a->replace, a->with);
    if (r < 0) {
        /* Whatever refuses it here (the device already holds another leg,
         * has too few free extents, is not in the pool) is the pool's
         * state, not the command's form: 1, like too little free space. */
        int code = lib_fail(err, r, "volume '%s/%s': moving the leg on '%s' "
                            "to '%s' failed", a->pool, a->vol, a->replace,
                            a->with);
        return code == VD_EXIT_USAGE ? VD_EXIT_FAIL : code;
    }
    if (!(a->given & O_WAIT)) {
        fprintf(out, "volume '%s/%s': leg on '%s' moved to '%s', rebuilding; "
                "follow it with 'vdlvm status %s/%s'\n", a->pool, a->vol,
                a->replace, a->with, a->pool, a->vol);
        return VD_EXIT_OK;
    }
    r = vd_mirror_resync_wait(pool, a->vol, 0);
    if (r < 0)
        return vol_fail(err, r, a->pool, a->vol, "rebuild");
    fprintf(out, "volume '%s/%s': leg on '%s' moved to '%s' and rebuilt\n",
            a->pool, a->vol, a->replace, a->with);
    return VD_EXIT_OK;
}

static const char *resync_state_str(enum vd_resync_state s)
{
    return s == VD_RESYNC_RUNNING ? "running"
           : s == VD_RESYNC_PAUSED ? "paused" : "idle";
}

/* "in-sync", "degraded (leg 1 failed)", "resyncing 45%". */
static void mirror_brief(const struct vd_mirror_info *mi, char *buf,
                         size_t len)
{
    size_t n = 0;
    int bad = 0;

    if (mi->resync_state == VD_RESYNC_RUNNING && mi->total_bytes) {
        snprintf(buf, len, "resyncing %u%%",
                 (unsigned)(mi->done_bytes * 100 / mi->total_bytes));
        return;
    }
    buf[0] = 0;
    for (uint32_t k = 0; k < mi->copies && k < 3; k++) {
        if (mi->legs[k].state == VD_LEG_INSYNC)
            continue;
        n += snprintf(buf + n, n < len ? len - n : 0, "%sleg %u %s",
                      bad++ ? ", " : "degraded (", k,
                      vd_leg_state_name(mi->legs[k].state,
                                        mi->legs[k].resyncing));
    }
    if (bad)
        snprintf(buf + n, n < len ? len - n : 0, ")");
    else
        snprintf(buf, len, "in-sync");
}

static void json_mirror(FILE *out, const struct vd_mirror_info *mi)
{
    fprintf(out, ",\"region_size\":%llu,\"legs\":[",
            (unsigned long long)mi->region_size);
    for (uint32_t k = 0; k < mi->copies && k < 3; k++) {
        fprintf(out, "%s{\"leg\":%u,\"device\":", k ? "," : "", k);
        jstr(out, mi->legs[k].device);
        fputs(",\"node\":", out);
        jstr(out, mi->legs[k].node);
        fputs(",\"state\":", out);
        jstr(out, vd_leg_state_name(mi->legs[k].state, mi->legs[k].resyncing));
        fputs("}", out);
    }
    fprintf(out, "],\"resync\":{\"state\":\"%s\",\"done_bytes\":%llu,"
            "\"total_bytes\":%llu,\"rate_bytes_per_s\":%llu,"
            "\"rate_limit\":%llu,\"dirty_regions\":%llu}",
            resync_state_str(mi->resync_state),
            (unsigned long long)mi->done_bytes,
            (unsigned long long)mi->total_bytes,
            (unsigned long long)mi->rate_bytes_per_s,
            (unsigned long long)mi->rate_limit,
            (unsigned long long)mi->dirty_regions);
}

/* Human form of a mirror: legs and the resync with a progress bar. */
static void print_mirror(FILE *out, const struct vd_mirror_info *mi)
{
    char rs[32], rate[40], lim[40];

    fmt_size(mi->region_size, rs, sizeof(rs));
    for (uint32_t k = 0; k < mi->copies && k < 3; k++)
        fprintf(out, "  leg %u     %s on node %s: %s\n", k, mi->legs[k].device,
                mi->legs[k].node,
                vd_leg_state_name(mi->legs[k].state, mi->legs[k].resyncing));
    fmt_rate(mi->rate_limit, lim, sizeof(lim));
    fprintf(out, "  bitmap    %llu of %llu regions of %s marked\n",
            (unsigned long long)mi->dirty_regions,
            (unsigned long long)(mi->region_size
                                     ? (mi->size + mi->region_size - 1) /
                                           mi->region_size
                                     : 0),
            rs);
    fprintf(out, "  resync    %s", resync_state_str(mi->resync_state));
    if (mi->resync_state != VD_RESYNC_IDLE && mi->total_bytes) {
        unsigned pct = (unsigned)(mi->done_bytes * 100 / mi->total_bytes);
        char done[32], total[32];
        fmt_size(mi->done_bytes, done, sizeof(done));
        fmt_size(mi->total_bytes, total, sizeof(total));
        fmt_rate(mi->rate_bytes_per_s, rate, sizeof(rate));
        fputs("  [", out);
        for (unsigned i = 0; i < 30; i++)
            fputc(i < pct * 30 / 100 ? '#' : '.', out);
        fprintf(out, "] %u%%  %s of %s", pct, done, total);
        if (mi->rate_bytes_per_s) {
            uint64_t left = (mi->total_bytes - mi->done_bytes) /
                            mi->rate_bytes_per_s;
            fprintf(out, "  %s  %llu:%02llu left", rate,
                    (unsigned long long)(left / 60),
                    (unsigned long long)(left % 60));
        }
    }
    fprintf(out, "  (rate limit %s)\n", lim);
}

static int status_vol(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vd_mirror_info mi;
    int has_mi = 0;
    struct vd_vol_info vi;
    struct vd_pool_info pi;
    struct vd_run *runs = NULL;
    size_t nruns = 0;
    int r;

    r = vd_vol_get_info(pool, a->vol, &vi);
    if (r == 0)
        r = vd_pool_get_info(pool, &pi);
    if (r == 0)
        r = vd_vol_get_runs(pool, a->vol, &runs, &nruns);
    if (r == 0 && vi.layout == VD_LAYOUT_MIRROR) {
        r = vd_mirror_get_info(pool, a->vol, &mi);
        has_mi = r == 0;
    }
    if (r < 0) {
        free(runs);
        return vol_fail(err, r, a->pool, a->vol, "status");
    }
    if (a->given & O_JSON) {
        json_vol(out, pool, &vi, runs, nruns, has_mi ? &mi : NULL);
        fputc('\n', out);
    } else {
        char sz[32], es[32];
        char *brief = runs_brief(pool, runs, nruns, vi.copies);
        fmt_size(vi.size, sz, sizeof(sz));
        fmt_size(pi.extent_size, es, sizeof(es));
        fprintf(out, "volume '%s/%s'\n", a->pool, vi.name);
        fprintf(out, "  size      %s (%llu bytes, %llu extents of %s)\n", sz,
                (unsigned long long)vi.size,
                (unsigned long long)(vi.size / pi.extent_size), es);
        fprintf(out, "  layout    %s", layout_str(vi.layout));
        if (vi.layout == VD_LAYOUT_MIRROR)
            fprintf(out, ", %u copies", vi.copies);
        fprintf(out, "\n  exported  %s\n", vi.open_count ? "yes" : "no");
        fprintf(out, "  extents   %s\n", brief ? brief : "?");
        if (has_mi)
            print_mirror(out, &mi);
        free(brief);
    }
    free(runs);
    return VD_EXIT_OK;
}

static int status_pool(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vd_pool_info pi;
    int r = vd_pool_get_info(pool, &pi);
    int json = !!(a->given & O_JSON);
    int nvols;
    struct table dt = { .ncols = 8 }, vt = { .ncols = 6 };
    char *notes = NULL;
    size_t notes_len = 0;
    FILE *nf = NULL;

    if (r < 0)
        return lib_fail(err, r, "pool '%s': status failed", vd_pool_name(pool));
    nvols = vd_pool_vol_count(pool);
    if (nvols < 0)
        return lib_fail(err, nvols, "pool '%s': status failed", pi.name);

    if (json) {
        fputs("{\"pool\":", out);
        jstr(out, pi.name);
        fputs(",\"uuid\":", out);
        jstr(out, pi.uuid);
        fprintf(out, ",\"extent_size\":%llu,\"seq\":%llu,\"size\":%llu,"
                "\"used\":%llu,\"free\":%llu,\"devices\":[",
                (unsigned long long)pi.extent_size, (unsigned long long)pi.seq,
                (unsigned long long)pi.total_bytes,
                (unsigned long long)pi.used_bytes,
                (unsigned long long)pi.free_bytes);
    } else {
        char t[32], u[32], f[32], es[32];
        fmt_size(pi.total_bytes, t, sizeof(t));
        fmt_size(pi.used_bytes, u, sizeof(u));
        fmt_size(pi.free_bytes, f, sizeof(f));
        fmt_size(pi.extent_size, es, sizeof(es));
        fprintf(out, "pool '%s'  uuid %s  extent %s  metadata seq %llu\n",
                pi.name, pi.uuid, es, (unsigned long long)pi.seq);
        fprintf(out, "  size %s, used %s, free %s; %u device%s, %u volume%s\n",
                t, u, f, pi.ndevs, pi.ndevs == 1 ? "" : "s", (unsigned)nvols,
                nvols == 1 ? "" : "s");
        tbl_cell(&dt, 0, "DEVICE");
        tbl_cell(&dt, 1, "NODE");
        tbl_cell(&dt, 2, "STATE");
        tbl_cell(&dt, 3, "SIZE");
        tbl_cell(&dt, 4, "USED");
        tbl_cell(&dt, 5, "FREE");
        tbl_cell(&dt, 6, "MD");
        tbl_cell(&dt, 7, "PATH");
        nf = open_memstream(&notes, &notes_len);
    }
    for (uint32_t i = 0; i < pi.ndevs; i++) {
        struct vd_dev_info di;
        uint64_t used, freeb;
        r = vd_pool_dev_get_info(pool, i, &di);
        if (r < 0)
            goto fail;
        used = di.used_extents * pi.extent_size;
        freeb = (di.extents - di.used_extents) * pi.extent_size;
        if (json) {
            fputs(i ? ",{\"name\":" : "{\"name\":", out);
            jstr(out, di.name);
            fputs(",\"node\":", out);
            jstr(out, di.node);
            fputs(",\"path\":", out);
            jstr(out, di.path);
            fputs(",\"uuid\":", out);
            jstr(out, di.uuid);
            fprintf(out, ",\"state\":\"%s\",\"message\":",
                    dev_state_str(di.state));
            jstr(out, di.state == VD_DEV_OK ? "" : di.state_msg);
            fprintf(out, ",\"size\":%llu,\"used\":%llu,\"free\":%llu,"
                    "\"extents\":%llu,\"used_extents\":%llu,\"metadata\":%s}",
                    (unsigned long long)di.size, (unsigned long long)used,
                    (unsigned long long)freeb, (unsigned long long)di.extents,
                    (unsigned long long)di.used_extents,
                    di.has_md ? "true" : "false");
        } else {
            char s[32], u[32], f[32];
            fmt_size(di.size, s, sizeof(s));
            fmt_size(used, u, sizeof(u));
            fmt_size(freeb, f, sizeof(f));
            tbl_cell(&dt, 0, "%s", di.name);
            tbl_cell(&dt, 1, "%s", di.node);
            tbl_cell(&dt, 2, "%s", dev_state_str(di.state));
            tbl_cell(&dt, 3, "%s", s);
            tbl_cell(&dt, 4, "%s", u);
            tbl_cell(&dt, 5, "%s", f);
            tbl_cell(&dt, 6, "%s", di.has_md ? "yes" : "no");
            tbl_cell(&dt, 7, "%s", di.path);
            if (di.state != VD_DEV_OK && nf)
                fprintf(nf, "  device '%s': %s\n", di.name,
                        di.state_msg[0] ? di.state_msg : dev_state_str(di.state));
        }
    }
    if (json)
        fputs("],\"volumes\":[", out);
    else {
        tbl_cell(&vt, 0, "VOLUME");
        tbl_cell(&vt, 1, "SIZE");
        tbl_cell(&vt, 2, "LAYOUT");
        tbl_cell(&vt, 3, "EXPORTED");
        tbl_cell(&vt, 4, "STATE");
        tbl_cell(&vt, 5, "EXTENTS");
    }
    for (int i = 0; i < nvols; i++) {
        struct vd_vol_info vi;
        struct vd_run *runs = NULL;
        size_t nruns = 0;
        struct vd_mirror_info mi;
        int has_mi = 0;
        r = vd_pool_vol_get_info(pool, i, &vi);
        if (r == 0)
            r = vd_vol_get_runs(pool, vi.name, &runs, &nruns);
        if (r == 0 && vi.layout == VD_LAYOUT_MIRROR) {
            r = vd_mirror_get_info(pool, vi.name, &mi);
            has_mi = r == 0;
        }
        if (r < 0) {
            free(runs);
            goto fail;
        }
        if (json) {
            if (i)
                fputc(',', out);
            json_vol(out, pool, &vi, runs, nruns, has_mi ? &mi : NULL);
        } else {
            char sz[32];
            char *brief = runs_brief(pool, runs, nruns, vi.copies);
            fmt_size(vi.size, sz, sizeof(sz));
            tbl_cell(&vt, 0, "%s", vi.name);
            tbl_cell(&vt, 1, "%s", sz);
            if (vi.layout == VD_LAYOUT_MIRROR)
                tbl_cell(&vt, 2, "mirror x%u", vi.copies);
            else
                tbl_cell(&vt, 2, "%s", layout_str(vi.layout));
            tbl_cell(&vt, 3, "%s", vi.open_count ? "yes" : "no");
            if (has_mi) {
                char st[128];
                mirror_brief(&mi, st, sizeof(st));
                tbl_cell(&vt, 4, "%s", st);
            } else {
                tbl_cell(&vt, 4, "ok");
            }
            tbl_cell(&vt, 5, "%s", brief ? brief : "?");
            free(brief);
        }
        free(runs);
    }
    if (json) {
        fputs("]}\n", out);
    } else {
        fputc('\n', out);
        tbl_print(&dt, out, "  ");
        if (nf) {
            fclose(nf);
            nf = NULL;
            if (notes)
                fputs(notes, out);
        }
        fputc('\n', out);
        if (nvols)
            tbl_print(&vt, out, "  ");
        else
            fprintf(out, "  no volumes\n");
    }
    r = VD_EXIT_OK;
    goto out;
fail:
    if (json)
        fputs("\n", out);
    r = lib_fail(err, r, "pool '%s': status failed", pi.name);
out:
    if (nf)
        fclose(nf);
    free(notes);
    tbl_free(&dt);
    tbl_free(&vt);
    return r;
}

int vd_admin_exec(vd_pool *pool, int argc, char **argv, FILE *out, FILE *err)
{
    struct cmd_args a;
    FILE *saved_err = t_cmd_err;
    unsigned saved_logged = t_cmd_logged;
    int rc = parse_cmd(argc, argv, &a, out, err);

    if (rc >= 0)
        goto done;
    if (!pool) {
        msg(err, "%s: no pool is open", argv[0]);
        rc = VD_EXIT_FAIL;
        goto done;
    }
    if (!a.has_target) {
        snprintf(a.pool, sizeof(a.pool), "%s", vd_pool_name(pool));
    } else if (strcmp(a.pool, vd_pool_name(pool))) {
        msg(err, "pool '%s': not served here (this is pool '%s')", a.pool,
            vd_pool_name(pool));
        rc = VD_EXIT_USAGE;
        goto done;
    }
    t_cmd_err = err;
    t_cmd_logged = 0;
    switch (a.spec->id) {
    case CMD_VOL_CREATE: rc = cmd_vol_create(pool, &a, out, err); break;
    case CMD_VOL_LIST: rc = cmd_vol_list(pool, &a, out, err); break;
    case CMD_VOL_REMOVE: rc = cmd_vol_remove(pool, &a, out, err); break;
    case CMD_VOL_EXTEND: rc = cmd_vol_extend(pool, &a, out, err); break;
    case CMD_STATUS:
        rc = a.vol[0] ? status_vol(pool, &a, out, err)
                      : status_pool(pool, &a, out, err);
        break;
    case CMD_VOL_REPAIR: rc = cmd_vol_repair(pool, &a, out, err); break;
    case CMD_RESYNC: rc = cmd_resync(pool, &a, out, err); break;
    case CMD_VERIFY: rc = cmd_verify(pool, &a, out, err); break;
    }
    t_cmd_err = saved_err;
    t_cmd_logged = saved_logged;
done:
    fflush(out);
    fflush(err);
    return rc;
}

/* ---- control socket ----------------------------------------------------- */
/* Wire format, all integers little-endian u32:
 *   request: magic, argc, len, then len bytes holding argc NUL-terminated
 *            arguments (argv[0] is the command word)
 *   reply:   exit code, out length, out bytes, err length, err bytes
 * A request is bounded by CTL_MAX_REQ bytes and CTL_MAX_ARGC arguments; the
 * server reads it within CTL_SERVER_MS in total and answers anything
 * malformed with exit 2 and a message.
 *
 * Threads.  The serving thread (tgtd's main thread in the module) only
 * accepts: every request is read, checked and run by a detached thread of
 * its own (a "job"), because any command may wait on a device, the network
 * or the pool's admin lock, which is held across metadata commits to
 * remote devices.  At most VD_CTL_MAX_JOBS jobs per pool; beyond that the
 * client gets a "busy" reply (written without waiting: the reply is small
 * and the socket buffer empty) and exit VD_EXIT_BUSY.  vd_ctl_unlisten
 * waits for the pool's jobs, so the pool outlives every job using it. */
#define CTL_MAGIC 0x31434456u /* "VDC1" */
#define CTL_MAX_REQ (64u * 1024)
#define CTL_MAX_ARGC 256u
#define CTL_MAX_REPLY (64u << 20)
#define CTL_SERVER_MS 2000
#define CTL_CLIENT_MS (120 * 1000)

struct ctl_job {
    struct ctl_job *next;   /* g_jobs, under g_jobs_lock */
    char pool_name[VD_NAME_MAX + 1];
    vd_pool *pool;
    const struct vd_ctl_hooks *hooks;
    int fd;                 /* the job's own */
};

/* Running jobs of every pool.  Written by the serving thread (add) and by
 * each job (remove itself); vd_ctl_unlisten waits on g_jobs_done until none
 * of its pool is left. */
static pthread_mutex_t g_jobs_lock = PTHREAD_MUTEX_INITIALIZER; /* g_jobs */
static pthread_cond_t g_jobs_done = PTHREAD_COND_INITIALIZER;
static struct ctl_job *g_jobs;

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = v;
    p[1] = v >> 8;
    p[2] = v >> 16;
    p[3] = v >> 24;
}

static uint32_t get_u32(const unsigned char *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events or the deadline passes. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd p = { .fd = fd, .events = events };
        if (left <= 0)
            return -ETIMEDOUT;
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* Read exactly len bytes before deadline: 0, -ETIMEDOUT, -EPIPE (peer
 * closed early) or another negative errno. */
static int read_full(int fd, void *buf, size_t len, int64_t deadline)
{
    unsigned char *p = buf;

    while (len) {
        ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= n;
        } else if (n == 0) {
            return -EPIPE;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int r = wait_fd(fd, POLLIN, deadline);
            if (r < 0)
                return r;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len, int64_t deadline)
{
    const unsigned char *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r < 0)
                return r;
        } else if (n < 0 && errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

int vd_ctl_path(const char *pool_name, char *buf, size_t len)
{
    struct sockaddr_un sa;
    int n;

    if (!pool_name || !vd_name_is_valid(pool_name))
        return -EINVAL;
    n = snprintf(buf, len, "%s/%s.sock", vd_rundir(), pool_name);
    if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    return 0;
}

static int make_addr(const char *pool_name, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    return vd_ctl_path(pool_name, sa->sun_path, sizeof(sa->sun_path));
}

/* 1 when a process accepts connections on the socket at sa, 0 when nobody
 * does (ECONNREFUSED: a stale file), negative errno otherwise. */
static int socket_is_live(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int r;

    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        r = 1;
    else if (errno == EAGAIN || errno == EINPROGRESS)
        r = 1; /* backlog full: somebody listens */
    else if (errno == ECONNREFUSED)
        r = 0;
    else
        r = -errno;
    close(fd);
    return r;
}

int vd_ctl_listen(const char *pool_name)
{
    struct sockaddr_un sa;
    const char *dir = vd_rundir();
    struct stat st;
    int fd, r;

    if ((r = make_addr(pool_name, &sa)) < 0) {
        vd_log(VD_LOG_ERR, "pool '%s': control socket path in %s: %s",
               pool_name ? pool_name : "", dir, strerror(-r));
        return r;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        vd_log(VD_LOG_ERR, "pool '%s': cannot create %s: %s", pool_name, dir,
               strerror(-r));
        return r;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        vd_log(VD_LOG_ERR, "pool '%s': control socket: %s", pool_name,
               strerror(-r));
        return r;
    }
    for (int attempt = 0;; attempt++) {
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            break;
        r = -errno;
        if (r != -EADDRINUSE || attempt > 0)
            goto fail;
        /* Remove a file left by a process that died, never a live one's. */
        if (lstat(sa.sun_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
            vd_log(VD_LOG_ERR, "pool '%s': control socket %s exists and is not "
                   "a socket; remove it", pool_name, sa.sun_path);
            r = -EEXIST;
            goto out_close;
        }
        int live = socket_is_live(&sa);
        if (live == 1) {
            vd_log(VD_LOG_ERR, "pool '%s': control socket %s is served by "
                   "another process; the pool is held elsewhere",
                   pool_name, sa.sun_path);
            r = -EADDRINUSE;
            goto out_close;
        }
        if (live < 0 && live != -ENOENT) {
            r = live;
            goto fail;
        }
        if (live == 0 && unlink(sa.sun_path) < 0 && errno != ENOENT) {
            r = -errno;
            goto fail;
        }
    }
    if (chmod(sa.sun_path, 0600) < 0) {
        r = -errno;
        unlink(sa.sun_path);
        goto fail;
    }
    if (listen(fd, 16) < 0) {
        r = -errno;
        unlink(sa.sun_path);
        goto fail;
    }
    return fd;
fail:
    vd_log(VD_LOG_ERR, "pool '%s': control socket %s: %s", pool_name,
           sa.sun_path, strerror(-r));
out_close:
    close(fd);
    return r;
}

void vd_ctl_close(const char *pool_name, int fd)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

    if (fd < 0)
        return;
    close(fd);
    if (vd_ctl_path(pool_name, path, sizeof(path)) == 0)
        unlink(path);
}

void vd_ctl_wait(const char *pool_name)
{
    pthread_mutex_lock(&g_jobs_lock);
    for (;;) {
        struct ctl_job *j = g_jobs;
        while (j && strcmp(j->pool_name, pool_name))
            j = j->next;
        if (!j)
            break;
        pthread_cond_wait(&g_jobs_done, &g_jobs_lock);
    }
    pthread_mutex_unlock(&g_jobs_lock);
}

void vd_ctl_unlisten(const char *pool_name, int fd)
{
    if (fd < 0)
        return;
    vd_ctl_close(pool_name, fd);
    /* The caller closes the pool next: its commands must be done. */
    vd_ctl_wait(pool_name);
}

static int send_reply(int fd, uint32_t code, const char *out, size_t outlen,
                      const char *err, size_t errlen, int64_t deadline)
{
    unsigned char h[8];
    int r;

    put_u32(h, code);
    put_u32(h + 4, outlen);
    if ((r = write_full(fd, h, 8, deadline)) < 0 ||
        (r = write_full(fd, out, outlen, deadline)) < 0)
        return r;
    put_u32(h, errlen);
    if ((r = write_full(fd, h, 4, deadline)) < 0 ||
        (r = write_full(fd, err, errlen, deadline)) < 0)
        return r;
    return 0;
}

__attribute__((format(printf, 4, 5)))
static int reply_error(int fd, uint32_t code, int64_t deadline,
                       const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n = snprintf(buf, sizeof(buf), "vdlvm: ");

    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    buf[n++] = '\n';
    return send_reply(fd, code, "", 0, buf, n, deadline);
}

/* Commands that may run for long (verify reads whole volumes, --wait
 * waits for a resync): the client waits for them without bound. */
static int is_long_cmd(int argc, char **argv)
{
    int i;

    if (argc < 1)
        return 0;
    if (!strcmp(argv[0], "verify"))
        return 1;
    if (!strcmp(argv[0], "resync"))
        i = 1;
    else if (argc > 1 && !strcmp(argv[0], "vol") && !strcmp(argv[1], "repair"))
        i = 2;
    else
        return 0;
    for (; i < argc; i++)
        if (!strcmp(argv[i], "--wait"))
            return 1;
    return 0;
}

/* Run the command and send its reply; 0 or a negative errno. */
static int run_and_reply(int fd, vd_pool *pool,
                         const struct vd_ctl_hooks *hooks, int argc,
                         char **argv)
{
    const char *pname = vd_pool_name(pool);
    char *obuf = NULL, *ebuf = NULL;
    size_t olen = 0, elen = 0;
    FILE *out = open_memstream(&obuf, &olen);
    FILE *err = open_memstream(&ebuf, &elen);
    int code, r;

    if (!out || !err) {
        if (out)
            fclose(out);
        if (err)
            fclose(err);
        free(obuf);
        free(ebuf);
        reply_error(fd, VD_EXIT_FAIL, now_ms() + CTL_SERVER_MS,
                    "control socket of pool '%s': out of memory", pname);
        return -ENOMEM;
    }
    if (hooks && hooks->before)
        hooks->before(hooks->arg);
    code = vd_admin_exec(pool, argc, argv, out, err);
    if (hooks && hooks->after)
        hooks->after(hooks->arg);
    fclose(out);
    fclose(err);
    if (!obuf || !ebuf) {
        free(obuf);
        free(ebuf);
        reply_error(fd, VD_EXIT_FAIL, now_ms() + CTL_SERVER_MS,
                    "control socket of pool '%s': out of memory", pname);
        return -ENOMEM;
    }
    /* A fresh deadline: the command itself may have taken a while. */
    r = send_reply(fd, code, obuf, olen, ebuf, elen, now_ms() + CTL_SERVER_MS);
    free(obuf);
    free(ebuf);
    return r;
}

/* On a job's thread: read the request on fd, check it and the caller, run
 * it, reply.  0 or a negative errno (the client got a reply if it could). */
static int serve_request(int fd, vd_pool *pool,
                         const struct vd_ctl_hooks *hooks)
{
    const char *pname = vd_pool_name(pool);
    unsigned char h[12];
    unsigned char *req = NULL;
    char **argv = NULL;
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    uint32_t argc, len;
    int64_t deadline = now_ms() + CTL_SERVER_MS;
    int r;

    /* Read the request even from a client we refuse, so that it gets the
     * reply instead of EPIPE on its send. */
    r = read_full(fd, h, sizeof(h), deadline);
    if (r < 0)
        goto out;
    argc = get_u32(h + 4);
    len = get_u32(h + 8);
    if (get_u32(h) != CTL_MAGIC) {
        reply_error(fd, VD_EXIT_USAGE, deadline, "control socket of pool '%s': "
                    "request is not a vdlvm command (bad magic); are vdlvm "
                    "and bs_vdlvm.so of the same version?", pname);
        r = -EPROTO;
        goto out;
    }
    if (len > CTL_MAX_REQ || argc == 0 || argc > CTL_MAX_ARGC || len < argc) {
        reply_error(fd, VD_EXIT_USAGE, deadline, "control socket of pool '%s': "
                    "request of %u arguments in %u bytes refused; at most %u "
                    "arguments in %u bytes", pname, argc, len, CTL_MAX_ARGC,
                    CTL_MAX_REQ);
        r = -EMSGSIZE;
        goto out;
    }
    req = malloc(len);
    argv = calloc(argc + 1, sizeof(*argv));
    if (!req || !argv) {
        reply_error(fd, VD_EXIT_FAIL, deadline, "control socket of pool '%s': "
                    "out of memory", pname);
        r = -ENOMEM;
        goto out;
    }
    r = read_full(fd, req, len, deadline);
    if (r < 0)
        goto out;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
        r = -errno;
        reply_error(fd, VD_EXIT_FAIL, deadline, "control socket of pool '%s': "
                    "cannot check the caller: %s", pname, strerror(-r));
        goto out;
    }
    if (cred.uid != 0 && cred.uid != geteuid()) {
        vd_log(VD_LOG_WARN, "pool '%s': control socket: refused uid %u "
               "(pid %d)", pname, (unsigned)cred.uid, (int)cred.pid);
        reply_error(fd, VD_EXIT_FAIL, deadline, "pool '%s': uid %u may not "
                    "administer this pool; run vdlvm as root", pname,
                    (unsigned)cred.uid);
        r = -EPERM;
        goto out;
    }

    /* Split the arguments: exactly argc NUL-terminated strings. */
    {
        uint32_t n = 0, start = 0;
        for (uint32_t i = 0; i < len; i++)
            if (req[i] == 0) {
                if (n < argc)
                    argv[n] = (char *)req + start;
                n++;
                start = i + 1;
            }
        if (n != argc || start != len) {
            reply_error(fd, VD_EXIT_USAGE, deadline, "control socket of pool "
                        "'%s': garbled request (%u arguments announced, %u "
                        "found)", pname, argc, n);
            r = -EPROTO;
            goto out;
        }
    }
    r = run_and_reply(fd, pool, hooks, (int)argc, argv);
out:
    if (r < 0 && r != -EPROTO && r != -EMSGSIZE && r != -EPERM)
        vd_log(VD_LOG_WARN, "pool '%s': control socket request: %s (ignored)",
               pname, strerror(-r));
    free(argv);
    free(req);
    return r;
}

static void *job_main(void *arg)
{
    struct ctl_job *j = arg;

    serve_request(j->fd, j->pool, j->hooks);
    close(j->fd);
    pthread_mutex_lock(&g_jobs_lock);
    for (struct ctl_job **pp = &g_jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    pthread_cond_broadcast(&g_jobs_done);
    pthread_mutex_unlock(&g_jobs_lock);
    free(j);
    return NULL;
}

/* Serving thread: a refusal that must not wait.  Drains what the client
 * already sent (so that it reads our reply rather than a reset), then
 * writes the reply if the socket takes it at once. */
__attribute__((format(printf, 3, 4)))
static void refuse_now(int fd, uint32_t code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n = snprintf(buf, sizeof(buf), "vdlvm: ");

    while (recv(fd, buf + 100, sizeof(buf) - 100, MSG_DONTWAIT) > 0)
        ;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    buf[n++] = '\n';
    send_reply(fd, code, "", 0, buf, n, now_ms());
}

int vd_ctl_serve_one(int listen_fd, vd_pool *pool,
                     const struct vd_ctl_hooks *hooks)
{
    const char *pname = pool ? vd_pool_name(pool) : "?";
    struct ctl_job *j;
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t tid;
    int fd, r, running = 0;

    fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
            errno == ECONNABORTED)
            return 0; /* the client went away: nothing to do */
        r = -errno;
        vd_log(VD_LOG_WARN, "pool '%s': control socket accept: %s", pname,
               strerror(-r));
        return r;
    }
    if (!pool) {
        refuse_now(fd, VD_EXIT_FAIL, "control socket: no pool is open");
        close(fd);
        return -EINVAL;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        refuse_now(fd, VD_EXIT_FAIL, "control socket of pool '%s': out of "
                   "memory", pname);
        close(fd);
        return -ENOMEM;
    }
    snprintf(j->pool_name, sizeof(j->pool_name), "%s", pname);
    j->pool = pool;
    j->hooks = hooks;
    j->fd = fd;
    pthread_mutex_lock(&g_jobs_lock);
    for (struct ctl_job *o = g_jobs; o; o = o->next)
        running += !strcmp(o->pool_name, j->pool_name);
    if (running < VD_CTL_MAX_JOBS) {
        j->next = g_jobs;
        g_jobs = j;
    }
    pthread_mutex_unlock(&g_jobs_lock);
    if (running >= VD_CTL_MAX_JOBS) {
        vd_log(VD_LOG_WARN, "pool '%s': control socket: %d commands running; "
               "one more refused (busy)", pname, running);
        refuse_now(fd, VD_EXIT_BUSY, "pool '%s': busy: the tgtd holding it "
                   "already runs %d commands for it (at most %d); retry when "
                   "one has finished", pname, running, VD_CTL_MAX_JOBS);
        close(fd);
        free(j);
        return -EBUSY;
    }
    /* Jobs never take signals meant for the serving thread (tgtd's
     * signalfd): create them with every signal blocked. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    r = -pthread_create(&tid, &attr, job_main, j);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        pthread_mutex_lock(&g_jobs_lock);
        for (struct ctl_job **pp = &g_jobs; *pp; pp = &(*pp)->next)
            if (*pp == j) {
                *pp = j->next;
                break;
            }
        pthread_cond_broadcast(&g_jobs_done);
        pthread_mutex_unlock(&g_jobs_lock);
        vd_log(VD_LOG_WARN, "pool '%s': control socket: cannot start a "
               "thread for a command: %s", pname, strerror(-r));
        refuse_now(fd, VD_EXIT_BUSY, "pool '%s': the tgtd holding it cannot "
                   "start a thread for this command: %s; retry later", pname,
                   strerror(-r));
        close(fd);
        free(j);
        return r;
    }
    return 0; /* the job owns fd now */
}

int vd_ctl_call(const char *pool_name, int argc, char **argv, FILE *out,
                FILE *err, int *exit_code)
{
    struct sockaddr_un sa;
    struct timeval tv = { .tv_sec = CTL_SERVER_MS / 1000 };
    unsigned char *req = NULL, h[12];
    char *buf = NULL;
    size_t len = 0;
    int64_t deadline;
    uint32_t code, n;
    int fd = -1, r;

    if ((r = make_addr(pool_name, &sa)) < 0)
        return r;
    if (argc < 1 || (uint32_t)argc > CTL_MAX_ARGC)
        return -E2BIG;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    if (len > CTL_MAX_REQ)
        return -E2BIG;

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Bounds connect() too, should the server's backlog be full. */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = errno == EAGAIN ? -ETIMEDOUT : -errno;
        goto out;
    }
    req = malloc(len + 12);
    if (!req) {
        r = -ENOMEM;
        goto out;
    }
    put_u32(req, CTL_MAGIC);
    put_u32(req + 4, argc);
    put_u32(req + 8, len);
    for (int i = 0, off = 12; i < argc; i++) {
        size_t l = strlen(argv[i]) + 1;
        memcpy(req + off, argv[i], l);
        off += l;
    }
    deadline = is_long_cmd(argc, argv) ? INT64_MAX : now_ms() + CTL_CLIENT_MS;
    r = write_full(fd, req, len + 12, deadline);
    if (r < 0 && r != -EPIPE && r != -ECONNRESET)
        goto out;
    /* On EPIPE the server refused early; its reply may still be readable. */
    r = read_full(fd, h, 8, deadline);
    if (r < 0)
        goto reply_fail;
    code = get_u32(h);
    n = get_u32(h + 4);
    for (int part = 0; part < 2; part++) {
        if (n > CTL_MAX_REPLY) {
            r = -EPROTO;
            goto reply_fail;
        }
        buf = malloc(n ? n : 1);
        if (!buf) {
            r = -ENOMEM;
            goto out;
        }
        if ((r = read_full(fd, buf, n, deadline)) < 0)
            goto reply_fail;
        fwrite(buf, 1, n, part ? err : out);
        free(buf);
        buf = NULL;
        if (part == 0) {
            if ((r = read_full(fd, h, 4, deadline)) < 0)
                goto reply_fail;
            n = get_u32(h);
        }
    }
    fflush(out);
    fflush(err);
    *exit_code = code > 255 ? VD_EXIT_FAIL : (int)code;
    r = 0;
    goto out;
reply_fail:
    /* Connected, so a live server took the request: never report this as
     * "nobody serves the pool", which would make the caller open it. */
    if (r == -ENOENT || r == -ECONNREFUSED)
        r = -EPROTO;
out:
    free(buf);
    free(req);
    if (fd >= 0)
        close(fd);
    return r;
}

/* ---- registry of pool definitions --------------------------------------- */

const char *vd_statedir(void)
{
    const char *d = getenv("VDLVM_STATEDIR");
    return d && *d ? d : "/var/lib/vdlvm";
}

static int mkdir_p(const char *dir, mode_t mode)
{
    char buf[4096];
    size_t n = strlen(dir);

    if (n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, dir, n + 1);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int vd_registry_add(const char *name, const char *path)
{
    char dir[4096], link[4096 + 80], tmp[4096 + 100], abs[4096];
    int r;

    if (!vd_name_is_valid(name))
        return -EINVAL;
    if (!realpath(path, abs))
        return -errno;
    snprintf(dir, sizeof(dir), "%s/pools", vd_statedir());
    if ((r = mkdir_p(dir, 0755)) < 0)
        return r;
    snprintf(link, sizeof(link), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.%d", dir, name, (int)getpid());
    unlink(tmp);
    if (symlink(abs, tmp) < 0)
        return -errno;
    if (rename(tmp, link) < 0) {
        r = -errno;
        unlink(tmp);
        return r;
    }
    return 0;
}

int vd_registry_get(const char *name, char *buf, size_t len)
{
    char link[4096 + 80];
    ssize_t n;

    if (!vd_name_is_valid(name) || len == 0)
        return -EINVAL;
    snprintf(link, sizeof(link), "%s/pools/%s", vd_statedir(), name);
    n = readlink(link, buf, len - 1);
    if (n < 0)
        return -errno;
    buf[n] = 0;
    return 0;
}

int vd_registry_remove(const char *name)
{
    char link[4096 + 80];

    if (!vd_name_is_valid(name))
        return -EINVAL;
    snprintf(link, sizeof(link), "%s/pools/%s", vd_statedir(), name);
    return unlink(link) < 0 ? -errno : 0;
}
