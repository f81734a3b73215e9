/* vdlvm: pools, volumes, mapping and metadata (pool/).
 *
 * Contract
 * - Functions return 0 or a negative errno; functions returning a pointer
 *   return NULL and set errno.  Failures are logged once, here, through the
 *   log function (vd_log_set_fn), naming the pool/device/volume.
 * - Administrative calls (create/remove/extend/open/close, info getters)
 *   are serialised by the pool's admin lock and may be called from any
 *   thread, concurrently with I/O.  vd_pool_open/close: one thread.
 * - I/O calls (vd_vol_pread/pwrite/flush/...) are thread-safe and may be
 *   called from any number of threads on an open volume.
 * - A pool is held by one process at a time: vd_pool_open takes an
 *   exclusive lock on RUNDIR/POOL.lock (RUNDIR: $VDLVM_RUNDIR or /run/vdlvm)
 *   and fails with -EBUSY, naming the holder's pid and command, if another
 *   process holds it.
 */
#ifndef VDPOOL_H
#define VDPOOL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../config/vdconfig.h"
#include "qos.h" /* per-volume QoS limits (issue 17) */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- logging ---------------------------------------------------------- */
enum { VD_LOG_ERR = 0, VD_LOG_WARN = 1, VD_LOG_INFO = 2, VD_LOG_DEBUG = 3 };
typedef void (*vd_log_fn)(int level, const char *msg);
/* Default: "vdlvm: msg\n" on stderr for ERR/WARN.  Not thread-safe to
 * change while other threads log; set it once at start-up. */
void vd_log_set_fn(vd_log_fn fn);
void vd_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Directory for locks and control sockets: $VDLVM_RUNDIR or /run/vdlvm. */
const char *vd_rundir(void);

/* ---- pools ------------------------------------------------------------ */
typedef struct vd_pool vd_pool;
typedef struct vd_vol vd_vol;

/* Write a new pool to every device of conf: device headers and metadata.
 * Creates a sparse file of conf size for a path that does not exist.
 * Refuses (-EEXIST) a device that already carries a vdlvm header unless
 * force.  Checks every device before writing any: on failure nothing is
 * written (files it created are removed again). */
int vd_pool_create(const struct vd_conf_pool *conf, int force);

/* Open an existing pool from its definition: reads every device's metadata
 * and opens from the newest state that most copies at the newest sequence
 * number hold; repairs stale/corrupt copies (warning).  A device that is
 * missing or fails is reported (vd_dev_info.state) and the pool opens
 * while a majority of its metadata copies (the devices flagged has_md) is
 * present: holding the newest state, or an older valid chain (stale).
 * Otherwise -ENODEV, and the message lists each missing copy (device name,
 * path, why) and says to use --partial.  A copy holding another state at
 * the newest number (split brain) is kept out (VD_DEV_FAILED) and never
 * overwritten; so is a copy that returns later (vd_pool_retry_devices)
 * with a higher sequence number than the pool's, or the same number and
 * another state.  Free with vd_pool_close. */
int vd_pool_open(const struct vd_conf_pool *conf, vd_pool **out);

/* Encryption key slots (pool/crypt.c; docs/encryption.md).  key_add wraps
 * the pool's data key with a new key file (checked root-only) into a free
 * slot, authorised by the key file of the definition the pool was opened
 * with (it must still open a slot); key_remove empties the slot the key
 * file opens, never the last one.  Admin thread.  The slot number, or a
 * negative errno with the message logged (-EINVAL not encrypted, -EACCES
 * not authorised, -EEXIST already a slot, -ENOSPC no free slot, -ENOENT
 * the key file opens no slot, -EPERM the last slot).  key_slots: slots in
 * use (0: not encrypted).  key_add on a pool without key slots makes its
 * data key (slot 0, 512-byte sectors) and returns 0. */
int vd_pool_key_add(vd_pool *pool, const char *key_file);
int vd_pool_key_remove(vd_pool *pool, const char *key_file);
int vd_pool_key_slots(const vd_pool *pool);
/* Key rotation: one metadata commit adds a slot for new_file and removes
 * the slot of the definition's key file (both or neither); the slot
 * number, or a negative errno as key_add/key_remove. */
