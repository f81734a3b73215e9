// Unit tests for pool/layout.c: the layout registry (the one place that
// compares layout ids) and the shape of every registered ops table.
#include <gtest/gtest.h>

#include <errno.h>
#include <string.h>

#include <set>
#include <string>

#include "pool/layout.h"

namespace {

TEST(LayoutRegistry, KnownIds_NamesAndTables)
{
    const struct vd_layout_ops *l = vd_layout_get(VD_LAYOUT_LINEAR);
    ASSERT_NE(l, nullptr);
    EXPECT_STREQ(l->name, "linear");
    EXPECT_EQ(l->meta_extents, 0u);
    const struct vd_layout_ops *m = vd_layout_get(VD_LAYOUT_MIRROR);
    ASSERT_NE(m, nullptr);
    EXPECT_STREQ(m->name, "mirror");
    EXPECT_EQ(m->meta_extents, 1u);
    EXPECT_STREQ(vd_layout_name(VD_LAYOUT_LINEAR), "linear");
    EXPECT_STREQ(vd_layout_name(VD_LAYOUT_MIRROR), "mirror");
}

TEST(LayoutRegistry, UnknownId_NullAndUnknownName)
{
    EXPECT_EQ(vd_layout_get(99), nullptr);
    EXPECT_EQ(vd_layout_get(0xffffffffu), nullptr);
    EXPECT_STREQ(vd_layout_name(99), "unknown");
    enum vd_layout out = VD_LAYOUT_LINEAR;
    EXPECT_EQ(vd_layout_from_name("raid5", &out), -EINVAL);
    EXPECT_EQ(vd_layout_from_name("", &out), -EINVAL);
}

TEST(LayoutRegistry, FromName_RoundTrips)
{
    enum vd_layout out;
    ASSERT_EQ(vd_layout_from_name("linear", &out), 0);
    EXPECT_EQ(out, VD_LAYOUT_LINEAR);
    ASSERT_EQ(vd_layout_from_name("mirror", &out), 0);
    EXPECT_EQ(out, VD_LAYOUT_MIRROR);
}

// Every registered table has what the core calls unconditionally, within
// the meta-extent room vd_vol_size_max leaves, with unique ids and names.
TEST(LayoutRegistry, EveryTable_HasTheMandatoryOps)
{
    std::set<std::string> names;
    int n = 0;
    for (uint32_t id = 0; id < 64; id++) {
        const struct vd_layout_ops *l = vd_layout_get(id);
        if (!l)
            continue;
        n++;
        EXPECT_EQ(l->id, id);
        EXPECT_TRUE(names.insert(l->name).second) << l->name;
        EXPECT_NE(l->plan, nullptr) << l->name;
        EXPECT_NE(l->plan_extend, nullptr) << l->name;
        EXPECT_NE(l->pread, nullptr) << l->name;
        EXPECT_NE(l->pwrite, nullptr) << l->name;
        EXPECT_NE(l->flush, nullptr) << l->name;
        EXPECT_LE(l->meta_extents, VD_LAYOUT_MAX_META_LE) << l->name;
        EXPECT_EQ(!!l->md_apply, !!l->md_serialize) << l->name;
    }
    EXPECT_EQ(n, 2);
}

} // namespace
