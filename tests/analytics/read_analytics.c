/* The C reading example of docs/analytics.md, run by make analytics-check on the frames of
 * `segpreproc ! ffnetinfer ! segpostproc`: prints each frame's GstTensor and the regions of
 * its semantic segmentation, read with GStreamer's own API only.
 *
 *   cc read_analytics.c $(pkg-config --cflags --libs gstreamer-analytics-1.0 gstreamer-video-1.0)
 *   ./a.out 'videotestsrc num-buffers=2 ! segpreproc ! ffnetinfer model=… ! segpostproc ! fakesink name=sink'
 */
#include <gst/analytics/analytics.h>
#include <gst/video/video.h>

static guint frames_with_mask;

static void
on_buffer (GstBuffer * buf)
{
  GstTensorMeta *tmeta = gst_buffer_get_tensor_meta (buf);
  if (tmeta && tmeta->num_tensors > 0) {
    GstTensor *t = tmeta->tensors[0];
    gsize ndims;
    gsize *dims = gst_tensor_get_dims (t, &ndims);
    g_print ("tensor %s, %zu dims, last %zu\n", g_quark_to_string (t->id), ndims,
        dims[ndims - 1]);
  }
  GstAnalyticsRelationMeta *rmeta = gst_buffer_get_analytics_relation_meta (buf);
  gpointer state = NULL;
  GstAnalyticsMtd mtd;
  while (rmeta && gst_analytics_relation_meta_iterate (rmeta, &state,
          gst_analytics_segmentation_mtd_get_mtd_type (), &mtd)) {
    GstAnalyticsSegmentationMtd *seg = (GstAnalyticsSegmentationMtd *) & mtd;
    gint x, y;
    guint w, h;
    GstBuffer *mask = gst_analytics_segmentation_mtd_get_mask (seg, &x, &y, &w, &h);
    GstVideoMeta *vmeta = gst_buffer_get_video_meta (mask);
    gpointer rstate = NULL;
    GstAnalyticsMtd cls;
    g_print ("mask %ux%u at %d,%d:", vmeta->width, vmeta->height, x, y);
    if (gst_analytics_relation_meta_get_direct_related (rmeta, mtd.id,
            GST_ANALYTICS_REL_TYPE_RELATE_TO, gst_analytics_cls_mtd_get_mtd_type (),
            &rstate, &cls)) {
      for (gsize i = 0; i < gst_analytics_segmentation_mtd_get_region_count (seg); i++)
        g_print (" %u=%s", gst_analytics_segmentation_mtd_get_region_id (seg, i),
            g_quark_to_string (gst_analytics_cls_mtd_get_quark ((GstAnalyticsClsMtd *)
                    & cls, i)));
    }
    g_print ("\n");
    gst_buffer_unref (mask);
    frames_with_mask++;
  }
}

static GstPadProbeReturn
probe (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  on_buffer (GST_PAD_PROBE_INFO_BUFFER (info));
  return GST_PAD_PROBE_OK;
}

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  if (argc != 2) {
    g_printerr ("usage: %s 'PIPELINE ending in fakesink name=sink'\n", argv[0]);
    return 2;
  }
  GError *err = NULL;
  GstElement *pipeline = gst_parse_launch (argv[1], &err);
  if (!pipeline) {
    g_printerr ("%s\n", err->message);
    return 1;
  }
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  GstPad *pad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, probe, NULL, NULL);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  GstMessage *msg = gst_bus_timed_pop_filtered (GST_ELEMENT_BUS (pipeline),
      GST_CLOCK_TIME_NONE, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  gboolean ok = GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS;
  gst_message_unref (msg);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  g_print ("%u frames with a segmentation mask\n", frames_with_mask);
  return ok && frames_with_mask > 0 ? 0 : 1;
}
