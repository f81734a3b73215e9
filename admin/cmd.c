/* vdlvm admin: log routing, exit codes, the command table, argument
 * parsing and dispatch (vd_admin_parse, vd_admin_exec).
 *
 * The same code runs in the vdlvm process and inside tgtd, so arguments are
 * parsed by hand (no getopt state survives between calls) and every message
 * goes to the err stream handed in, never to stderr directly.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    case -EFBIG: /* a size above what the pool can hold */
        return VD_EXIT_USAGE;
    case -EBUSY:
        return VD_EXIT_BUSY;
    default:
        return VD_EXIT_FAIL;
    }
}

/* A library call failed with r: print our own message unless the library
 * already told the user (through admin_log).  -EINVAL is bad input (2). */
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
        admin_msg(err,
                  "volume '%s/%s': not found; list volumes with 'vdlvm vol "
                  "list %s'",
                  pool, vol, pool);
        break;
    case -EEXIST:
        admin_msg(err, "volume '%s/%s': already exists", pool, vol);
        break;
    case -EBUSY:
        admin_msg(err,
                  "volume '%s/%s': in use (exported); delete its LUN first",
                  pool, vol);
        return VD_EXIT_BUSY;
    case -ENOSPC:
        admin_msg(err,
                  "volume '%s/%s': %s failed: not enough free space; see "
                  "'vdlvm status %s'",
                  pool, vol, verb, pool);
        break;
    case -ENOTSUP:
        admin_msg(err, "volume '%s/%s': %s failed: not supported by this build",
                  pool, vol, verb);
        break;
    case -EFBIG:
        admin_msg(err,
                  "volume '%s/%s': %s failed: the size is too large for "
                  "this pool",
                  pool, vol, verb);
        break;
    default:
        admin_msg(err, "volume '%s/%s': %s failed: %s", pool, vol, verb,
                  strerror(-r));
    }
    return vd_exit_code(r);
}

/* ---- commands and their arguments --------------------------------------- */

/* below, with the parsers */
static int check_vol_create(struct cmd_args *a, const char *cmdname, FILE *err);
static int check_vol_repair(struct cmd_args *a, const char *cmdname, FILE *err);
static int exec_status(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);

