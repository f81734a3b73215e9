// Unit tests for replica/verify.c: verify and repair, the rewrite after a read error.
// Shared fixtures: tests/unit/mirror_fixture.h.
#include "tests/unit/mirror_fixture.h"

using namespace vdtest_mirror;

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
