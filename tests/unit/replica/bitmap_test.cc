// Unit tests for replica/bitmap.c: the write-intent bitmap, its header, loading it at open, the cleaner.
// Shared fixtures: tests/unit/mirror_fixture.h.
#include "tests/unit/mirror_fixture.h"

using namespace vdtest_mirror;

namespace {

// Format 1.1: each leg's bitmap extent ends with a header of its own
// (docs/format.md): magic, version, length, crc32c, bit order, region
// shift, volume id, capacity.  Failed before (no header: zero block).
std::vector<uint8_t> BitmapHeader(vd_pool *p, uint32_t leg)
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

void ExpectValidBitmapHeader(vd_pool *p, uint32_t leg, uint32_t shift)
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

} // namespace

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
