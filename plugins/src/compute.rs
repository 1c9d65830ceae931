//! Where segpreproc and segpostproc run: the `compute`, `disable-cpu-fallback` and
//! `active-compute` properties they share, and the one way they announce the outcome (a
//! warning naming the reason when the GPU was asked for and not had, and an element message
//! `<element>-compute` with `requested`, `active` and `reason`).

use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use ffnetseg::opencl::{Active, Compute};

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFfnetsegCompute")]
pub enum ComputeChoice {
    #[enum_value(name = "CPU: the CPU route", nick = "cpu")]
    Cpu = 0,
    #[enum_value(
        name = "GPU: OpenCL through OpenCV; the CPU (with a warning) when no GPU is usable",
        nick = "gpu"
    )]
    Gpu = 1,
    #[enum_value(
        name = "Auto: OpenCL on a real GPU device, else the CPU (never a CPU OpenCL device)",
        nick = "auto"
    )]
    Auto = 2,
}

impl From<ComputeChoice> for Compute {
    fn from(c: ComputeChoice) -> Compute {
        match c {
            ComputeChoice::Cpu => Compute::Cpu,
            ComputeChoice::Gpu => Compute::Gpu,
            ComputeChoice::Auto => Compute::Auto,
        }
    }
}

/// Marks the enum as plugin API (documented with the elements that use it).
pub fn register() {
    ComputeChoice::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
}

/// The CPU until a GPU route is measured faster on a real board (docs/gpu-stages.md).
pub const DEFAULT_COMPUTE: ComputeChoice = ComputeChoice::Cpu;
pub const DEFAULT_DISABLE_CPU_FALLBACK: bool = false;

/// The three properties; `what` names the stage in the blurbs.
pub fn properties(what: &str) -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecEnum::builder_with_default("compute", DEFAULT_COMPUTE)
            .nick("Compute")
            .blurb(&format!(
                "Where {what} runs: cpu, gpu (OpenCL through OpenCV) or auto (a GPU OpenCL \
                 device when there is one). Applies from the next frame"
            ))
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("disable-cpu-fallback")
            .nick("Disable CPU fallback")
            .blurb(
                "With compute=gpu: fail instead of running on the CPU when no OpenCL GPU is \
                 usable. Applies from the next frame",
            )
            .default_value(DEFAULT_DISABLE_CPU_FALLBACK)
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("active-compute")
            .nick("Active compute")
            .blurb(&format!(
                "Where {what} really runs: 'cpu' or 'gpu: <OpenCL device>' (read-only; empty \
                 before the first frame)"
            ))
            .read_only()
            .build(),
    ]
}

/// What an element last announced, so a rebuilt stage that lands where it was says nothing.
#[derive(Default)]
pub struct Announced {
    last: Mutex<Option<(Compute, Active, Option<String>)>>,
}

impl Announced {
    /// `active-compute`'s value.
    pub fn active(&self) -> String {
        self.last
            .lock()
            .unwrap()
            .as_ref()
            .map(|(_, a, _)| a.describe())
            .unwrap_or_default()
    }

    pub fn reset(&self) {
        *self.last.lock().unwrap() = None;
    }

    /// Logs and posts where the stage runs when it changed: a warning (debug log and bus)
    /// when `reason` says why the GPU could not be had, the `<element>-compute` message always.
    pub fn announce<I: ElementImpl>(
        &self,
        imp: &I,
        cat: gst::DebugCategory,
        requested: Compute,
        active: &Active,
        reason: Option<&str>,
    ) where
        I::Type: IsA<gst::Element>,
    {
        let now = (requested, active.clone(), reason.map(str::to_owned));
        {
            let mut last = self.last.lock().unwrap();
            if last.as_ref() == Some(&now) {
                return;
            }
            *last = Some(now);
        }
        let element = imp.obj();
        let name = element
            .factory()
            .map(|f| f.name().to_string())
            .unwrap_or_default();
        let active_text = active.describe();
        match reason {
            Some(why) => {
                let text = format!(
                    "compute={} is not possible, running on the CPU: {why}",
                    requested.as_str()
                );
                gst::warning!(cat, obj = &*element, "{text}");
                gst::element_imp_warning!(imp, gst::LibraryError::Init, ("{text}"));
            }
            None => gst::info!(
                cat,
                obj = &*element,
                "compute={} runs on {active_text}",
                requested.as_str()
            ),
        }
        let _ = element.post_message(
            gst::message::Element::builder(
                gst::Structure::builder(format!("{name}-compute"))
                    .field("requested", requested.as_str())
                    .field("active", active_text)
                    .field("reason", reason.unwrap_or(""))
                    .build(),
            )
            .src(&*element)
            .build(),
        );
    }
}
