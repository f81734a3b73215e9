// Unit tests for `direct:` in the local device driver (pool/dev.c, issue
// 14): files with direct: true and block devices (a loop device, unless
// direct: false) are opened O_DIRECT; every request stays correct whatever
// the alignment of its buffer, offset and length (driver bounce, the
// device layer's read-modify-write, concurrent short writes into one
// block); the inline NOWAIT calls refuse (a direct I/O waits for the
// device); io_uring takes aligned requests and refuses others; a volume
// on a direct device reads back what was written, also after reopening.
#include "tests/unit/pool_fixture.h"

#include <dirent.h>
#include <stdio.h>

extern "C" {
#include "config/vdconfig.h"
#include "pool/uring.h"
}

using namespace vdtest_pool;

namespace
{

// Whether this process has path open with O_DIRECT (/proc/self/fdinfo).
int OpenDirect(const std::string &path)
{
    DIR *dir = opendir("/proc/self/fd");
    int found = -1;
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        char l[4096];
        std::string lk = "/proc/self/fd/" + std::string(e->d_name);
        ssize_t n = readlink(lk.c_str(), l, sizeof(l) - 1);
        if (n <= 0)
            continue;
        l[n] = 0;
        if (path != l)
            continue;
        std::string info = "/proc/self/fdinfo/" + std::string(e->d_name);
        FILE *f = fopen(info.c_str(), "r");
        char line[256];
        unsigned long flags = 0;
        while (f && fgets(line, sizeof(line), f))
            if (sscanf(line, "flags: %lo", &flags) == 1)
                break;
        if (f)
            fclose(f);
        found = (flags & O_DIRECT) ? 1 : 0;
    }
    if (dir)
        closedir(dir);
    return found;
}

struct DFile {
    std::string path;
    struct vd_bdev *b = nullptr;
    explicit DFile(int direct, const char *where = "/var/tmp")
    {
        char tmpl[128];
        snprintf(tmpl, sizeof(tmpl), "%s/vd-direct-XXXXXX", where);
        int fd = mkstemp(tmpl);
        EXPECT_GE(fd, 0);
        EXPECT_EQ(ftruncate(fd, 4 << 20), 0);
        close(fd);
        path = tmpl;
        struct vd_conf_dev c = {};
        c.path = (char *)path.c_str();
        c.direct = direct;
        char msg[256];
        EXPECT_EQ(vd_bdev_open(&c, 0, 0, &b, msg, sizeof(msg)), 0) << msg;
    }
    ~DFile()
    {
        if (b)
            b->ops->close(b);
        unlink(path.c_str());
    }
    // the file's bytes through a separate buffered descriptor
    std::string Peek(uint64_t off, size_t len)
    {
        std::string s(len, 0);
        int fd = open(path.c_str(), O_RDONLY);
        EXPECT_EQ(pread(fd, &s[0], len, off), (ssize_t)len);
        close(fd);
        return s;
    }
};

std::string Pattern(size_t n, unsigned seed)
{
    std::string s(n, 0);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(seed * 131 + i * 7 + (i >> 9));
    return s;
}

TEST(Direct, File_DirectTrue_OpenedODirect_FalseAndDefaultBuffered)
{
    DFile on(1), off(-1), def(0);
    ASSERT_TRUE(on.b && off.b && def.b);
    EXPECT_EQ(OpenDirect(on.path), 1);
    EXPECT_EQ(OpenDirect(off.path), 0);
    EXPECT_EQ(OpenDirect(def.path), 0);
}

TEST(Direct, File_UnalignedRequests_RoundTrip)
{
    DFile f(1);
    ASSERT_TRUE(f.b);
    ASSERT_EQ(OpenDirect(f.path), 1);
    struct {
        uint64_t off;
        size_t len;
        size_t buf_skew; // the buffer's distance from a 4 KiB boundary
    } cases[] = {
        { 0, 4096, 0 },     // aligned
        { 8192, 4096, 1 },  // misaligned buffer only
        { 12288 + 3, 100, 0 }, // inside one block
        { 20480 + 500, 9000, 7 }, // spans blocks, both ends partial
        { 65536, 777, 0 },  // aligned start, partial end
        { 131072 - 13, 13, 3 }, // partial start, aligned end
    };
    unsigned seed = 1;
    for (auto &c : cases) {
        std::string before = f.Peek(c.off - c.off % 4096, 3 * 4096 + c.len);
        std::string want = Pattern(c.len, seed++);
        char *raw = (char *)aligned_alloc(4096, (c.len + 8192 + 4095) / 4096 * 4096);
        char *buf = raw + c.buf_skew;
        memcpy(buf, want.data(), c.len);
        ASSERT_EQ(f.b->ops->pwrite(f.b, buf, c.len, c.off, 0), 0) << c.off;
        // what is around the request kept its bytes; the request landed
        std::string after = f.Peek(c.off - c.off % 4096, 3 * 4096 + c.len);
        size_t at = c.off % 4096;
        EXPECT_EQ(after.substr(0, at), before.substr(0, at)) << c.off;
        EXPECT_EQ(after.substr(at, c.len), want) << c.off;
        EXPECT_EQ(after.substr(at + c.len), before.substr(at + c.len))
            << c.off;
        memset(raw, 0, c.len + 8192);
        ASSERT_EQ(f.b->ops->pread(f.b, buf, c.len, c.off), 0) << c.off;
        EXPECT_EQ(std::string(buf, c.len), want) << c.off;
        free(raw);
    }
}

