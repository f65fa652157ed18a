//! [`RowTensor`] for ndarray: the ONNX Runtime step models' host arrays, always row-major (ORT
//! reads inputs as row-major slices).

use std::{convert::Infallible, ops::Range};

use ndarray::{Array, Array2, Axis, Dimension, RemoveAxis, Slice, concatenate};

use super::{RowMask, RowTensor};

impl<A: Clone + Default, D: Dimension + RemoveAxis> RowTensor for Array<A, D> {
    type Error = Infallible;
    type Rows = Vec<usize>;

    fn row_index(&self, rows: &[usize]) -> Result<Vec<usize>, Infallible> {
        Ok(rows.to_vec())
    }

    fn select_rows(self, rows: &Vec<usize>) -> Result<Self, Infallible> {
        Ok(self.select(Axis(0), rows))
    }

    fn width(&self, axis: usize) -> usize {
        self.len_of(Axis(axis))
    }

    fn narrow(self, axis: usize, range: Range<usize>) -> Result<Self, Infallible> {
        if range == (0..self.width(axis)) {
            return Ok(self);
        }
        Ok(self.slice_axis(Axis(axis), Slice::from(range)).as_standard_layout().into_owned())
    }

    fn pad(self, axis: usize, width: usize) -> Result<Self, Infallible> {
        let current = self.width(axis);
        if current >= width {
            return Ok(self);
        }
        let mut shape = self.raw_dim();
        shape[axis] = width - current;
        Ok(join(Axis(axis), self, Array::from_elem(shape, A::default())))
    }

    fn stack_rows(self, below: Self) -> Result<Self, Infallible> {
        Ok(join(Axis(0), self, below))
    }

    fn placeholder() -> Self {
        Array::from_shape_simple_fn(D::zeros(D::NDIM.unwrap_or(1)), A::default)
    }
}

/// `concatenate`, always row-major: ndarray may pick column-major when joining the last axis.
fn join<A: Clone, D: Dimension + RemoveAxis>(axis: Axis, first: Array<A, D>, second: Array<A, D>) -> Array<A, D> {
    let joined = concatenate(axis, &[first.view(), second.view()]).expect("shapes agree but on the joined axis");
    if joined.is_standard_layout() { joined } else { joined.as_standard_layout().into_owned() }
}

impl RowMask for Array2<bool> {
    fn used_columns(&self) -> Result<Range<usize>, Infallible> {
        let (mut first, mut end) = (self.ncols(), 0);
        for row in self.rows() {
            if let Some(f) = row.iter().position(|&m| m) {
                first = first.min(f);
                end = end.max(row.iter().rposition(|&m| m).expect("has a true") + 1);
            }
        }
        Ok(if end == 0 { self.ncols()..self.ncols() } else { first..end })
    }
}
