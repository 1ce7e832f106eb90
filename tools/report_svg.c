/* guard-report --svg: a self-contained, interactive flame graph of one profile.
 *
 * The layout is drawn statically (every frame's rect and clipped label are in the file), so any
 * SVG renderer shows it; the inline script only adds behaviour in a browser: click a frame to
 * zoom into it (its ancestors stay, dimmed, below), click the root or "Reset zoom" to come back,
 * hover for the full name and value (a <title> per frame, and the details line at the bottom).
 * Root at the bottom, callees above, widths proportional to the profile's value, siblings sorted
 * by name as flamegraph.pl does (so two graphs of one program line up).
 */
#include "tools/report_model.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WIDTH 1200.0
#define PAD 10.0
#define FRAME_H 16.0
#define TOP_H 50.0
#define BOTTOM_H 34.0
#define MIN_WIDTH 0.1      /* px: narrower frames are left out, as flamegraph.pl does */
#define CHAR_W 7.0         /* mean glyph width of 12px Verdana/DejaVu Sans */

struct node {
	char *name;
	double value;
	bool guard;
	struct node **kids;
	size_t nkids, capkids;
};

static struct node *node_new(const char *name, bool guard)
{
	struct node *n = calloc(1, sizeof(*n));
	if (n) {
		n->name = strdup(name);
		n->guard = guard;
		if (!n->name) {
			free(n);
			n = NULL;
		}
	}
	return n;
}

static struct node *node_child(struct node *parent, const char *name, bool guard)
{
	for (size_t i = 0; i < parent->nkids; i++)
		if (strcmp(parent->kids[i]->name, name) == 0)
			return parent->kids[i];
	if (parent->nkids == parent->capkids) {
		size_t cap = parent->capkids ? parent->capkids * 2 : 4;
		struct node **grown = realloc(parent->kids, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		parent->kids = grown;
		parent->capkids = cap;
	}
	struct node *n = node_new(name, guard);
	if (n)
		parent->kids[parent->nkids++] = n;
	return n;
}

static void node_free(struct node *n)
{
	for (size_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->name);
	free(n);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp((*(struct node *const *)a)->name, (*(struct node *const *)b)->name);
}

static int node_depth(struct node *n)
{
	int d = 0;

	if (n->nkids > 1)
		qsort(n->kids, n->nkids, sizeof(*n->kids), cmp_name);
	for (size_t i = 0; i < n->nkids; i++) {
		int k = node_depth(n->kids[i]);
		if (k > d)
			d = k;
	}
	return d + 1;
}

/* ---- SVG output ---- */

static void xml_text(FILE *f, const char *s, size_t max_chars)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p && n < max_chars; p++) {
		/* Count characters, not UTF-8 continuation bytes. */
		if ((*p & 0xc0) != 0x80)
			n++;
		switch (*p) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default:
			if (*p < 0x20)
				fputc('?', f);
			else
				fputc(*p, f);
		}
	}
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* The label that fits in w pixels: the name, or its start and "..", or nothing. */
static void label(FILE *f, const char *name, double w)
{
	size_t fit = w > 6 ? (size_t)((w - 6) / CHAR_W) : 0;
	size_t len = utf8_chars(name);

	if (fit < 3)
		return;
	if (len <= fit) {
		xml_text(f, name, len);
	} else {
		xml_text(f, name, fit - 2);
		fputs("..", f);
	}
}

/* flamegraph.pl's "hot" palette, seeded by the name so a function keeps its colour. */
static void color(const struct node *n, char *out, size_t outlen)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)n->name; *p; p++)
		h = (h ^ *p) * 16777619u;
	double v1 = (h & 0xff) / 255.0, v2 = ((h >> 8) & 0xff) / 255.0, v3 = ((h >> 16) & 0xff) / 255.0;
	if (n->guard)   /* the guard's own frames (hooks): cool grey, out of the way */
		snprintf(out, outlen, "rgb(%d,%d,%d)", 170 + (int)(20 * v1), 180 + (int)(20 * v1), 200);
	else
		snprintf(out, outlen, "rgb(%d,%d,%d)", 205 + (int)(50 * v3), (int)(230 * v1),
			 (int)(55 * v2));
}

struct draw {
	FILE *f;
	double total;
	double height;
	const char *unit;
	size_t drawn;
};