TEST(Direct, File_ReadPastEnd_Zeroes)
{
    DFile f(1);
    ASSERT_TRUE(f.b);
    char buf[600];
    memset(buf, 1, sizeof(buf));
    ASSERT_EQ(f.b->ops->pread(f.b, buf, sizeof(buf), (4 << 20) - 100), 0);
    EXPECT_EQ(std::string(buf, sizeof(buf)), std::string(sizeof(buf), 0));
}

TEST(Direct, File_NowaitRefused)
{
    DFile f(1), g(-1);
    ASSERT_TRUE(f.b && g.b);
    alignas(4096) static char buf[4096];
    EXPECT_EQ(f.b->ops->pread_nowait(f.b, buf, 4096, 0), -EAGAIN);
    EXPECT_EQ(f.b->ops->pwrite(f.b, buf, 4096, 0, VD_IO_NOWAIT), -EAGAIN);
    // the data was not written by the refused call
    EXPECT_EQ(f.Peek(0, 4096), std::string(4096, 0));
}

struct ShortWriter {
    struct vd_bdev *b = nullptr;
    uint64_t off = 0;
    char c = 0;
    int rc = 0;
    pthread_t t{};
    static void *Run(void *a)
    {
        auto *w = (ShortWriter *)a;
        for (int i = 0; i < 1000 && w->rc == 0; i++) {
            char buf[16];
            memset(buf, w->c + (i & 1), sizeof(buf));
            w->rc = w->b->ops->pwrite(w->b, buf, sizeof(buf), w->off, 0);
        }
        return nullptr;
    }
};

// The driver's own read-modify-write of two short writes into one block
// (callers that use the bdev op directly) keeps both.
TEST(Direct, File_ConcurrentShortWritesInOneBlock_BothLand)
{
    DFile f(1);
    ASSERT_TRUE(f.b);
    ShortWriter a, b;
    a.b = b.b = f.b;
    a.off = 4096 + 10;
    a.c = 'a';
    b.off = 4096 + 300;
    b.c = 'A';
    pthread_create(&a.t, nullptr, ShortWriter::Run, &a);
    pthread_create(&b.t, nullptr, ShortWriter::Run, &b);
    pthread_join(a.t, nullptr);
    pthread_join(b.t, nullptr);
    ASSERT_EQ(a.rc, 0);
    ASSERT_EQ(b.rc, 0);
    std::string s = f.Peek(4096, 4096);
    EXPECT_EQ(s.substr(10, 16), std::string(16, 'b')); // last of 1000: odd
    EXPECT_EQ(s.substr(300, 16), std::string(16, 'B'));
    EXPECT_EQ(s.substr(0, 10), std::string(10, 0));
    EXPECT_EQ(s.substr(26, 274), std::string(274, 0));
}

struct Waiter {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    int n = 0, last = 1;
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
bool WaitN(Waiter *w, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&w->m);
    while (w->n < n && pthread_cond_timedwait(&w->c, &w->m, &ts) == 0)
        ;
    bool ok = w->n >= n;
    pthread_mutex_unlock(&w->m);
    return ok;
}

TEST(Direct, File_Submit_AlignedThroughRing_UnalignedRefused)
{
    DFile f(1);
    ASSERT_TRUE(f.b && f.b->ops->submit);
    char *raw = (char *)aligned_alloc(4096, 3 * 4096);
    std::string want = Pattern(8192, 9);
    memcpy(raw, want.data(), 8192);
    Waiter w;
    struct vd_bio wb = {};
    wb.op = VD_BIO_WRITE;
    wb.buf = raw;
    wb.len = 8192;
    wb.off = 16384;
    wb.done = Done;
    wb.priv = &w;
    struct vd_bio bad = wb;
    bad.buf = raw + 1; // misaligned buffer: the thread path's job
    EXPECT_EQ(f.b->ops->submit(f.b, &bad), -EAGAIN);
    bad.buf = raw;
    bad.off = 16384 + 100; // misaligned offset
    EXPECT_EQ(f.b->ops->submit(f.b, &bad), -EAGAIN);
    int r = f.b->ops->submit(f.b, &wb);
    if (r == -EAGAIN)
        GTEST_SKIP() << "io_uring unavailable here";
    ASSERT_EQ(r, 0);
    ASSERT_TRUE(WaitN(&w, 1));
    EXPECT_EQ(w.last, 0);
    EXPECT_EQ(f.Peek(16384, 8192), want);
    memset(raw, 0, 8192);
    struct vd_bio rb = wb;
    rb.op = VD_BIO_READ;
    ASSERT_EQ(f.b->ops->submit(f.b, &rb), 0);
    ASSERT_TRUE(WaitN(&w, 2));
    EXPECT_EQ(w.last, 0);
    EXPECT_EQ(std::string(raw, 8192), want);
    free(raw);
}

