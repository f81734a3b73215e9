// Unit tests for replica/mirror.c: placement, fan-out writes, leg failure
// and return, the write-intent bitmap after a crash, resync, verify and
// repair, leg replacement.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pool/pool_int.h"
#include "replica/vdreplica.h"

extern "C" {
__attribute__((weak)) void (*g_mirror_test_hook)(struct vd_vol *, const char *) = nullptr;
}

namespace {

// A one-shot gate: the first I/O of its kind overlapping [lo, hi) of the
// device blocks (before the I/O, or after it with post) until Release();
// later ones pass.  Waits are bounded so a broken build cannot hang.
enum GateKind { G_READ, G_WRITE, G_FLUSH };
struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool armed = false, hit = false, released = false, post = false;
    GateKind kind = G_WRITE;
    uint64_t lo = 0, hi = 0;

    void Arm(GateKind k, uint64_t l, uint64_t h, bool after = false)
    {
        std::lock_guard<std::mutex> g(mu);
        kind = k, lo = l, hi = h, post = after;
        armed = true, hit = false, released = false;
    }
    // Called by the device; true when it blocked.
    bool Pass(GateKind k, uint64_t off, uint64_t len, bool after)
    {
        std::unique_lock<std::mutex> g(mu);
        if (!armed || hit || k != kind || after != post ||
            (k != G_FLUSH && (off + len <= lo || off >= hi)))
            return false;
        hit = true;
        cv.notify_all();
        cv.wait_for(g, std::chrono::seconds(15), [&] { return released; });
        return true;
    }
    bool WaitHit(int ms = 20000)
    {
        std::unique_lock<std::mutex> g(mu);
        return cv.wait_for(g, std::chrono::milliseconds(ms), [&] { return hit; });
    }
    void Release()
    {
        std::lock_guard<std::mutex> g(mu);
        released = true;
        armed = false;
        cv.notify_all();
    }
};

// A device wrapper whose I/O fails while `broken` is set, with a gate,
// failing flushes, failing writes in a range, and NOWAIT support.
struct FaultBdev {
    struct vd_bdev b;
    struct vd_bdev *inner;
    int broken;
    int spare_md;   // with broken: the metadata area still works (a leg's
                    // data fails while the pool can record it: the write
                    // quorum of the metadata copies is met)
    int bad_reads;  // reads fail, writes work (a bad sector rewritten)
    int fail_flush; // flushes fail
    int nowait_ok;  // NOWAIT I/O is served (a page-cache hit), else -EAGAIN
    uint64_t fail_lo, fail_hi; // writes overlapping [lo, hi) fail
    uint64_t nw_lo, nw_hi;     // NOWAIT writes overlapping [lo, hi): -EAGAIN
    int reads;      // reads seen
    int writes;     // writes seen
    int flushes;    // flushes seen
    Gate gate;      // reads and writes
    Gate fgate;     // flushes
};
int f_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    auto *f = (FaultBdev *)b;
    __atomic_add_fetch(&f->reads, 1, __ATOMIC_RELAXED);
    f->gate.Pass(G_READ, off, len, false);
    if (__atomic_load_n(&f->broken, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&f->bad_reads, __ATOMIC_ACQUIRE))
        return -EIO;
    int r = f->inner->ops->pread(f->inner, buf, len, off);
    f->gate.Pass(G_READ, off, len, true);
    return r;
}
int f_pwrite(struct vd_bdev *b, const void *buf, size_t len, uint64_t off, unsigned fl)
{
    auto *f = (FaultBdev *)b;
    if (fl & VD_IO_NOWAIT) {
        if (!__atomic_load_n(&f->nowait_ok, __ATOMIC_ACQUIRE) ||
            __atomic_load_n(&f->broken, __ATOMIC_ACQUIRE))
            return -EAGAIN;
        if (off < __atomic_load_n(&f->nw_hi, __ATOMIC_ACQUIRE) &&
            off + len > __atomic_load_n(&f->nw_lo, __ATOMIC_ACQUIRE))
            return -EAGAIN;
        fl &= ~VD_IO_NOWAIT;
    }
    __atomic_add_fetch(&f->writes, 1, __ATOMIC_RELAXED);
    f->gate.Pass(G_WRITE, off, len, false);
    if (__atomic_load_n(&f->broken, __ATOMIC_ACQUIRE) &&
        !(__atomic_load_n(&f->spare_md, __ATOMIC_ACQUIRE) &&
          off >= VD_MD_OFFSET && off + len <= VD_MD_OFFSET + VD_MD_SIZE))
        return -EIO;
    uint64_t lo = __atomic_load_n(&f->fail_lo, __ATOMIC_ACQUIRE);
    uint64_t hi = __atomic_load_n(&f->fail_hi, __ATOMIC_ACQUIRE);
    if (off < hi && off + len > lo)
        return -EIO;
    int r = f->inner->ops->pwrite(f->inner, buf, len, off, fl);
    f->gate.Pass(G_WRITE, off, len, true);
    return r;
}
int f_flush(struct vd_bdev *b)
{
    auto *f = (FaultBdev *)b;
    __atomic_add_fetch(&f->flushes, 1, __ATOMIC_RELAXED);
    f->fgate.Pass(G_FLUSH, 0, 0, false);
    if (__atomic_load_n(&f->broken, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&f->fail_flush, __ATOMIC_ACQUIRE))
        return -EIO;
    return f->inner->ops->flush(f->inner);
}
int f_pread_nowait(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    auto *f = (FaultBdev *)b;
    if (!__atomic_load_n(&f->nowait_ok, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&f->broken, __ATOMIC_ACQUIRE))
        return -EAGAIN;
    return f->inner->ops->pread(f->inner, buf, len, off);
}
void f_close(struct vd_bdev *b)
{
    auto *f = (FaultBdev *)b;
    f->inner->ops->close(f->inner);
    delete f;
}
const struct vd_bdev_ops fault_ops = { "fault", f_pread, f_pwrite, f_flush, f_close,
                                       f_pread_nowait, nullptr, nullptr };

FaultBdev *Wrap(vd_pool *p, uint32_t dev)
{
    auto *f = new FaultBdev{};
    f->inner = p->devs[dev].bdev;
    f->b.ops = &fault_ops;
    f->b.size = f->inner->size;
    f->b.block_size = f->inner->block_size;
    p->devs[dev].bdev = &f->b;
    return f;
}

// The mirror's wait points (see replica/mirror_int.h).  Weak: the tests
// also build against a mirror.c without the hook, where they must fail.
std::atomic<int> g_range_waits{0}, g_replace_waits{0};
void RecordHook(struct vd_vol *, const char *ev)
{
    if (!strcmp(ev, "range-wait"))
        g_range_waits++;
    else if (!strcmp(ev, "replace-wait"))
        g_replace_waits++;
}

// Poll pred every 5 ms for at most ms.
bool WaitFor(const std::function<bool()> &pred, int ms = 20000)
{
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end)
            return false;
        usleep(5000);
    }
    return true;
}

class MirrorTest : public ::testing::Test {
  protected:
    std::string dir;
    struct vd_conf_pool conf {};
    std::vector<struct vd_conf_dev> devs;
    std::vector<std::string> paths, names, nodes;

