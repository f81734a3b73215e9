// Unit tests for pool/linear.c: the linear layout's I/O (split at extents, NOWAIT).
// Shared fixtures: tests/unit/pool_fixture.h.
#include "tests/unit/pool_fixture.h"

using namespace vdtest_pool;

namespace {

TEST_F(PoolTest, Io_RangeAcrossExtents_LandsOnMappedDeviceOffsets)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 100ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    ASSERT_NE(v, nullptr);
    // 1 MiB straddling logical extents 8|9: d0 PE 8 and d1 PE 0 (25
    // extents spread 9/8/8 over the three devices).
    const uint64_t es = 4ull << 20, off = 9 * es - 512 * 1024;
    std::vector<char> w(1 << 20), r(1 << 20);
    for (size_t i = 0; i < w.size(); i++)
        w[i] = (char)(i * 7 + 3);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), off, VD_IO_FUA), 0);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), off), 0);
    EXPECT_EQ(w, r);
    // Check the backing files directly.
    const uint64_t doff = 5ull << 20;
    std::vector<char> f(512 * 1024);
    int fd0 = open(paths[0].c_str(), O_RDONLY), fd1 = open(paths[1].c_str(), O_RDONLY);
    ASSERT_EQ(pread(fd0, f.data(), f.size(), doff + 8 * es + es - f.size()), (ssize_t)f.size());
    EXPECT_EQ(memcmp(f.data(), w.data(), f.size()), 0);
    ASSERT_EQ(pread(fd1, f.data(), f.size(), doff), (ssize_t)f.size());
    EXPECT_EQ(memcmp(f.data(), w.data() + f.size(), f.size()), 0);
    close(fd0);
    close(fd1);
    EXPECT_EQ(vd_vol_pread(v, r.data(), 4096, 100ull << 20), -ERANGE);
    EXPECT_EQ(vd_vol_flush(v), 0);
    EXPECT_EQ(vd_vol_remove(p, "vol0"), -EBUSY);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, NoWait_CachedReadServed_WriteServedOrEagain)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 16ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> w(8192, 'x'), r(8192);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 4096, 0), 0);
    // just written: in the page cache
    ASSERT_EQ(vd_vol_pread_flags(v, r.data(), r.size(), 4096, VD_IO_NOWAIT), 0);
    EXPECT_EQ(r, w);
    std::vector<char> w2(8192, 'y');
    int rc = vd_vol_pwrite(v, w2.data(), w2.size(), 4096, VD_IO_NOWAIT);
    ASSERT_TRUE(rc == 0 || rc == -EAGAIN) << rc;
    if (rc == -EAGAIN) {
        ASSERT_EQ(vd_vol_pwrite(v, w2.data(), w2.size(), 4096, 0), 0);
    }
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 4096), 0);
    EXPECT_EQ(r, w2);
    EXPECT_EQ(vd_vol_pread_flags(v, r.data(), r.size(), 16ull << 20, VD_IO_NOWAIT), -ERANGE);
    vd_vol_close(v);
    vd_pool_close(p);
}

} // namespace