static const struct cmd_spec g_cmds[] = {
    { "vol", "create", T_VOL,
      O_SIZE | O_LAYOUT | O_COPIES | O_SAME_NODE | O_REGION | O_THIN | O_CHUNK,
      O_SIZE,
      "vol create POOL/VOL --size SIZE [--layout linear|mirror] [--copies N] "
      "[--allow-same-node] [--region-size SIZE] [--thin [--chunk-size SIZE]]",
      "Create a volume of SIZE, rounded up to whole extents (the output\n"
      "says so when it rounds).  A linear volume takes its extents from any\n"
      "devices with free space.\n"
      "\n"
      "  --size SIZE          bytes, or with a unit: B, KiB, MiB, GiB, TiB\n"
      "                       (K, M, G, T are the same binary units)\n"
      "  --thin               allocate space on first write, chunk by chunk,\n"
      "                       and give it back on UNMAP: SIZE may exceed the\n"
      "                       pool (overcommit); with --layout mirror the\n"
      "                       chunks live on mirrored extents\n"
      "  --chunk-size SIZE    thin: the unit of allocation and of UNMAP, a\n"
      "                       power of two from 4KiB to the extent size\n"
      "                       (default: the pool's chunk_size, 64KiB)\n"
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
      "A write to a thin volume that needs a new chunk while the pool is full\n"
      "fails (SCSI DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT);\n"
      "reads and overwrites keep working, and writes work again as soon as\n"
      "space is freed (UNMAP, a volume removed).\n"
      "Names: 1-63 of A-Z a-z 0-9 _ . -, not starting with . or -.\n",
      .check = check_vol_create, .exec = admin_cmd_vol_create },
    { "vol", "list", T_POOL, O_JSON, 0, "vol list POOL [--json]",
      "List the volumes of POOL: name, size, layout, copies, exported,\n"
      "provisioning (thick or thin), allocated bytes, chunk size.\n"
      "\n"
      "  --json               one JSON object {\"pool\":..., \"volumes\":[...]}\n",
      .exec = admin_cmd_vol_list },
    { "vol", "remove", T_VOL, 0, 0, "vol remove POOL/VOL",
      "Remove a volume and free its extents.  Refused while the volume is\n"
      "exported (delete its LUN with tgtadm first).\n",
      .exec = admin_cmd_vol_remove },
    { "vol", "extend", T_VOL, O_SIZE, O_SIZE,
      "vol extend POOL/VOL --size [+]SIZE",
      "Grow a volume to SIZE, or by SIZE with a leading '+'.  Volumes only\n"
      "grow.  Works while the volume is exported: the LUN sees the new size\n"
      "at once (initiators learn it from a capacity-changed unit attention\n"
      "or a rescan).\n"
      "\n"
      "  --size [+]SIZE       new size, or growth with '+'\n",
      .flags = F_SIZE_REL, .exec = admin_cmd_vol_extend },
    { "vol", "set", T_VOL, O_QOS_ALL | O_TIERING, 0,
      "vol set POOL/VOL [--iops-limit N] [--bps-limit SIZE] "
      "[--read-iops-limit N] [--write-iops-limit N] [--read-bps-limit SIZE] "
      "[--write-bps-limit SIZE] [--burst SECONDS] [--tiering on|off]",
      "Set a volume's QoS limits and tiering, kept in the pool metadata.\n"
      "Works while the volume is exported: tgtd applies them at once.\n"
      "Commands over a limit wait (in order) and are never refused.  0\n"
      "removes a limit; options not given keep their values.\n"
      "\n"
      "  --iops-limit N         commands per second, reads and writes\n"
      "  --read-iops-limit N    reads per second\n"
      "  --write-iops-limit N   writes per second\n"
      "  --bps-limit SIZE       bytes per second, e.g. 50MiB (or 50MiB/s)\n"
      "  --read-bps-limit SIZE  read bytes per second\n"
      "  --write-bps-limit SIZE written bytes per second\n"
      "  --burst SECONDS        how long an idle volume may exceed its limits:\n"
      "                         bucket depth = limit x SECONDS (default 1; 0:\n"
      "                         the default; e.g. 0.5)\n"
      "  --tiering on|off       move this volume's hot extents to fast devices\n"
      "                         (on, the default) or leave them (off)\n",
      .check = admin_qos_check, .exec = admin_cmd_vol_set },
    { "vol", "repair", T_VOL, O_REPLACE | O_WITH | O_WAIT, O_REPLACE | O_WITH,
      "vol repair POOL/VOL --replace DEVICE --with DEVICE [--wait]",
      "Move the mirror leg on DEVICE to free extents of another device and\n"
      "rebuild it fully, online.\n"
      "\n"
      "  --replace DEVICE     the device whose leg moves\n"
      "  --with DEVICE        where it goes\n"
      "  --wait               return when the rebuild is done (always so when\n"
      "                       no tgtd holds the pool)\n",
      .check = check_vol_repair, .exec = admin_cmd_vol_repair },
    { "vol", "encrypt", T_VOL, O_RATE | O_WAIT, 0,
      "vol encrypt POOL/VOL [--rate LIMIT] [--wait]",
      "Encrypt an existing volume online: move each of its extents that is\n"
      "on a device without encrypt: true to a device with it (the extent\n"
      "mover: writes during a move reach both places, resumable after a\n"
      "crash), then zero the plaintext extent left behind.  It runs in the\n"
      "background of the process holding the pool and resumes after a\n"
      "restart; follow it with 'vdlvm status POOL'.\n"
      "\n"
      "  --rate LIMIT         bytes per second, e.g. 50MiB (0: unlimited)\n"
      "  --wait               return when every extent is encrypted, with a\n"
      "                       progress bar (always so when no tgtd holds the\n"
      "                       pool)\n",
      .exec = admin_cmd_vol_encrypt },
    { "vol", "revert", T_SNAP, O_FORCE, 0, "vol revert POOL/VOL@SNAP [--force]",
      "Make the volume's content the snapshot's (its size stays; the\n"
      "snapshot stays).  Chunks only the volume held are freed.  Refused\n"
      "while the volume is exported: its initiator would see every block\n"
      "change at once under a mounted file system.\n"
      "\n"
      "  --force              revert an exported volume anyway\n",
      .exec = admin_cmd_vol_revert },
    { "vol", "clone", T_VOL_SNAP, 0, 0, "vol clone POOL/SRC[@SNAP] POOL/NEW",
      "Make NEW, a writable thin volume sharing every chunk of SRC (a thin\n"
      "volume, one of its snapshots, or another clone) until it writes it:\n"
      "metadata only, instant, no data copied (a golden image cloned per\n"
      "VM).  Export, list and remove NEW like any volume; the volume SRC\n"
      "lives in cannot be removed while it has clones, its snapshots can.\n",
      .flags = F_FILE, .exec = admin_cmd_vol_clone },
    { "vol", "import", T_VOL, O_FORMAT | O_SIZE, 0,
      "vol import POOL/VOL FILE [--format FMT] [--size SIZE]",
      "Make a new thin volume from the disk image FILE, allocating chunks\n"
      "only for the image's non-zero data (holes and all-zero blocks stay\n"
      "unallocated).  qemu-img does the format work: an image that is not\n"
      "raw is first converted to a sparse raw file beside FILE (or in\n"
      "$TMPDIR), removed afterwards.  Nothing is half-created: on any\n"
      "failure the new volume is removed again.  A progress bar on a\n"
      "terminal, one line per 10% otherwise.\n"
      "\n"
      "  --format FMT         raw, qcow2, vmdk, vdi, vhdx, vpc, qed, qcow,\n"
      "                       dmg, parallels (default: what qemu-img\n"
      "                       detects; raw without qemu-img)\n"
      "  --size SIZE          the volume's size, at least the image's\n"
      "                       virtual size (default: that size)\n",
      .flags = F_FILE, .check = admin_image_check,
      .exec = admin_cmd_vol_import },
    { "vol", "export", T_VOL_SNAP, O_FORMAT | O_FORCE, 0,
      "vol export POOL/VOL[@SNAP] FILE [--format FMT] [--force]",
      "Write a volume or a snapshot to the disk image FILE: raw (sparse:\n"
      "unallocated and all-zero blocks become holes) or any format qemu-img\n"
      "writes (converted from a sparse raw file beside FILE).  FILE appears\n"
      "complete or not at all (written under a temporary name, renamed).\n"
      "To export a volume while it is written to, export a snapshot of it.\n"
      "\n"
      "  --format FMT         raw (default), qcow2, vmdk, vdi, vhdx, vpc,\n"
      "                       qed, qcow\n"
      "  --force              replace an existing FILE\n",
      .flags = F_FILE, .check = admin_image_check,
      .exec = admin_cmd_vol_export },
    { "snap", "create", T_SNAP, 0, 0, "snap create POOL/VOL@SNAP",
      "Take a read-only, crash-consistent snapshot of a thin volume, also\n"
      "while it is exported and written to: it holds every write\n"
      "acknowledged before the command started.  Metadata only: no data is\n"
      "copied; the volume copies a chunk it shares with a snapshot on its\n"
      "first write to it.  Export it read-only with tgtadm ... --bstype\n"
      "vdlvm --backing-store POOL/VOL@SNAP.\n",
      .exec = admin_cmd_snap_create },
    { "snap", "list", T_VOL, O_JSON, 0, "snap list POOL/VOL [--json]",
      "List the snapshots of a volume, oldest first: name, size, creation\n"
      "time, exclusive bytes (what removing it frees), exported.\n"
      "\n"
      "  --json               one JSON object {\"volume\":..., \"snapshots\":[...]}\n",
      .exec = admin_cmd_snap_list },
    { "snap", "remove", T_SNAP, 0, 0, "snap remove POOL/VOL@SNAP",
      "Remove a snapshot, any one, in any order.  The chunks no volume or\n"
      "other snapshot references are freed.  Refused while it is exported.\n",
      .exec = admin_cmd_snap_remove },
    { "pool", "check", T_POOL, O_REPAIR, 0, "pool check POOL [--repair]",
      "Verify every thin volume's chunk references: each map entry names a\n"
      "chunk whose own entry agrees, each snapshot reference count equals\n"
      "the references, and no chunk is allocated that nothing references (a\n"
      "leak, e.g. after a crash during snap remove; opening the pool\n"
      "reclaims those).  Exit 0 when clean, 1 with a report otherwise.\n"
      "\n"
      "  --repair             free the leaked chunks now\n",
      .exec = admin_cmd_pool_check },
    { "status", NULL, T_ANY_OPT, O_JSON, 0, "status [POOL[/VOL]] [--json]",
      "Show a pool (devices: node, path, state, size, used, free; space:\n"
      "provisioned (overcommit), allocated, free, allocation thresholds\n"
      "crossed (80/90/95%); volumes: size, layout, allocated, chunk size of\n"
      "thin ones, which extents sit on which device) or one volume.\n"
      "Without POOL: every known pool (see 'vdlvm pool list').\n"
      "\n"
      "  --json               machine-readable: a pool object for POOL, a\n"
      "                       volume object for POOL/VOL, {\"pools\":[...]}\n"
      "                       without an argument\n",
      .exec = exec_status },
    { "resync", NULL, T_VOL, O_RATE | O_WAIT, 0,
      "resync POOL/VOL [--rate LIMIT] [--wait]",
      "Start or resume the resync of a mirrored volume: copy the regions\n"
      "marked in the write-intent bitmap from an in-sync leg to the others.\n"
      "It runs in the background of the process holding the pool; follow it\n"
      "with 'vdlvm status POOL/VOL'.\n"
      "\n"
      "  --rate LIMIT         bytes per second, e.g. 50MiB (0: unlimited);\n"
      "                       stays until changed\n"
      "  --wait               return when the resync is done (always so when\n"
      "                       no tgtd holds the pool)\n",
      .exec = admin_cmd_resync },
    { "stats", NULL, T_ANY_OPT, O_JSON | O_PROMETHEUS, 0,
      "stats [POOL[/VOL]] [--json | --prometheus]",
      "Show the I/O counters of the volumes a tgtd on this host exports\n"
      "(commands read and written, bytes, errors, a latency histogram),\n"
      "the state and use of the devices, thin allocation and mirror resync\n"
      "progress.  The counters live in the tgtd and start at zero when it\n"
      "starts; when no tgtd holds the pool, the output says that its\n"
      "volumes are not exported and shows the rest.  Without POOL: every\n"
      "known pool.\n"
      "\n"
      "  --json               one JSON object per pool ({\"pools\":[...]}\n"
      "                       without POOL)\n"
      "  --prometheus         Prometheus text exposition format, e.g. for\n"
      "                       node_exporter's textfile collector\n",
      .check = admin_check_stats, .exec = admin_cmd_stats },
    { "pool", "apply", T_POOL, O_DRY_RUN, 0, "pool apply POOL [--dry-run]",
      "Make the live pool match its definition (the YAML): devices added\n"
      "there are checked (unused, large enough), initialised and join the\n"
      "pool at once.  Any other difference is refused and nothing changes:\n"
      "a changed path or node, a renamed device, a device left out (named\n"
      "with what it still holds; removing a device is not supported yet).\n"
      "\n"
      "  --dry-run            print the plan, change nothing\n",
      .exec = admin_cmd_pool_apply },
    { "dev", "evacuate", T_VOL, O_TO | O_RATE | O_WAIT, 0,
      "dev evacuate POOL/DEV [--to DEV,...] [--rate LIMIT] [--wait]",
      "Move every extent on device DEV (of every volume and layout) to other\n"
      "devices, online, one extent at a time: writes during a move reach both\n"
      "places, a checkpoint in the pool's metadata lets a move resume after a\n"
      "crash without copying again what it copied.  Mirror legs stay on\n"
      "distinct nodes.  DEV gets no new extents meanwhile.  It runs in the\n"
      "background of the process holding the pool; follow it with 'vdlvm\n"
      "status POOL'.\n"
      "\n"
      "  --to DEV,...         only onto these devices\n"
      "  --rate LIMIT         bytes per second, e.g. 50MiB (0: unlimited)\n"
      "  --wait               return when DEV holds no extent, with progress\n"
      "                       lines (always so when no tgtd holds the pool)\n",
      .exec = admin_cmd_dev_evacuate },
    { "pool", "rebalance", T_POOL, O_RATE | O_WAIT, 0,
      "pool rebalance POOL [--rate LIMIT] [--wait]",
      "Move extents, online, until every device's share of used extents is\n"
      "within one extent of the pool's mean (by percentage of its size):\n"
      "between nodes first, then between devices.  Mirror legs stay on\n"
      "distinct nodes; a device being evacuated takes no part.  It runs in\n"
      "the background of the process holding the pool and resumes after a\n"
      "restart; follow it with 'vdlvm status POOL'.\n"
      "\n"
      "  --rate LIMIT         bytes per second, e.g. 50MiB (0: unlimited)\n"
      "  --wait               return when balanced, with a progress bar on a\n"
      "                       terminal (always so when no tgtd holds the pool)\n",
      .exec = admin_cmd_pool_rebalance },
    { "verify", NULL, T_VOL, O_REPAIR, 0, "verify POOL/VOL [--repair]",
      "Read every leg of a mirrored volume, compare them region by region\n"
      "(SHA-256) and list the regions that differ.  Exit 0 when the legs are\n"
      "equal (or were repaired), 3 when differences remain.\n"
      "\n"
      "  --repair             copy differing regions from an in-sync leg\n",
      .exec = admin_cmd_verify },
    { "key", "add", T_POOL, O_KEY_FILE, O_KEY_FILE,
      "key add POOL --key-file NEW",
      "Add a key slot to an encrypted pool: the pool's data key, wrapped by\n"
      "a key derived from the key file NEW (PBKDF2-HMAC-SHA256, AES-256-GCM),\n"
      "so that NEW opens the pool too.  Authorised by the key file of the\n"
      "pool definition (encryption.key_file), which must open a slot.  No\n"
      "data is re-encrypted.  A key file is root-only (chmod 600) and holds\n"
      "16 to 4096 bytes, e.g. head -c 64 /dev/urandom > NEW.\n"
      "\n"
      "  --key-file NEW       absolute path of the new key file\n",
      .exec = admin_cmd_key_add },
    { "key", "remove", T_POOL, O_KEY_FILE, O_KEY_FILE,
      "key remove POOL --key-file OLD",
      "Remove the key slot that the key file OLD opens; OLD no longer opens\n"
      "the pool.  The last slot is never removed.  To rotate: key add NEW,\n"
      "point encryption.key_file at NEW, key remove OLD.\n"
      "\n"
      "  --key-file OLD       absolute path of the key file to remove\n",
      .exec = admin_cmd_key_remove },
    { "key", "rotate", T_POOL, O_KEY_FILE, O_KEY_FILE,
      "key rotate POOL --key-file NEW",
      "Replace the key file of the pool definition (encryption.key_file) by\n"
      "NEW in one metadata commit: NEW gets a key slot wrapping the pool's\n"
      "data key and the old key file's slot is removed, both or neither (a\n"
      "crash leaves the old key file or the new one working).  No data is\n"
      "re-encrypted.  Then point encryption.key_file at NEW.\n"
      "\n"
      "  --key-file NEW       absolute path of the new key file\n",
      .exec = admin_cmd_key_rotate },
    { "tier", "status", T_VOL, O_JSON | O_PNG, 0,
      "tier status POOL/VOL [--json] [--png FILE]",
      "Show the heat of every extent of a volume (I/Os counted, halved each\n"
      "tiering interval; long sequential streams are not counted) and where\n"
      "it is: device and tier (fast or slow, `tier:` in the definition).\n"
      "\n"
      "  --json               one JSON object with an \"extents\" list\n"
      "  --png FILE           write a heat map (gnuplot): volume offset\n"
      "                       across, time down, fast/slow marked below;\n"
      "                       FILE is an absolute path\n",
      .check = admin_tier_check, .exec = admin_cmd_tier_status },
    { "tier", "run", T_VOL, O_WAIT | O_DRY_RUN, 0,
      "tier run POOL/VOL [--wait] [--dry-run]",
      "Run one tiering pass over a volume now: the hottest extents on slow\n"
      "devices move to fast ones while the fast tier keeps its free share\n"
      "(`tiering: fast_free`), the coldest fast extents move down when room\n"
      "is needed; an extent displaces another only when it is much hotter.\n"
      "Extents move with the extent mover (data moves, no copy is kept).\n"
      "\n"
      "  --wait               return when the moves are done\n"
      "  --dry-run            print the plan, move nothing\n",
      .check = admin_tier_check, .exec = admin_cmd_tier_run },
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
        admin_msg(err,
                  "%s%s%s: '%s' is not a pool name; names are 1-63 of "
                  "A-Z a-z 0-9 _ . -, not starting with . or -",
                  c->w1, *what ? " " : "", what, s);
        return -1;
    }
    memcpy(a->pool, s, plen);
    a->pool[plen] = 0;
    if (!vd_name_is_valid(a->pool)) {
        admin_msg(err,
                  "%s%s%s: '%s' is not a pool name; names are 1-63 of "
                  "A-Z a-z 0-9 _ . -, not starting with . or -",
                  c->w1, *what ? " " : "", what, a->pool);
        return -1;
    }
    if (!slash) {
        if (c->target == T_VOL || c->target == T_VOL_SNAP) {
            admin_msg(err,
                      "%s%s%s: '%s' names no volume; give POOL/VOL, e.g. "
                      "'%s/vol0'",
                      c->w1, *what ? " " : "", what, s, a->pool);
            return -1;
        }
        a->vol[0] = 0;
    } else {
        if (c->target == T_POOL) {
            admin_msg(err,
                      "%s%s%s: give a pool, not '%s'; e.g. 'vdlvm %s%s%s %s'",
                      c->w1, *what ? " " : "", what, s, c->w1, *what ? " " : "",
                      what, a->pool);
            return -1;
        }
        if (c->target == T_VOL_SNAP && strchr(slash + 1, '@')) {
            char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
            if (vd_snap_split(slash + 1, vol, snap) <= 0 ||
                !vd_name_is_valid(vol)) {
                admin_msg(err,
                          "%s%s%s: '%s' names no snapshot; give "
                          "POOL/VOL@SNAP (SNAP: 1-63 of A-Z a-z 0-9 . _ - +)",
                          c->w1, *what ? " " : "", what, s);
                return -1;
            }
            strcpy(a->vol, vol);
            strcpy(a->snap, snap);
            a->has_target = 1;
            return 0;
        }
        if (c->target != T_SNAP &&
            (strlen(slash + 1) > VD_NAME_MAX || !vd_name_is_valid(slash + 1))) {
            admin_msg(err,
                      "%s%s%s: '%s' is not a volume name; names are 1-63 of "
                      "A-Z a-z 0-9 _ . -, not starting with . or -",
                      c->w1, *what ? " " : "", what, slash + 1);
            return -1;
        }
        const char *vn = slash + 1, *at = strchr(vn, '@');
        if (c->target == T_SNAP) {
            char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
            if (!at || vd_snap_split(vn, vol, snap) <= 0 ||
                !vd_name_is_valid(vol)) {
                admin_msg(err,
                          "%s%s%s: '%s' names no snapshot; give "
                          "POOL/VOL@SNAP (SNAP: 1-63 of A-Z a-z 0-9 . _ - +)",
                          c->w1, *what ? " " : "", what, s);
                return -1;
            }
            strcpy(a->vol, vol);
            strcpy(a->snap, snap);
            a->has_target = 1;
            return 0;
        }
        strcpy(a->vol, slash + 1);
    }
    a->has_target = 1;
    return 0;
}