    void SetUp() override
    {
        char tmpl[] = "/tmp/vdlvm-mirror-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        setenv("VDLVM_RUNDIR", dir.c_str(), 1);
        vd_log_set_fn([](int, const char *) {});
        g_range_waits = 0;
        g_replace_waits = 0;
        g_mirror_test_hook = RecordHook;
        int n = 3;
        devs.assign(n, {});
        for (int i = 0; i < n; i++) {
            paths.push_back(dir + "/d" + std::to_string(i) + ".img");
            names.push_back("d" + std::to_string(i));
            nodes.push_back("node" + std::to_string(i));
        }
        for (int i = 0; i < n; i++) {
            devs[i].name = (char *)names[i].c_str();
            devs[i].path = (char *)paths[i].c_str();
            devs[i].size = 64ull << 20;
            devs[i].node = (char *)nodes[i].c_str();
        }
        conf.file = (char *)"test.yaml";
        conf.name = (char *)"pool0";
        conf.extent_size = 4ull << 20;
        conf.ndevs = n;
        conf.devs = devs.data();
        ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    }
    void TearDown() override
    {
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
        vd_log_set_fn(nullptr);
        g_mirror_test_hook = nullptr;
    }
    vd_pool *Open()
    {
        vd_pool *p = nullptr;
        EXPECT_EQ(vd_pool_open(&conf, &p), 0);
        return p;
    }
    void CreateMirror(vd_pool *p, uint64_t size = 16ull << 20)
    {
        struct vd_vol_opts o;
        vd_vol_opts_init(&o);
        o.layout = VD_LAYOUT_MIRROR;
        o.copies = 2;
        o.region_size = 1ull << 20;
        ASSERT_EQ(vd_vol_create(p, "m", size, &o), 0);
    }
    static std::vector<char> Pattern(size_t n, int seed)
    {
        std::vector<char> v(n);
        for (size_t i = 0; i < n; i++)
            v[i] = (char)(i * 31 + seed * 7 + (i >> 9));
        return v;
    }
    static uint32_t LegDev(vd_pool *p, int leg)
    {
        vd_vol *v = vd_vol_find(p, "m");
        return v->map[1 * v->copies + leg].dev;
    }
    // Device and device offset of volume byte off on leg.
    static uint64_t LegOff(vd_pool *p, int leg, uint64_t off, uint32_t *dev = nullptr)
    {
        vd_vol *v = vd_vol_find(p, "m");
        uint64_t doff = 0;
        pthread_rwlock_rdlock(&v->map_lock);
        struct vd_dev *d = vd_leg_locate(v, leg, off, &doff);
        pthread_rwlock_unlock(&v->map_lock);
        if (dev)
            *dev = d->idx;
        return doff;
    }
    static uint64_t BitmapOff(vd_pool *p, int leg)
    {
        vd_vol *v = vd_vol_find(p, "m");
        uint64_t doff = 0;
        pthread_rwlock_rdlock(&v->map_lock);
        vd_leg_bitmap_locate(v, leg, &doff);
        pthread_rwlock_unlock(&v->map_lock);
        return doff;
    }
    static struct vd_bdev *Raw(vd_pool *p, uint32_t dev)
    {
        struct vd_bdev *b = p->devs[dev].bdev;
        return b->ops == &fault_ops ? ((FaultBdev *)b)->inner : b;
    }
    // Volume bytes [off, off+len) as leg holds them, behind the mirror.
    static std::vector<char> ReadLeg(vd_pool *p, int leg, uint64_t off, size_t len)
    {
        uint32_t dev;
        uint64_t doff = LegOff(p, leg, off, &dev);
        std::vector<char> r(len);
        struct vd_bdev *b = Raw(p, dev);
        EXPECT_EQ(b->ops->pread(b, r.data(), len, doff), 0);
        return r;
    }
    static struct vd_mirror_info Info(vd_pool *p)
    {
        struct vd_mirror_info mi;
        EXPECT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
        return mi;
    }
    static bool WaitClean(vd_pool *p)
    {
        return WaitFor([&] { return Info(p).dirty_regions == 0; });
    }
    static bool WaitInSync(vd_pool *p)
    {
        return WaitFor([&] {
            auto mi = Info(p);
            for (uint32_t l = 0; l < mi.copies; l++)
                if (mi.legs[l].state != VD_LEG_INSYNC)
                    return false;
            return mi.resync_state == VD_RESYNC_IDLE;
        }, 30000);
    }
    static void Verify(vd_pool *p, size_t want_diff)
    {
        struct vd_verify_result res;
        ASSERT_EQ(vd_mirror_verify(p, "m", 0, &res), 0);
        EXPECT_EQ(res.ndiff, want_diff);
        vd_verify_result_free(&res);
    }
};

TEST_F(MirrorTest, Create_LegsOnDistinctNodes)
{
    vd_pool *p = Open();
    CreateMirror(p);
    EXPECT_NE(LegDev(p, 0), LegDev(p, 1));
    struct vd_mirror_info mi;
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_EQ(mi.copies, 2u);
    EXPECT_STRNE(mi.legs[0].node, mi.legs[1].node);
    EXPECT_EQ(mi.legs[0].state, VD_LEG_INSYNC);
    EXPECT_EQ(mi.legs[1].state, VD_LEG_INSYNC);
    EXPECT_EQ(mi.size, 16ull << 20);
    vd_pool_close(p);
}

// The bitmap is one extent (extent_size * 8 regions): a create or extend
// beyond it is refused before the commit (extend used to commit the new
// size and then fail every write past the bitmap's end).
TEST_F(MirrorTest, Extend_BeyondBitmapCapacity_RefusedNothingChanged)
{
    vd_pool *p = Open();
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    o.region_size = 64ull << 10;
    ASSERT_EQ(vd_vol_create(p, "m", 16ull << 20, &o), 0);
    struct vd_pool_info before, after;
    ASSERT_EQ(vd_pool_get_info(p, &before), 0);
    uint64_t too_big = (64ull << 10) * before.extent_size * 8 + (64ull << 10);
    EXPECT_EQ(vd_vol_extend(p, "m", too_big), -EFBIG);
    EXPECT_EQ(vd_vol_create(p, "m2", too_big, &o), -EFBIG);
    ASSERT_EQ(vd_pool_get_info(p, &after), 0);
    EXPECT_EQ(after.seq, before.seq);
    EXPECT_EQ(after.nvols, 1u);
    struct vd_vol_info vi;
    ASSERT_EQ(vd_vol_get_info(p, "m", &vi), 0);
    EXPECT_EQ(vi.size, 16ull << 20);
    vd_pool_close(p);
}

// Format 1.1: each leg's bitmap extent ends with a header of its own
// (docs/format.md): magic, version, length, crc32c, bit order, region
// shift, volume id, capacity.  Failed before (no header: zero block).
static std::vector<uint8_t> BitmapHeader(vd_pool *p, uint32_t leg)
{
    vd_vol *v = vd_vol_find(p, "m");
    uint64_t doff = 0;
    pthread_rwlock_rdlock(&v->map_lock);
    struct vd_dev *d = vd_leg_bitmap_locate(v, leg, &doff);
    pthread_rwlock_unlock(&v->map_lock);
    std::vector<uint8_t> h(4096);
    EXPECT_EQ(d->bdev->ops->pread(d->bdev, h.data(), h.size(),
                                  doff + p->extent_size - 4096), 0);
    return h;
}

static void ExpectValidBitmapHeader(vd_pool *p, uint32_t leg, uint32_t shift)
{
    std::vector<uint8_t> h = BitmapHeader(p, leg);
    uint16_t major, minor;
    uint32_t len, crc, order, rshift, vol;
    uint64_t bits_off, cap;
    memcpy(&major, &h[8], 2);
    memcpy(&minor, &h[10], 2);
    memcpy(&len, &h[12], 4);
    memcpy(&crc, &h[16], 4);
    memcpy(&order, &h[20], 4);
    memcpy(&rshift, &h[24], 4);
    memcpy(&vol, &h[28], 4);
    memcpy(&bits_off, &h[32], 8);
    memcpy(&cap, &h[40], 8);
    EXPECT_EQ(memcmp(h.data(), "VDLVMBM1", 8), 0) << "leg " << leg;
    EXPECT_EQ(major, 1);
    EXPECT_EQ(minor, 0);
    EXPECT_EQ(len, 64u);
    std::vector<uint8_t> z(h.begin(), h.begin() + 64);
    memset(&z[16], 0, 4);
    EXPECT_EQ(crc, vd_crc32c(0, z.data(), 64)) << "leg " << leg;
    EXPECT_EQ(order, 0u);
    EXPECT_EQ(rshift, shift);
    EXPECT_EQ(vol, vd_vol_find(p, "m")->id);
    EXPECT_EQ(bits_off, 0u);
    EXPECT_EQ(cap, (p->extent_size - 4096) * 8);
}

TEST_F(MirrorTest, Bitmap_HasItsOwnHeader_OnEveryLeg)
{
    vd_pool *p = Open();
    CreateMirror(p); // region 1 MiB
    ExpectValidBitmapHeader(p, 0, 20);
    ExpectValidBitmapHeader(p, 1, 20);
    vd_pool_close(p);
    p = Open();
    ExpectValidBitmapHeader(p, 0, 20);
    ExpectValidBitmapHeader(p, 1, 20);
    vd_pool_close(p);
}