static void draw_node(struct draw *d, const struct node *n, double x0, int depth)
{
	double w = n->value / d->total * (WIDTH - 2 * PAD);
	if (w < MIN_WIDTH)
		return;
	double x = PAD + x0 / d->total * (WIDTH - 2 * PAD);
	double y = d->height - BOTTOM_H - (depth + 1) * FRAME_H;
	char fill[32], value[64];

	color(n, fill, sizeof(fill));
	rp_human(n->value, d->unit, value, sizeof(value));
	fprintf(d->f, "<g class=\"f\" data-x=\"%.9f\" data-w=\"%.9f\" data-d=\"%d\"><title>",
		x0 / d->total, n->value / d->total, depth);
	xml_text(d->f, n->name, SIZE_MAX);
	fprintf(d->f, " (%s, %.2f%%)</title>", value, 100.0 * n->value / d->total);
	fprintf(d->f, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\" rx=\"2\"/>",
		x, y, w, FRAME_H - 1, fill);
	fprintf(d->f, "<text x=\"%.2f\" y=\"%.1f\" data-n=\"", x + 3, y + FRAME_H - 4.5);
	xml_text(d->f, n->name, SIZE_MAX);
	fputs("\">", d->f);
	label(d->f, n->name, w);
	fputs("</text></g>\n", d->f);
	d->drawn++;

	double cx = x0;
	for (size_t i = 0; i < n->nkids; i++) {
		draw_node(d, n->kids[i], cx, depth + 1);
		cx += n->kids[i]->value;
	}
}

/* Zoom: a frame's box is [x, x+w) of the root's width at depth d. Frames inside the clicked
 * one's box and at least as deep are rescaled to the full width; its ancestors stretch across,
 * dimmed; everything else is hidden. */
static const char script[] =
	"<script type=\"text/ecmascript\"><![CDATA[\n"
	"'use strict';\n"
	"var W = %.1f, PAD = %.1f, CW = %.1f;\n"
	"var frames = Array.prototype.slice.call(document.querySelectorAll('g.f'));\n"
	"var details = document.getElementById('details');\n"
	"var reset = document.getElementById('reset');\n"
	"function fit(t, w) {\n"
	"  var name = t.getAttribute('data-n'), n = Math.floor((w - 6) / CW);\n"
	"  t.textContent = n < 3 ? '' : name.length <= n ? name : name.substring(0, n - 2) + '..';\n"
	"}\n"
	"function zoom(z) {\n"
	"  var zx = +z.getAttribute('data-x'), zw = +z.getAttribute('data-w');\n"
	"  var zd = +z.getAttribute('data-d'), eps = 1e-9, full = W - 2 * PAD;\n"
	"  frames.forEach(function (g) {\n"
	"    var x = +g.getAttribute('data-x'), w = +g.getAttribute('data-w'), d = +g.getAttribute('data-d');\n"
	"    var r = g.querySelector('rect'), t = g.querySelector('text'), nx, nw;\n"
	"    if (d < zd && x <= zx + eps && x + w >= zx + zw - eps) { nx = PAD; nw = full; g.style.opacity = 0.5; }\n"
	"    else if (d >= zd && x >= zx - eps && x + w <= zx + zw + eps) {\n"
	"      nx = PAD + (x - zx) / zw * full; nw = w / zw * full; g.style.opacity = 1;\n"
	"    } else { g.style.display = 'none'; return; }\n"
	"    if (nw < 0.1) { g.style.display = 'none'; return; }\n"
	"    g.style.display = '';\n"
	"    r.setAttribute('x', nx.toFixed(2)); r.setAttribute('width', nw.toFixed(2));\n"
	"    t.setAttribute('x', (nx + 3).toFixed(2)); fit(t, nw);\n"
	"  });\n"
	"  reset.style.opacity = zd > 0 || zw < 1 ? 1 : 0;\n"
	"}\n"
	"frames.forEach(function (g) {\n"
	"  g.addEventListener('click', function () { zoom(g); });\n"
	"  g.addEventListener('mouseover', function () { details.textContent = g.querySelector('title').textContent; });\n"
	"  g.addEventListener('mouseout', function () { details.textContent = ' '; });\n"
	"});\n"
	"reset.addEventListener('click', function () { if (frames.length) zoom(frames[0]); });\n"
	"]]></script>\n";

static int write_svg(FILE *f, const struct rp_report *r, const struct rp_profile *p,
		     struct node *root, size_t nsites)
{
	const cJSON *g = cJSON_GetObjectItemCaseSensitive(r->root, "guard");
	const char *exe = rp_str(g, "exe") ?: "?";
	const char *base = strrchr(exe, '/');
	int depth = root->value > 0 ? node_depth(root) : 1;
	double height = TOP_H + depth * FRAME_H + BOTTOM_H;
	char total[64];

