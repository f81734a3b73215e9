/* vdlvm: foreign-data probe (see probe.h). */
#include <blkid/blkid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool_int.h"
#include "vdpool.h"

/* What libblkid found on pr, into what.  1 found, 0 nothing, <0 error. */
static int blkid_what(blkid_probe pr, char *what, size_t len)
{
    const char *type = NULL, *usage = NULL, *label = NULL, *uuid = NULL;
    const char *pttype = NULL;
    int r;

    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(
        pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE | BLKID_SUBLKS_LABEL |
                BLKID_SUBLKS_UUID);
    blkid_probe_enable_partitions(pr, 1);
    blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);
    r = blkid_do_safeprobe(pr);
    if (r == -2) {
        snprintf(what, len,
                 "several signatures (libblkid cannot tell "
                 "which is valid; see 'wipefs')");
        return 1;
    }
    if (r < 0)
        return -EIO;
    if (r == 1)
        return 0;
    blkid_probe_lookup_value(pr, "TYPE", &type, NULL);
    blkid_probe_lookup_value(pr, "USAGE", &usage, NULL);
    blkid_probe_lookup_value(pr, "LABEL", &label, NULL);
    blkid_probe_lookup_value(pr, "UUID", &uuid, NULL);
    blkid_probe_lookup_value(pr, "PTTYPE", &pttype, NULL);
    if (pttype && !type) {
        snprintf(what, len, "a partition table (%s)", pttype);
        return 1;
    }
    const char *kind = "signature";
    if (usage && !strcmp(usage, "filesystem"))
        kind = "file system";
    else if (usage && !strcmp(usage, "raid"))
        kind =
            type && strstr(type, "LVM") ? "LVM physical volume" : "RAID member";
    else if (usage && !strcmp(usage, "crypto"))
        kind = "encrypted volume";
    int n = snprintf(what, len, "a%s %s %s",
                     type && strchr("aeiouAEIOU", type[0]) ? "n" : "",
                     type ? type : "unknown", kind);
    if (n >= 0 && (size_t)n < len && (uuid || label))
        snprintf(what + n, len - n, " (%s%s%s%s%s)", uuid ? "UUID " : "",
                 uuid ? uuid : "", uuid && label ? ", " : "",
                 label ? "label " : "", label ? label : "");
    return 1;
}

/* The first len bytes of buf: 0 all zero or a vdlvm device, 1 foreign. */
static int head_what(const unsigned char *buf, size_t n, char *what, size_t len)
{
    if (n >= 8 && !memcmp(buf, VD_DEV_MAGIC, 8))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (buf[i]) {
            char sz[32];
            vd_size_format(VD_PROBE_BYTES, sz, sizeof(sz));
            snprintf(what, len,
                     "non-zero data (at byte %zu of the first %s; "
                     "no signature libblkid knows)",
                     i, sz);
            return 1;
        }
    return 0;
}

static int probe_local(const char *path, char *what, size_t len)
{
    unsigned char *buf = NULL;
    struct stat st;
    blkid_probe pr = NULL;
    ssize_t n;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0; /* created by pool create */
        r = -errno;
        snprintf(what, len, "open %s: %s", path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        close(fd); /* not a device: pool create says so */
        return 0;
    }
    /* A vdlvm device is judged by pool create (membership, --force). */
    buf = malloc(VD_PROBE_BYTES);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    n = pread(fd, buf, VD_PROBE_BYTES, 0);
    if (n < 0) {
        r = -errno;
        snprintf(what, len, "read %s: %s", path, strerror(-r));
        goto out;
    }
    if (n >= 8 && !memcmp(buf, VD_DEV_MAGIC, 8)) {
        r = 0;
        goto out;
    }
    pr = blkid_new_probe();
    if (!pr || blkid_probe_set_device(pr, fd, 0, 0) < 0) {
        r = -ENOMEM;
        snprintf(what, len, "libblkid cannot probe %s", path);
        goto out;
    }
    r = blkid_what(pr, what, len);
    if (r < 0)
        snprintf(what, len, "libblkid cannot probe %s", path);
    if (r == 0)
        r = head_what(buf, (size_t)n, what, len);
out:
    if (pr)
        blkid_free_probe(pr);
    free(buf);
    close(fd);
    return r;
}