int vd_pool_key_rotate(vd_pool *pool, const char *new_file);
/* `vol encrypt`: move every extent of vol that is on a device without
 * encrypt: true to encrypted devices, online, with the extent mover, in
 * the background (resumes after a restart); the freed plaintext extents
 * are zeroed.  0, or a negative errno with the message logged (-ENOENT no
 * such volume, -EINVAL pool not encrypted, -EALREADY already encrypted,
 * -ENOSPC the encrypted devices lack room, -EBUSY another volume is being
 * encrypted). */
int vd_vol_encrypt(vd_pool *pool, const char *vol, uint64_t rate);
struct vd_crypt_status {
    int active; /* a vol encrypt job is pending */
    char vol[VD_NAME_MAX + 1];
    uint64_t left, total;     /* extents still on plain devices */
    uint64_t moved, scrubbed; /* extents moved, freed extents zeroed */
    char error[200];          /* why the last job stopped ("" ok) */
};
int vd_vol_encrypt_status(vd_pool *pool, struct vd_crypt_status *st);
/* Run the job for a while in this thread (no background thread): 1 work
 * left, 0 idle. */
int vd_vol_encrypt_step(vd_pool *pool);
/* vd_pool_open with flags: VD_OPEN_PARTIAL opens even when fewer than a
 * majority of the metadata copies are present (the newest readable state
 * wins; a warning lists the missing copies). */
#define VD_OPEN_PARTIAL 1u
int vd_pool_open_flags(const struct vd_conf_pool *conf, unsigned flags,
                       vd_pool **out);
/* Fence the owner of a pool of remote devices that is gone: preempt its
 * persistent reservation on every remote device of conf and take them for
 * this host, so that the old owner's writes fail from now on.  The pool is
 * not opened.  0 or a negative errno (message logged). */
int vd_pool_takeover(const struct vd_conf_pool *conf);
/* Closes devices and releases the lock.  All volumes must be closed. */
void vd_pool_close(vd_pool *pool);

const char *vd_pool_name(const vd_pool *pool);

struct vd_pool_info {
    char name[VD_NAME_MAX + 1];
    char uuid[37];
    uint64_t extent_size;
    uint64_t seq; /* metadata sequence number */
    uint32_t ndevs, nvols;
    uint64_t total_bytes, used_bytes, free_bytes; /* data extents only */
    uint64_t provisioned_bytes; /* sum of every volume's size */
    uint64_t allocated_bytes;   /* bytes holding data: thick volumes'
                                   extents + thin volumes' chunks */
    uint32_t threshold_pct;     /* highest of the allocation thresholds
                                   (80/90/95 % of total) crossed, 0 none */
};
int vd_pool_get_info(const vd_pool *pool, struct vd_pool_info *info);

enum vd_dev_state { VD_DEV_OK = 0, VD_DEV_MISSING, VD_DEV_FAILED };
struct vd_dev_info {
    char name[VD_NAME_MAX + 1];
    char node[VD_NAME_MAX + 1];
    char path[4096]; /* path or iscsi URL (never a secret) */
    char uuid[37];
    enum vd_dev_state state;
    char state_msg[256]; /* cause when not OK */
    uint64_t size;       /* bytes of the device */
    uint64_t extents, used_extents;
    int has_md; /* holds a metadata copy */
};
int vd_pool_dev_get_info(const vd_pool *pool, uint32_t i,
                         struct vd_dev_info *info);

/* ---- volumes ---------------------------------------------------------- */
/* VD_LAYOUT_THIN: a thin volume on the linear layout (the same as
 * VD_LAYOUT_LINEAR with vd_vol_opts.thin set); a thin volume's info and
 * status give its lower layout (linear or mirror) and thin = 1. */
enum vd_layout {
    VD_LAYOUT_LINEAR = 0,
    VD_LAYOUT_MIRROR = 1,
    VD_LAYOUT_THIN = 2
};