// A loop block device: O_DIRECT by default, buffered with direct: false;
// unaligned requests correct on both.
struct Loop {
    std::string file, dev;
    Loop()
    {
        char tmpl[] = "/var/tmp/vd-direct-loop-XXXXXX";
        int fd = mkstemp(tmpl);
        if (fd < 0)
            return;
        file = tmpl;
        if (ftruncate(fd, 8 << 20) != 0) {
            close(fd);
            return;
        }
        close(fd);
        std::string cmd = "losetup -f --show " + file + " 2>/dev/null";
        FILE *p = popen(cmd.c_str(), "r");
        char line[128] = "";
        if (p && fgets(line, sizeof(line), p))
            dev = std::string(line, strcspn(line, "\n"));
        if (p)
            pclose(p);
    }
    ~Loop()
    {
        if (!dev.empty()) {
            EXPECT_EQ(system(("losetup -d " + dev).c_str()), 0);
        }
        if (!file.empty())
            unlink(file.c_str());
    }
};

TEST(Direct, LoopDevice_DirectByDefault_UnalignedCorrect)
{
    Loop l;
    if (l.dev.empty())
        GTEST_SKIP() << "no loop device here (losetup)";
    for (int direct : { 0, -1, 1 }) {
        struct vd_conf_dev c = {};
        c.path = (char *)l.dev.c_str();
        c.direct = direct;
        struct vd_bdev *b = nullptr;
        char msg[256];
        ASSERT_EQ(vd_bdev_open(&c, 0, 0, &b, msg, sizeof(msg)), 0) << msg;
        EXPECT_EQ(b->size, 8u << 20);
        EXPECT_EQ(OpenDirect(l.dev), direct >= 0 ? 1 : 0) << direct;
        std::string want = Pattern(3000, 20 + direct);
        std::vector<char> buf(want.begin(), want.end());
        uint64_t off = 1 << 20 | 77;
        ASSERT_EQ(b->ops->pwrite(b, buf.data(), buf.size(), off, 0), 0);
        ASSERT_EQ(b->ops->flush(b), 0);
        std::fill(buf.begin(), buf.end(), 0);
        ASSERT_EQ(b->ops->pread(b, buf.data(), buf.size(), off), 0);
        EXPECT_EQ(std::string(buf.begin(), buf.end()), want) << direct;
        b->ops->close(b);
        // through the backing file itself (the loop device's cache was
        // flushed by the flush above for the buffered case)
        int fd = open(l.file.c_str(), O_RDONLY);
        std::string s(3000, 0);
        ASSERT_EQ(pread(fd, &s[0], 3000, off), 3000);
        close(fd);
        EXPECT_EQ(s, want) << direct;
    }
}

// A pool on direct devices: volume I/O of every alignment reads back,
// also after the pool is closed and opened again.
TEST_F(PoolTest, Direct_VolumeOnDirectDevices_ReadsBack)
{
    for (auto &d : devs)
        d.direct = 1;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    for (auto &pa : paths)
        EXPECT_EQ(OpenDirect(pa), 1) << pa;
    ASSERT_EQ(vd_vol_create(p, "v", 32ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "v");
    ASSERT_NE(v, nullptr);
    struct {
        uint64_t off;
        size_t len;
    } cases[] = { { 0, 4096 }, { 4096 + 1, 511 }, { (4 << 20) - 1000, 5000 },
                  { 10 << 20, 1 << 20 }, { (20 << 20) + 512, 1536 } };
    unsigned seed = 40;
    std::vector<std::string> wrote;
    for (auto &c : cases) {
        wrote.push_back(Pattern(c.len, seed++));
        ASSERT_EQ(vd_vol_pwrite(v, wrote.back().data(), c.len, c.off, 0), 0)
            << c.off;
    }
    ASSERT_EQ(vd_vol_flush(v), 0);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            std::string got(cases[i].len, 1);
            ASSERT_EQ(vd_vol_pread(v, &got[0], cases[i].len, cases[i].off), 0);
            EXPECT_EQ(got, wrote[i]) << pass << " " << cases[i].off;
        }
        if (pass == 0) {
            vd_vol_close(v);
            vd_pool_close(p);
            p = Open();
            ASSERT_NE(p, nullptr);
            v = vd_vol_open(p, "v");
            ASSERT_NE(v, nullptr);
        }
    }
    vd_vol_close(v);
    vd_pool_close(p);
}

} // namespace
