/* vdlvm: the contract between the pool core and a volume layout.
 *
 * A layout (linear, mirror, later thin, snapshot, tiered) says how a
 * volume's bytes map to physical extents.  It is one source file (or one
 * folder) that includes this header and the public headers only, and fills
 * one `struct vd_layout_ops` with designated initialisers at its bottom.
 * The registry (pool/layout.c) lists every layout once; the pool core
 * looks a volume's layout up there (vd_layout_get) when the volume enters
 * the in-memory state and from then on calls it through v->lops only: the
 * layout id is compared nowhere else.
 *
 * Like a device-mapper target, a layout sees the volume's mapping (logical
 * extent -> physical extent per leg) and the devices, and asks the core
 * for the services declared below: extent allocation (planning, no state
 * change), locating a byte of a leg, device I/O and flush, metadata
 * commits (with its own records), the admin lock, the pool's background
 * thread, logging.  It changes pool state only through metadata ops
 * committed with vd_md_commit, so the state on disk and in memory never
 * drift apart.
 *
 * Threads and locks (the rules every layout keeps; details in pool/vol.c,
 * pool/md.c, pool/dev.c and the layout's own header comment):
 *   - plan, plan_extend, check_extend, init, fini, ctr, dtr, grow,
 *     md_apply, md_serialize, status, quiesce: admin thread, pool
 *     admin_lock held;
 *     check: admin thread, before the admin lock (reads only constants).
 *   - pread, pwrite, flush, discard, lba_status: any I/O thread; the core
 *     holds the volume's write_lock shared around pwrite (exclusive around
 *     compare-and-write's read and write); the layout takes map_lock
 *     shared itself for as long as it uses the mapping, never twice in one
 *     thread (writer-preferring rwlocks).  VD_IO_NOWAIT calls never wait:
 *     try-locks only, -EAGAIN otherwise.
 *   - tick: the pool's background thread, no lock held, with a reference
 *     on the volume (it is not removed meanwhile); it may take the admin
 *     lock and do device I/O.
 *   - admin_lock is never taken with a volume's map_lock held.
 */
#ifndef VD_LAYOUT_H
#define VD_LAYOUT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vdpool.h"