/* The vol create options that belong to layouts: the layouts' own ops
 * tables say which one takes which (vd_layout_create_opts). */
#define LAYOUT_OPTS (O_COPIES | O_SAME_NODE | O_REGION)

/* The O_* bits of the VD_LOPT_* bits lopts, and back. */
static unsigned o_of_lopts(unsigned lopts)
{
    return (lopts & VD_LOPT_COPIES ? O_COPIES : 0) |
           (lopts & VD_LOPT_SAME_NODE ? O_SAME_NODE : 0) |
           (lopts & VD_LOPT_REGION ? O_REGION : 0);
}
static unsigned lopts_of_o(unsigned o)
{
    return (o & O_COPIES ? VD_LOPT_COPIES : 0) |
           (o & O_SAME_NODE ? VD_LOPT_SAME_NODE : 0) |
           (o & O_REGION ? VD_LOPT_REGION : 0);
}

/* ---- options: one parser each ------------------------------------------- */
/* Each returns 0, or VD_EXIT_USAGE after a message naming the command. */

static int opt_size(const char *cmdname, const char *name, const char *val,
                    struct cmd_args *a, FILE *err)
{
    const char *v = val;
    char m[384];

    if (*v == '+' && (a->spec->flags & F_SIZE_REL)) {
        a->size_rel = 1;
        v++;
    }
    if (vd_size_parse_max(v, UINT64_MAX, &a->size, m, sizeof(m)) < 0) {
        admin_msg(err, "%s: --size %s", cmdname, m);
        return VD_EXIT_USAGE;
    }
    if (a->size == 0) {
        admin_msg(err,
                  "%s: --size '%s' is not a size for a volume: it is "
                  "0 bytes; give at least 512",
                  cmdname, val);
        return VD_EXIT_USAGE;
    }
    return 0;
}