// A header that does not match the volume (here: another region size) is
// not trusted: the leg's copy is read as unreadable, the header written
// again at open, and the data stays intact.
TEST_F(MirrorTest, Bitmap_WrongHeader_RewrittenAtOpen_DataIntact)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto w = Pattern(1 << 20, 3);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 0, VD_IO_FUA), 0);
    vd_vol_close(v);
    vd_vol *mv = vd_vol_find(p, "m");
    uint64_t doff = 0;
    pthread_rwlock_rdlock(&mv->map_lock);
    struct vd_dev *d = vd_leg_bitmap_locate(mv, 1, &doff);
    pthread_rwlock_unlock(&mv->map_lock);
    std::vector<uint8_t> h = BitmapHeader(p, 1);
    h[24] = 19; // region shift
    ASSERT_EQ(d->bdev->ops->pwrite(d->bdev, h.data(), h.size(),
                                   doff + p->extent_size - 4096, 0), 0);
    vd_pool_close(p);
    p = Open();
    ExpectValidBitmapHeader(p, 1, 20);
    v = vd_vol_open(p, "m");
    std::vector<char> r(w.size());
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 0), 0);
    EXPECT_EQ(r, w);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(MirrorTest, Create_SameNodeRefusedUnlessAllowed)
{
    for (auto &d : devs)
        d.node = (char *)"one";
    vd_pool *p = nullptr;
    ASSERT_EQ(vd_pool_create(&conf, 1), 0);
    ASSERT_EQ(vd_pool_open(&conf, &p), 0);
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    EXPECT_EQ(vd_vol_create(p, "m", 8ull << 20, &o), -ENOSPC);
    struct vd_pool_info pi;
    vd_pool_get_info(p, &pi);
    EXPECT_EQ(pi.nvols, 0u);
    o.allow_same_node = 1;
    EXPECT_EQ(vd_vol_create(p, "m", 8ull << 20, &o), 0);
    EXPECT_NE(LegDev(p, 0), LegDev(p, 1));
    vd_pool_close(p);
}

TEST_F(MirrorTest, Write_LandsOnBothLegs_ReadBack)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto w = Pattern(3 << 20, 1);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 512 * 1024, 0), 0);
    std::vector<char> r(w.size());
    for (int i = 0; i < 4; i++) { // reads are spread over legs
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 512 * 1024), 0);
        EXPECT_EQ(r, w);
    }
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(MirrorTest, LegFails_WritesGoOn_LegReturns_ResyncCopiesOnlyDirty)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto base = Pattern(16 << 20, 2);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), base.size(), 0, 0), 0);
    // let the cleaner clear the bits (legs in sync, no writes for a pass)
    struct vd_mirror_info mi;
    for (int i = 0; i < 100; i++) {
        vd_mirror_get_info(p, "m", &mi);
        if (!mi.dirty_regions)
            break;
        usleep(50000);
    }
    ASSERT_EQ(mi.dirty_regions, 0u);

    FaultBdev *f = Wrap(p, LegDev(p, 1));
    __atomic_store_n(&f->broken, 1, __ATOMIC_RELEASE);
    auto w = Pattern(8192, 3);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 5ull << 20, 0), 0);   // region 5
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 9ull << 20, 0), 0);   // region 9
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_EQ(mi.legs[1].state, VD_LEG_FAILED);
    EXPECT_EQ(mi.dirty_regions, 2u);
    std::vector<char> r(8192);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 9ull << 20), 0);
    EXPECT_EQ(r, w);

    __atomic_store_n(&f->broken, 0, __ATOMIC_RELEASE); // the device is back
    bool synced = false;
    for (int i = 0; i < 200 && !synced; i++) {
        usleep(50000);
        vd_mirror_get_info(p, "m", &mi);
        synced = mi.legs[1].state == VD_LEG_INSYNC && mi.resync_state == VD_RESYNC_IDLE;
    }
    ASSERT_TRUE(synced);
    EXPECT_EQ(mi.total_bytes, 2ull << 20); // two regions, not the volume
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(MirrorTest, LegFailure_IsDurable)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    FaultBdev *f = Wrap(p, LegDev(p, 0));
    __atomic_store_n(&f->broken, 1, __ATOMIC_RELEASE);
    auto w = Pattern(4096, 4);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 0, VD_IO_FUA), 0);
    vd_vol_close(v);
    vd_pool_close(p);
    // Reopen without the fault: leg 0 is known failed, and its data must
    // not be trusted until resynced; leg 1 has the write.
    p = Open();
    v = vd_vol_open(p, "m");
    std::vector<char> r(4096);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 0), 0);
    EXPECT_EQ(r, w);
    vd_vol_close(v);
    ASSERT_EQ(vd_mirror_resync_wait(p, "m", 20000), 0);
    Verify(p, 0);
    vd_pool_close(p);
}

TEST_F(MirrorTest, Crash_DirtyRegionsResyncedAtOpen)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_pool_close(p);
    pid_t pid = fork();
    if (pid == 0) {
        vd_pool *c = nullptr;
        if (vd_pool_open(&conf, &c))
            _exit(1);
        vd_vol *v = vd_vol_open(c, "m");
        auto w = Pattern(1 << 20, 5);
        // Write only to leg 0 behind the mirror's back after the bit is
        // set, as if the crash hit between the two legs' writes.
        if (vd_vol_pwrite(v, w.data(), w.size(), 3ull << 20, 0))
            _exit(2);
        uint64_t doff;
        pthread_rwlock_rdlock(&v->map_lock);
        struct vd_dev *d = vd_leg_locate(v, 0, 3ull << 20, &doff);
        auto x = Pattern(4096, 6);
        vd_dev_pwrite(d, x.data(), x.size(), doff, VD_IO_FUA);
        pthread_rwlock_unlock(&v->map_lock);
        _exit(0); // no close: the bitmap bits stay set
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    p = Open();
    struct vd_mirror_info mi;
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_GE(mi.dirty_regions + (mi.resync_state != VD_RESYNC_IDLE), 1u);
    ASSERT_EQ(vd_mirror_resync_wait(p, "m", 20000), 0);
    Verify(p, 0);
    vd_vol *v = vd_vol_open(p, "m");
    std::vector<char> r(4096);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 3ull << 20), 0);
    EXPECT_EQ(r, Pattern(4096, 6)); // leg 0 (the source) wins, consistently
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(MirrorTest, Verify_FindsFlippedByte_RepairFixesIt)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto w = Pattern(16 << 20, 7);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 0, VD_IO_FUA), 0);
    uint64_t doff;
    pthread_rwlock_rdlock(&v->map_lock);
    struct vd_dev *d = vd_leg_locate(v, 1, (6ull << 20) + 100, &doff);
    pthread_rwlock_unlock(&v->map_lock);
    int fd = open(paths[d->idx].c_str(), O_RDWR);
    char b = 0x7f;
    ASSERT_EQ(pwrite(fd, &b, 1, doff), 1);
    close(fd);
    struct vd_verify_result res;
    ASSERT_EQ(vd_mirror_verify(p, "m", 0, &res), 0);
    ASSERT_EQ(res.ndiff, 1u);
    EXPECT_EQ(res.diff[0], 6u);
    vd_verify_result_free(&res);
    ASSERT_EQ(vd_mirror_verify(p, "m", 1, &res), 0);
    EXPECT_EQ(res.repaired, 1u);
    vd_verify_result_free(&res);
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(MirrorTest, ReplaceLeg_RebuildsOnline)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto w = Pattern(16 << 20, 8);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 0, 0), 0);
    uint32_t old = LegDev(p, 1), spare = 3 - LegDev(p, 0) - old;
    ASSERT_EQ(vd_mirror_replace_leg(p, "m", names[old].c_str(), names[spare].c_str()), 0);
    EXPECT_EQ(LegDev(p, 1), spare);
    ASSERT_EQ(vd_mirror_resync_wait(p, "m", 30000), 0);
    struct vd_mirror_info mi;
    vd_mirror_get_info(p, "m", &mi);
    EXPECT_EQ(mi.legs[1].state, VD_LEG_INSYNC);
    Verify(p, 0);
    EXPECT_EQ(vd_mirror_replace_leg(p, "m", "nope", names[old].c_str()), -ENOENT);
    vd_vol_close(v);
    vd_pool_close(p);
    p = Open(); // the move is durable
    EXPECT_EQ(LegDev(p, 1), spare);
    Verify(p, 0);
    vd_pool_close(p);
}

