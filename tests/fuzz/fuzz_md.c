/* vdlvm fuzzing: what vd_pool_open reads from a device (docs/fuzz.md).
 *
 * The input overwrites part of the fuzzing pool's devices (as another host
 * writing the shared disk would), then the real vd_pool_open runs; when it
 * opens, every volume is opened and read, GET LBA STATUS and `status` run,
 * a volume is created and one extended (metadata commits on the state
 * read), and the pool is closed.  The devices are restored before the next input.
 *
 * Input: byte 0 mode, byte 1 flags, then data.
 *   mode 0  device header: data over the first 4 KiB of device (flags & 3) % 3;
 *           flags & 0x10: recompute the header crc.
 *   mode 1  metadata records: data is cut into records (64-byte header,
 *           then payload_len bytes, clamped to the data left), each at the
 *           next 4 KiB boundary of half (flags >> 2) & 1; on device
 *           (flags & 3) % 3, or on every device when flags & 0x40.
 *           flags & 0x10: fix magic, major, hdr_len, pool uuid, payload_len
 *           (clamped); flags & 0x20: fix the record crc.
 *   mode 2  op list: data is the payload of a record with a valid header
 *           and crc, written to every metadata copy so that the copies
 *           agree and the ops are replayed: a checkpoint (flags & 1 == 0)
 *           into the half not holding the current chain with seq + 1, or a
 *           delta appended to the current chain.  nops: the ops found
 *           walking the op headers, plus data[0] % 4 when flags & 2.
 *           flags & 4: when the first op is a VD_OP_POOL, every device
 *           header takes its extent_size (crc fixed), so that headers and
 *           metadata can agree on any extent size.
 *   mode 3  raw: flags & 0x10: data over the mirror's bitmap header (leg
 *           flags & 1; crc fixed when flags & 0x20); else le32 offset then
 *           bytes written at that offset of device (flags & 3) % 3.
 * flags & 0x80: open with VD_OPEN_PARTIAL.
 *
 * FZ_WRITE_SEEDS=DIR at start-up writes seed inputs made from the pool the
 * library created (the corpus committed in corpus/md/). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../admin/vdadmin.h"
#include "../../pool/pool_int.h"
#include "fuzz_common.h"

#define HALF (VD_MD_SIZE / 2)

static const struct vd_conf_pool *g_conf;
static uint8_t g_uuid[16];
static uint64_t g_seq;   /* newest chain's seq (snapshot) */
static int g_half;       /* half holding it */
static size_t g_end;     /* end of that chain */
static uint64_t g_bm[2]; /* device offset of the mirror legs' bitmap header */
static int g_bm_dev[2];  /* device index of each leg */

static void scan_snapshot(void)
{
    uint8_t *md = malloc(VD_MD_SIZE);
    struct vd_dev_hdr h;
    uint64_t ck;
    size_t end;

    fz_dev_read(0, &h, sizeof(h), 0);
    memcpy(g_uuid, h.pool_uuid, 16);
    fz_dev_read(0, md, VD_MD_SIZE, VD_MD_OFFSET);
    for (int i = 0; i < 2; i++) {
        uint64_t s = vd_md_scan_half(g_uuid, md + i * HALF, HALF, &ck, &end);
        if (s > g_seq) {
            g_seq = s;
            g_half = i;
            g_end = end;
        }
    }
    free(md);
}

static void find_bitmaps(void)
{
    vd_pool *p;
    struct vd_run *runs;
    size_t n;

    if (vd_pool_open(g_conf, &p) < 0)
        abort();
    /* The bitmap extent is logical extent 0 of each leg: not listed by
     * vd_vol_get_runs, so take the mapping from the pool's state. */
    for (uint32_t i = 0; i < p->nvols; i++) {
        struct vd_vol *v = p->vols[i];
        if (strcmp(v->name, "mir"))
            continue;
        for (uint32_t leg = 0; leg < 2; leg++) {
            struct vd_pe *e = &v->map[leg];
            struct vd_dev *d = &p->devs[e->dev];
            g_bm_dev[leg] = (int)e->dev;
            g_bm[leg] = d->data_offset + (e->pe + 1) * p->extent_size - 4096;
        }
    }
    if (vd_vol_get_runs(p, "mir", &runs, &n) == 0)
        free(runs);
    vd_pool_close(p);
    fz_restore();
}

static void put_seed(const char *dir, const char *name, int mode, int flags,
                     const void *data, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f)
        return;
    fputc(mode, f);
    fputc(flags, f);
    fwrite(data, 1, len, f);
    fclose(f);
}