static int opt_layout(const char *cmdname, const char *name, const char *val,
                      struct cmd_args *a, FILE *err)
{
    if (vd_layout_from_name(val, &a->layout) < 0) {
        admin_msg(err, "%s: --layout '%s' is unknown; use linear or mirror",
                  cmdname, val);
        return VD_EXIT_USAGE;
    }
    return 0;
}

static int opt_copies(const char *cmdname, const char *name, const char *val,
                      struct cmd_args *a, FILE *err)
{
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(val, &end, 10);
    if (errno || end == val || *end || n < 2 || n > 3) {
        admin_msg(err, "%s: --copies '%s' is not 2 or 3", cmdname, val);
        return VD_EXIT_USAGE;
    }
    a->copies = (uint32_t)n;
    return 0;
}

static int opt_region(const char *cmdname, const char *name, const char *val,
                      struct cmd_args *a, FILE *err)
{
    if (vd_size_parse(val, &a->region_size) < 0 ||
        a->region_size < (64u << 10) ||
        (a->region_size & (a->region_size - 1))) {
        admin_msg(err,
                  "%s: --region-size '%s' is not a power of two of at "
                  "least 64KiB",
                  cmdname, val);
        return VD_EXIT_USAGE;
    }
    return 0;
}

static int opt_chunk(const char *cmdname, const char *name, const char *val,
                     struct cmd_args *a, FILE *err)
{
    char m[384];

