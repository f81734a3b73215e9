/* vdlvm: tgt backing-store module (bs_vdlvm.so).
 *
 *   tgtadm --lld iscsi --mode logicalunit --op new --tid T --lun L \
 *          --bstype vdlvm --backing-store POOL/VOL [--bsopts "conf=FILE"]
 *
 * exports volume VOL of pool POOL (definition FILE, default
 * $VDLVM_CONFDIR/POOL.yaml, /etc/vdlvm/POOL.yaml without it, as for the
 * vdlvm command).  tgt cuts --bsopts at commas, so options are
 * separated by ';'.  "partial" opens a pool even when fewer than a majority
 * of its metadata copies are readable (vdlvm --partial), for an admin who
 * knows that no other host uses it.
 *
 * Threads
 * - tgtd's main thread runs every tgt callback, the event handlers, the pool
 *   registry, accepting on the control socket, publishing volume sizes to
 *   LUNs and the checks of GET LBA STATUS (its mapping lookup, which takes
 *   the volume's map lock, runs on a worker).  Everything marked "main
 *   thread" below is touched by no other thread.
 * - Each open pool has a fixed set of worker threads (all signals blocked:
 *   tgtd's SIGUSR2 must never land on them).  They take commands from the
 *   pool's queue, call vd_vol_* and put the finished command on one global
 *   done list; the first one onto an empty list writes an eventfd that the
 *   main thread watches, and the main thread completes the whole batch with
 *   target_cmd_io_done.  This costs one wake-up per batch instead of one
 *   signal per command (bs_thread).
 *
 * - Nothing on the main thread waits on a device, the network or a lock held
 *   across device I/O (the pool's admin lock is held across metadata
 *   commits, which write to remote devices), with one exception that tgt
 *   imposes: bs_open is synchronous, so opening a pool (device headers,
 *   metadata, iSCSI logins) and a volume happens on the main thread, as
 *   tgtadm's LUN creation waits for it anyway.  Everything else that may
 *   wait goes to a thread:
 *   - control-socket commands run on threads of their own (admin/ctl.c, at
 *     most VD_CTL_MAX_JOBS per pool, "busy" beyond); after a command, its
 *     thread asks the main thread to publish volume sizes to the LUNs
 *     (refresh_fd) and waits for that, so that a LUN shows a new size when
 *     `vdlvm vol extend` returns;
 *   - closing a volume (vd_vol_close takes the admin lock) runs on a
 *     detached "vdlvm-close" thread; vp->closing_vols counts those still
 *     running, and control commands wait for 0 before they run, so that
 *     `vol remove` after a LUN was deleted finds the volume unused;
 *   - closing a pool (waiting for its commands, stopping the workers,
 *     flushing devices, logging out of remote ones) runs on a "vdlvm-close"
 *     thread too, while the main thread keeps serving other LUNs.  The
 *     closing pool moves from g_pools to g_closing; opening a pool of the
 *     same name waits for that close (inside bs_open, see above), since the
 *     pool's lock is still held until then; tgtd's exit waits for every
 *     close (module destructor).
 *
 * Thin volumes
 * - bs_open turns lu->attrs.thinprovisioning on for a thin volume's LU, so
 *   that tgt's core advertises logical block provisioning (READ CAPACITY(16)
 *   LBPME and LBPRZ, VPD B2) and lets UNMAP and WRITE SAME's UNMAP bit
 *   through; VPD B0 (the chunk as OPTIMAL UNMAP GRANULARITY, finite UNMAP
 *   limits) and GET LBA STATUS are ours.  LBPRZ promises zeroes: UNMAP,
 *   WRITE SAME(UNMAP) and WRITE SAME of a zero block discard (whole chunks
 *   are freed) and then zero only what the volume still reports mapped (the
 *   partial chunks at the ends; on a thick volume the whole range, as
 *   before), never allocating a freed chunk again.  A write that needs a
 *   chunk when the pool is full fails with DATA PROTECT / SPACE ALLOCATION
 *   FAILED WRITE PROTECT (27h/07h); nothing waits for space.
 *
 * QoS (issue 17; limits per volume, docs/qos.md)
 * - Each LU has a limiter (struct vd_qos: token buckets for total, read and
 *   write IOPS and bytes per second, pool/qos.h), a FIFO of waiting
 *   commands (qos_wait, linked through scsi_cmd.bs_list) and a one-shot
 *   timerfd in tgtd's event loop.  All three are owned by tgtd's main
 *   thread: bs_cmd_submit, the timer handler, refresh_handler, bs_open and
 *   bs_close are the only code touching them, and all run there.  No lock,
 *   no allocation per command: admitting is a clock read and a few
 *   integer operations (only while a limit is set or commands wait).
 * - A command is admitted at submit when nothing waits and the buckets
 *   hold its cost; otherwise it joins the tail of qos_wait (async, holding
 *   no worker) and the timer is armed for when the head will fit.  The
 *   timer handler admits from the head in order and stops at the first
 *   that does not fit, so commands leave in arrival order: once one waits,
 *   every later one queues behind it (never reordered, never rejected).
 *   Invariant: qos_wait not empty => the timer is armed.  Admitted
 *   commands take the usual path (the inline fast path or the workers).
 * - Limits reach the LU at bs_open and whenever a control command has run
 *   (ctl_after -> refresh_handler, the same main-thread message that
 *   publishes sizes): `vdlvm vol set` commits the limits to the pool
 *   metadata on its command thread, then the main thread reads them with
 *   vd_vol_qos_get (a leaf lock, never the admin lock) and reconfigures
 *   the buckets (tokens kept, cut to the new depth) and re-runs the FIFO.
 * - bs_close (an offline LU whose path changes: tgt does not drain) first
 *   hands every waiting command to the workers, ignoring the limits, so
 *   that its wait for inflight == 0 cannot wait on the timer, which runs on
 *   the very thread that waits.
 * - Rates: admitted commands and bytes are counted per LU (main thread);
 *   a 1 s timerfd (g_stats_fd) turns them into rates and publishes them on
 *   the volume (vd_vol_qos_publish) for `vdlvm status`.
 *
 * Asynchronous I/O (issue 14; pool/vol.c has the pool's side)
 * - READ(10/16), WRITE(10/16) and SYNCHRONIZE CACHE(10/16) that the inline
 *   path could not serve go to vd_vol_submit on the main thread, after the
 *   QoS admission: on a linear volume whose devices' async path pays
 *   (remote devices: the iSCSI driver's event thread, librbd's aio; local
 *   devices opened O_DIRECT through io_uring; pool/dev.c
 *   vd_dev_async_ok) the command is started without a worker and without
 *   waiting (vd_vol_submit only try-locks; -EAGAIN: the workers take it as
 *   before: buffered local files, where io_uring is slower than the
 *   workers, mirrors, thin volumes, a busy lock, a moving extent, a full
 *   queue).
 * - Completions: the pool's async eventfd (vd_async_fd, registered in
 *   bs_init before any pool opens) is watched by the main thread, whose
 *   handler calls vd_async_poll: the volume's locks are released and
 *   async_done completes the command with target_cmd_io_done there.  A
 *   result of -EAGAIN (part of the request could not start) sends the
 *   command to the workers, which redo it in full.
 * - The main thread holds shared volume locks while requests are in
 *   flight, released only by its own polling, so bs_open and bs_close
 *   (which may block on the admin lock) first drain them with
 *   vd_async_drain; commands finishing during the drain are completed
 *   through the done list (g_draining), not from inside tgt's management
 *   call.  vl->ainflight counts an LU's async commands (main thread).
 * - VDLVM_ASYNC=0 in tgtd's environment turns the path off (comparisons);
 *   VDLVM_ASYNC=all takes buffered local files too (tests, comparisons;
 *   read by pool/uring.c).
 *
 * Fairness between LUs of a pool (no limits set)
 * - The workers take commands per LU in turn (round robin over the LUs
 *   with queued commands, vp->active), not from one pool-wide FIFO: a
 *   volume with 32 commands queued no longer puts them all ahead of a
 *   neighbour's single read; the neighbour waits for at most one busy
 *   worker's command.
 *
 * Lifetimes
 * - A pool is opened by the first LU that names it and closed when the last
 *   such LU is closed (refcount, main thread).
 * - tgt closes an LU (bs_close) without draining its commands when the path
 *   of an offline LU is changed, so every LU counts its commands between
 *   submit and the end of the volume call (inflight); bs_close waits for 0
 *   before closing the volume.  The done list and its eventfd live for the
 *   whole process so that finished commands are never stranded.
 */
#include <errno.h>
#include <inttypes.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "list.h"
#include "util.h"
#include "tgtd.h"
#include "scsi.h"
#include "spc.h"
#include "target.h"

#include "../config/vdconfig.h"
#include "../pool/vdpool.h"
#include "../pool/stats.h"
#include "../admin/vdadmin.h"

#define CONF_DIR_DEFAULT              "/etc/vdlvm"
#define NTHREADS_MAX                  16
#define CHUNK_MAX                     (1u << 20) /* WRITE SAME / UNMAP buffer */
#define CAW_MAX_BLOCKS                128  /* tgt's VPD B0 advertises 128 */
#define LBA_STATUS_MAX_DESC           1024 /* bound main-thread work */
#define ORWRITE_RETRIES               1000
#define ASC_CAPACITY_DATA_HAS_CHANGED 0x2a09
#define READ_DEFECT_DATA_12           0xb7 /* not in tgt's scsi.h */

struct vdlvm_pool {
    struct list_head link; /* g_pools (main thread) */
    char name[VD_NAME_MAX + 1];
    char *conf_file;
    struct vd_conf_pool *conf;
    vd_pool *pool;
    struct list_head lus;      /* vdlvm_lu.pool_link (main thread) */
    int refs;                  /* LUs holding the pool (main thread) */
    int ctl_fd;                /* control socket, -1 if none */
    int refresh_fd;            /* eventfd: publish sizes, -1 if none */
    struct vd_ctl_hooks hooks; /* set before the socket is watched */

    pthread_mutex_t bg_lock;            /* protects the fields below */
    pthread_cond_t bg_cond;             /* any of them changed */
    int closing_vols;                   /* vd_vol_close still running */
    uint64_t refresh_req, refresh_done; /* size publications asked, done */
    int refresh_stop;                   /* main thread no longer publishes */
    int closed;                         /* background close done (g_closing) */
    struct vdlvm_pool *closing_next;    /* g_closing, under g_closing_lock */

    pthread_mutex_t lock;     /* protects active, qlen, stop,
                                 nidle, nwaking and every
                                 vdlvm_lu.inflight, .rq and
                                 .active_link */
    pthread_cond_t work_cond; /* queue not empty, or stop */
    pthread_cond_t idle_cond; /* an LU's inflight dropped to 0 */
    struct list_head active;  /* vdlvm_lu.active_link: LUs with queued
                                 commands, served in turn */
    int qlen;                 /* commands queued, all LUs */
    int stop;
    int nidle;   /* workers in cond_wait */
    int nwaking; /* of those, signalled, not yet up */
    int nthreads;
    pthread_t threads[NTHREADS_MAX];
};

