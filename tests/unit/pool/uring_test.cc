// Unit tests for pool/uring.c: the file driver's submit op through a real
// file (the library's reaper thread completes the requests here).
#include <gtest/gtest.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern "C" {
#include "config/vdconfig.h"
#include "pool/pool_int.h"
#include "pool/uring.h"
}

namespace
{

struct Waiter {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    int n = 0;
    int last = 1;
};

void Done(struct vd_bio *bio, int r)
{
    auto *w = (Waiter *)bio->priv;
    pthread_mutex_lock(&w->m);
    w->n++;
    w->last = r;
    pthread_cond_broadcast(&w->c);
    pthread_mutex_unlock(&w->m);
}

int WaitN(Waiter *w, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&w->m);
    while (w->n < n && pthread_cond_timedwait(&w->c, &w->m, &ts) == 0)
        ;
    int got = w->n;
    pthread_mutex_unlock(&w->m);
    return got;
}

struct File {
    char path[64] = "/tmp/vd-uring-XXXXXX";
    struct vd_bdev *b = nullptr;
    File()
    {
        int fd = mkstemp(path);
        EXPECT_GE(fd, 0);
        EXPECT_EQ(ftruncate(fd, 1 << 20), 0);
        close(fd);
        struct vd_conf_dev c;
        memset(&c, 0, sizeof(c));
        c.path = path;
        char msg[256];
        EXPECT_EQ(vd_bdev_open(&c, 0, 0, &b, msg, sizeof(msg)), 0) << msg;
    }
    ~File()
    {
        if (b)
            b->ops->close(b);
        unlink(path);
    }
};

TEST(Uring, WriteReadFlush_RoundTrip)
{
    File f;
    ASSERT_TRUE(f.b && f.b->ops->submit);
    Waiter w;
    char wbuf[8192], rbuf[8192];
    memset(wbuf, 0x5a, sizeof(wbuf));
    struct vd_bio wb = {};
    wb.op = VD_BIO_WRITE;
    wb.buf = wbuf;
    wb.len = sizeof(wbuf);
    wb.off = 4096;
    wb.done = Done;
    wb.priv = &w;
    int r = f.b->ops->submit(f.b, &wb);
    if (r == -EAGAIN)
        GTEST_SKIP() << "io_uring unavailable here";
    ASSERT_EQ(r, 0);
    ASSERT_EQ(WaitN(&w, 1), 1);
    EXPECT_EQ(w.last, 0);
    struct vd_bio fl = {};
    fl.op = VD_BIO_FLUSH;
    fl.done = Done;
    fl.priv = &w;
    ASSERT_EQ(f.b->ops->submit(f.b, &fl), 0);
    ASSERT_EQ(WaitN(&w, 2), 2);
    EXPECT_EQ(w.last, 0);
    struct vd_bio rb = wb;
    rb.op = VD_BIO_READ;
    rb.buf = rbuf;
    ASSERT_EQ(f.b->ops->submit(f.b, &rb), 0);
    ASSERT_EQ(WaitN(&w, 3), 3);
    EXPECT_EQ(w.last, 0);
    EXPECT_EQ(memcmp(wbuf, rbuf, sizeof(rbuf)), 0);
}

TEST(Uring, ReadPastEndOfShortFile_Zeroes)
{
    File f;
    Waiter w;
    char rbuf[4096];
    memset(rbuf, 1, sizeof(rbuf));
    struct vd_bio rb = {};
    rb.op = VD_BIO_READ;
    rb.buf = rbuf;
    rb.len = sizeof(rbuf);
    rb.off = 2 << 20; /* beyond the 1 MiB file */
    rb.done = Done;
    rb.priv = &w;
    int r = f.b->ops->submit(f.b, &rb);
    if (r == -EAGAIN)
        GTEST_SKIP() << "io_uring unavailable here";
    ASSERT_EQ(r, 0);
    ASSERT_EQ(WaitN(&w, 1), 1);
    EXPECT_EQ(w.last, 0);
    for (char c : rbuf)
        ASSERT_EQ(c, 0);
}

TEST(Uring, ErrorPath_BadFdReportsErrno)
{
    Waiter w;
    struct vd_uring *u = vd_uring_open(-1, "bad");
    if (!u)
        GTEST_SKIP() << "io_uring unavailable here";
    char buf[512];
    struct vd_bio rb = {};
    rb.op = VD_BIO_READ;
    rb.buf = buf;
    rb.len = sizeof(buf);
    rb.done = Done;
    rb.priv = &w;
    ASSERT_EQ(vd_uring_submit(u, &rb), 0);
    ASSERT_EQ(WaitN(&w, 1), 1);
    EXPECT_EQ(w.last, -EBADF);
    vd_uring_close(u);
}

TEST(Uring, Fallback_EnvOffGivesNoRing)
{
    setenv("VDLVM_URING", "0", 1);
    struct vd_uring *u = vd_uring_open(0, "off");
    unsetenv("VDLVM_URING");
    EXPECT_EQ(u, nullptr);
}

} // namespace