TEST_F(MirrorTest, CompareAndWrite_AcrossLegs)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    std::vector<char> zero(512, 0), one(512, 1);
    uint64_t mis;
    EXPECT_EQ(vd_vol_compare_and_write(v, zero.data(), one.data(), 512, 0, &mis), 0);
    EXPECT_EQ(vd_vol_compare_and_write(v, zero.data(), one.data(), 512, 0, &mis), 1);
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

} // namespace

// A write failing on every leg must not leave the volume without an
// in-sync leg: the first stays in use (the error goes to the caller), the
// others are failed and resynced from it when they answer again.
TEST_F(MirrorTest, WriteFailsOnEveryLeg_LastInSyncLegKept)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto base = Pattern(4 << 20, 4);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), base.size(), 0, 0), 0);
    FaultBdev *f0 = Wrap(p, LegDev(p, 0));
    FaultBdev *f1 = Wrap(p, LegDev(p, 1));
    // The pool must be able to record the leg failure: its metadata
    // copies on these devices keep working (write quorum 2 of 3).
    f0->spare_md = f1->spare_md = 1;
    __atomic_store_n(&f0->broken, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
    auto w = Pattern(8192, 5);
    EXPECT_NE(vd_vol_pwrite(v, w.data(), w.size(), 1ull << 20, 0), 0);
    struct vd_mirror_info mi;
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_EQ(mi.legs[0].state, VD_LEG_INSYNC);
    EXPECT_EQ(mi.legs[1].state, VD_LEG_FAILED);
    // still failing: errors, and the in-sync leg stays
    EXPECT_NE(vd_vol_pwrite(v, w.data(), w.size(), 2ull << 20, 0), 0);
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_EQ(mi.legs[0].state, VD_LEG_INSYNC);

    __atomic_store_n(&f0->broken, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 3ull << 20, 0), 0);
    bool synced = false;
    for (int i = 0; i < 200 && !synced; i++) {
        usleep(50000);
        vd_mirror_get_info(p, "m", &mi);
        synced = mi.legs[1].state == VD_LEG_INSYNC && mi.resync_state == VD_RESYNC_IDLE;
    }
    ASSERT_TRUE(synced);
    std::vector<char> r(8192);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 3ull << 20), 0);
    EXPECT_EQ(r, w);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 0), 0);
    EXPECT_EQ(0, memcmp(r.data(), base.data(), r.size()));
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

// Devices that only take whole 512-byte blocks (as the iSCSI driver):
// short requests go through a bounce buffer and behave as on a file.
namespace {
struct StrictBdev {
    struct vd_bdev b;
    struct vd_bdev *inner;
};
int s_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    auto *s = (StrictBdev *)b;
    if (off % 512 || len % 512)
        return -EINVAL;
    return s->inner->ops->pread(s->inner, buf, len, off);
}
int s_pwrite(struct vd_bdev *b, const void *buf, size_t len, uint64_t off, unsigned fl)
{
    auto *s = (StrictBdev *)b;
    if (off % 512 || len % 512)
        return -EINVAL;
    return s->inner->ops->pwrite(s->inner, buf, len, off, fl);
}
int s_flush(struct vd_bdev *b) { return ((StrictBdev *)b)->inner->ops->flush(((StrictBdev *)b)->inner); }
void s_close(struct vd_bdev *b)
{
    auto *s = (StrictBdev *)b;
    s->inner->ops->close(s->inner);
    delete s;
}
const struct vd_bdev_ops strict_ops = { "strict", s_pread, s_pwrite, s_flush, s_close,
                                        nullptr, nullptr, nullptr };
TEST_F(MirrorTest, NoWait_OnlyIntoDirtyRegions_BothLegs)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    struct vd_mirror_info mi;
    vd_mirror_get_info(p, "m", &mi);
    uint64_t dirty0 = mi.dirty_regions;
    auto w = Pattern(4096, 9);
    // a clean region needs a durable bitmap write first: never inline
    EXPECT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 2ull << 20, VD_IO_NOWAIT), -EAGAIN);
    vd_mirror_get_info(p, "m", &mi);
    EXPECT_EQ(mi.dirty_regions, dirty0);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 2ull << 20, 0), 0);
    std::vector<char> r(4096);
    ASSERT_EQ(vd_vol_pread_flags(v, r.data(), r.size(), 2ull << 20, VD_IO_NOWAIT), 0);
    EXPECT_EQ(r, w);
    auto w2 = Pattern(4096, 10);
    int rc = vd_vol_pwrite(v, w2.data(), w2.size(), 2ull << 20, VD_IO_NOWAIT);
    ASSERT_TRUE(rc == 0 || rc == -EAGAIN) << rc;
    if (rc == -EAGAIN) {
        ASSERT_EQ(vd_vol_pwrite(v, w2.data(), w2.size(), 2ull << 20, 0), 0);
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 2ull << 20), 0);
        EXPECT_EQ(r, w2);
    }
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(MirrorTest, ReadError_OtherLegServes_GoodDataRewritten)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto w = Pattern(1 << 20, 11);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 0, VD_IO_FUA), 0);
    // let the cleaner clear the bit so reads are spread over both legs
    struct vd_mirror_info mi;
    for (int i = 0; i < 100; i++) {
        vd_mirror_get_info(p, "m", &mi);
        if (!mi.dirty_regions)
            break;
        usleep(50000);
    }
    ASSERT_EQ(mi.dirty_regions, 0u);
    FaultBdev *f = Wrap(p, LegDev(p, 0));
    __atomic_store_n(&f->bad_reads, 1, __ATOMIC_RELEASE);
    std::vector<char> r(64 << 10);
    for (int i = 0; i < 4; i++) { // at least one read picks leg 0 first
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 128 << 10), 0);
        EXPECT_EQ(0, memcmp(r.data(), w.data() + (128 << 10), r.size()));
    }
    EXPECT_GT(__atomic_load_n(&f->reads, __ATOMIC_RELAXED), 0);
    EXPECT_GT(__atomic_load_n(&f->writes, __ATOMIC_RELAXED), 0); // rewritten
    vd_mirror_get_info(p, "m", &mi);
    EXPECT_EQ(mi.legs[0].state, VD_LEG_INSYNC); // the rewrite worked
    __atomic_store_n(&f->bad_reads, 0, __ATOMIC_RELEASE);
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

} // namespace

TEST_F(MirrorTest, ShortRequests_OnBlockDevices_Bounced)
{
    vd_pool *p = Open();
    CreateMirror(p);
    for (int leg = 0; leg < 2; leg++) {
        uint32_t d = LegDev(p, leg);
        auto *s = new StrictBdev{};
        s->inner = p->devs[d].bdev;
        s->b.ops = &strict_ops;
        s->b.size = s->inner->size;
        s->b.block_size = 512;
        p->devs[d].bdev = &s->b;
    }
    vd_vol *v = vd_vol_open(p, "m");
    auto base = Pattern(8192, 6);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), base.size(), 4096, 0), 0);
    auto w = Pattern(1500, 7);
    // 200 bytes at a block start, 1500 bytes from the middle of a block
    // across three blocks into a fourth
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), 200, 4096, 0), 0);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), 1500, 4096 + 1024 + 100, 0), 0);
    auto want = base;
    memcpy(want.data(), w.data(), 200);
    memcpy(want.data() + 1024 + 100, w.data(), 1500);
    std::vector<char> r(8192);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 4096), 0);
    EXPECT_EQ(r, want);
    std::vector<char> r2(300);
    ASSERT_EQ(vd_vol_pread(v, r2.data(), r2.size(), 4096 + 1000), 0);
    EXPECT_EQ(0, memcmp(r2.data(), want.data() + 1000, 300));
    struct vd_mirror_info mi;
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_EQ(mi.legs[0].state, VD_LEG_INSYNC);
    EXPECT_EQ(mi.legs[1].state, VD_LEG_INSYNC);
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}


// ---- issue 8: data safety of mirrors ------------------------------------
// Each test forces one interleaving with gates and bounded waits, and
// names the defect of issue 8 it covers.
class MirrorSafety : public MirrorTest {
  protected:
    vd_pool *p = nullptr;
    vd_vol *v = nullptr;
    FaultBdev *f0 = nullptr, *f1 = nullptr;
    std::vector<char> base;

