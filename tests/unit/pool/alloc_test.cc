// Unit tests for pool/alloc.c: extent allocation (spread over the devices, not enough space).
// Shared fixtures: tests/unit/pool_fixture.h.
#include "tests/unit/pool_fixture.h"

using namespace vdtest_pool;

namespace {

TEST_F(PoolTest, VolCreate_LargerThanOneDevice_SpreadsEvenly)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    // 25 extents over three devices of 14 free extents each.
    ASSERT_EQ(vd_vol_create(p, "vol0", 100ull << 20, nullptr), 0);
    struct vd_run *runs;
    size_t n;
    ASSERT_EQ(vd_vol_get_runs(p, "vol0", &runs, &n), 0);
    ASSERT_EQ(n, 3u);
    uint64_t le = 0;
    for (size_t i = 0; i < n; i++) {
        EXPECT_EQ(runs[i].dev, i);
        EXPECT_EQ(runs[i].le_start, le);
        EXPECT_EQ(runs[i].pe_start, 0u);
        EXPECT_GE(runs[i].count, 8u);
        EXPECT_LE(runs[i].count, 9u);
        le += runs[i].count;
    }
    EXPECT_EQ(le, 25u);
    free(runs);
    // The research scenario: two equal devices, a volume of 3/4 of both.
    ASSERT_EQ(vd_vol_remove(p, "vol0"), 0);
    ASSERT_EQ(vd_vol_create(p, "vol1", 21 * (4ull << 20), nullptr), 0);
    ASSERT_EQ(vd_vol_get_runs(p, "vol1", &runs, &n), 0);
    ASSERT_EQ(n, 3u);
    EXPECT_EQ(runs[0].count, 7u);
    EXPECT_EQ(runs[1].count, 7u);
    EXPECT_EQ(runs[2].count, 7u);
    free(runs);
    vd_pool_close(p);
}

TEST_F(PoolTest, VolCreate_TooLarge_FailsAndChangesNothing)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    struct vd_pool_info a, b;
    vd_pool_get_info(p, &a);
    EXPECT_EQ(vd_vol_create(p, "big", 1ull << 30, nullptr), -ENOSPC);
    EXPECT_EQ(vd_vol_create(p, "bad/name", 4096, nullptr), -EINVAL);
    EXPECT_EQ(vd_vol_create(p, "zero", 0, nullptr), -EINVAL);
    vd_pool_get_info(p, &b);
    EXPECT_EQ(a.seq, b.seq);
    EXPECT_EQ(b.nvols, 0u);
    EXPECT_EQ(b.used_bytes, 0u);
    vd_pool_close(p);
}

} // namespace
