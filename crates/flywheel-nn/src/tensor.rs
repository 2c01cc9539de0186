//! A named, shaped, row-major buffer: the unit in which parameters are stored, optimised and
//! written to model files.

use crate::{NnError, Real};

/// A row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T: Real> Tensor<T> {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![T::ZERO; shape.iter().product()],
        }
    }

    /// Wraps a buffer, checking that its length matches the shape.
    pub fn from_vec(shape: &[usize], data: Vec<T>) -> Result<Self, NnError> {
        let want: usize = shape.iter().product();
        if want != data.len() {
            return Err(NnError::Shape(format!(
                "shape {shape:?} needs {want} values, got {}",
                data.len()
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The values, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Sets every value to zero.
    pub fn fill_zero(&mut self) {
        self.data.fill(T::ZERO);
    }

    /// The same tensor in another precision.
    pub fn cast<U: Real>(&self) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|x| U::from_f64(x.to_f64())).collect(),
        }
    }

    /// Adds `other` element-wise (shapes must match).
    pub fn add_assign(&mut self, other: &Tensor<T>) {
        debug_assert_eq!(self.shape, other.shape);
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a += b;
        }
    }
}

/// Something that owns parameters: layers and networks. Visiting order is fixed, so a gradient
/// container of the same type lines up with the parameters position by position.
pub trait Parameters<T: Real> {
    /// The parameter tensors with their names, in a fixed order.
    fn tensors(&self) -> Vec<(String, &Tensor<T>)>;
    /// The same tensors, mutable, in the same order.
    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>>;
    /// Total number of scalar parameters.
    fn num_parameters(&self) -> usize {
        self.tensors().iter().map(|(_, t)| t.len()).sum()
    }
}
