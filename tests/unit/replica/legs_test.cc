// Unit tests for replica/legs.c: leg placement at create and extend, leg replacement.
// Shared fixtures: tests/unit/mirror_fixture.h.
#include "tests/unit/mirror_fixture.h"

using namespace vdtest_mirror;

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
