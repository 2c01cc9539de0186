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