    // A 16 MiB 2-leg mirror holding base, both legs wrapped.
    void Start(bool clean = true)
    {
        p = Open();
        CreateMirror(p);
        v = vd_vol_open(p, "m");
        base = Pattern(16 << 20, 20);
        ASSERT_EQ(vd_vol_pwrite(v, base.data(), base.size(), 0, 0), 0);
        if (clean) {
            ASSERT_TRUE(WaitClean(p));
        }
        f0 = Wrap(p, LegDev(p, 0));
        f1 = Wrap(p, LegDev(p, 1));
    }
    void Stop()
    {
        if (v)
            vd_vol_close(v);
        if (p)
            vd_pool_close(p);
        v = nullptr;
        p = nullptr;
    }
    // Leg 1 fails while regions [first, last] get seed's data.
    void FailLeg1While(int first, int last, int seed)
    {
        __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
        auto w = Pattern(1 << 20, seed);
        for (int r = first; r <= last; r++) {
            ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), (uint64_t)r << 20, 0), 0);
            memcpy(base.data() + ((size_t)r << 20), w.data(), w.size());
        }
        ASSERT_EQ(Info(p).legs[1].state, VD_LEG_FAILED);
    }
    // The next clean-region read of v goes to leg 0 first (reads of clean
    // regions alternate between in-sync legs).  Before any read error.
    void NextReadOnLeg0()
    {
        std::vector<char> r(4096);
        for (int i = 0; i < 4; i++) {
            int before = __atomic_load_n(&f0->reads, __ATOMIC_RELAXED);
            ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 8ull << 20), 0);
            if (__atomic_load_n(&f0->reads, __ATOMIC_RELAXED) == before)
                return;
        }
        FAIL() << "reads never alternated";
    }
};

// Defect 1: a target leg that fails during a resync pass keeps the bits of
// the regions the pass reaches after the failure.
TEST_F(MirrorSafety, Resync_TargetFailsDuringPass_BitsKept)
{
    Start();
    FailLeg1While(2, 5, 21);
    f1->gate.Arm(G_WRITE, LegOff(p, 1, 3ull << 20), LegOff(p, 1, 3ull << 20) + (1 << 20));
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE); // the probe brings it back
    ASSERT_TRUE(f1->gate.WaitHit()) << "resync never copied region 3";
    // While region 3 is being copied, leg 1 fails again (a write to region 9).
    __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
    auto w = Pattern(1 << 20, 22);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 9ull << 20, 0), 0);
    memcpy(base.data() + (9ull << 20), w.data(), w.size());
    ASSERT_EQ(Info(p).legs[1].state, VD_LEG_FAILED);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    f1->gate.Release();
    // It comes back again; everything it missed must reach it.
    ASSERT_TRUE(WaitInSync(p));
    for (int r : { 2, 3, 4, 5, 9 })
        EXPECT_EQ(ReadLeg(p, 1, (uint64_t)r << 20, 1 << 20),
                  std::vector<char>(base.begin() + ((size_t)r << 20),
                                    base.begin() + ((size_t)(r + 1) << 20)))
            << "region " << r << " of leg 1";
    Verify(p, 0);
    Stop();
}

// Defect 2: the only in-sync leg is never replaced; nothing changes.
TEST_F(MirrorSafety, ReplaceLeg_OnlyInSyncLeg_RefusedNothingChanged)
{
    Start();
    FailLeg1While(2, 2, 23);
    uint32_t d0 = LegDev(p, 0), d1 = LegDev(p, 1), spare = 3 - d0 - d1;
    EXPECT_EQ(vd_mirror_replace_leg(p, "m", names[d0].c_str(), names[spare].c_str()),
              -EBUSY);
    EXPECT_EQ(LegDev(p, 0), d0);
    auto mi = Info(p);
    EXPECT_EQ(mi.legs[0].state, VD_LEG_INSYNC);
    EXPECT_EQ(mi.legs[1].state, VD_LEG_FAILED);
    std::vector<char> r(1 << 20);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 2ull << 20), 0);
    EXPECT_EQ(0, memcmp(r.data(), base.data() + (2ull << 20), r.size()));
    Stop();
}

// Defect 2: a replacement during a resync waits for the pass; the new,
// empty leg is not marked in-sync before every region was copied to it.
TEST_F(MirrorSafety, ReplaceLeg_DuringResync_NewLegInSyncOnlyAfterCopy)
{
    Start(false);
    FailLeg1While(0, 15, 24); // every region
    uint32_t d0 = LegDev(p, 0), d1 = LegDev(p, 1), spare = 3 - d0 - d1;
    FaultBdev *fs = Wrap(p, spare);
    f1->gate.Arm(G_WRITE, LegOff(p, 1, 15ull << 20), LegOff(p, 1, 15ull << 20) + (1 << 20));
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    ASSERT_TRUE(f1->gate.WaitHit()) << "resync never reached region 15";
    // The spare is empty: the new leg's extents start at its first extent
    // (the bitmap), its region 0 is the next extent.
    uint64_t r0 = p->devs[spare].data_offset + p->extent_size;
    fs->gate.Arm(G_WRITE, r0, r0 + (1 << 20));
    auto rep = std::async(std::launch::async, [&] {
        return vd_mirror_replace_leg(p, "m", names[d1].c_str(), names[spare].c_str());
    });
    // The replacement is under way: waiting for the pass (or, without the
    // fix, holding the admin lock).
    ASSERT_TRUE(WaitFor([&] {
        if (g_replace_waits > 0)
            return true;
        if (pthread_mutex_trylock(&p->admin_lock))
            return true;
        pthread_mutex_unlock(&p->admin_lock);
        return false;
    }, 10000));
    f1->gate.Release();
    ASSERT_EQ(rep.get(), 0);
    EXPECT_EQ(LegDev(p, 1), spare);
    ASSERT_TRUE(fs->gate.WaitHit()) << "region 0 never copied to the new leg";
    EXPECT_NE(Info(p).legs[1].state, VD_LEG_INSYNC) << "in-sync before its data";
    fs->gate.Release();
    ASSERT_TRUE(WaitInSync(p));
    EXPECT_EQ(ReadLeg(p, 1, 0, 16 << 20), base);
    Verify(p, 0);
    Stop();
}

// Defect 3: the rewrite after a read error goes through the write
// protocol: a write landing between the good read and the rewrite wins on
// every leg.
TEST_F(MirrorSafety, ReadRepair_RacesWrite_LegsAgree)
{
    Start();
    NextReadOnLeg0();
    __atomic_store_n(&f0->bad_reads, 1, __ATOMIC_RELEASE);
    // Leg 1's read of region 0 blocks after it got the old data.
    f1->gate.Arm(G_READ, LegOff(p, 1, 0), LegOff(p, 1, 0) + (64 << 10), true);
    auto rd = std::async(std::launch::async, [&] {
        std::vector<char> r(64 << 10);
        return vd_vol_pread(v, r.data(), r.size(), 0);
    });
    ASSERT_TRUE(f1->gate.WaitHit());
    auto w = Pattern(64 << 10, 25);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 0, 0), 0);
    f1->gate.Release();
    ASSERT_EQ(rd.get(), 0);
    EXPECT_EQ(ReadLeg(p, 1, 0, w.size()), w);
    EXPECT_EQ(ReadLeg(p, 0, 0, w.size()), w) << "the rewrite undid a write";
    __atomic_store_n(&f0->bad_reads, 0, __ATOMIC_RELEASE);
    Verify(p, 0);
    Stop();
}

// Defect 4: COMPARE AND WRITE meeting a read error keeps its exclusive
// write_lock until it is done (the repair never touches write_lock).
TEST_F(MirrorSafety, CompareAndWrite_ReadError_KeepsItsWriteLock)
{
    Start();
    NextReadOnLeg0();
    __atomic_store_n(&f0->bad_reads, 1, __ATOMIC_RELEASE);
    std::vector<char> cmp(base.begin(), base.begin() + 512), wr(512, 7);
    f1->gate.Arm(G_WRITE, LegOff(p, 1, 0), LegOff(p, 1, 0) + 512);
    auto caw = std::async(std::launch::async, [&] {
        uint64_t mis = 0;
        return vd_vol_compare_and_write(v, cmp.data(), wr.data(), 512, 0, &mis);
    });
    ASSERT_TRUE(f1->gate.WaitHit()) << "CAW never wrote leg 1";
    int rc = pthread_rwlock_tryrdlock(&v->write_lock);
    if (rc == 0)
        pthread_rwlock_unlock(&v->write_lock);
    EXPECT_NE(rc, 0) << "CAW's write_lock was released under it";
    f1->gate.Release();
    EXPECT_EQ(caw.get(), 0);
    __atomic_store_n(&f0->bad_reads, 0, __ATOMIC_RELEASE);
    std::vector<char> r(512);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 0), 0);
    EXPECT_EQ(r, wr);
    Verify(p, 0);
    Stop();
}