	rp_human(root->value, p->unit, total, sizeof(total));
	fprintf(f, "<?xml version=\"1.0\" standalone=\"no\"?>\n"
		   "<svg version=\"1.1\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
		   "xmlns=\"http://www.w3.org/2000/svg\">\n",
		WIDTH, height, WIDTH, height);
	fputs("<style>text { font-family: Verdana, 'DejaVu Sans', sans-serif; font-size: 12px; "
	      "fill: #000; } g.f { cursor: pointer; } g.f:hover rect { stroke: #000; stroke-width: 0.5; } "
	      "#title { font-size: 17px; } #reset { cursor: pointer; opacity: 0; }</style>\n", f);
	fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#f8f8f0\"/>\n", WIDTH,
		height);
	fprintf(f, "<text id=\"title\" x=\"%.0f\" y=\"24\" text-anchor=\"middle\">libguard %s profile: ",
		WIDTH / 2, p->name);
	xml_text(f, base ? base + 1 : exe, SIZE_MAX);
	fprintf(f, " (pid %.0f)</text>\n", rp_num(g, "pid"));
	fprintf(f, "<text x=\"%.0f\" y=\"42\" text-anchor=\"middle\" fill=\"#555\">%s: %s in %zu "
		   "site%s; click a frame to zoom, hover for details</text>\n",
		WIDTH / 2, p->title, total, nsites, nsites == 1 ? "" : "s");
	fprintf(f, "<text id=\"reset\" x=\"%.0f\" y=\"24\">Reset zoom</text>\n", PAD);
	fprintf(f, "<text id=\"details\" x=\"%.0f\" y=\"%.0f\"> </text>\n", PAD, height - 12);

	if (root->value <= 0) {
		fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">no samples in this "
			   "profile</text>\n", WIDTH / 2, TOP_H + 10);
	} else {
		struct draw d = { .f = f, .total = root->value, .height = height, .unit = p->unit };
		draw_node(&d, root, 0, 0);
	}
	fprintf(f, script, WIDTH, PAD, CHAR_W);
	fputs("</svg>\n", f);
	return ferror(f) ? -EIO : 0;
}

int rp_svg(const struct rp_report *r, const char *profile, const char *out_path)
{
	const struct rp_profile *p = rp_profile_find(profile);
	const cJSON *sites = p ? rp_profile_sites(r, p) : NULL;
	const cJSON *site, *fr;
	char name[1024];
	size_t nsites = 0;

	if (!sites) {
		fprintf(stderr, "guard-report: error: %s has no %s profile (its guard is disabled)\n",
			r->path, profile);
		return 2;
	}
	struct node *root = node_new("all", false);
	if (!root)
		return 2;
	cJSON_ArrayForEach(site, sites) {
		double v = rp_num(site, p->value);
		const cJSON *frames = rp_frames(r, cJSON_GetObjectItemCaseSensitive(site, "stack"));
		struct node *n = root;
		if (v <= 0)
			continue;
		nsites++;
		root->value += v;
		/* Frames are innermost first in the report: walk them backwards, root first. */
		int nf = cJSON_GetArraySize(frames);
		if (nf == 0) {
			n = node_child(root, "[unknown]", false);
			if (n)
				n->value += v;
			continue;
		}
		for (int k = nf - 1; k >= 0 && n; k--) {
			fr = cJSON_GetArrayItem(frames, k);
			rp_frame_name(fr, name, sizeof(name));
			n = node_child(n, name, rp_frame_is_guard(fr));
			if (n)
				n->value += v;
		}
	}

	/* Written to a temp file and renamed, so a viewer never loads half a graph. */
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", out_path, (int)getpid());
	FILE *f = fopen(tmp, "w");
	int rc = f ? write_svg(f, r, p, root, nsites) : -errno;
	if (f && fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, out_path) != 0)
		rc = -errno;
	if (rc != 0) {
		fprintf(stderr, "guard-report: error: cannot write %s: %s\n", out_path, strerror(-rc));
		unlink(tmp);
	} else {
		printf("flame graph of the %s profile (%zu site%s) written to %s\n", p->name, nsites,
		       nsites == 1 ? "" : "s", out_path);
	}
	node_free(root);
	return rc ? 2 : 0;
}