/* "linear", "mirror", ... for status and the CLI; "unknown" otherwise. */
const char *vd_layout_name(uint32_t layout);
/* The layout called name: 0, or -EINVAL. */
int vd_layout_from_name(const char *name, enum vd_layout *out);
/* The vol create options a layout takes, from its ops table (the CLI asks
 * here instead of keeping a table per layout). */
enum {
    VD_LOPT_COPIES = 1,    /* --copies */
    VD_LOPT_SAME_NODE = 2, /* --allow-same-node */
    VD_LOPT_REGION = 4,    /* --region-size */
};
/* Of layout: the VD_LOPT_* it takes and its default number of copies; for
 * an unknown layout none and 1. */
unsigned vd_layout_create_opts(uint32_t layout, uint32_t *default_copies);
/* The name of the first layout taking one of the VD_LOPT_* in bits, or
 * "?" (for messages). */
const char *vd_layout_opts_owner(unsigned bits);

struct vd_vol_opts {
    enum vd_layout layout; /* default linear */
    uint32_t copies;       /* legs for mirror (2 or 3); 1 for linear */
    int allow_same_node;   /* mirror: legs may share a node */
    uint64_t region_size;  /* mirror: bytes per bitmap bit, power of two,
                                64 KiB .. extent size; 0 = 1 MiB */
    int thin;              /* chunks allocated on first write, freed by
                              vd_vol_discard, on extents of `layout` */
    uint64_t chunk_size;   /* thin: power of two, 4 KiB .. extent size;
                              0 = the pool's (conf chunk_size, 64 KiB) */
};
void vd_vol_opts_init(struct vd_vol_opts *o);

/* Largest size vd_vol_create/vd_vol_extend accept in this pool (a whole
 * number of extents, with room for a mirror's bitmap extent). */
uint64_t vd_vol_size_max(const vd_pool *pool);

/* Size is rounded up to whole extents.  -EEXIST, -ENOSPC (message says how
 * much is free), -EINVAL (bad name, size 0 or not a multiple of 512),
 * -EFBIG (above vd_vol_size_max: "size N is too large (at most M)"). */
int vd_vol_create(vd_pool *pool, const char *name, uint64_t size,
                  const struct vd_vol_opts *opts);
/* -EBUSY while the volume is open. */
int vd_vol_remove(vd_pool *pool, const char *name);
/* Grow only (-EINVAL when smaller).  Works while the volume is open: the new
 * size is visible to vd_vol_size() at once. */
int vd_vol_extend(vd_pool *pool, const char *name, uint64_t new_size);

struct vd_vol_info {
    char name[VD_NAME_MAX + 1];
    uint64_t size;
    enum vd_layout layout;
    uint32_t copies;
    uint32_t open_count;
    int thin;
    uint64_t chunk_size; /* thin only */
};
int vd_pool_vol_count(const vd_pool *pool);
int vd_pool_vol_get_info(const vd_pool *pool, uint32_t i,
                         struct vd_vol_info *info);
int vd_vol_get_info(const vd_pool *pool, const char *name,
                    struct vd_vol_info *info);

/* Layout-independent status of a volume, one structure that `vdlvm
 * status` renders as text and as JSON; each layout fills what it knows
 * (struct vd_layout_ops.status). */
struct vd_vol_status {
    char layout[16];        /* vd_layout_name() */
    uint64_t size;          /* provisioned bytes */
    uint64_t allocated;     /* bytes of it backed by extents (leg 0) */
    uint32_t copies;        /* legs */
    uint32_t copies_insync; /* legs holding every acknowledged write */
    int degraded;           /* copies_insync < copies */
    int resyncing;          /* a resync is running or pending */
    uint64_t resync_done, resync_total; /* bytes, of the running resync */
    int thin;            /* allocated = bytes of allocated chunks */
    uint64_t chunk_size; /* thin only */
};
/* -ENOENT when there is no such volume. */
int vd_vol_get_status(const vd_pool *pool, const char *name,
                      struct vd_vol_status *st);