// Defect 6: the cleaner clears a bit only after a flush that really made
// the region's writes durable; a concurrent SYNCHRONIZE CACHE still in
// the device does not count.
TEST_F(MirrorSafety, Cleaner_ConcurrentFlush_BitNotClearedOnAFlushThatDidNothing)
{
    Start();
    auto w = Pattern(64 << 10, 26);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 2ull << 20, 0), 0);
    f1->fgate.Arm(G_FLUSH, 0, 0);
    auto fl = std::async(std::launch::async, [&] { return vd_vol_flush(v); });
    ASSERT_TRUE(f1->fgate.WaitHit());
    // The cleaner runs within two passes; with a flush that waits for the
    // one in the device it does not get further while that is held.
    struct vd_dev *d1 = &p->devs[LegDev(p, 1)];
    bool cleared = WaitFor([&] {
        pthread_mutex_lock(&d1->flush_lock);
        bool waits = d1->flush_waiters > 0; // the cleaner waits for that flush
        pthread_mutex_unlock(&d1->flush_lock);
        return waits || Info(p).dirty_regions == 0 ||
               __atomic_load_n(&f1->flushes, __ATOMIC_RELAXED) >= 2;
    }, 5000);
    if (cleared && Info(p).dirty_regions == 0) {
        EXPECT_GE(__atomic_load_n(&f1->flushes, __ATOMIC_RELAXED), 2)
            << "bit cleared while leg 1's only flush is still in the device";
    }
    f1->fgate.Release();
    EXPECT_EQ(fl.get(), 0);
    ASSERT_TRUE(WaitClean(p));
    Stop();
}

// Defect 7: SYNCHRONIZE CACHE of a mirror: a leg whose flush fails is
// failed and the flush succeeds; devices outside the mirror do not count;
// the last in-sync leg failing to flush fails it.
TEST_F(MirrorSafety, Flush_LegFlushFails_LegFailedFlushSucceeds)
{
    Start();
    auto w = Pattern(4096, 27);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 1ull << 20, 0), 0);
    __atomic_store_n(&f1->fail_flush, 1, __ATOMIC_RELEASE);
    EXPECT_EQ(vd_vol_flush(v), 0);
    EXPECT_EQ(Info(p).legs[1].state, VD_LEG_FAILED);
    EXPECT_EQ(Info(p).legs[0].state, VD_LEG_INSYNC);
    // degraded: still fine, and a failed leg is not even asked
    int n1 = __atomic_load_n(&f1->flushes, __ATOMIC_RELAXED);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 1ull << 20, 0), 0);
    EXPECT_EQ(vd_vol_flush(v), 0);
    EXPECT_EQ(__atomic_load_n(&f1->flushes, __ATOMIC_RELAXED), n1);
    // the last in-sync leg cannot flush: the error goes to the initiator
    __atomic_store_n(&f0->fail_flush, 1, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 1ull << 20, 0), 0);
    EXPECT_EQ(vd_vol_flush(v), -EIO);
    EXPECT_EQ(Info(p).legs[0].state, VD_LEG_INSYNC);
    __atomic_store_n(&f0->fail_flush, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->fail_flush, 0, __ATOMIC_RELEASE);
    Stop();
}

TEST_F(MirrorSafety, Flush_DeviceOutsideTheMirrorFails_MirrorFlushSucceeds)
{
    Start();
    uint32_t spare = 3 - LegDev(p, 0) - LegDev(p, 1);
    FaultBdev *fs = Wrap(p, spare);
    // the spare has unflushed writes (its last extent is free)
    struct vd_dev *d = &p->devs[spare];
    std::vector<char> z(4096, 1);
    ASSERT_EQ(vd_dev_pwrite(d, z.data(), z.size(),
                            d->data_offset + (d->pe_count - 1) * p->extent_size, 0), 0);
    __atomic_store_n(&fs->fail_flush, 1, __ATOMIC_RELEASE);
    auto w = Pattern(4096, 28);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 1ull << 20, 0), 0);
    EXPECT_EQ(vd_vol_flush(v), 0);
    EXPECT_EQ(__atomic_load_n(&fs->flushes, __ATOMIC_RELAXED), 0);
    EXPECT_EQ(Info(p).legs[0].state, VD_LEG_INSYNC);
    EXPECT_EQ(Info(p).legs[1].state, VD_LEG_INSYNC);
    __atomic_store_n(&fs->fail_flush, 0, __ATOMIC_RELEASE);
    Stop();
}

// Defect 8: tgtd's main thread (VD_IO_NOWAIT) never waits behind a
// bitmap write in progress on a slow device.
TEST_F(MirrorSafety, NoWait_DoesNotWaitBehindABitmapWrite)
{
    Start();
    __atomic_store_n(&f0->nowait_ok, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->nowait_ok, 1, __ATOMIC_RELEASE);
    auto w = Pattern(4096, 29);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 5ull << 20, 0), 0); // bit 5 durable
    uint64_t bm = BitmapOff(p, 1);
    f1->gate.Arm(G_WRITE, bm, bm + 4096);
    auto slow = std::async(std::launch::async, [&] { // region 2 is clean
        return vd_vol_pwrite(v, w.data(), w.size(), 2ull << 20, 0);
    });
    ASSERT_TRUE(f1->gate.WaitHit()) << "no bitmap write";
    auto inl = std::async(std::launch::async, [&] {
        std::vector<char> r(4096);
        int a = vd_vol_pread_flags(v, r.data(), r.size(), 5ull << 20, VD_IO_NOWAIT);
        int b = vd_vol_pwrite(v, w.data(), w.size(), 5ull << 20, VD_IO_NOWAIT);
        int c = vd_vol_pread_flags(v, r.data(), r.size(), 2ull << 20, VD_IO_NOWAIT);
        return (a == 0 || a == -EAGAIN) && (b == 0 || b == -EAGAIN) &&
               (c == 0 || c == -EAGAIN);
    });
    bool prompt = inl.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    EXPECT_TRUE(prompt) << "a NOWAIT call waited behind device I/O";
    f1->gate.Release();
    EXPECT_TRUE(inl.get());
    EXPECT_EQ(slow.get(), 0);
    Verify(p, 0);
    Stop();
}

// Defect 9: a bitmap write that failed leaves its block to be written
// again; the next write into the region makes the bit durable first.
TEST_F(MirrorSafety, BitmapWriteFails_NextWriteMakesTheBitDurable)
{
    Start();
    uint64_t b0 = BitmapOff(p, 0), b1 = BitmapOff(p, 1);
    __atomic_store_n(&f0->fail_lo, b0, __ATOMIC_RELEASE);
    __atomic_store_n(&f0->fail_hi, b0 + p->extent_size, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->fail_lo, b1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->fail_hi, b1 + p->extent_size, __ATOMIC_RELEASE);
    auto w = Pattern(4096, 30);
    EXPECT_NE(vd_vol_pwrite(v, w.data(), w.size(), 3ull << 20, 0), 0);
    ASSERT_EQ(Info(p).legs[0].state, VD_LEG_INSYNC);
    __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE); // stays away
    __atomic_store_n(&f0->fail_hi, 0, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 3ull << 20, 0), 0);
    uint64_t word = 0;
    struct vd_bdev *raw = Raw(p, LegDev(p, 0));
    std::vector<char> blk(4096);
    ASSERT_EQ(raw->ops->pread(raw, blk.data(), blk.size(), b0), 0);
    memcpy(&word, blk.data(), 8);
    EXPECT_TRUE(word >> 3 & 1) << "region 3 written under a bit that is not on disk";
    Stop();
}

