//! Runtime CPU dispatch: hot entry points run in a copy compiled for AVX2 where the CPU has it.
//!
//! The hot loops are generic `#[inline(always)]` code. [`multiversion!`](crate::multiversion)
//! wraps an entry point in a function compiled with `#[target_feature(enable = "avx2")]`, so the
//! same source is vectorised eight lanes wide on CPUs that support it and stays portable
//! elsewhere. Closures do not inherit target features, hence a macro rather than a function.

/// True when the AVX2 copy of the kernels can run on this CPU.
#[inline]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Calls `$inner(args...)` (an `#[inline(always)]` method of `self`) through a copy of it
/// compiled for AVX2 when the CPU supports it.
#[macro_export]
#[allow(clippy::macro_metavars_in_unsafe)] // only identifiers are accepted
macro_rules! multiversion {
    ($self:ident . $inner:ident ( $($arg:ident),* $(,)? ) as $avx:ident) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if $crate::simd::has_avx2() {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { $self.$avx($($arg),*) }
            } else {
                $self.$inner($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $self.$inner($($arg),*)
        }
    }};
}

/// Sets "flush to zero" and "denormals are zero" for the current thread while alive, restoring
/// the previous mode on drop.
///
/// Adam's moments of rarely seen embedding rows decay geometrically and reach subnormal range
/// within an epoch or two; subnormal arithmetic is ~100x slower on x86, which made late epochs
/// twice as slow. TensorFlow runs its CPU kernels with the same flags.
#[derive(Debug)]
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    previous: u32,
}

/// MXCSR bits: flush-to-zero (15) and denormals-are-zero (6).
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut csr: u32 = 0;
    // SAFETY: stmxcsr stores the 32-bit SSE control register to the given, valid address.
    unsafe {
        core::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
    }
    csr
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(csr: u32) {
    // SAFETY: ldmxcsr loads the SSE control register; only mode bits that exist are changed.
    unsafe {
        core::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly, preserves_flags));
    }
}

impl FlushDenormals {
    /// Turns subnormal flushing on for this thread until the guard is dropped.
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let previous = read_mxcsr();
            write_mxcsr(previous | FTZ_DAZ);
            FlushDenormals { previous }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            FlushDenormals {}
        }
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        write_mxcsr(self.previous);
    }
}

/// Turns subnormal flushing on for the current thread for good (for worker threads the engine
/// owns, e.g. a rayon pool's start handler).
pub fn flush_denormals_on_this_thread() {
    #[cfg(target_arch = "x86_64")]
    write_mxcsr(read_mxcsr() | FTZ_DAZ);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_subnormals_only_while_the_guard_lives() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let half = std::hint::black_box(0.5f32);
        assert!(tiny * half > 0.0);
        {
            let _g = FlushDenormals::new();
            #[cfg(target_arch = "x86_64")]
            assert_eq!(std::hint::black_box(tiny) * std::hint::black_box(half), 0.0);
        }
        assert!(std::hint::black_box(tiny) * std::hint::black_box(half) > 0.0);
    }
}
