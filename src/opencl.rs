//! Where a stage runs (`compute=cpu|gpu|auto`) and the OpenCL device the GPU routes use,
//! through OpenCV's OpenCL layer (T-API).
//!
//! OpenCV owns the OpenCL context: it loads `libOpenCL.so` (the ICD loader) on first use and
//! picks one device, a GPU unless `OPENCV_OPENCL_DEVICE` says otherwise (`:CPU:` picks a CPU
//! device such as PoCL, `disabled` turns OpenCL off). The choice is made once per process.
//!
//! - `gpu` runs the stage on that device; when there is none (no ICD, no GPU device, a kernel
//!   that does not build…) the stage runs on the CPU and [`Choice::reason`] says why.
//! - `auto` takes the device only when it is a real GPU; otherwise the CPU, silently.
//! - A CPU OpenCL device (PoCL) is never taken by `auto`, and by `gpu` only when
//!   `FFNETSEG_OPENCL_ALLOW_CPU=1` is set: a test-only opt-in, so the GPU kernels can be
//!   checked on machines without a GPU. It is not faster than the CPU route there.
//!
//! Built programs are cached by OpenCV per context (keyed by source and build options), so
//! each kernel variant is compiled once per process; [`build_kernel`] is the one place that
//! builds them and turns a build log into a reason.

use std::sync::OnceLock;

use opencv::core::{self, Device, Kernel, ProgramSource, UMat};
use opencv::prelude::*;

use crate::error::{Error, Result};

/// Env var that lets `compute=gpu` use a CPU OpenCL device (tests on machines without a GPU).
pub const ALLOW_CPU_ENV: &str = "FFNETSEG_OPENCL_ALLOW_CPU";

/// Where the user asked a stage to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compute {
    /// The CPU route (the default until a GPU route is shown faster on a real board's GPU).
    #[default]
    Cpu,
    /// The OpenCL route, falling back to the CPU (or failing) when no device is usable.
    Gpu,
    /// The OpenCL route on a real GPU device; the CPU otherwise, without a warning.
    Auto,
}

impl Compute {
    pub fn as_str(self) -> &'static str {
        match self {
            Compute::Cpu => "cpu",
            Compute::Gpu => "gpu",
            Compute::Auto => "auto",
        }
    }
}

/// Where a stage really runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Active {
    #[default]
    Cpu,
    /// The OpenCL device's name.
    Gpu(String),
}

impl Active {
    /// "cpu", or "gpu: <device name>" (what `active-compute` shows).
    pub fn describe(&self) -> String {
        match self {
            Active::Cpu => "cpu".into(),
            Active::Gpu(name) => format!("gpu: {name}"),
        }
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self, Active::Gpu(_))
    }
}

/// The outcome of a request: where the stage runs, and why not on the GPU when it was asked
/// for (`compute=gpu`) and could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub active: Active,
    pub reason: Option<String>,
}

/// The OpenCL device OpenCV chose for this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: String,
    pub version: String,
    /// A CPU device (PoCL): only with the test-only opt-in.
    pub is_cpu: bool,
}

/// The device, or why there is none; probed once per process (OpenCV's choice is too).
pub fn device() -> std::result::Result<DeviceInfo, String> {
    static DEVICE: OnceLock<std::result::Result<DeviceInfo, String>> = OnceLock::new();
    DEVICE.get_or_init(probe).clone()
}

fn probe() -> std::result::Result<DeviceInfo, String> {
    for var in ["OPENCV_OPENCL_RUNTIME", "OPENCV_OPENCL_DEVICE"] {
        if std::env::var(var).is_ok_and(|v| v == "disabled") {
            return Err(format!("OpenCL is disabled by {var}=disabled"));
        }
    }
    let cv = |e: opencv::Error| format!("OpenCV could not query OpenCL: {e}");
    if !core::have_opencl().map_err(cv)? {
        return Err(no_runtime_reason());
    }
    let context = core::Context::get_default(true).map_err(cv)?;
    if context.ndevices().map_err(cv)? == 0 {
        return Err(
            "OpenCL has a platform but OpenCV found no GPU device on it (a CPU-only OpenCL \
             such as PoCL is not used unless OPENCV_OPENCL_DEVICE=:CPU: and \
             FFNETSEG_OPENCL_ALLOW_CPU=1 are set, for tests)"
                .into(),
        );
    }
    let d = Device::get_default().map_err(cv)?;
    if !d.available().map_err(cv)? {
        return Err(format!(
            "the OpenCL device {} is not available",
            d.name().unwrap_or_default()
        ));
    }
    core::set_use_opencl(true).map_err(cv)?;
    Ok(DeviceInfo {
        name: d.name().map_err(cv)?,
        version: d.version().map_err(cv)?,
        is_cpu: d.typ().map_err(cv)? & core::Device_TYPE_CPU != 0,
    })
}

/// Why OpenCV has no OpenCL: names the missing piece where it can tell.
fn no_runtime_reason() -> String {
    let vendors = std::env::var("OCL_ICD_VENDORS").unwrap_or_else(|_| "/etc/OpenCL/vendors".into());
    let icds = std::fs::read_dir(&vendors)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".icd"))
                .count()
        })
        .unwrap_or(0);
    if icds == 0 {
        format!(
            "no OpenCL runtime: no ICD in {vendors} (install the GPU vendor's OpenCL driver, \
             e.g. the Adreno OpenCL library on Qualcomm boards)"
        )
    } else {
        format!(
            "no OpenCL runtime: {icds} ICD file(s) in {vendors}, but none loaded a platform \
             (is libOpenCL.so.1, the ICD loader, installed, and the driver for this kernel?)"
        )
    }
}