/* Private data of one LU, allocated by tgt right after struct scsi_lu. */
struct vdlvm_lu {
    struct scsi_lu *lu;
    char *bsopts;          /* kept: tgtd never frees it */
    char *conf_file;       /* NULL: the default definition */
    unsigned open_flags;   /* VD_OPEN_PARTIAL with bsopts "partial" */
    struct vdlvm_pool *vp; /* set while open (main thread) */
    vd_vol *vol;
    struct list_head pool_link;
    /* Set by bs_open on the main thread before the LU goes online, read
     * by the workers and the VPD hook; constant while the volume is open. */
    int thin;            /* a thin volume: LBP advertised, zeroes freed */
    uint64_t chunk_size; /* thin: bytes per chunk (unit of UNMAP) */
    int thin_set;        /* we turned lu->attrs.thinprovisioning on */
    int rdd_saved;       /* rdd_ops hold tgt's READ DEFECT DATA ops */
    struct device_type_operations rdd_ops[2]; /* 10, 12 */
    unsigned inflight;                        /* under vp->lock */
    unsigned ainflight;  /* async commands in flight (main thread) */
    vd_vol_stats *stats; /* `vdlvm stats` counters; set while open, NULL:
                            not counted (pool/stats.h: lock-free) */
    struct service_action sa_9e[8]; /* SERVICE ACTION IN(16) per LU */
    /* Worker queue of this LU (scsi_cmd.bs_list) and its place in
     * vp->active while it is not empty; under vp->lock. */
    struct list_head rq;
    struct list_head active_link;
    /* QoS: main thread only (see QoS in the header comment). */
    struct vd_qos qos;
    struct vd_qos_limits qos_limits; /* what qos was configured with */
    struct list_head qos_wait;       /* scsi_cmd.bs_list, arrival order */
    unsigned qos_nwait;
    int qos_fd;                       /* one-shot timerfd, -1 */
    uint64_t st[VD_QOS_NLIMITS];      /* admitted: ios t/r/w, bytes t/r/w */
    uint64_t st_prev[VD_QOS_NLIMITS]; /* at the last rate tick */
};

static inline struct vdlvm_lu *VDLU(struct scsi_lu *lu)
{
    return (struct vdlvm_lu *)((char *)lu + sizeof(*lu));
}

/* QoS (main thread), below with the submit path. */
static void qos_refresh(struct vdlvm_lu *vl);
static int qos_open(struct vdlvm_lu *vl);
static void qos_close(struct vdlvm_lu *vl);
static int stats_start(void);

/* Main thread only. */
static struct list_head g_pools = LIST_HEAD_INIT(g_pools);
static int g_started; /* done channel set up */
static int g_done_fd = -1;
static int g_stats_fd = -1;      /* QoS rates: 1 s timerfd */
static uint64_t g_stats_prev_ns; /* its last tick */
static const char *g_zero;       /* CHUNK_MAX zero bytes */
/* Main-thread fast path on (VDLVM_INLINE=0 in tgtd's environment turns it
 * off, for comparisons); set once in register_bs_module. */
static int g_inline = 1;
/* Asynchronous path on (VDLVM_ASYNC=0 turns it off; also off when the
 * async eventfd could not be watched); set in register_bs_module and
 * done_channel_start.  g_draining: vd_async_drain runs (main thread). */
static int g_async = 1;
static int g_draining;
static int g_async_said; /* the first async command was logged */

static pthread_mutex_t g_done_lock = PTHREAD_MUTEX_INITIALIZER; /* g_done */
/* Pools being closed in the background: added by the main thread, marked
 * closed and removed by their closing thread. */
static pthread_mutex_t g_closing_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_closing_cond = PTHREAD_COND_INITIALIZER;
static struct vdlvm_pool *g_closing; /* under g_closing_lock */
static struct list_head g_done = LIST_HEAD_INIT(g_done);

/* ---- logging ----------------------------------------------------------- */

static void vdlvm_log(int level, const char *msg)
{
    switch (level) {
    case VD_LOG_ERR:
        log_error("vdlvm: %s\n", msg);
        break;
    case VD_LOG_WARN:
    case VD_LOG_INFO:
        log_warning("vdlvm: %s\n", msg);
        break;
    default:
        if (unlikely(is_debug))
            log_debug("vdlvm: %s\n", msg);
        break;
    }
}

/* ---- sense helpers (worker-safe: they only write into cmd) -------------- */

static void cmd_sense(struct scsi_cmd *cmd, uint8_t key, uint16_t asc)
{
    scsi_set_result(cmd, SAM_STAT_CHECK_CONDITION);
    sense_data_build(cmd, key, asc);
}

static void cmd_io_error(struct scsi_cmd *cmd, int err, int is_write)
{
    switch (err) {
    case -EIO:
        cmd_sense(cmd, MEDIUM_ERROR,
                  is_write ? ASC_WRITE_ERROR : ASC_UNRECOVERED_READ);
        break;
    case -ERANGE:
        cmd_sense(cmd, ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        break;
    case -ENOSPC: /* thin layouts: no extent left to allocate */
        cmd_sense(cmd, DATA_PROTECT, 0x2707); /* SPACE ALLOCATION FAILED */
        break;
    case -EROFS:
        cmd_sense(cmd, DATA_PROTECT, ASC_WRITE_PROTECT);
        break;
    default:
        cmd_sense(cmd, HARDWARE_ERROR, ASC_INTERNAL_TGT_FAILURE);
        break;
    }
}

static void cmd_miscompare(struct scsi_cmd *cmd, uint64_t pos)
{
    scsi_set_result(cmd, SAM_STAT_CHECK_CONDITION);
    sense_data_build_with_info(cmd, MISCOMPARE,
                               ASC_MISCOMPARE_DURING_VERIFY_OPERATION, pos);
}

static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
    size_t i = 0;

    while (i < len && a[i] == b[i])
        i++;
    return i;
}

/* VD_IO_FUA when the command asks for it or the write cache is off. */
static unsigned write_flags(struct scsi_cmd *cmd)
{
    struct mode_pg *pg;

    switch (cmd->scb[0]) {
    case WRITE_10:
    case WRITE_12:
    case WRITE_16:
    case COMPARE_AND_WRITE:
    case ORWRITE_16:
        if (cmd->scb[1] & 0x08)
            return VD_IO_FUA;
        break;
    case WRITE_VERIFY:
    case WRITE_VERIFY_12:
    case WRITE_VERIFY_16:
        return VD_IO_FUA; /* verification is against the medium */
    }
    /* The caching page's list is built once at LU creation; MODE SELECT
     * only changes bytes in place, so reading it here is safe. */
    pg = find_mode_page(cmd->dev, 0x08, 0);
    if (!pg || !(pg->mode_data[0] & 0x04))
        return VD_IO_FUA;
    return 0;
}

static uint64_t lu_blocks(struct scsi_lu *lu)
{
    return lu->size >> lu->blk_shift;
}

/* Thin volumes' UNMAP limits, advertised in VPD B0 and enforced by
 * exec_unmap: descriptors per command, and blocks per command: 4 GiB, at
 * most 2^20 blocks (initiators' sanity checks, libiscsi's among them, take
 * more for a bogus value; Linux and QEMU split larger discards).  The work
 * per command is a mapping update per chunk plus at most two partial
 * chunks per descriptor.  tgt's own 0xFFFFFFFF reads as -1 in initiators
 * that store it in an int (libiscsi's tests among them). */
#define MAX_UNMAP_DESCRIPTORS 256
#define MAX_UNMAP_BYTES       (4ULL << 30)
#define MAX_UNMAP_BLOCKS      (1u << 20)

static uint32_t max_unmap_blocks(struct scsi_lu *lu)
{
    uint64_t n = MAX_UNMAP_BYTES >> lu->blk_shift;

    return n < MAX_UNMAP_BLOCKS ? (uint32_t)n : MAX_UNMAP_BLOCKS;
}

/* ---- command execution (worker threads) --------------------------------- */

static void exec_read(struct scsi_cmd *cmd, vd_vol *vol)
{
    uint64_t tl = (uint64_t)scsi_rw_count(cmd->scb) << cmd->dev->blk_shift;
    uint64_t len = scsi_get_in_length(cmd);
    int r;

    if (len > tl)
        len = tl;
    r = vd_vol_pread(vol, scsi_get_in_buffer(cmd), len, cmd->offset);
    if (r < 0)
        cmd_io_error(cmd, r, 0);
}

/* WRITE and WRITE AND VERIFY; sbc_rw clamped out_length to the transfer
 * length. */
static void exec_write(struct scsi_cmd *cmd, vd_vol *vol, int verify)
{
    uint32_t len = scsi_get_out_length(cmd);
    uint8_t *buf = scsi_get_out_buffer(cmd);
    uint8_t *back;
    int r;

    r = vd_vol_pwrite(vol, buf, len, cmd->offset, write_flags(cmd));
    if (r < 0) {
        cmd_io_error(cmd, r, 1);
        return;
    }
    if (!verify)
        return;
    back = malloc(len ? len : 1);
    if (!back) {
        cmd_sense(cmd, HARDWARE_ERROR, ASC_INTERNAL_TGT_FAILURE);
        return;
    }
    r = vd_vol_pread(vol, back, len, cmd->offset);
    if (r < 0)
        cmd_io_error(cmd, r, 0);
    else if ((cmd->scb[1] & 0x02) && memcmp(back, buf, len))
        cmd_miscompare(cmd, first_diff(buf, back, len));
    free(back);
}

