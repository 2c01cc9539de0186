//! The scalar types the engine computes in: `f32` for training and serving, `f64` for gradient
//! checks. Both run the same layer code.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

use crate::math;

/// A floating-point scalar with the operations the layers need.
pub trait Real:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + Sum
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64`.
    fn to_f64(self) -> f64;
    /// `e^x`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// `1 / (1 + e^-x)`.
    fn sigmoid(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// The larger of two values.
    fn max(self, other: Self) -> Self;
    /// The error function.
    fn erf(self) -> Self;

    /// `C = alpha * A * B + beta * C` with explicit (non-negative) row/column strides:
    /// `A[i, l] = a[i * rsa + l * csa]`, `B[l, j] = b[l * rsb + j * csb]`,
    /// `C[i, j] = c[i * rsc + j * csc]`. Panics if a stride reaches outside a slice (a bug).
    #[allow(clippy::too_many_arguments)]
    fn gemm_strided(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: (&[Self], usize, usize),
        b: (&[Self], usize, usize),
        beta: Self,
        c: (&mut [Self], usize, usize),
    );
    /// `C = alpha * op(A) * op(B) + beta * C` on row-major matrices: `op(A)` is `[m, k]`,
    /// `op(B)` is `[k, n]`, `C` is `[m, n]`; `op` transposes when the flag is set.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        a_trans: bool,
        b: &[Self],
        b_trans: bool,
        beta: Self,
        c: &mut [Self],
    ) {
        let (rsa, csa) = strides(m, k, a_trans);
        let (rsb, csb) = strides(k, n, b_trans);
        Self::gemm_strided(
            m,
            k,
            n,
            alpha,
            (a, rsa, csa),
            (b, rsb, csb),
            beta,
            (c, n, 1),
        );
    }
}

/// The `gemm_strided` method of a `Real` impl, over `matrixmultiply`'s `$func`.
macro_rules! strided_gemm {
    ($func:ident) => {
        fn gemm_strided(
            m: usize,
            k: usize,
            n: usize,
            alpha: Self,
            a: (&[Self], usize, usize),
            b: (&[Self], usize, usize),
            beta: Self,
            c: (&mut [Self], usize, usize),
        ) {
            if m == 0 || n == 0 {
                return;
            }
            check_extent(a.0.len(), m, k, a.1, a.2);
            check_extent(b.0.len(), k, n, b.1, b.2);
            check_extent(c.0.len(), m, n, c.1, c.2);
            // SAFETY: every index reached through the strides is inside its slice (checked above).
            unsafe {
                matrixmultiply::$func(
                    m,
                    k,
                    n,
                    alpha,
                    a.0.as_ptr(),
                    a.1 as isize,
                    a.2 as isize,
                    b.0.as_ptr(),
                    b.1 as isize,
                    b.2 as isize,
                    beta,
                    c.0.as_mut_ptr(),
                    c.1 as isize,
                    c.2 as isize,
                )
            }
        }
    };
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp(self) -> Self {
        math::exp_f32(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f32::ln(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        math::sigmoid_f32(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        math::tanh_f32(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erff(self)
    }
    strided_gemm!(sgemm);
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f64::abs(self)
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + f64::exp(-self))
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erf(self)
    }
    strided_gemm!(dgemm);
}

/// Row and column strides of an `[rows, cols]` operand stored row-major, or stored as its
/// transpose (`[cols, rows]` row-major) when `trans`.
fn strides(rows: usize, cols: usize, trans: bool) -> (usize, usize) {
    if trans {
        (1, rows)
    } else {
        (cols, 1)
    }
}

/// Checks that the last element of a strided `[rows, cols]` operand is inside a slice of `len`.
fn check_extent(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    let last = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    };
    assert!(
        last <= len,
        "strided gemm operand [{rows}, {cols}] (strides {rs}, {cs}) needs {last} values, has {len}"
    );
}
