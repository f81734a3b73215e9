/* vdlvm: local device driver (files and block devices).
 * All functions are thread-safe: they use pread/pwrite on a shared fd. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pool_int.h"

int vd_dev_open_path(const char *path, int *fdp, uint64_t *size, int create,
                     uint64_t create_size, char *msg, size_t msglen)
{
    struct stat st;
    int fd;

    fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
    if (fd < 0) {
        snprintf(msg, msglen, "open %s: %s", path, strerror(errno));
        return -errno;
    }
    if (create && ftruncate(fd, create_size) < 0) {
        int e = errno;
        snprintf(msg, msglen, "create %s of %llu bytes: %s", path,
                 (unsigned long long)create_size, strerror(e));
        close(fd);
        unlink(path);
        return -e;
    }
    if (fstat(fd, &st) < 0) {
        int e = errno;
        snprintf(msg, msglen, "stat %s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, size) < 0) {
            int e = errno;
            snprintf(msg, msglen, "size of %s: %s", path, strerror(e));
            close(fd);
            return -e;
        }
    } else if (S_ISREG(st.st_mode)) {
        *size = st.st_size;
    } else {
        snprintf(msg, msglen, "%s is neither a file nor a block device", path);
        close(fd);
        return -EINVAL;
    }
    *fdp = fd;
    return 0;
}

int vd_dev_pread(struct vd_dev *d, void *buf, size_t len, uint64_t off)
{
    char *p = buf;

    while (len) {
        ssize_t n = pread(d->fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            vd_log(VD_LOG_ERR, "device '%s': read of %zu bytes at %llu failed: %s",
                   d->name, len, (unsigned long long)off, strerror(e));
            return -EIO;
        }
        if (n == 0) { /* a file shorter than its header says: reads zeros */
            memset(p, 0, len);
            return 0;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

int vd_dev_pwrite(struct vd_dev *d, const void *buf, size_t len, uint64_t off,
                  unsigned flags)
{
    const char *p = buf;
    int rwf = (flags & VD_IO_FUA) ? RWF_DSYNC : 0;

    while (len) {
        struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
        ssize_t n = pwritev2(d->fd, &iov, 1, off, rwf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : ENOSPC;
            vd_log(VD_LOG_ERR, "device '%s': write of %zu bytes at %llu failed: %s",
                   d->name, len, (unsigned long long)off, strerror(e));
            return -EIO;
        }
        p += n;
        off += n;
        len -= n;
    }
    if (!rwf)
        __atomic_store_n(&d->touched, 1, __ATOMIC_RELEASE);
    return 0;
}

int vd_dev_flush(struct vd_dev *d)
{
    if (!__atomic_exchange_n(&d->touched, 0, __ATOMIC_ACQ_REL))
        return 0;
    if (fdatasync(d->fd) < 0) {
        int e = errno;
        /* Keep it marked: the data is not known to be durable. */
        __atomic_store_n(&d->touched, 1, __ATOMIC_RELEASE);
        vd_log(VD_LOG_ERR, "device '%s': fdatasync failed: %s", d->name,
               strerror(e));
        return -EIO;
    }
    return 0;
}