/// Resolves a request against the process's device. `Compute::Cpu` never touches OpenCL.
pub fn choose(request: Compute) -> Choice {
    let allow_cpu = std::env::var(ALLOW_CPU_ENV).is_ok_and(|v| v == "1");
    match request {
        Compute::Cpu => Choice {
            active: Active::Cpu,
            reason: None,
        },
        _ => match device() {
            Ok(d) if !d.is_cpu || (request == Compute::Gpu && allow_cpu) => Choice {
                active: Active::Gpu(d.name),
                reason: None,
            },
            Ok(d) => Choice {
                active: Active::Cpu,
                reason: (request == Compute::Gpu).then(|| {
                    format!(
                        "the OpenCL device {} is a CPU device, not a GPU (set {ALLOW_CPU_ENV}=1 \
                         to use it anyway, for tests: it is not faster than the CPU route)",
                        d.name
                    )
                }),
            },
            Err(why) => Choice {
                active: Active::Cpu,
                reason: (request == Compute::Gpu).then_some(why),
            },
        },
    }
}

/// Builds kernel `name` of `source` with `options`; a failed build is an error carrying the
/// build log's start (the reason a GPU route falls back).
pub fn build_kernel(name: &str, source: &str, options: &str) -> Result<Kernel> {
    let program = ProgramSource::from_str(source)?;
    let mut kernel = Kernel::default();
    let mut log = String::new();
    let built = kernel.create_ext(name, &program, options, &mut log)?;
    if !built || kernel.empty()? {
        let log: String = log.chars().take(600).collect();
        return Err(Error::Gpu(format!(
            "the OpenCL kernel {name} did not build ({options}): {log}"
        )));
    }
    Ok(kernel)
}

/// Sets kernel arguments in order, each call returning the next index.
pub struct Args<'k> {
    kernel: &'k mut Kernel,
    next: i32,
}

impl<'k> Args<'k> {
    pub fn new(kernel: &'k mut Kernel) -> Self {
        Args { kernel, next: 0 }
    }

    /// A buffer as a bare `__global` pointer.
    pub fn buffer(mut self, m: &UMat) -> Result<Self> {
        let arg = core::KernelArg::ptr_read_write(m)?;
        self.next = self.kernel.set_kernel_arg(self.next, &arg)?;
        self.check()
    }

    pub fn i32(self, v: i32) -> Result<Self> {
        self.scalar(&v)
    }

    pub fn f32(self, v: f32) -> Result<Self> {
        self.scalar(&v)
    }

    fn scalar<T: Copy>(mut self, v: &T) -> Result<Self> {
        // SAFETY: `v` points to a live value of exactly `size_of::<T>()` bytes, which OpenCL
        // copies during the call.
        self.next = unsafe {
            self.kernel
                .set_2(self.next, (v as *const T).cast(), std::mem::size_of::<T>())?
        };
        self.check()
    }

    /// OpenCV returns -1 when an argument could not be set.
    fn check(self) -> Result<Self> {
        if self.next < 0 {
            return Err(Error::Gpu(
                "an OpenCL kernel argument could not be set".into(),
            ));
        }
        Ok(self)
    }
}

/// Runs a 2-D kernel over `width×height` work items (work groups of 16×8; the kernel checks
/// its bounds) and waits for it: OpenCV refuses to start a kernel object again while an
/// asynchronous run of it is in flight, and the stages read the result right after anyway.
pub fn run_2d(kernel: &mut Kernel, width: usize, height: usize) -> Result<()> {
    let mut global = [width.next_multiple_of(16), height.next_multiple_of(8)];
    let mut local = [16usize, 8];
    if !kernel.run_(&mut global, &mut local, true, &core::Queue::get_default()?)? {
        return Err(Error::Gpu("the OpenCL kernel did not start".into()));
    }
    Ok(())
}

/// A host slice as a 1-row byte Mat (no copy), to upload from or download into.
pub fn upload(bytes: &[u8], dst: &mut UMat) -> Result<()> {
    let m = Mat::new_rows_cols_with_bytes::<u8>(1, bytes.len() as i32, bytes)?;
    m.copy_to(dst)?;
    Ok(())
}

/// Reads `src` (a 1-row byte UMat of `out.len()` bytes) into `out`; waits for the kernels
/// that write it.
pub fn download(src: &UMat, out: &mut [u8]) -> Result<()> {
    if src.total() * src.elem_size()? != out.len() {
        return Err(Error::Gpu(format!(
            "device buffer has {} bytes, the host buffer {}",
            src.total() * src.elem_size()?,
            out.len()
        )));
    }
    let n = out.len() as i32;
    let ptr = out.as_ptr();
    let mut m = Mat::new_rows_cols_with_bytes_mut::<u8>(1, n, out)?;
    src.copy_to(&mut m)?;
    crate::cvmat::ensure_same_data(&m, ptr, "tensor download")
}

/// An empty 1-row byte buffer on the device of `len` bytes (kept between frames).
pub fn device_buffer(buffer: &mut UMat, len: usize) -> Result<()> {
    if buffer.total() != len || buffer.typ() != core::CV_8UC1 {
        *buffer = UMat::new_rows_cols_def(1, len as i32, core::CV_8UC1)?;
    }
    Ok(())
}