    if (vd_size_parse_max(val, UINT64_MAX, &a->chunk_size, m, sizeof(m)) < 0) {
        admin_msg(err, "%s: --chunk-size %s", cmdname, m);
        return VD_EXIT_USAGE;
    }
    if (a->chunk_size < VD_CHUNK_SIZE_MIN ||
        (a->chunk_size & (a->chunk_size - 1))) {
        admin_msg(err,
                  "%s: --chunk-size '%s' is not a power of two of at least "
                  "4KiB; use e.g. 64KiB (at most the extent size)",
                  cmdname, val);
        return VD_EXIT_USAGE;
    }
    return 0;
}

static int opt_rate(const char *cmdname, const char *name, const char *val,
                    struct cmd_args *a, FILE *err)
{
    if (vd_size_parse(val, &a->rate) < 0) {
        admin_msg(err,
                  "%s: --rate '%s' is not a rate; use bytes per second "
                  "with a unit, e.g. 50MiB",
                  cmdname, val);
        return VD_EXIT_USAGE;
    }
    return 0;
}

static int opt_device(const char *cmdname, const char *name, const char *val,
                      struct cmd_args *a, FILE *err)
{
    if (!vd_name_is_valid(val)) {
        admin_msg(err, "%s: %s '%s' is not a device name", cmdname, name, val);
        return VD_EXIT_USAGE;
    }
    if (!strcmp(name, "--replace"))
        a->replace = val;
    else
        a->with = val;
    return 0;
}