/* ---- snapshots of thin volumes (pool/snap.c) --------------------------
 * Names: "VOL@SNAP"; SNAP is 1..VD_SNAP_NAME_MAX of [A-Za-z0-9._+-].
 * vd_vol_open(pool, "VOL@SNAP") opens a snapshot read-only (writes fail
 * with -EROFS).  All: 0 or a negative errno, the cause logged; admin
 * thread (they take the admin lock and wait for the volume's writes in
 * flight, never for a device held by another lock). */
#define VD_SNAP_NAME_MAX 63
#define VD_SNAP_MAX      4096 /* snapshots per volume */
struct vd_snap_info {
    uint32_t id;
    char name[VD_SNAP_NAME_MAX + 1];
    uint64_t size;      /* the volume's size when it was taken */
    int64_t ctime;      /* seconds since the epoch */
    uint64_t exclusive; /* bytes only it holds: its removal frees them */
    int exported;       /* open (a LUN) */
};
/* A crash-consistent, read-only image of thin volume vol, also while it is
 * written to: every write acknowledged before the call is in it, none that
 * starts after it returns.  Metadata only (one record). */
int vd_snap_create(vd_pool *pool, const char *vol, const char *snap);
/* -EBUSY while the snapshot is open. */
int vd_snap_remove(vd_pool *pool, const char *vol, const char *snap);
/* *snaps is malloc'd (free()), oldest first. */
int vd_snap_list(vd_pool *pool, const char *vol, struct vd_snap_info **snaps,
                 size_t *n);
/* The volume's content becomes the snapshot's (its size stays); -EBUSY
 * while the volume is open unless force. */
int vd_vol_revert(vd_pool *pool, const char *vol, const char *snap, int force);
/* Split "VOL@SNAP": 1 and the parts (NUL-terminated, in the buffers of
 * VD_NAME_MAX + 1 bytes), 0 for a name without '@', -EINVAL (logged) for a
 * bad one. */
int vd_snap_split(const char *full, char *vol, char *snap);
/* 1 when name is a valid "VOL@SNAP" (nothing logged), else 0. */
int vd_snap_name_is_valid(const char *name);
/* `vol import` (pool/snap.c): mark thin volume vol as being imported
 * (on: a reserved empty snapshot, one record) or done (off).  A pool
 * open removes every volume still marked: its importer died (kill -9),
 * since only one process holds the pool. */
int vd_vol_import_mark(vd_pool *pool, const char *vol, int on);
/* Create thin volume name already marked (the mark in the create's own
 * commit: a kill leaves no volume or a marked one) and open it into *vol
 * (vd_vol_close); opens, clones and snapshots of it are refused (-EBUSY)
 * until vd_vol_import_mark(pool, name, 0). */
int vd_vol_import_create(vd_pool *pool, const char *name, uint64_t size,
                         const struct vd_vol_opts *opts, vd_vol **vol);
/* Remove a volume still marked (a failed import), mark included, in one
 * record.  -EBUSY while open or cloned. */
int vd_vol_import_abort(vd_pool *pool, const char *vol);

/* `vdlvm vol clone POOL/SRC[@SNAP] POOL/NEW` (pool/snap.c): a writable
 * thin volume sharing every chunk of src (a thin volume, "VOL@SNAP", or
 * another clone) until it writes it (copy-on-write).  One record: a crash
 * leaves no clone or a whole one.  The clone is opened, exported, listed
 * and removed by name like a volume; the volume holding its chunks
 * cannot be removed while it has clones. */
int vd_vol_clone(vd_pool *pool, const char *src, const char *name);
struct vd_clone_info {
    char name[VD_NAME_MAX + 1];
    char origin[2 * VD_NAME_MAX + 2]; /* "VOL@SNAP", "VOL" or a clone */
    uint64_t size;
    uint64_t exclusive; /* bytes only it names: its removal frees them */
    uint64_t shared;    /* bytes it shares (a write copies them first) */
    int exported;
};
/* *out malloc'd (free()). */
int vd_clone_list(vd_pool *pool, struct vd_clone_info **out, size_t *n);
/* -ENOENT when name is no clone; nothing logged. */
int vd_clone_get_info(vd_pool *pool, const char *name,
                      struct vd_clone_info *ci);

