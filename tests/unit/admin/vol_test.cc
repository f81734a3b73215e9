// Unit tests for admin/vol.c: vol create/list/remove/extend/repair, resync,
// verify: output and exit codes against a real pool.
// Shared fixtures: tests/unit/admin_fixture.h.
#include "tests/unit/admin_fixture.h"

using namespace vdtest_admin;

namespace {

TEST_F(AdminPool, VolLifecycle_OutputsAndExitCodes)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;

    EXPECT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "80MiB" },
                   &out, &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/vol0': created, 80MiB (20 extents of 4MiB), "
                   "linear\n");
    EXPECT_EQ(Exec(p, { "vol", "list", "pool0" }, &out, &err), 0);
    EXPECT_NE(out.find("pool0/vol0  80MiB"), std::string::npos) << out;

    EXPECT_EQ(Exec(p, { "vol", "extend", "pool0/vol0", "--size", "+8M" }, &out,
                   &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/vol0': extended from 80MiB to 88MiB\n");
    struct vd_vol_info vi;
    ASSERT_EQ(vd_vol_get_info(p, "vol0", &vi), 0);
    EXPECT_EQ(vi.size, 88ull << 20);

    // Shrinking is bad input: exit 2, size unchanged.
    EXPECT_EQ(Exec(p, { "vol", "extend", "pool0/vol0", "--size", "4M" }, &out,
                   &err), VD_EXIT_USAGE);
    EXPECT_NE(err.find("volumes only grow"), std::string::npos) << err;
    ASSERT_EQ(vd_vol_get_info(p, "vol0", &vi), 0);
    EXPECT_EQ(vi.size, 88ull << 20);

    // Too big: runtime failure naming the free space; nothing created.
    EXPECT_EQ(Exec(p, { "vol", "create", "pool0/big", "--size", "1GiB" }, &out,
                   &err), VD_EXIT_FAIL);
    EXPECT_NE(err.find("volume 'pool0/big'"), std::string::npos) << err;
    EXPECT_EQ(vd_vol_get_info(p, "big", &vi), -ENOENT);

    EXPECT_EQ(Exec(p, { "vol", "remove", "pool0/vol9" }, &out, &err),
              VD_EXIT_FAIL);
    EXPECT_EQ(err, "vdlvm: volume 'pool0/vol9': not found; list volumes with "
                   "'vdlvm vol list pool0'\n");
    EXPECT_EQ(Exec(p, { "vol", "remove", "pool0/vol0" }, &out, &err), 0);
    EXPECT_EQ(out, "volume 'pool0/vol0': removed\n");
    EXPECT_EQ(vd_pool_vol_count(p), 0);

    // Another pool's name is refused.
    EXPECT_EQ(Exec(p, { "vol", "list", "other" }, &out, &err), VD_EXIT_USAGE);
    EXPECT_NE(err.find("pool 'other': not served here"), std::string::npos);
    vd_pool_close(p);
}

TEST_F(AdminPool, Mirror_VerifyResyncAndLinearRefusals)
{
    Define({ "a.img", "b.img", "c.img" });
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/m", "--size", "8M", "--layout",
                        "mirror", "--allow-same-node", "--region-size",
                        "256KiB" }, &out, &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/m': created, 8MiB (2 extents of 4MiB), "
                   "mirror, 2 copies\n");
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/l", "--size", "4M" }), 0);

    EXPECT_EQ(Exec(p, { "verify", "pool0/m" }, &out, &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/m': legs equal (32 regions of 256KiB "
                   "compared)\n");
    EXPECT_EQ(Exec(p, { "resync", "pool0/m", "--rate", "0", "--wait" }, &out,
                   &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/m': resync done, legs in-sync\n");
    EXPECT_EQ(Exec(p, { "verify", "pool0/l" }, &out, &err), VD_EXIT_FAIL);
    EXPECT_EQ(err, "vdlvm: volume 'pool0/l': verify applies to mirrored "
                   "volumes; this one is linear\n");

    ASSERT_EQ(Exec(p, { "status", "pool0/m", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("\"legs\":[{\"leg\":0,"), std::string::npos) << out;
    EXPECT_NE(out.find("\"state\":\"in-sync\""), std::string::npos) << out;
    EXPECT_NE(out.find("\"resync\":{\"state\":\"idle\""), std::string::npos);
    ASSERT_EQ(Exec(p, { "status", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;
    vd_pool_close(p);
}

TEST_F(AdminPool, VolCreate_RoundingStatedJsonHasExportedAndState)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/v", "--size", "4096" }, &out,
                   &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/v': created, 4MiB (1 extent of 4MiB), "
                   "linear\n  note: 4096 bytes (4KiB) asked, rounded up to "
                   "whole extents of 4MiB\n");
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/w", "--size", "8MiB" }, &out,
                   &err), 0) << err;
    EXPECT_EQ(out.find("note"), std::string::npos) << out;
    ASSERT_EQ(Exec(p, { "status", "pool0/v", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("\"exported\":false,\"state\":\"ok\""),
              std::string::npos) << out;
    vd_pool_close(p);
}

TEST_F(AdminPool, MirrorSameNode_Warned)
{
    Define({ "a.img", "b.img" });
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/m", "--size", "4M", "--layout",
                        "mirror", "--allow-same-node" }, &out, &err), 0) << err;
    EXPECT_NE(err.find("warning: volume 'pool0/m': every leg is on node "
                       "'nodea'"), std::string::npos) << err;
    ASSERT_EQ(Exec(p, { "resync", "pool0/m", "--rate", "1MiB" }, &out, &err),
              0) << err;
    EXPECT_NE(out.find("nothing to resync (no region marked); rate limit "
                       "1MiB/s"), std::string::npos) << out;
    vd_pool_close(p);
}

// The same kind of failure, the same exit code: vol repair refused by the
// pool's state (the new device holds another leg, or has too few free
// extents) is 1, as too little free space is for vol create.
TEST_F(AdminPool, VolRepairRefusals_Exit1)
{
    Define({ "a.img", "b.img", "c.img" });
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/m", "--size", "8M", "--layout",
                        "mirror", "--allow-same-node" }, &out, &err), 0) << err;
    struct vd_mirror_info mi;
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    std::string l0 = mi.legs[0].device, l1 = mi.legs[1].device;
    EXPECT_EQ(Exec(p, { "vol", "repair", "pool0/m", "--replace", l0.c_str(),
                        "--with", l1.c_str() }, &out, &err), VD_EXIT_FAIL);
    EXPECT_NE(err.find("already holds"), std::string::npos) << err;
    // Fill the third device, then ask for it.
    std::string third;
    for (const char *d : { "d0", "d1", "d2" })
        if (l0 != d && l1 != d)
            third = d;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/fill", "--size", "144M" },
                   &out, &err), 0) << err;
    EXPECT_EQ(Exec(p, { "vol", "repair", "pool0/m", "--replace", l0.c_str(),
                        "--with", third.c_str() }, &out, &err), VD_EXIT_FAIL)
        << err;
    vd_pool_close(p);
}

}  // namespace
