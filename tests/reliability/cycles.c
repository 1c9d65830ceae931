/* State-cycle driver for tests/reliability/valgrind.sh: builds one pipeline and takes it
 * NULL -> PLAYING -> NULL N times (default 50), alternating ffnetinfer mode=sync and
 * mode=async; each PLAYING waits for preroll, so a frame has gone through all three
 * elements. Exits 1 on an error message, a missed state change or no frame.
 *
 *   cycles MODEL [N]
 *
 * Plain C against libgstreamer so valgrind attributes every frame in libgstffnetseg.so to
 * the plugin, not to a test harness linked with it. */
#include <gst/gst.h>
#include <stdio.h>
#include <stdlib.h>

static GstPadProbeReturn count_frame(GstPad *pad, GstPadProbeInfo *info, gpointer data) {
    (void)pad;
    (void)info;
    g_atomic_int_inc((gint *)data);
    return GST_PAD_PROBE_OK;
}

int main(int argc, char **argv) {
    gst_init(&argc, &argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [CYCLES]\n", argv[0]);
        return 2;
    }
    int cycles = argc > 2 ? atoi(argv[2]) : 50;
    gchar *desc = g_strdup_printf(
        "videotestsrc ! video/x-raw,width=64,height=48 ! segpreproc ! "
        "ffnetinfer name=infer model=%s ! segpostproc ! fakesink name=sink", argv[1]);
    GError *err = NULL;
    GstElement *pipeline = gst_parse_launch(desc, &err);
    g_free(desc);
    if (!pipeline || err) {
        /* gst_parse_launch returns a partial pipeline when an element is missing. */
        fprintf(stderr, "cannot build the pipeline: %s\n", err ? err->message : "?");
        return 1;
    }
    GstElement *infer = gst_bin_get_by_name(GST_BIN(pipeline), "infer");
    GstElement *sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    GstPad *pad = gst_element_get_static_pad(sink, "sink");
    gint frames = 0;
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_frame, &frames, NULL);
    GstBus *bus = gst_element_get_bus(pipeline);
    int rc = 0;
    for (int i = 0; i < cycles && rc == 0; i++) {
        gst_util_set_object_arg(G_OBJECT(infer), "mode", i % 2 ? "async" : "sync");
        gint before = g_atomic_int_get(&frames);
        gst_element_set_state(pipeline, GST_STATE_PLAYING);
        GstState state;
        GstStateChangeReturn ret =
            gst_element_get_state(pipeline, &state, NULL, 300 * GST_SECOND);
        GstMessage *msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
        if (msg) {
            GError *e = NULL;
            gst_message_parse_error(msg, &e, NULL);
            fprintf(stderr, "cycle %d: error: %s\n", i, e->message);
            g_error_free(e);
            gst_message_unref(msg);
            rc = 1;
        } else if (ret == GST_STATE_CHANGE_FAILURE || state != GST_STATE_PLAYING) {
            fprintf(stderr, "cycle %d: not PLAYING\n", i);
            rc = 1;
        } else if (g_atomic_int_get(&frames) == before) {
            fprintf(stderr, "cycle %d: no frame reached the sink\n", i);
            rc = 1;
        }
        gst_element_set_state(pipeline, GST_STATE_NULL);
    }
    printf("%d cycles, %d frames, %s\n", cycles, g_atomic_int_get(&frames), rc ? "FAILED" : "ok");
    gst_object_unref(bus);
    gst_object_unref(pad);
    gst_object_unref(sink);
    gst_object_unref(infer);
    gst_object_unref(pipeline);
    gst_deinit();
    return rc;
}
