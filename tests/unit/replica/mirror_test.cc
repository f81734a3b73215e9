// Unit tests for replica/mirror.c: placement, fan-out writes, leg failure
// and return, the write-intent bitmap after a crash, resync, verify and
// repair, leg replacement.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "pool/pool_int.h"
#include "replica/vdreplica.h"

namespace {

// A device wrapper whose I/O fails while `broken` is set.
struct FaultBdev {
    struct vd_bdev b;
    struct vd_bdev *inner;
    int broken;
    int bad_reads; // reads fail, writes work (a bad sector rewritten)
    int reads;     // reads seen
    int writes;    // writes seen
};
int f_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    auto *f = (FaultBdev *)b;
    __atomic_add_fetch(&f->reads, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&f->broken, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&f->bad_reads, __ATOMIC_ACQUIRE))
        return -EIO;
    return f->inner->ops->pread(f->inner, buf, len, off);
}
int f_pwrite(struct vd_bdev *b, const void *buf, size_t len, uint64_t off, unsigned fl)
{
    auto *f = (FaultBdev *)b;
    __atomic_add_fetch(&f->writes, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&f->broken, __ATOMIC_ACQUIRE))
        return -EIO;
    return f->inner->ops->pwrite(f->inner, buf, len, off, fl);
}
int f_flush(struct vd_bdev *b)
{
    auto *f = (FaultBdev *)b;
    if (__atomic_load_n(&f->broken, __ATOMIC_ACQUIRE))
        return -EIO;
    return f->inner->ops->flush(f->inner);
}
void f_close(struct vd_bdev *b)
{
    auto *f = (FaultBdev *)b;
    f->inner->ops->close(f->inner);
    delete f;
}
const struct vd_bdev_ops fault_ops = { "fault", f_pread, f_pwrite, f_flush, f_close, nullptr, nullptr };

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
const struct vd_bdev_ops strict_ops = { "strict", s_pread, s_pwrite, s_flush, s_close, nullptr, nullptr };
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