/* Of thin volume name's own chunks (its head, not its snapshots): bytes
 * no snapshot shares (*exclusive: a write to them goes in place) and bytes
 * it shares with at least one snapshot (*shared: a write copies them
 * first).  -ENOENT, -EINVAL (not thin); nothing logged.  Admin thread. */
int vd_vol_get_sharing(const vd_pool *pool, const char *name,
                       uint64_t *exclusive, uint64_t *shared);

/* `vdlvm pool check`: verify every thin volume's chunk references (maps,
 * snapshots' reference counts, leaks).  0 clean, 1 problems found (logged;
 * counts in the result), negative errno on failure.  repair: leaked chunks
 * are written free. */
struct vd_pool_check {
    uint64_t volumes;   /* thin volumes checked */
    uint64_t leaked;    /* chunks referenced by no volume or snapshot */
    uint64_t bad;       /* references that disagree with the chunk map */
    uint64_t repaired;  /* leaked chunks freed */
    uint64_t reclaimed; /* found unreferenced at open (crash recovery) */
};
int vd_pool_check(vd_pool *pool, int repair, struct vd_pool_check *res);

/* A run of logical extents mapped to consecutive physical extents of one
 * device, for status output.  Logical extent n holds volume bytes
 * [n * extent_size, (n+1) * extent_size); a mirror's bitmap extent is not
 * listed. */
struct vd_run {
    uint32_t leg;
    uint64_t le_start, count; /* logical extents */
    uint32_t dev;             /* index for vd_pool_dev_get_info */
    uint64_t pe_start;        /* physical extent on that device */
};
/* *runs is malloc'd; free(). */
int vd_vol_get_runs(const vd_pool *pool, const char *name, struct vd_run **runs,
                    size_t *nruns);

/* ---- live pool operations (pool/move.c, pool/pool.c) ------------------ */
/* `vdlvm pool apply`: the devices of conf that the pool lacks are checked
 * (unused: no foreign data, no other pool's header; large enough),
 * initialised and join the live pool.  Every other difference is refused
 * (-EINVAL, the message names the file, line and device): a changed path
 * or node, a renamed device, a device missing from conf (named with the
 * extents it holds; removing even an empty device is not supported yet).
 * Nothing is written when anything is refused, nor with dry_run.  plan
 * gets one line per change ("nothing to change" when none). */
int vd_pool_apply(vd_pool *pool, const struct vd_conf_pool *conf, int dry_run,
                  char *plan, size_t plan_len);
struct vd_move_stats {
    uint64_t bytes_copied;   /* written to targets (copies and repairs) */
    uint64_t bytes_compared; /* compared after a restart */
    uint64_t moves_done, moves_aborted;
    char last_error[200];
};
struct vd_move_status {
    int active, failed;
    char vol[VD_NAME_MAX + 1], src[VD_NAME_MAX + 1], dst[VD_NAME_MAX + 1];
    uint64_t le;
    uint32_t leg;
    uint64_t done, total; /* bytes of the extent moving */
    uint64_t rate_limit, rate_bps;
    int evacuating;
    char evac_dev[VD_NAME_MAX + 1];
    uint64_t evac_left_bytes, evac_total_bytes;
    uint64_t eta_s;
    uint32_t no_alloc_devs;
    /* devices drained by an evacuation, "d0, d2" (no new extents until
     * they leave the pool) */
    char drained[256];
    char error[200];
    struct vd_move_stats stats;
    /* rebalance: moves done and the moves left as planned now (bytes) */
    int rebalancing;
    uint64_t reb_done_bytes, reb_total_bytes;
};
/* Move leg `leg` of logical extent le of volume vol to device `to` (NULL:
 * the least used device allowed), online, in the background.  -EBUSY
 * while another move runs. */