static int opt_to(const char *cmdname, const char *name, const char *val,
                  struct cmd_args *a, FILE *err)
{
    if (!*val) {
        admin_msg(err, "%s: --to needs device names, e.g. --to d3,d4", cmdname);
        return VD_EXIT_USAGE;
    }
    a->to = val;
    return 0;
}

struct opt_spec {
    const char *name;
    unsigned bit; /* O_* */
    /* the option's value parser; NULL for an option without a value */
    int (*parse)(const char *cmdname, const char *name, const char *val,
                 struct cmd_args *a, FILE *err);
};

static int opt_png(const char *cmdname, const char *name, const char *val,
                   struct cmd_args *a, FILE *err)
{
    a->png = val; /* checked by admin_tier_check */
    return 0;
}

static int opt_tiering(const char *cmdname, const char *name, const char *val,
                       struct cmd_args *a, FILE *err)
{
    if (strcmp(val, "on") && strcmp(val, "off")) {
        admin_msg(err, "%s: --tiering '%s' is not on or off", cmdname, val);
        return VD_EXIT_USAGE;
    }
    a->tiering = !strcmp(val, "on");
    return 0;
}

static const struct opt_spec g_opts[] = {
    { .name = "--size", .bit = O_SIZE, .parse = opt_size },
    { .name = "--layout", .bit = O_LAYOUT, .parse = opt_layout },
    { .name = "--copies", .bit = O_COPIES, .parse = opt_copies },
    { .name = "--allow-same-node", .bit = O_SAME_NODE },
    { .name = "--json", .bit = O_JSON },
    { .name = "--rate", .bit = O_RATE, .parse = opt_rate },
    { .name = "--replace", .bit = O_REPLACE, .parse = opt_device },
    { .name = "--with", .bit = O_WITH, .parse = opt_device },
    { .name = "--repair", .bit = O_REPAIR },
    { .name = "--wait", .bit = O_WAIT },
    { .name = "--region-size", .bit = O_REGION, .parse = opt_region },
    { .name = "--thin", .bit = O_THIN },
    { .name = "--chunk-size", .bit = O_CHUNK, .parse = opt_chunk },
    { .name = "--key-file", .bit = O_KEY_FILE, .parse = admin_opt_key_file },
    { .name = "--iops-limit", .bit = O_IOPS_LIMIT, .parse = admin_qos_opt },
    { .name = "--read-iops-limit",
      .bit = O_RIOPS_LIMIT,
      .parse = admin_qos_opt },
    { .name = "--write-iops-limit",
      .bit = O_WIOPS_LIMIT,
      .parse = admin_qos_opt },
    { .name = "--bps-limit", .bit = O_BPS_LIMIT, .parse = admin_qos_opt },
    { .name = "--read-bps-limit", .bit = O_RBPS_LIMIT, .parse = admin_qos_opt },
    { .name = "--write-bps-limit",
      .bit = O_WBPS_LIMIT,
      .parse = admin_qos_opt },
    { .name = "--burst", .bit = O_BURST, .parse = admin_qos_opt },
    { .name = "--prometheus", .bit = O_PROMETHEUS },
    { .name = "--to", .bit = O_TO, .parse = opt_to },
    { .name = "--dry-run", .bit = O_DRY_RUN },
    { .name = "--force", .bit = O_FORCE },
    { .name = "--png", .bit = O_PNG, .parse = opt_png },
    { .name = "--tiering", .bit = O_TIERING, .parse = opt_tiering },
    { .name = "--format", .bit = O_FORMAT, .parse = admin_opt_format },
};
#define NOPTS (sizeof(g_opts) / sizeof(g_opts[0]))

