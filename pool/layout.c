/* vdlvm: the layout registry — every layout the pool knows, listed once.
 *
 * Adding a layout: its ops table (designated initialisers at the bottom of
 * its own file), one extern below and one line in g_layouts.  The layout
 * id stored on disk is compared here and nowhere else.  Constant data:
 * no lock. */
#include <errno.h>
#include <string.h>

#include "layout.h"

extern const struct vd_layout_ops vd_linear_layout; /* pool/linear.c */
extern const struct vd_layout_ops vd_mirror_layout; /* replica/mirror.c */
extern const struct vd_layout_ops vd_thin_layout;   /* pool/thin.c (upper) */

static const struct vd_layout_ops *const g_layouts[] = {
    &vd_linear_layout,
    &vd_mirror_layout,
    &vd_thin_layout,
};

#define NLAYOUTS (sizeof(g_layouts) / sizeof(g_layouts[0]))

const struct vd_layout_ops *vd_layout_get(uint32_t id)
{
    for (size_t i = 0; i < NLAYOUTS; i++)
        if (g_layouts[i]->id == id)
            return g_layouts[i];
    return NULL;
}

const char *vd_layout_name(uint32_t layout)
{
    const struct vd_layout_ops *l = vd_layout_get(layout);
    return l ? l->name : "unknown";
}

int vd_layout_from_name(const char *name, enum vd_layout *out)
{
    for (size_t i = 0; i < NLAYOUTS; i++)
        if (!strcmp(name, g_layouts[i]->name)) {
            *out = (enum vd_layout)g_layouts[i]->id;
            return 0;
        }
    return -EINVAL;
}

unsigned vd_layout_create_opts(uint32_t layout, uint32_t *default_copies)
{
    const struct vd_layout_ops *l = vd_layout_get(layout);

    *default_copies = l && l->default_copies ? l->default_copies : 1;
    return l ? l->create_opts : 0;
}

const char *vd_layout_opts_owner(unsigned bits)
{
    for (size_t i = 0; i < NLAYOUTS; i++)
        if (g_layouts[i]->create_opts & bits)
            return g_layouts[i]->name;
    return "?";
}

int vd_layout_resolve(const struct vd_vol_opts *opts,
                      const struct vd_layout_ops **lower,
                      const struct vd_layout_ops **upper)
{
    const struct vd_layout_ops *l = vd_layout_get(opts->layout), *up = NULL;

    if (l && l->stack) { /* an upper layout named: on its default lower */
        up = l;
        l = vd_layout_get(up->stack_on);
    }
    if (opts->thin) {
        const struct vd_layout_ops *t = vd_layout_get(VD_LAYOUT_THIN);
        if (up && up != t)
            return -EINVAL;
        up = t;
    }
    if (!l || l->stack || (up && !up->stack))
        return -EINVAL;
    *lower = l;
    *upper = up;
    return 0;
}