/* VERIFY with BYTCHK (sbc_verify answers BYTCHK=0 itself). */
static void exec_verify(struct scsi_cmd *cmd, vd_vol *vol)
{
    unsigned bs = 1u << cmd->dev->blk_shift;
    unsigned bytchk = (cmd->scb[1] >> 1) & 3;
    uint64_t tl = (uint64_t)scsi_rw_count(cmd->scb) << cmd->dev->blk_shift;
    uint32_t out_len = scsi_get_out_length(cmd);
    uint8_t *data = scsi_get_out_buffer(cmd);
    uint8_t *buf;
    uint64_t len;
    int r;

    if (bytchk == 2) {
        cmd_sense(cmd, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    if (bytchk == 3) {
        /* One block of data compared against every block of the range. */
        if (out_len < bs) {
            cmd_sense(cmd, ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERR);
            return;
        }
        buf = malloc(bs);
        if (!buf) {
            cmd_sense(cmd, HARDWARE_ERROR, ASC_INTERNAL_TGT_FAILURE);
            return;
        }
        for (uint64_t off = 0; off < tl; off += bs) {
            r = vd_vol_pread(vol, buf, bs, cmd->offset + off);
            if (r < 0) {
                cmd_io_error(cmd, r, 0);
                break;
            }
            if (memcmp(buf, data, bs)) {
                cmd_miscompare(cmd, off + first_diff(data, buf, bs));
                break;
            }
        }
        free(buf);
        return;
    }
    len = out_len < tl ? out_len : tl;
    buf = malloc(len ? len : 1);
    if (!buf) {
        cmd_sense(cmd, HARDWARE_ERROR, ASC_INTERNAL_TGT_FAILURE);
        return;
    }
    r = vd_vol_pread(vol, buf, len, cmd->offset);
    if (r < 0)
        cmd_io_error(cmd, r, 0);
    else if (memcmp(buf, data, len))
        cmd_miscompare(cmd, first_diff(data, buf, len));
    free(buf);
}

static void exec_compare_and_write(struct scsi_cmd *cmd, vd_vol *vol)
{
    uint32_t nblocks = cmd->scb[13];
    uint64_t len = (uint64_t)nblocks << cmd->dev->blk_shift;
    uint8_t *data = scsi_get_out_buffer(cmd);
    unsigned flags = write_flags(cmd);
    uint64_t pos = 0;
    int r;

    if (nblocks > CAW_MAX_BLOCKS) {
        cmd_sense(cmd, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    if (scsi_get_out_length(cmd) != 2 * len) {
        cmd_sense(cmd, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    if (!len)
        return;
    r = vd_vol_compare_and_write(vol, data, data + len, len, cmd->offset, &pos);
    if (r == 1) {
        cmd_miscompare(cmd, pos);
        return;
    }
    if (r == 0 && (flags & VD_IO_FUA))
        r = vd_vol_flush(vol);
    if (r < 0)
        cmd_io_error(cmd, r, 1);
}

/* read, OR, write: atomic against other writers through compare-and-write
 * (retried while another write got in between). */
static void exec_orwrite(struct scsi_cmd *cmd, vd_vol *vol)
{
    uint32_t len = scsi_get_out_length(cmd);
    const uint8_t *mask = scsi_get_out_buffer(cmd);
    uint8_t *old = malloc(len ? len : 1), *new = malloc(len ? len : 1);
    uint64_t pos;
    int r = -ENOMEM;

    if (!old || !new)
        goto out;
    for (int i = 0; i < ORWRITE_RETRIES; i++) {
        r = vd_vol_pread(vol, old, len, cmd->offset);
        if (r < 0)
            break;
        for (uint32_t j = 0; j < len; j++)
            new[j] = old[j] | mask[j];
        r = vd_vol_compare_and_write(vol, old, new, len, cmd->offset, &pos);
        if (r != 1)
            break;
    }
    if (r == 1)
        r = -EAGAIN;
    if (r == 0 && (write_flags(cmd) & VD_IO_FUA))
        r = vd_vol_flush(vol);
out:
    if (r < 0)
        cmd_io_error(cmd, r, 1);
    free(old);
    free(new);
}

/* Write [off, off+len) with copies of block (NULL: zeroes), CHUNK_MAX at a
 * time; lbdata: WRITE SAME's LBDATA/PBDATA bits (0x02/0x04) or 0. */
static int write_range(vd_vol *vol, struct scsi_cmd *cmd, uint64_t off,
                       uint64_t len, const uint8_t *block, unsigned lbdata,
                       unsigned flags)
{
    unsigned shift = cmd->dev->blk_shift, bs = 1u << shift;
    uint64_t chunk = len < CHUNK_MAX ? len : CHUNK_MAX;
    uint8_t *buf;
    int r = 0;

    if (!block && !lbdata) {
        /* zeroes */
        while (len && r == 0) {
            uint64_t n = len < CHUNK_MAX ? len : CHUNK_MAX;
            r = vd_vol_pwrite(vol, g_zero, n, off, flags);
            off += n;
            len -= n;
        }
        return r;
    }
    if (chunk < bs)
        chunk = bs;
    buf = malloc(chunk);
    if (!buf)
        return -ENOMEM;
    for (uint64_t i = 0; i < chunk; i += bs) {
        if (block)
            memcpy(buf + i, block, bs);
        else
            memset(buf + i, 0, bs);
    }
    while (len && r == 0) {
        uint64_t n = len < chunk ? len : chunk;
        if (lbdata) {
            for (uint64_t i = 0; i < n; i += bs) {
                uint64_t lba = (off + i) >> shift;
                if (lbdata == 0x02) /* LBDATA: low 32 bits of the LBA */
                    put_unaligned_be32((uint32_t)lba, buf + i);
                else /* PBDATA: physical block address */
                    put_unaligned_be64(lba, buf + i);
            }
        }
        r = vd_vol_pwrite(vol, buf, n, off, flags);
        off += n;
        len -= n;
    }
    free(buf);
    return r;
}

/* Make [off, off+len) read as zeroes, freeing what can be freed: discard
 * (a thin volume frees every whole chunk in the range, which then reads as
 * zeroes; a thick volume keeps everything), then zero only what the volume
 * still reports mapped: on a thin volume the partial chunks at the ends
 * (zeroing a freed chunk would allocate it again), on a thick volume the
 * whole range, as before.  A write racing with this may be zeroed or not:
 * overlapping commands have no defined order. */
static int discard_zero(vd_vol *vol, struct scsi_cmd *cmd, uint64_t off,
                        uint64_t len, unsigned flags)
{
    uint64_t end = off + len;
    int r = vd_vol_discard(vol, off, len);

    while (r == 0 && off < end) {
        uint64_t n;
        int mapped;

        r = vd_vol_lba_status(vol, off, &n, &mapped);
        if (r < 0)
            break;
        if (n == 0)
            return -EIO; /* the library promises progress */
        if (n > end - off)
            n = end - off;
        if (mapped)
            r = write_range(vol, cmd, off, n, NULL, 0, flags);
        off += n;
    }
    return r;
}

static int is_zero(const uint8_t *p, size_t len)
{
    while (len && !*p) {
        p++;
        len--;
    }
    return len == 0;
}

/* WRITE SAME 10/16.  The length is recomputed in 64 bits: cmd->tl is a
 * 32-bit byte count and overflows from 4 GiB on. */
static void exec_write_same(struct scsi_cmd *cmd, vd_vol *vol)
{
    struct scsi_lu *lu = cmd->dev;
    uint64_t lba = scsi_rw_offset(cmd->scb);
    uint64_t nblocks = cmd->scb[0] == WRITE_SAME
                           ? get_unaligned_be16(&cmd->scb[7])
                           : get_unaligned_be32(&cmd->scb[10]);
    const uint8_t *block = NULL;
    uint64_t off, len;
    int r;

    if (nblocks == 0)
        nblocks = lu_blocks(lu) - lba;
    if (lba + nblocks < lba || lba + nblocks > lu_blocks(lu)) {
        cmd_sense(cmd, ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        return;
    }
    off = lba << lu->blk_shift;
    len = nblocks << lu->blk_shift;
    if (scsi_get_out_length(cmd))
        block = scsi_get_out_buffer(cmd);
    if (cmd->scb[1] & 0x08) {
        /* UNMAP (thin LUs only, checked by sbc_rw).  tgt advertises LBPRZ
         * there, so the range must read back as zeroes whatever the
         * data-out block holds. */
        r = discard_zero(vol, cmd, off, len, write_flags(cmd));
    } else if (VDLU(lu)->thin && !(cmd->scb[1] & 0x06) &&
               (!block || is_zero(block, 1u << lu->blk_shift))) {
        /* Zeroes on a thin volume: free the chunks instead of writing
         * them (they read as zeroes), as a thin initiator expects. */
        r = discard_zero(vol, cmd, off, len, write_flags(cmd));
    } else {
        r = write_range(vol, cmd, off, len, block, cmd->scb[1] & 0x06,
                        write_flags(cmd));
    }
    if (r < 0)
        cmd_io_error(cmd, r, 1);
}

/* UNMAP parameter list.  tgt advertises LBPRZ on thin LUs, so an unmapped
 * range must read back as zeroes: discard, then zero what the volume still
 * holds (discard_zero).  A thin volume advertises finite limits in VPD B0
 * and enforces them (SBC: INVALID FIELD IN PARAMETER LIST beyond them). */
static void exec_unmap(struct scsi_cmd *cmd, vd_vol *vol)
{
    struct scsi_lu *lu = cmd->dev;
    uint32_t len = scsi_get_out_length(cmd);
    const uint8_t *p = scsi_get_out_buffer(cmd);
    int r;

    if (len < 8)
        return;
    if (get_unaligned_be16(&p[2]) > len - 8) {
        cmd_sense(cmd, ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERR);
        return;
    }
    len = get_unaligned_be16(&p[2]) & ~15u;
    p += 8;
    /* Check every descriptor before changing anything. */
    uint64_t total = 0;
    for (uint32_t i = 0; i < len; i += 16) {
        uint64_t lba = get_unaligned_be64(&p[i]);
        uint64_t n = get_unaligned_be32(&p[i + 8]);
        if (lba + n < lba || lba + n > lu_blocks(lu)) {
            cmd_sense(cmd, ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
            return;
        }
        total += n;
    }
    if (VDLU(lu)->thin &&
        (len / 16 > MAX_UNMAP_DESCRIPTORS || total > max_unmap_blocks(lu))) {
        cmd_sense(cmd, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARMS);
        return;
    }
    for (uint32_t i = 0; i < len; i += 16) {
        uint64_t off = get_unaligned_be64(&p[i]) << lu->blk_shift;
        uint64_t n = (uint64_t)get_unaligned_be32(&p[i + 8]) << lu->blk_shift;
        if (!n)
            continue;
        r = discard_zero(vol, cmd, off, n, write_flags(cmd));
        if (r < 0) {
            cmd_io_error(cmd, r, 1);
            return;
        }
    }
}

/* Worker: the body of GET LBA STATUS (checked on the main thread by
 * bs_vdlvm_get_lba_status). */
static void exec_get_lba_status(struct scsi_cmd *cmd, vd_vol *vol)
{
    struct scsi_lu *lu = cmd->dev;
    unsigned shift = lu->blk_shift;
    uint64_t lba = get_unaligned_be64(&cmd->scb[2]);
    uint32_t alloc_len = get_unaligned_be32(&cmd->scb[10]);
    uint64_t end, off;
    uint32_t max_desc, ndesc = 0, total, actual;
    uint8_t *out = scsi_get_in_buffer(cmd);
    uint8_t hdr[8];
    int r;

    max_desc = alloc_len >= 24 ? (alloc_len - 8) / 16 : 1;
    if (max_desc > LBA_STATUS_MAX_DESC)
        max_desc = LBA_STATUS_MAX_DESC;
    end = lu_blocks(lu) << shift;
    off = lba << shift;
    while (off < end && ndesc < max_desc) {
        uint64_t start = off, len;
        int mapped, m2;

        r = vd_vol_lba_status(vol, off, &len, &mapped);
        if (r < 0)
            goto io_error;
        off += len;
        /* Merge runs the library reports separately. */
        for (int i = 0; i < 64 && off < end; i++) {
            r = vd_vol_lba_status(vol, off, &len, &m2);
            if (r < 0)
                goto io_error;
            if (m2 != mapped)
                break;
            off += len;
        }
        if (off > end)
            off = end;
        uint64_t nblocks = (off - start + (1u << shift) - 1) >> shift;
        if (nblocks > UINT32_MAX) {
            nblocks = UINT32_MAX;
            off = start + (nblocks << shift);
        }
        uint8_t d[16] = { 0 };
        put_unaligned_be64(start >> shift, &d[0]);
        put_unaligned_be32((uint32_t)nblocks, &d[8]);
        d[12] = mapped ? 0 : 1; /* 0: mapped, 1: deallocated */
        uint32_t pos = 8 + 16 * ndesc;
        if (pos < alloc_len)
            memcpy(out + pos, d, alloc_len - pos < 16 ? alloc_len - pos : 16);
        ndesc++;
        off = start + (nblocks << shift);
    }
    total = 8 + 16 * ndesc;
    memset(hdr, 0, sizeof(hdr));
    put_unaligned_be32(total - 4, &hdr[0]); /* PARAMETER DATA LENGTH */
    memcpy(out, hdr, alloc_len < 8 ? alloc_len : 8);
    actual = total < alloc_len ? total : alloc_len;
    scsi_set_in_resid_by_actual(cmd, actual);
    scsi_set_result(cmd, SAM_STAT_GOOD);
    return;

io_error:
    vd_log(VD_LOG_ERR, "volume '%s': GET LBA STATUS at %" PRIu64 " failed: %s",
           vd_vol_name(vol), off, strerror(-r));
    scsi_set_in_resid_by_actual(cmd, 0);
    cmd_sense(cmd, r == -ERANGE ? ILLEGAL_REQUEST : MEDIUM_ERROR,
              r == -ERANGE ? ASC_LBA_OUT_OF_RANGE : ASC_UNRECOVERED_READ);
}

static void cmd_exec(struct scsi_cmd *cmd, vd_vol *vol)
{
    int r;

    scsi_set_result(cmd, SAM_STAT_GOOD);
    switch (cmd->scb[0]) {
    case READ_6:
    case READ_10:
    case READ_12:
    case READ_16:
        exec_read(cmd, vol);
        break;
    case WRITE_6:
    case WRITE_10:
    case WRITE_12:
    case WRITE_16:
        exec_write(cmd, vol, 0);
        break;
    case WRITE_VERIFY:
    case WRITE_VERIFY_12:
    case WRITE_VERIFY_16:
        exec_write(cmd, vol, 1);
        break;
    case VERIFY_10:
    case VERIFY_12:
    case VERIFY_16:
        exec_verify(cmd, vol);
        break;
    case COMPARE_AND_WRITE:
        exec_compare_and_write(cmd, vol);
        break;
    case ORWRITE_16:
        exec_orwrite(cmd, vol);
        break;
    case WRITE_SAME:
    case WRITE_SAME_16:
        exec_write_same(cmd, vol);
        break;
    case UNMAP:
        exec_unmap(cmd, vol);
        break;
    case SYNCHRONIZE_CACHE:
    case SYNCHRONIZE_CACHE_16:
        /* IMMED is honoured by finishing before we answer. */
        r = vd_vol_flush(vol);
        if (r < 0)
            cmd_io_error(cmd, r, 1);
        break;
    case PRE_FETCH_10:
    case PRE_FETCH_16:
        break;
    case SERVICE_ACTION_IN:
        if ((cmd->scb[1] & 0x1f) == SAI_GET_LBA_STATUS) {
            exec_get_lba_status(cmd, vol);
            break;
        }
        cmd_sense(cmd, ILLEGAL_REQUEST, ASC_INVALID_OP_CODE);
        break;
    default:
        cmd_sense(cmd, ILLEGAL_REQUEST, ASC_INVALID_OP_CODE);
        break;
    }
    if (unlikely(is_debug) && scsi_get_result(cmd) != SAM_STAT_GOOD)
        log_debug("vdlvm: volume '%s': cmd 0x%02x at %" PRIu64
                  " failed: sense %02x/%02x%02x\n",
                  vd_vol_name(vol), cmd->scb[0], cmd->offset,
                  cmd->sense_buffer[2] & 0xf, cmd->sense_buffer[12],
                  cmd->sense_buffer[13]);
}

/* ---- I/O counters (`vdlvm stats`) --------------------------------------- */

static uint64_t stats_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* Main thread or worker, once cmd was served and before it is completed:
 * count it on its LU's volume (relaxed atomics, no lock).  The latency is
 * the volume's service time from t0 (a worker taking the command, or the
 * inline attempt), without the time queued for a worker. */
static void stats_account(struct scsi_cmd *cmd, uint64_t t0)
{
    struct vdlvm_lu *vl = VDLU(cmd->dev);
    enum vd_io_op op = VD_IO_OP_OTHER;
    int failed = scsi_get_result(cmd) != SAM_STAT_GOOD;
    uint64_t bytes = 0;

    if (!vl->stats)
        return;
    switch (cmd->scb[0]) {
    case READ_6:
    case READ_10:
    case READ_12:
    case READ_16:
        op = VD_IO_OP_READ;
        bytes = (uint64_t)scsi_rw_count(cmd->scb) << cmd->dev->blk_shift;
        if (bytes > scsi_get_in_length(cmd))
            bytes = scsi_get_in_length(cmd);
        break;
    case WRITE_6:
    case WRITE_10:
    case WRITE_12:
    case WRITE_16:
    case WRITE_VERIFY:
    case WRITE_VERIFY_12:
    case WRITE_VERIFY_16:
        op = VD_IO_OP_WRITE;
        bytes = scsi_get_out_length(cmd);
        break;
    }
    vd_vol_stats_account(vl->stats, op, failed ? 0 : bytes, stats_now_ns() - t0,
                         failed);
}

/* ---- completion channel ------------------------------------------------- */

/* Any thread.  Wakes the main thread only for the first of a batch. */
static void done_push(struct scsi_cmd *cmd)
{
    static const uint64_t one = 1;
    int was_empty;

    pthread_mutex_lock(&g_done_lock);
    was_empty = list_empty(&g_done);
    list_add_tail(&cmd->bs_list, &g_done);
    pthread_mutex_unlock(&g_done_lock);
    if (was_empty) {
        while (write(g_done_fd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
}

/* Main thread: complete every finished command. */
static void done_handler(int fd, int events, void *data)
{
    struct list_head batch;
    struct scsi_cmd *cmd, *next;
    uint64_t n;

    while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    INIT_LIST_HEAD(&batch);
    pthread_mutex_lock(&g_done_lock);
    list_splice_init(&g_done, &batch);
    pthread_mutex_unlock(&g_done_lock);
    list_for_each_entry_safe(cmd, next, &batch, bs_list)
    {
        list_del(&cmd->bs_list);
        target_cmd_io_done(cmd, scsi_get_result(cmd));
    }
}

/* Main thread: the pool's asynchronous completions (vol.c, uring.c). */
static void async_handler(int fd, int events, void *data)
{
    vd_async_poll();
}

static void async_drain(void)
{
    g_draining = 1;
    vd_async_drain();
    g_draining = 0;
}

static int done_channel_start(void)
{
    int fd, r;

    if (g_started)
        return 0;
    if (!g_zero) {
        g_zero = calloc(1, CHUNK_MAX);
        if (!g_zero)
            return -ENOMEM;
    }
    if (g_stats_fd < 0 && (r = stats_start()) < 0)
        return r;
    fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    r = tgt_event_add(fd, EPOLLIN, done_handler, NULL);
    if (r) {
        close(fd);
        return r < 0 ? r : -EIO;
    }
    g_done_fd = fd;
    g_started = 1;
    if (g_async) {
        /* before any pool opens: its devices' completions come here */
        int afd = vd_async_fd();
        if (afd < 0 || tgt_event_add(afd, EPOLLIN, async_handler, NULL)) {
            log_warning("vdlvm: asynchronous I/O is off: its eventfd "
                        "cannot be watched; commands use the workers\n");
            g_async = 0;
        }
    }
    return 0;
}

/* ---- workers ------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    struct vdlvm_pool *vp = arg;
    struct scsi_cmd *cmd;
    struct vdlvm_lu *vl;

    pthread_mutex_lock(&vp->lock);
    for (;;) {
        while (list_empty(&vp->active) && !vp->stop) {
            vp->nidle++;
            pthread_cond_wait(&vp->work_cond, &vp->lock);
            vp->nidle--;
            if (vp->nwaking > 0)
                vp->nwaking--;
        }
        if (list_empty(&vp->active))
            break; /* stop, and nothing left */
        /* Round robin over the LUs: the next command of the first LU,
         * which goes to the back of the line if it has more. */
        vl = list_first_entry(&vp->active, struct vdlvm_lu, active_link);
        cmd = list_first_entry(&vl->rq, struct scsi_cmd, bs_list);
        list_del(&cmd->bs_list);
        list_del_init(&vl->active_link);
        if (!list_empty(&vl->rq))
            list_add_tail(&vl->active_link, &vp->active);
        vp->qlen--;
        pthread_mutex_unlock(&vp->lock);

        vl = VDLU(cmd->dev);
        uint64_t t0 = stats_now_ns();
        cmd_exec(cmd, vl->vol);
        stats_account(cmd, t0);
        /* cmd may be completed and freed once pushed; vl stays valid until
         * inflight drops (bs_close waits for it). */
        done_push(cmd);

        pthread_mutex_lock(&vp->lock);
        if (--vl->inflight == 0)
            pthread_cond_broadcast(&vp->idle_cond);
    }
    pthread_mutex_unlock(&vp->lock);
    return NULL;
}

static void workers_stop(struct vdlvm_pool *vp)
{
    pthread_mutex_lock(&vp->lock);
    vp->stop = 1;
    pthread_cond_broadcast(&vp->work_cond);
    pthread_mutex_unlock(&vp->lock);
    for (int i = 0; i < vp->nthreads; i++)
        pthread_join(vp->threads[i], NULL);
    vp->nthreads = 0;
}

static int workers_start(struct vdlvm_pool *vp)
{
    sigset_t all, old;
    int n = nr_iothreads, r = 0;

    if (n < 1)
        n = 1;
    if (n > NTHREADS_MAX)
        n = NTHREADS_MAX;
    /* Threads inherit the mask: create them with every signal blocked. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < n; i++) {
        r = -pthread_create(&vp->threads[i], NULL, worker_main, vp);
        if (r)
            break;
        pthread_setname_np(vp->threads[i], "vdlvm-io");
        vp->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r)
        workers_stop(vp);
    return r;
}

/* ---- pool registry (main thread) ---------------------------------------- */

static void lu_size_refresh(struct vdlvm_lu *vl)
{
    struct scsi_lu *lu = vl->lu;
    uint64_t size = vd_vol_size(vl->vol) >> lu->blk_shift << lu->blk_shift;
    uint64_t blocks;

    if (size <= lu->size)
        return;
    lu->size = size;
    blocks = size >> lu->blk_shift;
    put_unaligned_be32(blocks >> 32 ? 0xffffffff : (uint32_t)blocks,
                       lu->mode_block_descriptor);
    ua_sense_add_other_it_nexus(0, lu, ASC_CAPACITY_DATA_HAS_CHANGED);
    vd_log(VD_LOG_INFO,
           "volume '%s/%s': LUN %d:%" PRIu64 " capacity now %" PRIu64 " bytes",
           vl->vp->name, vd_vol_name(vl->vol), lu->tgt ? lu->tgt->tid : -1,
           lu->lun, size);
}

/* Main thread: a control command asked for the LUNs' sizes. */
static void refresh_handler(int fd, int events, void *data)
{
    struct vdlvm_pool *vp = data;
    struct vdlvm_lu *vl;
    uint64_t n, req;

    while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&vp->bg_lock);
    req = vp->refresh_req;
    pthread_mutex_unlock(&vp->bg_lock);
    list_for_each_entry(vl, &vp->lus, pool_link)
    {
        lu_size_refresh(vl);
        qos_refresh(vl); /* `vdlvm vol set` changed the limits */
    }
    pthread_mutex_lock(&vp->bg_lock);
    if (vp->refresh_done < req)
        vp->refresh_done = req;
    pthread_cond_broadcast(&vp->bg_cond);
    pthread_mutex_unlock(&vp->bg_lock);
}

static void ctl_handler(int fd, int events, void *data)
{
    struct vdlvm_pool *vp = data;

    vd_ctl_serve_one(fd, vp->pool, &vp->hooks);
}

/* Command thread, before a control command runs: volumes of LUNs deleted
 * just before are closed. */
static void ctl_before(void *arg)
{
    struct vdlvm_pool *vp = arg;

    pthread_mutex_lock(&vp->bg_lock);
    while (vp->closing_vols > 0)
        pthread_cond_wait(&vp->bg_cond, &vp->bg_lock);
    pthread_mutex_unlock(&vp->bg_lock);
}

/* Command thread, after a control command ran: have the main thread
 * publish volume sizes to the LUNs, and wait until it has. */
static void ctl_after(void *arg)
{
    static const uint64_t one = 1;
    struct vdlvm_pool *vp = arg;
    uint64_t gen;

    pthread_mutex_lock(&vp->bg_lock);
    if (vp->refresh_stop || vp->refresh_fd < 0) {
        pthread_mutex_unlock(&vp->bg_lock);
        return;
    }
    gen = ++vp->refresh_req;
    pthread_mutex_unlock(&vp->bg_lock);
    while (write(vp->refresh_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&vp->bg_lock);
    while (vp->refresh_done < gen && !vp->refresh_stop)
        pthread_cond_wait(&vp->bg_cond, &vp->bg_lock);
    pthread_mutex_unlock(&vp->bg_lock);
}

/* Any thread, with the main thread no longer watching vp's descriptors:
 * waits for the pool's commands and volume closes, then closes it. */
static void pool_free(struct vdlvm_pool *vp)
{
    if (vp->ctl_fd >= 0) /* closed by pool_unwatch: wait for its commands */
        vd_ctl_wait(vp->name);
    pthread_mutex_lock(&vp->bg_lock);
    while (vp->closing_vols > 0)
        pthread_cond_wait(&vp->bg_cond, &vp->bg_lock);
    pthread_mutex_unlock(&vp->bg_lock);
    workers_stop(vp);
    if (vp->pool)
        vd_pool_close(vp->pool);
    if (vp->refresh_fd >= 0)
        close(vp->refresh_fd);
    vd_conf_free(vp->conf);
    free(vp->conf_file);
    pthread_mutex_destroy(&vp->lock);
    pthread_cond_destroy(&vp->work_cond);
    pthread_cond_destroy(&vp->idle_cond);
    pthread_mutex_destroy(&vp->bg_lock);
    pthread_cond_destroy(&vp->bg_cond);
    free(vp);
}

/* Main thread: stop watching vp's descriptors and release command threads
 * waiting for a size publication. */
static void pool_unwatch(struct vdlvm_pool *vp)
{
    if (vp->ctl_fd >= 0) {
        /* New clients find no socket (and open the pool themselves once
         * its lock is free); accepted ones finish on their threads. */
        tgt_event_del(vp->ctl_fd);
        vd_ctl_close(vp->name, vp->ctl_fd);
    }
    if (vp->refresh_fd >= 0)
        tgt_event_del(vp->refresh_fd);
    pthread_mutex_lock(&vp->bg_lock);
    vp->refresh_stop = 1;
    pthread_cond_broadcast(&vp->bg_cond);
    pthread_mutex_unlock(&vp->bg_lock);
}

/* Start fn(arg) on a detached thread with every signal blocked. */
static int bg_start(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t tid;
    int r;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    r = -pthread_create(&tid, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r == 0)
        pthread_setname_np(tid, "vdlvm-close");
    return r;
}

static void *pool_close_main(void *arg)
{
    struct vdlvm_pool *vp = arg;
    char name[VD_NAME_MAX + 1];

    snprintf(name, sizeof(name), "%s", vp->name);
    pool_free(vp);
    vd_log(VD_LOG_INFO, "pool '%s': closed (no LUN uses it)", name);
    pthread_mutex_lock(&g_closing_lock);
    for (struct vdlvm_pool **pp = &g_closing; *pp; pp = &(*pp)->closing_next)
        if (*pp == vp) {
            *pp = vp->closing_next;
            break;
        }
    pthread_cond_broadcast(&g_closing_cond);
    pthread_mutex_unlock(&g_closing_lock);
    return NULL;
}

/* Main thread: drop a reference; the last one closes the pool in the
 * background. */
static void pool_put(struct vdlvm_pool *vp)
{
    if (--vp->refs > 0)
        return;
    list_del(&vp->link);
    pool_unwatch(vp);
    pthread_mutex_lock(&g_closing_lock);
    vp->closing_next = g_closing;
    g_closing = vp;
    pthread_mutex_unlock(&g_closing_lock);
    if (bg_start(pool_close_main, vp) < 0) {
        log_warning("vdlvm: pool '%s': cannot start a thread to close it; "
                    "closing it on the main thread\n",
                    vp->name);
        pool_close_main(vp);
    }
}

/* Main thread, in bs_open: wait for the background close of a pool of the
 * same name, whose lock is held until it is done. */
static void pool_wait_closed(const char *name)
{
    int logged = 0;

    pthread_mutex_lock(&g_closing_lock);
    for (;;) {
        struct vdlvm_pool *c = g_closing;
        while (c && strcmp(c->name, name))
            c = c->closing_next;
        if (!c)
            break;
        if (!logged++)
            log_warning("vdlvm: pool '%s': waiting for its previous close "
                        "to finish before opening it again\n",
                        name);
        pthread_cond_wait(&g_closing_cond, &g_closing_lock);
    }
    pthread_mutex_unlock(&g_closing_lock);
}

/* tgtd exits: every pool closed in the background is closed before. */
__attribute__((destructor)) static void closing_drain(void)
{
    pthread_mutex_lock(&g_closing_lock);
    while (g_closing)
        pthread_cond_wait(&g_closing_cond, &g_closing_lock);
    pthread_mutex_unlock(&g_closing_lock);
}

struct vol_close_job {
    struct vdlvm_pool *vp;
    vd_vol *vol;
};

static void *vol_close_main(void *arg)
{
    struct vol_close_job *c = arg;
    struct vdlvm_pool *vp = c->vp;

    vd_vol_close(c->vol);
    free(c);
    pthread_mutex_lock(&vp->bg_lock);
    vp->closing_vols--;
    pthread_cond_broadcast(&vp->bg_cond);
    pthread_mutex_unlock(&vp->bg_lock);
    return NULL;
}

/* Main thread: close vol in the background; vp stays until it is done
 * (pool_free waits for closing_vols). */
static void vol_close_bg(struct vdlvm_pool *vp, vd_vol *vol)
{
    struct vol_close_job *c = malloc(sizeof(*c));

    pthread_mutex_lock(&vp->bg_lock);
    vp->closing_vols++;
    pthread_mutex_unlock(&vp->bg_lock);
    if (c) {
        c->vp = vp;
        c->vol = vol;
        if (bg_start(vol_close_main, c) == 0)
            return;
    }
    log_warning("vdlvm: pool '%s': cannot start a thread to close volume "
                "'%s'; closing it on the main thread\n",
                vp->name, vd_vol_name(vol));
    if (c) {
        vol_close_main(c);
    } else {
        vd_vol_close(vol);
        pthread_mutex_lock(&vp->bg_lock);
        vp->closing_vols--;
        pthread_mutex_unlock(&vp->bg_lock);
    }
}

static struct vdlvm_pool *pool_find(const char *name)
{
    struct vdlvm_pool *vp;

    list_for_each_entry(vp, &g_pools,
                        link) if (!strcmp(vp->name, name)) return vp;
    return NULL;
}

/* Open pool `name` (or take another reference).  Logs and returns a
 * negative errno on failure. */
static int pool_get(const char *name, const char *vol, const char *conf_file,
                    unsigned open_flags, struct vdlvm_pool **out)
{
    struct vdlvm_pool *vp = pool_find(name);
    char err[512];
    int r;

    if (vp) {
        if (conf_file && strcmp(conf_file, vp->conf_file))
            log_warning("vdlvm: volume '%s/%s': pool already open from "
                        "%s; conf=%s ignored\n",
                        name, vol, vp->conf_file, conf_file);
        vp->refs++;
        *out = vp;
        return 0;
    }
    vp = calloc(1, sizeof(*vp));
    if (!vp)
        return -ENOMEM;
    INIT_LIST_HEAD(&vp->lus);
    INIT_LIST_HEAD(&vp->active);
    pthread_mutex_init(&vp->lock, NULL);
    pthread_cond_init(&vp->work_cond, NULL);
    pthread_cond_init(&vp->idle_cond, NULL);
    pthread_mutex_init(&vp->bg_lock, NULL);
    pthread_cond_init(&vp->bg_cond, NULL);
    vp->ctl_fd = -1;
    vp->refresh_fd = -1;
    vp->hooks.before = ctl_before;
    vp->hooks.after = ctl_after;
    vp->hooks.arg = vp;
    snprintf(vp->name, sizeof(vp->name), "%s", name);
    if (conf_file) {
        vp->conf_file = strdup(conf_file);
    } else {
        /* Same default as the vdlvm command. */
        const char *dir = getenv("VDLVM_CONFDIR");
        if (asprintf(&vp->conf_file, "%s/%s.yaml",
                     dir && *dir ? dir : CONF_DIR_DEFAULT, name) < 0)
            vp->conf_file = NULL;
    }
    if (!vp->conf_file) {
        r = -ENOMEM;
        goto fail;
    }

    r = vd_conf_load(vp->conf_file, &vp->conf, err, sizeof(err));
    if (r < 0) {
        log_error("vdlvm: volume '%s/%s': cannot export: pool definition: "
                  "%s%s\n",
                  name, vol, err,
                  conf_file ? "" : "; give it with --bsopts conf=FILE");
        goto fail;
    }
    if (strcmp(vp->conf->name, name)) {
        log_error("vdlvm: volume '%s/%s': cannot export: %s defines pool "
                  "'%s', not '%s'; fix --bsopts conf=FILE\n",
                  name, vol, vp->conf_file, vp->conf->name, name);
        r = -EINVAL;
        goto fail;
    }
    pool_wait_closed(name);
    r = vd_pool_open_flags(vp->conf, open_flags, &vp->pool);
    if (r < 0) {
        log_error("vdlvm: volume '%s/%s': cannot export: pool '%s' "
                  "(%s) cannot be opened: %s\n",
                  name, vol, name, vp->conf_file, strerror(-r));
        vp->pool = NULL;
        goto fail;
    }
    /* Device tiers and the tiering section of the definition (a YAML
     * edited since the pool was last opened): committed when they differ
     * from the metadata; like the open itself, before any LUN serves. */
    if ((r = vd_tier_configure(vp->pool, vp->conf)) < 0)
        log_warning("vdlvm: pool '%s': the tiering settings of %s were not "
                    "taken: %s; the pool keeps its earlier ones\n",
                    name, vp->conf_file, strerror(-r));
    /* Remember a definition given with conf=FILE, so that vdlvm finds the
     * pool by name once this tgtd lets it go. */
    if (conf_file && (r = vd_registry_add(name, conf_file)) < 0)
        log_warning("vdlvm: pool '%s': cannot remember its definition %s in "
                    "%s/pools: %s; vdlvm needs -c %s for it when no tgtd "
                    "holds it\n",
                    name, conf_file, vd_statedir(), strerror(-r), conf_file);
    r = workers_start(vp);
    if (r < 0) {
        log_error("vdlvm: pool '%s': cannot start worker threads: %s\n", name,
                  strerror(-r));
        goto fail;
    }
    r = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r >= 0 && tgt_event_add(r, EPOLLIN, refresh_handler, vp)) {
        close(r);
        r = -1;
    }
    vp->refresh_fd = r;
    if (r < 0)
        log_warning("vdlvm: pool '%s': cannot watch a size eventfd; LUNs "
                    "learn a new size from 'vdlvm vol extend' only at their "
                    "next open\n",
                    name);
    r = vd_ctl_listen(name);
    if (r < 0) {
        /* The LUs work without it; only live administration is lost. */
        log_warning("vdlvm: pool '%s': no control socket in %s: %s; vdlvm "
                    "commands cannot reach this tgtd\n",
                    name, vd_rundir(), strerror(-r));
    } else if (tgt_event_add(r, EPOLLIN, ctl_handler, vp)) {
        log_warning("vdlvm: pool '%s': cannot watch the control socket; "
                    "vdlvm commands cannot reach this tgtd\n",
                    name);
        vd_ctl_unlisten(name, r);
    } else {
        vp->ctl_fd = r;
    }
    vp->refs = 1;
    list_add_tail(&vp->link, &g_pools);
    vd_log(VD_LOG_INFO, "pool '%s': opened from %s (%d I/O threads)", name,
           vp->conf_file, vp->nthreads);
    *out = vp;
    return 0;
fail:
    /* Nothing was watched yet unless the refresh eventfd was. */
    if (vp->refresh_fd >= 0)
        tgt_event_del(vp->refresh_fd);
    pool_free(vp);
    return r < 0 ? r : -EIO;
}

/* ---- SCSI overrides (main thread) --------------------------------------- */

static void sense_fail(struct scsi_cmd *cmd, uint8_t key, uint16_t asc)
{
    scsi_set_in_resid_by_actual(cmd, 0);
    sense_data_build(cmd, key, asc);
}

/* GET LBA STATUS from the volume's mapping.  Replaces tgt's version, which
 * shifts the LBA before its range check and asks lu->fd.  The checks run
 * here, on the main thread; the mapping is read by a worker
 * (exec_get_lba_status), because the volume's map lock may be held, or
 * waited for by an extend, while other requests wait on devices. */
static int bs_vdlvm_get_lba_status(int host_no, struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->dev;
    struct vdlvm_lu *vl = VDLU(lu);
    uint64_t lba;
    uint32_t alloc_len;

    if ((lu->attrs.removable && !lu->attrs.online) || !vl->vol) {
        sense_fail(cmd, NOT_READY, ASC_MEDIUM_NOT_PRESENT);
        return SAM_STAT_CHECK_CONDITION;
    }
    lba = get_unaligned_be64(&cmd->scb[2]);
    if (lba >= lu_blocks(lu)) {
        sense_fail(cmd, ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        return SAM_STAT_CHECK_CONDITION;
    }
    alloc_len = get_unaligned_be32(&cmd->scb[10]);
    if (alloc_len < 4 || scsi_get_in_length(cmd) < alloc_len) {
        sense_fail(cmd, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
        return SAM_STAT_CHECK_CONDITION;
    }
    if (lu->bst->bs_cmd_submit(cmd)) {
        sense_fail(cmd, HARDWARE_ERROR, ASC_INTERNAL_TGT_FAILURE);
        return SAM_STAT_CHECK_CONDITION;
    }
    return SAM_STAT_GOOD; /* completed by the worker */
}

/* UNMAP: tgt's sbc_unmap builds LUN NOT SUPPORTED sense and a full residual
 * even after a successful submit; same checks, without that. */
static int bs_vdlvm_unmap(int host_no, struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->dev;
    uint8_t key = ILLEGAL_REQUEST;
    uint16_t asc;

    if (device_reserved(cmd))
        return SAM_STAT_RESERVATION_CONFLICT;
    if (cmd->scb[1] & 0x01) { /* ANCHOR */
        asc = ASC_INVALID_FIELD_IN_CDB;
    } else if (lu->attrs.removable && !lu->attrs.online) {
        key = NOT_READY;
        asc = ASC_MEDIUM_NOT_PRESENT;
    } else if (!lu->attrs.thinprovisioning) {
        asc = ASC_INVALID_OP_CODE;
    } else if (lu->attrs.readonly || lu->attrs.swp) {
        key = DATA_PROTECT;
        asc = ASC_WRITE_PROTECT;
    } else if (lu->bst->bs_cmd_submit(cmd)) {
        key = HARDWARE_ERROR;
        asc = ASC_INTERNAL_TGT_FAILURE;
    } else {
        return SAM_STAT_GOOD;
    }
    cmd->offset = 0;
    scsi_set_in_resid_by_actual(cmd, 0);
    scsi_set_out_resid_by_actual(cmd, 0);
    sense_data_build(cmd, key, asc);
    return SAM_STAT_CHECK_CONDITION;
}

/* READ DEFECT DATA(10/12), thin LUs: a volume has no defect list (bad
 * blocks are the devices' business), so the answer is an empty list in the
 * format asked for.  tgt's core has no such command (INVALID OPERATION
 * CODE); thick LUs keep that.  Main thread, no I/O. */
static int bs_vdlvm_read_defect_data(int host_no, struct scsi_cmd *cmd)
{
    int is10 = cmd->scb[0] == READ_DEFECT_DATA;
    uint32_t alloc = is10 ? get_unaligned_be16(&cmd->scb[7])
                          : get_unaligned_be32(&cmd->scb[6]);
    uint32_t len = is10 ? 4 : 8, n;
    uint8_t hdr[8] = { 0 };

    /* PLISTV, GLISTV as asked (the lists exist, empty), the format asked */
    hdr[1] = cmd->scb[is10 ? 2 : 1] & 0x1f;
    n = len < alloc ? len : alloc;
    if (n > scsi_get_in_length(cmd))
        n = scsi_get_in_length(cmd);
    memcpy(scsi_get_in_buffer(cmd), hdr, n);
    scsi_set_in_resid_by_actual(cmd, n);
    return SAM_STAT_GOOD;
}

/* tgt's VPD B0 update for thin LUs advertises 0xFFFFFFFF block
 * descriptors per UNMAP, which initiators (libiscsi's tests among them)
 * turn into a count of -1; advertise a finite number.  For a thin volume
 * also a finite MAXIMUM UNMAP LBA COUNT, and the chunk as OPTIMAL UNMAP
 * GRANULARITY (UGAVALID, alignment 0: chunks start at LBA 0), so that an
 * initiator sends UNMAPs that free whole chunks.  A thick volume made thin
 * by hand (thin_provisioning=1) keeps tgt's other values.  The original
 * hook is the same static function for every LU (main thread). */
static void (*g_vpd_b0_update)(struct scsi_lu *lu, void *data);

static void vpd_b0_update(struct scsi_lu *lu, void *data)
{
    struct vpd *pg = lu->attrs.lu_vpd[PCODE_OFFSET(0xb0)];
    struct vdlvm_lu *vl = VDLU(lu);

    g_vpd_b0_update(lu, data);
    if (!lu->attrs.thinprovisioning)
        return;
    /* pg->data omits the 4-byte page header: byte N of the page is
     * data[N - 4] */
    if (pg->size >= 24)
        put_unaligned_be32(MAX_UNMAP_DESCRIPTORS, pg->data + 20);
    if (vl->thin && pg->size >= 32) {
        uint64_t gran = vl->chunk_size >> lu->blk_shift;
        put_unaligned_be32(max_unmap_blocks(lu), pg->data + 16);
        put_unaligned_be32(gran > UINT32_MAX ? 0 : (uint32_t)gran,
                           pg->data + 24);
        put_unaligned_be32(0x80000000u, pg->data + 28); /* UGAVALID */
    } else if (pg->size >= 32) {
        put_unaligned_be32(0, pg->data + 24);
        put_unaligned_be32(0, pg->data + 28);
    }
}

/* Main thread, bs_open: a thin volume's LU is thin-provisioned for tgt's
 * core, which then answers READ CAPACITY(16) with LBPME=1 and LBPRZ=1 and
 * VPD B2 with LBPU, LBPWS, LBPWS10, LBPRZ and provisioning type 2 (thin),
 * all as SBC-3 wants them (spc.c update_vpd_b2, sbc.c
 * sbc_service_action), and lets UNMAP and WRITE SAME's UNMAP bit through.
 * VPD B0 is ours (vpd_b0_update), GET LBA STATUS too.  A thick volume
 * leaves the attribute as the administrator set it, unless we set it for
 * a thin volume this LU exported before. */
static void lu_set_thin(struct scsi_lu *lu, const struct vd_vol_info *vi)
{
    struct vdlvm_lu *vl = VDLU(lu);
    struct vpd **vpd = lu->attrs.lu_vpd;

    struct device_type_operations *ops = lu->dev_type_template.ops;

    vl->thin = vi->thin;
    vl->chunk_size = vi->thin ? vi->chunk_size : 0;
    if (vi->thin) {
        lu->attrs.thinprovisioning = 1;
        vl->thin_set = 1;
        if (!vl->rdd_saved) {
            vl->rdd_ops[0] = ops[READ_DEFECT_DATA];
            vl->rdd_ops[1] = ops[READ_DEFECT_DATA_12];
            vl->rdd_saved = 1;
        }
        ops[READ_DEFECT_DATA].cmd_perform = bs_vdlvm_read_defect_data;
        ops[READ_DEFECT_DATA_12].cmd_perform = bs_vdlvm_read_defect_data;
    } else if (vl->thin_set) {
        lu->attrs.thinprovisioning = 0;
        vl->thin_set = 0;
        ops[READ_DEFECT_DATA] = vl->rdd_ops[0];
        ops[READ_DEFECT_DATA_12] = vl->rdd_ops[1];
    }
    if (vpd[PCODE_OFFSET(0xb0)] && vpd[PCODE_OFFSET(0xb0)]->vpd_update)
        vpd[PCODE_OFFSET(0xb0)]->vpd_update(lu, NULL);
    if (vpd[PCODE_OFFSET(0xb2)] && vpd[PCODE_OFFSET(0xb2)]->vpd_update)
        vpd[PCODE_OFFSET(0xb2)]->vpd_update(lu, NULL);
}

static void lu_ops_override(struct scsi_lu *lu)
{
    struct vpd *b0 = lu->attrs.lu_vpd[PCODE_OFFSET(0xb0)];
    struct vdlvm_lu *vl = VDLU(lu);
    struct device_type_operations *ops = lu->dev_type_template.ops;
    struct service_action *sa = ops[SERVICE_ACTION_IN].service_actions;
    size_t n = 0;

    /* COMPARE AND WRITE goes through sbc_rw (range, PROTECT, write
     * protection checks) like any write; it writes, so it conflicts with
     * Write Exclusive reservations too. */
    ops[COMPARE_AND_WRITE] = ops[WRITE_16];

    for (; sa && sa->cmd_perform && n < ARRAY_SIZE(vl->sa_9e) - 2; sa++)
        if (sa->service_action != SAI_GET_LBA_STATUS)
            vl->sa_9e[n++] = *sa;
    vl->sa_9e[n].service_action = SAI_GET_LBA_STATUS;
    vl->sa_9e[n++].cmd_perform = bs_vdlvm_get_lba_status;
    vl->sa_9e[n].service_action = 0;
    vl->sa_9e[n].cmd_perform = NULL;
    ops[SERVICE_ACTION_IN].service_actions = vl->sa_9e;

    ops[UNMAP].cmd_perform = bs_vdlvm_unmap;

    if (b0 && b0->vpd_update && b0->vpd_update != vpd_b0_update) {
        if (!g_vpd_b0_update)
            g_vpd_b0_update = b0->vpd_update;
        if (b0->vpd_update == g_vpd_b0_update)
            b0->vpd_update = vpd_b0_update;
    }
}

/* ---- tgt callbacks ------------------------------------------------------ */

static int parse_bsopts(struct vdlvm_lu *vl, char *bsopts)
{
    char *save = NULL, *tok;

    if (!bsopts)
        return 0;
    for (tok = strtok_r(bsopts, ";", &save); tok;
         tok = strtok_r(NULL, ";", &save)) {
        if (!strncmp(tok, "conf=", 5) && tok[5]) {
            vl->conf_file = tok + 5;
        } else if (!strcmp(tok, "partial")) {
            /* open even without a majority of metadata copies (as
             * vdlvm --partial): the admin says no other host uses it */
            vl->open_flags |= VD_OPEN_PARTIAL;
        } else if (*tok) {
            log_error("vdlvm: --bsopts '%s': unknown option; use "
                      "\"conf=FILE\" and/or \"partial\" (options "
                      "separated by ';')\n",
                      tok);
            return -EINVAL;
        }
    }
    return 0;
}

static tgtadm_err bs_vdlvm_init(struct scsi_lu *lu, char *bsopts)
{
    struct vdlvm_lu *vl = VDLU(lu);
    int r;

    /* On failure tgt frees the LU without bs_exit: leave nothing behind. */
    memset(vl, 0, sizeof(*vl));
    vl->lu = lu;
    INIT_LIST_HEAD(&vl->pool_link);
    INIT_LIST_HEAD(&vl->rq);
    INIT_LIST_HEAD(&vl->active_link);
    INIT_LIST_HEAD(&vl->qos_wait);
    vl->qos_fd = -1;
    vl->bsopts = bsopts;
    if (parse_bsopts(vl, bsopts))
        return TGTADM_INVALID_REQUEST;
    r = done_channel_start();
    if (r < 0) {
        log_error("vdlvm: cannot set up the completion eventfd: %s\n",
                  strerror(-r));
        return TGTADM_UNKNOWN_ERR;
    }
    lu_ops_override(lu);
    return TGTADM_SUCCESS;
}

static int bs_vdlvm_open(struct scsi_lu *lu, char *path, int *fd,
                         uint64_t *size)
{
    struct vdlvm_lu *vl = VDLU(lu);
    char pool_name[VD_NAME_MAX + 1], act_name[2 * VD_NAME_MAX + 2];
    const char *slash, *vol_name;
    struct vdlvm_pool *vp;
    vd_vol *vol;
    int r;

    /* tgt passes an uninitialised int; lu->fd must never be a live fd
     * (core's GET LBA STATUS would lseek it). */
    *fd = -1;
    /* tgt-admin (targets.conf) exports only paths that exist: vdlvm
     * activate makes RUNDIR/vol/POOL/VOL for each volume. */
    r = vd_activation_parse(path, act_name, sizeof(act_name));
    if (r < 0) {
        log_error("vdlvm: backing store '%s': %s\n", path,
                  r == -ENOENT ? "volume not activated; run 'vdlvm activate "
                                 "POOL' (vdlvm-activate.service)"
                               : "expected POOL/VOLUME, or an activation path "
                                 "RUNDIR/vol/POOL/VOLUME (vdlvm activate)");
        return r;
    }
    if (r > 0)
        path = act_name;
    /* opening may block on the admin lock (pool/vol.c: Draining) */
    async_drain();
    slash = strchr(path, '/');
    if (!slash || slash - path > VD_NAME_MAX) {
        log_error("vdlvm: backing store '%s': expected POOL/VOLUME\n", path);
        return -EINVAL;
    }
    memcpy(pool_name, path, slash - path);
    pool_name[slash - path] = 0;
    vol_name = slash + 1;
    if (!vd_name_is_valid(pool_name) ||
        (!vd_name_is_valid(vol_name) && !vd_snap_name_is_valid(vol_name))) {
        log_error("vdlvm: backing store '%s': not a valid POOL/VOLUME name "
                  "([A-Za-z0-9_.-], at most %d characters each)\n",
                  path, VD_NAME_MAX);
        return -EINVAL;
    }
    r = pool_get(pool_name, vol_name, vl->conf_file, vl->open_flags, &vp);
    if (r < 0)
        return r;
    vol = vd_vol_open(vp->pool, vol_name);
    if (!vol) {
        r = errno ? -errno : -EIO;
        log_error("vdlvm: volume '%s/%s': cannot export: %s\n", pool_name,
                  vol_name,
                  r == -ENOENT ? "no such volume in the pool; create it with "
                                 "'vdlvm vol create'"
                               : strerror(-r));
        pool_put(vp);
        return r;
    }
    /* bs_open may wait on the pool (see Threads); the volume's info
     * takes the admin lock. */
    struct vd_vol_info vi;
    memset(&vi, 0, sizeof(vi));
    if (vd_vol_get_info(vp->pool, vol_name, &vi) < 0)
        vi.thin = 0;
    if (vi.thin && (!vi.chunk_size || vi.chunk_size < (1u << lu->blk_shift))) {
        log_error("vdlvm: volume '%s/%s': cannot export: chunk size %" PRIu64
                  " is smaller than the LUN's block size %u\n",
                  pool_name, vol_name, vi.chunk_size, 1u << lu->blk_shift);
        vol_close_bg(vp, vol);
        pool_put(vp);
        return -EINVAL;
    }
    lu_set_thin(lu, &vi);
    vl->vp = vp;
    vl->vol = vol;
    vl->inflight = 0;
    r = qos_open(vl);
    if (r < 0) {
        log_error("vdlvm: volume '%s/%s': cannot export: QoS timer: %s\n",
                  pool_name, vol_name, strerror(-r));
        vl->vp = NULL;
        vl->vol = NULL;
        vol_close_bg(vp, vol);
        pool_put(vp);
        return r;
    }
    vl->stats = vd_vol_stats_get(pool_name, vol_name);
    if (!vl->stats)
        log_warning("vdlvm: volume '%s/%s': no I/O counters (out of "
                    "memory); vdlvm stats shows none for it\n",
                    pool_name, vol_name);
    list_add_tail(&vl->pool_link, &vp->lus);
    *size = vd_vol_size(vol) >> lu->blk_shift << lu->blk_shift;
    if (vi.thin)
        log_warning("vdlvm: volume '%s/%s' exported as LUN %d:%" PRIu64
                    " (%" PRIu64 " bytes, thin, chunk %" PRIu64 " bytes)\n",
                    pool_name, vol_name, lu->tgt ? lu->tgt->tid : -1, lu->lun,
                    *size, vi.chunk_size);
    else
        log_warning("vdlvm: volume '%s/%s' exported as LUN %d:%" PRIu64
                    " (%" PRIu64 " bytes)\n",
                    pool_name, vol_name, lu->tgt ? lu->tgt->tid : -1, lu->lun,
                    *size);
    return 0;
}

/* lu->path is already freed here; use only our own state. */
static void bs_vdlvm_close(struct scsi_lu *lu)
{
    struct vdlvm_lu *vl = VDLU(lu);
    struct vdlvm_pool *vp = vl->vp;

    if (!vp)
        return;
    /* tgt refuses to delete an LU with commands in flight: this waits only
     * when tgt closes an offline LU to change its path, and tgt frees the
     * LU (and vl) when we return, so the workers must be done with it.
     * Commands waiting for QoS tokens go to the workers first: their
     * timer runs on this thread. */
    qos_close(vl);
    /* async commands first: a worker's command may wait for a lock that
     * only the main thread's polling releases (pool/vol.c: Draining) */
    async_drain();
    pthread_mutex_lock(&vp->lock);
    while (vl->inflight)
        pthread_cond_wait(&vp->idle_cond, &vp->lock);
    pthread_mutex_unlock(&vp->lock);
    list_del_init(&vl->pool_link);
    vd_vol_stats_put(vl->stats);
    vl->stats = NULL;
    vol_close_bg(vp, vl->vol);
    vl->vol = NULL;
    vl->vp = NULL;
    pool_put(vp);
}

static void bs_vdlvm_exit(struct scsi_lu *lu)
{
    /* After a failed path update or lu_create tgt calls bs_exit without
     * bs_close. */
    bs_vdlvm_close(lu);
}

/* Largest transfer served on the main thread: bigger ones are copied in
 * parallel by the workers. */
#define INLINE_MAX (64u << 10)

/* Main thread fast path: a READ, or a WRITE the write cache may absorb,
 * served entirely from the page cache (VD_IO_NOWAIT) completes here,
 * synchronously, without a worker wake-up and an eventfd round trip: the
 * cost per I/O of tgt's null store plus a memcpy.  Anything that would
 * block (a cache miss, a remote or mirrored volume, FUA, a busy lock)
 * returns -EAGAIN and goes to the workers, which redo it in full.  SCSI
 * lets SIMPLE commands complete in any order, as the workers already do. */
static int try_inline(struct scsi_cmd *cmd, vd_vol *vol)
{
    uint64_t len;
    int r;

    switch (cmd->scb[0]) {
    case READ_10:
    case READ_16:
        len = (uint64_t)scsi_rw_count(cmd->scb) << cmd->dev->blk_shift;
        if (len > scsi_get_in_length(cmd))
            len = scsi_get_in_length(cmd);
        if (len > INLINE_MAX)
            return -EAGAIN;
        r = vd_vol_pread_flags(vol, scsi_get_in_buffer(cmd), len, cmd->offset,
                               VD_IO_NOWAIT);
        break;
    case WRITE_10:
    case WRITE_16:
        len = scsi_get_out_length(cmd);
        if (len > INLINE_MAX || write_flags(cmd))
            return -EAGAIN;
        r = vd_vol_pwrite(vol, scsi_get_out_buffer(cmd), len, cmd->offset,
                          VD_IO_NOWAIT);
        break;
    default:
        return -EAGAIN;
    }
    if (r == 0)
        scsi_set_result(cmd, SAM_STAT_GOOD);
    return r;
}

/* Main thread: queue an async command for the workers. */
static void worker_queue(struct scsi_cmd *cmd, struct vdlvm_lu *vl)
{
    struct vdlvm_pool *vp = vl->vp;

    pthread_mutex_lock(&vp->lock);
    vl->inflight++;
    list_add_tail(&cmd->bs_list, &vl->rq);
    if (list_empty(&vl->active_link))
        list_add_tail(&vl->active_link, &vp->active);
    vp->qlen++;
    /* Wake a worker only when the queue is longer than the workers that
     * are running or about to: a running worker takes the next command
     * without a wake-up, and every wake-up is a context switch that costs
     * more than a page-cache read. */
    if (vp->nidle > vp->nwaking &&
        vp->qlen > vp->nthreads - vp->nidle + vp->nwaking) {
        vp->nwaking++;
        pthread_cond_signal(&vp->work_cond);
    }
    pthread_mutex_unlock(&vp->lock);
}

/* An asynchronous command (see Asynchronous I/O in the header). */
struct async_cmd {
    struct vd_vol_bio vb;
    struct scsi_cmd *cmd;
    uint64_t t0;
};

/* Main thread (vd_async_poll): the volume request of an async command
 * ended. */
static void async_done(struct vd_vol_bio *vb, int r)
{
    struct async_cmd *ac = vb->priv;
    struct scsi_cmd *cmd = ac->cmd;
    struct vdlvm_lu *vl = VDLU(cmd->dev);
    int op = vb->op;
    uint64_t t0 = ac->t0;

    free(ac);
    vl->ainflight--;
    if (r == -EAGAIN) { /* part could not start: the workers redo it */
        worker_queue(cmd, vl);
        return;
    }
    scsi_set_result(cmd, SAM_STAT_GOOD);
    if (r < 0)
        cmd_io_error(cmd, r, op != VD_VOL_READ);
    stats_account(cmd, t0);
    if (g_draining) /* inside bs_open/bs_close: through the done list */
        done_push(cmd);
    else
        target_cmd_io_done(cmd, scsi_get_result(cmd));
}

/* Main thread, cmd already async: start it on the volume; -EAGAIN: the
 * workers take it. */
static int try_async(struct scsi_cmd *cmd, struct vdlvm_lu *vl, uint64_t t0)
{
    struct async_cmd *ac;
    int op;
    uint64_t len = 0;
    void *buf = NULL;
    unsigned flags = 0;

    switch (cmd->scb[0]) {
    case READ_10:
    case READ_16:
        op = VD_VOL_READ;
        len = (uint64_t)scsi_rw_count(cmd->scb) << cmd->dev->blk_shift;
        if (len > scsi_get_in_length(cmd))
            len = scsi_get_in_length(cmd);
        buf = scsi_get_in_buffer(cmd);
        break;
    case WRITE_10:
    case WRITE_16:
        op = VD_VOL_WRITE;
        len = scsi_get_out_length(cmd);
        buf = scsi_get_out_buffer(cmd);
        flags = write_flags(cmd);
        break;
    case SYNCHRONIZE_CACHE:
    case SYNCHRONIZE_CACHE_16:
        op = VD_VOL_FLUSH;
        break;
    default:
        return -EAGAIN;
    }
    if (op != VD_VOL_FLUSH && !len)
        return -EAGAIN;
    if (!(ac = malloc(sizeof(*ac))))
        return -EAGAIN;
    memset(ac, 0, sizeof(*ac));
    ac->vb.op = op;
    ac->vb.flags = flags;
    ac->vb.buf = buf;
    ac->vb.len = len;
    ac->vb.off = cmd->offset;
    ac->vb.done = async_done;
    ac->vb.priv = ac;
    ac->cmd = cmd;
    ac->t0 = t0;
    if (vd_vol_submit(vl->vol, &ac->vb) < 0) {
        free(ac);
        return -EAGAIN;
    }
    vl->ainflight++;
    if (unlikely(!g_async_said)) {
        g_async_said = 1;
        log_warning("vdlvm: volume '%s': asynchronous I/O: commands start "
                    "on the main thread (VDLVM_ASYNC=0 turns it off)\n",
                    vd_vol_name(vl->vol));
    }
    return 0;
}

/* Main thread: run an admitted command.  released: it waited in the QoS
 * FIFO (already async), so a command completed inline is completed here.
 * Returns what bs_cmd_submit returns. */
static int cmd_dispatch(struct scsi_cmd *cmd, struct vdlvm_lu *vl, int released)
{
    struct vdlvm_pool *vp = vl->vp;
    uint64_t t0 = 0;

    if (likely(vp && vl->vol && g_inline)) {
        t0 = stats_now_ns();
        if (try_inline(cmd, vl->vol) == 0) {
            stats_account(cmd, t0);
            if (released) /* it waited for QoS: async, complete it here */
                target_cmd_io_done(cmd, scsi_get_result(cmd));
            return 0; /* not async: tgt completes it as GOOD at once */
        }
    }
    set_cmd_async(cmd);
    if (unlikely(!vp)) {
        cmd_sense(cmd, NOT_READY, ASC_MEDIUM_NOT_PRESENT);
        done_push(cmd);
        return 0;
    }
    if (g_async && vl->vol) {
        if (!t0)
            t0 = stats_now_ns();
        if (try_async(cmd, vl, t0) == 0)
            return 0;
    }
    worker_queue(cmd, vl);
    return 0;
}

/* ---- QoS (main thread; see QoS in the header comment) -------------------- */

/* Shortest timer: a queue released in batches of at most 1 ms of tokens
 * costs at most 1000 wake-ups per second per LU whatever the limit. */
#define QOS_MIN_WAIT_NS 1000000ull

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Reads (and the read-only commands) draw from the read buckets,
 * everything else from the write buckets; bytes are the data moved. */
static int cmd_is_write(const struct scsi_cmd *cmd)
{
    switch (cmd->scb[0]) {
    case READ_6:
    case READ_10:
    case READ_12:
    case READ_16:
    case VERIFY_10:
    case VERIFY_12:
    case VERIFY_16:
    case PRE_FETCH_10:
    case PRE_FETCH_16:
    case SERVICE_ACTION_IN:
        return 0;
    default:
        return 1;
    }
}

static uint64_t cmd_bytes(struct scsi_cmd *cmd, int write)
{
    if (write)
        return scsi_get_out_length(cmd);
    switch (cmd->scb[0]) {
    case READ_6:
    case READ_10:
    case READ_12:
    case READ_16:
        return scsi_get_in_length(cmd);
    default:
        return 0;
    }
}

static void qos_count(struct vdlvm_lu *vl, int write, uint64_t bytes)
{
    vl->st[VD_QOS_IOPS]++;
    vl->st[write ? VD_QOS_WIOPS : VD_QOS_RIOPS]++;
    vl->st[VD_QOS_BPS] += bytes;
    vl->st[write ? VD_QOS_WBPS : VD_QOS_RBPS] += bytes;
}

static void qos_arm(struct vdlvm_lu *vl, uint64_t wait_ns)
{
    struct itimerspec its;

    memset(&its, 0, sizeof(its));
    if (wait_ns < QOS_MIN_WAIT_NS)
        wait_ns = QOS_MIN_WAIT_NS;
    its.it_value.tv_sec = wait_ns / 1000000000ull;
    its.it_value.tv_nsec = wait_ns % 1000000000ull;
    if (timerfd_settime(vl->qos_fd, 0, &its, NULL) < 0)
        log_error("vdlvm: QoS timer: %s\n", strerror(errno));
}

/* Admit waiting commands from the head while they fit; re-arm the timer
 * for the first that does not.  force: admit all (bs_close). */
static void qos_release(struct vdlvm_lu *vl, int force)
{
    uint64_t now = mono_ns(), wait = 0;

    while (!list_empty(&vl->qos_wait)) {
        struct scsi_cmd *cmd =
            list_first_entry(&vl->qos_wait, struct scsi_cmd, bs_list);
        int w = cmd_is_write(cmd);
        uint64_t bytes = cmd_bytes(cmd, w);

        if (!force && !vd_qos_admit(&vl->qos, w, bytes, now, &wait)) {
            qos_arm(vl, wait);
            return;
        }
        list_del(&cmd->bs_list);
        vl->qos_nwait--;
        qos_count(vl, w, bytes);
        cmd_dispatch(cmd, vl, 1);
    }
}

static void qos_timer_handler(int fd, int events, void *data)
{
    struct vdlvm_lu *vl = data;
    uint64_t n;

    while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    qos_release(vl, 0);
}

/* Main thread: take the volume's limits (bs_open, and after every control
 * command); reconfigure the buckets when they changed. */
static void qos_refresh(struct vdlvm_lu *vl)
{
    struct vd_qos_limits l;

    if (!vl->vol)
        return;
    vd_vol_qos_get(vl->vol, &l);
    if (!memcmp(&l, &vl->qos_limits, sizeof(l)))
        return;
    vl->qos_limits = l;
    vd_qos_configure(&vl->qos, &l, mono_ns());
    vd_log(VD_LOG_INFO,
           "volume '%s/%s': QoS limits: iops %" PRIu64 " (read %" PRIu64
           ", write %" PRIu64 "), bytes/s %" PRIu64 " (read %" PRIu64
           ", write %" PRIu64 "), burst %u ms (0: none)",
           vl->vp->name, vd_vol_name(vl->vol), l.limit[VD_QOS_IOPS],
           l.limit[VD_QOS_RIOPS], l.limit[VD_QOS_WIOPS], l.limit[VD_QOS_BPS],
           l.limit[VD_QOS_RBPS], l.limit[VD_QOS_WBPS],
           l.burst_ms ? l.burst_ms : VD_QOS_BURST_MS_DEFAULT);
    qos_release(vl, 0);
}

static int qos_open(struct vdlvm_lu *vl)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

    if (fd < 0)
        return -errno;
    if (tgt_event_add(fd, EPOLLIN, qos_timer_handler, vl)) {
        close(fd);
        return -EIO;
    }
    vl->qos_fd = fd;
    memset(&vl->qos, 0, sizeof(vl->qos));
    memset(&vl->qos_limits, 0, sizeof(vl->qos_limits));
    qos_refresh(vl);
    return 0;
}

static void qos_close(struct vdlvm_lu *vl)
{
    qos_release(vl, 1);
    if (vl->qos_fd >= 0) {
        tgt_event_del(vl->qos_fd);
        close(vl->qos_fd);
        vl->qos_fd = -1;
    }
    /* No limits while closed: nothing may wait without a timer. */
    memset(&vl->qos, 0, sizeof(vl->qos));
    memset(&vl->qos_limits, 0, sizeof(vl->qos_limits));
}

/* 1 s timer: rates of every LU, published on its volume. */

static void stats_handler(int fd, int events, void *data)
{
    struct vdlvm_pool *vp;
    struct vdlvm_lu *vl;
    uint64_t n, now = mono_ns(), dt = now - g_stats_prev_ns;

    while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    g_stats_prev_ns = now;
    if (!dt)
        return;
    list_for_each_entry(vp, &g_pools, link)
    {
        list_for_each_entry(vl, &vp->lus, pool_link)
        {
            struct vd_qos_rates r;

            memset(&r, 0, sizeof(r));
            for (int k = 0; k < VD_QOS_NLIMITS; k++) {
                r.rate[k] =
                    (uint64_t)((unsigned __int128)(vl->st[k] - vl->st_prev[k]) *
                               1000000000ull / dt);
                vl->st_prev[k] = vl->st[k];
            }
            r.queued = vl->qos_nwait;
            r.at_ms = (int64_t)(now / 1000000); /* vd_now_ms: monotonic */
            if (vl->vol)
                vd_vol_qos_publish(vl->vol, &r);
        }
    }
}

static int stats_start(void)
{
    struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

    if (fd < 0)
        return -errno;
    if (timerfd_settime(fd, 0, &its, NULL) < 0 ||
        tgt_event_add(fd, EPOLLIN, stats_handler, NULL)) {
        close(fd);
        return -EIO;
    }
    g_stats_prev_ns = mono_ns();
    g_stats_fd = fd;
    return 0;
}

static int bs_vdlvm_cmd_submit(struct scsi_cmd *cmd)
{
    struct vdlvm_lu *vl = VDLU(cmd->dev);
    int w = cmd_is_write(cmd);
    uint64_t bytes = cmd_bytes(cmd, w), wait = 0;

    if (unlikely(vl->qos.active || vl->qos_nwait)) {
        /* Behind a waiting command, or over a limit: wait in order. */
        if (vl->qos_nwait ||
            !vd_qos_admit(&vl->qos, w, bytes, mono_ns(), &wait)) {
            set_cmd_async(cmd);
            list_add_tail(&cmd->bs_list, &vl->qos_wait);
            if (vl->qos_nwait++ == 0)
                qos_arm(vl, wait);
            return 0;
        }
    }
    qos_count(vl, w, bytes);
    return cmd_dispatch(cmd, vl, 0);
}

static struct backingstore_template vdlvm_bst = {
    .bs_name = "vdlvm",
    .bs_datasize = sizeof(struct vdlvm_lu),
    .bs_open = bs_vdlvm_open,
    .bs_close = bs_vdlvm_close,
    .bs_init = bs_vdlvm_init,
    .bs_exit = bs_vdlvm_exit,
    .bs_cmd_submit = bs_vdlvm_cmd_submit,
    .bs_oflags_supported = 0,
};

/* The module is compiled against the headers of one tgt (struct layouts
 * are compiled in; tgt has no module ABI), so it registers only in the
 * tgtd it was built for: VD_TGTD_BUILD_ID is the GNU build ID of the tgtd
 * the Makefile found (empty: not checked). */
#ifndef VD_TGTD_BUILD_ID
#define VD_TGTD_BUILD_ID ""
#endif

/* dl_iterate_phdr callback: the build ID of the first object (the program)
 * as hex into data (129 bytes). */
static int build_id_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    char *hex = data;

    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        const char *p, *end;

        if (ph->p_type != PT_NOTE)
            continue;
        p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *n = (const void *)p;
            const char *name = p + sizeof(*n);
            const unsigned char *desc =
                (const unsigned char *)name + ((n->n_namesz + 3) & ~3u);
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
                !memcmp(name, "GNU", 4)) {
                for (unsigned k = 0; k < n->n_descsz && k < 64; k++)
                    sprintf(hex + 2 * k, "%02x", desc[k]);
                return 1;
            }
            p = (const char *)desc + ((n->n_descsz + 3) & ~3u);
        }
    }
    return 1; /* only the program */
}

__attribute__((visibility("default"))) void register_bs_module(void);

void register_bs_module(void)
{
    char tgtd_id[129] = "";
    if (VD_TGTD_BUILD_ID[0]) {
        dl_iterate_phdr(build_id_cb, tgtd_id);
        if (strcmp(tgtd_id, VD_TGTD_BUILD_ID)) {
            log_error("vdlvm: bs_vdlvm.so was built for tgt %s (tgtd build "
                      "ID %s), not for this tgtd (build ID %s); not loading "
                      "it: rebuild vdlvm against the installed tgt (make "
                      "install, or make deb)\n",
                      VD_TGT_VERSION, VD_TGTD_BUILD_ID,
                      tgtd_id[0] ? tgtd_id : "none");
            return;
        }
    }
    const char *inl = getenv("VDLVM_INLINE");
    g_inline = !(inl && !strcmp(inl, "0"));
    const char *as = getenv("VDLVM_ASYNC");
    g_async = !(as && !strcmp(as, "0"));
    /* bs_rdwr.c's SBC list; the ops not listed get INVALID OPERATION CODE. */
    static unsigned char ops[] = {
        ALLOW_MEDIUM_REMOVAL,
        COMPARE_AND_WRITE,
        FORMAT_UNIT,
        INQUIRY,
        MAINT_PROTOCOL_IN,
        MODE_SELECT,
        MODE_SELECT_10,
        MODE_SENSE,
        MODE_SENSE_10,
        ORWRITE_16,
        PERSISTENT_RESERVE_IN,
        PERSISTENT_RESERVE_OUT,
        PRE_FETCH_10,
        PRE_FETCH_16,
        READ_10,
        READ_12,
        READ_16,
        READ_6,
        READ_CAPACITY,
        RELEASE,
        REPORT_LUNS,
        REQUEST_SENSE,
        READ_DEFECT_DATA, /* thin LUs only; INVALID OPCODE on others */
        READ_DEFECT_DATA_12,
        RESERVE,
        SEND_DIAGNOSTIC,
        SERVICE_ACTION_IN,
        START_STOP,
        SYNCHRONIZE_CACHE,
        SYNCHRONIZE_CACHE_16,
        TEST_UNIT_READY,
        UNMAP,
        VERIFY_10,
        VERIFY_12,
        VERIFY_16,
        WRITE_10,
        WRITE_12,
        WRITE_16,
        WRITE_6,
        WRITE_SAME,
        WRITE_SAME_16,
        WRITE_VERIFY,
        WRITE_VERIFY_12,
        WRITE_VERIFY_16,
    };

    /* Messages of a command served on the control socket go to its caller
     * as well; the rest to tgtd's log. */
    vd_admin_log_init(vdlvm_log);
    bs_create_opcode_map(&vdlvm_bst, ops, ARRAY_SIZE(ops));
    register_backingstore_template(&vdlvm_bst);
}
