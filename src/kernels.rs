//! What the hand-written row loops of both stages share: the [`Route`] choice and the
//! run-time AVX2 dispatch.
//!
//! The loops (`preprocess::kernels`, `postprocess::kernels`) are kept where a benchmark
//! (`make bench`, "hand-written vs OpenCV route") shows they beat a composition of OpenCV
//! calls: they make one pass where OpenCV needs several. Each has an OpenCV twin
//! ([`Route::OpenCv`], the stages' `reference` modules) that tests compare it with.
//!
//! The loops are plain Rust that the compiler vectorizes. x86-64 builds target the SSE2
//! baseline, so each loop is also compiled for AVX2 and picked at run time.

/// Which implementation a stage uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    /// Fused hand-written loops (the default).
    #[default]
    HandWritten,
    /// Only OpenCV calls: the reference, and the shape an OpenCL (T-API) path would take.
    OpenCv,
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// Defines `pub fn $name` that runs `$body` built for AVX2 when the CPU has it.
macro_rules! dispatch {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::kernels::has_avx2() {
                // SAFETY: the CPU has AVX2 (checked just above).
                return unsafe { avx2($($arg),*) };
            }
            portable($($arg),*)
        }
    };
}

pub(crate) use dispatch;