#ifdef __cplusplus
#define _Static_assert static_assert
extern "C" {
#endif

#define VD_NO_DEV   0xffffffffu
#define VD_MAX_DEVS 256
/* A layout keeps at most this many extents per leg before its data (the
 * mirror's bitmap extent): vd_vol_size_max leaves room for them. */
#define VD_LAYOUT_MAX_META_LE 1u

/* ---- metadata ops a layout builds or reads (on disk, little-endian) ---- */
/* Every op starts with this header; len covers header and body.  Type
 * numbers are unique over the whole format: 1-6 belong to the core, from
 * VD_OP_LAYOUT_FIRST on to layouts (their records start with struct
 * vd_op_lhdr, naming the volume; the core hands them to that volume's
 * layout's md_apply).  Numbers taken: 7, 8 (mirror: leg state, resync
 * progress; replica/mirror.c), 9 (the core: VD_OP_STACK), 10 (thin:
 * reserved), 11, 12 (the core: key slots; pool/crypt.h), 13 (qos: VD_OP_QOS,
 * pool/qos.c; handled by the core, not the layouts), 14-19 (thin
 * snapshots: pool/snap.c), 20-23 and 26 (the core: the extent mover,
 * pool/move.c), 24 (tiering: VD_OP_TIER, pool/tier.h), 27-28 (the core:
 * a device leaving, a device's flags; pool/pool.c). */
enum {
    VD_OP_POOL = 1,       /* struct vd_op_pool (pool_int.h) */
    VD_OP_DEV_ADD = 2,    /* struct vd_op_dev (pool_int.h) */
    VD_OP_VOL_CREATE = 3, /* struct vd_op_vol */
    VD_OP_VOL_REMOVE = 4, /* struct vd_op_vol (id only) */
    VD_OP_VOL_RESIZE = 5, /* struct vd_op_vol (id, size, le_count) */
    VD_OP_MAP = 6,        /* struct vd_op_map; dev VD_NO_DEV = unmap */
    VD_OP_LAYOUT_FIRST = 7,
    /* struct vd_op_stack: stack an upper layout (thin) on the volume's
     * layout.  Numbered among the layouts' records on purpose: a reader
     * older than format 1.2 hands it to the lower layout, which does not
     * know it, and refuses the pool ("written by a newer vdlvm?") instead
     * of opening a thin volume as a thick one. */
    VD_OP_STACK = 9,
    /* Encryption key slots (pool/crypt.h): core records in the layouts'
     * range, so that an older reader refuses an encrypted pool. */
    VD_OP_KEY_SLOT = 11,   /* struct vd_op_key_slot */
    VD_OP_KEY_REMOVE = 12, /* struct vd_op_key_remove */
    VD_OP_QOS = 13, /* struct vd_op_qos (pool/qos.c): a volume's limits */
    /* The extent mover (pool/move.c): handled by the core. */
    VD_OP_MOVE_BEGIN = 20,    /* struct vd_op_move */
    VD_OP_MOVE_PROGRESS = 21, /* struct vd_op_move_progress */
    VD_OP_MOVE_END = 22,      /* struct vd_op_move: the mapping switch */
    VD_OP_MOVE_ABORT = 23,    /* struct vd_op_hdr only */
    /* thin snapshots, struct vd_op_snap (pool/snap.c has the design) */
    VD_OP_SNAP_CREATE = 14, /* id, name, gen (the head's), ngen, size */
    VD_OP_SNAP_REMOVE = 15, /* id */
    VD_OP_SNAP_REVERT = 16, /* id, ngen: the head's new generation */
    VD_OP_SNAP_NODE = 17,   /* checkpoint: generation gen, parent ngen */
    VD_OP_SNAP_MEMBER = 18, /* checkpoint: snapshot id; id 0: the head
                               (gen, ngen = the highest generation) */
    /* struct vd_op_snap_clone: a writable member (a clone) in generation
     * ngen, child of generation gen (the source's); src 0: the head, else
     * the member src: a writable source moves to generation ngen + 1 */
    VD_OP_SNAP_CLONE = 19,
    VD_OP_SNAP_LAST = 19,
    /* struct vd_op_tier (pool/tier.h): device tiers, the pool's tiering
     * settings, a volume's tiering off; handled by pool/tier.c. */
    VD_OP_TIER = 24,
    /* struct vd_op_move_job (pool/move.c): the pending evacuation or
     * rebalance, so that it goes on after a restart between two moves. */
    VD_OP_MOVE_JOB = 26,
    /* struct vd_op_dev_set (pool/pool.c, pool apply): a device leaves the
     * pool (it holds nothing); a device's flags change (the metadata copy
     * moving to it before another device leaves). */
    VD_OP_DEV_REMOVE = 27,
    VD_OP_DEV_FLAGS = 28,
    /* struct vd_op_crypt_job (pool/crypt.h): the pending `vol encrypt`. */
    VD_OP_CRYPT_JOB = 30,
};
struct vd_op_hdr {
    uint16_t type; /* 0 */
    uint16_t len;  /* 2 */
    uint32_t pad0; /* 4 */
};
/* The start of every layout record. */
struct vd_op_lhdr {
    struct vd_op_hdr h; /* 0 */
    uint32_t vol;       /* 8: volume id */
};
struct vd_op_vol {
    struct vd_op_hdr h; /*  0 */
    uint32_t id;        /*  8 */
    uint32_t layout;    /* 12: the layout's id (registry) */
    uint32_t copies;    /* 16 */
    uint32_t flags;     /* 20: the layout's (mirror: log2 region size) */
    uint64_t size;      /* 24 */
    uint64_t le_count;  /* 32 */
    char name[64];      /* 40 */
};
_Static_assert(sizeof(struct vd_op_vol) == 104, "op vol");
struct vd_op_map {
    struct vd_op_hdr h; /*  0 */
    uint32_t vol;       /*  8 */
    uint32_t leg;       /* 12 */
    uint64_t le_start;  /* 16 */
    uint64_t count;     /* 24 */
    uint32_t dev;       /* 32 */
    uint32_t pad0;      /* 36 */
    uint64_t pe_start;  /* 40 */
};
_Static_assert(sizeof(struct vd_op_map) == 48, "op map");
/* Stacking: volume h.vol gets the upper layout `layout` (registry id) on
 * top of its own; flags are the upper layout's (thin: log2 chunk size).
 * Written in the same commit as the VD_OP_VOL_CREATE, and after it in a
 * checkpoint. */
struct vd_op_stack {
    struct vd_op_lhdr h; /*  0 */
    uint32_t layout;     /* 12 */
    uint32_t flags;      /* 16 */
    uint32_t pad0;       /* 20 */
};
_Static_assert(sizeof(struct vd_op_stack) == 24, "op stack");
/* The extent mover (pool/move.c): leg `leg` of logical extent le of volume
 * vol moves from PE spe of device src to PE dpe of device dst; rate in
 * bytes/s (0: unlimited); evac: the device being evacuated, or
 * VD_NO_DEV.  END carries the same fields (the switch). */
struct vd_op_move {
    struct vd_op_hdr h; /*  0 */
    uint32_t vol;       /*  8 */
    uint32_t leg;       /* 12 */
    uint64_t le;        /* 16 */
    uint32_t src;       /* 24 */
    uint32_t dst;       /* 28 */
    uint64_t spe;       /* 32 */
    uint64_t dpe;       /* 40 */
    uint64_t rate;      /* 48 */
    uint32_t evac;      /* 56 */
    uint32_t pad0;      /* 60 */
};
_Static_assert(sizeof(struct vd_op_move) == 64, "op move");
/* Bytes [0, done) of the moving extent are durable on dst. */
struct vd_op_move_progress {
    struct vd_op_hdr h; /*  0 */
    uint64_t done;      /*  8 */
    uint64_t rate;      /* 16 */
    uint32_t evac;      /* 24 */
    uint32_t pad0;      /* 28 */
};
_Static_assert(sizeof(struct vd_op_move_progress) == 32, "op move progress");
/* The mover's job: kind VD_MOVE_JOB_NONE (none left), _EVACUATE (device
 * dev, onto the devices set in the bitmap to, all clear: any) or
 * _REBALANCE; rate in bytes/s for each move (0: unlimited). */
enum { VD_MOVE_JOB_NONE, VD_MOVE_JOB_EVACUATE, VD_MOVE_JOB_REBALANCE };
struct vd_op_move_job {
    struct vd_op_hdr h;          /*  0 */
    uint32_t kind;               /*  8 */
    uint32_t dev;                /* 12 */
    uint64_t rate;               /* 16 */
    uint8_t to[VD_MAX_DEVS / 8]; /* 24 */
};
_Static_assert(sizeof(struct vd_op_move_job) == 56, "op move job");
/* VD_OP_DEV_REMOVE: device idx leaves (flags unused); VD_OP_DEV_FLAGS: its
 * VD_DEVF_* become flags. */
struct vd_op_dev_set {
    struct vd_op_hdr h; /*  0 */
    uint32_t idx;       /*  8 */
    uint32_t flags;     /* 12 */
};
_Static_assert(sizeof(struct vd_op_dev_set) == 16, "op dev set");

/* Thin snapshot records (VD_OP_SNAP_*): which fields count depends on the
 * type (see the enum). */
struct vd_op_snap {
    struct vd_op_lhdr h; /*  0 */
    uint32_t id;         /* 12: snapshot id, unique in the volume, from 1 */
    uint32_t gen;        /* 16: generation */
    uint32_t ngen;       /* 20: new / parent / highest generation */
    uint64_t size;       /* 24: snapshot bytes (the volume's then) */
    int64_t ctime;       /* 32: creation, seconds since the epoch */
    char name[64];       /* 40: NUL-terminated */
};
_Static_assert(sizeof(struct vd_op_snap) == 104, "op snap");
/* VD_OP_SNAP_CLONE, and VD_OP_SNAP_MEMBER of a clone in a checkpoint
 * (h.h.len covers src and flags; VD_SNAPF_CLONE set). */
#define VD_SNAPF_CLONE 1u
struct vd_op_snap_clone {
    struct vd_op_snap s; /*   0: name is the clone's (a volume name) */
    uint32_t src;        /* 104: source member id, 0 the head */
    uint32_t flags;      /* 108: VD_SNAPF_* */
};
_Static_assert(sizeof(struct vd_op_snap_clone) == 112, "op snap clone");

/* ---- in-memory state -------------------------------------------------- */
struct vd_bdev;
struct vd_layout_ops;

struct vd_pe {
    uint32_t dev; /* VD_NO_DEV = unmapped */
    uint32_t pad;
    uint64_t pe;
};

struct vd_dev {
    uint32_t idx;
    char name[VD_NAME_MAX + 1];
    char node[VD_NAME_MAX + 1];
    char *path;  /* from the pool definition, or NULL */
    bool remote; /* not a local file or block device (from the
                    definition at open; constant) */
    uint8_t uuid[16];
    uint32_t flags; /* VD_DEVF_* */
    uint64_t size, pe_count, data_offset;
    uint8_t *used; /* bitmap of allocated PEs */
    uint64_t used_count;
    struct vd_bdev *bdev; /* NULL when missing/failed */
    enum vd_dev_state state;
    char state_msg[256];
    int touched; /* unused (kept for compatibility); see
                                the flush generations below */
    /* Flush generations (protocol in dev.c).  wgen: atomic, bumped after
     * every completed non-FUA write or zero.  The rest is owned by
     * vd_dev_flush under flush_lock. */
    uint64_t wgen;
    pthread_mutex_t flush_lock;
    pthread_cond_t flush_cond;
    uint64_t flushed_gen;     /* every write up to this generation durable */
    uint64_t flush_start_gen; /* wgen when the running flush started */
    uint64_t flush_count;     /* flushes completed (success or not) */
    bool flushing;            /* a flush of the bdev is in progress */
    uint32_t flush_waiters;   /* callers waiting for a running flush */
    /* Read-modify-write of partial blocks (dev.c bounce_io): the block
     * ranges being patched, under rmw_lock; rmw_waiters counts bounced
     * writes waiting for an overlapping one (for tests). */
    pthread_mutex_t rmw_lock;
    pthread_cond_t rmw_cond;
    uint64_t rmw_start[8], rmw_end[8]; /* end 0: free slot */
    uint32_t rmw_waiters;
    bool sync_init; /* the locks above are initialised */
    /* I/O error log rate limit (racy by design: only counts) */
    int64_t log_next_ms;
    uint64_t log_suppressed;
    /* Error counters for `vdlvm stats` (relaxed atomic adds in dev.c;
     * never reset while the pool is open): reads, writes (and zeroing)
     * and flushes of this device that failed. */
    uint64_t n_read_errors, n_write_errors, n_flush_errors;
    /* a device that could not be attached at open is retried from its
     * definition (deep copy) by vd_pool_retry_devices */
    struct vd_conf_dev *conf;
    int64_t retry_next_ms;
    uint32_t retry_delay_ms;
    /* metadata log position of this copy (admin thread only) */
    int md_half;     /* current half, or -1: needs a checkpoint */
    uint64_t md_pos; /* next free offset within the half */
    /* The extent mover (pool/move.c): set (atomic) while a PE of this
     * device is the source of a move, so that writes to it also reach
     * the target; no_alloc: being evacuated, no new extents here (admin
     * lock). */
    struct vd_move *move;
    bool no_alloc;
    /* VD_DEVF_ENCRYPT devices: the pool's data key (pool/crypt.c), set
     * before any data I/O by vd_crypt_pool_open, constant until close;
     * NULL: plaintext. */
    struct vd_crypt *crypt;
    /* VD_CONF_TIER_* (0 slow), from VD_OP_TIER; admin lock (pool/tier.c) */
    uint32_t tier;
};

struct vd_vol {
    vd_pool *pool;
    uint32_t id;
    char name[VD_NAME_MAX + 1];
    uint64_t size;           /* bytes; read atomically by I/O threads */
    uint32_t layout, copies; /* layout: the on-disk id, for info only */
    uint64_t le_count;
    /* map_lock protects map and le_count against extend; I/O holds it
     * shared for the duration of a request.  map_lock and write_lock are
     * writer-preferring: never take either shared twice in one thread. */
    pthread_rwlock_t map_lock;
    struct vd_pe *map; /* le_count * copies, [le * copies + leg] */
    /* write_lock: writes hold it shared, compare-and-write exclusive. */
    pthread_rwlock_t write_lock;
    uint32_t open_count; /* under the pool's admin_lock */
    uint32_t flags;      /* struct vd_op_vol.flags: the layout's */
    uint32_t data_le0;   /* first data extent (lops->meta_extents) */
    /* The layout (constant from creation) and its per-volume state: set
     * by lops->init, freed by lops->fini; what protects it is the
     * layout's business (replica/mirror.c). */
    const struct vd_layout_ops *lops;
    void *priv;
    /* Stacking (VD_OP_STACK; constant from the volume's creation): an
     * upper layout (thin) that serves the volume's bytes, using lops
     * (linear, mirror: the "data space", v->le_count extents, grown on
     * demand) for its own I/O through lops->pread/pwrite/flush.  The core
     * sends I/O, discard, lba_status to upper when set, and calls both for
     * ctr/dtr/grow/status/tick/quiesce/md_apply/md_serialize (lower
     * first, upper second; the reverse for dtr).  lops keeps v->priv;
     * upper_priv is the upper layout's, set by upper->stack, freed by
     * upper->fini.  v->size stays the size the user sees. */
    const struct vd_layout_ops *upper;
    void *upper_priv;
    /* QoS (pool/qos.c): limits (VD_OP_QOS) and the rates tgtd publishes;
     * both under qos.c's leaf lock. */
    struct vd_qos_limits qos;
    struct vd_qos_rates qos_rates;
    /* Tiering (pool/heat.c, pool/tier.c): heat counters, set by vd_vol_ctr
     * before any I/O and freed by vd_vol_dtr (I/O threads only add to
     * them); tier_off 1 = tiering off for this volume (VD_OP_TIER, admin
     * lock). */
    struct vd_heat *heat;
    uint32_t tier_off;
};

struct vd_pool {
    char name[VD_NAME_MAX + 1];
    uint8_t uuid[16];
    uint64_t extent_size;
    uint64_t seq; /* last committed sequence number */
    /* seq of a commit that failed below the write quorum, while it is
     * still p->seq (0: none): a copy holding that number with another
     * state holds our own unacknowledged record, not another host's.
     * Written and read under admin_lock (md.c, vd_pool_retry_devices). */
    uint64_t unacked_seq;
    uint32_t ndevs;
    struct vd_dev *devs; /* by idx */
    uint32_t nvols;
    struct vd_vol **vols;
    int lock_fd;
    bool loading; /* replay in progress */
    /* admin_lock (recursive) serialises every state change and metadata
     * commit, and the admin API.  Never taken while holding a volume's
     * map_lock. */
    pthread_mutex_t admin_lock;
    struct vd_bg *bg; /* the background thread (pool/bg.c), or NULL */
    /* thin volumes' default chunk size (conf chunk_size, 0 = 64 KiB);
     * constant after open */
    uint64_t chunk_size;
    /* mirror reads: VD_READ_LOCAL or VD_READ_SPREAD (conf read_policy);
     * constant after open */
    int read_policy;
    /* allocation thresholds (80/90/95 %) already logged, a bit each;
     * under admin_lock (vd_pool_check_thresholds) */
    uint32_t thr_logged;
    /* tiering settings and pass state (pool/tier.c), or NULL; under
     * admin_lock; freed by vd_state_free */
    struct vd_tier *tier;
    /* the extent mover (pool/move.c), from pool_alloc to pool_free */
    struct vd_move *move;
    /* key slots and data key (pool/crypt.c), or NULL: not encrypted */
    struct vd_crypt *crypt;
};

/* ---- services for layouts ---------------------------------------------- */
/* Bytes holding data in v (thick: mapped data extents of leg 0; stacked:
 * upper->status's allocated).  Admin lock held. */
uint64_t vd_vol_allocated(struct vd_vol *v);
/* Log each allocation threshold (80/90/95 % of the pool's data space
 * allocated) once when crossed (again after it was left).  Admin lock
 * held. */
void vd_pool_check_thresholds(vd_pool *p);
/* Admin lock (recursive): every state change and metadata commit. */
void vd_admin_lock(vd_pool *p);
void vd_admin_unlock(vd_pool *p);
int64_t vd_now_ms(void);
/* crc32c (Castagnoli; 0 to start, the result to continue). */
uint32_t vd_crc32c(uint32_t crc, const void *buf, size_t len);

struct vd_vol *vd_vol_find(const vd_pool *p, const char *name);
struct vd_vol *vd_vol_find_id(const vd_pool *p, uint32_t id);

/* Device I/O (pool/dev.c): thread-safe; 0 or a negative errno, logged
 * with a rate limit.  vd_dev_flush makes every write completed before the
 * call durable. */
int vd_dev_pread(struct vd_dev *d, void *buf, size_t len, uint64_t off);
int vd_dev_pwrite(struct vd_dev *d, const void *buf, size_t len, uint64_t off,
                  unsigned flags);
int vd_dev_flush(struct vd_dev *d);
/* A read straight from the driver: no logging, no bounce buffer; off and
 * len block aligned (probing a device that may be back). */
int vd_dev_pread_raw(struct vd_dev *d, void *buf, size_t len, uint64_t off);
/* VD_IO_NOWAIT I/O: page-cache hits only, nothing logged; -EAGAIN when the
 * device cannot serve it without blocking. */
int vd_dev_io_nowait(struct vd_dev *d, void *buf, size_t len, uint64_t off,
                     bool write, unsigned flags);
/* 1 if an error about d may be logged now (at most one per second). */
int vd_dev_log_ok(struct vd_dev *d);

/* Locate byte `off` of the data of leg `leg` (off counts from the start
 * of the volume's data, after its meta extents): device and byte offset.
 * Caller holds map_lock shared.  NULL if unmapped. */
struct vd_dev *vd_leg_locate(struct vd_vol *v, uint32_t leg, uint64_t off,
                             uint64_t *dev_off);
/* The first meta extent of leg `leg` (the mirror's bitmap); NULL when the
 * layout keeps none or it is unmapped.  Caller holds map_lock shared. */
struct vd_dev *vd_leg_bitmap_locate(struct vd_vol *v, uint32_t leg,
                                    uint64_t *dev_off);

/* Metadata ops (pool/md.c). */
struct vd_opbuf {
    uint8_t *buf;
    size_t len, cap;
    uint32_t nops;
    /* vd_md_commit zeroes every physical extent that a MAP op of the
     * list maps and that is free before the commit (a new extent must not
     * show a removed volume's data, and a new mirror's legs must agree),
     * durably, before the record is written.  keep_data: the new extents
     * already hold the data they must (an extent mover copied it there);
     * do not zero them. */
    bool keep_data;
};
void vd_opbuf_free(struct vd_opbuf *b);
int vd_opbuf_add(struct vd_opbuf *b, const void *op, size_t len);
/* Commit ops durably to the metadata copies, then apply them (layout
 * records through the volume's md_apply).  Admin lock held.  0 only when
 * the record reached the write quorum (pool_int.h vd_md_write_quorum) of
 * the pool's metadata copies; else -EIO (or another negative errno) and
 * the state is unchanged (the sequence number is used up; see md.c). */
int vd_md_commit(vd_pool *p, struct vd_opbuf *ops);

/* Extent allocation (planning: reads the state, changes nothing; the MAP
 * ops go to ops).  vd_extent_plan_on: logical extents [le, le+count) of
 * leg `leg` of volume `vol` on free extents of the allowed devices
 * (NULL: any usable one), each extent to the least used node and there
 * the least used device by percentage (pool/alloc.c), first fit on each
 * device.  vd_extent_plan: the same on any usable device.  -ENOSPC if too
 * few (nothing logged). */
int vd_extent_plan_on(const vd_pool *p, uint32_t vol, uint32_t leg, uint64_t le,
                      uint64_t count, struct vd_opbuf *ops,
                      const bool *allowed);
int vd_extent_plan(const vd_pool *p, uint32_t vol, uint32_t leg, uint64_t le,
                   uint64_t count, struct vd_opbuf *ops);
/* Free extents on the usable devices marked in allowed (NULL: all). */
uint64_t vd_extent_free_count(const vd_pool *p, const bool *allowed);
/* Log "volume 'P/name': needs N extents but the pool has M free; ..." and
 * return -ENOSPC. */
int vd_extent_no_space(const vd_pool *p, const char *name, uint64_t need);

/* The pool's background thread (pool/bg.c): about every 250 ms it retries
 * missing devices, then calls each volume's tick.  vd_bg_sleep waits up to
 * ns (returns early on a kick or a stop; plain sleep without the thread);
 * vd_bg_stopping is true once the pool is closing; vd_bg_kick wakes the
 * thread for an early pass. */
void vd_bg_sleep(vd_pool *p, int64_t ns);
bool vd_bg_stopping(vd_pool *p);
void vd_bg_kick(vd_pool *p);

/* Copy a NUL-terminated name into a fixed on-disk field of n bytes,
 * NUL-padded and always terminated. */
static inline void vd_name_copy(char *dst, size_t n, const char *src)
{
    size_t l = 0;
    while (l + 1 < n && src[l])
        l++;
    for (size_t i = 0; i < n; i++)
        dst[i] = i < l ? src[i] : 0;
}

/* ceil(a / b) without overflow for any a (a + b - 1 wraps near 2^64). */
static inline uint64_t vd_div_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/* Asynchronous I/O (pool/vol.c): one piece of vb ended with result (any
 * thread; the first error wins, -EAGAIN means "redo synchronously"); the
 * last one hands vb to the event loop's thread. */
void vd_vol_bio_piece_end(struct vd_vol_bio *vb, int result);

/* ---- the layout ops table ----------------------------------------------
 * Mandatory: plan, plan_extend, pread, pwrite, flush.  Every other op may
 * be NULL (nothing to do).  Compare-and-write needs nothing of a layout:
 * the core holds write_lock exclusive around its pread and pwrite. */
struct vd_layout_ops {
    const char *name;      /* "linear", "mirror": status and the CLI */
    uint32_t id;           /* on disk (struct vd_op_vol.layout) */
    uint32_t meta_extents; /* extents per leg before the data */
    /* Under an upper layout (v->upper set), pread/pwrite accept offsets up
     * to the data extents, (le_count - data_le0) * extent_size, which may
     * exceed v->size (thin's chunk maps take room).  A lower layout
     * without it is addressed below v->size only: thin then never grows
     * its data space beyond v->size (the last few chunks of a full volume
     * get -ENOSPC). */
    bool io_beyond_size;
    /* vol create: the options the layout takes (VD_LOPT_*, vdpool.h) and
     * its default number of copies (0: 1). */
    unsigned create_opts;
    uint32_t default_copies;
    /* Upper layouts only: the lower layout a volume created with this
     * layout's id gets (vdlvm vol create --layout thin = thin on linear). */
    uint32_t stack_on;

    /* Create: check opts (before the admin lock; logs why and returns
     * -EINVAL or -EFBIG) and fill ov->copies and ov->flags (ov->size,
     * le_count (data + meta_extents), layout and name are filled).  Then,
     * under the admin lock, plan: append the MAP ops of every leg to ops
     * (-ENOSPC logged by the layout). */
    int (*check)(vd_pool *p, const char *name, const struct vd_vol_opts *opts,
                 struct vd_op_vol *ov);
    int (*plan)(vd_pool *p, const char *name, const struct vd_vol_opts *opts,
                const struct vd_op_vol *ov, struct vd_opbuf *ops);
    /* Extend v to new_size bytes (whole extents), le_count extents per
     * leg: check_extend (optional) before the free space check, then the
     * MAP ops of logical extents [v->le_count, le_count) of every leg
     * (-ENOSPC: the core logs it). */
    int (*check_extend)(struct vd_vol *v, uint64_t new_size);
    int (*plan_extend)(struct vd_vol *v, uint64_t le_count,
                       struct vd_opbuf *ops);

    /* The volume enters / leaves the in-memory state (metadata apply, no
     * I/O): validate o (-EINVAL, logged) and set up / free v->priv. */
    int (*init)(struct vd_vol *v, const struct vd_op_vol *o);
    void (*fini)(struct vd_vol *v);
    /* After open or create (devices usable): load runtime state (the
     * mirror reads its bitmap).  dtr undoes it. */
    int (*ctr)(struct vd_vol *v);
    void (*dtr)(struct vd_vol *v);
    /* After an extend was committed. */
    int (*grow)(struct vd_vol *v);

    /* I/O on volume bytes (bounds checked by the layout under map_lock). */
    int (*pread)(struct vd_vol *v, void *buf, size_t len, uint64_t off,
                 unsigned flags);
    int (*pwrite)(struct vd_vol *v, const void *buf, size_t len, uint64_t off,
                  unsigned flags);
    int (*flush)(struct vd_vol *v);
    /* Optional: asynchronous I/O (vd_vol_submit, pool/vol.c).  Called by
     * the core with map_lock held shared (and write_lock for writes) on
     * the event loop's thread; the core keeps them until vb completes, so
     * submit must not take them.  Split vb, start every piece (never
     * waiting) and return 0; each piece's end goes to vd_vol_bio_piece_end
     * (pending: the pieces + 1, the core drops the 1 after submit).
     * -EAGAIN: nothing started.  Without it every request is synchronous. */
    int (*submit)(struct vd_vol *v, struct vd_vol_bio *vb);
    /* Optional (thin): free [off, off+len); without it a discard succeeds
     * and changes nothing.  lba_status: without it, an extent is mapped
     * when leg 0 maps it. */
    int (*discard)(struct vd_vol *v, uint64_t off, uint64_t len);
    int (*lba_status)(struct vd_vol *v, uint64_t off, uint64_t *len,
                      int *mapped);

    /* The layout's own metadata records (type >= VD_OP_LAYOUT_FIRST):
     * apply one (-EINVAL, logged, if it does not fit the state; -ENOENT,
     * not logged, for a type it does not own), and
     * append the ones that rebuild v's layout state to a checkpoint. */
    int (*md_apply)(struct vd_vol *v, const struct vd_op_hdr *op);
    int (*md_serialize)(const struct vd_vol *v, struct vd_opbuf *b);

    /* Status (admin lock held): the core has filled st from the mapping
     * (layout, size, allocated, copies, all copies in sync); the layout
     * corrects and completes it (the mirror: legs in sync, resync). */
    void (*status)(struct vd_vol *v, struct vd_vol_status *st);

    /* Upper layouts only (thin): the VD_OP_STACK record o puts this
     * layout on top of v's (metadata apply, admin lock): validate, set up
     * v->upper_priv (fini frees it).  An upper layout's check and plan
     * run after the lower's, on the same ov and ops (ov->le_count is then
     * the lower's meta extents: the data space starts empty); it appends
     * its VD_OP_STACK to ops.  Its grow runs after an extend (a new size:
     * its plan_extend is not called, the data space is its business). */
    int (*stack)(struct vd_vol *v, const struct vd_op_stack *o);

    /* Background work, on the pool's thread (see above). */
    void (*tick)(struct vd_vol *v);
    /* After the background thread stopped, before the pool closes: make
     * background state durable (the mirror's cleared bits). */
    void (*quiesce)(struct vd_vol *v);
};

/* The registry (pool/layout.c): NULL when id is unknown. */
const struct vd_layout_ops *vd_layout_get(uint32_t id);
/* The layouts a volume created with opts gets: *lower (never stacked) and
 * *upper (NULL, or an upper layout: opts->thin or an upper layout named as
 * opts->layout).  0, or -EINVAL for a combination the registry does not
 * know. */
int vd_layout_resolve(const struct vd_vol_opts *opts,
                      const struct vd_layout_ops **lower,
                      const struct vd_layout_ops **upper);

#ifdef __cplusplus
}
#endif
#endif