int vd_move_extent(vd_pool *pool, const char *vol, uint32_t leg, uint64_t le,
                   const char *to, uint64_t rate);
/* Move every extent off device dev (to the devices named in to, or any),
 * in the background; dev gets no new extents, also once it is empty and
 * after a restart (VD_DEVF_DRAIN), until it leaves the pool.  -ENOENT (no such device),
 * -EINVAL (bad --to), -ENOSPC (the others lack room), -EBUSY (another
 * device is being evacuated); the message says so. */
int vd_dev_evacuate(vd_pool *pool, const char *dev, const char *const *to,
                    size_t nto, uint64_t rate);
/* Move extents, in the background, until every usable device's share of
 * used extents is within one extent of the pool's mean (by percentage of
 * its size): between nodes first, then between the devices.  Mirror legs
 * keep their distinct-node rule; devices being evacuated are left out.
 * Resumes after a restart.  -EBUSY while a device is being evacuated;
 * *moves (may be NULL): the moves planned now (0: already balanced). */
int vd_pool_rebalance(vd_pool *pool, uint64_t rate, uint64_t *moves);
int vd_pool_move_status(vd_pool *pool, struct vd_move_status *st);
/* Extents (of every leg) on dev; UINT64_MAX if there is no such device. */
uint64_t vd_pool_dev_extents(vd_pool *pool, const char *dev);
/* Until no move runs or is pending (timeout_ms 0: no bound): 0, -EIO (the
 * last move was abandoned), -ETIMEDOUT. */
int vd_move_wait(vd_pool *pool, int64_t timeout_ms);

/* ---- volume I/O ------------------------------------------------------- */
vd_vol *vd_vol_open(vd_pool *pool, const char *name); /* NULL + errno */
void vd_vol_close(vd_vol *vol);
uint64_t vd_vol_size(const vd_vol *vol); /* bytes, live */
const char *vd_vol_name(const vd_vol *vol);

#define VD_IO_FUA 1u /* durable before return */
#define VD_IO_NOWAIT \
    2u /* never block: serve from the page cache or fail
                           with -EAGAIN (nothing logged); for a caller's
                           event loop.  Remote devices always give -EAGAIN
                           (so does a mirror write into a clean region); a
                           failed NOWAIT write may have written part of the
                           range (repeat it). */

/* Byte-granular I/O; offsets and lengths need not be aligned.  Return 0 or
 * -EIO (a device failed: the message names it), -ERANGE (beyond the end).
 * A write returns 0 only when the data is on every healthy copy; with
 * VD_IO_FUA it is also durable there. */
int vd_vol_pread(vd_vol *vol, void *buf, size_t len, uint64_t off);
/* vd_vol_pread with flags (VD_IO_NOWAIT). */
int vd_vol_pread_flags(vd_vol *vol, void *buf, size_t len, uint64_t off,
                       unsigned flags);
int vd_vol_pwrite(vd_vol *vol, const void *buf, size_t len, uint64_t off,
                  unsigned flags);
/* Make every write completed so far durable on every device the volume
 * has touched. */
int vd_vol_flush(vd_vol *vol);

/* Asynchronous volume I/O (issue 14; the design is in pool/vol.c).
 * vd_vol_submit starts vb and returns at once, never waiting on a device,
 * the network or a lock (try-locks only): 0 started, vb->done runs exactly
 * once later, never inside vd_vol_submit, on the thread that calls
 * vd_async_poll; -EAGAIN: nothing was started (no event loop registered
 * with vd_async_fd, a layout or device without submit, a busy lock, a
 * moving extent, a full queue): use the synchronous calls.  Call it only
 * on the event loop's thread (the thread that calls vd_async_poll).
 * done's result is 0, -EIO, -ERANGE, or -EAGAIN: nothing failed but part
 * could not start; redo the request with the synchronous calls.  A write
 * is complete (as vd_vol_pwrite) but durable only with VD_IO_FUA or after
 * a FLUSH (op VD_VOL_FLUSH, len 0). */
