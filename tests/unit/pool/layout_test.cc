// Unit tests for pool/layout.c: the layout registry (the one place that
// compares layout ids) and the shape of every registered ops table.
#include <gtest/gtest.h>

#include <errno.h>
#include <stdlib.h>
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

// vol create's options come from the ops tables: the CLI keeps no table.
TEST(LayoutRegistry, CreateOpts_FromTheOpsTables)
{
    uint32_t copies = 0;
    EXPECT_EQ(vd_layout_create_opts(VD_LAYOUT_LINEAR, &copies), 0u);
    EXPECT_EQ(copies, 1u);
    EXPECT_EQ(vd_layout_create_opts(VD_LAYOUT_MIRROR, &copies),
              (unsigned)(VD_LOPT_COPIES | VD_LOPT_SAME_NODE | VD_LOPT_REGION));
    EXPECT_EQ(copies, 2u);
    EXPECT_EQ(vd_layout_create_opts(VD_LAYOUT_THIN, &copies), 0u);
    EXPECT_EQ(copies, 1u);
    EXPECT_EQ(vd_layout_create_opts(99, &copies), 0u);
    EXPECT_EQ(copies, 1u);
    EXPECT_STREQ(vd_layout_opts_owner(VD_LOPT_REGION), "mirror");
    EXPECT_STREQ(vd_layout_opts_owner(0), "?");
}

// The registry turns vol create's layout and thin flag into the lower and
// upper layout; an upper layout named as the layout stacks on its default.
TEST(LayoutRegistry, Resolve_LowerAndUpper)
{
    struct vd_vol_opts o;
    memset(&o, 0, sizeof(o));
    const struct vd_layout_ops *lo = nullptr, *up = nullptr;

    o.layout = VD_LAYOUT_MIRROR;
    ASSERT_EQ(vd_layout_resolve(&o, &lo, &up), 0);
    EXPECT_STREQ(lo->name, "mirror");
    EXPECT_EQ(up, nullptr);

    o.thin = 1;
    ASSERT_EQ(vd_layout_resolve(&o, &lo, &up), 0);
    EXPECT_STREQ(lo->name, "mirror");
    ASSERT_NE(up, nullptr);
    EXPECT_STREQ(up->name, "thin");

    o.thin = 0;
    o.layout = VD_LAYOUT_THIN;
    ASSERT_EQ(vd_layout_resolve(&o, &lo, &up), 0);
    EXPECT_STREQ(lo->name, "linear");
    ASSERT_NE(up, nullptr);
    EXPECT_STREQ(up->name, "thin");
    o.thin = 1; /* the same thing said twice */
    ASSERT_EQ(vd_layout_resolve(&o, &lo, &up), 0);
    EXPECT_STREQ(up->name, "thin");

    o.layout = (enum vd_layout)99;
    EXPECT_EQ(vd_layout_resolve(&o, &lo, &up), -EINVAL);
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
    EXPECT_EQ(n, 3); // linear, mirror, thin
}

// vd_vol_get_status: one structure for every layout (filled by the core,
// completed by the layout).
TEST(LayoutStatus, LinearAndMirror_FilledFromMappingAndLegs)
{
    char tmpl[] = "/tmp/vdlvm-layout-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    std::string dir = tmpl;
    setenv("VDLVM_RUNDIR", (dir + "/run").c_str(), 1);
    std::string p0 = dir + "/d0.img", p1 = dir + "/d1.img";
    struct vd_conf_dev devs[2] = {};
    devs[0].name = (char *)"d0";
    devs[0].path = (char *)p0.c_str();
    devs[0].size = 32ull << 20;
    devs[0].node = (char *)"n0";
    devs[1].name = (char *)"d1";
    devs[1].path = (char *)p1.c_str();
    devs[1].size = 32ull << 20;
    devs[1].node = (char *)"n1";
    struct vd_conf_pool conf = {};
    conf.file = (char *)"t.yaml";
    conf.name = (char *)"lt";
    conf.extent_size = 1ull << 20;
    conf.ndevs = 2;
    conf.devs = devs;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = nullptr;
    ASSERT_EQ(vd_pool_open(&conf, &p), 0);
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    ASSERT_EQ(vd_vol_create(p, "lin", 3ull << 20, &o), 0);
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    ASSERT_EQ(vd_vol_create(p, "mir", 2ull << 20, &o), 0);
    struct vd_vol_status st;
    EXPECT_EQ(vd_vol_get_status(p, "nope", &st), -ENOENT);
    ASSERT_EQ(vd_vol_get_status(p, "lin", &st), 0);
    EXPECT_STREQ(st.layout, "linear");
    EXPECT_EQ(st.size, 3ull << 20);
    EXPECT_EQ(st.allocated, 3ull << 20);
    EXPECT_EQ(st.copies, 1u);
    EXPECT_EQ(st.copies_insync, 1u);
    EXPECT_EQ(st.degraded, 0);
    EXPECT_EQ(st.resyncing, 0);
    ASSERT_EQ(vd_vol_get_status(p, "mir", &st), 0);
    EXPECT_STREQ(st.layout, "mirror");
    EXPECT_EQ(st.size, 2ull << 20);
    EXPECT_EQ(st.allocated, 2ull << 20);
    EXPECT_EQ(st.copies, 2u);
    EXPECT_EQ(st.copies_insync, 2u);
    EXPECT_EQ(st.degraded, 0);
    vd_pool_close(p);
    std::string cmd = "rm -rf '" + dir + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
}

} // namespace