static void write_seeds(const char *dir)
{
    uint8_t *buf = malloc(VD_MD_SIZE);
    struct vd_opbuf b = { 0 };
    vd_pool *p;

    /* headers, as written */
    for (int i = 0; i < FZ_NDEVS; i++) {
        char name[32];
        fz_dev_read(i, buf, 4096, 0);
        snprintf(name, sizeof(name), "hdr-d%d", i);
        put_seed(dir, name, 0, i | 0x10, buf, 4096);
    }
    /* the newest chain of d0, records as written (crc fixed or not) */
    fz_dev_read(0, buf, g_end, VD_MD_OFFSET + g_half * HALF);
    {
        /* records back to back, without the padding */
        uint8_t *out = malloc(g_end);
        size_t pos = 0, o = 0;
        while (pos < g_end) {
            struct vd_md_rec *r = (void *)(buf + pos);
            memcpy(out + o, buf + pos, 64 + r->payload_len);
            o += 64 + r->payload_len;
            pos += (64 + r->payload_len + 4095) / 4096 * 4096;
        }
        put_seed(dir, "chain-d0", 1, 0 | (g_half << 2) | 0x40, out, o);
        put_seed(dir, "chain-d0-fixed", 1, 0 | (g_half << 2) | 0x70, out, o);
        free(out);
    }
    /* the whole state as one op list */
    if (vd_pool_open(g_conf, &p) == 0) {
        if (vd_state_serialize(p, &b) == 0) {
            put_seed(dir, "ops-checkpoint", 2, 0, b.buf, b.len);
            put_seed(dir, "ops-delta-pool-op", 2, 1, b.buf, 96);
        }
        vd_opbuf_free(&b);
        vd_pool_close(p);
    }
    fz_restore();
    /* the mirror's bitmap headers */
    for (int leg = 0; leg < 2; leg++) {
        char name[32];
        fz_dev_read(g_bm_dev[leg], buf, 64, g_bm[leg]);
        snprintf(name, sizeof(name), "bitmap-hdr-leg%d", leg);
        put_seed(dir, name, 3, leg | 0x30, buf, 64);
    }
    free(buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *seeds = getenv("FZ_WRITE_SEEDS");

    g_conf = fz_pool_setup();
    scan_snapshot();
    find_bitmaps();
    if (seeds)
        write_seeds(seeds);
    return 0;
}

static uint32_t count_ops(const uint8_t *d, size_t len)
{
    size_t pos = 0;
    uint32_t n = 0;

    while (len - pos >= sizeof(struct vd_op_hdr)) {
        uint16_t l;
        memcpy(&l, d + pos + 2, 2); /* vd_op_hdr.len */
        if (l < sizeof(struct vd_op_hdr) || l > len - pos)
            break;
        pos += l;
        n++;
    }
    return n;
}

static void put_record(int dev, uint64_t off, const struct vd_md_rec *r,
                       const uint8_t *payload)
{
    fz_dev_write(dev, r, sizeof(*r), off);
    if (r->payload_len)
        fz_dev_write(dev, payload, r->payload_len, off + sizeof(*r));
}

static void fix_crc(struct vd_md_rec *r, const uint8_t *payload)
{
    r->crc = 0;
    r->crc = fz_crc32c(fz_crc32c(0, r, sizeof(*r)), payload, r->payload_len);
}

static void mode_header(int flags, const uint8_t *d, size_t len)
{
    uint8_t h[4096];
    int dev = (flags & 3) % 3;

    fz_dev_read(dev, h, sizeof(h), 0);
    memcpy(h, d, len < sizeof(h) ? len : sizeof(h));
    if (flags & 0x10) {
        uint32_t crc;
        memset(h + 16, 0, 4);
        crc = fz_crc32c(0, h, sizeof(h));
        memcpy(h + 16, &crc, 4);
    }
    fz_dev_write(dev, h, sizeof(h), 0);
}

static void mode_records(int flags, const uint8_t *d, size_t len)
{
    int half = (flags >> 2) & 1;
    size_t pos = 0, at = 0;

    while (len - pos >= sizeof(struct vd_md_rec) && at < HALF) {
        struct vd_md_rec r;
        const uint8_t *payload = d + pos + sizeof(r);
        size_t left;

        memcpy(&r, d + pos, sizeof(r));
        pos += sizeof(r);
        left = len - pos;
        if (flags & 0x10) {
            memcpy(r.magic, VD_MD_MAGIC, 8);
            r.major = VD_FMT_MAJOR;
            r.hdr_len = sizeof(r);
            memcpy(r.pool_uuid, g_uuid, 16);
        }
        if (r.payload_len > left)
            r.payload_len = left;
        if (r.payload_len > HALF - at - sizeof(r))
            r.payload_len = HALF - at - sizeof(r);
        if (flags & 0x20)
            fix_crc(&r, payload);
        for (int dev = 0; dev < FZ_NDEVS; dev++)
            if ((flags & 0x40) || dev == (flags & 3) % 3)
                put_record(dev, VD_MD_OFFSET + half * HALF + at, &r, payload);
        pos += r.payload_len;
        at += (sizeof(r) + r.payload_len + 4095) / 4096 * 4096;
    }
}

static void mode_ops(int flags, const uint8_t *d, size_t len)
{
    struct vd_md_rec r = { 0 };
    uint64_t off;

    if (len > HALF - sizeof(r))
        len = HALF - sizeof(r);
    memcpy(r.magic, VD_MD_MAGIC, 8);
    r.major = VD_FMT_MAJOR;
    r.minor = VD_FMT_MINOR;
    r.hdr_len = sizeof(r);
    r.seq = g_seq + 1;
    r.payload_len = len;
    memcpy(r.pool_uuid, g_uuid, 16);
    r.nops = count_ops(d, len);
    if ((flags & 2) && len)
        r.nops += d[0] % 4;
    if (flags & 1) {
        r.kind = VD_REC_DELTA;
        if (g_end + sizeof(r) + len > HALF)
            return;
        off = VD_MD_OFFSET + g_half * HALF + g_end;
    } else {
        r.kind = VD_REC_CHECKPOINT;
        off = VD_MD_OFFSET + (1 - g_half) * HALF;
    }
    fix_crc(&r, d);
    for (int dev = 0; dev < FZ_NDEVS; dev++)
        put_record(dev, off, &r, d);
    if ((flags & 4) && len >= sizeof(struct vd_op_pool) && d[0] == VD_OP_POOL &&
        d[1] == 0) {
        struct vd_dev_hdr h;
        for (int dev = 0; dev < FZ_NDEVS; dev++) {
            fz_dev_read(dev, &h, sizeof(h), 0);
            memcpy(&h.extent_size, d + 24, 8); /* vd_op_pool.extent_size */
            h.crc = 0;
            h.crc = fz_crc32c(0, &h, sizeof(h));
            fz_dev_write(dev, &h, sizeof(h), 0);
        }
    }
}

static void mode_raw(int flags, const uint8_t *d, size_t len)
{
    if (flags & 0x10) {
        int leg = flags & 1;
        uint8_t h[64] = { 0 };
        fz_dev_read(g_bm_dev[leg], h, sizeof(h), g_bm[leg]);
        memcpy(h, d, len < sizeof(h) ? len : sizeof(h));
        if (flags & 0x20) {
            uint32_t crc;
            memset(h + 16, 0, 4);
            crc = fz_crc32c(0, h, sizeof(h));
            memcpy(h + 16, &crc, 4);
        }
        fz_dev_write(g_bm_dev[leg], h, sizeof(h), g_bm[leg]);
        return;
    }
    if (len < 4)
        return;
    uint32_t off;
    memcpy(&off, d, 4);
    fz_dev_write((flags & 3) % 3, d + 4, len - 4, off % FZ_DEV_SIZE);
}

static void use_pool(vd_pool *p)
{
    int n = vd_pool_vol_count(p);
    char *obuf = NULL, *ebuf = NULL;
    size_t olen, elen;
    FILE *out, *err;
    char *argv_text[] = { "status", "fz", NULL };
    char *argv_json[] = { "status", "fz", "--json", NULL };
    /* Commits on top of the state read: allocation over its extent maps,
     * records appended to (or a checkpoint after) its chains. */
    char *argv_create[] = {
        "vol", "create", "fz/fznew", "--size", "1MiB", NULL
    };
    char *argv_extend[] = {
        "vol", "extend", "fz/lin", "--size", "+1MiB", NULL
    };

    for (int i = 0; i < n; i++) {
        struct vd_vol_info vi;
        struct vd_vol_status st;
        vd_vol *v;
        if (vd_pool_vol_get_info(p, i, &vi) < 0)
            continue;
        vd_vol_get_status(p, vi.name, &st);
        v = vd_vol_open(p, vi.name);
        if (!v)
            continue;
        uint64_t size = vd_vol_size(v), len = 0;
        uint8_t buf[4096];
        int mapped;
        if (size >= sizeof(buf)) {
            vd_vol_pread(v, buf, sizeof(buf), 0);
            vd_vol_pread(v, buf, sizeof(buf), size - sizeof(buf));
            vd_vol_lba_status(v, 0, &len, &mapped);
        }
        vd_vol_close(v);
    }
    out = open_memstream(&obuf, &olen);
    err = open_memstream(&ebuf, &elen);
    if (out && err) {
        vd_admin_exec(p, 2, argv_text, out, err);
        vd_admin_exec(p, 3, argv_json, out, err);
        vd_admin_exec(p, 5, argv_create, out, err);
        vd_admin_exec(p, 5, argv_extend, out, err);
    }
    if (out)
        fclose(out);
    if (err)
        fclose(err);
    free(obuf);
    free(ebuf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vd_pool *p;

    if (size < 2)
        return 0;
    int mode = data[0] & 3, flags = data[1];
    const uint8_t *d = data + 2;
    size_t len = size - 2;

    switch (mode) {
    case 0:
        mode_header(flags, d, len);
        break;
    case 1:
        mode_records(flags, d, len);
        break;
    case 2:
        mode_ops(flags, d, len);
        break;
    case 3:
        mode_raw(flags, d, len);
        break;
    }
    if (vd_pool_open_flags(g_conf, (flags & 0x80) ? VD_OPEN_PARTIAL : 0, &p) ==
        0) {
        use_pool(p);
        vd_pool_close(p);
    }
    fz_restore();
    return 0;
}