#define VD_VOL_READ  0
#define VD_VOL_WRITE 1
#define VD_VOL_FLUSH 2
struct vd_vol_bio {
    int op;         /* VD_VOL_* */
    unsigned flags; /* VD_IO_FUA for writes */
    void *buf;      /* owned by the caller until done */
    size_t len;
    uint64_t off;
    void (*done)(struct vd_vol_bio *vb, int result);
    void *priv; /* the caller's */
    /* the pool's (vol.c), not to be touched by the caller */
    vd_vol *vol;
    unsigned locks;
    int result;
    unsigned pending;
    void *lpriv;
    struct vd_vol_bio *next;
};
int vd_vol_submit(vd_vol *vol, struct vd_vol_bio *vb);
/* Volume requests in flight (started, done not yet run). */
unsigned vd_async_inflight(void);
/* On the event loop's thread: wait until no volume request is in flight
 * (their done callbacks run here).  Before anything on that thread that
 * may block on the admin lock or a volume's locks (vol.c says why). */
void vd_async_drain(void);

/* Asynchronous device completions (io_uring on local devices, pool/uring.c;
 * issue 14).  A process with an event loop calls vd_async_fd() once,
 * before it opens a pool, watches the returned eventfd (readable: there
 * are completions) and calls vd_async_poll() on that loop's thread; the
 * completions' callbacks then run there.  Without that call the library
 * reaps on a thread of its own.  vd_async_fd: the fd or a negative errno. */
int vd_async_fd(void);
void vd_async_poll(void);

/* Atomically (against every other write to the volume) compare len bytes
 * at off with cmp and, if equal, write wr there.  Returns 0 when written,
 * 1 on a miscompare with *miscompare_off set to the first differing byte
 * offset relative to off, or a negative errno. */
int vd_vol_compare_and_write(vd_vol *vol, const void *cmp, const void *wr,
                             size_t len, uint64_t off,
                             uint64_t *miscompare_off);

/* Provisioning status of the extent holding off: *mapped 1/0, *len bytes
 * from off to the end of the run with the same status (capped at the end
 * of the volume).  -ERANGE when off >= size. */
int vd_vol_lba_status(vd_vol *vol, uint64_t off, uint64_t *len, int *mapped);

/* Discard: for thick volumes this writes nothing and returns 0 (data stays
 * readable as before).  Thin volumes free every whole chunk in the range
 * (it reads as zeroes at once and its space is back in the pool) and leave
 * partial chunks as they are: the caller zeroes what vd_vol_lba_status
 * still reports mapped when it needs zeroes.
 *
 * Thin volumes: a write that needs a new chunk when the pool has no space
 * left fails with -ENOSPC (nothing written); reads, and writes to
 * allocated chunks, keep working. */
int vd_vol_discard(vd_vol *vol, uint64_t off, uint64_t len);

/* ---- tiering (pool/heat.c, pool/tier.c; docs/tiering.md) ---------------
 * Admin thread; each call takes the admin lock. */
/* One logical data extent of one leg: where it is and how hot. */
struct vd_tier_ext {
    uint64_t le; /* data extent (volume bytes le * extent_size) */
    uint32_t leg;
    uint32_t dev;           /* device index, UINT32_MAX when unmapped */
    uint32_t tier;          /* VD_CONF_TIER_* of dev */
    uint32_t reads, writes; /* I/Os counted, decayed (halved each interval) */
};
struct vd_tier_info {
    int pool_enabled; /* background passes (`tiering: enabled`) */
    int vol_on;       /* tiering on for this volume */
    int mover;        /* this build can move extents (tier run) */
    int supported;    /* always 1: every layout tiers (thin: its data
                       * extents); kept for `tier status --json` */
    uint32_t interval_ms, fast_free_pct;
    uint64_t rate; /* bytes/s, 0 unlimited */
    uint64_t extent_size;
    uint64_t fast_extents, fast_free; /* the pool's fast tier */
    uint32_t copies;
    uint32_t hist_rows; /* history rows (oldest first), one per decay */
    uint64_t units;     /* heat units (data extents) per history row */
    /* a pass over this volume under way (tier run --wait, or the
     * background pass): bytes moved of planned, an extent per move */
    int pass_running;
    uint64_t pass_done, pass_total;
};
/* The volume's extents (copies per logical extent, leg-minor order) in
 * *ext, and the heat history: hist_rows rows of `units` values (reads +
 * writes before each decay) in *hist.  Both malloc'd; free(). */
