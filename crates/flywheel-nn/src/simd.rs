//! Runtime CPU dispatch: run a closure compiled with AVX2 where the CPU has it.
//!
//! The hot loops are generic `#[inline(always)]` code; calling them through [`dispatch`]
//! instantiates them inside a function compiled for AVX2, so the same source is vectorised
//! eight lanes wide on CPUs that support it and stays portable elsewhere. Fused multiply-add is
//! deliberately not enabled, so both paths round identically and results do not depend on the CPU.

/// Runs `f`, compiled for AVX2 when the CPU supports it.
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