// Defect 12: overlapping writes in flight land in the same order on
// every leg.
TEST_F(MirrorSafety, OverlappingWrites_SameOrderOnEveryLeg)
{
    Start();
    auto a = Pattern(64 << 10, 31), b = Pattern(64 << 10, 32);
    uint64_t off = 4ull << 20;
    f1->gate.Arm(G_WRITE, LegOff(p, 1, off), LegOff(p, 1, off) + a.size());
    auto wa = std::async(std::launch::async, [&] {
        return vd_vol_pwrite(v, a.data(), a.size(), off, 0);
    });
    ASSERT_TRUE(f1->gate.WaitHit());
    auto wb = std::async(std::launch::async, [&] {
        return vd_vol_pwrite(v, b.data(), b.size(), off, 0);
    });
    ASSERT_TRUE(WaitFor([&] {
        return g_range_waits > 0 ||
               wb.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    }, 10000));
    f1->gate.Release();
    EXPECT_EQ(wa.get(), 0);
    EXPECT_EQ(wb.get(), 0);
    EXPECT_EQ(ReadLeg(p, 0, off, b.size()), ReadLeg(p, 1, off, b.size()));
    Verify(p, 0);
    Stop();
}

// Defect 13: a NOWAIT write that reached one leg keeps its region's bit
// set (reads stay on the source leg) until its redo on a worker finished.
TEST_F(MirrorSafety, NoWaitPartial_BitKeptUntilTheRedo)
{
    Start();
    __atomic_store_n(&f0->nowait_ok, 1, __ATOMIC_RELEASE); // leg 1: cache misses
    auto a = Pattern(64 << 10, 33), b = Pattern(64 << 10, 34), c = Pattern(4096, 35);
    uint64_t off = 2ull << 20;
    ASSERT_EQ(vd_vol_pwrite(v, a.data(), a.size(), off, 0), 0);
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), off, VD_IO_NOWAIT), -EAGAIN);
    ASSERT_EQ(ReadLeg(p, 0, off, b.size()), b);
    ASSERT_EQ(ReadLeg(p, 1, off, a.size()), a);
    // A later write elsewhere gets cleaned: the cleaner ran passes after
    // the NOWAIT write.
    ASSERT_EQ(vd_vol_pwrite(v, c.data(), c.size(), 7ull << 20, 0), 0);
    ASSERT_TRUE(WaitFor([&] { return Info(p).dirty_regions <= 1; }));
    std::vector<char> r(b.size());
    for (int i = 0; i < 2; i++) { // one read per leg if the bit were clear
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), off), 0);
        EXPECT_EQ(r, b) << "the bit went while the legs differ";
    }
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), off, 0), 0); // the redo
    ASSERT_TRUE(WaitClean(p));
    Verify(p, 0);
    Stop();
}

// Defect 14: resync clears bits (and marks legs in-sync) only after the
// copies were flushed.
TEST_F(MirrorSafety, Resync_BitsClearedOnlyAfterTheCopiesAreFlushed)
{
    Start();
    FailLeg1While(2, 5, 36);
    f1->gate.Arm(G_WRITE, LegOff(p, 1, 2ull << 20), LegOff(p, 1, 2ull << 20) + (1 << 20));
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    ASSERT_TRUE(f1->gate.WaitHit()) << "resync never started";
    // from the first copy on, the next flush of leg 1 blocks
    f1->fgate.Arm(G_FLUSH, 0, 0);
    f1->gate.Release();
    ASSERT_TRUE(f1->fgate.WaitHit()) << "resync never flushed leg 1";
    auto mi = Info(p);
    EXPECT_EQ(mi.dirty_regions, 4u) << "bits cleared before the copies are durable";
    EXPECT_EQ(mi.legs[1].state, VD_LEG_STALE);
    f1->fgate.Release();
    ASSERT_TRUE(WaitInSync(p));
    Verify(p, 0);
    Stop();
}

// Defect 17: a tiny --rate neither overflows the wait nor stalls the
// replica thread: a new rate applies at once, and close returns.
TEST_F(MirrorSafety, Resync_TinyRate_RateChangeAppliesAndCloseReturns)
{
    Start();
    FailLeg1While(2, 5, 37);
    ASSERT_EQ(vd_mirror_resync_start(p, "m", 1), 0); // 1 byte/s
    uint64_t o2 = LegOff(p, 1, 2ull << 20);
    f1->gate.Arm(G_WRITE, o2, o2 + (1 << 20), true);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    ASSERT_TRUE(f1->gate.WaitHit()) << "first region never copied";
    f1->gate.Release();
    ASSERT_TRUE(WaitFor([&] { return Info(p).resync_state == VD_RESYNC_RUNNING; }));
    ASSERT_EQ(vd_mirror_resync_start(p, "m", 0), 0);
    EXPECT_EQ(vd_mirror_resync_wait(p, "m", 15000), 0) << "the new rate did not apply";
    Verify(p, 0);
    // again at 1 byte/s, then close while it waits
    FailLeg1While(6, 7, 38);
    ASSERT_EQ(vd_mirror_resync_start(p, "m", 1), 0);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    ASSERT_TRUE(WaitFor([&] { return Info(p).legs[1].state == VD_LEG_STALE; }));
    vd_vol_close(v);
    v = nullptr;
    auto cl = std::async(std::launch::async, [&] { vd_pool_close(p); });
    EXPECT_EQ(cl.wait_for(std::chrono::seconds(10)), std::future_status::ready)
        << "close waited for the rate limit";
    cl.get();
    p = nullptr;
}

// A rate-limited resync pauses between regions; a target that fails and
// comes back during such a pause has missed copies: the resync starts over
// for it before marking it in-sync (3 legs: the pass goes on with the
// other target meanwhile).
TEST_F(MirrorSafety, Resync_RateLimited_TargetFailsAndReturns_CopiedAgain)
{
    p = Open();
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 3;
    o.region_size = 1ull << 20;
    ASSERT_EQ(vd_vol_create(p, "m", 16ull << 20, &o), 0);
    v = vd_vol_open(p, "m");
    base = Pattern(16 << 20, 40);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), base.size(), 0, 0), 0);
    ASSERT_TRUE(WaitClean(p));
    f1 = Wrap(p, LegDev(p, 1));
    FaultBdev *f2 = Wrap(p, LegDev(p, 2));
    f1->spare_md = f2->spare_md = 1; // leg failures can be recorded
    __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f2->broken, 1, __ATOMIC_RELEASE);
    auto w = Pattern(1 << 20, 41);
    for (int r = 0; r < 8; r++) {
        ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), (uint64_t)r << 20, 0), 0);
        memcpy(base.data() + ((size_t)r << 20), w.data(), w.size());
    }
    ASSERT_EQ(Info(p).legs[1].state, VD_LEG_FAILED);
    ASSERT_EQ(Info(p).legs[2].state, VD_LEG_FAILED);
    ASSERT_EQ(vd_mirror_resync_start(p, "m", 5ull << 20), 0); // 200 ms a region
    uint64_t o2 = LegOff(p, 1, 2ull << 20), o4 = LegOff(p, 2, 4ull << 20);
    f1->gate.Arm(G_WRITE, o2, o2 + (1 << 20), true);
    f2->gate.Arm(G_WRITE, o4, o4 + (1 << 20), true);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&f2->broken, 0, __ATOMIC_RELEASE);
    ASSERT_TRUE(f1->gate.WaitHit()) << "region 2 never copied to leg 1";
    f1->fgate.Arm(G_FLUSH, 0, 0); // the pause flushes the copies first
    f1->gate.Release();
    ASSERT_TRUE(f1->fgate.WaitHit());
    // leg 1 fails again (a write elsewhere) while the resync goes on; it
    // answers writes and flushes, but not the probe's read, for a while
    __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
    auto x = Pattern(4096, 42);
    ASSERT_EQ(vd_vol_pwrite(v, x.data(), x.size(), 12ull << 20, 0), 0);
    memcpy(base.data() + (12ull << 20), x.data(), x.size());
    ASSERT_EQ(Info(p).legs[1].state, VD_LEG_FAILED);
    __atomic_store_n(&f1->bad_reads, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    f1->fgate.Release();
    ASSERT_TRUE(f2->gate.WaitHit()) << "region 4 never copied to leg 2";
    __atomic_store_n(&f1->bad_reads, 0, __ATOMIC_RELEASE); // back, during a pause
    f2->gate.Release();
    ASSERT_TRUE(WaitInSync(p));
    for (int leg = 1; leg < 3; leg++)
        EXPECT_EQ(ReadLeg(p, leg, 0, 16 << 20), base) << "leg " << leg;
    Verify(p, 0);
    Stop();
}

