/* vdlvm fuzzing: in-memory devices and the fuzzing pool (fuzz_common.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../admin/vdadmin.h"
#include "../../pool/pool_int.h"
#include "fuzz_common.h"

#define BLK 4096u

struct memdev {
    char path[4096];
    uint8_t *data, *pristine;
    uint8_t *dirty; /* one byte per 4 KiB block: written since snapshot */
    int any_dirty;
    uint64_t size;
    pthread_mutex_t lock; /* data, dirty, any_dirty */
};

struct mem_bdev {
    struct vd_bdev b;
    struct memdev *m;
};

/* Devices by path; set up on the harness thread before any library thread
 * runs, never removed. */
static struct memdev g_devs[FZ_NDEVS];
static int g_ndevs;

static struct memdev *find_dev(const char *path)
{
    for (int i = 0; i < g_ndevs; i++)
        if (!strcmp(g_devs[i].path, path))
            return &g_devs[i];
    return NULL;
}

static void mark(struct memdev *m, uint64_t off, size_t len)
{
    if (!len)
        return;
    for (uint64_t b = off / BLK; b <= (off + len - 1) / BLK; b++)
        m->dirty[b] = 1;
    m->any_dirty = 1;
}

static int mem_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    struct memdev *m = ((struct mem_bdev *)b)->m;

    if (off > m->size || len > m->size - off)
        return -EIO;
    pthread_mutex_lock(&m->lock);
    memcpy(buf, m->data + off, len);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_pwrite(struct vd_bdev *b, const void *buf, size_t len,
                      uint64_t off, unsigned flags)
{
    struct memdev *m = ((struct mem_bdev *)b)->m;

    if (off > m->size || len > m->size - off)
        return -EIO;
    pthread_mutex_lock(&m->lock);
    memcpy(m->data + off, buf, len);
    mark(m, off, len);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_zero(struct vd_bdev *b, uint64_t off, uint64_t len)
{
    struct memdev *m = ((struct mem_bdev *)b)->m;

    if (off > m->size || len > m->size - off)
        return -EIO;
    pthread_mutex_lock(&m->lock);
    memset(m->data + off, 0, len);
    mark(m, off, len);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_flush(struct vd_bdev *b)
{
    return 0;
}

static void mem_close(struct vd_bdev *b)
{
    free(b);
}

static const struct vd_bdev_ops mem_ops = {
    .kind = "file",
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .flush = mem_flush,
    .close = mem_close,
    .zero = mem_zero,
};

int __real_vd_bdev_open(const struct vd_conf_dev *c, int create,
                        uint64_t create_size, struct vd_bdev **out, char *msg,
                        size_t msglen);

/* The library's device open, on memory: a path of the fuzzing pool. */
int __wrap_vd_bdev_open(const struct vd_conf_dev *c, int create,
                        uint64_t create_size, struct vd_bdev **out, char *msg,
                        size_t msglen)
{
    struct memdev *m = c->path ? find_dev(c->path) : NULL;
    struct mem_bdev *mb;

    if (!m) {
        snprintf(msg, msglen, "no such in-memory device");
        return -ENOENT;
    }
    mb = calloc(1, sizeof(*mb));
    if (!mb)
        return -ENOMEM;
    mb->b.ops = &mem_ops;
    mb->b.size = m->size;
    mb->b.block_size = 512;
    mb->m = m;
    *out = &mb->b;
    return 0;
}

void fz_dev_write(int i, const void *buf, size_t len, uint64_t off)
{
    struct memdev *m = &g_devs[i];

    if (off >= m->size)
        return;
    if (len > m->size - off)
        len = m->size - off;
    pthread_mutex_lock(&m->lock);
    memcpy(m->data + off, buf, len);
    mark(m, off, len);
    pthread_mutex_unlock(&m->lock);
}

void fz_dev_read(int i, void *buf, size_t len, uint64_t off)
{
    struct memdev *m = &g_devs[i];

    pthread_mutex_lock(&m->lock);
    memcpy(buf, m->data + off, len);
    pthread_mutex_unlock(&m->lock);
}

int fz_dirty(void)
{
    int d = 0;

    for (int i = 0; i < g_ndevs; i++) {
        pthread_mutex_lock(&g_devs[i].lock);
        d |= g_devs[i].any_dirty;
        pthread_mutex_unlock(&g_devs[i].lock);
    }
    return d;
}

int fz_restore(void)
{
    int d = 0;

    for (int i = 0; i < g_ndevs; i++) {
        struct memdev *m = &g_devs[i];
        pthread_mutex_lock(&m->lock);
        if (m->any_dirty) {
            d = 1;
            for (uint64_t b = 0; b < m->size / BLK; b++)
                if (m->dirty[b]) {
                    memcpy(m->data + b * BLK, m->pristine + b * BLK, BLK);
                    m->dirty[b] = 0;
                }
            m->any_dirty = 0;
        }
        pthread_mutex_unlock(&m->lock);
    }
    return d;
}

void fz_snapshot(void)
{
    for (int i = 0; i < g_ndevs; i++) {
        struct memdev *m = &g_devs[i];
        pthread_mutex_lock(&m->lock);
        memcpy(m->pristine, m->data, m->size);
        memset(m->dirty, 0, m->size / BLK);
        m->any_dirty = 0;
        pthread_mutex_unlock(&m->lock);
    }
}

uint32_t fz_crc32c(uint32_t crc, const void *buf, size_t len)
{
    return vd_crc32c(crc, buf, len);
}

static void quiet(int level, const char *msg)
{
    if (getenv("FZ_VERBOSE"))
        fprintf(stderr, "vdlvm[%d]: %s\n", level, msg);
}

const char *fz_pool_yaml =
    "pool: fz\n"
    "extent_size: 1MiB\n"
    "devices:\n"
    "  - {name: d0, path: %s/d0.img, size: 12MiB, node: n0}\n"
    "  - {name: d1, path: %s/d1.img, size: 12MiB, node: n1}\n"
    "  - {name: d2, path: %s/d2.img, size: 12MiB, node: n2}\n";

static char g_tmpdir[64];

/* The temporary folder goes when the harness exits (the devices are in
 * memory; it holds the lock file, the control socket). */
static void cleanup(void)
{
    char cmd[128];

    if (g_tmpdir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "fuzz: could not remove %s\n", g_tmpdir);
    }
}

static void die(const char *what, int r)
{
    fprintf(stderr, "fuzz setup: %s: %s\n", what, strerror(-r));
    abort();
}

const struct vd_conf_pool *fz_pool_setup(void)
{
    static struct vd_conf_pool *conf;
    char tmpl[] = "/tmp/vdlvm-fuzz.XXXXXX", sub[4200], yaml[20000];
    char err[1024];
    struct vd_vol_opts o;
    vd_pool *p;
    int r;

    if (conf)
        return conf;
    if (!mkdtemp(tmpl))
        die("mkdtemp", -errno);
    snprintf(g_tmpdir, sizeof(g_tmpdir), "%s", tmpl);
    atexit(cleanup);
    setenv("VDLVM_RUNDIR", tmpl, 1);
    snprintf(sub, sizeof(sub), "%s/state", tmpl);
    setenv("VDLVM_STATEDIR", sub, 1);
    snprintf(sub, sizeof(sub), "%s/conf", tmpl);
    setenv("VDLVM_CONFDIR", sub, 1);
    vd_admin_log_init(quiet);
    snprintf(yaml, sizeof(yaml), fz_pool_yaml, tmpl, tmpl, tmpl);
    if ((r = vd_conf_parse("fz.yaml", yaml, strlen(yaml), &conf, err,
                           sizeof(err))) < 0) {
        fprintf(stderr, "%s\n", err);
        die("vd_conf_parse", r);
    }
    for (size_t i = 0; i < conf->ndevs; i++) {
        struct memdev *m = &g_devs[g_ndevs++];
        snprintf(m->path, sizeof(m->path), "%s", conf->devs[i].path);
        m->size = FZ_DEV_SIZE;
        m->data = calloc(1, m->size);
        m->pristine = calloc(1, m->size);
        m->dirty = calloc(1, m->size / BLK);
        pthread_mutex_init(&m->lock, NULL);
        if (!m->data || !m->pristine || !m->dirty)
            die("calloc", -ENOMEM);
    }
    if ((r = vd_pool_create(conf, 0)) < 0)
        die("vd_pool_create", r);
    if ((r = vd_pool_open(conf, &p)) < 0)
        die("vd_pool_open", r);
    vd_vol_opts_init(&o);
    if ((r = vd_vol_create(p, "lin", 2 << 20, &o)) < 0)
        die("vd_vol_create lin", r);
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    if ((r = vd_vol_create(p, "mir", 2 << 20, &o)) < 0)
        die("vd_vol_create mir", r);
    vd_pool_close(p);
    /* Once more, so that the snapshot is what an open leaves (a mirror's
     * bitmap header is written at its first open). */
    if ((r = vd_pool_open(conf, &p)) < 0)
        die("vd_pool_open", r);
    vd_pool_close(p);
    fz_snapshot();
    return conf;
}

/* Pool and device uuids are fixed (a counter), so that the committed seeds,
 * which carry the pool uuid, match the pool every harness creates. */
void __wrap_vd_uuid_gen(uint8_t uuid[16])
{
    static uint8_t n; /* harness thread only (pool creation) */

    memset(uuid, 0x5a, 16);
    uuid[15] = ++n;
    uuid[6] = 0x40 | (uuid[6] & 0x0f); /* version 4 */
    uuid[8] = 0x80 | (uuid[8] & 0x3f);
}