static int probe_remote(const struct vd_conf_dev *c, char *what, size_t len)
{
    struct vd_bdev *b = NULL;
    unsigned char *buf = NULL;
    blkid_probe pr = NULL;
    char msg[256] = "";
    uint64_t n;
    int fd = -1, r;

    r = vd_bdev_open(c, 0, 0, &b, msg, sizeof(msg)); /* iscsi or rbd */
    if (r < 0) {
        snprintf(what, len, "%s", msg[0] ? msg : strerror(-r));
        return r;
    }
    n = b->size < VD_PROBE_BYTES ? b->size : VD_PROBE_BYTES;
    if (b->block_size)
        n -= n % b->block_size;
    buf = calloc(1, VD_PROBE_BYTES);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    if (n && (r = b->ops->pread(b, buf, n, 0)) < 0) {
        snprintf(what, len, "reading its first %llu bytes: %s",
                 (unsigned long long)n, strerror(-r));
        goto out;
    }
    if (n >= 8 && !memcmp(buf, VD_DEV_MAGIC, 8)) {
        r = 0;
        goto out;
    }
    /* libblkid on a copy of the first MiB (signatures at the end of the
     * device, such as a GPT backup, are not seen; the zero check covers
     * the start). */
    fd = memfd_create("vdlvm-probe", MFD_CLOEXEC);
    if (fd >= 0 && pwrite(fd, buf, n, 0) == (ssize_t)n &&
        (pr = blkid_new_probe()) && blkid_probe_set_device(pr, fd, 0, n) == 0)
        r = blkid_what(pr, what, len);
    else
        r = 0;
    if (r <= 0)
        r = head_what(buf, n, what, len);
out:
    if (pr)
        blkid_free_probe(pr);
    if (fd >= 0)
        close(fd);
    free(buf);
    b->ops->close(b);
    return r;
}

int vd_dev_probe_foreign(const struct vd_conf_dev *c, char *what, size_t len)
{
    if (len)
        what[0] = 0;
    if (c->iscsi_url || c->rbd_image)
        return probe_remote(c, what, len);
    if (c->path)
        return probe_local(c->path, what, len);
    return 0;
}

int vd_dev_wipe_header(const struct vd_conf_dev *c, char *msg, size_t len)
{
    struct vd_bdev *b = NULL;
    struct vd_dev_hdr *h = NULL;
    void *zero = NULL;
    uint64_t end, off;
    int r;

    if (len)
        msg[0] = 0;
    if (c->path && access(c->path, F_OK) < 0) {
        snprintf(msg, len, "%s does not exist", c->path);
        return -ENOENT;
    }
    r = vd_bdev_open(c, 0, 0, &b, msg, len);
    if (r < 0)
        return r;
    h = aligned_alloc(VD_BLOCK, VD_HDR_SIZE);
    zero = aligned_alloc(VD_BLOCK, VD_BLOCK);
    if (!h || !zero) {
        r = -ENOMEM;
        goto out;
    }
    memset(zero, 0, VD_BLOCK);
    if ((r = b->ops->pread(b, h, VD_HDR_SIZE, 0)) < 0) {
        snprintf(msg, len, "reading its header: %s", strerror(-r));
        goto out;
    }
    if (memcmp(h->magic, VD_DEV_MAGIC, 8)) {
        snprintf(msg, len, "no vdlvm header");
        r = -ENODATA;
        goto out;
    }
    /* data_offset from the header, within sane bounds: the header and
     * metadata area; never more than the device. */
    end = h->data_offset;
    if (end < VD_MD_OFFSET + VD_MD_SIZE || end > (1ull << 30))
        end = VD_MD_OFFSET + VD_MD_SIZE;
    if (end > b->size)
        end = b->size - b->size % VD_BLOCK;
    /* The magic last: an interrupted wipe leaves a device that is still
     * recognisably vdlvm's (and is wiped again). */
    for (off = VD_BLOCK; off < end; off += VD_BLOCK)
        if ((r = b->ops->pwrite(b, zero, VD_BLOCK, off, 0)) < 0)
            break;
    if (r == 0)
        r = b->ops->flush(b);
    if (r == 0)
        r = b->ops->pwrite(b, zero, VD_BLOCK, 0, VD_IO_FUA);
    if (r == 0)
        r = b->ops->flush(b);
    if (r < 0)
        snprintf(msg, len, "zeroing its header and metadata: %s", strerror(-r));
out:
    free(h);
    free(zero);
    if (b)
        b->ops->close(b);
    return r;
}