// Defect 15 (the mirror's own waits): a resync copy queues behind the
// writes in flight to its region, in arrival order; a stream of
// overlapping writes from several threads does not starve it.
TEST_F(MirrorSafety, Resync_StreamOfOverlappingWrites_CopyNotStarved)
{
    Start();
    FailLeg1While(3, 3, 43);
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::vector<std::thread> writers;
    for (int t = 0; t < 8; t++)
        writers.emplace_back([&, t] {
            auto w = Pattern(512 << 10, 44 + t);
            while (!stop)
                if (vd_vol_pwrite(v, w.data(), w.size(), (3ull << 20) + ((t % 3) << 18), 0))
                    bad++;
        });
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    bool synced = WaitFor([&] { return Info(p).legs[1].state == VD_LEG_INSYNC; }, 15000);
    stop = true;
    for (auto &t : writers)
        t.join();
    EXPECT_TRUE(synced) << "resync starved by the writes";
    EXPECT_EQ(bad, 0);
    ASSERT_TRUE(WaitInSync(p));
    Verify(p, 0);
    Stop();
}

// M2 (vdsim seed 3447): the resync source leg fails while a copy waits for
// its region behind a write that missed the source.  The copy must not
// then read the failed source and write its old data over the only
// in-sync leg (the write, acknowledged there, would be lost).
TEST_F(MirrorSafety, Resync_SourceFailsWhileCopyWaits_InSyncLegNotOverwritten)
{
    Start();
    uint64_t r5 = 5ull << 20;
    uint64_t o0 = LegOff(p, 0, r5), o1 = LegOff(p, 1, r5);
    // W reaches neither leg 0 (its write fails there) nor, until released,
    // leg 1; it owns region 5 meanwhile.
    __atomic_store_n(&f0->fail_lo, o0, __ATOMIC_RELEASE);
    __atomic_store_n(&f0->fail_hi, o0 + (1 << 20), __ATOMIC_RELEASE);
    f1->gate.Arm(G_WRITE, o1, o1 + (1 << 20));
    auto w = Pattern(1 << 20, 50);
    auto wf = std::async(std::launch::async, [&] {
        return vd_vol_pwrite(v, w.data(), w.size(), r5, 0);
    });
    ASSERT_TRUE(f1->gate.WaitHit()) << "W never reached leg 1";
    int waits = g_range_waits.load();
    // Both legs in sync: leg 0 is the source, leg 1 the target; the pass
    // sees leg 0 in sync and queues its copy of region 5 behind W.
    ASSERT_EQ(vd_mirror_resync_start(p, "m", 0), 0);
    ASSERT_TRUE(WaitFor([&] { return g_range_waits.load() > waits; }))
        << "the copy of region 5 never waited for W";
    f1->gate.Release();
    ASSERT_EQ(wf.get(), 0); // acknowledged: on leg 1, leg 0 failed
    __atomic_store_n(&f0->fail_hi, 0, __ATOMIC_RELEASE);
    memcpy(base.data() + r5, w.data(), w.size());
    // Whatever the resync does next, leg 1 keeps W, and so does leg 0 once
    // it is back.
    ASSERT_TRUE(WaitInSync(p));
    EXPECT_EQ(ReadLeg(p, 1, r5, 1 << 20), w) << "W lost on the in-sync leg";
    EXPECT_EQ(ReadLeg(p, 0, r5, 1 << 20), w);
    std::vector<char> r(1 << 20);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), r5), 0);
    EXPECT_EQ(r, w);
    Verify(p, 0);
    Stop();
}

// M3 (vdsim seed 7536): a NOWAIT write split at an extent boundary whose
// first piece reached leg 0 and whose second got -EAGAIN on leg 0 itself
// leaves the legs different: the bit stays until the blocking redo.
TEST_F(MirrorSafety, NoWaitPartial_SplitAtExtentBoundary_BitKeptUntilTheRedo)
{
    Start();
    uint64_t es = p->extent_size, off = es - 4096;
    auto a = Pattern(8192, 51), b = Pattern(8192, 52), c = Pattern(4096, 53);
    ASSERT_EQ(vd_vol_pwrite(v, a.data(), a.size(), off, 0), 0); // bits durable
    __atomic_store_n(&f0->nowait_ok, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->nowait_ok, 1, __ATOMIC_RELEASE);
    uint64_t o2 = LegOff(p, 0, es);
    __atomic_store_n(&f0->nw_lo, o2, __ATOMIC_RELEASE);
    __atomic_store_n(&f0->nw_hi, o2 + 4096, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), off, VD_IO_NOWAIT), -EAGAIN);
    std::vector<char> want(a);
    memcpy(want.data(), b.data(), 4096); // leg 0: b's first piece, a's second
    ASSERT_EQ(ReadLeg(p, 0, off, 8192), want);
    ASSERT_EQ(ReadLeg(p, 1, off, 8192), a);
    // A later write elsewhere gets cleaned: the cleaner ran passes after
    // the NOWAIT write.
    ASSERT_EQ(vd_vol_pwrite(v, c.data(), c.size(), 9ull << 20, 0), 0);
    ASSERT_TRUE(WaitFor([&] { return Info(p).dirty_regions <= 2; }));
    EXPECT_EQ(Info(p).dirty_regions, 2u) << "the bits went while the legs differ";
    std::vector<char> r(8192);
    for (int i = 0; i < 2; i++) { // one read per leg if the bits were clear
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), off), 0);
        EXPECT_EQ(r, want);
    }
    __atomic_store_n(&f0->nw_hi, 0, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), off, 0), 0); // the redo
    ASSERT_TRUE(WaitClean(p));
    Verify(p, 0);
    Stop();
}

// vdsim seeds 11428, 13956: a read error on leg 0 is served from leg 1;
// before its repair owns the range, leg 1 fails (a write of the range that
// was in flight missed it).  The repair must not then copy leg 1's old
// data over leg 0, the only in-sync leg.
TEST_F(MirrorSafety, ReadRepair_GoodLegFailsBeforeTheRepair_InSyncLegNotOverwritten)
{
    Start();
    uint64_t r5 = 5ull << 20, o1 = LegOff(p, 1, r5);
    f1->gate.Arm(G_WRITE, o1, o1 + (1 << 20));
    auto w = Pattern(1 << 20, 60);
    auto wf = std::async(std::launch::async, [&] {
        return vd_vol_pwrite(v, w.data(), w.size(), r5, 0);
    });
    ASSERT_TRUE(f1->gate.WaitHit()) << "W never reached leg 1";
    ASSERT_EQ(ReadLeg(p, 0, r5, 1 << 20), w);
    // leg 0 cannot be read: the read is served from leg 1 (old data, W is
    // still in flight), and its repair of leg 0 queues behind W
    __atomic_store_n(&f0->bad_reads, 1, __ATOMIC_RELEASE);
    int waits = g_range_waits.load();
    auto rf = std::async(std::launch::async, [&] {
        std::vector<char> r(4096);
        return vd_vol_pread(v, r.data(), r.size(), r5);
    });
    ASSERT_TRUE(WaitFor([&] { return g_range_waits.load() > waits; }))
        << "the repair never waited for W";
    __atomic_store_n(&f0->bad_reads, 0, __ATOMIC_RELEASE);
    // W fails on leg 1: leg 1 failed, W acknowledged (on leg 0)
    __atomic_store_n(&f1->fail_lo, o1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->fail_hi, o1 + (1 << 20), __ATOMIC_RELEASE);
    f1->gate.Release();
    ASSERT_EQ(wf.get(), 0);
    ASSERT_EQ(rf.get(), 0);
    EXPECT_EQ(ReadLeg(p, 0, r5, 1 << 20), w) << "W lost on the in-sync leg";
    __atomic_store_n(&f1->fail_hi, 0, __ATOMIC_RELEASE);
    memcpy(base.data() + r5, w.data(), w.size());
    ASSERT_TRUE(WaitInSync(p));
    EXPECT_EQ(ReadLeg(p, 1, r5, 1 << 20), w);
    Verify(p, 0);
    Stop();
}
