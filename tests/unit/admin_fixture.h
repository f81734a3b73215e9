// Shared fixtures of the admin unit tests (tests/unit/admin/*_test.cc,
// one file per admin/ source file): a JSON validator, output capture,
// argument vectors, and the AdminPool fixture (a real pool on sparse files
// in a temporary directory).  Everything has external linkage in namespace
// vdtest_admin, so that every test file's TEST_F(AdminPool, ...) uses the
// one fixture class, as gtest requires of a test suite spread over several
// files.
#ifndef VDLVM_TESTS_UNIT_ADMIN_FIXTURE_H
#define VDLVM_TESTS_UNIT_ADMIN_FIXTURE_H

#include <gtest/gtest.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "replica/vdreplica.h"
#include "admin/vdadmin.h"

namespace vdtest_admin {

// Minimal JSON validator (RFC 8259 grammar, no semantic checks).
struct Json {
    const char *p;
    void ws() { while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++; }
    bool lit(const char *s)
    {
        size_t n = strlen(s);
        if (strncmp(p, s, n))
            return false;
        p += n;
        return true;
    }
    bool str()
    {
        if (*p++ != '"')
            return false;
        while (*p && *p != '"') {
            if ((unsigned char)*p < 0x20)
                return false;
            if (*p == '\\') {
                p++;
                if (*p == 'u') {
                    for (int i = 1; i <= 4; i++)
                        if (!isxdigit((unsigned char)p[i]))
                            return false;
                    p += 5;
                    continue;
                }
                if (!strchr("\"\\/bfnrt", *p) || !*p)
                    return false;
            }
            p++;
        }
        return *p++ == '"';
    }
    bool num()
    {
        const char *s = p;
        if (*p == '-')
            p++;
        while (isdigit((unsigned char)*p) || *p == '.' || *p == 'e' ||
               *p == 'E' || *p == '+' || *p == '-')
            p++;
        return p > s;
    }
    bool val()
    {
        ws();
        bool ok;
        if (*p == '{') {
            p++;
            ws();
            if (*p == '}') {
                p++;
                return true;
            }
            do {
                ws();
                if (!str())
                    return false;
                ws();
                if (*p++ != ':' || !val())
                    return false;
                ws();
            } while (*p == ',' && p++);
            return *p++ == '}';
        }
        if (*p == '[') {
            p++;
            ws();
            if (*p == ']') {
                p++;
                return true;
            }
            do {
                if (!val())
                    return false;
                ws();
            } while (*p == ',' && p++);
            return *p++ == ']';
        }
        if (*p == '"')
            ok = str();
        else if (*p == 't' || *p == 'f' || *p == 'n')
            ok = lit("true") || lit("false") || lit("null");
        else
            ok = num();
        return ok;
    }
    static bool Valid(const std::string &s)
    {
        Json j{ s.c_str() };
        if (!j.val())
            return false;
        j.ws();
        return *j.p == 0;
    }
};

// Captures what a command writes to out and err.
struct Output {
    char *obuf = nullptr, *ebuf = nullptr;
    size_t olen = 0, elen = 0;
    FILE *out, *err;
    Output()
    {
        out = open_memstream(&obuf, &olen);
        err = open_memstream(&ebuf, &elen);
    }
    ~Output()
    {
        Close();
        free(obuf);
        free(ebuf);
    }
    void Close()
    {
        if (out)
            fclose(out);
        if (err)
            fclose(err);
        out = err = nullptr;
    }
    std::string Out() { fflush(out); return std::string(obuf, olen); }
    std::string Err() { fflush(err); return std::string(ebuf, elen); }
};

struct Argv {
    std::vector<std::string> s;
    std::vector<char *> v;
    Argv(std::initializer_list<const char *> a)
    {
        for (auto x : a)
            s.push_back(x);
        for (auto &x : s)
            v.push_back(&x[0]);
        v.push_back(nullptr);
    }
    int argc() const { return (int)s.size(); }
    char **argv() { return v.data(); }
};

// A real pool on sparse files in a temporary directory.
class AdminPool : public ::testing::Test {
  protected:
    std::string dir;
    struct vd_conf_pool conf {};
    std::vector<struct vd_conf_dev> devs;
    std::vector<std::string> paths, names;

    void SetUp() override
    {
        char tmpl[] = "/tmp/vdlvm-admin-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        setenv("VDLVM_RUNDIR", (dir + "/run").c_str(), 1);
        vd_admin_log_init(nullptr);
        Define({ "d0.img", "d1.img" });
    }
    void TearDown() override
    {
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
    void Define(std::vector<std::string> files)
    {
        int n = (int)files.size();
        devs.assign(n, {});
        paths.clear();
        names.clear();
        for (int i = 0; i < n; i++) {
            paths.push_back(dir + "/" + files[i]);
            names.push_back("d" + std::to_string(i));
        }
        for (int i = 0; i < n; i++) {
            devs[i].name = (char *)names[i].c_str();
            devs[i].path = (char *)paths[i].c_str();
            devs[i].size = 64ull << 20;
            devs[i].node = (char *)"nodea";
        }
        conf.file = (char *)"test.yaml";
        conf.name = (char *)"pool0";
        conf.extent_size = 4ull << 20;
        conf.ndevs = n;
        conf.devs = devs.data();
    }
    vd_pool *CreateOpen()
    {
        vd_pool *p = nullptr;
        EXPECT_EQ(vd_pool_create(&conf, 0), 0);
        EXPECT_EQ(vd_pool_open(&conf, &p), 0);
        return p;
    }
    static int Exec(vd_pool *p, std::initializer_list<const char *> a,
                    std::string *out = nullptr, std::string *err = nullptr)
    {
        Argv av(a);
        Output o;
        int rc = vd_admin_exec(p, av.argc(), av.argv(), o.out, o.err);
        if (out)
            *out = o.Out();
        if (err)
            *err = o.Err();
        return rc;
    }
};

} // namespace vdtest_admin

#endif