/* ---- per-command rules, run once every option is parsed ----------------- */

static int check_vol_create(struct cmd_args *a, const char *cmdname, FILE *err)
{
    /* the options a layout takes, by its name (the layout id is tested in
     * the pool's registry only) */
    uint32_t copies;
    unsigned takes = o_of_lopts(vd_layout_create_opts(a->layout, &copies));
    unsigned bad = a->given & LAYOUT_OPTS & ~takes;

    if (bad) {
        const char *opt = bad & O_COPIES      ? "--copies"
                          : bad & O_SAME_NODE ? "--allow-same-node"
                                              : "--region-size";
        admin_msg(err, "%s: %s applies to --layout %s", cmdname, opt,
                  vd_layout_opts_owner(lopts_of_o(bad)));
        return VD_EXIT_USAGE;
    }
    if ((a->given & O_CHUNK) && !(a->given & O_THIN)) {
        admin_msg(err, "%s: --chunk-size applies to thin volumes; add --thin",
                  cmdname);
        return VD_EXIT_USAGE;
    }
    if (!a->copies)
        a->copies = copies;
    return 0;
}

static int check_vol_repair(struct cmd_args *a, const char *cmdname, FILE *err)
{
    if (!strcmp(a->replace, a->with)) {
        admin_msg(err, "%s: --replace and --with name the same device '%s'",
                  cmdname, a->with);
        return VD_EXIT_USAGE;
    }
    return 0;
}

static int exec_status(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    return a->vol[0] ? admin_status_vol(pool, a, out, err)
                     : admin_status_pool(pool, a, out, err);
}

/* ---- parsing ------------------------------------------------------------ */

/* The command argv names (its words in *words), or NULL with *rc the exit
 * code (group help printed, or a usage error). */
static const struct cmd_spec *find_cmd(int argc, char **argv, int *words,
                                       int *rc, FILE *out, FILE *err)
{
    const struct cmd_spec *c = NULL;

    *rc = VD_EXIT_USAGE;
    if (argc < 1 || !argv[0]) {
        admin_msg(err, "no command given; see 'vdlvm --help'");
        return NULL;
    }
    if (!strcmp(argv[0], "vol") || !strcmp(argv[0], "pool") ||
        !strcmp(argv[0], "dev") || !strcmp(argv[0], "key") ||
        !strcmp(argv[0], "snap") || !strcmp(argv[0], "tier")) {
        if (argc < 2 || is_help(argv[1])) {
            if (argc >= 2) {
                print_group_help(argv[0], out);
                *rc = VD_EXIT_OK;
                return NULL;
            }
            admin_msg(err, "%s: no command given; see 'vdlvm %s --help'",
                      argv[0], argv[0]);
            return NULL;
        }
        for (size_t k = 0; k < NCMDS; k++)
            if (g_cmds[k].w2 && !strcmp(g_cmds[k].w1, argv[0]) &&
                !strcmp(g_cmds[k].w2, argv[1]))
                c = &g_cmds[k];
        *words = 2;
        if (!c)
            admin_msg(err, "%s: unknown command '%s'; see 'vdlvm %s --help'",
                      argv[0], argv[1], argv[0]);
        return c;
    }
    for (size_t k = 0; k < NCMDS; k++)
        if (!g_cmds[k].w2 && !strcmp(g_cmds[k].w1, argv[0]))
            c = &g_cmds[k];
    *words = 1;
    if (!c)
        admin_msg(err, "unknown command '%s'; see 'vdlvm --help'", argv[0]);
    return c;
}