int vd_tier_get(vd_pool *pool, const char *vol, struct vd_tier_info *info,
                struct vd_tier_ext **ext, size_t *next, uint32_t **hist);
/* One planned move: promote (to a faster tier) or demote. */
struct vd_tier_move {
    uint32_t vol, leg;
    uint64_t le;
    uint32_t from, to; /* device indexes */
    uint64_t heat;
    int promote;
};
/* The moves one pass over vol would make now (nothing moved). */
int vd_tier_plan_vol(vd_pool *pool, const char *vol, struct vd_tier_move **mv,
                     size_t *n);
/* One pass over vol now: plan, and move with the extent mover (pool/
 * move.c).  wait: move here, one extent after the other, *moved the
 * extents moved; else the pool's background thread starts the moves,
 * *moved the extents planned. */
int vd_tier_run(vd_pool *pool, const char *vol, int wait, size_t *moved);
/* vd_tier_run with wait, calling cb(arg, done, total) (bytes: an extent
 * per planned move; a move found stale counts as done) before each move,
 * about every 200 ms while one copies, and once at the end with done ==
 * total; on the calling thread.  cb NULL: vd_tier_run. */
typedef void (*vd_tier_progress_fn)(void *arg, uint64_t done, uint64_t total);
int vd_tier_run_wait(vd_pool *pool, const char *vol, vd_tier_progress_fn cb,
                     void *arg, size_t *moved);
/* Tiering on (1) or off (0) for vol, kept in the metadata. */
int vd_vol_set_tiering(vd_pool *pool, const char *vol, int on);
/* Take the device tiers and the `tiering:` section of conf (the pool's
 * definition) into the pool, committing what differs from the metadata. */
int vd_tier_configure(vd_pool *pool, const struct vd_conf_pool *conf);

/* ---- devices before they join a pool (pool/probe.c) -------------------
 *
 * Used before a device is given to a pool (`vdlvm pool create`, later
 * "add a device"), so that a file system, partition table, RAID or LVM
 * member, or any non-zero data is never overwritten silently.  Reads only;
 * thread-safe; may be called from any thread but waits on the device (and
 * on the network for a remote one). */
/* Bytes at the start of a device that must be zero (or a vdlvm header). */
#define VD_PROBE_BYTES (1u << 20)

/* Probe the device c names, read-only.  Local devices: libblkid (file
 * systems, partition tables, RAID and LVM signatures anywhere it looks)
 * and the first VD_PROBE_BYTES.  Remote devices: the first VD_PROBE_BYTES
 * read through the iSCSI driver, then libblkid on that copy.
 * Returns 0 when the device is unused (does not exist yet, all zeroes, or
 * carries a vdlvm header: vd_pool_create judges those), 1 when it holds
 * foreign data (what says what was found, e.g. "an ext4 file system (UUID
 * ..., label 'x')" or "non-zero data at byte 4096 of the first 1MiB"), or
 * a negative errno when it could not be read (what says why). */
int vd_dev_probe_foreign(const struct vd_conf_dev *c, char *what, size_t len);

/* `vdlvm pool remove`: zero the vdlvm header and metadata area of the
 * device c names (its first data_offset bytes, from its header), so that
 * no pool claims it and vd_dev_probe_foreign finds it unused.  The data
 * area is left as it is.  Refused (-EBUSY) while another process holds a
 * local device; -ENOENT when the device is gone, -ENODATA when it carries
 * no vdlvm header (nothing written).  msg says why on failure. */
int vd_dev_wipe_header(const struct vd_conf_dev *c, char *msg, size_t len);

#ifdef __cplusplus
}
#endif
#endif