/* One option argv[*i] (its value may be the next argument): 0 or
 * VD_EXIT_USAGE. */
static int parse_opt(int argc, char **argv, int *i, const char *cmdname,
                     struct cmd_args *a, FILE *err)
{
    const char *s = argv[*i];
    const char *eq = strchr(s, '=');
    size_t nlen = eq ? (size_t)(eq - s) : strlen(s);
    const struct opt_spec *o = NULL;
    const char *val = NULL;
    char name[32];

    if (nlen >= sizeof(name))
        nlen = sizeof(name) - 1;
    memcpy(name, s, nlen);
    name[nlen] = 0;
    for (size_t k = 0; k < NOPTS; k++)
        if (!strcmp(name, g_opts[k].name))
            o = &g_opts[k];
    if (!o || !(a->spec->opts & o->bit)) {
        admin_msg(err, "%s: unknown option '%s'; see 'vdlvm %s --help'",
                  cmdname, name, cmdname);
        return VD_EXIT_USAGE;
    }
    if (a->given & o->bit) {
        admin_msg(err, "%s: option '%s' given twice", cmdname, name);
        return VD_EXIT_USAGE;
    }
    a->given |= o->bit;
    if (!o->parse) {
        if (eq) {
            admin_msg(err, "%s: option '%s' takes no value", cmdname, name);
            return VD_EXIT_USAGE;
        }
        return 0;
    }
    if (eq)
        val = eq + 1;
    else if (*i + 1 < argc)
        val = argv[++*i];
    else {
        admin_msg(err, "%s: option '%s' needs a value; see 'vdlvm %s --help'",
                  cmdname, name, cmdname);
        return VD_EXIT_USAGE;
    }
    return o->parse(cmdname, name, val, a, err);
}

/* Returns -1 when a holds a well-formed command, else a VD_EXIT_* code
 * (help printed, or usage error printed). */
int admin_parse_cmd(int argc, char **argv, struct cmd_args *a, FILE *out,
                    FILE *err)
{
    const struct cmd_spec *c;
    int i, words = 0, rc, opts_done = 0;
    char cmdname[32];

    memset(a, 0, sizeof(*a));
    vd_layout_from_name("linear", &a->layout);
    c = find_cmd(argc, argv, &words, &rc, out, err);
    if (!c)
        return rc;
    a->spec = c;
    snprintf(cmdname, sizeof(cmdname), "%s%s%s", c->w1, c->w2 ? " " : "",
             c->w2 ? c->w2 : "");

    for (i = words; i < argc; i++)
        if (is_help(argv[i])) {
            print_cmd_help(c, out);
            return VD_EXIT_OK;
        }

    for (i = words; i < argc; i++) {
        const char *s = argv[i];

        if (opts_done || s[0] != '-' || !s[1]) {
            if (a->has_target && (c->flags & F_FILE) && !a->file) {
                a->file = s;
                continue;
            }
            if (a->has_target) {
                admin_msg(err,
                          "%s: unexpected argument '%s'; see 'vdlvm %s "
                          "--help'",
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
        rc = parse_opt(argc, argv, &i, cmdname, a, err);
        if (rc)
            return rc;
    }

    if (!a->has_target && c->target != T_ANY_OPT) {
        admin_msg(err, "%s: missing %s; see 'vdlvm %s --help'", cmdname,
                  c->target == T_POOL ? "POOL" : "POOL/VOL", cmdname);
        return VD_EXIT_USAGE;
    }
    if ((c->flags & F_FILE) && !a->file) {
        admin_msg(err, "%s: missing FILE; see 'vdlvm %s --help'", cmdname,
                  cmdname);
        return VD_EXIT_USAGE;
    }
    unsigned missing = c->required & ~a->given;
    if (missing) {
        admin_msg(err, "%s: missing %s; see 'vdlvm %s --help'", cmdname,
                  missing & O_SIZE       ? "--size SIZE"
                  : missing & O_REPLACE  ? "--replace DEVICE"
                  : missing & O_KEY_FILE ? "--key-file FILE"
                                         : "--with DEVICE",
                  cmdname);
        return VD_EXIT_USAGE;
    }
    if (c->check) {
        rc = c->check(a, cmdname, err);
        if (rc)
            return rc;
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
    rc = a.spec->exec(pool, &a, out, err);
    t_cmd_err = saved_err;
    t_cmd_logged = saved_logged;
done:
    fflush(out);
    fflush(err);
    return rc;
}
